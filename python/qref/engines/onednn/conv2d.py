"""torch's "x86"/"onednn" quantized conv2d: oneDNN's int8 arithmetic (docs/numerics.md §1, §6; docs/onednn.md).

Which oneDNN kernel runs, and so which arithmetic, depends on the CPU class oneDNN
dispatches on (capped by ``ONEDNN_MAX_CPU_ISA``, read once when oneDNN first runs)
and on the shape. qref names the classes:

=============  =====================================================  ==============================
isa            oneDNN kernels (torch 2.13, oneDNN 3.12)               arithmetic
=============  =====================================================  ==============================
"amx"          brgconv_1x1 / brg_conv_fwd (AMX builds), and the       AMX builds: combined scale, float
               avx512_core_vnni kernels for other shapes             zp comp (brgconv_1x1, batch 1, >1
                                                                      thread: separate scales); vnni
                                                                      builds: as "vnni". Measured with
                                                                      torch 2.13 on an AMX Xeon, which
                                                                      picks the build per shape
"vnni"         brgconv_1x1, brg_conv_fwd, jit_int8, brdgmm_dw          exact int32, separate scales
"avx512_core"  brgconv_1x1, brg_conv_fwd, jit_int8 (no VNNI)          int16 channel-pair saturation
                                                                      (one channel per group: kw-major
                                                                      tap pairs; depthwise: exact),
                                                                      separate
"avx2"         jit_uni_int8_1x1, jit_uni_int8                          int16 channel-pair saturation
                                                                      (depthwise: exact), combined;
               ref:any (grouped, channels per group % 4 != 0)          exact, separate, divides by dst
=============  =====================================================  ==============================

Every class adds the bias after scaling, applies ReLU as max(y, 0), adds the output
zero point in float before rounding and uses the reciprocal round trips of the scales.
Shapes that oneDNN sends to kernels qref has not reproduced raise
``OneDNNNotSupportedError`` naming the kernel class (never a silent wrong answer).
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ... import _core
from ...common.errors import OneDNNNotSupportedError
from ...common.layout import _channels_last, _wrap_output
from ...common.onednn_isa import _UNSUPPORTED_CLASSES, ONEDNN_ISAS, describe_class, resolve_class
from ...routing import require_symmetric
from .kernel_names import checked_kernel, is_amx_build, kernel_family


@dataclass(frozen=True)
class OnednnPlan:
    """Which oneDNN kernel family computes a conv on the named class, and its arithmetic."""

    isa: str
    kernel: str
    saturates: bool
    combined_scale: bool
    float_compensation: bool
    verified: bool
    kw_major_pairs: bool = False  # Cg == 1: pairs of consecutive taps in kw-major order
    divide_dst: bool = False  # ref:any: y / dst_scale instead of y * (1 / dst_scale)
    weight_scale_reciprocal: bool = False  # matmul: ws = f32(1 / f32(1 / w_scale)) (PyTorch hands 1/w_scale)

    def __str__(self) -> str:
        sat = ("int16-saturating tap pairs in kw-major order (vpmaddubsw)" if self.kw_major_pairs else
               "int16-saturating channel pairs (vpmaddubsw)" if self.saturates else "exact int32 products")
        sc = "combined scale f32(ss*ws)" if self.combined_scale else "separate scales"
        if self.divide_dst:
            sc += ", divides by the dst scale"
        comp = "float" if self.float_compensation else "int32"
        v = "" if self.verified else " [kernel assumed, not read from torch's oneDNN log]"
        return f"oneDNN {self.kernel} ({self.isa}), {sat}, {sc}, {comp} zero-point compensation{v}"


def onednn_threads() -> int:
    """The thread count torch's oneDNN runs with in this process: torch's intra-op threads where torch is
    imported, else the CPUs this process may use (torch's default)."""
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return int(torch.get_num_threads())
        except Exception:  # noqa: BLE001 - a torch without the call: its default
            pass
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _amx_plan(cls: str, kernel: str, one_by_one: bool, batch: Optional[int], named: bool) -> OnednnPlan:
    """oneDNN's AMX brgemm convs (docs/onednn.md, measured on an AMX Xeon): the micro-kernel combines
    the scales f32(ss*ws) and compensates the zero point in float; brgconv_1x1 with a batch of one
    image run by more than one thread applies separate scales instead (its other blocking). Without
    the batch (``batch=None``) the micro-kernel's arithmetic is assumed. ``named``: the kernel came
    from torch's log (or the caller); otherwise the AMX build is an assumption (``verified`` False)."""
    separate = kernel.startswith("brgconv_1x1") and one_by_one and batch == 1 and onednn_threads() > 1
    return OnednnPlan(cls, kernel, False, not separate, True, named)


def plan(weight_shape_oihw, groups: int, stride, padding, dilation, isa: str = "auto",
         onednn_kernel: Optional[str] = None, batch: Optional[int] = None) -> OnednnPlan:
    """oneDNN's kernel class for a (non-transposed) conv2d on the named machine.

    ``onednn_kernel``: the implementation torch's oneDNN reported for this layer and input
    (qref.check reads it from oneDNN's verbose log). oneDNN's brgemm conv declines some small
    grouped convs with one input channel per group by a performance heuristic, and its gemm conv
    (x64:gemm_s8u8s32) then runs them with one combined scale f32(ss*ws) (measured: the zero-
    accumulator probe and tie-rich layers, tests/test_onednn_nd.py); the name settles such shapes.
    On the amx class the name also says whether an AMX build ran (``...:avx10_1_512_amx``: AMX
    arithmetic) or one of the avx512_core_vnni kernels oneDNN picks on AMX CPUs for other shapes (the
    vnni class's exact arithmetic). ``batch``: the input's N, which decides brgconv_1x1's AMX scales.
    Raises OneDNNNotSupportedError for kernel classes or named kernels qref does not reproduce.
    """
    cls = resolve_class(isa)
    onednn_kernel = checked_kernel("conv2d", onednn_kernel, "convolution", cls)
    if onednn_kernel:
        fam = kernel_family(onednn_kernel)
        if fam == "gemm":
            return OnednnPlan(cls, onednn_kernel, False, True, False, True)
        if fam == "ref":
            return OnednnPlan(cls, onednn_kernel, False, False, False, True, divide_dst=True)
        if fam != "fast":
            raise OneDNNNotSupportedError(f"conv2d: onednn_kernel={onednn_kernel!r} names a oneDNN kernel whose "
                                          f"arithmetic qref has not reproduced")
    O, Cg, KH, KW = (int(v) for v in weight_shape_oihw)
    Og = O // groups
    # oneDNN's depthwise test: grouped weights with one input and one output channel per group.
    dw = groups > 1 and Cg == 1 and Og == 1
    one_by_one = KH == 1 and KW == 1 and tuple(padding) == (0, 0)
    if onednn_kernel and cls == "amx":
        if is_amx_build(onednn_kernel):
            return _amx_plan(cls, onednn_kernel, one_by_one, batch, True)
        # an avx512_core_vnni kernel on an AMX CPU: the vnni class's arithmetic (measured: 0 mismatches
        # over 1,684 such layers on an AMX Xeon)
        return OnednnPlan(cls, onednn_kernel, False, False, False, True)
    if cls in _UNSUPPORTED_CLASSES:
        raise OneDNNNotSupportedError(
            f"conv2d: torch's oneDNN runs this conv with its {cls} kernels ({describe_class(cls)}); qref reproduces "
            f"the amx, vnni, avx512_core, avx2 and sse41 classes only")
    if cls == "amx":
        if dw:
            # measured: oneDNN runs every depthwise conv on its avx512_core_vnni brdgmm_dw there
            return OnednnPlan(cls, "brdgmm_dw:avx512_core_vnni", False, False, False, True)
        # Without the kernel name: oneDNN chooses between its AMX and avx512_core_vnni builds by
        # performance heuristics qref does not model; the AMX build is assumed (qref.check reads the name).
        k = "brgconv_1x1:avx512_core_amx" if one_by_one else "brg_conv_fwd:avx512_core_amx"
        return _amx_plan(cls, k, one_by_one, batch, False)
    if cls == "vnni":
        k = "brdgmm_dw" if dw else ("brgconv_1x1" if one_by_one else "brg_conv_fwd/jit_int8")
        return OnednnPlan(cls, k + ":avx512_core_vnni", False, False, False, True)
    if cls == "avx512_core":
        if dw:
            return OnednnPlan(cls, "jit_int8:avx512_core (depthwise)", False, False, False, True)
        if Cg == 1:
            # Measured (ONEDNN_MAX_CPU_ISA=AVX512_CORE): one input channel per group makes
            # brg_conv_fwd reduce the taps kw-major, consecutive taps forming the vpmaddubsw pairs
            # (found by searching all 945 pairings of a 3x3 kernel; then 0 mismatches on 1x1, 3x3,
            # 5x5, 7x7 s2, 3x5, 5x3 s2). But oneDNN picks jit_int8 instead for small inputs, and
            # dilated brg_conv_fwd pairs differently (a review reproduced both mismatches); which
            # kernel runs depends on the shape in a way qref does not model, so refuse rather than
            # risk a wrong answer.
            raise OneDNNNotSupportedError(
                "onednn: the avx512_core class with one input channel per group (not depthwise) runs "
                "brg_conv_fwd or jit_int8 depending on the shape, with different tap pairings; qref does not "
                "model that choice (torch's x86 engine only uses oneDNN on AVX512-VNNI hosts, where the "
                "'vnni' class is exact)")
        k = "brgconv_1x1" if one_by_one else "brg_conv_fwd/jit_int8"
        return OnednnPlan(cls, k + ":avx512_core", True, False, False, True)
    if cls in ("avx2", "sse41"):
        # jit_uni_x8s8s32x kernels, one template for both ISAs: same arithmetic (measured under
        # ONEDNN_MAX_CPU_ISA=AVX2 and =SSE41).
        if dw:
            return OnednnPlan(cls, f"jit_uni_int8:{cls} (depthwise)", False, True, False, True)
        if groups > 1 and (Cg % 4 or Og % 4):
            # Grouped convs need channels per group in multiples of 4 for jit_uni_int8 (ONEDNN_VERBOSE,
            # 25 grouped shapes); otherwise oneDNN falls back to ref_convolution_int8: exact int32,
            # separate scales, and it divides by the dst scale (measured: 0 mismatches; multiply-by-inverse 64).
            return OnednnPlan(cls, "ref:any", False, False, False, True, divide_dst=True)
        # (strided or small 1x1 convs may run jit_uni_int8: same arithmetic)
        k = "jit_uni_int8_1x1/jit_uni_int8" if one_by_one else "jit_uni_int8"
        return OnednnPlan(cls, f"{k}:{cls}", True, True, False, True)
    raise ValueError(f"conv2d: isa={isa!r} is not a oneDNN class (valid: 'auto', "
                     f"{', '.join(repr(c) for c in ONEDNN_ISAS)})")


_WARNED: set = set()


def _warn_unverified(p: OnednnPlan) -> None:
    """Once per kernel: on the amx class oneDNN picks an AMX build or one of its avx512_core_vnni
    builds per shape by performance heuristics, and their arithmetic differs (docs/onednn.md); without
    the kernel's name qref assumed one. qref.check and from_torch's params read the name from torch's
    log."""
    if p.kernel in _WARNED:
        return
    _WARNED.add(p.kernel)
    warnings.warn(f"qref: oneDNN {p.kernel} ({p.isa}) is assumed, not read from torch's oneDNN log: on AMX CPUs oneDNN "
                  f"picks an AMX build or an avx512_core_vnni build per shape, and their rounding differs; pass "
                  f"onednn_kernel= (torch's log names it), or use qref.check, which reads it", RuntimeWarning,
                  stacklevel=3)


@dataclass(frozen=True, eq=False)
class OnednnIntermediates:
    """Stage-by-stage values of every output element, (N, O, OH, OW) like the output."""

    acc: np.ndarray  # int32 sum of products over the real (non-padded) taps
    colsum: np.ndarray  # int32 sum of the weights over the same taps
    A: np.ndarray  # float32 zero-point-compensated accumulator
    y: np.ndarray  # float32 value before clamp and rounding (output zero point included)
    plan: OnednnPlan


def scales(input_scale: float, output_scale: float) -> tuple[float, float]:
    """(ss, inv): oneDNN's effective src scale and 1/dst scale as PyTorch and ideep build them."""
    return tuple(_core.onednn_scales(float(input_scale), float(output_scale)))  # type: ignore[return-value]


def _checked_plan(wt: Any, groups: int, stride, padding, dilation, isa: str,
                  onednn_kernel: Optional[str] = None, batch: Optional[int] = None) -> OnednnPlan:
    """The plan of a validated weight operand (qref.common.operands._Weight): refuses asymmetric weights
    as torch's oneDNN prepack does, warns once for unverified classes."""
    require_symmetric("conv2d", wt)
    p = plan(wt.oihw.shape, groups, padding=padding, stride=stride, dilation=dilation, isa=isa,
             onednn_kernel=onednn_kernel, batch=batch)
    if not p.verified:
        _warn_unverified(p)
    return p


def prepare_conv2d(input_shape_nhwc: tuple, w_ohwi: np.ndarray, bias: Optional[np.ndarray], stride, padding,
                   dilation, groups: int, input_scale: float, input_zero_point: int, weight_scale: np.ndarray,
                   per_channel: bool, output_scale: float, output_zero_point: int, relu: bool,
                   plan: OnednnPlan) -> Any:
    """oneDNN's arithmetic for one conv2d with the weights packed once, for NHWC inputs of
    ``input_shape_nhwc``; run it with ``_core.conv2d_run(prepared, x_nhwc_uint8, threads)`` (same bytes
    as ``_core.onednn_conv2d_nhwc``). Low level: ``w_ohwi`` is the int8 (O, kH, kW, C/groups) weight,
    ``weight_scale`` float64 (O,) or (1,), ``bias`` float32 (O,) or None, ``plan`` the kernel class
    (``plan(...)`` / ``onednn_nd.plan_nd(...)``). ``prepared.route`` names the implementation: "vnni_gemm"
    (the AVX512-VNNI conv2d kernel's exact GEMM with oneDNN's epilogue), "vnni", "dw512", "portable"."""
    return _core.onednn_conv2d_prepare(
        np.empty(tuple(int(v) for v in input_shape_nhwc), np.uint8), np.ascontiguousarray(w_ohwi, dtype=np.int8),
        bias, tuple(stride), tuple(padding), tuple(dilation), int(groups), float(input_scale),
        int(input_zero_point), np.ascontiguousarray(weight_scale, dtype=np.float64), bool(per_channel),
        float(output_scale), int(output_zero_point), bool(relu), plan.saturates, plan.combined_scale,
        plan.float_compensation, plan.kw_major_pairs, plan.divide_dst,
        weight_scale_reciprocal=plan.weight_scale_reciprocal)


def prepare(act: Any, wt: Any, bias: Optional[np.ndarray], stride, padding, dilation, groups: int,
            out_scale: float, out_zp: int, relu: bool, isa: str, onednn_kernel: Optional[str] = None) -> Any:
    """Called by qref.conv2d (Conv2dParams' packed-weights cache) with validated operands: the
    prepared conv for act's shape and quantization."""
    p = _checked_plan(wt, groups, stride, padding, dilation, isa, onednn_kernel, batch=int(act.nhwc.shape[0]))
    return prepare_conv2d(act.nhwc.shape, _channels_last(wt.oihw), bias, stride, padding, dilation, groups,
                          act.scale, act.zero_point, wt.scale, bool(wt.per_channel), out_scale, out_zp, relu, p)


def run(act: Any, wt: Any, bias: Optional[np.ndarray], stride, padding, dilation, groups: int,
        out_scale: float, out_zp: int, relu: bool, isa: str, threads: Optional[int],
        return_intermediates: bool, as_torch: bool, onednn_kernel: Optional[str] = None) -> Any:
    """Called by qref.conv2d with validated operands (qref.common.operands _Act/_Weight)."""
    p = _checked_plan(wt, groups, stride, padding, dilation, isa, onednn_kernel, batch=int(act.nhwc.shape[0]))
    w_ohwi = _channels_last(wt.oihw)
    nthreads = _core.default_threads() if threads is None else threads
    res = _core.onednn_conv2d_nhwc(
        act.nhwc, w_ohwi, bias, tuple(stride), tuple(padding), tuple(dilation), int(groups), act.scale,
        act.zero_point, np.ascontiguousarray(wt.scale, dtype=np.float64), bool(wt.per_channel), out_scale,
        out_zp, bool(relu), p.saturates, p.combined_scale, p.float_compensation, nthreads,
        bool(return_intermediates), p.kw_major_pairs, p.divide_dst)
    out_nhwc = res[0] if return_intermediates else res
    out = _wrap_output(out_nhwc, as_torch, out_scale, out_zp)
    if return_intermediates:
        def nchw(a: np.ndarray) -> np.ndarray:
            return np.ascontiguousarray(a.transpose(0, 3, 1, 2))

        return out, OnednnIntermediates(nchw(res[1]), nchw(res[2]), nchw(res[3]), nchw(res[4]), p)
    return out


# ----------------------------------------------------------------------------- transposed (oneDNN deconvolution)


def transposed_defect(in_channels: int, out_channels: int, groups: int = 1) -> Optional[str]:
    """Why torch's x86/onednn transposed conv output is wrong for this layer, or None (docs/numerics.md §6.5).

    torch 2.13 gives wrong outputs (tens of real units off, every position) when the transposed conv
    runs oneDNN with in_channels != out_channels; qref computes what oneDNN's formula gives for the
    correct weights (which matches torch wherever in_channels == out_channels)."""
    if in_channels != out_channels:
        return (f"torch's x86/onednn quantized ConvTranspose with in_channels={in_channels} != "
                f"out_channels={out_channels} computes wrong values (docs/numerics.md §6.5; root cause in torch/ideep's "
                f"deconvolution weight handling), so torch's output cannot be reproduced; qref gives the "
                f"correct oneDNN arithmetic")
    return None
