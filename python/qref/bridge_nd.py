"""The torch bridge for linear, conv1d, conv3d and transposed convs (issue 7).

``qref.from_torch`` dispatches here for ``nnq.Linear``, ``nniq.LinearReLU``, ``nnq.Conv1d``,
``nniq.ConvReLU1d``, ``nnq.Conv3d``, ``nniq.ConvReLU3d``, ``nnq.ConvTranspose1d``,
``nnq.ConvTranspose2d`` and ``nnq.ConvTranspose3d``. Each returns a frozen params object that runs
like ``Conv2dParams``: ``params(qx, isa=..., kernel=...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ._validate import is_torch_tensor

# torch class name -> (qref kind, relu fused)
MODULE_KINDS = {
    "Linear": ("linear", False),
    "LinearReLU": ("linear", True),
    "Conv1d": ("conv1d", False),
    "ConvReLU1d": ("conv1d", True),
    "Conv3d": ("conv3d", False),
    "ConvReLU3d": ("conv3d", True),
    "ConvTranspose1d": ("conv_transpose1d", False),
    "ConvTranspose2d": ("conv_transpose2d", False),
    "ConvTranspose3d": ("conv_transpose3d", False),
}
_RELU_NAMES = ("LinearReLU", "ConvReLU1d", "ConvReLU3d")


@dataclass(frozen=True, eq=False)
class _LayerParams:
    """Everything fbgemm uses of one quantized layer, as plain numbers."""

    weight: np.ndarray  # int8, torch's layout for the layer
    weight_scale: np.ndarray  # float64, (O,) per-channel or (1,) per-tensor
    weight_zero_point: np.ndarray  # int32, same count
    per_channel: bool
    bias: Optional[np.ndarray]  # float32 (O,) or None
    output_scale: float
    output_zero_point: int
    relu: bool
    module_type: str
    stride: tuple = ()
    padding: tuple = ()
    dilation: tuple = ()
    output_padding: tuple = ()
    groups: int = 1
    padding_mode: str = "zeros"

    kind = ""

    def _weight_args(self) -> dict:
        ws = self.weight_scale if self.per_channel else float(self.weight_scale[0])
        wz = self.weight_zero_point if self.per_channel else int(self.weight_zero_point[0])
        return dict(weight_scale=ws, weight_zero_point=wz)

    def _pad_input(self, qx: Any, input_scale: Any, input_zero_point: Any):
        """Non-zero padding modes pad the quantized input first, as torch's modules do."""
        if self.padding_mode == "zeros" or not self.padding:
            return qx, input_scale, input_zero_point, self.padding
        pads = []
        for p in reversed(self.padding):
            pads += [p, p]
        if is_torch_tensor(qx):
            import torch.nn.functional as F

            return F.pad(qx, tuple(pads), mode=self.padding_mode), None, None, (0,) * len(self.padding)
        width = ((0, 0), (0, 0)) + tuple((p, p) for p in self.padding)
        return np.pad(qx, width, mode="reflect"), input_scale, input_zero_point, (0,) * len(self.padding)

    def known_torch_defect(self, input_shape: Any, *, first_input_shape: Any = None,
                           input_zero_point: Optional[int] = None, isa: str = "auto") -> Optional[str]:
        from .conv_nd import known_torch_defect

        return known_torch_defect(self, input_shape, first_input_shape=first_input_shape,
                                  input_zero_point=input_zero_point, isa=isa)

    def plan(self, input_shape: Any, isa: str = "auto"):
        """The fbgemm path and saturation (``qref.ConvPlan``) of this layer for that input shape."""
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class LinearParams(_LayerParams):
    """``torch.ao.nn.quantized.Linear`` / ``LinearReLU``: weight (O, K)."""

    kind = "linear"

    def plan(self, input_shape: Any, isa: str = "auto"):
        from .linear import linear_plan

        return linear_plan(isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False) -> Any:
        from .linear import linear

        return linear(qx, self.weight, self.bias, input_scale=input_scale, input_zero_point=input_zero_point,
                      output_scale=self.output_scale, output_zero_point=self.output_zero_point, relu=self.relu,
                      isa=isa, kernel=kernel, threads=threads, return_intermediates=return_intermediates,
                      **self._weight_args())


@dataclass(frozen=True, eq=False)
class Conv1dParams(_LayerParams):
    """``nnq.Conv1d`` / ``nniq.ConvReLU1d``: weight (O, C/groups, k)."""

    kind = "conv1d"

    def plan(self, input_shape: Any, isa: str = "auto"):
        from .conv import conv_plan

        N, C, L = (int(v) for v in input_shape)
        O, Cg, k = self.weight.shape
        p = 0 if self.padding_mode != "zeros" else self.padding[0]
        L += 2 * self.padding[0] if self.padding_mode != "zeros" else 0
        return conv_plan((N, C, 1, L), (O, Cg, 1, k), (1, self.stride[0]), (0, p), (1, self.dilation[0]),
                         self.groups, isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False) -> Any:
        from .conv_nd import conv1d

        x, s, z, pad = self._pad_input(qx, input_scale, input_zero_point)
        return conv1d(x, self.weight, self.bias, stride=self.stride, padding=pad, dilation=self.dilation,
                      groups=self.groups, input_scale=s, input_zero_point=z, output_scale=self.output_scale,
                      output_zero_point=self.output_zero_point, relu=self.relu, isa=isa, kernel=kernel,
                      threads=threads, return_intermediates=return_intermediates, **self._weight_args())


@dataclass(frozen=True, eq=False)
class Conv3dParams(_LayerParams):
    """``nnq.Conv3d`` / ``nniq.ConvReLU3d``: weight (O, C/groups, kD, kH, kW)."""

    kind = "conv3d"

    def plan(self, input_shape: Any, isa: str = "auto"):
        from .conv_nd import conv_nd_plan

        shape = tuple(int(v) for v in input_shape)
        pad = self.padding
        if self.padding_mode != "zeros":
            shape = shape[:2] + tuple(n + 2 * p for n, p in zip(shape[2:], pad))
            pad = (0, 0, 0)
        return conv_nd_plan(shape, self.weight.shape, self.stride, pad, self.dilation, self.groups, isa=isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False,
                 reproduce_defects: bool = False) -> Any:
        from .conv_nd import conv3d

        x, s, z, pad = self._pad_input(qx, input_scale, input_zero_point)
        return conv3d(x, self.weight, self.bias, stride=self.stride, padding=pad, dilation=self.dilation,
                      groups=self.groups, input_scale=s, input_zero_point=z, output_scale=self.output_scale,
                      output_zero_point=self.output_zero_point, relu=self.relu, isa=isa, kernel=kernel,
                      threads=threads, return_intermediates=return_intermediates,
                      reproduce_defects=reproduce_defects, **self._weight_args())


@dataclass(frozen=True, eq=False)
class ConvTransposeParams(_LayerParams):
    """``nnq.ConvTranspose1d/2d/3d``: weight (C, O/groups, k...), per-tensor."""

    kind = "conv_transpose"

    def plan(self, input_shape: Any, isa: str = "auto"):
        from .conv_nd import conv_nd_plan

        shape = tuple(int(v) for v in input_shape)
        IC, OCg = self.weight.shape[:2]
        g = self.groups
        ks = tuple(self.weight.shape[2:])
        st, pd, dl = self.stride, self.padding, self.dilation
        if self.weight.ndim == 3:  # conv_transpose1d runs as 2D with H = 1
            shape, ks = shape[:2] + (1,) + shape[2:], (1,) + ks
            st, pd, dl = (1,) + tuple(st), (0,) + tuple(pd), (1,) + tuple(dl)
        return conv_nd_plan(shape, (OCg * g, IC // g) + ks, st, pd, dl, g, transposed=True, isa=isa)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False,
                 reproduce_defects: bool = False) -> Any:
        from .conv_nd import conv_transpose1d, conv_transpose2d, conv_transpose3d

        fn = {3: conv_transpose1d, 4: conv_transpose2d, 5: conv_transpose3d}[self.weight.ndim]
        return fn(qx, self.weight, self.bias, stride=self.stride, padding=self.padding,
                  output_padding=self.output_padding, groups=self.groups, dilation=self.dilation,
                  input_scale=input_scale, input_zero_point=input_zero_point, output_scale=self.output_scale,
                  output_zero_point=self.output_zero_point, isa=isa, kernel=kernel, threads=threads,
                  return_intermediates=return_intermediates, reproduce_defects=reproduce_defects,
                  **self._weight_args())


_CLASSES = {"linear": LinearParams, "conv1d": Conv1dParams, "conv3d": Conv3dParams,
            "conv_transpose1d": ConvTransposeParams, "conv_transpose2d": ConvTransposeParams,
            "conv_transpose3d": ConvTransposeParams}


def handles(module: Any) -> bool:
    name = type(module).__name__
    mod = type(module).__module__
    if name not in MODULE_KINDS or not mod.startswith("torch.ao.nn"):
        return False
    return (".intrinsic." in mod) == (name in _RELU_NAMES)


def packed_engine_nd(module: Any) -> str:
    """'fbgemm', 'onednn' or 'unknown' for any supported module: see torch_bridge.packed_engine."""
    from .torch_bridge import packed_engine

    return packed_engine(module)


def from_torch_nd(module: Any, *, check_engine: bool = True) -> _LayerParams:
    """Integer parameters of a quantized Linear / Conv1d / Conv3d / ConvTranspose1d/2d module."""
    import torch

    from .torch_bridge import UnsupportedModuleError

    name = type(module).__name__
    kind, relu = MODULE_KINDS[name]
    if kind == "conv_transpose2d":
        from .conv_nd import conv_nd_plan

        g = int(module.groups)
        plan = conv_nd_plan((1, module.in_channels, 8, 8), (module.out_channels, module.in_channels // g)
                            + tuple(module.kernel_size), module.stride, module.padding, module.dilation, g,
                            transposed=True)
        if plan.path == "direct":
            # E (tests/test_transposed.py): module.weight() of such a module returns uninitialized
            # memory (different on every call); fbgemm's PackedDirectConvMatrix has no unpack.
            # Checked before the engine probe: a probe call would also fix fbgemm's cached
            # column offsets to the probe's input size (SPEC.md §4.5).
            raise UnsupportedModuleError(
                f"from_torch: this {name} runs oneDNN (x86 engine) or fbgemm's direct transposed path (groups 1, "
                f"channels % 8 == 0, kernel height 2, stride 1/2, no padding), whose packed weights torch cannot "
                f"unpack (module.weight() returns uninitialized memory), so qref cannot read them; call "
                f"qref.conv_transpose2d with the original quantized weight instead")
    if check_engine:
        eng = packed_engine_nd(module)
        if eng != "fbgemm":
            raise UnsupportedModuleError(
                f"from_torch: this {name}'s packed weights run oneDNN, not fbgemm "
                + ("(detected by probe)" if eng == "onednn" else "(could not be ruled out)")
                + ": the model was converted under torch.backends.quantized.engine='onednn' (or 'x86', the "
                "default, for convs with symmetric weights), and oneDNN's arithmetic differs from fbgemm's "
                "(SPEC.md §6); qref reproduces oneDNN for Conv2d only. Set torch.backends.quantized.engine = 'fbgemm' and use "
                "torch.ao.quantization.get_default_qconfig('fbgemm') before prepare/convert.")
    w = module.weight()
    b = module.bias()
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        ws = np.array([w.q_scale()], np.float64)
        wz = np.array([w.q_zero_point()], np.int32)
        per_channel = False
    else:
        if w.q_per_channel_axis() != 0:
            raise UnsupportedModuleError(f"from_torch: {name} weight is per-channel along axis "
                                         f"{w.q_per_channel_axis()}; fbgemm needs axis 0")
        ws = w.q_per_channel_scales().numpy().astype(np.float64)
        wz = w.q_per_channel_zero_points().numpy().astype(np.int32)
        per_channel = True
    common = dict(
        weight=np.ascontiguousarray(w.int_repr().numpy()),
        weight_scale=ws,
        weight_zero_point=wz,
        per_channel=per_channel,
        bias=None if b is None else np.ascontiguousarray(b.detach().numpy().astype(np.float32, copy=False)),
        output_scale=float(module.scale),
        output_zero_point=int(module.zero_point),
        relu=relu,
        module_type=name,
    )
    if kind == "linear":
        return LinearParams(**common)
    pm = getattr(module, "padding_mode", "zeros")
    if pm not in ("zeros", "reflect") or (pm != "zeros" and kind.startswith("conv_transpose")):
        raise UnsupportedModuleError(f"from_torch: {name} with padding_mode={pm!r} is not supported")
    conv = dict(
        stride=tuple(int(v) for v in module.stride),
        padding=tuple(int(v) for v in module.padding),
        dilation=tuple(int(v) for v in module.dilation),
        output_padding=tuple(int(v) for v in getattr(module, "output_padding", ())) if module.transposed else (),
        groups=int(module.groups),
        padding_mode=pm,
    )
    return _CLASSES[kind](**common, **conv)
