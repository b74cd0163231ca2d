"""examples/custom_kernel: a user's naive AVX2 conv, built with CMake through
find_package(qref), validated in C++ against the golden output and qref/reference.h, and from
Python through qref.compare: the first version's bug (padding with 0) is diagnosed, the fixed
version is bit-exact."""

import importlib
import os
import shutil
import subprocess

import pytest

import oracle
import qref

E = importlib.import_module("qref.export")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE = os.path.join(ROOT, "examples", "custom_kernel")


@pytest.fixture(scope="module")
def validate_exe(tmp_path_factory):
    if shutil.which("cmake") is None:
        pytest.skip("cmake not on PATH: the example project cannot be built")
    if shutil.which(os.environ.get("CXX", "g++")) is None and shutil.which("c++") is None:
        pytest.skip("no C++ compiler on PATH: the example project cannot be built")
    if not qref.torch_isa().cpu_features.get("avx2"):
        pytest.skip("this CPU has no AVX2: the example kernel cannot run")
    b = tmp_path_factory.mktemp("custom_kernel_build")
    r = subprocess.run(["cmake", "-S", EXAMPLE, "-B", str(b), f"-Dqref_DIR={qref.get_cmake_dir()}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["cmake", "--build", str(b)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    return str(b / "validate")


def _run(exe, case_dir, version, out):
    return subprocess.run([exe, case_dir, "--version", str(version), "--out", out], capture_output=True, text=True)


def test_first_version_is_diagnosed_and_the_fix_passes(tmp_path, validate_exe):
    # The kernel computes exact products: the arithmetic of a VNNI host (isa="vnni"), on any host.
    kw = E.random_case(seed=5, shape=(1, 24, 10, 10), out_channels=32, input_zero_point=128, isa="vnni")
    d = str(tmp_path / "case")
    qref.export(d, rtl=False, **kw)
    case = qref.load_case(d)

    r1 = _run(validate_exe, d, 1, str(tmp_path / "v1.bin"))
    assert r1.returncode == 1, r1.stdout + r1.stderr
    assert "FAIL" in r1.stdout and "vs qref::ref::conv2d" in r1.stdout
    v1 = E.read_bin(str(tmp_path / "v1.bin"))
    cmp1 = qref.compare(v1, layout="NHWC", **case.conv_kwargs())
    assert not cmp1.ok
    assert cmp1.best is not None and cmp1.best.name == "pad_zero", str(cmp1)
    assert cmp1.best.explained == cmp1.mismatches and cmp1.best.breaks == 0
    # the C++ count and the Python count agree
    assert f"vs golden output: {cmp1.mismatches} of {v1.size} elements differ" in r1.stdout

    r2 = _run(validate_exe, d, 2, str(tmp_path / "v2.bin"))
    assert r2.returncode == 0 and "PASS: bit-exact" in r2.stdout, r2.stdout + r2.stderr
    v2 = E.read_bin(str(tmp_path / "v2.bin"))
    cmp2 = qref.compare(v2, layout="NHWC", **case.conv_kwargs())
    assert cmp2.ok, str(cmp2)
    oracle.assert_same(v2.transpose(0, 3, 1, 2), case.output, "fixed kernel vs golden output")

    # Against an AVX2 host's torch (int16-saturating pairs on this im2col conv) the same kernel
    # mismatches, and compare() says why.
    cmp3 = qref.compare(v2, layout="NHWC", **case.conv_kwargs(isa="avx2"))
    assert cmp3.best is not None and cmp3.best.name == "exact_products", str(cmp3)


def test_fixed_kernel_vs_depthwise_saturation(tmp_path, validate_exe):
    """fbgemm's depthwise path saturates int16 pairs on every CPU; the naive kernel does not."""
    kw = E.random_case(seed=6, shape=(1, 16, 8, 8), out_channels=16, groups=16, input_zero_point=3, isa="vnni")
    d = str(tmp_path / "dw")
    qref.export(d, rtl=False, **kw)
    case = qref.load_case(d)
    assert case.meta["fbgemm"]["path"] == "depthwise" and case.meta["fbgemm"]["saturate"]
    r = _run(validate_exe, d, 2, str(tmp_path / "dw.bin"))
    assert "int16-saturating pairs" in r.stdout
    cmp = qref.compare(E.read_bin(str(tmp_path / "dw.bin")), layout="NHWC", **case.conv_kwargs())
    if cmp.ok:
        pytest.fail("expected the saturation to show on full-range depthwise data")
    assert r.returncode == 1 and cmp.best is not None and cmp.best.name == "exact_products", str(cmp)


def test_golden_case_matches_torch_on_this_host(tmp_path, torch_fbgemm):
    """The golden output the example is checked against is torch's own: exported with isa="auto"
    it equals torch's output computed here, on any host."""
    kw = E.random_case(seed=5, shape=(1, 24, 10, 10), out_channels=32, input_zero_point=128, isa="auto")
    d = str(tmp_path / "auto")
    qref.export(d, rtl=False, **kw)
    import torch

    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(kw["input"]), kw["input_scale"],
                                                 kw["input_zero_point"])
    qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(kw["weight"]),
                                                  torch.from_numpy(kw["weight_scale"]),
                                                  torch.from_numpy(kw["weight_zero_point"].astype("int64")), 0)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        pp = torch.ops.quantized.conv2d_prepack(qw, torch.from_numpy(kw["bias"]), [1, 1], [1, 1], [1, 1], 1)
        t = torch.ops.quantized.conv2d(qx, pp, kw["output_scale"], kw["output_zero_point"]).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = prev
    oracle.assert_same(qref.load_case(d).output, t, "golden (isa=auto) vs torch")
