"""qref.conv1d, qref.conv3d, qref.conv_transpose1d/2d: the other fbgemm conv layers.

- conv1d: torch runs it as conv2d on (N, C, 1, L) with kernel (1, k), stride (1, s),
  padding (0, p), dilation (1, d) (pytorch qconv.cpp ``QConv1dInt8``, qconv_prepack.cpp
  ``QConv1dPackWeightInt8``: unsqueeze at dim 2). qref does exactly that with the conv2d core.
- conv3d: the 3D paths of fbgemm (SPEC.md §3, §4.2): depthwise 3D, groupwise 3D, pointwise,
  im2col in (kd, kh, kw, c) order.
- conv_transpose1d/2d/3d: fbgemm's im2col transposed path (SPEC.md §4.4) and its direct
  transposed path (§4.5, 2D only).
The normative N-d reference is csrc/qref/kernels/conv_nd_scalar.cc (kernel="scalar"); the other
kernels run exact reformulations on the conv2d core or vectorised loops (same bytes).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ._validate import (
    INT32_MAX,
    check_bool,
    check_conv_output,
    check_int,
    check_plan_args,
    check_scale,
)
from .conv import _activation, _bias_operand, _output_quant, _run_args, _weight_operand


def _as_tuple(fn: str, name: str, v: Any, n: int, lo: int) -> tuple:
    """An int or `n` ints, each in [lo, 2^31-1] (fbgemm's conv_param_t holds C ints)."""
    rule = f"must be an int in [{lo}, 2^31-1]: fbgemm's conv_param_t holds a C int"
    if isinstance(v, np.ndarray) and v.ndim == 1:
        v = tuple(v.tolist())
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            v = tuple(v) * n
        if len(v) != n:
            raise ValueError(f"{fn}: {name}={v!r} must be an int or a tuple of {n} ints")
        return tuple(check_int(fn, f"{name}[{i}]", x, lo, INT32_MAX, rule) for i, x in enumerate(v))
    x = check_int(fn, name, v, lo, INT32_MAX, rule)
    return (x,) * n


def _groups(fn: str, groups: Any) -> int:
    return check_int(fn, "groups", groups, 1, INT32_MAX, "must be an int in [1, 2^31-1]")


def _wrap(out: np.ndarray, as_torch: bool, scale: float, zero_point: int) -> Any:
    if not as_torch:
        return out
    import torch

    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(out)), scale, zero_point)


# ----------------------------------------------------------------------------- conv1d


def conv1d(
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
    onednn_kernel: Optional[str] = None,
) -> Any:
    """Quantized conv1d, bit-exact with torch's fbgemm ``quantized::conv1d(_relu)``.

    ``input`` (N, C, L) quint8 tensor or uint8 array; ``weight`` (O, C/groups, k). torch runs
    it as conv2d on (N, C, 1, L) with kernel (1, k) (qconv.cpp ``QConv1dInt8``), so the fbgemm
    path is pointwise (k = 1, stride 1, no padding) or im2col; never depthwise or groupwise,
    whose kernels need every kernel dim in {3, 5, 7} / == 3.
    Returns the same kind as ``input``, (N, O, L_out).
    """
    from .conv import conv2d

    fn = "conv1d"
    # conv1d's own arguments first (conv2d below would name its (1, k) geometry's entries)
    (st,) = _as_tuple(fn, "stride", stride, 1, 1)
    (pd,) = _as_tuple(fn, "padding", padding, 1, 0)
    (dl,) = _as_tuple(fn, "dilation", dilation, 1, 1)
    _groups(fn, groups)
    a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, 3, "(N, C, L)",
                                           materialize=False)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point, 3)
    # conv2d gets the parsed quantization back as arguments: per-channel arrays or per-tensor scalars.
    ws, wz = (wt.scale, wt.zero_point) if wt.per_channel else (float(wt.scale[0]), int(wt.zero_point[0]))
    # QConv1dPackWeightInt8: weight.unsqueeze(2); stride {1, s}, padding {0, p}, dilation {1, d}.
    res = conv2d(a[:, :, None, :], np.ascontiguousarray(wt.oihw[:, :, None, :]), bias, stride=(1, st),
                 padding=(0, pd), dilation=(1, dl), groups=groups, input_scale=a_s, input_zero_point=a_zp,
                 weight_scale=ws, weight_zero_point=wz, output_scale=output_scale,
                 output_zero_point=output_zero_point, relu=relu, engine=engine, isa=isa, kernel=kernel,
                 threads=threads, return_intermediates=return_intermediates, onednn_kernel=onednn_kernel,
                 _fn="conv1d")
    out_s = check_scale(fn, "output_scale", output_scale)
    out_zp = int(output_zero_point)
    if return_intermediates:
        from dataclasses import fields, replace

        out, it = res
        # fbgemm's Intermediates or oneDNN's OnednnIntermediates: every array field loses the unit height
        it3 = replace(it, **{f.name: getattr(it, f.name)[:, :, 0, :] for f in fields(it)
                             if isinstance(getattr(it, f.name), np.ndarray)})
        o = out.int_repr().numpy() if hasattr(out, "int_repr") else out
        return _wrap(np.ascontiguousarray(o[:, :, 0, :]), from_torch, out_s, out_zp), it3
    return _wrap(np.ascontiguousarray(res[:, :, 0, :]), from_torch, out_s, out_zp)


# ----------------------------------------------------------------------------- conv3d / transposed (C++ core)


def _saturates(path: str, sem) -> bool:
    """Whether fbgemm's path sums int16-saturating pairs (SPEC.md §4.6)."""
    if path in ("depthwise", "direct"):
        return True  # AVX2-only JITs on every CPU
    if path == "groupwise":
        return bool(sem.groupwise_saturates)
    return bool(sem.gemm_saturates)


def conv_nd_plan(input_shape, weight_shape, stride, padding, dilation, groups, *, transposed: bool = False,
                 isa: str = "auto"):
    """The fbgemm path and its saturation for a 3D conv (5-d shapes) or a 2D transposed conv
    (4-d shapes). ``weight_shape`` is qref's (O, C/groups, k...) order (transposed: after the
    rearrangement, i.e. (OC, IC/groups, kH, kW))."""
    fn = "conv_nd_plan"
    check_bool(fn, "transposed", transposed)
    n = len(input_shape) if isinstance(input_shape, (tuple, list)) or np.ndim(input_shape) == 1 else 0
    if n not in (4, 5):
        raise ValueError(f"{fn}: input_shape={input_shape!r} (must be 5 ints (N, C, D, H, W) for a 3D conv, or 4 "
                         f"ints (N, C, H, W) for a 2D transposed conv)")
    input_shape, weight_shape, stride, padding, dilation, groups = check_plan_args(
        fn, input_shape, weight_shape, stride, padding, dilation, groups, n - 2, bool(transposed), isa)
    return _nd_plan(input_shape, weight_shape, stride, padding, dilation, groups, bool(transposed), isa)


def _nd_plan(input_shape, weight_shape, stride, padding, dilation, groups, transposed: bool, isa: str):
    """conv_nd_plan of arguments already checked (the layer functions' own)."""
    from . import _core
    from ._isa import isa_semantics
    from .conv import ConvPlan

    sem = isa_semantics(isa)
    if len(input_shape) == 5:
        N, C, D, H, W = input_shape
        O, Cg, KD, KH, KW = weight_shape
        st, pd, dl, sd = tuple(stride), tuple(padding), tuple(dilation), 3
    else:
        N, C, H, W = input_shape
        O, Cg, KH, KW = weight_shape
        D = KD = 1
        st, pd, dl, sd = (1,) + tuple(stride), (0,) + tuple(padding), (1,) + tuple(dilation), 2
    path = _core.conv_nd_path([N, D, H, W, C], [O, KD, KH, KW, Cg], list(st), list(pd), list(dl), int(groups),
                              bool(transposed), sd, sem.avx512_host)
    return ConvPlan(path, _saturates(path, sem), sem)


def _run_nd(fn, a_ndhwc, a_s, a_zp, w_odhwi, wt, b, st3, pd3, dl3, op3, groups, transposed, sd, out_s, out_zp,
            relu, plan, reproduce_defects, threads, return_intermediates, kname="scalar"):
    from . import _core

    # kernel="scalar": the plain reference loops; any other kernel: the vectorised depthwise and
    # direct-transposed loops where they apply (same bytes).
    res = _core.conv_nd_ndhwc(
        a_ndhwc, w_odhwi, b, list(st3), list(pd3), list(dl3), list(op3), int(groups), bool(transposed), sd,
        a_s, a_zp, wt.scale, wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), plan.path,
        plan.saturates, bool(reproduce_defects), _core.default_threads() if threads is None else threads,
        bool(return_intermediates), kname != "scalar")
    if return_intermediates:
        return res[0], (res[1], res[2], res[3])
    return res, None


def _pairs_survive_reordering(plan, Cg: int, taps: int) -> bool:
    """Can the reduction be reordered tap-wise without changing the result? Exact sums can be
    reordered freely. Saturating pairs (2i, 2i+1) of the (taps, c) order stay the same pairs
    when Cg is even (a pair never straddles two taps) or there is a single tap; the pair sums
    are then added exactly, in any order."""
    return (not plan.saturates) or Cg % 2 == 0 or taps == 1


def _conv2d_core(x_nhwc, w_ohwi, b, st, pd, dl, g, a_s, a_zp, wt, out_s, out_zp, relu, saturate, kname, threads,
                 return_intermediates):
    from . import _core

    res = _core.conv2d_nhwc(x_nhwc, w_ohwi, b, tuple(st), tuple(pd), tuple(dl), int(g), a_s, a_zp, wt.scale,
                            wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), bool(saturate), kname,
                            _core.default_threads() if threads is None else threads, bool(return_intermediates))
    if return_intermediates:
        return res[0], (res[1], res[2], res[3])
    return res, None


def _conv3d_via_conv2d(a_ndhwc, a_s, a_zp, wt, b, st, pd, dl, g, out_s, out_zp, relu, plan, kname, threads,
                       return_intermediates):
    """conv3d as one conv2d over N*OD images whose channels are (kd, c) per group: the depth taps
    are gathered into channels (out-of-range depth holds a_zp, fbgemm's padding value), the
    weight becomes (O, KH, KW, KD*Cg). Same products, same zero-point terms (K and the row sums
    include the same a_zp taps) and, where _pairs_survive_reordering, the same saturated pairs:
    the same bytes as the N-d reference, through the fast conv2d kernels."""
    N, D, H, W, C = a_ndhwc.shape
    O, Cg, KD, KH, KW = wt.oihw.shape
    OD = (D + 2 * pd[0] - dl[0] * (KD - 1) - 1) // st[0] + 1
    if KD == 1 and st[0] == 1 and pd[0] == 0:
        x4 = a_ndhwc.reshape(N * D, H, W, C)
    else:
        xp = a_ndhwc
        if pd[0]:
            fill = np.full((N, pd[0], H, W, C), a_zp, np.uint8)
            xp = np.concatenate([fill, a_ndhwc, fill], axis=1)
        idx = np.arange(OD)[:, None] * st[0] + np.arange(KD)[None, :] * dl[0]  # (OD, KD)
        xg = xp[:, idx]  # (N, OD, KD, H, W, C)
        xg = xg.reshape(N, OD, KD, H, W, g, Cg).transpose(0, 1, 3, 4, 5, 2, 6)
        x4 = np.ascontiguousarray(xg).reshape(N * OD, H, W, g * KD * Cg)
    w4 = np.ascontiguousarray(wt.oihw.transpose(0, 3, 4, 2, 1)).reshape(O, KH, KW, KD * Cg)
    out, inter = _conv2d_core(x4, w4, b, st[1:], pd[1:], dl[1:], g, a_s, a_zp, wt, out_s, out_zp, relu,
                              plan.saturates, kname, threads, return_intermediates)

    def five(x):
        return x.reshape((N, OD) + x.shape[1:])

    return five(out), (None if inter is None else tuple(five(v) for v in inter))


def _onednn_nd(fn, a, a_s, a_zp, wt, w_conv, b, st, pd, dl, g, out_sp, out_s, out_zp, relu, transposed, isa,
               return_intermediates, onednn_kernel=None, threads=None):
    """torch's x86/onednn engine: oneDNN's arithmetic (qref/onednn_nd.py). ``a`` (N, C, *S);
    ``w_conv`` (O, Cg, *k) in conv form; ``onednn_kernel``: the implementation torch's oneDNN
    reported (overrides the shape rules). Returns the uint8 output (N, O, *OS)."""
    from ._onednn_verbose import checked_kernel
    from .conv import OneDNNNotSupportedError
    from .onednn import resolve_class
    from .onednn_nd import run

    onednn_kernel = checked_kernel(fn, onednn_kernel, "deconvolution" if transposed else "convolution",
                                   resolve_class(isa))
    if return_intermediates:
        raise ValueError(f"{fn}: return_intermediates=True is not available for the oneDNN engines' {fn} (use "
                         f"engine='fbgemm', or qref.conv2d for a 2D layer)")
    if not bool(np.all(wt.zero_point == 0)):
        raise OneDNNNotSupportedError(
            f"{fn}: engine='onednn' with weight zero points {wt.zero_point.tolist()[:8]}: torch's oneDNN conv "
            f"requires symmetric weights (all zero points 0) and refuses this prepack")
    x_cl = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    out = run(x_cl, a_s, a_zp, np.ascontiguousarray(w_conv), wt.scale, b, st, pd, dl, g, out_sp, out_s, out_zp,
              relu, transposed, isa, onednn_kernel or None, threads)
    return np.ascontiguousarray(np.moveaxis(out, -1, 1))


def _isas(engine: Any) -> tuple:
    """The isa names a layer takes: fbgemm's, plus oneDNN's classes for the x86/onednn engines."""
    from .conv import ISAS

    return ISAS if engine == "fbgemm" else ISAS + ("amx", "avx512_core", "sse41")


def conv3d(
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
    reproduce_defects: bool = False,
    onednn_kernel: Optional[str] = None,
) -> Any:
    """Quantized conv3d, bit-exact with torch's fbgemm ``quantized::conv3d(_relu)``.

    ``input`` (N, C, D, H, W), ``weight`` (O, C/groups, kD, kH, kW). fbgemm paths (SPEC.md §3):
    depthwise 3D (K_d in {3,5,7}, K_h == K_w in {3,5,7}, "same" padding, stride 1/2, G % 8 == 0;
    int16-saturating tap pairs on every CPU), groupwise 3D, pointwise, im2col in (kd, kh, kw, c)
    order. ``reproduce_defects=True`` reproduces fbgemm's int16-saturating activation row sum of the
    depthwise 3D kernel (wrong when a weight zero point != 0 and a receptive field sums past
    32767, e.g. 7x7x7); the default computes the mathematically correct row sum
    (see :func:`known_torch_defect`).
    """
    from .conv import Intermediates, onednn_would_run

    fn = "conv3d"
    a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, 5, "(N, C, D, H, W)",
                                           materialize=False)
    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point, 5)
    N, C, D, H, W = a.shape
    O, Cg, KD, KH, KW = wt.oihw.shape
    g = _groups(fn, groups)
    st = _as_tuple(fn, "stride", stride, 3, 1)
    pd = _as_tuple(fn, "padding", padding, 3, 0)
    dl = _as_tuple(fn, "dilation", dilation, 3, 1)
    _check_channels(fn, C, O, Cg, g, (KD, KH, KW))
    check_conv_output(fn, N, C, O, (D, H, W), (KD, KH, KW), st, pd, dl, g)  # before anything is allocated
    a = np.ascontiguousarray(a)
    b = _bias_operand(fn, bias, O)
    out_s, out_zp = _output_quant(fn, output_scale, output_zero_point)
    check_bool(fn, "relu", relu)
    kname, nthreads = _run_args(fn, return_intermediates, engine, isa, kernel, threads, _isas(engine))
    check_bool(fn, "reproduce_defects", reproduce_defects)
    if engine == "onednn" or (engine == "x86" and onednn_would_run(wt, g, isa)):
        out_sp = tuple((n + 2 * p - d * (k - 1) - 1) // s_ + 1
                       for n, p, d, k, s_ in zip((D, H, W), pd, dl, (KD, KH, KW), st))
        out = _onednn_nd(fn, a, a_s, a_zp, wt, wt.oihw, b, st, pd, dl, g, out_sp, out_s, out_zp, bool(relu), False,
                         isa, return_intermediates, onednn_kernel, nthreads)
        return _wrap(out, from_torch, out_s, out_zp)
    from .conv import _no_onednn_kernel

    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        from .onednn import fbgemm_isa

        isa = fbgemm_isa(isa)  # the fbgemm name of a machine named by a oneDNN class
    plan = _nd_plan((N, C, D, H, W), (O, Cg, KD, KH, KW), st, pd, dl, g, False, isa)
    a_ndhwc = np.ascontiguousarray(a.transpose(0, 2, 3, 4, 1))
    # kernel="scalar" runs the normative N-d reference; the other kernels run the conv2d core on
    # the depth-gathered problem where that is the same arithmetic (never for depthwise, whose
    # tap pairs would change, nor for reproduce_defects / intermediates).
    if (kname != "scalar" and plan.path != "depthwise" and not reproduce_defects and not return_intermediates
            and _pairs_survive_reordering(plan, Cg, KD * KH * KW)):
        out, inter = _conv3d_via_conv2d(a_ndhwc, a_s, a_zp, wt, b, st, pd, dl, g, out_s, out_zp, relu, plan,
                                        kname, nthreads, False)
    else:
        out, inter = _run_nd(fn, a_ndhwc, a_s, a_zp, np.ascontiguousarray(wt.oihw.transpose(0, 2, 3, 4, 1)), wt, b,
                             st, pd, dl, (0, 0, 0), g, False, 3, out_s, out_zp, relu, plan, reproduce_defects,
                             nthreads, return_intermediates, kname)

    def ncdhw(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x.transpose(0, 4, 1, 2, 3))

    result = _wrap(ncdhw(out), from_torch, out_s, out_zp)
    if return_intermediates:
        return result, Intermediates(ncdhw(inter[0]), ncdhw(inter[1]), ncdhw(inter[2]), plan)
    return result


def _check_channels(fn: str, C: int, O: int, Cg: int, g: int, ks: tuple, transposed: bool = False) -> None:
    if C % g != 0:
        raise ValueError(f"{fn}: input has {C} channels, not divisible by groups={g}")
    if O % g != 0:
        raise ValueError(f"{fn}: weight has {O} output channels, not divisible by groups={g}")
    if Cg * g != C:
        what = "weight has {} input channels in total".format(Cg * g) if transposed else \
            f"weight has {Cg} input channels per group"
        raise ValueError(f"{fn}: {what} but input has {C} channels with groups={g} "
                         f"(input channels must equal groups * weight channels per group)")
    if O == 0 or Cg == 0 or min(ks) == 0:
        raise ValueError(f"{fn}: weight has a zero dimension; every dimension must be >= 1")


def _transposed_weight(fn: str, w: np.ndarray, groups: int, C: int) -> tuple[np.ndarray, int, int]:
    """torch's [IC][OC/G][k...] -> qref's [OC][IC/G][k...] (= fbgemm's [G][OC/G][k...][IC/G]
    after moving channels last; no kernel flip; qconv_prepack.cpp / fbgemm_utils.cpp)."""
    IC, OCg = w.shape[0], w.shape[1]
    ks = w.shape[2:]
    if IC != C:
        raise ValueError(f"{fn}: weight has {IC} input channels (dim 0 of a transposed-conv weight "
                         f"(IC, OC/groups, k...)) but input has {C} (they must match)")
    if IC % groups != 0:
        raise ValueError(f"{fn}: weight has {IC} input channels, not divisible by groups={groups}")
    ICg = IC // groups
    v = w.reshape((groups, ICg, OCg) + tuple(ks))
    perm = (0, 2, 1) + tuple(range(3, 3 + len(ks)))
    return np.ascontiguousarray(v.transpose(perm).reshape((groups * OCg, ICg) + tuple(ks))), groups * OCg, ICg


def conv_transpose2d(
    input: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    input_scale: Any = None,
    input_zero_point: Any = None,
    weight_scale: Any = None,
    weight_zero_point: Any = None,
    output_scale: Any,
    output_zero_point: Any,
    engine: str = "fbgemm",
    isa: str = "auto",
    kernel: str = "auto",
    threads: Optional[int] = None,
    return_intermediates: bool = False,
    reproduce_defects: bool = False,
    onednn_kernel: Optional[str] = None,
) -> Any:
    """Quantized ConvTranspose2d, bit-exact with torch's fbgemm ``quantized::conv_transpose2d``.

    ``input`` (N, C, H, W); ``weight`` torch's layout (C, O/groups, kH, kW), per-tensor only (torch
    rejects per-channel weights for transposed convs). Two fbgemm paths: the direct transposed path
    (groups 1, C % 8 == 0, O % 8 == 0, kH == 2, kW <= 6, stride 1/2, no padding, no dilation;
    always int16-saturating pairs of consecutive input channels; SPEC.md §4.5) and the transposed
    im2col path (SPEC.md §4.4). fbgemm's direct path is defective for N > 1, stride_h == 2 and a
    changed input size (:func:`known_torch_defect`); qref computes the correct result unless
    ``reproduce_defects=True`` (which reproduces the deterministic stride_h == 2 defect).
    """
    fn = "conv_transpose2d"
    a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, 4, "(N, C, H, W)",
                                           materialize=False)
    return _conv_transpose(fn, a, a_s, a_zp, from_torch, weight, weight_scale, weight_zero_point, 4, bias, stride,
                           padding, output_padding, groups, dilation, output_scale, output_zero_point, engine, isa,
                           kernel, threads, return_intermediates, reproduce_defects, onednn_kernel)


def conv_transpose1d(
    input: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    input_scale: Any = None,
    input_zero_point: Any = None,
    weight_scale: Any = None,
    weight_zero_point: Any = None,
    output_scale: Any,
    output_zero_point: Any,
    engine: str = "fbgemm",
    isa: str = "auto",
    kernel: str = "auto",
    threads: Optional[int] = None,
    return_intermediates: bool = False,
    reproduce_defects: bool = False,
    onednn_kernel: Optional[str] = None,
) -> Any:
    """Quantized ConvTranspose1d: torch runs it as conv_transpose2d on (N, C, 1, L) with kernel
    (1, k) (qconv.cpp ``QConv1dInt8`` / ``QConvTranspose1d`` unsqueeze), so always the transposed
    im2col path (the direct path needs kH == 2). ``weight`` (C, O/groups, k)."""
    fn = "conv_transpose1d"
    a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, 3, "(N, C, L)",
                                           materialize=False)
    (st,) = _as_tuple(fn, "stride", stride, 1, 1)
    (pd,) = _as_tuple(fn, "padding", padding, 1, 0)
    (op,) = _as_tuple(fn, "output_padding", output_padding, 1, 0)
    (dl,) = _as_tuple(fn, "dilation", dilation, 1, 1)
    res = _conv_transpose(fn, a[:, :, None, :], a_s, a_zp, from_torch, weight, weight_scale, weight_zero_point, 3,
                          bias, (1, st), (0, pd), (0, op), groups, (1, dl), output_scale, output_zero_point, engine,
                          isa, kernel, threads, return_intermediates, reproduce_defects, onednn_kernel)
    if return_intermediates:
        from .conv import Intermediates

        out, it = res
        sq = _squeeze_h(out, from_torch)
        return sq, Intermediates(it.acc[:, :, 0], it.raw[:, :, 0], it.y[:, :, 0], it.plan)
    return _squeeze_h(res, from_torch)


def conv_transpose3d(
    input: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: Any = 1,
    padding: Any = 0,
    output_padding: Any = 0,
    groups: int = 1,
    dilation: Any = 1,
    input_scale: Any = None,
    input_zero_point: Any = None,
    weight_scale: Any = None,
    weight_zero_point: Any = None,
    output_scale: Any,
    output_zero_point: Any,
    engine: str = "fbgemm",
    isa: str = "auto",
    kernel: str = "auto",
    threads: Optional[int] = None,
    return_intermediates: bool = False,
    reproduce_defects: bool = False,
    onednn_kernel: Optional[str] = None,
) -> Any:
    """Quantized ConvTranspose3d, bit-exact with torch's fbgemm ``quantized::conv_transpose3d``:
    always the transposed im2col path in (kd, kh, kw, c) order (fbgemm's direct path is 2D only).
    ``input`` (N, C, D, H, W); ``weight`` (C, O/groups, kD, kH, kW), per-tensor."""
    fn = "conv_transpose3d"
    a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, 5, "(N, C, D, H, W)",
                                           materialize=False)
    return _conv_transpose(fn, a, a_s, a_zp, from_torch, weight, weight_scale, weight_zero_point, 5, bias, stride,
                           padding, output_padding, groups, dilation, output_scale, output_zero_point, engine, isa,
                           kernel, threads, return_intermediates, reproduce_defects, onednn_kernel)


def _squeeze_h(out: Any, from_torch: bool) -> Any:
    if from_torch:
        import torch

        r = out.int_repr()[:, :, 0, :].contiguous()
        return torch._make_per_tensor_quantized_tensor(r, out.q_scale(), out.q_zero_point())
    return np.ascontiguousarray(out[:, :, 0, :])


_TRANSPOSED_WEIGHT_LAYOUT = {3: "(C, O/groups, k)", 4: "(C, O/groups, kH, kW)", 5: "(C, O/groups, kD, kH, kW)"}


def _conv_transpose(fn, a, a_s, a_zp, from_torch, weight, weight_scale, weight_zero_point, wdim, bias, stride,
                    padding, output_padding, groups, dilation, output_scale, output_zero_point, engine, isa, kernel,
                    threads, return_intermediates, reproduce_defects, onednn_kernel=None):
    """2D (``a`` is (N, C, H, W); a 1D weight gets a unit kernel height) or 3D (N, C, D, H, W)."""
    from .conv import Intermediates

    wt = _weight_operand(fn, weight, weight_scale, weight_zero_point, wdim, _TRANSPOSED_WEIGHT_LAYOUT[wdim])
    if wt.per_channel:
        raise ValueError(f"{fn}: weight is per-channel quantized; torch's fbgemm rejects that for transposed convs "
                         f"('Per Channel Quantization is currently disabled for transposed conv'), so qref does too "
                         f"(use a per-tensor weight)")
    nd = a.ndim - 2
    w = wt.oihw if wdim == nd + 2 else wt.oihw[:, :, None, :]
    N, C = a.shape[:2]
    spatial = a.shape[2:]
    g = _groups(fn, groups)
    st = _as_tuple(fn, "stride", stride, nd, 1)
    pd = _as_tuple(fn, "padding", padding, nd, 0)
    op = _as_tuple(fn, "output_padding", output_padding, nd, 0)
    dl = _as_tuple(fn, "dilation", dilation, nd, 1)
    if w.shape[0] == 0 or w.shape[1] == 0 or min(w.shape[2:]) == 0:
        raise ValueError(f"{fn}: weight has shape {tuple(wt.oihw.shape)}; every dimension must be >= 1")
    w_oihw, O, Cg = _transposed_weight(fn, w, g, C)
    ks = tuple(w_oihw.shape[2:])
    for i, (n_in, k) in enumerate(zip(spatial, ks)):
        if op[i] >= max(st[i], dl[i]):
            raise ValueError(f"{fn}: output_padding={op[i]} in spatial dim {i} must be smaller than stride "
                             f"({st[i]}) or dilation ({dl[i]}) (torch's rule)")
    check_conv_output(fn, N, C, O, tuple(spatial), ks, st, pd, dl, g, op)  # before anything is allocated
    a = np.ascontiguousarray(a)
    b = _bias_operand(fn, bias, O)
    out_s, out_zp = _output_quant(fn, output_scale, output_zero_point)
    kname, nthreads = _run_args(fn, return_intermediates, engine, isa, kernel, threads, _isas(engine))
    check_bool(fn, "reproduce_defects", reproduce_defects)
    if engine == "onednn" or (engine == "x86" and _onednn_would_run_transposed(wt, g, op, isa)):
        if any(op):
            raise ValueError(f"{fn}: output_padding={op} with engine='onednn': torch's oneDNN transposed conv needs "
                             f"zero output_padding ('ONEDNN only supports zero output_padding'; the x86 engine sends "
                             f"such convs to fbgemm)")
        out_sp = tuple((n - 1) * s_ - 2 * p + d * (k - 1) + 1 for n, s_, p, d, k in zip(spatial, st, pd, dl, ks))
        out = _onednn_nd(fn, a, a_s, a_zp, wt, w_oihw, b, st, pd, dl, g, out_sp, out_s, out_zp, False, True, isa,
                         return_intermediates, onednn_kernel, nthreads)
        return _wrap(out, from_torch, out_s, out_zp)
    from .conv import _no_onednn_kernel

    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        from .onednn import fbgemm_isa

        isa = fbgemm_isa(isa)
    plan = _nd_plan((N, C) + tuple(spatial), (O, Cg) + ks, st, pd, dl, g, True, isa)
    # channels last; a 2D transposed conv runs in the N-d reference with a unit depth
    x_cl = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    if (nd == 2 and kname != "scalar" and plan.path == "im2col" and not return_intermediates
            and _pairs_survive_reordering(plan, Cg, int(np.prod(ks)))):
        # the other kernels: the conv2d core on the spread-out input (kernel="scalar": the reference)
        out = _convt2d_via_conv2d(x_cl, a_s, a_zp, w_oihw, wt, b, st, pd, dl, op, g, out_s, out_zp, plan, kname,
                                  nthreads)
        return _wrap(np.ascontiguousarray(out.transpose(0, 3, 1, 2)), from_torch, out_s, out_zp)
    w_cl = np.ascontiguousarray(np.moveaxis(w_oihw, 1, -1))
    if nd == 2:
        x_cl, w_cl = x_cl[:, None], w_cl[:, None]
        st, pd, dl, op = (1,) + st, (0,) + pd, (1,) + dl, (0,) + op
    out, inter = _run_nd(fn, x_cl, a_s, a_zp, w_cl, wt, b, st, pd, dl, op, g, True, nd, out_s, out_zp, False, plan,
                         reproduce_defects, nthreads, return_intermediates, kname)

    def channels_first(x: np.ndarray) -> np.ndarray:
        if nd == 2:
            x = x[:, 0]
        return np.ascontiguousarray(np.moveaxis(x, -1, 1))

    result = _wrap(channels_first(out), from_torch, out_s, out_zp)
    if return_intermediates:
        return result, Intermediates(channels_first(inter[0]), channels_first(inter[1]), channels_first(inter[2]),
                                     plan)
    return result


def _convt2d_via_conv2d(x_nhwc, a_s, a_zp, w_oihw, wt, b, st, pd, dl, op, g, out_s, out_zp, plan, kname, threads):
    """fbgemm's transposed im2col reads input row (oh + pad - r*dil) / stride, or a_zp when that is
    not an integer inside the input (SPEC.md §4.4). That is an ordinary stride-1 conv over the input
    spread out by the stride with a_zp everywhere else (and a_zp borders of dil*(k-1) - pad, plus
    output_padding at the end), with the kernel flipped: tap r reads spread index
    oh + (k-1-r)*dil. Same products, same a_zp taps, so the same row sums and zero-point terms;
    the tap order is reversed, which keeps the saturated pairs where _pairs_survive_reordering."""
    N, H, W, C = x_nhwc.shape
    O, Cg, KH, KW = w_oihw.shape
    ks = (KH, KW)
    out_hw = [(n - 1) * s - 2 * p + d * (k - 1) + o + 1 for n, s, p, d, k, o in zip((H, W), st, pd, dl, ks, op)]
    size = [o + d * (k - 1) for o, d, k in zip(out_hw, dl, ks)]
    off = [d * (k - 1) - p for d, k, p in zip(dl, ks, pd)]  # spread index of input 0
    u = np.full((N, size[0], size[1], C), a_zp, np.uint8)
    # input i lands at i*stride + off; keep those inside the spread image
    sel = []
    for n_in, s_, o_, sz in zip((H, W), st, off, size):
        pos = np.arange(n_in) * s_ + o_
        keep = (pos >= 0) & (pos < sz)
        sel.append((np.flatnonzero(keep), pos[keep]))
    (ih, uh), (iw, uw) = sel
    u[:, uh[:, None], uw[None, :]] = x_nhwc[:, ih[:, None], iw[None, :]]
    w_flip = np.ascontiguousarray(w_oihw[:, :, ::-1, ::-1].transpose(0, 2, 3, 1))
    out, _ = _conv2d_core(u, w_flip, b, (1, 1), (0, 0), dl, g, a_s, a_zp, wt, out_s, out_zp, False,
                          plan.saturates, kname, threads, False)
    return out


def _onednn_would_run_transposed(wt, groups: int, output_padding: tuple, isa: str) -> bool:
    """should_use_onednn_quant for a transposed conv (SPEC.md §1): also needs zero output_padding."""
    from .conv import onednn_would_run

    return all(v == 0 for v in output_padding) and onednn_would_run(wt, groups, isa)


# ----------------------------------------------------------------------------- torch's known defects


def known_torch_defect(params: Any, input_shape: Any, *, first_input_shape: Any = None,
                       input_zero_point: Optional[int] = None, isa: str = "auto") -> Optional[str]:
    """Why torch's fbgemm output is wrong for this layer and input, or None.

    ``params``: a params object from ``qref.from_torch`` (any layer kind). ``input_shape``: the
    torch input's shape (N, C, ...). Where this returns a reason, qref's default output is the
    mathematically correct one and torch's differs from it (``qref.check`` should report "torch is
    wrong here" with this reason instead of a qref mismatch):

    - conv3d on fbgemm's depthwise 3D path with an input dimension smaller than its padding: the
      kernel reads out of bounds (torch usually segfaults).
    - conv3d on fbgemm's depthwise 3D path with a weight zero point != 0 whose receptive field can
      sum past 32767 (more than 128 taps, e.g. 7x7x7): the kernel accumulates the activation row
      sum with saturating int16 adds (vpaddsw; SPEC.md §4.2). Deterministic: qref reproduces it with
      ``reproduce_defects=True`` (a data-dependent check: compare torch with that).
    - conv_transpose2d on fbgemm's direct path (SPEC.md §4.5): N > 1 (only image 0 is computed;
      the others are uninitialized memory, not reproducible); stride_h == 2 (rows placed as if
      stride_h were 1; reproduced with ``reproduce_defects=True``); an input size different from the
      module's first call with an input zero point != 0 (column offsets cached from the first call;
      only detectable when ``first_input_shape`` is given).
    """
    kind = getattr(params, "kind", "")
    shape = tuple(int(v) for v in input_shape)
    eng = getattr(params, "engine", "fbgemm")
    if kind == "conv_transpose" and eng != "fbgemm":
        from .onednn import host_has_vnni, transposed_defect

        if eng == "onednn" or (host_has_vnni(isa) and not any(params.output_padding) and params.groups <= 100):
            # torch's x86/onednn deconvolution with in_channels != out_channels (SPEC.md §6.5)
            IC, OCg = params.weight.shape[:2]
            return transposed_defect(int(IC), int(OCg) * int(params.groups), int(params.groups))
    if kind == "conv3d" and eng != "fbgemm":
        return None  # the fbgemm defects below are not oneDNN's
    if kind == "conv3d":
        plan = params.plan(shape, isa)
        taps = int(np.prod(params.weight.shape[2:]))
        pad = tuple(int(v) for v in params.padding) if params.padding_mode == "zeros" else (0, 0, 0)
        if plan.path == "depthwise" and any(n < p for n, p in zip(shape[2:], pad)):
            return (f"fbgemm's depthwise 3D kernel reads out of bounds when an input dimension is smaller than its "
                    f"padding (input {shape[2:]}, padding {pad}): torch usually crashes (SIGSEGV) and otherwise "
                    f"computes from unrelated memory (E: tests/test_conv_nd.py); qref computes the correct value")
        if plan.path == "depthwise" and bool(np.any(params.weight_zero_point != 0)) and taps * 255 > 32767:
            kd, kh, kw = params.weight.shape[2:]
            return (f"fbgemm's depthwise 3D kernel ({kd}x{kh}x{kw}, {taps} taps) sums each receptive field's "
                    f"activations with saturating int16 adds (vpaddsw), so sums above 32767 are clipped, and the "
                    f"weight zero point != 0 multiplies that wrong row sum into the output (SPEC.md §4.2); qref "
                    f"computes the correct value (reproduce_defects=True gives torch's)")
        return None
    if kind == "conv_transpose" and params.weight.ndim == 4:
        IC, OCg = params.weight.shape[:2]
        g = params.groups
        plan = conv_nd_plan(shape, (OCg * g, IC // g) + tuple(params.weight.shape[2:]), params.stride,
                            params.padding, params.dilation, g, transposed=True, isa=isa)
        if plan.path != "direct":
            return None
        if shape[0] > 1:
            return (f"fbgemm's direct transposed conv computes image 0 only (no batch loop, thread 0 only): images "
                    f"1..{shape[0] - 1} of the N={shape[0]} output are uninitialized memory (SPEC.md §4.5); qref "
                    f"computes every image correctly")
        if params.stride[0] == 2:
            return ("fbgemm's direct transposed conv places input row j's contributions at output rows j + kh "
                    "instead of 2j + kh when stride_h == 2 (its host loop and row sums assume stride_h == 1; "
                    "SPEC.md §4.5); qref computes the correct value (reproduce_defects=True gives torch's)")
        if first_input_shape is not None and tuple(int(v) for v in first_input_shape) != shape and \
                (input_zero_point is None or input_zero_point != 0):
            return (f"fbgemm's direct transposed conv caches its per-position column offsets on the module's first "
                    f"call (input {tuple(first_input_shape)}); with input {shape} and an input zero point != 0 they "
                    f"are wrong (SPEC.md §4.5); qref computes the correct value")
    return None
