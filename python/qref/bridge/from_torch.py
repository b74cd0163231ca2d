"""qref.from_torch: the params object of any supported torch quantized module."""

from __future__ import annotations

from typing import Any

from .layers import from_torch_nd, handles
from .modules import (
    _CONV2D_TYPES,
    Conv2dParams,
    UnsupportedModuleError,
    module_engine,
    module_weights,
)


def from_torch(module: Any, *, check_engine: bool = True) -> Conv2dParams:
    """Integer parameters of ``torch.ao.nn.quantized.Conv2d`` / ``torch.ao.nn.intrinsic.quantized.ConvReLU2d``.

    A module whose packed weights run oneDNN (converted under the default "x86"
    engine with symmetric weights on an AVX512-VNNI Linux host, or under "onednn")
    gives params with ``engine="onednn"``, which run oneDNN's arithmetic.
    """
    name = type(module).__name__
    mod = type(module).__module__
    if handles(module):  # Linear(ReLU), Conv(ReLU)1d/3d, ConvTranspose1d/2d/3d
        return from_torch_nd(module, check_engine=check_engine)  # type: ignore[return-value]
    if name not in _CONV2D_TYPES or not mod.startswith("torch.ao.nn"):
        raise UnsupportedModuleError(
            f"from_torch: {mod}.{name} is not supported (supported: torch.ao.nn.quantized.Conv2d, "
            f"torch.ao.nn.intrinsic.quantized.ConvReLU2d, Linear, LinearReLU, Conv1d, ConvReLU1d, Conv3d, "
            f"ConvReLU3d, ConvTranspose1d, ConvTranspose2d, ConvTranspose3d)")
    if name == "ConvReLU2d" and ".intrinsic." not in mod:
        raise UnsupportedModuleError(f"from_torch: {mod}.{name} is not supported")
    if getattr(module, "transposed", False):
        raise UnsupportedModuleError(f"from_torch: {name} is transposed; not supported yet")
    engine = module_engine(module, name) if check_engine else "fbgemm"
    weights = module_weights(module, name)
    pm = getattr(module, "padding_mode", "zeros")
    if pm not in ("zeros", "reflect"):
        raise UnsupportedModuleError(f"from_torch: padding_mode={pm!r} is not supported")
    params = Conv2dParams(
        **weights,
        stride=tuple(int(v) for v in module.stride),
        padding=tuple(int(v) for v in module.padding),
        dilation=tuple(int(v) for v in module.dilation),
        groups=int(module.groups),
        output_scale=float(module.scale),
        output_zero_point=int(module.zero_point),
        relu=_CONV2D_TYPES[name],
        padding_mode=pm,
        module_type=name,
        engine=engine,
    )
    # kept whatever the engine: oneDNN-packed modules are asked which kernel oneDNN runs per input, and
    # qref.runtimes asks any of them which kernel torch's x86 engine would run (x86_engine_kernel)
    object.__setattr__(params, "_module", module)
    return params
