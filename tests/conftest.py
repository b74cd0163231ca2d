import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run long sweeps (marker: slow)")
    parser.addoption("--sweep", type=int, default=None, help="number of random configurations in sweeps")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: long sweeps, run with --runslow")


def pytest_collection_modifyitems(config, items):
    """Long sweeps (marker `slow`) are deselected unless --runslow: the summary counts them as
    'deselected', and the ~10k generated grid cases do not flood the progress output."""
    if config.getoption("--runslow"):
        return
    slow = [item for item in items if "slow" in item.keywords]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if "slow" not in item.keywords]


def _usable_kernels():
    import qref

    return qref.kernels()


def _kernel_param(name: str) -> str:
    if name not in _usable_kernels():
        required = [k for k in os.environ.get("QREF_REQUIRE_KERNELS", "").split(",") if k]
        if name in required:
            pytest.fail(f"kernel {name!r} is required (QREF_REQUIRE_KERNELS) but not usable here")
        pytest.skip(f"kernel {name!r} not compiled in or not supported by this CPU")
    return name


@pytest.fixture(params=["scalar", "avx2", "avx512vnni"])
def kernel(request):
    """Each qref kernel; one this CPU or build lacks is a visible skip, and a failure
    where QREF_REQUIRE_KERNELS names it (CI sets it for what its CPU must run)."""
    return _kernel_param(request.param)


@pytest.fixture(params=["avx2", "avx512vnni"])
def simd_kernel(request):
    """Each SIMD kernel (compared with the scalar reference), with the same skip/require rule."""
    return _kernel_param(request.param)


@pytest.fixture(scope="session")
def torch_fbgemm():
    torch = pytest.importorskip("torch")
    return torch


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray runtime (2 CPUs) for one test module's cluster="ray" campaigns; skips visibly
    where ray is not installed."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'qref[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
