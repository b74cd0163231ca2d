"""Packaging facts: numpy-only import, the kernel table, ISA resolution."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import qref

NUMPY_ONLY = r"""
import sys
sys.modules["torch"] = None  # any 'import torch' now raises ImportError
import numpy as np
import qref
x = np.random.default_rng(0).integers(0, 256, (1, 8, 6, 6), dtype=np.uint8)
w = np.random.default_rng(1).integers(-128, 128, (8, 8, 3, 3), dtype=np.int8)
out = qref.conv2d(x, w, None, padding=1, input_scale=0.02, input_zero_point=3, weight_scale=0.004,
                  output_scale=0.1, output_zero_point=10)
assert out.shape == (1, 8, 6, 6) and out.dtype == np.uint8
q = qref.quantize(np.linspace(-1, 1, 11, dtype=np.float32), 0.01, 128)
assert q.dtype == np.uint8
print("ok", qref.kernels())
"""


def test_import_and_run_with_numpy_only():
    r = subprocess.run([sys.executable, "-c", NUMPY_ONLY], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok")


def test_kernel_table():
    """A kernel this CPU can run is in the table: a build that silently lost it fails here."""
    ks = qref.kernels()
    assert ks[-1] == "scalar"
    assert len(set(ks)) == len(ks)
    f = qref.torch_isa().cpu_features
    if f["x86"] and f["avx2"] and f["fma"] and f["f16c"]:
        assert "avx2" in ks
    if f["x86"] and f["avx512f"] and f["avx512bw"] and f["avx512dq"] and f["avx512vl"] and f["avx512vnni"]:
        assert "avx512vnni" in ks


def test_unknown_kernel_and_isa_are_value_errors():
    x = np.zeros((1, 1, 3, 3), np.uint8)
    w = np.zeros((1, 1, 1, 1), np.int8)
    kw = dict(input_scale=1.0, input_zero_point=0, weight_scale=1.0, output_scale=1.0, output_zero_point=0)
    with pytest.raises(ValueError, match="kernel='nope'.*usable"):
        qref.conv2d(x, w, kernel="nope", **kw)
    with pytest.raises(ValueError, match="isa='sse'"):
        qref.conv2d(x, w, isa="sse", **kw)


ISA_PROBE = "import qref, json; t = qref.torch_isa(); print(json.dumps([t.gemm_isa, t.semantics.gemm_saturates, " \
            "t.semantics.groupwise_saturates]))"


@pytest.mark.parametrize("env,expect_gemm_sat", [("AVX2", True), ("avx512", True), ("BOGUS", None)])
def test_env_var_resolution(env, expect_gemm_sat):
    """FBGEMM_ENABLE_INSTRUCTIONS lowers the GEMM ISA only to one the CPU supports (fbgemm Utils.cc),
    case-insensitively; unknown values are ignored; groupwise follows the CPU."""
    import json

    f = qref.torch_isa().cpu_features
    e = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS=env)
    r = subprocess.run([sys.executable, "-c", ISA_PROBE], env=e, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    gemm_isa, gemm_sat, gw_sat = json.loads(r.stdout)
    assert gw_sat == (not f["avx512vnni"])
    if expect_gemm_sat is None:  # ignored: same as detected
        assert gemm_isa == qref.torch_isa().detected_gemm_isa
    elif env.upper() == "AVX512" and not (f["avx512f"] and f["avx512bw"] and f["avx512dq"] and f["avx512vl"]):
        assert gemm_isa == qref.torch_isa().detected_gemm_isa
    else:
        assert gemm_sat is expect_gemm_sat


def test_unpickled_arrays_are_accepted_and_foreign_byte_order_refused():
    """An unpickled array has its own dtype object (the binding compares dtype equivalence, not
    identity); a big-endian float32 bias is not float32 as the kernel reads it, and is refused."""
    import pickle

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (1, 4, 5, 5), dtype=np.uint8)
    w = rng.integers(-128, 128, (4, 4, 3, 3), dtype=np.int8)
    b = rng.normal(size=4).astype(np.float32)
    kw = dict(input_scale=0.02, input_zero_point=3, weight_scale=0.01, output_scale=0.1, output_zero_point=5)
    ref = qref.conv2d(x, w, b, **kw)
    x2, w2, b2 = (pickle.loads(pickle.dumps(a)) for a in (x, w, b))
    assert np.array_equal(qref.conv2d(x2, w2, b2, **kw), ref)
    with pytest.raises(TypeError, match="bias"):
        qref.conv2d(x, w, b.astype(">f4"), **kw)
