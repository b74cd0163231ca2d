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
    INT32_MAX,
    MAX_ELEMENTS,
    check_array,
    check_bool,
    check_choice,
    check_input_elements,
    check_int,
    check_ndim,
    check_pair,
    check_plan_args,
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
        raise TypeError(f"{fn}: kernel={kernel!r} has type {type(kernel).__name__} (must be a string, one of "
                        f"{['auto'] + usable})")
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


class _StorageView:
    """numpy's array interface over a CPU quantized tensor's bytes (read-only); holds the
    tensor alive."""

    def __init__(self, t: Any, typestr: str, shape: tuple, strides: tuple) -> None:
        self._t = t
        self.__array_interface__ = dict(shape=shape, typestr=typestr, data=(t.data_ptr(), True), strides=strides,
                                        version=3)


def _int_view(t: Any, perm: Optional[tuple] = None) -> np.ndarray:
    """The integer values of a CPU quint8/qint8 tensor (dimensions permuted by `perm`) without
    a copy (issue 3: ``int_repr()`` copies the whole tensor, through a slow path for
    channels_last inputs and per-channel weights)."""
    perm = tuple(range(t.dim())) if perm is None else perm
    if t.device.type != "cpu" or t.numel() == 0:
        return t.int_repr().permute(*perm).numpy()
    import torch

    typestr = "|u1" if t.dtype == torch.quint8 else "|i1"
    st = t.stride()
    return np.asarray(_StorageView(t, typestr, tuple(t.shape[i] for i in perm), tuple(st[i] for i in perm)))


def _quint8_nhwc_view(x: Any) -> np.ndarray:
    """(N, H, W, C) uint8 values of a quint8 (N, C, H, W) tensor, no copy: a channels_last
    tensor -- what fbgemm's quantized ops return -- gives a contiguous view."""
    return _int_view(x, (0, 2, 3, 1))


def _activation(fn: str, x: Any, scale: Any, zero_point: Any, ndim: int, layout: str, *, at_least: bool = False,
                channels_last: bool = False, materialize: bool = True) -> tuple[np.ndarray, float, int, bool]:
    """The activation operand of every layer: (uint8 values, scale, zero point, from_torch).

    ``x`` is a quint8 tensor or a uint8 array with ``input_scale``/``input_zero_point``, of
    ``ndim`` dimensions (``at_least``: ``ndim`` or more) laid out as ``layout``. The values come
    back C-contiguous; ``channels_last`` (4-D only, conv2d's kernels) gives them as (N, H, W, C).
    ``materialize=False``: the values as a view, not copied yet (the caller checks the geometry
    first and makes the copy with ``_materialize``)."""
    if is_torch_tensor(x):
        import torch

        if not x.is_quantized or x.dtype != torch.quint8:
            raise TypeError(f"{fn}: input.dtype={x.dtype} (must be a torch.quint8 quantized tensor, or a numpy "
                            f"uint8 array with input_scale and input_zero_point)")
        if x.qscheme() not in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            raise ValueError(f"{fn}: input.qscheme()={x.qscheme()} (activations must be per-tensor quantized)")
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: input_scale={scale!r}, input_zero_point={zero_point!r} with a quantized tensor "
                             f"input (must be None: its own q_scale()={x.q_scale()} and "
                             f"q_zero_point()={x.q_zero_point()} are used)")
        check_ndim(fn, "input", x.shape, ndim, layout, at_least)
        if x.device.type != "cpu":
            raise ValueError(f"{fn}: input.device={x.device} (must be a CPU tensor)")
        s = check_scale(fn, "input.q_scale()", x.q_scale())
        zp = check_int(fn, "input.q_zero_point()", x.q_zero_point(), 0, 255, "quint8 zero point must be in [0, 255]")
        check_input_elements(fn, "input", x.shape)
        # Any memory format (channels_last included): the integer view keeps the strides,
        # the permutation is a view, and ascontiguousarray makes at most one copy.
        if not materialize:
            return _int_view(x), s, zp, True
        return np.ascontiguousarray(_quint8_nhwc_view(x) if channels_last else _int_view(x)), s, zp, True
    a = check_array(fn, "input", x, np.uint8, ndim, layout, at_least)
    if scale is None or zero_point is None:
        raise ValueError(f"{fn}: input_scale={scale!r}, input_zero_point={zero_point!r} (both are required when "
                         f"input is a plain uint8 array)")
    s = check_scale(fn, "input_scale", scale)
    zp = check_int(fn, "input_zero_point", zero_point, 0, 255, "uint8 activations: must be in [0, 255]")
    check_input_elements(fn, "input", a.shape)
    if not materialize:
        return a, s, zp, False
    return _materialize(a, channels_last), s, zp, False


def _materialize(a: np.ndarray, channels_last: bool = False) -> np.ndarray:
    """An activation view (N, C, ...) as C-contiguous values, (N, H, W, C) with channels_last:
    any strides (negative, non-contiguous, Fortran order, a quint8 tensor's storage), at most one
    copy."""
    return _channels_last(a) if channels_last else np.ascontiguousarray(a)


def _input_operand(fn: str, x: Any, scale: Any, zero_point: Any) -> _Act:
    """conv2d's activation: (N, C, H, W) in, NHWC values out."""
    return _Act(*_activation(fn, x, scale, zero_point, 4, "(N, C, H, W)", channels_last=True))


def _ndim(v: Any) -> int:
    """How many dimensions a scale/zero-point argument has, without letting numpy
    raise on ragged input (0 for anything scalar-like)."""
    if is_torch_tensor(v):
        return int(v.dim())
    if isinstance(v, np.ndarray):
        return v.ndim
    if isinstance(v, (list, tuple)):
        return 1
    return 0


# The weight layouts of the layers, by dimension (transposed convs pass torch's own).
_WEIGHT_LAYOUTS = {2: "(O, K)", 3: "(O, C/groups, k)", 4: "(O, C/groups, kH, kW)", 5: "(O, C/groups, kD, kH, kW)"}


def _weight_operand(fn: str, w: Any, scale: Any, zero_point: Any, ndim: int = 4,
                    layout: Optional[str] = None) -> _Weight:
    """The weight operand of every layer: a qint8 tensor (per-tensor or per-channel along axis
    0) or an int8 array with ``weight_scale``/``weight_zero_point``, ``ndim``-D ``layout``
    (default: the conv/linear layout of that dimension)."""
    layout = layout or _WEIGHT_LAYOUTS[ndim]
    if is_torch_tensor(w):
        import torch

        if not w.is_quantized or w.dtype != torch.qint8:
            raise TypeError(f"{fn}: weight.dtype={w.dtype} (must be a torch.qint8 quantized tensor, or a numpy int8 "
                            f"array with weight_scale)")
        if scale is not None or zero_point is not None:
            raise ValueError(f"{fn}: weight_scale={scale!r}, weight_zero_point={zero_point!r} with a quantized tensor "
                             f"weight (must be None: the tensor's own quantization parameters are used)")
        check_ndim(fn, "weight", w.shape, ndim, layout)
        if w.device.type != "cpu":
            raise ValueError(f"{fn}: weight.device={w.device} (must be a CPU tensor)")
        qs = w.qscheme()
        if qs in (torch.per_tensor_affine, torch.per_tensor_symmetric):
            sc = check_scales_array(fn, "weight.q_scale()", np.array([w.q_scale()]))
            zp = check_zero_points_array(fn, "weight.q_zero_point()", np.array([w.q_zero_point()]), -128, 127)
            return _Weight(np.ascontiguousarray(_int_view(w)), sc, zp, False)
        if qs in (torch.per_channel_affine, torch.per_channel_symmetric):
            if w.q_per_channel_axis() != 0:
                raise ValueError(f"{fn}: weight.q_per_channel_axis()={w.q_per_channel_axis()} (fbgemm needs "
                                 f"per-channel quantization along axis 0, the output channels)")
            sc = check_scales_array(fn, "weight.q_per_channel_scales()", w.q_per_channel_scales())
            zp = check_zero_points_array(fn, "weight.q_per_channel_zero_points()", w.q_per_channel_zero_points(),
                                         -128, 127)
            return _Weight(np.ascontiguousarray(_int_view(w)), sc, zp, True)
        raise ValueError(f"{fn}: weight.qscheme()={qs} (must be per-tensor or per-channel, affine or symmetric)")
    a = check_array(fn, "weight", w, np.int8, ndim, layout)
    if scale is None:
        raise ValueError(f"{fn}: weight_scale=None (required when weight is a plain int8 array)")
    O = a.shape[0]
    if _ndim(scale) > 1:
        raise ValueError(f"{fn}: weight_scale has {_ndim(scale)} dimensions (must be a float, or a 1-D sequence of "
                         f"{O} floats for per-channel)")
    if _ndim(scale) == 1:
        sc = check_scales_array(fn, "weight_scale", scale).reshape(-1)
        if sc.shape[0] != O:
            raise ValueError(f"{fn}: weight_scale has {sc.shape[0]} entries but weight has {O} output channels "
                             f"(per-channel scales: one per output channel)")
        if zero_point is None:
            zp = np.zeros(O, np.int32)
        elif _ndim(zero_point) == 0:
            zp = np.full(O, check_int(fn, "weight_zero_point", zero_point, -128, 127,
                                      "int8 weights: must be in [-128, 127]"), np.int32)
        elif _ndim(zero_point) == 1:
            zp = check_zero_points_array(fn, "weight_zero_point", zero_point, -128, 127).reshape(-1)
        else:
            raise ValueError(f"{fn}: weight_zero_point has {_ndim(zero_point)} dimensions (must be an int or a 1-D "
                             f"sequence of {O} ints)")
        if zp.shape[0] != O:
            raise ValueError(f"{fn}: weight_zero_point has {zp.shape[0]} entries but weight has {O} output channels "
                             f"(per-channel zero points: one per output channel)")
        return _Weight(np.ascontiguousarray(a), sc, zp, True)
    s = check_scale(fn, "weight_scale", scale)
    if zero_point is not None and _ndim(zero_point) > 0:
        raise ValueError(f"{fn}: weight_zero_point is a sequence but weight_scale={s!r} is a scalar "
                         f"(per-tensor: both scalars; per-channel: both (O,) sequences)")
    zp0 = 0 if zero_point is None else check_int(fn, "weight_zero_point", zero_point, -128, 127,
                                                 "int8 weights: must be in [-128, 127]")
    return _Weight(np.ascontiguousarray(a), np.array([s], np.float64), np.array([zp0], np.int32), False)


def _bias_operand(fn: str, b: Any, O: int) -> Optional[np.ndarray]:
    if b is None:
        return None
    if is_torch_tensor(b):
        import torch

        if b.is_quantized or b.dtype != torch.float32:
            raise TypeError(f"{fn}: bias.dtype={b.dtype} (must be float32: torch's quantized conv holds a float32 "
                            f"bias)")
        b = b.detach().cpu().numpy()
    if not isinstance(b, np.ndarray):
        raise TypeError(f"{fn}: bias has type {type(b).__name__} (must be None or a float32 array of length {O})")
    if b.dtype != np.float32:
        raise TypeError(f"{fn}: bias.dtype={b.dtype} (must be float32: torch's quantized conv holds a float32 bias; "
                        f"qref never casts silently)")
    if b.shape != (O,):
        raise ValueError(f"{fn}: bias.shape={tuple(b.shape)} (must be ({O},), one per output channel)")
    if not np.all(np.isfinite(b)):
        i = int(np.flatnonzero(~np.isfinite(b))[0])
        raise ValueError(f"{fn}: bias[{i}]={float(b[i])!r} (bias must be finite)")
    return np.ascontiguousarray(b, dtype=np.float32)


def _conv2d_geometry(fn: str, groups: Any, stride: Any, padding: Any, dilation: Any) -> tuple:
    """groups, stride, padding, dilation of a 2D conv: (g, (sh, sw), (ph, pw), (dh, dw))."""
    g = check_int(fn, "groups", groups, 1, INT32_MAX, "must be an int in [1, 2^31-1]")
    st = check_pair(fn, "stride", stride, 1)
    pd = check_pair(fn, "padding", padding, 0)
    dl = check_pair(fn, "dilation", dilation, 1)
    return g, st, pd, dl


def _output_quant(fn: str, output_scale: Any, output_zero_point: Any) -> tuple[float, int]:
    """The quint8 output quantization of every layer: (scale, zero point)."""
    return (check_scale(fn, "output_scale", output_scale),
            check_int(fn, "output_zero_point", output_zero_point, 0, 255, "quint8 output: must be in [0, 255]"))


def _run_args(fn: str, return_intermediates: Any, engine: Any, isa: Any, kernel: Any, threads: Any,
              isas: tuple = ISAS) -> tuple[str, Optional[int]]:
    """How every layer is asked to run: (kernel name, thread count or None for all cores)."""
    check_bool(fn, "return_intermediates", return_intermediates)
    check_choice(fn, "engine", engine, ENGINES)
    check_choice(fn, "isa", isa, isas)
    return _resolve_kernel(fn, kernel), check_threads(fn, threads)


# ----------------------------------------------------------------------------- routing


def _no_onednn_kernel(fn: str, onednn_kernel: Any, engine: str) -> None:
    """onednn_kernel names a oneDNN kernel: refused where the layer runs fbgemm."""
    if onednn_kernel is not None and onednn_kernel != "":
        raise ValueError(f"{fn}: onednn_kernel={onednn_kernel!r} with engine={engine!r}: this layer runs fbgemm here, "
                         f"and onednn_kernel applies only where it runs oneDNN (engine 'onednn', or 'x86' on an "
                         f"AVX512-VNNI host with symmetric weights and groups <= 100)")


def onednn_would_run(w: _Weight, groups: int, isa: str) -> bool:
    """torch's x86 engine: does prepack choose oneDNN? (qconv_prepack.cpp, OnednnUtils.h
    should_use_onednn_quant; SPEC.md §1). `isa` names the host."""
    if not sys.platform.startswith("linux"):
        return False
    from .onednn import host_has_vnni  # isa may also name a oneDNN class ("amx", "avx512_core")

    has_vnni = host_has_vnni(isa)
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
    shapes = check_plan_args("conv_plan", input_shape_nchw, weight_shape_oihw, stride, padding, dilation, groups, 2,
                             isa=isa)
    return _conv_plan(*shapes, isa)


def _conv_plan(input_shape_nchw, weight_shape_oihw, stride, padding, dilation, groups, isa: str) -> ConvPlan:
    """conv_plan of arguments already checked (conv2d's own)."""
    N, C, H, W = (int(v) for v in input_shape_nchw)
    O, Cg, KH, KW = (int(v) for v in weight_shape_oihw)
    sem = isa_semantics(isa)
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
    _prepared_cache: Optional[dict] = None,
    onednn_kernel: Optional[str] = None,
    _fn: str = "conv2d",
) -> Any:
    """Quantized conv2d, bit-exact with torch's fbgemm ``quantized::conv2d(_relu)``.

    Returns the same kind as ``input``: a torch quint8 tensor or a numpy uint8
    array (N, O, OH, OW). With ``return_intermediates=True`` returns
    ``(output, Intermediates)`` (computed by the scalar reference kernel).
    """
    fn = _fn  # "conv1d" when qref.conv1d runs through here (its (1, k) geometry)
    if _prepared_cache is not None and not return_intermediates:
        out = _prepared_fast_path(_prepared_cache, input, weight, bias, weight_scale, weight_zero_point, stride,
                                  padding, dilation, groups, input_scale, input_zero_point, output_scale,
                                  output_zero_point, relu, engine, isa, kernel, threads)
        if out is not None:
            return out
    # The scalar arguments first, so nothing is copied before they are known good.
    g, st, pd, dl = _conv2d_geometry(fn, groups, stride, padding, dilation)
    out_s, out_zp = _output_quant(fn, output_scale, output_zero_point)
    check_bool(fn, "relu", relu)
    # engine x86/onednn: isa may also name the oneDNN classes "amx" and "avx512_core" (qref/onednn.py).
    kname, nthreads = _run_args(fn, return_intermediates, engine, isa, kernel, threads,
                                ISAS if engine == "fbgemm" else ISAS + ("amx", "avx512_core", "sse41"))
    # The input is copied (to NHWC) only after every size below is known good.
    a_view, a_s, a_zp, a_torch = _activation(fn, input, input_scale, input_zero_point, 4, "(N, C, H, W)",
                                             materialize=False)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point)
    N, C, H, W = a_view.shape
    O, Cg, KH, KW = wt.oihw.shape
    if O == 0 or Cg == 0 or KH == 0 or KW == 0:
        # torch divides by zero (SIGFPE) for O=0 and reads uninitialised memory for C=0.
        raise ValueError(f"{fn}: weight.shape={(O, Cg, KH, KW)} (every weight dimension must be >= 1)")
    if C % g != 0:
        raise ValueError(f"{fn}: input has C={C} channels with groups={g} (channels must be divisible by groups)")
    if O % g != 0:
        raise ValueError(f"{fn}: weight has O={O} output channels with groups={g} (output channels must be "
                         f"divisible by groups)")
    if Cg * g != C:
        raise ValueError(f"{fn}: weight has {Cg} input channels per group but input has C={C} channels with "
                         f"groups={g} (input channels must equal groups * weight channels)")
    for dim, v in (("input.shape[0] (N)", N), ("input.shape[1] (C)", C), ("input.shape[2] (H)", H),
                   ("input.shape[3] (W)", W), ("weight.shape[0] (O)", O), ("padded height H+2*padding", H + 2 * pd[0]),
                   ("padded width W+2*padding", W + 2 * pd[1]), ("kernel span dilation*(kH-1)+1", dl[0] * (KH - 1) + 1),
                   ("kernel span dilation*(kW-1)+1", dl[1] * (KW - 1) + 1)):
        if v > INT32_MAX:
            raise ValueError(f"{fn}: {dim}={v} is too large (must be <= 2^31-1: fbgemm's conv_param_t holds a C int)")
    eff_h, eff_w = dl[0] * (KH - 1) + 1, dl[1] * (KW - 1) + 1
    if eff_h > H + 2 * pd[0] or eff_w > W + 2 * pd[1]:
        raise ValueError(f"{fn}: kernel {KH}x{KW} with dilation={dl} spans {eff_h}x{eff_w}, larger than the padded "
                         f"input {H + 2 * pd[0]}x{W + 2 * pd[1]} (kernel must fit in the padded input)")
    OH = (H + 2 * pd[0] - eff_h) // st[0] + 1
    OW = (W + 2 * pd[1] - eff_w) // st[1] + 1
    K = Cg * KH * KW
    if N * O * OH * OW > MAX_ELEMENTS or N * OH * OW * K > (1 << 62) or O * K > MAX_ELEMENTS:
        raise ValueError(f"{fn}: output shape {(N, O, OH, OW)} with K={K} is too large (at most 2^40 output "
                         f"elements and 2^62 multiply-adds, so index arithmetic stays inside int64)")
    if wt.per_channel and wt.scale.shape[0] != O:
        raise ValueError(f"{fn}: weight has {wt.scale.shape[0]} per-channel scales but O={O} output channels "
                         f"(one per output channel)")
    b = _bias_operand(fn, bias, O)
    act = _Act(_materialize(a_view, channels_last=True), a_s, a_zp, a_torch)
    if engine == "onednn" or (engine == "x86" and onednn_would_run(wt, g, isa)):
        from . import onednn  # oneDNN's arithmetic (SPEC.md §6, docs/onednn.md)
        from ._onednn_verbose import checked_kernel

        onednn_kernel = checked_kernel(fn, onednn_kernel, "convolution", onednn.resolve_class(isa))


        if _prepared_cache is not None and not return_intermediates:
            # issue 8: as for fbgemm below, Conv2dParams keeps the oneDNN conv packed once
            # (a _core.OnednnConv2d, which _core.conv2d_run also runs), so _prepared_fast_path
            # serves repeated calls.
            if len(_prepared_cache) >= 16:
                _prepared_cache.clear()
            prep = onednn.prepare(act, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu), isa, onednn_kernel)
            _prepared_cache[_fast_key(input, input_scale, input_zero_point, weight, bias, weight_scale,
                                      weight_zero_point, stride, padding, dilation, groups, output_scale,
                                      output_zero_point, relu, engine, isa, kname)] = (
                prep, (weight, bias, weight_scale, weight_zero_point))
            out_nhwc = _core.conv2d_run(prep, act.nhwc, _core.default_threads() if nthreads is None else nthreads)
            return _wrap_output(out_nhwc, act.from_torch, out_s, out_zp)
        return onednn.run(act, wt, b, st, pd, dl, g, out_s, out_zp, bool(relu), isa, nthreads,
                          bool(return_intermediates), act.from_torch, onednn_kernel)
    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        from .onednn import fbgemm_isa

        isa = fbgemm_isa(isa)  # the fbgemm name of a machine named by a oneDNN class

    plan = _conv_plan((N, C, H, W), (O, Cg, KH, KW), st, pd, dl, g, isa)
    if _prepared_cache is not None and not return_intermediates:
        # issue 3: the owner of immutable weights (Conv2dParams) keeps the weights
        # transposed, column-summed and packed for the kernel, one entry per input
        # shape / quantization / ISA semantics / kernel, so a call only runs the kernel.
        if len(_prepared_cache) >= 16:
            _prepared_cache.clear()
        prep = _core.conv2d_prepare(
            act.nhwc, _channels_last(wt.oihw), b, st, pd, dl, g, act.scale,
            act.zero_point, wt.scale, wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), plan.saturates,
            kname)
        # Remembered under the caller's own argument objects (immutable, owned by the
        # cache's owner) plus the input's shape and quantization: see _prepared_fast_path.
        _prepared_cache[_fast_key(input, input_scale, input_zero_point, weight, bias, weight_scale,
                                  weight_zero_point, stride, padding, dilation, groups, output_scale,
                                  output_zero_point, relu, engine, isa, kname)] = (
            prep, (weight, bias, weight_scale, weight_zero_point))
        out_nhwc = _core.conv2d_run(prep, act.nhwc, _core.default_threads() if nthreads is None else nthreads)
        return _wrap_output(out_nhwc, act.from_torch, out_s, out_zp)
    w_ohwi = _channels_last(wt.oihw)
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


def _channels_last(a: np.ndarray) -> np.ndarray:
    """(N, C, H, W) -> C-contiguous (N, H, W, C) (also OIHW -> OHWI)."""
    if a.dtype in (np.uint8, np.int8) and a.ndim == 4 and a.flags.c_contiguous:
        return _core.channels_transpose(a, True)  # issue 3: ~10x numpy's transpose
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1))


def _channels_first(a: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> C-contiguous (N, C, H, W)."""
    if a.dtype in (np.uint8, np.int8) and a.ndim == 4 and a.flags.c_contiguous:
        return _core.channels_transpose(a, False)
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def _fast_key(x: Any, input_scale: Any, input_zero_point: Any, weight: Any, bias: Any, weight_scale: Any,
              weight_zero_point: Any, stride: Any, padding: Any, dilation: Any, groups: Any, output_scale: Any,
              output_zero_point: Any, relu: Any, engine: str, isa: str, kname: str) -> tuple:
    """What a prepared conv2d depends on: the identity of the (read-only, owned)
    weight-side objects, the other arguments by value, the input's kind, shape and
    quantization, the kernel (after QREF_KERNEL) and the ISA name (whose meaning is fixed
    for the process: fbgemm reads its environment once)."""
    if is_torch_tensor(x):
        q = ("torch", x.q_scale(), x.q_zero_point())
    else:
        q = ("numpy", repr(input_scale), repr(input_zero_point))
    return (id(weight), id(bias), id(weight_scale), id(weight_zero_point), repr(stride), repr(padding),
            repr(dilation), repr(groups), repr(output_scale), repr(output_zero_point), bool(relu), engine, isa, kname,
            tuple(x.shape)) + q


def _prepared_fast_path(cache: dict, x: Any, weight: Any, bias: Any, weight_scale: Any, weight_zero_point: Any,
                        stride: Any, padding: Any, dilation: Any, groups: Any, input_scale: Any,
                        input_zero_point: Any, output_scale: Any, output_zero_point: Any, relu: Any, engine: Any,
                        isa: Any, kernel: Any, threads: Any) -> Any:
    """A repeated call of a Conv2dParams on an input (quint8 tensor, or uint8 array with the
    same input_scale/input_zero_point) of a shape and quantization it has seen: every
    argument was validated when the entry was made, so only the input's kind, the kernel
    name and the thread count are checked again. None: take the full path."""
    if not (isinstance(kernel, str) and isinstance(isa, str) and isinstance(engine, str)):
        return None
    if is_torch_tensor(x):
        import torch

        if not (input_scale is None and input_zero_point is None and x.dim() == 4 and x.is_quantized
                and x.dtype == torch.quint8 and x.qscheme() == torch.per_tensor_affine):
            return None
    elif not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and input_scale is not None
              and input_zero_point is not None):
        return None
    kname = _resolve_kernel("conv2d", kernel)
    hit = cache.get(_fast_key(x, input_scale, input_zero_point, weight, bias, weight_scale, weight_zero_point, stride,
                              padding, dilation, groups, output_scale, output_zero_point, relu, engine, isa, kname))
    if hit is None:
        return None
    prep = hit[0]  # hit[1] keeps the keyed objects alive, so their ids are never reused
    nthreads = check_threads("conv2d", threads)
    torch_in = is_torch_tensor(x)
    nhwc = np.ascontiguousarray(_quint8_nhwc_view(x)) if torch_in else _channels_last(x)
    nt = _core.default_threads() if nthreads is None else nthreads
    if torch_in:
        # issue 8: the kernel writes straight into the channels_last quint8 result (NHWC memory),
        # instead of a numpy array copied into a new tensor by _wrap_output (0.1-0.25 ms on a
        # 784 KB output: a quarter of ResNet-50 conv1's time).
        import torch

        N, OH, OW, O = _core.prepared_output_shape(prep)
        q = torch._empty_affine_quantized((N, O, OH, OW), scale=float(output_scale),
                                          zero_point=int(output_zero_point), dtype=torch.quint8,
                                          memory_format=torch.channels_last)
        _core.conv2d_run_into(prep, nhwc, q.data_ptr(), N * OH * OW * O, nt)
        return q
    out_nhwc = _core.conv2d_run(prep, nhwc, nt)
    return _wrap_output(out_nhwc, torch_in, float(output_scale), int(output_zero_point))


def _wrap_output(out_nhwc: np.ndarray, as_torch: bool, scale: float, zero_point: int) -> Any:
    if as_torch:
        import torch

        t = torch.from_numpy(out_nhwc).permute(0, 3, 1, 2)  # NCHW view, channels_last strides
        return torch._make_per_tensor_quantized_tensor(t, scale, zero_point)
    return _channels_first(out_nhwc)


# ----------------------------------------------------------------------------- quantize


def quantize(x: Any, scale: Any, zero_point: Any) -> np.ndarray:
    """float32 -> quint8 exactly as torch.quantize_per_tensor does it on this build (SPEC.md §7):
    ``clamp(rne(fma(x, f32(1/f32(scale)), zp)), 0, 255)``. Returns a numpy uint8 array."""
    fn = "quantize"
    if is_torch_tensor(x):
        import torch

        if x.is_quantized or x.dtype != torch.float32:
            raise TypeError(f"{fn}: x.dtype={x.dtype} (must be float32; qref never casts silently)")
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{fn}: x has type {type(x).__name__} (must be a float32 numpy array or torch tensor)")
    if x.dtype != np.float32:
        raise TypeError(f"{fn}: x.dtype={x.dtype} (must be float32; qref never casts silently)")
    s = check_scale(fn, "scale", scale)
    zp = check_int(fn, "zero_point", zero_point, 0, 255, "quint8: must be in [0, 255]")
    check_input_elements(fn, "x", x.shape)
    # Any strides: one C-contiguous copy (a no-op when already contiguous); the input's shape,
    # a 0-d one included (ascontiguousarray makes it 1-d).
    return _core.quantize(np.ascontiguousarray(x), s, zp).reshape(x.shape)
