"""Exact float32 helpers for the Python mirrors of the C++ arithmetic (explain, variants)."""

from __future__ import annotations

import numpy as np


def fma_f32(a, b, c):
    """float32 fused multiply-add ``a*b + c`` with ONE rounding (round half to even), like vfmadd.

    fbgemm's per-tensor bias term is computed this way (csrc/qref/conv2d.h Requant::bias_fma).
    a*b of two float32 values is exact in float64; the float64 sum's rounding error is recovered
    exactly (TwoSum), and it breaks the only case where rounding through float64 could differ
    from one rounding: a float64 sum landing exactly on a float32 midpoint.
    """
    a64 = np.asarray(a, np.float32).astype(np.float64)
    b64 = np.asarray(b, np.float32).astype(np.float64)
    c64 = np.asarray(c, np.float32).astype(np.float64)
    p = a64 * b64  # exact: 24 + 24 significant bits
    with np.errstate(all="ignore"):
        t = p + c64
        bb = t - p
        err = (p - (t - bb)) + (c64 - bb)  # exact: p + c64 == t + err
        f = t.astype(np.float32)
        f64 = f.astype(np.float64)
        toward = np.where(t > f64, np.float32(np.inf), np.float32(-np.inf)).astype(np.float32)
        other = np.nextafter(f, toward)
        mid = (f64 + other.astype(np.float64)) / 2.0  # exact in float64
        tie = (t == mid) & (err != 0) & np.isfinite(t)
        if np.any(tie):
            up = np.maximum(f, other)
            down = np.minimum(f, other)
            f = np.where(tie, np.where(err > 0, up, down), f).astype(np.float32)
    return f if f.ndim else np.float32(f)
