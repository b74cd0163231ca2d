"""Process-global state under threads, copies of params objects, and memory over many calls.

- oneDNN's verbose log (read to tell which engine a module runs and which oneDNN kernel) can only
  go to fd 1: concurrent captures used to leave fd 1 on a deleted temporary file (all later stdout
  lost); now one lock serializes them, other output is written back, and a capture runs only
  where the value probe cannot settle the engine.
- qref.check's forward hooks live on shared modules: another thread's calls used to appear as
  phantom rows ("c[call 2]").
- A params object after pickle / deepcopy used to hold writable arrays behind a cache keyed by
  their identity (zeroing the weight in place left the output unchanged).
- The public functions in a loop keep RSS bounded.
"""

from __future__ import annotations

import copy
import os
import pickle
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import qref

torch = pytest.importorskip("torch")
nnq = pytest.importorskip("torch.ao.nn.quantized")

TESTS = os.path.dirname(os.path.abspath(__file__))


def _conv_module(engine: str, seed: int = 0, symmetric: bool = True, C: int = 8, O: int = 8):
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        g = torch.Generator().manual_seed(seed)
        m = nnq.Conv2d(C, O, 3, padding=1)
        w = torch.quantize_per_tensor(torch.randn(O, C, 3, 3, generator=g) * 0.1, 0.01, 0 if symmetric else 3,
                                      torch.qint8)
        m.set_weight_bias(w, torch.randn(O, generator=g))
        m.scale, m.zero_point = 0.1, 64
        return m
    finally:
        torch.backends.quantized.engine = prev


def _onednn_available() -> bool:
    return "onednn" in torch.backends.quantized.supported_engines


# ----------------------------------------------------------------------------- oneDNN log capture


def test_concurrent_from_torch_keeps_stdout():
    """8 threads call from_torch at once on oneDNN- and fbgemm-packed modules while another thread
    prints: afterwards fd 1 is still the original stdout, every printed line arrived, and no
    oneDNN log line leaked onto it."""
    if not _onednn_available():
        pytest.skip("this torch has no oneDNN quantized engine: nothing captures fd 1")
    code = textwrap.dedent("""
        import os, threading, warnings
        warnings.simplefilter("ignore")
        import test_robustness as t
        import qref
        before = os.readlink("/proc/self/fd/1")
        mods = [t._conv_module("onednn" if i % 2 else "fbgemm", i) for i in range(8)]
        engines = {}
        def work(i):
            for _ in range(2):
                engines[i] = qref.from_torch(mods[i]).engine
        def printer():
            for k in range(200):
                print(f"line {k}", flush=True)
        ts = [threading.Thread(target=work, args=(i,)) for i in range(8)] + [threading.Thread(target=printer)]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        print("fd1", os.readlink("/proc/self/fd/1") == before)
        print("engines", "".join(engines[i][0] for i in range(8)))
    """)
    env = dict(os.environ, PYTHONPATH=TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    lines = r.stdout.splitlines()
    assert "fd1 True" in lines, r.stdout[-2000:]
    assert "engines fofofofo" in lines, r.stdout[-2000:]
    assert [ln for ln in lines if ln.startswith("line ")] == [f"line {k}" for k in range(200)]
    assert not [ln for ln in lines if "onednn_verbose" in ln]


def test_engine_probe_captures_only_where_needed(monkeypatch):
    """fd 1 is redirected only where the value probe cannot settle the engine: never for a
    module with asymmetric weights (oneDNN refuses those) nor for one whose probe answers 255
    (fbgemm never does)."""
    from qref.bridge import onednn_verbose as _onednn_verbose

    n = []
    real = _onednn_verbose._capture_stdout
    monkeypatch.setattr(_onednn_verbose, "_capture_stdout", lambda fn: n.append(1) or real(fn))
    assert qref.from_torch(_conv_module("fbgemm", 1, symmetric=False)).engine == "fbgemm"
    assert n == []
    if _onednn_available():
        assert qref.from_torch(_conv_module("onednn", 2)).engine == "onednn"
        assert n == []


def test_capture_writes_other_output_back(capfd, monkeypatch):
    """The fd-1 fallback (where the C library's stdout cannot be reached): what else reached fd 1
    during the capture is written back."""
    from qref.bridge import onednn_verbose as _onednn_verbose

    monkeypatch.setattr(_onednn_verbose, "_C_STDOUT", False)

    def fn():
        os.write(1, b"onednn_verbose,v1,primitive,exec,cpu,convolution,x:avx2,rest\nuser line\n")

    with _onednn_verbose.onednn_lock():
        text = _onednn_verbose._capture_stdout(fn)
    assert "onednn_verbose" in text
    assert capfd.readouterr().out == "user line\n"


def test_capture_leaves_fd1_alone(capfd):
    """Where the C library's stdout can be reached, the capture reads what C stdio prints (oneDNN's
    log) and never redirects fd 1: a line written to fd 1 meanwhile goes straight out, in place."""
    from qref.bridge import onednn_verbose as _onednn_verbose

    c = _onednn_verbose._c_stdout()
    if c is None:
        pytest.skip("the C library's stdout is not reachable here (the fd-1 fallback is tested above)")
    libc, _ = c
    import ctypes

    libc.printf.argtypes = [ctypes.c_char_p]

    def fn():
        libc.printf(b"onednn_verbose,v1,primitive,exec,cpu,convolution,x:avx2,rest\n")
        os.write(1, b"user line\n")

    with _onednn_verbose.onednn_lock():
        text = _onednn_verbose._capture_stdout(fn)
    assert "onednn_verbose,v1,primitive,exec,cpu,convolution,x:avx2" in text
    assert "user line" not in text
    assert capfd.readouterr().out == "user line\n"


def test_capture_lock_is_fresh_in_a_forked_child():
    """A child forked while another thread holds the capture lock can still capture."""
    from qref.bridge import onednn_verbose as _onednn_verbose

    held, release = threading.Event(), threading.Event()

    def hold():
        with _onednn_verbose.onednn_lock():
            held.set()
            release.wait(30)

    t = threading.Thread(target=hold)
    t.start()
    held.wait(30)
    try:
        pid = os.fork()
        if pid == 0:
            import signal

            signal.alarm(20)
            with _onednn_verbose.onednn_lock():
                pass
            os._exit(0)
        _, status = os.waitpid(pid, 0)
    finally:
        release.set()
        t.join()
    assert os.waitstatus_to_exitcode(status) == 0


# ----------------------------------------------------------------------------- check from threads


def test_check_from_threads_has_no_phantom_rows():
    """qref.check on the same model from 3 threads (and plain inference in a 4th): every report
    lists exactly the layers of a check made alone."""
    m = torch.nn.Sequential(nnq.Quantize(0.05, 128, torch.quint8), _conv_module("fbgemm", 3),
                            _conv_module("fbgemm", 4), nnq.DeQuantize())
    x = torch.randn(1, 8, 12, 12, generator=torch.Generator().manual_seed(0))
    want = [r.name for r in qref.check(m, x).layers]
    reports, errors = [], []
    stop = threading.Event()

    def checker():
        try:
            for _ in range(4):
                reports.append(qref.check(m, x))
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def infer():
        with torch.no_grad():
            while not stop.is_set():
                m(x)

    ts = [threading.Thread(target=checker) for _ in range(3)]
    bg = threading.Thread(target=infer)
    bg.start()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    stop.set()
    bg.join()
    assert not errors, errors
    assert len(reports) == 12
    for r in reports:
        assert [row.name for row in r.layers] == want
        assert r.ok


# ----------------------------------------------------------------------------- copies of params


def _all_params() -> list:
    from qref import bridge_nd  # noqa: F401

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        g = torch.Generator().manual_seed(7)
        out = [(qref.from_torch(_conv_module("fbgemm", 5)), torch.randn(1, 8, 9, 9, generator=g))]
        lin = torch.ao.nn.quantized.Linear(16, 8)
        lin.set_weight_bias(torch.quantize_per_tensor(torch.randn(8, 16, generator=g) * 0.1, 0.01, 0, torch.qint8),
                            torch.randn(8, generator=g))
        lin.scale, lin.zero_point = 0.2, 60
        out.append((qref.from_torch(lin), torch.randn(4, 16, generator=g)))
        c1 = nnq.Conv1d(4, 6, 3)
        c1.set_weight_bias(torch.quantize_per_tensor(torch.randn(6, 4, 3, generator=g) * 0.1, 0.01, 0, torch.qint8),
                           torch.randn(6, generator=g))
        c1.scale, c1.zero_point = 0.2, 60
        out.append((qref.from_torch(c1), torch.randn(1, 4, 20, generator=g)))
        ct = nnq.ConvTranspose2d(4, 6, 3, stride=2)
        ct.set_weight_bias(torch.quantize_per_tensor(torch.randn(4, 6, 3, 3, generator=g) * 0.1, 0.01, 0,
                                                     torch.qint8), torch.randn(6, generator=g))
        ct.scale, ct.zero_point = 0.2, 60
        out.append((qref.from_torch(ct), torch.randn(1, 4, 5, 5, generator=g)))
        return out
    finally:
        torch.backends.quantized.engine = prev


@pytest.mark.parametrize("how", ["pickle", "deepcopy", "copy"])
def test_params_copies_stay_read_only(how):
    """After pickle / deepcopy / copy, a params object's arrays are read-only (writing raises, so
    the prepared cache can never serve stale weights) and it computes what the original does."""
    dup = {"pickle": lambda p: pickle.loads(pickle.dumps(p)), "deepcopy": copy.deepcopy, "copy": copy.copy}[how]
    for p, xf in _all_params():
        qx = torch.quantize_per_tensor(xf, 0.05, 128, torch.quint8)
        want = p(qx).int_repr()
        q = dup(p)
        q(qx)  # fills q's prepared cache
        for name in ("weight", "bias"):
            a = getattr(q, name)
            if a is None:
                continue
            assert not a.flags.writeable, (type(p).__name__, how, name)
            with pytest.raises(ValueError, match="read-only"):
                a[...] = 0
        assert torch.equal(q(qx).int_repr(), want), (type(p).__name__, how)


# ----------------------------------------------------------------------------- memory


def _rss_kb() -> int:
    with open("/proc/self/status") as f:
        return int(next(ln for ln in f if ln.startswith("VmRSS")).split()[1])


def test_public_functions_in_a_loop_keep_rss_bounded():
    """Every public compute function, error paths included, 150 rounds after a warm-up: RSS
    grows by less than 4 MB (a leak of one small buffer per call would exceed it)."""
    import robust_workloads

    ops = [f for k, f in robust_workloads.ops(2).items() if k != "conv2d-scalar"]
    p, xf = _all_params()[0]
    qx = torch.quantize_per_tensor(xf, 0.05, 128, torch.quint8)
    x = np.zeros((1, 8, 9, 9), np.uint8)

    def errors():
        for bad in (dict(threads=0), dict(input_scale=-1.0), dict(stride=0)):
            kw = dict(input_scale=0.1, input_zero_point=0, output_scale=0.1, output_zero_point=0)
            kw.update(bad)
            with pytest.raises((TypeError, ValueError)):
                qref.conv2d(x, np.ones((4, 8, 3, 3), np.int8), None, weight_scale=0.1, weight_zero_point=0, **kw)

    def one_round():
        for f in ops:
            f()
        p(qx)
        qref.explain(p, qx, (0, 0, 1, 1))
        qref.compare(p(qx), p(qx))
        errors()

    for _ in range(30):
        one_round()
    before = _rss_kb()
    for _ in range(150):
        one_round()
    grow = _rss_kb() - before
    assert grow < 4 * 1024, f"RSS grew by {grow} KB over 150 rounds"
