"""qref.engines.aten under every ATen CPU capability: tests/test_aten_ops.py rerun in a subprocess
with ATEN_CPU_CAPABILITY set before torch is imported (torch compiles its quantized kernels once
per capability and the SIMD body / scalar tail split and the FMA contraction of the channels_last
kernels differ between them). Inputs come from numpy's RNG, so they are the same in every run.

The default run covers the capability-sensitive ops; --runslow reruns the whole file."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from qref import _core  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# the tests that showed capability-dependent arithmetic (body/tail split, DEFAULT's legacy
# rounding, FMA contraction of channels_last kernels); --runslow runs every test
SENSITIVE = "tie_rich or leaky_relu or adaptive_avg_pool2d or bilinear or test_cat or batch_norm2d or layer_norm or group_and or sigmoid or sleef or tanh or elu or gelu or vectorized or softmax"


def _supported(cap: str) -> bool:
    f = _core.cpu_features()
    if cap == "avx2":
        return bool(f.get("avx2") and f.get("fma"))
    if cap == "avx512":
        return bool(f.get("avx512f") and f.get("avx512bw") and f.get("avx512dq") and f.get("avx512vl"))
    return True


def _run(cap: str, select: str | None) -> None:
    if not _supported(cap):
        pytest.skip(f"this CPU cannot run ATen's {cap} kernels")
    env = dict(os.environ, ATEN_CPU_CAPABILITY=cap, QREF_ATEN_EXPECT_CAPABILITY=cap)
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", os.path.join(HERE, "test_aten_ops.py")]
    if select:
        cmd += ["-k", select]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900, check=False)
    tail = (r.stdout + r.stderr)[-6000:]
    assert r.returncode == 0, f"ATEN_CPU_CAPABILITY={cap}:\n{tail}"
    assert " passed" in r.stdout, tail


@pytest.mark.parametrize("cap", ["default", "avx2", "avx512"])
def test_capability_sensitive_ops(cap):
    if torch.backends.cpu.get_cpu_capability().lower() == cap:
        pytest.skip(f"{cap} is this process's capability: tests/test_aten_ops.py ran it in process")
    _run(cap, SENSITIVE)


@pytest.mark.slow
@pytest.mark.parametrize("cap", ["default", "avx2", "avx512"])
def test_capability_all_ops(cap):
    _run(cap, None)
