"""oneDNN implementation names: which arithmetic family a name means, and which names qref follows.

torch's oneDNN reports the implementation it ran (``brg_conv_fwd:avx512_core_vnni``, ...) in its
verbose log (qref.bridge.onednn_verbose reads it); the engine's plans take such a name to settle
shapes where oneDNN's choice depends on performance heuristics.
"""

from __future__ import annotations

from typing import Any, Optional

from ...common.errors import OneDNNNotSupportedError

# Implementation-name prefixes (before ":<isa>") whose arithmetic qref reproduces on the vnni class
# as "exact int32, separate scales, 1/dst" (docs/onednn.md, docs/onednn-layers.md).
_FAST = ("brg_conv_fwd", "brgconv_1x1", "jit_int8", "jit_int8_1x1", "brdgmm_dw", "brg_deconv",
         "jit_deconvolution", "jit_uni_int8", "jit_uni_int8_1x1", "brg_matmul")


def kernel_family(name: str) -> str:
    """oneDNN implementation name -> qref's arithmetic family: "fast" (brgemm/jit kernels),
    "gemm" (gemm conv: combined scale), "ref_deconv" (ref_deconvolution over gemm backward-data:
    float round trip, divides by dst), "ref" (ref_convolution_int8: divides by dst), or "unknown"."""
    if name.split("+")[0] == "conv:any":
        return "ref_deconv"
    if "gemm_s8u8s32" in name:
        return "gemm"
    if name.startswith("ref:"):
        return "ref"
    return "fast" if name.split(":")[0].split("+")[0] in _FAST else "unknown"


# The implementation names qref follows: the vnni class's, as its oneDNN log prints them, and on the
# amx class also the AMX builds (oneDNN on an AMX CPU runs AMX kernels for some shapes and its
# avx512_core_vnni kernels for others, by performance heuristics). A composite name
# ("brg_deconv:...+brgconv_strided:...") is checked part by part.
_VNNI = ":avx512_core_vnni"
_AMX_ISAS = ("avx512_core_amx", "avx512_core_amx_fp16", "avx10_1_512_amx", "avx10_1_512_amx_fp16", "avx10_2_512_amx_2")
_ISA_NEUTRAL = ("x64:gemm_s8u8s32:jit", "conv:any", "ref:any")
# Non-AMX builds oneDNN runs on AMX CPUs under other ISA names, with the vnni class's arithmetic
# (vpdpbusd sums exactly, the brgemm post-ops scale separately), measured on an AMX Xeon with torch
# 2.13: brg_conv_fwd:avx2_vnni for some small grouped convs with one input channel per group (where a
# VNNI CPU without AMX runs its gemm conv; 18 of 18 conv1d/conv2d layers equal,
# tests/test_onednn.py::test_amx_host_avx2_vnni_builds), and brg_matmul:avx10_1_512 for the matmuls
# oneDNN keeps off AMX (docs/pt2e.md; tests/test_pt2e_postops.py).
_AMX_HOST_VNNI_BUILDS = ("brg_conv_fwd:avx2_vnni", "brg_matmul:avx10_1_512")
_PRIMITIVE_IMPLS = {
    "convolution": ("brg_conv_fwd", "brgconv_1x1", "jit_int8", "jit_int8_1x1", "brdgmm_dw", "x64", "ref"),
    "deconvolution": ("brg_deconv", "jit_deconvolution", "conv"),
    "matmul": ("brg_matmul",),
}


def checked_kernel(fn: str, name: Any, primitive: str, cls: str) -> Optional[str]:
    """Validate a user- or log-supplied oneDNN implementation name for a layer run on oneDNN class
    `cls` ("vnni", ...): None, or a name of this primitive's kernels as the vnni class's log prints
    them (``<impl>:avx512_core_vnni``, or the ISA-neutral ``x64:gemm_s8u8s32:jit``, ``conv:any``,
    ``ref:any``; composite names part by part). A name from another ISA's log must not be computed
    with VNNI arithmetic. Returns the name (or None); raises TypeError / OneDNNNotSupportedError
    naming the value and the rule."""
    if name is None or name == "":
        return None
    if not isinstance(name, str):
        raise TypeError(f"{fn}: onednn_kernel={name!r} has type {type(name).__name__} (must be None or a oneDNN "
                        f"implementation name such as 'brg_conv_fwd:avx512_core_vnni')")
    parts = name.split("+")
    impl = parts[0].split(":")[0]
    if impl not in _PRIMITIVE_IMPLS[primitive]:
        raise OneDNNNotSupportedError(
            f"{fn}: onednn_kernel={name!r} is not a oneDNN {primitive} kernel qref reproduces (expected one of "
            f"{', '.join(_PRIMITIVE_IMPLS[primitive])} ...)")
    if cls not in ("vnni", "amx"):
        raise OneDNNNotSupportedError(
            f"{fn}: onednn_kernel={name!r} with the oneDNN class {cls!r}: qref follows named kernels of the 'vnni' "
            f"and 'amx' classes only (leave onednn_kernel unset to use qref's rules for {cls!r})")
    for part in parts:
        if part in _ISA_NEUTRAL or part.endswith(_VNNI):
            continue
        if cls == "amx" and (part.split(":")[-1] in _AMX_ISAS or part in _AMX_HOST_VNNI_BUILDS):
            continue
        isa = [f for f in part.split(":")[1:] if f.startswith("avx") or f in ("sse41", "any", "uni")]
        if isa:
            raise OneDNNNotSupportedError(
                f"{fn}: onednn_kernel={name!r} names a kernel built for {isa[0]}, not for the {cls} class "
                f"({'avx512_core_vnni or an AMX build' if cls == 'amx' else 'avx512_core_vnni'}) this call computes; a "
                f"log from another machine needs that machine's isa= and no kernel name")
        raise OneDNNNotSupportedError(
            f"{fn}: onednn_kernel={name!r}: {part!r} is not a kernel name as oneDNN's vnni class prints them "
            f"('<kernel>:avx512_core_vnni', 'x64:gemm_s8u8s32:jit', 'conv:any' or 'ref:any')")
    return name


def is_amx_build(name: Optional[str]) -> bool:
    """Whether a (checked) implementation name is one of oneDNN's AMX builds, e.g.
    ``brgconv_1x1:avx10_1_512_amx``: their brgemm micro-kernel combines the scales and compensates the
    zero point in float; the avx512_core_vnni builds oneDNN also runs on AMX CPUs do neither."""
    return bool(name) and any(part.split(":")[-1] in _AMX_ISAS for part in name.split("+"))
