"""fbgemm's quantized linear: a GEMM, fbgemm's pointwise conv on (M, K, 1, 1) (docs/numerics.md §8)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ... import _core
from ...common.isa import isa_semantics
from .conv2d import ConvPlan


def linear_plan(isa: str = "auto") -> ConvPlan:
    """fbgemm's linear is a GEMM: it saturates int16 pairs iff the GEMM ISA lacks VNNI."""
    sem = isa_semantics(isa)
    return ConvPlan("linear (GEMM)", sem.gemm_saturates, sem)


def run(a2: np.ndarray, a_s: float, a_zp: int, wt: Any, b: Optional[np.ndarray], out_s: float, out_zp: int,
        relu: bool, plan: ConvPlan, kname: str, nthreads: Optional[int], return_intermediates: bool) -> Any:
    """(M, K) uint8 rows (M >= 1) -> the core's (M, 1, 1, O) output, or (output, acc, raw, y) with
    ``return_intermediates``."""
    M, K = a2.shape
    O = wt.oihw.shape[0]
    # (M, K) rows as an NHWC image (M, 1, 1, K); weight (O, K) as OHWI (O, 1, 1, K): fbgemm's
    # pointwise conv and its linear are the same GEMM (docs/numerics.md §4.1, §8).
    x4 = a2.reshape(M, 1, 1, K)
    w4 = np.ascontiguousarray(wt.oihw.reshape(O, 1, 1, K))
    return _core.conv2d_nhwc(
        x4, w4, b, (1, 1), (0, 0), (1, 1), 1, a_s, a_zp, wt.scale, wt.zero_point, wt.per_channel,
        out_s, out_zp, bool(relu), plan.saturates, kname,
        _core.default_threads() if nthreads is None else nthreads, bool(return_intermediates),
    )


def prepare(M: int, K: int, a_s: float, a_zp: int, wt: Any, b: Optional[np.ndarray], out_s: float, out_zp: int,
            relu: bool, plan: ConvPlan, kname: str) -> Any:
    """The weights packed once for (M, K) inputs: ``run_prepared(prepared, a2, nthreads)`` gives
    the same bytes as ``run`` (the same pointwise conv, prepared)."""
    O = wt.oihw.shape[0]
    return _core.conv2d_prepare(
        np.empty((M, 1, 1, K), np.uint8), np.ascontiguousarray(wt.oihw.reshape(O, 1, 1, K)), b, (1, 1), (0, 0),
        (1, 1), 1, a_s, a_zp, wt.scale, wt.zero_point, wt.per_channel, out_s, out_zp, bool(relu), plan.saturates,
        kname)


def run_prepared(prep: Any, a2: np.ndarray, nthreads: Optional[int]) -> np.ndarray:
    """(M, K) uint8 rows -> the (M, 1, 1, O) output of a ``prepare``d linear (or oneDNN's)."""
    M, K = a2.shape
    return _core.conv2d_run(prep, np.ascontiguousarray(a2).reshape(M, 1, 1, K),
                            _core.default_threads() if nthreads is None else nthreads)
