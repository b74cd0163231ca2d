"""Which fbgemm arithmetic to reproduce: ISA semantics (docs/numerics.md §4.0, §4.6, §9).

Three facts change fbgemm's numbers or its path choice:
- whether its GEMM micro-kernels (pointwise, im2col, linear) lack VNNI and so
  saturate int16 pairs: ``fbgemmInstructionSet()``, the CPU's best ISA lowered
  by ``FBGEMM_ENABLE_INSTRUCTIONS`` (fbgemm src/Utils.cc);
- whether the groupwise kernel saturates: the CPU (cpuinfo) lacks AVX512-VNNI;
  the environment variable does not reach it;
- whether the CPU has AVX512 (f/bw/dq/vl): the groupwise path's G_together.
The depthwise kernel saturates on every CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from .. import _core
from .onednn_isa import OnednnIsa, onednn_isa

ISAS = ("auto", "avx2", "vnni")

# fbgemm src/Utils.cc fbgemmEnvGetIsa / isaSupportMap.
_ENV_ISA = {
    "AVX2": "avx2",
    "AVX512": "avx512",
    "AVX512_E1": "avx512_vnni",
    "AVX512_256": "avx512_ymm",
    "AVX512_E1_256": "avx512_vnni_ymm",
}
_SUPPORTED = {
    "anyarch": {"anyarch"},
    "avx2": {"avx2", "anyarch"},
    "avx512": {"avx512", "avx512_ymm", "avx2"},
    "avx512_ymm": {"avx512", "avx512_ymm", "avx2"},
    "avx512_vnni": {"avx512_vnni", "avx512_vnni_ymm", "avx512", "avx512_ymm", "avx2"},
    "avx512_vnni_ymm": {"avx512_vnni", "avx512_vnni_ymm", "avx512", "avx512_ymm", "avx2"},
}
_VNNI_GEMM = {"avx512_vnni", "avx512_vnni_ymm"}


@dataclass(frozen=True)
class IsaSemantics:
    """The facts of one machine's fbgemm arithmetic that qref needs."""

    name: str  # "avx2", "vnni", or "auto(...)"
    gemm_saturates: bool
    groupwise_saturates: bool
    avx512_host: bool
    depthwise_saturates: bool = True


@dataclass(frozen=True)
class TorchIsa:
    """What ``isa="auto"`` resolves to in this process (see ``qref.torch_isa()``)."""

    cpu_features: dict
    env_value: str | None
    detected_gemm_isa: str
    gemm_isa: str
    semantics: IsaSemantics

    @property
    def onednn(self) -> OnednnIsa:
        """oneDNN's view of this host (engines "x86"/"onednn"): qref.onednn.OnednnIsa."""
        return onednn_isa()

    def __str__(self) -> str:
        s = self.semantics
        feats = ", ".join(k for k, v in self.cpu_features.items() if v and k != "x86") or "none"
        env = self.env_value if self.env_value is not None else "(unset)"

        def sat(b: bool) -> str:
            return "int16-saturating pairs" if b else "exact int32"

        return (
            f"CPU features: {feats}\n"
            f"FBGEMM_ENABLE_INSTRUCTIONS: {env}\n"
            f"fbgemm GEMM ISA: {self.gemm_isa} (detected {self.detected_gemm_isa})\n"
            f"  pointwise / im2col / linear: {sat(s.gemm_saturates)}\n"
            f"  groupwise:                   {sat(s.groupwise_saturates)}\n"
            f"  depthwise:                   {sat(True)} (on every CPU)\n"
            f"  groupwise G_together SIMD width: {64 if s.avx512_host else 32}\n"
            f"{self.onednn}"
        )


def _detected_gemm_isa(f: dict) -> str:
    avx512 = f["avx512f"] and f["avx512bw"] and f["avx512dq"] and f["avx512vl"]
    if f["avx512vnni"]:
        return "avx512_vnni"
    if avx512:
        return "avx512"
    if f["avx2"]:
        return "avx2"
    return "anyarch"


@lru_cache(maxsize=1)
def torch_isa() -> TorchIsa:
    """Describe fbgemm's arithmetic in this process: the CPU plus FBGEMM_ENABLE_INSTRUCTIONS.

    Like fbgemm, the environment variable is read once (at the first call).
    """
    f = dict(_core.cpu_features())
    env = os.environ.get("FBGEMM_ENABLE_INSTRUCTIONS")
    detected = _detected_gemm_isa(f)
    gemm = detected
    if env is not None:
        forced = _ENV_ISA.get(env.upper())
        if forced is not None and forced in _SUPPORTED.get(detected, set()):
            gemm = forced
    avx512 = bool(f["avx512f"] and f["avx512bw"] and f["avx512dq"] and f["avx512vl"])
    sem = IsaSemantics(
        name=f"auto({gemm})",
        gemm_saturates=gemm not in _VNNI_GEMM,
        groupwise_saturates=not f["avx512vnni"],
        avx512_host=avx512,
    )
    return TorchIsa(cpu_features=f, env_value=env, detected_gemm_isa=detected, gemm_isa=gemm, semantics=sem)


_NAMED = {
    # An AVX2 host (or AVX512 without VNNI): every path with pairs saturates.
    "avx2": IsaSemantics("avx2", gemm_saturates=True, groupwise_saturates=True, avx512_host=False),
    # An AVX512-VNNI host with no override: GEMM and groupwise exact.
    "vnni": IsaSemantics("vnni", gemm_saturates=False, groupwise_saturates=False, avx512_host=True),
}


def isa_semantics(isa: str) -> IsaSemantics:
    if not isinstance(isa, str):
        raise TypeError(f"isa must be a string, one of {ISAS}; got {type(isa).__name__}")
    if isa == "auto":
        return torch_isa().semantics
    if isa in _NAMED:
        return _NAMED[isa]
    raise ValueError(f"isa={isa!r} is not valid (valid: {', '.join(repr(i) for i in ISAS)})")
