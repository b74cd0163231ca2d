"""torch's engine routing, written once: which arithmetic runs a layer for an ``engine`` argument.

- ``engine="fbgemm"``: fbgemm, always.
- ``engine="onednn"``: oneDNN, always (torch's "onednn" engine packs every layer for oneDNN); it
  refuses asymmetric weights at prepack, and so does qref (``require_symmetric``).
- ``engine="x86"`` (torch's default): prepack picks oneDNN for a conv on a Linux host with
  AVX512-VNNI when the weights are symmetric and groups <= 100 (and, for a transposed conv, the
  output_padding is zero), fbgemm otherwise (pytorch qconv_prepack.cpp, OnednnUtils.h
  ``should_use_onednn_quant``); a linear always runs fbgemm under "x86" (qlinear_prepack.cpp).

``isa`` names the machine: fbgemm's names ("auto", "avx2", "vnni"), and for the x86/onednn engines
also oneDNN's CPU classes ("amx", "avx512_core", "sse41"), whose fbgemm equivalent ``fbgemm_isa``
gives for the convs "x86" sends to fbgemm.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

from . import _core
from .common.errors import OneDNNNotSupportedError
from .common.isa import ISAS
from .common.kernels import _resolve_kernel
from .common.validate import check_bool, check_choice, check_threads

ENGINES = ("fbgemm", "x86", "onednn")
# the oneDNN CPU classes an isa argument may also name under the x86/onednn engines
ONEDNN_CLASS_ISAS = ("amx", "avx512_core", "sse41")


def _isas(engine: Any) -> tuple:
    """The isa names a layer takes: fbgemm's, plus oneDNN's classes for the x86/onednn engines."""
    return ISAS if engine == "fbgemm" else ISAS + ONEDNN_CLASS_ISAS


def _run_args(fn: str, return_intermediates: Any, engine: Any, isa: Any, kernel: Any, threads: Any,
              isas: Optional[tuple] = None) -> tuple[str, Optional[int]]:
    """How every layer is asked to run: (kernel name, thread count or None for all cores)."""
    check_bool(fn, "return_intermediates", return_intermediates)
    check_choice(fn, "engine", engine, ENGINES)
    check_choice(fn, "isa", isa, _isas(engine) if isas is None else isas)
    return _resolve_kernel(fn, kernel), check_threads(fn, threads)


def host_has_vnni(isa: str) -> bool:
    """cpuinfo_has_x86_avx512vnni() of the named machine: the x86 engine's routing test (docs/numerics.md §1)."""
    if isa in ("amx", "vnni"):
        return True
    if isa in ("avx2", "avx512_core", "sse41"):
        return False
    return bool(_core.cpu_features()["avx512vnni"])


def fbgemm_isa(isa: str) -> str:
    """The fbgemm isa name of a machine named by a oneDNN class (for convs the x86 engine sends to fbgemm)."""
    return {"amx": "vnni", "avx512_core": "avx2", "sse41": "avx2"}.get(isa, isa)


def x86_picks_onednn(groups: int, isa: str, output_padding: tuple = ()) -> bool:
    """torch's x86 engine for a conv with symmetric weights: does prepack choose oneDNN?
    (qconv_prepack.cpp, OnednnUtils.h should_use_onednn_quant; docs/numerics.md §1). `isa` names
    the host; a transposed conv also needs zero output_padding."""
    if not sys.platform.startswith("linux"):
        return False
    return host_has_vnni(isa) and groups <= 100 and all(v == 0 for v in output_padding)


def onednn_would_run(w: Any, groups: int, isa: str, output_padding: tuple = ()) -> bool:
    """torch's x86 engine: does prepack choose oneDNN for this weight operand (qref.common.operands
    _Weight)? Only symmetric weights (all zero points 0) go to oneDNN."""
    symmetric = bool(np.all(w.zero_point == 0))
    return symmetric and x86_picks_onednn(groups, isa, output_padding)


def conv_runs_onednn(engine: str, w: Any, groups: int, isa: str, output_padding: tuple = ()) -> bool:
    """Whether a (validated) conv runs oneDNN's arithmetic under ``engine``."""
    return engine == "onednn" or (engine == "x86" and onednn_would_run(w, groups, isa, output_padding))


def linear_runs_onednn(engine: str) -> bool:
    """qlinear_prepack.cpp: only the "onednn" engine packs linear weights for oneDNN; "x86" and
    "fbgemm" both use fbgemm's PackedLinearWeight."""
    return engine == "onednn"


def require_symmetric(fn: str, w: Any, layer: str = "conv") -> None:
    """torch's oneDNN prepack refuses asymmetric weights: so does qref (OneDNNNotSupportedError)."""
    if not bool(np.all(w.zero_point == 0)):
        rule = ("requires symmetric weights (all zero points 0)" if layer == "linear" else
                "requires symmetric weights (all zero points 0) and refuses this prepack")
        raise OneDNNNotSupportedError(
            f"{fn}: engine='onednn' with weight zero points {w.zero_point.tolist()[:8]}: torch's oneDNN {layer} "
            f"{rule}")


def _no_onednn_kernel(fn: str, onednn_kernel: Any, engine: str) -> None:
    """onednn_kernel names a oneDNN kernel: refused where the layer runs fbgemm."""
    if onednn_kernel is not None and onednn_kernel != "":
        raise ValueError(f"{fn}: onednn_kernel={onednn_kernel!r} with engine={engine!r}: this layer runs fbgemm here, "
                         f"and onednn_kernel applies only where it runs oneDNN (engine 'onednn', or 'x86' on an "
                         f"AVX512-VNNI host with symmetric weights and groups <= 100)")
