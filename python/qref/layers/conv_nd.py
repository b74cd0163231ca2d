"""qref.conv1d, qref.conv3d, qref.conv_transpose1d/2d/3d: the other conv layers (validate, route to
fbgemm or oneDNN as torch's engine does, run there).

- conv1d: torch runs it as conv2d on (N, C, 1, L) with kernel (1, k), stride (1, s),
  padding (0, p), dilation (1, d) (pytorch qconv.cpp ``QConv1dInt8``, qconv_prepack.cpp
  ``QConv1dPackWeightInt8``: unsqueeze at dim 2). qref does exactly that with the conv2d core.
- conv3d: the 3D paths of fbgemm (docs/numerics.md §3, §4.2): depthwise 3D, groupwise 3D, pointwise,
  im2col in (kd, kh, kw, c) order.
- conv_transpose1d/2d/3d: fbgemm's im2col transposed path (docs/numerics.md §4.4) and its direct
  transposed path (§4.5, 2D only).
The fbgemm operations are in qref.engines.fbgemm.conv_nd, the oneDNN ones in qref.engines.onednn.nd.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Optional

import numpy as np

from ..common.layout import _wrap_quint8 as _wrap
from ..common.onednn_isa import resolve_class
from ..common.operands import _activation, _as_tuple, _bias_operand, _output_quant, _weight_operand
from ..common.validate import INT32_MAX, check_bool, check_conv_output, check_int, check_scale
from ..engines.fbgemm.conv2d import Intermediates, _conv_plan
from ..engines.fbgemm.conv_nd import (
    _conv3d_via_conv2d,
    _convt2d_via_conv2d,
    _nd_plan,
    _pairs_survive_reordering,
    _run_nd,
    gather_depth,
    spread_input,
)
from ..engines.onednn import nd as onednn_nd
from ..engines.onednn.kernel_names import checked_kernel
from ..routing import _no_onednn_kernel, _run_args, conv_runs_onednn, fbgemm_isa, require_symmetric
from .conv2d import conv2d


def _groups(fn: str, groups: Any) -> int:
    return check_int(fn, "groups", groups, 1, INT32_MAX, "must be an int in [1, 2^31-1]")


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
                 _fn="conv1d", _cache_objs=(weight, bias, weight_scale, weight_zero_point))
    out_s = check_scale(fn, "output_scale", output_scale)
    out_zp = int(output_zero_point)
    if return_intermediates:
        out, it = res
        # fbgemm's Intermediates or oneDNN's OnednnIntermediates: every array field loses the unit height
        it3 = replace(it, **{f.name: getattr(it, f.name)[:, :, 0, :] for f in fields(it)
                             if isinstance(getattr(it, f.name), np.ndarray)})
        o = out.int_repr().numpy() if hasattr(out, "int_repr") else out
        return _wrap(np.ascontiguousarray(o[:, :, 0, :]), from_torch, out_s, out_zp), it3
    return _wrap(np.ascontiguousarray(res[:, :, 0, :]), from_torch, out_s, out_zp)


# ----------------------------------------------------------------------------- conv3d / transposed (C++ core)


def _onednn_nd(fn, a, a_s, a_zp, wt, w_conv, b, st, pd, dl, g, out_sp, out_s, out_zp, relu, transposed, isa,
               return_intermediates, onednn_kernel=None, threads=None):
    """torch's x86/onednn engine: oneDNN's arithmetic (qref.engines.onednn.nd). ``a`` (N, C, *S);
    ``w_conv`` (O, Cg, *k) in conv form; ``onednn_kernel``: the implementation torch's oneDNN
    reported (overrides the shape rules). Returns the uint8 output (N, O, *OS)."""
    onednn_kernel = checked_kernel(fn, onednn_kernel, "deconvolution" if transposed else "convolution",
                                   resolve_class(isa))
    if return_intermediates:
        raise ValueError(f"{fn}: return_intermediates=True is not available for the oneDNN engines' {fn} (use "
                         f"engine='fbgemm', or qref.conv2d for a 2D layer)")
    require_symmetric(fn, wt)
    x_cl = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    out = onednn_nd.run(x_cl, a_s, a_zp, np.ascontiguousarray(w_conv), wt.scale, b, st, pd, dl, g, out_sp, out_s, out_zp,
              relu, transposed, isa, onednn_kernel or None, threads)
    return np.ascontiguousarray(np.moveaxis(out, -1, 1))


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

    ``input`` (N, C, D, H, W), ``weight`` (O, C/groups, kD, kH, kW). fbgemm paths (docs/numerics.md §3):
    depthwise 3D (K_d in {3,5,7}, K_h == K_w in {3,5,7}, "same" padding, stride 1/2, G % 8 == 0;
    int16-saturating tap pairs on every CPU), groupwise 3D, pointwise, im2col in (kd, kh, kw, c)
    order. ``reproduce_defects=True`` reproduces fbgemm's int16-saturating activation row sum of the
    depthwise 3D kernel (wrong when a weight zero point != 0 and a receptive field sums past
    32767, e.g. 7x7x7); the default computes the mathematically correct row sum
    (see :func:`known_torch_defect`).
    """
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
    kname, nthreads = _run_args(fn, return_intermediates, engine, isa, kernel, threads)
    check_bool(fn, "reproduce_defects", reproduce_defects)
    if conv_runs_onednn(engine, wt, g, isa):
        out_sp = tuple((n + 2 * p - d * (k - 1) - 1) // s_ + 1
                       for n, p, d, k, s_ in zip((D, H, W), pd, dl, (KD, KH, KW), st))
        out = _onednn_nd(fn, a, a_s, a_zp, wt, wt.oihw, b, st, pd, dl, g, out_sp, out_s, out_zp, bool(relu), False,
                         isa, return_intermediates, onednn_kernel, nthreads)
        return _wrap(out, from_torch, out_s, out_zp)
    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        isa = fbgemm_isa(isa)  # the fbgemm name of a machine named by a oneDNN class
    plan = _nd_plan((N, C, D, H, W), (O, Cg, KD, KH, KW), st, pd, dl, g, False, isa)
    a_ndhwc = np.ascontiguousarray(a.transpose(0, 2, 3, 4, 1))
    # kernel="scalar" runs the normative N-d reference; the other kernels run the conv2d core on
    # the depth-gathered problem where that is the same arithmetic (never for depthwise, whose
    # tap pairs would change, nor for reproduce_defects / intermediates).
    if (kname != "scalar" and plan.path != "depthwise" and not reproduce_defects and not return_intermediates
            and _pairs_survive_reordering(plan, Cg, KD * KH * KW)):
        x4, OD = gather_depth(a_ndhwc, a_zp, KD, st[0], pd[0], dl[0], g)
        if _conv_plan((x4.shape[0], x4.shape[3], x4.shape[1], x4.shape[2]), (O, KD * Cg, KH, KW), st[1:], pd[1:],
                      dl[1:], g, isa).saturates == plan.saturates:
            # the same conv2d through qref.conv2d, whose checked cache (qref.layers.prep_cache, keyed
            # by this call's own weight-side arguments) keeps w4 packed between calls
            ws, wz = (wt.scale, wt.zero_point) if wt.per_channel else (float(wt.scale[0]), int(wt.zero_point[0]))
            def depth_folded_weight() -> np.ndarray:
                return np.ascontiguousarray(wt.oihw.transpose(0, 2, 1, 3, 4)).reshape(O, KD * Cg, KH, KW)

            o4 = conv2d(x4.transpose(0, 3, 1, 2), None, bias, stride=st[1:], padding=pd[1:], dilation=dl[1:], groups=g,
                        input_scale=a_s, input_zero_point=a_zp, weight_scale=ws, weight_zero_point=wz,
                        output_scale=output_scale, output_zero_point=output_zero_point, relu=relu, engine="fbgemm",
                        isa=isa, kernel=kernel, threads=threads, _fn=fn,
                        _cache_objs=(weight, bias, weight_scale, weight_zero_point), _make_weight=depth_folded_weight)
            o5 = o4.reshape((N, OD) + o4.shape[1:]).transpose(0, 2, 1, 3, 4)
            return _wrap(np.ascontiguousarray(o5), from_torch, out_s, out_zp)
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


_CONV_TRANSPOSE_DOCS = {
    1: """Quantized ConvTranspose1d: torch runs it as conv_transpose2d on (N, C, 1, L) with kernel
    (1, k) (qconv.cpp ``QConv1dInt8`` / ``QConvTranspose1d`` unsqueeze), so always the transposed
    im2col path (the direct path needs kH == 2). ``weight`` (C, O/groups, k).""",
    2: """Quantized ConvTranspose2d, bit-exact with torch's fbgemm ``quantized::conv_transpose2d``.

    ``input`` (N, C, H, W); ``weight`` torch's layout (C, O/groups, kH, kW), per-tensor only (torch
    rejects per-channel weights for transposed convs). Two fbgemm paths: the direct transposed path
    (groups 1, C % 8 == 0, O % 8 == 0, kH == 2, kW <= 6, stride 1/2, no padding, no dilation;
    always int16-saturating pairs of consecutive input channels; docs/numerics.md §4.5) and the transposed
    im2col path (docs/numerics.md §4.4). fbgemm's direct path is defective for N > 1, stride_h == 2 and a
    changed input size (:func:`known_torch_defect`); qref computes the correct result unless
    ``reproduce_defects=True`` (which reproduces the deterministic stride_h == 2 defect).
    """,
    3: """Quantized ConvTranspose3d, bit-exact with torch's fbgemm ``quantized::conv_transpose3d``:
    always the transposed im2col path in (kd, kh, kw, c) order (fbgemm's direct path is 2D only).
    ``input`` (N, C, D, H, W); ``weight`` (C, O/groups, kD, kH, kW), per-tensor.""",
}

_INPUT_LAYOUT = {1: "(N, C, L)", 2: "(N, C, H, W)", 3: "(N, C, D, H, W)"}


def _conv_transpose_function(nd: int) -> Any:
    """The public ``conv_transpose{nd}d``: one signature for the three (keyword names, defaults and
    order are the same), its own name and docstring."""
    fn = f"conv_transpose{nd}d"

    def conv_transpose(
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
        a, a_s, a_zp, from_torch = _activation(fn, input, input_scale, input_zero_point, nd + 2, _INPUT_LAYOUT[nd],
                                               materialize=False)
        if nd != 1:
            return _conv_transpose(fn, a, a_s, a_zp, from_torch, weight, weight_scale, weight_zero_point, nd + 2,
                                   bias, stride, padding, output_padding, groups, dilation, output_scale,
                                   output_zero_point, engine, isa, kernel, threads, return_intermediates,
                                   reproduce_defects, onednn_kernel)
        # 1D: torch's unsqueeze to (N, C, 1, L), kernel (1, k); its own arguments are checked as 1D first
        (st,) = _as_tuple(fn, "stride", stride, 1, 1)
        (pd,) = _as_tuple(fn, "padding", padding, 1, 0)
        (op,) = _as_tuple(fn, "output_padding", output_padding, 1, 0)
        (dl,) = _as_tuple(fn, "dilation", dilation, 1, 1)
        res = _conv_transpose(fn, a[:, :, None, :], a_s, a_zp, from_torch, weight, weight_scale, weight_zero_point,
                              3, bias, (1, st), (0, pd), (0, op), groups, (1, dl), output_scale, output_zero_point,
                              engine, isa, kernel, threads, return_intermediates, reproduce_defects, onednn_kernel)
        if return_intermediates:
            out, it = res
            sq = _squeeze_h(out, from_torch)
            return sq, Intermediates(it.acc[:, :, 0], it.raw[:, :, 0], it.y[:, :, 0], it.plan)
        return _squeeze_h(res, from_torch)

    conv_transpose.__name__ = conv_transpose.__qualname__ = fn
    conv_transpose.__doc__ = _CONV_TRANSPOSE_DOCS[nd]
    return conv_transpose


conv_transpose1d = _conv_transpose_function(1)
conv_transpose2d = _conv_transpose_function(2)
conv_transpose3d = _conv_transpose_function(3)


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
    kname, nthreads = _run_args(fn, return_intermediates, engine, isa, kernel, threads)
    check_bool(fn, "reproduce_defects", reproduce_defects)
    if conv_runs_onednn(engine, wt, g, isa, output_padding=op):
        if any(op):
            raise ValueError(f"{fn}: output_padding={op} with engine='onednn': torch's oneDNN transposed conv needs "
                             f"zero output_padding ('ONEDNN only supports zero output_padding'; the x86 engine sends "
                             f"such convs to fbgemm)")
        out_sp = tuple((n - 1) * s_ - 2 * p + d * (k - 1) + 1 for n, s_, p, d, k in zip(spatial, st, pd, dl, ks))
        out = _onednn_nd(fn, a, a_s, a_zp, wt, w_oihw, b, st, pd, dl, g, out_sp, out_s, out_zp, False, True, isa,
                         return_intermediates, onednn_kernel, nthreads)
        return _wrap(out, from_torch, out_s, out_zp)
    _no_onednn_kernel(fn, onednn_kernel, engine)
    if engine == "x86":
        isa = fbgemm_isa(isa)
    plan = _nd_plan((N, C) + tuple(spatial), (O, Cg) + ks, st, pd, dl, g, True, isa)
    # channels last; a 2D transposed conv runs in the N-d reference with a unit depth
    x_cl = np.ascontiguousarray(np.moveaxis(a, 1, -1))
    if (nd == 2 and kname != "scalar" and plan.path == "im2col" and not return_intermediates
            and _pairs_survive_reordering(plan, Cg, int(np.prod(ks)))):
        # the other kernels: the conv2d core on the spread-out input (kernel="scalar": the reference)
        u = spread_input(x_cl, a_zp, ks, st, pd, dl, op)
        if _conv_plan((u.shape[0], u.shape[3], u.shape[1], u.shape[2]), w_oihw.shape, (1, 1), (0, 0), dl, g,
                      isa).saturates == plan.saturates:
            # the same stride-1 conv through qref.conv2d, whose checked cache (keyed by this call's
            # own weight-side arguments) keeps the flipped weight packed between calls
            def flipped_weight() -> np.ndarray:
                return np.ascontiguousarray(w_oihw[:, :, ::-1, ::-1])

            o4 = conv2d(u.transpose(0, 3, 1, 2), None, bias, stride=1, padding=0, dilation=dl, groups=g,
                        input_scale=a_s, input_zero_point=a_zp, weight_scale=float(wt.scale[0]),
                        weight_zero_point=int(wt.zero_point[0]), output_scale=output_scale,
                        output_zero_point=output_zero_point, engine="fbgemm", isa=isa, kernel=kernel,
                        threads=threads, _fn=fn, _cache_objs=(weight, bias, weight_scale, weight_zero_point),
                        _make_weight=flipped_weight)
            return _wrap(np.ascontiguousarray(o4), from_torch, out_s, out_zp)
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


def onednn_conv_transpose2d(input: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                            output_padding: Any = 0, dilation: Any = 1, groups: int = 1, input_scale: Any = None,
                            input_zero_point: Any = None, weight_scale: Any = None, output_scale: Any,
                            output_zero_point: Any, isa: str = "auto", threads: Optional[int] = None) -> Any:
    """torch's x86/onednn ``quantized::conv_transpose2d`` (oneDNN deconvolution) arithmetic
    (``qref.onednn.conv_transpose2d``).

    ``weight``: qint8 (C, O/groups, kH, kW) per-tensor symmetric, or an int8 array with
    ``weight_scale``. The same as ``qref.conv_transpose2d(..., engine="onednn")``: oneDNN's
    deconvolution kernels and their arithmetic per shape are in qref.engines.onednn.nd. Where
    ``qref.onednn.transposed_defect`` names a reason, torch's own output is wrong and differs from this one.
    """
    return conv_transpose2d(input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
                            dilation=dilation, groups=groups, input_scale=input_scale,
                            input_zero_point=input_zero_point, weight_scale=weight_scale, output_scale=output_scale,
                            output_zero_point=output_zero_point, engine="onednn", isa=isa, threads=threads)
