"""Where a campaign's shards run: this process, worker processes here, or Ray.

A campaign is a pure function ``work(state, shard) -> list of JSON-able items`` (named by
``"module:function"`` so every worker imports it), a ``state`` shipped once per worker (the
kernel under test, the model), and shards produced lazily by the driver. ``run`` hands the
shards out with a bounded number in flight (inputs stream, they are never all in memory at
once), shows a progress bar on stderr, appends every finished shard to the results file and
skips the shards already there. The caller orders the items by their own indices, so the
answer does not depend on where or in which order the shards ran.

``cluster``:
  None               this process, one shard after another (no copy of the state);
  "local"            ``workers`` processes on this machine (spawn, never fork: the state is
                     unpickled fresh in each, and forking a process that runs threads is unsafe);
  "ray"              the Ray instance this process is connected to, else a local ``ray.init()``
                     that is shut down again afterwards;
  "ray://host:port"  a remote Ray cluster (``ray.init(address=...)``; qref must be installed on its
                     nodes).
Ray is imported only here, and only when ``cluster`` names it.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import multiprocessing as mp
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Optional

from . import serialize

# ----------------------------------------------------------------------------- arguments


def check_cluster(fn: str, cluster: Any) -> Any:
    if cluster is None or cluster in ("local", "ray"):
        return cluster
    if isinstance(cluster, str) and cluster.startswith("ray://") and len(cluster) > len("ray://"):
        return cluster
    raise ValueError(f"{fn}: cluster={cluster!r} is not valid (None: this process; 'local': worker processes on "
                     f"this machine; 'ray': the Ray instance of this process or a local one; 'ray://host:port': a "
                     f"remote Ray cluster)")


def check_workers(fn: str, workers: Any) -> Optional[int]:
    if workers is None:
        return None
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"{fn}: workers={workers!r} is not valid (must be None, meaning every CPU of the cluster, "
                         f"or an int >= 1)")
    return workers


def check_shard_size(fn: str, shard_size: Any) -> int:
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"{fn}: shard_size={shard_size!r} is not valid (must be an int >= 1)")
    return shard_size


def resolve(func_path: str) -> Callable:
    mod, name = func_path.split(":")
    return getattr(importlib.import_module(mod), name)


# ----------------------------------------------------------------------------- results file


class ResultsFile:
    """JSON lines: a header naming the campaign, then one line per finished shard
    ``{"shard": id, "items": [...]}``. Reopening it with the same campaign skips those shards;
    a file written by another campaign is refused (its results would be mixed in silently)."""

    def __init__(self, fn: str, path: Optional[str], key: dict) -> None:
        self.path = path
        self.done: dict = {}
        self._f = None
        if path is None:
            return
        path = os.fspath(path)
        self.path = path
        header = {"qref_campaign": key}
        if os.path.exists(path) and os.path.getsize(path) > 0:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
            try:
                first = json.loads(lines[0])
            except json.JSONDecodeError:
                first = None
            if first != json.loads(json.dumps(header)):
                raise ValueError(f"{fn}: results={path!r} holds another campaign's results (its first line is "
                                 f"{lines[0][:200]!r}; this campaign is {json.dumps(header)[:200]}): use another "
                                 f"path, or delete the file to start over")
            for i, line in enumerate(lines[1:]):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    if i == len(lines) - 2 or all(not s.strip() for s in lines[i + 2:]):
                        break  # the last line was cut short by the interruption: that shard reruns
                    raise ValueError(f"{fn}: results={path!r} line {i + 2} is not JSON (the file is damaged; "
                                     f"delete it to start over)") from None
                self.done[int(rec["shard"])] = rec["items"]
            with open(path, "w", encoding="utf-8") as f:  # drop a cut-short last line
                f.write(json.dumps(header) + "\n")
                for sid, items in self.done.items():
                    f.write(json.dumps({"shard": sid, "items": items}) + "\n")
        else:
            d = os.path.dirname(os.path.abspath(path))
            if not os.path.isdir(d):
                raise ValueError(f"{fn}: results={path!r}: directory {d!r} does not exist")
            with open(path, "w", encoding="utf-8") as f:
                f.write(json.dumps(header) + "\n")
        self._f = open(path, "a", encoding="utf-8")

    def add(self, sid: int, items: list) -> None:
        if self._f is not None:
            self._f.write(json.dumps({"shard": sid, "items": items}) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


# ----------------------------------------------------------------------------- progress


class Progress:
    """done / total and failures so far on stderr: tqdm when installed, else one text line
    (rewritten in place on a terminal; otherwise printed every 10% and at least every 10 s)."""

    def __init__(self, desc: str, total: Optional[int], unit: str, enabled: bool) -> None:
        self.desc, self.total, self.unit, self.enabled = desc, total, unit, enabled
        self.done = self.failures = 0
        self._bar = None
        self._last = -1.0
        self._when = time.monotonic()
        self._tty = sys.stderr.isatty()
        if enabled:
            try:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=True)
            except ImportError:
                pass

    def update(self, done: int, failures: int) -> None:
        step = done - self.done
        self.done, self.failures = done, failures
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(f"failures {failures}", refresh=False)
            self._bar.update(step)
            return
        frac = done / self.total if self.total else 0.0
        now = time.monotonic()
        if (self._tty or frac >= self._last + 0.1 or now >= self._when + 10.0
                or (self.total is not None and done >= self.total)):
            self._last, self._when = frac, now
            tot = "?" if self.total is None else str(self.total)
            line = f"{self.desc}: {done}/{tot} {self.unit}s, failures {failures}"
            sys.stderr.write(("\r" + line) if self._tty else (line + "\n"))
            sys.stderr.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.close()
        elif self._tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ----------------------------------------------------------------------------- workers

_STATE: dict = {}


def _one_thread() -> None:
    """A worker is one of many side by side, one per core: torch's intra-op threads would only
    oversubscribe the cores (OpenMP spin-waits). Set before the payload imports torch."""
    os.environ["OMP_NUM_THREADS"] = "1"  # read by torch when it is imported (never imported here)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


def _local_init(func_path: str, payload: bytes) -> None:
    _one_thread()
    _STATE["work"] = resolve(func_path)
    _STATE["state"] = serialize.loads(payload)


def _local_run(sid: int, shard: Any) -> tuple:
    return sid, _STATE["work"](_STATE["state"], shard)


class _RayWorker:
    """One Ray actor. The state arrives once per campaign: a call names it by digest and carries
    its object reference boxed in a list (so Ray does not fetch it for every call); the actor
    fetches and unpickles it only when the digest changes. Actors outlive a campaign and serve
    the next one in the same Ray session (starting an actor costs seconds: a process importing
    qref and the caller's modules)."""

    def __init__(self) -> None:
        self.key: Optional[str] = None
        self.work: Any = None
        self.state: Any = None

    def run(self, func_path: str, key: str, boxed: list, sid: int, shard: Any) -> tuple:
        if key != self.key:
            import ray

            _one_thread()
            self.work = resolve(func_path)
            self.state = serialize.loads(ray.get(boxed[0]))
            self.key = key
        return sid, self.work(self.state, shard)


_ACTORS: dict = {}  # Ray job id -> (runtime_env key, [actors]) of the session this process is in


def release_workers() -> None:
    """Kill the Ray actors qref keeps between campaigns in this Ray session."""
    ray = sys.modules.get("ray")
    for _env, actors in _ACTORS.values():
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone with its session
                pass
    _ACTORS.clear()


def _single_local_node(ray: Any) -> bool:
    """A Ray instance on this machine only (not Ray Client, not a multi-node cluster): the
    driver's import path exists for its workers."""
    try:
        from ray.util.client import ray as client

        if client.is_connected():
            return False
        return len([n for n in ray.nodes() if n.get("Alive")]) == 1
    except Exception:  # noqa: BLE001 - unknown: assume remote, pass nothing
        return False


def _driver_path_env() -> dict:
    """The driver's import path for workers of a Ray instance on this machine, so that kernels
    and model code from the caller's modules (a test file, a script's folder) import there too."""
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    old = os.environ.get("PYTHONPATH")
    return {"PYTHONPATH": os.pathsep.join(paths + ([old] if old else []))}


# ----------------------------------------------------------------------------- run


def run(fn: str, func_path: str, state: Any, shards: Iterable, *, cluster: Any, workers: Optional[int],
        results: ResultsFile, progress: Progress, n_items: Callable[[list], int],
        n_failures: Callable[[list], int]) -> dict:
    """Run ``work(state, shard)`` on every ``(sid, shard)`` of ``shards`` not already in
    ``results``; return ``{sid: items}`` for all shards (finished before or now)."""
    out: dict = dict(results.done)
    done = sum(n_items(v) for v in out.values())
    failures = sum(n_failures(v) for v in out.values())
    progress.update(done, failures)

    def todo() -> Iterator:
        for sid, shard in shards:
            if sid not in out:
                yield sid, shard

    def finished(sid: int, items: list) -> None:
        nonlocal done, failures
        out[sid] = items
        results.add(sid, items)
        done += n_items(items)
        failures += n_failures(items)
        progress.update(done, failures)

    if cluster is None:
        work = resolve(func_path)
        for sid, shard in todo():
            finished(sid, work(state, shard))
        return out
    payload = serialize.dumps(state)
    if cluster == "local":
        _run_local(func_path, payload, todo(), workers, finished)
    else:
        _run_ray(fn, func_path, payload, todo(), cluster, workers, finished)
    return out


def _run_local(func_path: str, payload: bytes, todo: Iterator, workers: Optional[int],
               finished: Callable) -> None:
    nw = workers or os.cpu_count() or 1
    try:
        _local_pool(func_path, payload, todo, nw, finished)
    except BrokenProcessPool as e:
        raise RuntimeError(f"cluster='local': a worker process died ({e}). Workers are spawned, so they import the "
                           f"caller's __main__ module again: a script must start its campaign under "
                           f"`if __name__ == '__main__':`; a kernel or model that crashes the process "
                           f"(SIGSEGV) shows the same way, run it with cluster=None to see") from None


def _local_pool(func_path: str, payload: bytes, todo: Iterator, nw: int, finished: Callable) -> None:
    with ProcessPoolExecutor(max_workers=nw, mp_context=mp.get_context("spawn"), initializer=_local_init,
                             initargs=(func_path, payload)) as ex:
        pending: set = set()
        for sid, shard in todo:
            pending.add(ex.submit(_local_run, sid, shard))
            if len(pending) >= 2 * nw:
                ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in ready:
                    finished(*f.result())
        while pending:
            ready, pending = wait(pending, return_when=FIRST_COMPLETED)
            for f in ready:
                finished(*f.result())


def _run_ray(fn: str, func_path: str, payload: bytes, todo: Iterator, cluster: str, workers: Optional[int],
             finished: Callable) -> None:
    try:
        import ray
    except ImportError:
        raise ImportError(f"{fn}: cluster={cluster!r} needs Ray (pip install 'qref[ray]')") from None
    started = False
    if cluster == "ray":
        if not ray.is_initialized():
            ray.init(log_to_driver=False)
            started = True
    else:
        if ray.is_initialized():
            raise ValueError(f"{fn}: cluster={cluster!r} but this process is already connected to a Ray instance "
                             f"(pass cluster='ray' to use it, or ray.shutdown() first)")
        ray.init(address=cluster, log_to_driver=False)
        started = True
    try:
        nw = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        # num_cpus=0: actors kept between campaigns hold no CPU reservation, so they never starve
        # the caller's own Ray tasks; SPREAD puts them on every node of a cluster.
        opts: dict = {"num_cpus": 0, "scheduling_strategy": "SPREAD"}
        if _single_local_node(ray):
            opts["runtime_env"] = {"env_vars": _driver_path_env()}
        ctx = ray.get_runtime_context()
        job = f"{ctx.get_job_id()}@{ctx.get_node_id()}"  # a new Ray instance may reuse job ids
        env_key = json.dumps(opts, sort_keys=True)
        cached = _ACTORS.get(job)
        if cached is None or cached[0] != env_key:
            for a in (cached[1] if cached else []):
                ray.kill(a)
            _ACTORS.clear()
            cached = _ACTORS[job] = (env_key, [])
        actor_cls = ray.remote(_RayWorker).options(**opts)
        while len(cached[1]) < nw:
            cached[1].append(actor_cls.remote())
        actors = cached[1][:nw]  # a smaller campaign uses the first ones
        key = hashlib.sha256(payload).hexdigest()
        boxed = [ray.put(payload)]  # shipped once to the object store; each actor fetches it once
        idle = deque(actors * 2)  # two shards queued per actor: it never waits for the driver
        busy: dict = {}
        backlog: deque = deque()

        def submit(sid: int, shard: Any) -> None:
            a = idle.popleft()
            busy[a.run.remote(func_path, key, boxed, sid, shard)] = a

        def drain(block_until: int) -> None:
            while len(busy) > block_until:
                ready, _ = ray.wait(list(busy), num_returns=1)
                for r in ready:
                    idle.append(busy.pop(r))
                    finished(*ray.get(r))
                    while backlog and idle:
                        submit(*backlog.popleft())

        try:
            for sid, shard in todo:
                if idle:
                    submit(sid, shard)
                else:
                    backlog.append((sid, shard))
                    drain(len(busy) - 1)
            while backlog:
                drain(len(busy) - 1)
            drain(0)
        except BaseException:
            _ACTORS.clear()  # an interrupted campaign leaves its actors busy: never reuse them
            for a in actors:
                ray.kill(a)
            raise
    finally:
        if started:
            _ACTORS.clear()
            ray.shutdown()

