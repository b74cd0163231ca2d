"""torch's "x86"/"onednn" quantized conv2d: oneDNN's int8 arithmetic (SPEC.md §1, §6; docs/onednn.md).

Which oneDNN kernel runs, and so which arithmetic, depends on the CPU class oneDNN
dispatches on (capped by ``ONEDNN_MAX_CPU_ISA``, read once when oneDNN first runs)
and on the shape. qref names the classes:

=============  =====================================================  ==============================
isa            oneDNN kernels (torch 2.13, oneDNN 3.12)               arithmetic
=============  =====================================================  ==============================
"amx"          brgconv_1x1 / brg_conv_fwd (AMX), brdgmm_dw            combined scale, float zp comp
                                                                      (depthwise: as "vnni")
                                                                      SOURCE/SPEC-DERIVED, unverified
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
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional

import numpy as np

from . import _core

# oneDNN CPU classes qref distinguishes, best first.
ONEDNN_ISAS = ("amx", "vnni", "avx512_core", "avx2", "sse41")
# Classes that torch's oneDNN can dispatch to but qref has not reproduced (not emulable on the
# development host, which lacks AVX-VNNI).
_UNSUPPORTED_CLASSES = ("avx2_vnni",)
_ORDER = {"sse41": 0, "avx2": 1, "avx2_vnni": 2, "avx512_core": 3, "vnni": 4, "amx": 5}

# ONEDNN_MAX_CPU_ISA values (oneDNN src/cpu/x64/cpu_isa_traits.cpp, cpu_isa_hints) -> class.
_ENV_CAP = {
    "SSE41": "sse41",
    "AVX": "sse41",
    "AVX2": "avx2",
    "AVX2_VNNI": "avx2_vnni",
    "AVX2_VNNI_2": "avx2_vnni",
    "AVX512_CORE": "avx512_core",
    "AVX512_CORE_VNNI": "vnni",
    "AVX512_CORE_BF16": "vnni",
    "AVX512_CORE_FP16": "vnni",
    "AVX10_1_512": "vnni",
    "AVX512_CORE_AMX": "amx",
    "AVX512_CORE_AMX_FP16": "amx",
    "AVX10_1_512_AMX": "amx",
    "AVX10_1_512_AMX_FP16": "amx",
    "AVX10_2_512": "vnni",
    "AVX10_2_512_AMX_2": "amx",
    "DEFAULT": None,
    "ALL": None,
}


def _linux_cpu_flags() -> set:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


@lru_cache(maxsize=1)
def host_class() -> str:
    """The oneDNN class of this CPU, ignoring ONEDNN_MAX_CPU_ISA."""
    f = dict(_core.cpu_features())
    avx512 = f["avx512f"] and f["avx512bw"] and f["avx512dq"] and f["avx512vl"]
    if avx512 and f["avx512vnni"]:
        # AMX needs the CPU flag and OS permission; /proc/cpuinfo shows the former only, which
        # is what a kernel that supports AMX exposes (arch_prctl is granted on request by oneDNN).
        if sys.platform.startswith("linux") and {"amx_int8", "amx_tile"} <= _linux_cpu_flags():
            return "amx"
        return "vnni"
    if avx512:
        return "avx512_core"
    if f["avxvnni"] and f["avx2"]:
        return "avx2_vnni"
    if f["avx2"]:
        return "avx2"
    return "sse41"


@dataclass(frozen=True)
class OnednnIsa:
    """What oneDNN's int8 convolution dispatches on in this process."""

    host: str
    env_value: Optional[str]
    effective: str

    def __str__(self) -> str:
        env = self.env_value if self.env_value is not None else "(unset)"
        return (f"oneDNN CPU class: {self.effective} (host {self.host}; ONEDNN_MAX_CPU_ISA={env})\n"
                f"  {describe_class(self.effective)}")


@lru_cache(maxsize=1)
def onednn_isa() -> OnednnIsa:
    """The oneDNN class in this process: the host, capped by ONEDNN_MAX_CPU_ISA (read once, as oneDNN does)."""
    host = host_class()
    env = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA"))
    eff = host
    if env is not None:
        cap = _ENV_CAP.get(env.strip().upper(), None)
        if cap is not None and _ORDER[cap] < _ORDER[host]:
            eff = cap
    return OnednnIsa(host, env, eff)


def describe_class(cls: str) -> str:
    return {
        "amx": "AMX brgemm: combined scale, float zero-point compensation (depthwise brdgmm: as vnni) "
               "[per SPEC.md, not verified on this host]",
        "vnni": "exact int32 (vpdpbusd), separate scales, integer zero-point compensation",
        "avx512_core": "int16-saturating channel pairs (vpmaddubsw; depthwise exact), separate scales",
        "avx2": "int16-saturating channel pairs (vpmaddubsw; depthwise exact), combined scale",
        "avx2_vnni": "AVX2-VNNI kernels: not reproduced by qref",
        "sse41": "as avx2 (jit_uni_int8:sse41): int16-saturating channel pairs (depthwise exact), combined scale",
    }[cls]


def resolve_class(isa: str) -> str:
    """qref's isa name -> oneDNN class ("auto": this process's oneDNN)."""
    if isa == "auto":
        return onednn_isa().effective
    return isa


def host_has_vnni(isa: str) -> bool:
    """cpuinfo_has_x86_avx512vnni() of the named machine: the x86 engine's routing test (SPEC.md §1)."""
    if isa in ("amx", "vnni"):
        return True
    if isa in ("avx2", "avx512_core", "sse41"):
        return False
    return bool(_core.cpu_features()["avx512vnni"])


def fbgemm_isa(isa: str) -> str:
    """The fbgemm isa name of a machine named by a oneDNN class (for convs the x86 engine sends to fbgemm)."""
    return {"amx": "vnni", "avx512_core": "avx2", "sse41": "avx2"}.get(isa, isa)


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
        v = "" if self.verified else " [source-derived, not verified against torch on this host]"
        return f"oneDNN {self.kernel} ({self.isa}), {sat}, {sc}, {comp} zero-point compensation{v}"


def plan(weight_shape_oihw, groups: int, stride, padding, dilation, isa: str = "auto",
         onednn_kernel: Optional[str] = None) -> OnednnPlan:
    """oneDNN's kernel class for a (non-transposed) conv2d on the named machine.

    ``onednn_kernel``: the implementation torch's oneDNN reported for this layer and input
    (qref.check reads it from oneDNN's verbose log). oneDNN's brgemm conv declines some small
    grouped convs with one input channel per group by a performance heuristic, and its gemm conv
    (x64:gemm_s8u8s32) then runs them with one combined scale f32(ss*ws) (measured: the zero-
    accumulator probe and tie-rich layers, tests/test_onednn_nd.py); the name settles such shapes.
    Raises OneDNNNotSupportedError for kernel classes or named kernels qref does not reproduce.
    """
    from .conv import OneDNNNotSupportedError

    cls = resolve_class(isa)
    from ._onednn_verbose import checked_kernel, kernel_family

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
    if cls in _UNSUPPORTED_CLASSES:
        raise OneDNNNotSupportedError(
            f"conv2d: torch's oneDNN runs this conv with its {cls} kernels ({describe_class(cls)}); qref reproduces "
            f"the amx, vnni, avx512_core, avx2 and sse41 classes only")
    if cls == "amx":
        if dw:
            return OnednnPlan(cls, "brdgmm_dw:avx512_core_vnni", False, False, False, False)
        k = "brgconv_1x1:avx512_core_amx" if one_by_one else "brg_conv_fwd:avx512_core_amx"
        return OnednnPlan(cls, k, False, True, True, False)
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
    """Once per kernel: this class's arithmetic comes from SPEC.md/source only (no AMX on the
    development host). qref.check against real torch on such a host is the way to confirm it."""
    if p.kernel in _WARNED:
        return
    _WARNED.add(p.kernel)
    import warnings

    warnings.warn(f"qref: oneDNN {p.kernel} ({p.isa}) arithmetic is source-derived (SPEC.md §6.2), not verified "
                  f"against torch; verify with qref.check on this machine", RuntimeWarning, stacklevel=3)


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
                  onednn_kernel: Optional[str] = None) -> OnednnPlan:
    """The plan of a validated weight operand (conv.py _Weight): refuses asymmetric weights as torch's
    oneDNN prepack does, warns once for unverified classes."""
    from .conv import OneDNNNotSupportedError

    if not bool(np.all(wt.zero_point == 0)):
        raise OneDNNNotSupportedError(
            f"conv2d: engine='onednn' with weight zero points {wt.zero_point.tolist()[:8]}: torch's oneDNN conv "
            f"requires symmetric weights (all zero points 0) and refuses this prepack")
    p = plan(wt.oihw.shape, groups, padding=padding, stride=stride, dilation=dilation, isa=isa,
             onednn_kernel=onednn_kernel)
    if not p.verified:
        _warn_unverified(p)
    return p


def prepare_conv2d(input_shape_nhwc: tuple, w_ohwi: np.ndarray, bias: Optional[np.ndarray], stride, padding,
                   dilation, groups: int, input_scale: float, input_zero_point: int, weight_scale: np.ndarray,
                   per_channel: bool, output_scale: float, output_zero_point: int, relu: bool,
                   plan: OnednnPlan) -> Any:
    """oneDNN's arithmetic for one conv2d with the weights packed once (issue 8), for NHWC inputs of
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
    from .conv import _channels_last

    p = _checked_plan(wt, groups, stride, padding, dilation, isa, onednn_kernel)
    return prepare_conv2d(act.nhwc.shape, _channels_last(wt.oihw), bias, stride, padding, dilation, groups,
                          act.scale, act.zero_point, wt.scale, bool(wt.per_channel), out_scale, out_zp, relu, p)


def run(act: Any, wt: Any, bias: Optional[np.ndarray], stride, padding, dilation, groups: int,
        out_scale: float, out_zp: int, relu: bool, isa: str, threads: Optional[int],
        return_intermediates: bool, as_torch: bool, onednn_kernel: Optional[str] = None) -> Any:
    """Called by qref.conv2d with validated operands (conv.py _Act/_Weight)."""
    from .conv import _channels_last, _wrap_output

    p = _checked_plan(wt, groups, stride, padding, dilation, isa, onednn_kernel)
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
    """Why torch's x86/onednn transposed conv output is wrong for this layer, or None (SPEC.md §6.5).

    torch 2.13 gives wrong outputs (tens of real units off, every position) when the transposed conv
    runs oneDNN with in_channels != out_channels; qref computes what oneDNN's formula gives for the
    correct weights (which matches torch wherever in_channels == out_channels)."""
    if in_channels != out_channels:
        return (f"torch's x86/onednn quantized ConvTranspose with in_channels={in_channels} != "
                f"out_channels={out_channels} computes wrong values (SPEC.md §6.5; root cause in torch/ideep's "
                f"deconvolution weight handling), so torch's output cannot be reproduced; qref gives the "
                f"correct oneDNN arithmetic")
    return None


def conv_transpose2d(input: Any, weight: Any, bias: Any = None, *, stride: Any = 1, padding: Any = 0,
                     output_padding: Any = 0, dilation: Any = 1, groups: int = 1, input_scale: Any = None,
                     input_zero_point: Any = None, weight_scale: Any = None, output_scale: Any,
                     output_zero_point: Any, isa: str = "auto", threads: Optional[int] = None) -> Any:
    """torch's x86/onednn ``quantized::conv_transpose2d`` (oneDNN deconvolution) arithmetic.

    ``weight``: qint8 (C, O/groups, kH, kW) per-tensor symmetric, or an int8 array with
    ``weight_scale``. The same as ``qref.conv_transpose2d(..., engine="onednn")``: oneDNN's
    deconvolution kernels and their arithmetic per shape are in qref/onednn_nd.py. Where
    ``transposed_defect`` names a reason, torch's own output is wrong and differs from this one.
    """
    from .conv_nd import conv_transpose2d as _ct2d

    return _ct2d(input, weight, bias, stride=stride, padding=padding, output_padding=output_padding,
                 dilation=dilation, groups=groups, input_scale=input_scale, input_zero_point=input_zero_point,
                 weight_scale=weight_scale, output_scale=output_scale, output_zero_point=output_zero_point,
                 engine="onednn", isa=isa, threads=threads)
