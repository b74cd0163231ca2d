"""Small multi-threaded calls of every public compute function (numpy operands only, so a
subprocess needs no torch), for the concurrency, fork, exit and memory tests."""

from __future__ import annotations

import numpy as np

import qref

_Q = dict(input_scale=0.02, input_zero_point=7, weight_scale=0.01, weight_zero_point=0, output_scale=0.5,
          output_zero_point=100)


def _ops(threads: int = 2) -> dict:
    """name -> zero-argument call. Sizes are large enough that every threaded driver splits the
    work (about 1M multiply-adds per chunk) yet a call takes a millisecond or so."""
    rng = np.random.default_rng(5)
    x4 = rng.integers(0, 256, (1, 64, 24, 24), dtype=np.uint8)
    w4 = rng.integers(-128, 128, (64, 64, 3, 3), dtype=np.int8)
    x3 = rng.integers(0, 256, (1, 16, 6, 12, 12), dtype=np.uint8)
    w3 = rng.integers(-128, 128, (16, 16, 3, 3, 3), dtype=np.int8)
    x1 = rng.integers(0, 256, (2, 64, 200), dtype=np.uint8)
    w1 = rng.integers(-128, 128, (64, 64, 5), dtype=np.int8)
    wt = rng.integers(-128, 128, (64, 32, 3, 3), dtype=np.int8)
    xl = rng.integers(0, 256, (64, 512), dtype=np.uint8)
    wl = rng.integers(-128, 128, (256, 512), dtype=np.int8)
    xf = rng.normal(0, 1, (64, 1024)).astype(np.float32)
    b = rng.normal(0, 1, 64).astype(np.float32)
    t = threads
    ops = {
        "conv2d": lambda: qref.conv2d(x4, w4, b, padding=1, threads=t, **_Q),
        "conv2d-scalar": lambda: qref.conv2d(x4, w4, b, padding=1, threads=t, kernel="scalar", **_Q),
        "conv2d-onednn": lambda: qref.conv2d(x4, w4, b, padding=1, threads=t, engine="onednn", **_Q),
        "conv1d": lambda: qref.conv1d(x1, w1, b, padding=2, threads=t, **_Q),
        "conv3d": lambda: qref.conv3d(x3, w3, None, padding=1, threads=t, **_Q),
        "conv_transpose2d": lambda: qref.conv_transpose2d(x4, wt, None, stride=2, threads=t, **_Q),
        "linear": lambda: qref.linear(xl, wl, None, threads=t, **_Q),
        "quantize": lambda: qref.quantize(xf, 0.05, 128),
    }
    if "avx2" in qref.kernels():
        ops["conv2d-avx2"] = lambda: qref.conv2d(x4, w4, b, padding=1, threads=t, kernel="avx2", **_Q)
    return ops


def expected(threads: int = 2) -> dict:
    """name -> output bytes, computed single-threaded."""
    return {k: f().tobytes() for k, f in _ops(1).items()}


def ops(threads: int = 2) -> dict:
    return _ops(threads)


def outputs(threads: int = 2) -> dict:
    """name -> output bytes of every op run with `threads` (a picklable task for worker pools)."""
    return {k: f().tobytes() for k, f in _ops(threads).items()}
