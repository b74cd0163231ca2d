"""The aten engine's vectorized elementwise bodies (csrc/qref/aten/kernels/) write the same bytes as
its scalar reference (aten_ref.h), under every ATen capability's arithmetic, on random inputs with
SIMD tails, chunk splits and rounding ties. (tests/test_aten_ops.py compares both with torch.)"""

import numpy as np
import pytest

from qref import _core

CAPS = (0, 1, 2)  # DEFAULT, AVX2, AVX512 arithmetic
SIZES = (0, 1, 31, 32, 63, 64, 65, 127, 128, 1000, 4099, 70001)


def _simd_available():
    f = _core.cpu_features()
    return bool(f["avx2"] and f["fma"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
@pytest.mark.parametrize("op", [0, 1])  # add, add_relu
@pytest.mark.parametrize("cap", CAPS)
def test_add_simd_equals_scalar(dtype, op, cap):
    if not _simd_available():
        pytest.skip("this CPU has no AVX2+FMA: only the scalar reference runs")
    rng = np.random.default_rng(1234 + 7 * op + cap)
    info = np.iinfo(dtype)
    for n in SIZES:
        for trial in range(3):
            a = rng.integers(info.min, info.max + 1, n, dtype=np.int64).astype(dtype)
            b = rng.integers(info.min, info.max + 1, n, dtype=np.int64).astype(dtype)
            if trial == 0:
                # Ties: power-of-two scales make many sums land exactly on .5 of the output step.
                sa, sb, so = 0.25, 0.5, 1.0
            else:
                sa, sb, so = (float(v) for v in rng.uniform(1e-3, 0.2, 3))
            za, zb, zo = (int(v) for v in rng.integers(info.min, info.max + 1, 3))
            for threads in (1, 3):
                args = (op, a, b, sa, za, sb, zb, so, zo, cap, threads)
                ref = _core.aten_binary(*args, simd=False)
                got = _core.aten_binary(*args)
                assert got.dtype == ref.dtype and got.shape == ref.shape
                assert np.array_equal(got, ref), (n, trial, threads, sa, za, sb, zb, so, zo)


def test_add_simd_extreme_scales_equal_scalar():
    """Saturation and the 2147483520.f clamp: tiny output scales push x * inverse beyond int32."""
    if not _simd_available():
        pytest.skip("this CPU has no AVX2+FMA: only the scalar reference runs")
    rng = np.random.default_rng(99)
    for dtype in (np.uint8, np.int8):
        info = np.iinfo(dtype)
        a = rng.integers(info.min, info.max + 1, 4163, dtype=np.int64).astype(dtype)
        b = rng.integers(info.min, info.max + 1, 4163, dtype=np.int64).astype(dtype)
        for so in (1e-30, 1e-9, 1e-3, 1e3, 1e30):
            for cap in CAPS:
                for op in (0, 1):
                    args = (op, a, b, 1e3, int(info.min), 1e-2, int(info.max), so, 3, cap, 1)
                    assert np.array_equal(_core.aten_binary(*args), _core.aten_binary(*args, simd=False)), (so, cap)
