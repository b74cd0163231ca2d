"""The reference from C++: headers compile on their own, reference.h equals qref.conv2d,
and the include dir / CMake package config are found in both install layouts."""

import glob
import importlib
import importlib.util
import os
import shutil
import subprocess

import numpy as np
import pytest

import qref

E = importlib.import_module("qref.export")
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLE = os.path.join(ROOT, "examples", "custom_kernel")
HEADERS = sorted(os.path.basename(p) for p in glob.glob(os.path.join(ROOT, "csrc", "qref", "*.h")))
CXX = shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")

# Runs the header-only reference on a golden case and writes its stages as .bin files.
REF_DRIVER = r"""
// Test driver for csrc/qref/reference.h: runs the
// header-only reference on a golden case and writes its stages as .bin files.
#include <cstdio>
#include <string>
#include <vector>

#include "golden_case.h"
#include "qref/reference.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CASE_DIR OUT_DIR\n", argv[0]);
    return 2;
  }
  golden::Case c;
  golden::load(argv[1], c);
  const std::string out_dir = argv[2];
  const size_t n = c.output.size();
  std::vector<uint8_t> out(n);
  std::vector<int32_t> acc(n), raw(n);
  std::vector<float> y(n);
  qref::ref::conv2d(c.args, c.input.data(), c.weight.data(), out.data(), acc.data(), raw.data(), y.data());
  golden::write_bin(out_dir + "/output.bin", 1, 4, c.out_dims, out.data(), n);
  golden::write_bin(out_dir + "/acc.bin", 3, 4, c.out_dims, acc.data(), n * 4);
  golden::write_bin(out_dir + "/raw.bin", 3, 4, c.out_dims, raw.data(), n * 4);
  golden::write_bin(out_dir + "/y.bin", 4, 4, c.out_dims, y.data(), n * 4);
  std::printf("saturates avx2=%d vnni=%d depthwise=%d\n", qref::ref::saturates(c.args.shape, qref::ref::Isa::avx2),
              qref::ref::saturates(c.args.shape, qref::ref::Isa::vnni), qref::ref::is_depthwise(c.args.shape));
  return 0;
}
"""


def _need_cxx():
    if CXX is None:
        pytest.skip("no C++ compiler (g++/c++) on PATH")


def test_get_include_and_cmake_dir():
    inc = qref.get_include()
    for h in ("reference.h", "requant.h", "conv2d.h"):
        assert os.path.isfile(os.path.join(inc, "qref", h)), (inc, h)
    assert os.path.isfile(os.path.join(qref.get_cmake_dir(), "qrefConfig.cmake"))


def test_paths_main_for_the_cli(capsys):
    """``_paths.main`` is what ``qref``'s CLI (or ``python -m qref._paths``) calls."""
    from qref import _paths

    assert _paths.main(["--include"]) == 0 and capsys.readouterr().out.strip() == qref.get_include()
    assert _paths.main(["--cmake-dir"]) == 0 and capsys.readouterr().out.strip() == qref.get_cmake_dir()


def test_get_include_in_a_wheel_layout(tmp_path):
    """A regular install: qref/_paths.py with include/ and cmake/ beside it (CMakeLists install())."""
    pkg = tmp_path / "qref"
    (pkg / "include" / "qref").mkdir(parents=True)
    (pkg / "cmake").mkdir()
    shutil.copy(os.path.join(ROOT, "python", "qref", "_paths.py"), pkg / "_paths.py")
    for h in HEADERS:
        shutil.copy(os.path.join(ROOT, "csrc", "qref", h), pkg / "include" / "qref" / h)
    shutil.copy(os.path.join(ROOT, "cmake", "qrefConfig.cmake"), pkg / "cmake")
    spec = importlib.util.spec_from_file_location("wheel_qref_paths", pkg / "_paths.py")
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)
    assert m.get_include() == str(pkg / "include")
    assert m.get_cmake_dir() == str(pkg / "cmake")


@pytest.mark.parametrize("header", HEADERS)
def test_header_compiles_on_its_own(tmp_path, header):
    _need_cxx()
    src = tmp_path / "t.cc"
    src.write_text(f'#include "qref/{header}"\n#include "qref/{header}"\nint main() {{ return 0; }}\n')
    r = subprocess.run([CXX, "-std=c++17", "-fsyntax-only", "-Wall", "-Wextra", "-I", qref.get_include(), str(src)],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"qref/{header} does not compile on its own with -std=c++17:\n{r.stderr}"


@pytest.fixture(scope="module")
def ref_driver(tmp_path_factory):
    _need_cxx()
    d = tmp_path_factory.mktemp("drv")
    exe = str(d / "ref_driver")
    (d / "ref_driver.cc").write_text(REF_DRIVER)
    r = subprocess.run([CXX, "-std=c++17", "-O2", "-ffp-contract=off", "-Wall", "-Wextra", "-I", qref.get_include(),
                        "-I", EXAMPLE, str(d / "ref_driver.cc"), "-o", exe], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    return exe


REF_CASES = [
    dict(shape=(1, 16, 8, 8), out_channels=16),  # groupwise
    dict(shape=(2, 24, 7, 9), out_channels=24, groups=24, relu=True, input_zero_point=200),  # depthwise
    dict(shape=(1, 8, 9, 9), out_channels=16, groups=8, kernel=(5, 5), padding=(2, 2), stride=(2, 2)),  # dw x2
    dict(shape=(1, 6, 9, 7), out_channels=5, kernel=(3, 2), stride=(2, 1), padding=(1, 0), per_channel=False,
         weight_zero_point=-3),  # im2col, per-tensor, weight zero point
    dict(shape=(1, 10, 5, 5), out_channels=7, kernel=(1, 1), padding=(0, 0), bias=False),  # pointwise
    dict(shape=(1, 9, 11, 10), out_channels=6, groups=3, kernel=(3, 3), dilation=(2, 2), padding=(2, 1),
         weight_zero_point=4),  # dilated grouped im2col
]


@pytest.mark.parametrize("isa", ["avx2", "vnni"])
@pytest.mark.parametrize("i", range(len(REF_CASES)))
def test_reference_h_equals_qref(tmp_path, ref_driver, i, isa):
    kw = E.random_case(seed=100 + i, **dict(REF_CASES[i], isa=isa))
    d = str(tmp_path / "case")
    qref.export(d, rtl=False, **kw)
    c = qref.load_case(d)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = subprocess.run([ref_driver, d, str(out_dir)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for k in ("output", "acc", "raw", "y"):
        got = np.ascontiguousarray(E.read_bin(str(out_dir / f"{k}.bin")).transpose(0, 3, 1, 2))
        assert np.array_equal(got.view(np.uint8), c.arrays[k].view(np.uint8)), \
            f"{k}: {int(np.count_nonzero(got != c.arrays[k]))} elements differ from qref.conv2d"
    # qref::ref::saturates agrees with qref.conv_plan for both named ISAs
    sat = dict(p.split("=") for p in r.stdout.split()[1:])
    for name in ("avx2", "vnni"):
        plan = qref.conv_plan(kw["input"].shape, kw["weight"].shape, kw["stride"], kw["padding"], kw["dilation"],
                              kw["groups"], isa=name)
        assert bool(int(sat[name])) == plan.saturates, (name, plan)
        assert bool(int(sat["depthwise"])) == (plan.path == "depthwise")


def test_find_package_from_the_installed_layout(tmp_path):
    """The package config as CMakeLists installs it (site-packages/qref/cmake beside include/)."""
    _need_cxx()
    if shutil.which("cmake") is None:
        pytest.skip("cmake not on PATH")
    from qref import _core

    installed = os.path.join(os.path.dirname(os.path.abspath(_core.__file__)), "cmake")
    if not os.path.isfile(os.path.join(installed, "qrefConfig.cmake")):
        pytest.skip(f"no installed qrefConfig.cmake in {installed} (rebuild/reinstall qref)")
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.18)\nproject(t CXX)\nfind_package(qref 0.1 REQUIRED)\n"
        "message(STATUS \"qref_INCLUDE_DIR=${qref_INCLUDE_DIR}\")\n"
        "add_executable(t t.cc)\ntarget_link_libraries(t PRIVATE qref::headers)\n")
    (tmp_path / "t.cc").write_text('#include "qref/reference.h"\nint main() { return 0; }\n')
    r = subprocess.run(["cmake", "-S", str(tmp_path), "-B", str(tmp_path / "b"), f"-Dqref_DIR={installed}"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    inc = os.path.join(os.path.dirname(installed), "include")
    assert f"qref_INCLUDE_DIR={os.path.realpath(inc)}" in r.stdout or f"qref_INCLUDE_DIR={inc}" in r.stdout, r.stdout
    r = subprocess.run(["cmake", "--build", str(tmp_path / "b")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
