"""The torch bridge: integer parameters out of torch's quantized conv modules (Conv2d and what
every module reader shares: weight quantization, frozen arrays, whose engine packed the weights).

torch is imported lazily, so ``import qref`` works with numpy alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from ..common.validate import check_reflect_padding, is_torch_tensor
from ..layers.conv2d import conv2d
from .onednn_verbose import executed_kernels, onednn_lock, params_kernel
from .qnnpack import packed_by_qnnpack


def weight_qparams(w: Any, name: str) -> tuple:
    """(float64 scales, int32 zero points, per_channel) of a module's qint8 weight: one entry
    per-tensor, one per output channel per-channel (fbgemm needs the channel axis 0)."""
    import torch

    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        return np.array([w.q_scale()], np.float64), np.array([w.q_zero_point()], np.int32), False
    if w.q_per_channel_axis() != 0:
        raise UnsupportedModuleError(f"from_torch: {name} weight is per-channel along axis "
                                     f"{w.q_per_channel_axis()}; fbgemm needs axis 0")
    return (w.q_per_channel_scales().numpy().astype(np.float64),
            w.q_per_channel_zero_points().numpy().astype(np.int32), True)


def module_weights(module: Any, name: str) -> dict:
    """The params fields of a quantized module's weight and bias: the int8 weight in torch's
    layout, its quantization (weight_qparams) and the float32 bias or None."""
    w = module.weight()
    b = module.bias()
    ws, wz, per_channel = weight_qparams(w, name)
    return dict(
        weight=np.ascontiguousarray(w.int_repr().numpy()),
        weight_scale=ws,
        weight_zero_point=wz,
        per_channel=per_channel,
        bias=None if b is None else np.ascontiguousarray(b.detach().numpy().astype(np.float32, copy=False)),
    )


def freeze_arrays(params: Any) -> None:
    """Replace a frozen params dataclass's arrays by private read-only copies and start an empty
    prepared-weights cache: the cached packed weights can never go stale behind the user's back."""
    for name in ("weight", "weight_scale", "weight_zero_point", "bias"):
        a = getattr(params, name)
        if isinstance(a, np.ndarray):
            a = np.array(a, copy=True)
            a.setflags(write=False)
            object.__setattr__(params, name, a)
    object.__setattr__(params, "_prepared", {})


class UnsupportedModuleError(NotImplementedError):
    """qref cannot reproduce this module (yet); the message says why."""


_CONV2D_TYPES = {"Conv2d": False, "ConvReLU2d": True}


@dataclass(frozen=True, eq=False)
class WeightFields:
    """The first fields of every params object (Conv2dParams, qref.bridge.layers'): a module's
    weight and bias as module_weights reads them, kept read-only (freeze_arrays)."""

    weight: np.ndarray  # int8, torch's layout for the layer
    weight_scale: np.ndarray  # float64, (O,) per-channel or (1,) per-tensor
    weight_zero_point: np.ndarray  # int32, same count
    per_channel: bool
    bias: Optional[np.ndarray]  # float32 (O,) or None

    def __post_init__(self) -> None:
        freeze_arrays(self)

    def __getstate__(self) -> dict:
        # the prepared-weight cache holds native objects and the torch module is not pickled: a
        # copy rebuilds the cache on demand.
        d = dict(self.__dict__)
        d["_prepared"] = {}
        d["_module"] = None
        d.pop("_kernels", None)
        return d

    def _weight_args(self) -> tuple:
        """(weight_scale, weight_zero_point) as the public layer functions take them: the arrays
        per-channel, a float and an int per-tensor."""
        if self.per_channel:
            return self.weight_scale, self.weight_zero_point
        return float(self.weight_scale[0]), int(self.weight_zero_point[0])


@dataclass(frozen=True, eq=False)
class Conv2dParams(WeightFields):
    """Everything fbgemm uses of a quantized Conv2d / ConvReLU2d, as plain numbers (``weight``: int8
    (O, C/groups, kH, kW)).

    ``params(qx)`` runs it on a quint8 tensor or a uint8 numpy array (the latter
    with ``input_scale``/``input_zero_point``).
    """

    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    output_scale: float
    output_zero_point: int
    relu: bool
    padding_mode: str = "zeros"
    module_type: str = "Conv2d"
    engine: str = "fbgemm"  # whose arithmetic torch's packed weights run: "fbgemm", "onednn" or "qnnpack"
    # the oneDNN implementation torch ran for this layer (qref.check reads it from oneDNN's verbose log
    # for the recorded input; "" = qref's shape rules decide)
    onednn_kernel: str = ""
    _weight_arg: Any = field(default=None, repr=False)
    # packed weights per input shape / quantization / ISA / kernel (qref.conv2d)
    _prepared: Any = field(default=None, init=False, repr=False, compare=False)
    # the torch module from_torch read (asked which kernel oneDNN runs per input; not pickled)
    _module: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        # The weight operand handed to qref.conv2d, built once.
        object.__setattr__(self, "_weight_arg", (self.weight,) + self._weight_args())

    def __setstate__(self, d: dict) -> None:
        # A copy (pickle, copy.deepcopy) owns read-only arrays again, as the original does: the
        # prepared cache is keyed by the arrays' identity and would go stale if they were writable.
        self.__dict__.update(d)
        self.__post_init__()

    def conv_kwargs(self) -> dict:
        w, ws, wz = self._weight_arg
        return dict(weight=w, bias=self.bias, stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups, weight_scale=ws, weight_zero_point=wz, output_scale=self.output_scale,
                    output_zero_point=self.output_zero_point, relu=self.relu)

    def prepare_input(self, qx: Any, input_scale: Any = None, input_zero_point: Any = None):
        """(input operand, input_scale, input_zero_point, padding) after the module's own
        non-zero padding (``padding_mode='reflect'`` pads the quantized input, as torch does)."""
        if self.padding_mode == "zeros":
            return qx, input_scale, input_zero_point, self.padding
        ph, pw = self.padding
        shape = tuple(getattr(qx, "shape", ()))
        if len(shape) != 4:
            return qx, input_scale, input_zero_point, self.padding  # conv2d refuses the input
        check_reflect_padding("conv2d", self.padding, shape)
        if is_torch_tensor(qx):
            import torch.nn.functional as F

            return F.pad(qx, (pw, pw, ph, ph), mode=self.padding_mode), None, None, (0, 0)
        a = np.pad(qx, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="reflect")
        return a, input_scale, input_zero_point, (0, 0)

    def __call__(self, qx: Any, *, input_scale: Any = None, input_zero_point: Any = None, isa: str = "auto",
                 kernel: str = "auto", threads: Optional[int] = None, return_intermediates: bool = False) -> Any:
        kern = params_kernel(self, qx, isa, input_scale, input_zero_point)  # oneDNN-packed: the kernel oneDNN runs
        x, s, z, pad = self.prepare_input(qx, input_scale, input_zero_point)
        kw = self.conv_kwargs()
        kw["padding"] = pad
        w = kw.pop("weight")
        b = kw.pop("bias")
        return conv2d(x, w, b, input_scale=s, input_zero_point=z, isa=isa, kernel=kernel, threads=threads,
                      return_intermediates=return_intermediates, engine=self.engine, _prepared_cache=self._prepared,
                      onednn_kernel=kern, **kw)


def packed_engine(module: Any) -> str:
    with onednn_lock():
        return _packed_engine(module)


def _packed_engine(module: Any) -> str:
    """'fbgemm', 'onednn', 'qnnpack' or 'unknown': whose kernels run a quantized module's packed weights.

    torch decides at prepack time, from the engine current then (qconv_prepack.cpp,
    qlinear_prepack.cpp; docs/numerics.md §1), and the packed object does not say which. A module
    packed under engine "onednn" runs oneDNN whatever the host, and under "x86" a conv may run
    oneDNN, so a one-off probe decides (only asymmetric weights rule oneDNN out: it refuses
    them at prepack): with an output scale so small that every non-zero pre-rounding value
    exceeds 2^31, fbgemm's cvtps2dq gives INT32_MIN -> 0 everywhere (docs/numerics.md §5.4) while
    oneDNN clamps in float first and gives 255 for positive values. The input scale is large
    so the bias term cannot hide the sign of the accumulator.

    Works for Conv1d/2d/3d, ConvTranspose1d/2d/3d and Linear (and their ReLU fusions).
    Caveat: fbgemm's direct transposed path fixes its column offsets on its first call
    (docs/numerics.md §4.5); probing such a module before its first real call fixes them to the probe's
    input size (qref.check runs the model first).
    """
    import torch

    if packed_by_qnnpack(module):  # converted under engine "qnnpack" (qref.bridge.qnnpack)
        return "qnnpack"
    w = module.weight()
    if w.qscheme() in (torch.per_tensor_affine, torch.per_tensor_symmetric):
        symmetric = w.q_zero_point() == 0
    else:
        symmetric = bool((w.q_per_channel_zero_points() == 0).all())
    if not symmetric:
        return "fbgemm"
    pp = module._packed_params
    gen = torch.Generator().manual_seed(0)
    if hasattr(module, "in_features"):  # Linear / LinearReLU
        pp = getattr(pp, "_packed_params", pp)
        data = torch.randint(0, 256, (4, int(module.in_features)), dtype=torch.uint8, generator=gen)

        def probe(d):
            qx = torch._make_per_tensor_quantized_tensor(d, 1.0e6, 128)
            return torch.ops.quantized.linear(qx, pp, 1.0e-20, 0).int_repr()
    else:
        ks = tuple(int(v) for v in module.kernel_size)
        dl = tuple(int(v) for v in module.dilation)
        transposed = bool(getattr(module, "transposed", False))
        if transposed:
            # at least 4, and enough for an output of >= 1 despite the padding
            st = tuple(int(v) for v in module.stride)
            pd = tuple(int(v) for v in module.padding)
            op = tuple(int(v) for v in module.output_padding)
            spatial = tuple(max(4, 2 + -(-(2 * p - d * (k - 1) - o) // s)) for k, d, s, p, o in zip(ks, dl, st, pd, op))
        else:
            spatial = tuple(max(8, d * (k - 1) + 1) for k, d in zip(ks, dl))
        # Transposed: one image (fbgemm's direct transposed path writes image 0 only).
        N = 1 if transposed else 2
        data = torch.randint(0, 256, (N, int(module.in_channels)) + spatial, dtype=torch.uint8, generator=gen)
        name = ("conv_transpose" if transposed else "conv") + f"{len(ks)}d"

        def probe(d):
            qx = torch._make_per_tensor_quantized_tensor(d, 1.0e6, 128)
            return getattr(torch.ops.quantized, name)(qx, pp, 1.0e-20, 0).int_repr()
    # fbgemm never answers 255 here (every non-zero value saturates to 0): a 255 settles it without
    # oneDNN's log, whose capture redirects the process's fd 1 (onednn_verbose).
    out = probe(data)
    if not bool((out == 255).any()) and bool((out == 0).all()):
        # oneDNN also answers 0 where every value is <= 0 (e.g. one output channel whose weights
        # sum negative on this input): the complemented input flips the sign of every
        # accumulator (a - 128 -> 127 - a), so oneDNN's answer then has a 255 somewhere.
        out = probe(255 - data)
    if bool((out == 255).any()):
        return "onednn"
    # No 255: oneDNN's own log settles it where readable: a oneDNN-packed module executes a oneDNN
    # convolution / deconvolution / matmul primitive, an fbgemm one none (the value probe can be
    # fooled where torch/oneDNN itself computes wrong values, e.g. depthwise 1x1 convs with padding)
    prims = ("matmul",) if hasattr(module, "in_features") else ("convolution", "deconvolution")
    if any(executed_kernels(lambda: probe(data), prim) for prim in prims):
        return "onednn"
    if bool((out == 0).all()):
        if bool((w.int_repr() != 0).any()):
            return "fbgemm"
        b = module.bias() if callable(getattr(module, "bias", None)) else None
        if b is None or not bool((b != 0).any()):
            return "fbgemm"  # zero weights and bias: both engines output the zero point everywhere
    return "unknown"


def module_engine(module: Any, name: str) -> str:
    """'fbgemm' or 'onednn' for a module's packed weights (packed_engine), or UnsupportedModuleError
    when the probe cannot tell. Packed for oneDNN (the default "x86" engine on an AVX512-VNNI Linux
    host for convs, or "onednn" for every layer): the params run oneDNN's arithmetic (docs/numerics.md §6)."""
    eng = packed_engine(module)
    if eng == "unknown":
        raise UnsupportedModuleError(
            f"from_torch: could not tell whether this {name}'s packed weights run fbgemm or oneDNN: the engine probe "
            f"(docs/numerics.md §5.4: fbgemm answers 0 where oneDNN answers 255) was inconclusive, which happens with all-zero "
            f"weights and a nonzero bias; pass check_engine=False if you know they run fbgemm, or call qref's "
            f"function with engine='onednn'")
    return eng
