"""torch's "x86"/"onednn" engine for Conv3d and the transposed convs (oneDNN convolution and
deconvolution), as torch 2.13 drives oneDNN (docs/onednn.md, "Conv3d and transposed convs").

torch's x86 engine sends these to oneDNN exactly as it does Conv2d (symmetric weights, groups <=
100, zero output_padding, an AVX512-VNNI Linux host; docs/numerics.md §1); Conv1d and ConvTranspose1d run
as their 2D forms with a unit height. Measured on this project's AVX512-VNNI host with
ONEDNN_VERBOSE=1 (tests/test_onednn_nd.py), oneDNN's "vnni" class runs:

========================================  ==============================  =========================
shape                                     kernel                          arithmetic
========================================  ==============================  =========================
Conv3d                                    brg_conv_fwd, brgconv_1x1,      as Conv2d's vnni class:
                                          jit_int8, brdgmm_dw             A = exact int32 over the
                                                                          real taps, separate scales
Conv3d depthwise with dilation > 1        x64:gemm_s8u8s32 (gemm conv)    ``_GEMM_CONV`` below
transposed                                brg_deconv, jit_deconvolution   as the conv: exact int32,
                                                                          separate scales
transposed shapes neither takes           conv:any (ref_deconvolution     A through float (below),
(``_deconv_kernel_is_ref``)               over gemm backward-data)        separate scales, divides
                                                                          by the dst scale
========================================  ==============================  =========================

ref_deconvolution (oneDNN src/cpu/ref_deconvolution.cpp, ``apply_src_zero_point``) takes the
backward-data conv's int32 sum over the real taps as float, subtracts the zero-point
compensation over *all* taps in float, truncates to int32, adds back the compensation of the
taps that fall outside the input in int32, and converts to float again:
``A = f32(int32(trunc(f32(f32(acc) - f32(zp*colsum_all)))) + zp*colsum_outside)``. That is the
exact value while |acc| < 2^24 and rounds like oneDNN beyond.

The arithmetic runs in the C++ core: the "int" chain as one prepared oneDNN conv2d (_run_core),
the other chains in oneDNN's N-d reference loop (_run_reference, csrc/qref/onednn/conv_nd.cc), both
with oneDNN's one requantization (csrc/qref/onednn/requant.h). Other oneDNN classes
(avx512_core, avx2: int16 pair saturation) are refused by name for these layers: torch's x86
engine never uses them (it picks fbgemm on non-VNNI hosts); the AMX class follows docs/numerics.md's
description: Conv1d and Conv3d follow the kernel torch's log names (measured against torch 2.13
on an AMX Xeon), transposed convs there run AMX deconvolution builds qref refuses by name.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ... import _core
from ...common.errors import OneDNNNotSupportedError
from ...common.onednn_isa import describe_class, resolve_class
from .conv2d import OnednnPlan, _warn_unverified, prepare_conv2d
from .kernel_names import checked_kernel, is_amx_build, kernel_family

_I32 = 1 << 32


def _tap_slices(k: int, n_in: int, n_out: int, s: int, p: int, d: int, transposed: bool):
    """(input slice, output slice) of one kernel tap along one dimension: the pairs (i, o) with
    o*s - p + k*d == i (conv) or i*s - p + k*d == o (deconvolution), both inside. One search either
    way: the strided index v runs over [0, n_v) with v*s - p + k*d in [0, n_t)."""
    n_v, n_t = (n_in, n_out) if transposed else (n_out, n_in)
    lo = 0
    while lo < n_v and lo * s - p + k * d < 0:
        lo += 1
    hi = n_v - 1
    while hi >= lo and hi * s - p + k * d >= n_t:
        hi -= 1
    if hi < lo:
        return None
    t0 = lo * s - p + k * d
    v_sl, t_sl = slice(lo, hi + 1), slice(t0, t0 + (hi - lo) * s + 1, s)
    return (v_sl, t_sl) if transposed else (t_sl, v_sl)


def _deconv_kernel_is_ref(nd: int, groups: int, Cg: int, Og: int, kernel, stride, dilation) -> bool:
    """Whether oneDNN falls back to ref_deconvolution: neither brg_deconv nor jit_deconvolution
    takes the shape. Fitted to ONEDNN_VERBOSE on 1,200 random transposed convs (1D/2D/3D, groups,
    depthwise, strides 1-3, dilations 1-2; 0 misses) and re-checked by
    tests/test_onednn_nd.py::test_kernel_rules_match_onednn_verbose:
    - brg_deconv: stride 1 everywhere and not depthwise (a flipped brgemm conv), or strided with
      every kernel size a multiple of its stride and no dilation anywhere (brgconv_strided);
    - jit_deconvolution: no dimension with both stride > 1 and dilation > 1, and groups == 1, or
      channels per group (in and out) multiples of 4, or depthwise in 2D (not 3D)."""
    dw = groups > 1 and Cg == 1 and Og == 1
    strided = any(s > 1 for s in stride)
    brg = (not strided and not dw) or (strided and all(k % s == 0 for k, s in zip(kernel, stride))
                                       and all(d == 1 for d in dilation))
    jit = (not any(s > 1 and d > 1 for s, d in zip(stride, dilation))
           and (groups == 1 or (dw and nd < 3) or (not dw and Cg % 4 == 0 and Og % 4 == 0)))
    return not (brg or jit)


def plan_nd(transposed: bool, nd: int, groups: int, Cg: int, Og: int, kernel, stride, dilation,
            isa: str = "auto", onednn_kernel: Optional[str] = None):
    """(OnednnPlan, compensation chain) of a Conv3d (nd 3) or transposed conv (nd 2 or 3; 1D as
    2D with a unit height) on the named oneDNN class. ``onednn_kernel``: the implementation name
    torch's oneDNN reported for this layer and input (qref.check reads it from oneDNN's verbose
    log); it overrides the shape rules. Raises OneDNNNotSupportedError where qref does not
    reproduce the class or the named kernel."""
    cls = resolve_class(isa)
    onednn_kernel = checked_kernel("conv_transpose" if transposed else f"conv{nd}d", onednn_kernel,
                                   "deconvolution" if transposed else "convolution", cls)
    if onednn_kernel:
        fam = kernel_family(onednn_kernel)
        if fam == "ref_deconv" and transposed:
            return OnednnPlan(cls, onednn_kernel, False, False, False, True, divide_dst=True), "ref_deconv"
        if fam == "gemm" and not transposed:
            return OnednnPlan(cls, onednn_kernel, False, True, False, True), "int"
        if fam == "fast" and is_amx_build(onednn_kernel):
            if transposed:
                raise OneDNNNotSupportedError(
                    f"conv_transpose: onednn_kernel={onednn_kernel!r} is an AMX build of oneDNN's deconvolution, "
                    f"whose arithmetic qref has not reproduced")
            # the AMX brgemm micro-kernel: combined scale, float compensation (as conv2d's)
            return OnednnPlan(cls, onednn_kernel, False, True, True, True), "float"
        if fam == "fast":
            return OnednnPlan(cls, onednn_kernel, False, False, False, True), "int"
        raise OneDNNNotSupportedError(
            f"{'conv_transpose' if transposed else f'conv{nd}d'}: onednn_kernel={onednn_kernel!r} names a oneDNN "
            f"kernel whose arithmetic qref has not reproduced")
    what = "transposed conv (oneDNN deconvolution)" if transposed else f"conv{nd}d"
    if cls not in ("vnni", "amx"):
        raise OneDNNNotSupportedError(
            f"{what}: torch's oneDNN runs this layer with its {cls} kernels ({describe_class(cls)}), whose int16 "
            f"pair order qref has not matched for {what}s (only the vnni class is reproduced; torch's x86 engine "
            f"uses oneDNN only on AVX512-VNNI hosts, and fbgemm elsewhere)")
    dw = groups > 1 and Cg == 1 and Og == 1
    if transposed:
        if _deconv_kernel_is_ref(nd, groups, Cg, Og, kernel, stride, dilation):
            # ref_deconvolution over gemm backward-data (ONEDNN_VERBOSE "conv:any+x64:gemm_s8u8s32")
            return OnednnPlan(cls, "conv:any+gemm_s8u8s32 (ref_deconvolution)", False, False, False, cls == "vnni",
                              divide_dst=True), "ref_deconv"
        if cls == "amx":
            # docs/numerics.md §6.2/§6.4: jit_deconvolution:avx512_core_vnni on the AMX Xeon, separate scales
            return OnednnPlan(cls, "jit_deconvolution:avx512_core_vnni", False, False, False, False), "int"
        return OnednnPlan(cls, "brg_deconv/jit_deconvolution:avx512_core_vnni", False, False, False, True), "int"
    if dw and any(d > 1 for d in dilation):
        return OnednnPlan(cls, "x64:gemm_s8u8s32 (gemm conv)", False, _GEMM_CONV["combined"], False,
                          cls == "vnni", divide_dst=_GEMM_CONV["divide_dst"]), "int"
    if cls == "amx" and not dw:
        return OnednnPlan(cls, "brg_conv_fwd:avx512_core_amx", False, True, True, False), "float"
    k = "brdgmm_dw" if dw else "brg_conv_fwd/brgconv_1x1/jit_int8"
    return OnednnPlan(cls, k + ":avx512_core_vnni", False, False, False, cls == "vnni"), "int"


# oneDNN's gemm convolution (gemm_x8s8s32x_convolution) requantization, found by experiment.
_GEMM_CONV = {"combined": True, "divide_dst": False}


def run(x_cl: np.ndarray, a_s: float, a_zp: int, w: np.ndarray, weight_scale: np.ndarray,
        bias: Optional[np.ndarray], stride, padding, dilation, groups: int, out_spatial, out_s: float,
        out_zp: int, relu: bool, transposed: bool, isa: str, onednn_kernel: Optional[str] = None,
        threads: Optional[int] = None) -> np.ndarray:
    """uint8 output (N, *OS, O) channels last. ``w`` (O, Cg, *k) in conv form (see integer_sums)."""
    nd = x_cl.ndim - 2
    O, Cg = w.shape[:2]
    p, chain = plan_nd(transposed, nd, groups, Cg, O // groups, w.shape[2:], stride, dilation, isa, onednn_kernel)
    if not p.verified:
        _warn_unverified(p)
    ws = np.broadcast_to(np.asarray(weight_scale, np.float64), (O,))
    if chain == "ref_deconv" and _ref_deconv_is_exact(w, a_zp):
        chain = "int"  # every float in ref_deconvolution's round trip holds its integer exactly
    if chain == "int" and not p.saturates:
        return _run_core(x_cl, a_s, a_zp, w, ws, bias, stride, padding, dilation, groups, out_spatial, out_s,
                         out_zp, relu, transposed, p, threads)
    return _run_reference(x_cl, a_s, a_zp, w, ws, bias, stride, padding, dilation, groups, out_spatial, out_s,
                          out_zp, relu, transposed, p, chain, threads)


def _run_reference(x_cl, a_s, a_zp, w, ws, bias, stride, padding, dilation, groups, out_spatial, out_s, out_zp,
                   relu, transposed, plan, chain: str, threads=None) -> np.ndarray:
    """oneDNN's N-d reference loop of the C++ core (csrc/qref/onednn/conv_nd.cc) with compensation
    chain ``chain``: "int", "float" (AMX micro-kernel) or "ref_deconv" (ref_deconvolution's float
    round trip, module doc). Same arguments as run; returns (N, *OS, O) uint8."""

    N, O = x_cl.shape[0], w.shape[0]
    nd = x_cl.ndim - 2
    if nd == 2:  # as 3D with a unit depth
        x_cl, w = x_cl[:, None], w[:, :, None]
        stride, padding, dilation = (1,) + tuple(stride), (0,) + tuple(padding), (1,) + tuple(dilation)
        out_spatial = (1,) + tuple(out_spatial)
    out = _core.onednn_conv_nd_ndhwc(
        np.ascontiguousarray(x_cl), np.ascontiguousarray(np.moveaxis(w, 1, -1)),
        None if bias is None else np.ascontiguousarray(bias, np.float32), [int(v) for v in stride],
        [int(v) for v in padding], [int(v) for v in dilation], [int(v) for v in out_spatial], int(groups),
        bool(transposed), float(a_s), int(a_zp), np.ascontiguousarray(np.broadcast_to(ws, (O,)), np.float64), True,
        float(out_s), int(out_zp), bool(relu), bool(plan.combined_scale), bool(plan.divide_dst), chain,
        _core.default_threads() if threads is None else threads)
    return out.reshape((N,) + tuple(out_spatial[3 - nd:]) + (O,))


def _ref_deconv_is_exact(w: np.ndarray, a_zp: int) -> bool:
    """ref_deconvolution's A equals the exact integer when every value it rounds to float32 is
    below 2^24: |acc| <= 255 * sum|w| and |a_zp * colsum| per output channel (their difference then
    too, as both have the same sign structure bounded by the same sums)."""
    wf = w.reshape(w.shape[0], -1).astype(np.int64)
    lim = 1 << 24
    return bool(255 * int(np.abs(wf).sum(axis=1).max()) < lim // 2 and
                abs(a_zp) * int(np.abs(wf.sum(axis=1)).max()) < lim // 2)


def _run_core(x_cl, a_s, a_zp, w, ws, bias, stride, padding, dilation, groups, out_spatial, out_s, out_zp, relu,
              transposed, plan, threads):
    """The "int" chain (A = sum over the real taps of (a - a_zp) * w, exact modulo 2^32) as one
    prepared oneDNN conv2d of the C++ core (csrc/qref/onednn/onednn.cc: the AVX512-VNNI GEMM with
    oneDNN's epilogue where the CPU has it). Taps that read no input are filled with a_zp: they add
    (a_zp - a_zp) * w = 0, so the 2D problem's A is the same integer.
    - transposed: the input spread out by the stride (a_zp between and around), then a stride-1
      conv with the kernel flipped (output o reads spread index o + j*d with tap K-1-j);
    - 3D: the depth taps gathered into channels (g, kd, c) of a conv2d over N*OD images."""
    N, C = x_cl.shape[0], x_cl.shape[-1]
    O, Cg = w.shape[:2]
    ks = tuple(w.shape[2:])
    nd = len(ks)
    a_zp8 = np.uint8(a_zp)
    if transposed:
        size = [o + d * (k - 1) for o, d, k in zip(out_spatial, dilation, ks)]
        u = np.full((N,) + tuple(size) + (C,), a_zp8, np.uint8)
        src, dst = [slice(None)], [slice(None)]
        for n_in, s_, p_, d, k, sz in zip(x_cl.shape[1:-1], stride, padding, dilation, ks, size):
            off = d * (k - 1) - p_
            keep = [i for i in range(n_in) if 0 <= i * s_ + off < sz]
            i0, i1 = (keep[0], keep[-1] + 1) if keep else (0, 0)  # none: every output reads only a_zp
            src.append(slice(i0, i1))
            dst.append(slice(i0 * s_ + off, (i1 - 1) * s_ + off + 1, s_) if keep else slice(0, 0))
        u[tuple(dst)] = x_cl[tuple(src)]
        x_cl, w = u, np.ascontiguousarray(w[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])
        stride, padding = (1,) * nd, (0,) * nd
    if nd == 3:
        KD = ks[0]
        OD = out_spatial[0]
        D = x_cl.shape[1]
        x7 = np.full((N, OD) + x_cl.shape[2:4] + (groups, KD, Cg), a_zp8, np.uint8)
        xr = x_cl.reshape(x_cl.shape[:4] + (groups, Cg))
        for kd in range(KD):
            ods = [od for od in range(OD) if 0 <= od * stride[0] - padding[0] + kd * dilation[0] < D]
            if ods:
                o0, o1 = ods[0], ods[-1] + 1
                i0 = o0 * stride[0] - padding[0] + kd * dilation[0]
                x7[:, o0:o1, :, :, :, kd] = xr[:, i0:i0 + (o1 - o0 - 1) * stride[0] + 1:stride[0]]
        x4 = x7.reshape((N * OD,) + x_cl.shape[2:4] + (groups * KD * Cg,))
        w4 = np.ascontiguousarray(w.transpose(0, 3, 4, 2, 1).reshape(O, ks[1], ks[2], KD * Cg))
        st2, pd2, dl2 = stride[1:], padding[1:], dilation[1:]
    else:
        x4 = np.ascontiguousarray(x_cl)
        w4 = np.ascontiguousarray(w.transpose(0, 2, 3, 1))
        st2, pd2, dl2 = stride, padding, dilation
    prep = prepare_conv2d(x4.shape, w4, bias, st2, pd2, dl2, groups, a_s, a_zp, np.ascontiguousarray(ws), True,
                          out_s, out_zp, relu, plan)
    out = _core.conv2d_run(prep, np.ascontiguousarray(x4), _core.default_threads() if threads is None else threads)
    return out.reshape((N,) + tuple(out_spatial) + (O,))
