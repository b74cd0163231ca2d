"""qref.conv2d and qref.quantize: the public numerics entry points."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from . import _core
from ._isa import ISAS, IsaSemantics, isa_semantics, torch_isa
from ._validate import (
    MAX_ELEMENTS,
    check_array,
    check_choice,
    check_int,
    check_pair,
    check_scale,
    check_scales_array,
    check_threads,
    check_zero_points_array,
    is_torch_tensor,
)

ENGINES = ("fbgemm", "x86", "onednn")


class OneDNNNotSupportedError(NotImplementedError):
    """The conv runs oneDNN's arithmetic in torch, which qref does not reproduce yet."""


def kernels() -> list[str]:
    """The qref kernels compiled in and usable on this CPU, best first."""
    return list(_core.kernels())


def _resolve_kernel(fn: str, kernel: Any) -> str:
    usable = kernels()
    if not isinstance(kernel, str):
        raise TypeError(f"{fn}: kernel must be a string, one of {['auto'] + usable}; got {type(kernel).__name__}")
    if kernel == "auto":
        env = os.environ.get("QREF_KERNEL")
        if env:
            if env not in usable:
                raise ValueError(f"{fn}: QREF_KERNEL={env!r} is not a usable kernel (usable: {usable})")
            return env
        return usable[0]
    if kernel not in usable:
        compiled = list(_core.compiled_kernels())
        why = "compiled in but this CPU lacks its instructions" if kernel in compiled else "not a qref kernel"
        raise ValueError(f"{fn}: kernel={kernel!r} is {why} (usable: {['auto'] + usable})")
    return kernel


# ----------------------------------------------------------------------------- operands


@dataclass(frozen=True, eq=False)
class _Act:
    nhwc: np.ndarray  # uint8 (N, H, W, C), C-contiguous
    scale: float
    zero_point: int
    from_torch: bool


@dataclass(frozen=True, eq=False)
class _Weight:
    oihw: np.ndarray  # int8 (O, C/groups, KH, KW)
    scale: np.ndarray  # float64 (1,) or (O,)
    zero_point: np.ndarray  # int32, same count
    per_channel: bool


def _input_operand(fn: str, x: Any, scale: Any, zero_point: Any) -> _Act:
    if is_torch_tensor(x):
        import torch

        if not x.is_quantized or x.dtype != torch.quint8:
            raise TypeError(f"{fn}: input is a torch tensor of dtype {x.dtype}; expected a quint8 quantized tensor "
                            f"(or a numpy uint8 array with input_scale and input_zero_point)")
        if x.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            raise ValueError(f"{fn}: input has qscheme {x.qscheme()}; activations must be per-tensor quantized")
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: input_scale/input_zero_point must be None when input is a quantized tensor "
                             f"(its own q_scale()={x.q_scale()} and q_zero_point()={x.q_zero_point()} are used)")
        if x.dim() != 4:
            raise ValueError(f"{fn}: input has shape {tuple(x.shape)}, expected 4 dimensions (N, C, H, W)")
        nhwc = np.ascontiguousarray(x.int_repr().permute(0, 2, 3, 1).numpy())
        s = check_scale(fn, "input q_scale()", x.q_scale())
        zp = check_int(fn, "input q_zero_point()", x.q_zero_point(), 0, 255, "quint8 zero point must be in [0, 255]")
        return _Act(nhwc, s, zp, True)
    a = check_array(fn, "input", x, np.uint8, 4, "(N, C, H, W)")
    if scale is None or zero_point is None:
        raise ValueError(f"{fn}: input_scale and input_zero_point are required when input is a plain uint8 array")
    s = check_scale(fn, "input_scale", scale)
    zp = check_int(fn, "input_zero_point", zero_point, 0, 255, "uint8 activations: must be in [0, 255]")
    return _Act(np.ascontiguousarray(a.transpose(0, 2, 3, 1)), s, zp, False)


def _weight_operand(fn: str, w: Any, scale: Any, zero_point: Any, ndim: int = 4) -> _Weight:
    layout = "(O, C/groups, kH, kW)" if ndim == 4 else "(O, K)"
    if is_torch_tensor(w):
        import torch

        if not w.is_quantized or w.dtype != torch.qint8:
            raise TypeError(f"{fn}: weight is a torch tensor of dtype {w.dtype}; expected a qint8 quantized tensor "
                            f"(or a numpy int8 array with weight_scale)")
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: weight_scale/weight_zero_point must be None when weight is a quantized tensor")
        if w.dim() != ndim:
            raise ValueError(f"{fn}: weight has shape {tuple(w.shape)}, expected {ndim} dimensions {layout}")
        qs = w.qscheme()
        data = np.ascontiguousarray(w.int_repr().numpy())
        if qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            sc = check_scales_array(fn, "weight q_scale()", np.array([w.q_scale()]))
            zp = check_zero_points_array(fn, "weight q_zero_point()", np.array([w.q_zero_point()]), -128, 127)
            return _Weight(data, sc, zp, False)
        if qs in (torch.per_channel_affine, torch.per_channel_symmetric):
            if w.q_per_channel_axis() != 0:
                raise ValueError(f"{fn}: weight is per-channel along axis {w.q_per_channel_axis()}; "
                                 f"fbgemm needs axis 0 (output channels)")
            sc = check_scales_array(fn, "weight q_per_channel_scales()", w.q_per_channel_scales().numpy())
            zp = check_zero_points_array(fn, "weight q_per_channel_zero_points()",
                                         w.q_per_channel_zero_points().numpy(), -128, 127)
            return _Weight(data, sc, zp, True)
        raise ValueError(f"{fn}: weight qscheme {qs} is not supported (per-tensor or per-channel affine/symmetric)")
    a = check_array(fn, "weight", w, np.int8, ndim, layout)
    if scale is None:
        raise ValueError(f"{fn}: weight_scale is required when weight is a plain int8 array")
    O = a.shape[0]
    per_channel = not np.isscalar(scale) and np.ndim(scale) > 0
    if per_channel:
        sc = check_scales_array(fn, "weight_scale", np.asarray(scale).reshape(-1))
        if sc.shape[0] != O:
            raise ValueError(f"{fn}: weight_scale has {sc.shape[0]} entries but weight has {O} output channels "
                             f"(per-channel scales: one per output channel)")
        zpa = np.zeros(O, np.int32) if zero_point is None else np.asarray(zero_point)
        if zpa.ndim == 0:
            zpa = np.full(O, int(zpa), np.int32) if zpa.dtype.kind in "iu" else zpa
        zp = check_zero_points_array(fn, "weight_zero_point", zpa.reshape(-1), -128, 127)
        if zp.shape[0] != O:
            raise ValueError(f"{fn}: weight_zero_point has {zp.shape[0]} entries but weight has {O} output channels")
        return _Weight(np.ascontiguousarray(a), sc, zp, True)
    s = check_scale(fn, "weight_scale", scale)
    if zero_point is not None and np.ndim(zero_point) > 0:
        raise ValueError(f"{fn}: weight_zero_point is an array but weight_scale is a scalar "
                         f"(per-tensor: both scalars; per-channel: both (O,) arrays)")
    zp = 0 if zero_point is None else check_int(fn, "weight_zero_point", zero_point, -128, 127,
                                                "int8 weights: must be in [-128, 127]")
    return _Weight(np.ascontiguousarray(a), np.array([s], np.float64), np.array([zp], np.int32), False)


def _bias_operand(fn: str, b: Any, O: int) -> Optional[np.ndarray]:
    if b is None:
        return None
    if is_torch_tensor(b):
        import torch

        if b.is_quantized or b.dtype != torch.float32:
            raise TypeError(f"{fn}: bias is a torch tensor of dtype {b.dtype}; torch's quantized conv holds a "
                            f"float32 bias")
        b = b.detach().cpu().numpy()
    if not isinstance(b, np.ndarray):
        raise TypeError(f"{fn}: bias must be a float32 array of length {O} or None, got {type(b).__name__}")
    if b.dtype != np.float32:
        raise TypeError(f"{fn}: bias has dtype {b.dtype}, expected float32 (torch's quantized conv holds a float32 "
                        f"bias; qref never casts silently)")
    if b.shape != (O,):
        raise ValueError(f"{fn}: bias has shape {tuple(b.shape)}, expected ({O},) (one per output channel)")
    if not np.all(np.isfinite(b)):
        i = int(np.flatnonzero(~np.isfinite(b))[0])
        raise ValueError(f"{fn}: bias[{i}]={float(b[i])!r} is not finite (bias must be finite)")
    return np.ascontiguousarray(b)


# ----------------------------------------------------------------------------- routing


def onednn_would_run(w: _Weight, groups: int, isa: str) -> bool:
    """torch's x86 engine: does prepack choose oneDNN? (qconv_prepack.cpp, OnednnUtils.h
    should_use_onednn_quant; SPEC.md §1). `isa` names the host."""
    if not sys.platform.startswith("linux"):
        return False
    if isa == "avx2":
        has_vnni = False
    elif isa == "vnni":
        has_vnni = True
    else:
        has_vnni = bool(torch_isa().cpu_features["avx512vnni"])
    symmetric = bool(np.all(w.zero_point == 0))
    return has_vnni and symmetric and groups <= 100


@dataclass(frozen=True)
class ConvPlan:
    """How fbgemm computes a conv on the named ISA: the path and its saturation."""

    path: str
    saturates: bool
    isa: IsaSemantics

    def __str__(self) -> str:
        sat = "int16-saturating pairs (vpmaddubsw)" if self.saturates else "exact int32 products"
        return f"fbgemm {self.path} path, {sat}, isa {self.isa.name}"


def conv_plan(input_shape_nchw, weight_shape_oihw, stride, padding, dilation, groups, isa: str = "auto") -> ConvPlan:
    sem = isa_semantics(isa)
    N, C, H, W = (int(v) for v in input_shape_nchw)
    O, Cg, KH, KW = (int(v) for v in weight_shape_oihw)
    path = _core.conv_path([N, H, W, C], [O, KH, KW, Cg], tuple(stride), tuple(padding), tuple(dilation),
                           int(groups), sem.avx512_host)
    sat = {"depthwise": True, "groupwise": sem.groupwise_saturates}.get(path, sem.gemm_saturates)
    return ConvPlan(path, sat, sem)


# ----------------------------------------------------------------------------- conv2d


@dataclass(frozen=True, eq=False)
class Intermediates:
    """Stage-by-stage values of every output element, (N, O, OH, OW) like the output."""

    acc: np.ndarray  # int32 sum of products (saturated pairs where fbgemm saturates)
    raw: np.ndarray  # int32 after the zero-point terms
    y: np.ndarray  # float32 pre-rounding value
    plan: ConvPlan


def conv2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    dilation: Any = 1,
    groups: int = 1,
    input_scale: Any = None,
    input_zero_point: Any = None,
    weight_scale: Any = None,
    weight_zero_point: Any = None,
    output_scale: Any,
    output_zero_point: Any,
    relu: bool = False,
    engine: str = "fbgemm",
    isa: str = "auto",
    kernel: str = "auto",
    threads: Optional[int] = None,
    return_intermediates: bool = False,
) -> Any:
    """Quantized conv2d, bit-exact with torch's fbgemm ``quantized::conv2d(_relu)``.

    Returns the same kind as ``input``: a torch quint8 tensor or a numpy uint8
    array (N, O, OH, OW). With ``return_intermediates=True`` returns
    ``(output, Intermediates)`` (computed by the scalar reference kernel).
    """
    fn = "conv2d"
    act = _input_operand(fn, input, input_scale, input_zero_point)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point)
    N, H, W, C = act.nhwc.shape
    O, Cg, KH, KW = wt.oihw.shape
    g = check_int(fn, "groups", groups, 1, None, "must be >= 1")
    st = check_pair(fn, "stride", stride, 1)
    pd = check_pair(fn, "padding", padding, 0)
    dl = check_pair(fn, "dilation", dilation, 1)
    if C % g != 0:
        raise ValueError(f"{fn}: input has {C} channels, not divisible by groups={g}")
    if O % g != 0:
        raise ValueError(f"{fn}: weight has {O} output channels, not divisible by groups={g}")
    if Cg * g != C:
        raise ValueError(f"{fn}: weight has {Cg} input channels per group but input has {C} channels with "
                         f"groups={g} (input channels must equal groups * weight channels)")
    if O == 0 or Cg == 0 or KH == 0 or KW == 0:
        raise ValueError(f"{fn}: weight has shape {(O, Cg, KH, KW)}; every dimension must be >= 1")
    eff_h, eff_w = dl[0] * (KH - 1) + 1, dl[1] * (KW - 1) + 1
    if eff_h > H + 2 * pd[0] or eff_w > W + 2 * pd[1]:
        raise ValueError(f"{fn}: kernel {KH}x{KW} with dilation {dl} spans {eff_h}x{eff_w}, larger than the padded "
                         f"input {H + 2 * pd[0]}x{W + 2 * pd[1]} (kernel must fit in the padded input)")
    OH = (H + 2 * pd[0] - eff_h) // st[0] + 1
    OW = (W + 2 * pd[1] - eff_w) // st[1] + 1
    if N * O * OH * OW > MAX_ELEMENTS or N * H * W * C > MAX_ELEMENTS:
        raise ValueError(f"{fn}: sizes too large (output {N}x{O}x{OH}x{OW}; at most 2^40 elements)")
    if wt.per_channel and wt.scale.shape[0] != O:
        raise ValueError(f"{fn}: weight has {wt.scale.shape[0]} per-channel scales but {O} output channels")
    b = _bias_operand(fn, bias, O)
    out_s = check_scale(fn, "output_scale", output_scale)
    out_zp = check_int(fn, "output_zero_point", output_zero_point, 0, 255, "quint8 output: must be in [0, 255]")
    if not isinstance(relu, (bool, np.bool_)):
        raise TypeError(f"{fn}: relu must be a bool, got {type(relu).__name__}")
    check_choice(fn, "engine", engine, ENGINES)
    check_choice(fn, "isa", isa, ISAS)
    kname = _resolve_kernel(fn, kernel)
    nthreads = check_threads(fn, threads)
    if engine == "onednn" or (engine == "x86" and onednn_would_run(wt, g, isa)):
        raise OneDNNNotSupportedError(
            f"{fn}: engine={engine!r} runs this conv on oneDNN (symmetric weights, groups <= 100, AVX512-VNNI "
            f"host), whose arithmetic qref does not reproduce yet; use engine='fbgemm' and convert the model with "
            f"torch.backends.quantized.engine = 'fbgemm'")

    plan = conv_plan((N, C, H, W), (O, Cg, KH, KW), st, pd, dl, g, isa)
    w_ohwi = np.ascontiguousarray(wt.oihw.transpose(0, 2, 3, 1))
    res = _core.conv2d_nhwc(
        act.nhwc, w_ohwi, b, st, pd, dl, g, act.scale, act.zero_point, wt.scale, wt.zero_point, wt.per_channel,
        out_s, out_zp, bool(relu), plan.saturates, kname,
        _core.default_threads() if nthreads is None else nthreads, bool(return_intermediates),
    )
    out_nhwc = res[0] if return_intermediates else res
    out = _wrap_output(out_nhwc, act.from_torch, out_s, out_zp)
    if return_intermediates:
        def nchw(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

        return out, Intermediates(nchw(res[1]), nchw(res[2]), nchw(res[3]), plan)
    return out


def _wrap_output(out_nhwc: np.ndarray, as_torch: bool, scale: float, zero_point: int) -> Any:
    if as_torch:
        import torch

        t = torch.from_numpy(out_nhwc).permute(0, 3, 1, 2)  # NCHW view, channels_last strides
        return torch._make_per_tensor_quantized_tensor(t, scale, zero_point)
    return np.ascontiguousarray(out_nhwc.transpose(0, 3, 1, 2))


# ----------------------------------------------------------------------------- quantize


def quantize(x: Any, scale: Any, zero_point: Any) -> np.ndarray:
    """float32 -> quint8 exactly as torch.quantize_per_tensor does it on this build (SPEC.md §7):
    ``clamp(rne(fma(x, f32(1/f32(scale)), zp)), 0, 255)``. Returns a numpy uint8 array."""
    fn = "quantize"
    if is_torch_tensor(x):
        import torch

        if x.is_quantized or x.dtype != torch.float32:
            raise TypeError(f"{fn}: x is a torch tensor of dtype {x.dtype}; expected float32")
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: x must be a float32 numpy array or torch tensor, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise TypeError(f"{fn}: x has dtype {x.dtype}, expected float32 (qref never casts silently)")
    s = check_scale(fn, "scale", scale)
    zp = check_int(fn, "zero_point", zero_point, 0, 255, "quint8: must be in [0, 255]")
    return _core.quantize(np.ascontiguousarray(x), s, zp)
