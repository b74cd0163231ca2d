"""fbgemm's other conv layers on the C++ core: Conv3d (5-d) and the transposed convs, and the
exact reformulations that run them on the conv2d core's fast kernels.

- conv3d: the 3D paths of fbgemm (docs/numerics.md §3, §4.2): depthwise 3D, groupwise 3D,
  pointwise, im2col in (kd, kh, kw, c) order;
- transposed: fbgemm's im2col transposed path (docs/numerics.md §4.4) and its direct transposed
  path (§4.5, 2D only).
The normative N-d reference is csrc/qref/fbgemm/kernels/conv_nd_scalar.cc (kernel="scalar"); the other
kernels run exact reformulations on the conv2d core or vectorised loops (same bytes).
"""

from __future__ import annotations

import numpy as np

from ... import _core
from ...common.isa import isa_semantics
from ...common.validate import check_bool, check_plan_args
from .conv2d import ConvPlan


def _saturates(path: str, sem) -> bool:
    """Whether fbgemm's path sums int16-saturating pairs (docs/numerics.md §4.6)."""
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


def _nd_plan(input_shape, weight_shape, stride, padding, dilation, groups, transposed: bool, isa: str) -> ConvPlan:
    """conv_nd_plan of arguments already checked (the layer functions' own)."""
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
    # kernel="scalar": the plain reference loops; any other kernel: the vectorised depthwise and
    # direct-transposed loops where they apply (same bytes).
    res = _core.conv_nd_ndhwc(
        a_ndhwc, w_odhwi, b, list(st3), list(pd3), list(dl3), list(op3), int(groups), bool(transposed), sd,
        a_s, a_zp, wt.scale, wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), plan.path,
        plan.saturates, bool(reproduce_defects), _core.default_threads() if threads is None else threads,
        bool(return_intermediates), kname)
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
    res = _core.conv2d_nhwc(x_nhwc, w_ohwi, b, tuple(st), tuple(pd), tuple(dl), int(g), a_s, a_zp, wt.scale,
                            wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), bool(saturate), kname,
                            _core.default_threads() if threads is None else threads, bool(return_intermediates))
    if return_intermediates:
        return res[0], (res[1], res[2], res[3])
    return res, None


def gather_depth(a_ndhwc: np.ndarray, a_zp: int, KD: int, sd: int, pdd: int, dld: int, g: int) -> tuple:
    """The input of conv3d-as-conv2d (_conv3d_via_conv2d): (N*OD, H, W, g*KD*Cg) with channels
    (g, kd, c), out-of-range depth taps holding a_zp; returns (x4, OD)."""
    N, D, H, W, C = a_ndhwc.shape
    Cg = C // g
    OD = (D + 2 * pdd - dld * (KD - 1) - 1) // sd + 1
    if KD == 1 and sd == 1 and pdd == 0:
        return a_ndhwc.reshape(N * D, H, W, C), OD
    xp = a_ndhwc
    if pdd:
        fill = np.full((N, pdd, H, W, C), a_zp, np.uint8)
        xp = np.concatenate([fill, a_ndhwc, fill], axis=1)
    idx = np.arange(OD)[:, None] * sd + np.arange(KD)[None, :] * dld  # (OD, KD)
    xg = xp[:, idx]  # (N, OD, KD, H, W, C)
    xg = xg.reshape(N, OD, KD, H, W, g, Cg).transpose(0, 1, 3, 4, 5, 2, 6)
    return np.ascontiguousarray(xg).reshape(N * OD, H, W, g * KD * Cg), OD


def _conv3d_via_conv2d(a_ndhwc, a_s, a_zp, wt, b, st, pd, dl, g, out_s, out_zp, relu, plan, kname, threads,
                       return_intermediates):
    """conv3d as one conv2d over N*OD images whose channels are (kd, c) per group: the depth taps
    are gathered into channels (out-of-range depth holds a_zp, fbgemm's padding value), the
    weight becomes (O, KH, KW, KD*Cg). Same products, same zero-point terms (K and the row sums
    include the same a_zp taps) and, where _pairs_survive_reordering, the same saturated pairs:
    the same bytes as the N-d reference, through the fast conv2d kernels."""
    N = a_ndhwc.shape[0]
    O, Cg, KD, KH, KW = wt.oihw.shape
    x4, OD = gather_depth(a_ndhwc, a_zp, KD, st[0], pd[0], dl[0], g)
    w4 = np.ascontiguousarray(wt.oihw.transpose(0, 3, 4, 2, 1)).reshape(O, KH, KW, KD * Cg)
    out, inter = _conv2d_core(x4, w4, b, st[1:], pd[1:], dl[1:], g, a_s, a_zp, wt, out_s, out_zp, relu,
                              plan.saturates, kname, threads, return_intermediates)

    def five(x):
        return x.reshape((N, OD) + x.shape[1:])

    return five(out), (None if inter is None else tuple(five(v) for v in inter))


def spread_input(x_nhwc: np.ndarray, a_zp: int, ks: tuple, st, pd, dl, op) -> np.ndarray:
    """The input of a 2D transposed conv as a stride-1 conv (_convt2d_via_conv2d): input i at
    spread index i*stride + dil*(k-1) - pad, a_zp everywhere else (N, SH, SW, C)."""
    N, H, W, C = x_nhwc.shape
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
    return u


def _convt2d_via_conv2d(x_nhwc, a_s, a_zp, w_oihw, wt, b, st, pd, dl, op, g, out_s, out_zp, plan, kname, threads):
    """fbgemm's transposed im2col reads input row (oh + pad - r*dil) / stride, or a_zp when that is
    not an integer inside the input (docs/numerics.md §4.4). That is an ordinary stride-1 conv over the input
    spread out by the stride with a_zp everywhere else (and a_zp borders of dil*(k-1) - pad, plus
    output_padding at the end), with the kernel flipped: tap r reads spread index
    oh + (k-1-r)*dil. Same products, same a_zp taps, so the same row sums and zero-point terms;
    the tap order is reversed, which keeps the saturated pairs where _pairs_survive_reordering."""
    u = spread_input(x_nhwc, a_zp, w_oihw.shape[2:], st, pd, dl, op)
    w_flip = np.ascontiguousarray(w_oihw[:, :, ::-1, ::-1].transpose(0, 2, 3, 1))
    out, _ = _conv2d_core(u, w_flip, b, (1, 1), (0, 0), dl, g, a_s, a_zp, wt, out_s, out_zp, False,
                          plan.saturates, kname, threads, False)
    return out
