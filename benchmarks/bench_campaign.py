"""Campaign throughput: qref.fuzz configurations/s and qref.check_dataset inputs/s against the
number of workers, for cluster=None, "local" (worker processes) and "ray" (a local Ray instance).

    python benchmarks/bench_campaign.py [--n 2000] [--inputs 96] [--workers 1,2] [--markdown out.md]

Every run's report is compared with the in-process one (the answer must not depend on the
cluster). The throughput is the steady state, from the first finished shard to the end (read
from the progress updates); the start-up (process spawn, imports, unpickling the kernel or model;
Ray: starting the actors) is the rest of the run. Ray's second campaign reuses the actors qref
keeps, so its start-up is paid once per Ray session.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import warnings

import qref
from qref.campaign import cluster as C


def kernel(x, w, b, **kw):
    """The kernel under test: qref itself (so every configuration passes and the time is qref's
    and the campaign machinery's)."""
    return qref.conv2d(x, w, b, **kw)


def build_model():
    import torch
    import torch.ao.quantization as tq

    torch.backends.quantized.engine = "fbgemm"
    torch.manual_seed(0)
    m = torch.nn.Sequential(tq.QuantStub(), torch.nn.Conv2d(3, 16, 3, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(16, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
                            torch.nn.Conv2d(32, 32, 3, padding=1, groups=32), torch.nn.Conv2d(32, 64, 1),
                            tq.DeQuantStub()).eval()
    m.qconfig = tq.get_default_qconfig("fbgemm")
    tq.prepare(m, inplace=True)
    m(torch.rand(8, 3, 64, 64))
    tq.convert(m, inplace=True)
    g = torch.Generator().manual_seed(1)
    return m, torch.rand(0, 3, 64, 64), g


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="fuzz configurations per campaign")
    ap.add_argument("--inputs", type=int, default=160, help="dataset inputs 1x3x64x64 per campaign")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of this process (cluster=None rows; "
                    "workers always use 1)")
    ap.add_argument("--workers", default="1,2", help="worker counts to measure")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--markdown", help="also write the table to this file")
    args = ap.parse_args(argv)
    warnings.filterwarnings("ignore")
    import torch

    counts = [int(v) for v in args.workers.split(",")]
    torch.set_num_threads(args.threads)
    model, _, g = build_model()
    data = [torch.rand(1, 3, 64, 64, generator=g) for _ in range(args.inputs)]
    clusters: list = [(None, 1)] + [("local", w) for w in counts]
    if not args.no_ray:
        clusters += [("ray", w) for w in counts]
        import ray

        t = time.perf_counter()
        ray.init(num_cpus=max(counts), include_dashboard=False, log_to_driver=False)
        print(f"ray.init: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    rows = []
    ref = {}
    marks: list = []  # (time, items done) at every finished shard, recorded from the progress bar
    orig_update = C.Progress.update

    def update(self, done, failures):
        marks.append((time.perf_counter(), done))
        orig_update(self, done, failures)

    C.Progress.update = update

    def campaign(what: str, cluster, w: int, size: int) -> tuple:
        marks.clear()
        t = time.perf_counter()
        if what == "fuzz":
            r = qref.fuzz(kernel, size, seed=0, cluster=cluster, workers=w if cluster else None, progress=False)
        else:
            r = qref.check_dataset(model, data[:size], cluster=cluster, workers=w if cluster else None,
                                   progress=False)
        dt = time.perf_counter() - t
        d = r.to_dict()
        if ref.setdefault((what, size), d) != d:
            raise SystemExit(f"{what} on cluster={cluster} gave a different report")
        # steady state: from the first finished shard to the end; start-up: the rest of the run
        done = [(tm, k) for tm, k in marks if k > 0]
        (t1, k1), (t2, k2) = done[0], done[-1]
        rate = (k2 - k1) / max(t2 - t1, 1e-9)
        return rate, max((t1 - t) - k1 / rate, 0.0), dt

    for cluster, w in clusters:
        for what, n in (("fuzz", args.n), ("dataset", args.inputs)):
            rate, startup, dt = campaign(what, cluster, w, n)
            rows.append((what, str(cluster), w, "first", rate, startup, dt))
            print(f"{what:8s} cluster={cluster!s:6s} workers={w}: {rate:.1f}/s, start-up {startup:.1f} s, "
                  f"total {dt:.2f} s", file=sys.stderr)
            if cluster == "ray":  # the actors qref keeps serve the next campaign of the session
                rate, startup, dt = campaign(what, cluster, w, n)
                rows.append((what, str(cluster), w, "second", rate, startup, dt))
    if not args.no_ray:
        ray.shutdown()
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [f"Campaign throughput, {os.cpu_count()} CPUs ({cpu}); fuzz: {args.n} configurations, dataset: "
             f"{args.inputs} inputs 1x3x64x64 through a 4-conv stem; the same report on every row. items/s: steady "
             f"state (first finished shard to the end); start-up: the rest of the run (workers starting).", "",
             "| campaign | cluster | workers | run | items/s | start-up (s) | total (s) |",
             "|---|---|---:|---|---:|---:|---:|"]
    for what, c, w, run, rate, startup, dt in rows:
        unit = "configs" if what == "fuzz" else "inputs"
        lines.append(f"| {what} | {c} | {w} | {run} | {rate:.0f} {unit}/s | {startup:.1f} | {dt:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
