"""Threads, fork and interpreter exit around the core's thread pool.

Everything that can hang or abort runs in a subprocess with a timeout, so a regression fails
instead of hanging the suite: daemon threads inside a call when the interpreter exits, fork()
while other threads compute (the child must neither deadlock on a mutex the parent held nor
queue work for helper threads it does not have), the multiprocessing start methods, thread
counts beyond the CPUs. The in-process battery runs every public compute function from many
Python threads at once over kernels x ISA semantics x engines x thread counts and compares
each result with the single-threaded bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import qref
import robust_workloads
from qref import _core

TESTS = os.path.dirname(os.path.abspath(__file__))


def _run_py(code: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    e = dict(os.environ)
    e["PYTHONPATH"] = TESTS + os.pathsep + e.get("PYTHONPATH", "")
    e.update(env or {})
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                              timeout=timeout, env=e)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"subprocess hung (> {timeout} s); stdout so far: {exc.stdout!r}, stderr: {exc.stderr!r}")


def _tasks() -> int:
    return len(os.listdir("/proc/self/task"))


# ----------------------------------------------------------------------------- interpreter exit

_EXIT_SCRIPT = """
    import sys, threading, time
    import robust_workloads
    ops = robust_workloads.ops({threads})
    started = []
    def loop(f):
        started.append(1)
        while True:
            f()
    for f in ops.values():
        threading.Thread(target=loop, args=(f,), daemon=True).start()
    while len(started) < len(ops):
        time.sleep(0.001)
    time.sleep({delay})
    print("exiting", flush=True)
"""


@pytest.mark.parametrize("threads", [1, 2])
def test_daemon_threads_inside_calls_at_exit(threads):
    """The interpreter exits while daemon threads are inside every public compute function: the
    process exits 0 (it used to abort: the GIL re-acquire met finalization inside a noexcept
    destructor, 'terminate called without an active exception', rc 134)."""
    runs = 2
    for i in range(runs):
        r = _run_py(_EXIT_SCRIPT.format(threads=threads, delay=0.05 + 0.05 * i), timeout=60)
        assert r.returncode == 0 and "exiting" in r.stdout, (
            f"run {i}: rc={r.returncode}, stderr={r.stderr[-2000:]!r}")
        assert "terminate called" not in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("threads", [1, 2, 4])
def test_daemon_threads_inside_calls_at_exit_many(threads):
    for i in range(25):
        r = _run_py(_EXIT_SCRIPT.format(threads=threads, delay=0.01 * (i % 10)), timeout=60)
        assert r.returncode == 0, f"run {i}: rc={r.returncode}, stderr={r.stderr[-2000:]!r}"


# ----------------------------------------------------------------------------- fork

_FORK_SCRIPT = """
    import json, os, signal, threading, time
    import robust_workloads
    from qref import _core
    want = robust_workloads.expected()
    ops = robust_workloads.ops(2)
    stop = []
    def loop():
        while not stop:
            for f in ops.values():
                f()
    bg = [threading.Thread(target=loop, daemon=True) for _ in range(2)]
    for t in bg:
        t.start()
    time.sleep(0.02)
    results = []
    for i in range({forks}):
        time.sleep(0.001 * (i % 7))
        pid = os.fork()
        if pid == 0:
            signal.alarm(30)  # a deadlocked child dies instead of hanging the parent
            code = 0
            for name, f in ops.items():
                if f().tobytes() != want[name]:
                    code = 3
            # the child creates its own helper threads (the parent's do not exist here)
            if _core.default_threads() >= 2 and len(os.listdir("/proc/self/task")) < 2:
                code = 4
            os._exit(code)
        deadline = time.monotonic() + 60
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                results.append(os.waitstatus_to_exitcode(status))
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                results.append("hung")
                break
            time.sleep(0.002)
    stop.append(1)
    print(json.dumps(results))
"""


def _check_forks(forks: int) -> None:
    r = _run_py(_FORK_SCRIPT.format(forks=forks), timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    results = json.loads(r.stdout.strip().splitlines()[-1])
    bad = [(i, c) for i, c in enumerate(results) if c != 0]
    # -14: SIGALRM (deadlock), 3: wrong bytes, 4: no helper threads in the child
    assert not bad, f"{len(bad)} of {forks} forked children failed: {bad[:10]}"


def test_fork_while_other_threads_compute():
    """fork() while two threads run every public compute function with threads=2 (the
    persistent helpers hold the pool's mutexes at random moments): each child computes every
    function right (it used to deadlock on a core mutex in about 1 fork of 20)."""
    _check_forks(16)


@pytest.mark.slow
def test_fork_while_other_threads_compute_many():
    _check_forks(300)


def test_forked_child_memory_is_bounded():
    """A forked child's multi-threaded calls used to queue tasks for helper threads that do not
    exist in the child (a queued closure per call, without bound); now the child has a pool of its
    own. Measured as the bytes malloc has handed out (glibc's mallinfo2, all arenas: exact, unlike
    RSS, which moves by pages and arenas)."""
    if _core.default_threads() < 2:
        pytest.skip("one CPU: calls are single-threaded, no helper tasks to queue")
    r = _run_py("""
        import ctypes, os, numpy as np, qref

        class MallInfo2(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                       "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL(None)
        if not hasattr(libc, "mallinfo2"):
            print("none")
            raise SystemExit(0)
        libc.mallinfo2.restype = MallInfo2
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (1, 32, 16, 16), dtype=np.uint8)
        w = rng.integers(-128, 128, (64, 32, 3, 3), dtype=np.int8)
        kw = dict(padding=1, input_scale=0.02, input_zero_point=7, weight_scale=0.01, weight_zero_point=0,
                  output_scale=0.5, output_zero_point=100, threads=2)
        qref.conv2d(x, w, None, **kw)
        r, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:
            for _ in range(2000):  # warm-up: the child's own helpers
                qref.conv2d(x, w, None, **kw)
            a = libc.mallinfo2().uordblks
            for _ in range(10000):
                qref.conv2d(x, w, None, **kw)
            os.write(wfd, str(libc.mallinfo2().uordblks - a).encode())
            os._exit(0)
        os.close(wfd)
        os.waitpid(pid, 0)
        print(os.read(r, 100).decode())
    """, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout.strip().splitlines()[-1]
    if out == "none":
        pytest.skip("no glibc mallinfo2 to measure with")
    grow = int(out)
    assert grow < 64 * 1024, f"10000 threaded calls in a forked child kept {grow} more bytes of malloc memory"


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_start_methods(method):
    """Worker processes of every start method, started while a thread of the parent computes,
    give the parent's single-threaded bytes."""
    r = _run_py(f"""
        import multiprocessing as mp, threading, time, json
        import robust_workloads
        want = robust_workloads.expected()
        stop = []
        def loop():
            ops = robust_workloads.ops(2)
            while not stop:
                for f in ops.values():
                    f()
        t = threading.Thread(target=loop, daemon=True)
        t.start()
        ctx = mp.get_context({method!r})
        with ctx.Pool(2) as pool:
            got = pool.map(robust_workloads.outputs, [1, 2, 3, 2])
        stop.append(1)
        print(json.dumps([sorted(k for k in want if g[k] != want[k]) for g in got]))
    """, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    wrong = json.loads(r.stdout.strip().splitlines()[-1])
    assert wrong == [[]] * 4, f"{method}: functions whose bytes differ per task: {wrong}"


# ----------------------------------------------------------------------------- thread counts


def test_default_threads_is_the_affinity_mask():
    assert _core.default_threads() == len(os.sched_getaffinity(0))


def test_threads_beyond_the_cpus_create_no_extra_threads():
    """threads=4096 used to start up to 1023 persistent OS threads (never released) on a 2-core
    machine; the core caps every thread count to the CPUs this process may use."""
    before = _tasks()
    for f in robust_workloads.ops(4096).values():
        f()
    assert _tasks() <= before + _core.default_threads(), (before, _tasks())


def test_threads_capped_to_the_affinity_mask():
    """In a process confined to one CPU, threads=4096 runs on the calling thread only."""
    r = _run_py("""
        import os
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        import robust_workloads
        from qref import _core
        ops = robust_workloads.ops(4096)
        want = robust_workloads.expected()
        before = len(os.listdir("/proc/self/task"))
        ok = all(f().tobytes() == want[k] for k, f in ops.items())
        print(_core.default_threads(), len(os.listdir("/proc/self/task")) - before, ok)
    """, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["1", "0", "True"], r.stdout


# ----------------------------------------------------------------------------- in-process battery


def _battery_cases() -> list:
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (2, 32, 20, 20), dtype=np.uint8)
    w = rng.integers(-128, 128, (32, 32, 3, 3), dtype=np.int8)
    wdw = rng.integers(-128, 128, (32, 1, 3, 3), dtype=np.int8)
    x3 = rng.integers(0, 256, (1, 8, 6, 10, 10), dtype=np.uint8)
    w3 = rng.integers(-128, 128, (8, 8, 3, 3, 3), dtype=np.int8)
    xl = rng.integers(0, 256, (40, 256), dtype=np.uint8)
    wl = rng.integers(-128, 128, (96, 256), dtype=np.int8)
    q = dict(input_scale=0.03, input_zero_point=9, weight_scale=0.004, weight_zero_point=0, output_scale=0.3,
             output_zero_point=90)
    cases = []
    for kernel in qref.kernels() + ["auto"]:
        for isa in ("auto", "avx2", "vnni"):
            for threads in (1, 2, 3):
                cases.append((f"conv2d/{kernel}/{isa}/{threads}",
                              lambda kernel=kernel, isa=isa, threads=threads: qref.conv2d(
                                  x, w, None, padding=1, kernel=kernel, isa=isa, threads=threads, **q)))
                cases.append((f"depthwise/{kernel}/{isa}/{threads}",
                              lambda kernel=kernel, isa=isa, threads=threads: qref.conv2d(
                                  x, wdw, None, padding=1, groups=32, kernel=kernel, isa=isa, threads=threads, **q)))
    for isa in ("auto", "vnni", "avx2"):
        for threads in (1, 2, 3):
            cases.append((f"onednn/{isa}/{threads}", lambda isa=isa, threads=threads: qref.conv2d(
                x, w, None, padding=1, engine="onednn", isa=isa, threads=threads, **q)))
    for threads in (1, 2, 3):
        cases.append((f"conv3d/{threads}", lambda threads=threads: qref.conv3d(
            x3, w3, None, padding=1, threads=threads, **q)))
        cases.append((f"linear/{threads}", lambda threads=threads: qref.linear(xl, wl, None, threads=threads, **q)))
        cases.append((f"transposed/{threads}", lambda threads=threads: qref.conv_transpose2d(
            x, w, None, stride=2, threads=threads, **q)))
    return cases


def test_concurrent_calls_threads_isa_kernel_engine():
    """Every case from 6 Python threads at once (3 rounds, shuffled): each result equals the
    same call made alone."""
    cases = _battery_cases()
    want = {name: f().tobytes() for name, f in cases}
    order = [c for _ in range(3) for c in cases]
    np.random.default_rng(0).shuffle(order)
    with ThreadPoolExecutor(6) as ex:
        got = list(ex.map(lambda c: (c[0], c[1]().tobytes()), order))
    wrong = sorted({name for name, b in got if b != want[name]})
    assert not wrong, f"results that differ under concurrency: {wrong}"


_LIMITED = """
    import resource, sys
    import numpy as np
    import qref
    rng = np.random.default_rng(0)
    q = dict(input_scale=0.02, input_zero_point=7, weight_scale=0.01, weight_zero_point=0, output_scale=0.5,
             output_zero_point=100)
    x3 = rng.integers(0, 256, (4, 16, 6, 12, 12), dtype=np.uint8)
    w3 = rng.integers(-128, 128, (16, 16, 3, 3, 3), dtype=np.int8)
    x2 = rng.integers(0, 256, (2, 16, 12, 12), dtype=np.uint8)
    wt = rng.integers(-128, 128, (16, 8, 3, 3), dtype=np.int8)
    w2 = rng.integers(-128, 128, (16, 1, 3, 3), dtype=np.int8)
    ops = dict(
        conv3d=lambda t: qref.conv3d(x3, w3, None, padding=1, threads=t, kernel="scalar", **q),
        conv_transpose2d=lambda t: qref.conv_transpose2d(x2, wt, None, stride=2, threads=t, kernel="scalar", **q),
        onednn_depthwise=lambda t: qref.conv2d(x2, w2, None, padding=1, groups=16, engine="onednn", threads=t, **q),
    )
    f = ops[sys.argv[1]]
    want = f(1)
    vm = int([l for l in open("/proc/self/status") if l.startswith("VmSize")][0].split()[1]) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (4 << 20), resource.RLIM_INFINITY))
    try:
        print("same" if np.array_equal(f(2), want) else "wrong bytes")
    except Exception as e:
        print(f"{type(e).__name__}: {e}")
"""


@pytest.mark.parametrize("op", ["conv3d", "conv_transpose2d", "onednn_depthwise"])
def test_thread_creation_refused_by_the_system(op):
    """Where the system refuses a new thread (here: an address-space limit that leaves no room for
    its stack), the per-call threaded drivers (N-d reference, oneDNN kernels) do that part on the
    calling thread and return the same bytes (they raised "Resource temporarily unavailable",
    and would have aborted had a later thread failed after an earlier one started)."""
    if _core.default_threads() < 2:
        pytest.skip("one CPU: every call is single-threaded")
    e = dict(os.environ)
    e["PYTHONPATH"] = TESTS + os.pathsep + e.get("PYTHONPATH", "")
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_LIMITED), op], capture_output=True, text=True,
                       timeout=120, env=e)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "same", r.stdout
