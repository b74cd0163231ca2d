"""oneDNN's CPU class in this process: what torch's "x86"/"onednn" engines dispatch on.

oneDNN picks its int8 kernels by CPU class (capped by ``ONEDNN_MAX_CPU_ISA``, read once when
oneDNN first runs); qref names the classes "amx", "vnni", "avx512_core", "avx2" and "sse41"
(see qref.engines.onednn.conv2d for the arithmetic of each).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from .. import _core

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
        "amx": "AMX brgemm builds: combined scale, float zero-point compensation (brgconv_1x1 on one image "
               "with several threads: separate scales); oneDNN's avx512_core_vnni kernels, which it also runs "
               "on AMX CPUs (depthwise always): as vnni [measured with torch 2.13 on an AMX Xeon]",
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
