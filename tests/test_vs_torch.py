"""qref == torch's fbgemm quantized conv2d, bit for bit, on every fbgemm path.

Default ISA: torch in this process vs qref isa="auto". AVX2 arithmetic: torch and
qref in a subprocess started with FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (read once by
fbgemm, so it must be set before torch is imported), and qref isa="avx2" in this
process compared with that torch on every path whose saturation the environment
variable controls.
"""

from __future__ import annotations

import numpy as np
import pytest

import qref
from cases import path_specs, random_specs
from oracle import assert_same, build, case_id, qref_conv, run_in_subprocess, torch_conv

torch = pytest.importorskip("torch")

PATH_SPECS = path_specs()
AVX2_ENV = {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}


def _plan(s, isa="auto"):
    return qref.conv_plan((s["N"], s["C"], s["H"], s["W"]), (s["O"], s["C"] // s["groups"], s["KH"], s["KW"]),
                          s["stride"], s["padding"], s["dilation"], s["groups"], isa)


@pytest.mark.parametrize("cid,path,s", PATH_SPECS, ids=[c[0] for c in PATH_SPECS])
def test_path_default_isa(cid, path, s):
    b = build(s)
    expected = torch_conv(s, b)
    out, inter = qref_conv(s, b, isa="auto", intermediates=True)
    assert_same(out, expected, f"{cid} [{_plan(s)}]", acc=inter.acc)
    if path is not None and (path != "groupwise" or qref.torch_isa().semantics.avx512_host):
        assert _plan(s).path == path


@pytest.fixture(scope="module")
def avx2_subprocess_results():
    specs = [s for _, _, s in PATH_SPECS]
    return run_in_subprocess(specs, AVX2_ENV)


@pytest.mark.parametrize("i", range(len(PATH_SPECS)), ids=[c[0] for c in PATH_SPECS])
def test_path_avx2_env(i, avx2_subprocess_results):
    cid, _, s = PATH_SPECS[i]
    r = avx2_subprocess_results[i]
    assert_same(r["qref"], r["torch"], f"{cid} under FBGEMM_ENABLE_INSTRUCTIONS=AVX2 [{r['plan']}]")
    # isa="avx2" names an AVX2 host. On this host the env var reaches every path
    # except groupwise (which follows the CPU), so compare wherever they agree.
    plan = _plan(s, "avx2")
    if plan.path != "groupwise" or not _host_vnni():
        assert_same(qref_conv(s, isa="avx2"), r["torch"], f"{cid} isa='avx2' vs torch AVX2 [{plan}]")


def _host_vnni() -> bool:
    return bool(qref.torch_isa().cpu_features["avx512vnni"])


@pytest.mark.parametrize("cid,path,s", PATH_SPECS[::3], ids=[c[0] for c in PATH_SPECS[::3]])
def test_named_vnni_matches_default_torch_on_vnni_host(cid, path, s):
    if not _host_vnni():
        pytest.skip("isa='vnni' reproduces a VNNI host; this CPU lacks AVX512-VNNI")
    if qref.torch_isa().gemm_isa not in ("avx512_vnni", "avx512_vnni_ymm"):
        pytest.skip("FBGEMM_ENABLE_INSTRUCTIONS lowers fbgemm's GEMM ISA in this process")
    assert_same(qref_conv(s, isa="vnni"), torch_conv(s), f"{cid} isa='vnni'")


def test_saturation_matters_in_these_cases():
    """The cases are discriminating: exact and saturating arithmetic differ on many of them."""
    differs = 0
    for cid, path, s in PATH_SPECS:
        if path in ("im2col", "pointwise") and s["act"] in ("full", "high"):
            differs += int(not np.array_equal(qref_conv(s, isa="avx2"), qref_conv(s, isa="vnni")))
    assert differs >= 5


def test_groupwise_env_var_does_not_reach_groupwise_kernel(avx2_subprocess_results):
    """docs/numerics.md §4.3: groupwise saturation follows the CPU, not FBGEMM_ENABLE_INSTRUCTIONS."""
    if not _host_vnni():
        pytest.skip("needs an AVX512-VNNI host to tell the two apart")
    hits = 0
    for i, (cid, path, s) in enumerate(PATH_SPECS):
        if path == "groupwise" and s["act"] != "reduce":
            r = avx2_subprocess_results[i]
            assert_same(r["torch"], qref_conv(s, isa="vnni"), f"{cid}: groupwise stays exact under the env var")
            hits += int(not np.array_equal(r["torch"], qref_conv(s, isa="avx2")))
    assert hits >= 1, "no groupwise case discriminates exact from saturating"


def _sweep_n(request, default):
    n = request.config.getoption("--sweep")
    return n if n is not None else default


def test_random_sweep_default_isa(request):
    n = _sweep_n(request, 150)
    bad = []
    for s in random_specs(n, seed=1):
        b = build(s)
        if not np.array_equal(qref_conv(s, b), torch_conv(s, b)):
            bad.append(case_id(s) + f" seed={s['seed']}")
    assert not bad, f"{len(bad)} of {n} random configurations mismatch: {bad[:5]}"


def test_random_sweep_avx2_env(request):
    n = _sweep_n(request, 150)
    specs = random_specs(n, seed=2)
    res = run_in_subprocess(specs, AVX2_ENV)
    bad = [case_id(s) + f" seed={s['seed']}" for s, r in zip(specs, res) if not np.array_equal(r["qref"], r["torch"])]
    assert not bad, f"{len(bad)} of {n} random configurations mismatch under AVX2: {bad[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize("env", [{}, AVX2_ENV], ids=["default", "avx2"])
def test_random_sweep_long(env, request):
    n = _sweep_n(request, 2000)
    specs = random_specs(n, seed=3 if not env else 4)
    res = run_in_subprocess(specs, env)
    bad = [case_id(s) + f" seed={s['seed']}" for s, r in zip(specs, res) if not np.array_equal(r["qref"], r["torch"])]
    assert not bad, f"{len(bad)} of {n} mismatch ({env or 'default'}): {bad[:5]}"
