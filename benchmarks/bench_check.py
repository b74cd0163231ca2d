"""How long qref.check takes on a whole model, against the model's own torch forward.

A ResNet-50-style network (``qref.demo.resnet``: Bottleneck blocks [3, 4, 6, 3], no torchvision), eager
quantization (fuse, prepare, calibrate, convert) under the "fbgemm" engine, one 224x224 image,
single thread (torch.set_num_threads(1), qref threads=1). Timed in one process: torch's forward,
qref.check (first call: params prepared and packed once per module; repeated calls: cached),
qref.check(end_to_end=False), and qref.run. Every check is asserted OK, qref.run equal to torch.

    python benchmarks/bench_check.py [--size 224] [--repeat 3] [--engine fbgemm]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings


def build(size: int, engine: str):
    import torch
    import torch.ao.quantization as tq

    from qref.demo import resnet

    torch.manual_seed(0)
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = resnet([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], stem=64, stem_kernel=7, stem_stride=2,
                   bottleneck=True, classes=1000).eval()
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.data.uniform_(0.3, 1.0)
        m.fuse()
        m.qconfig = tq.get_default_qconfig(engine)
        tq.prepare(m, inplace=True)
        m(torch.rand(1, 3, size, size))
        tq.convert(m, inplace=True)
    return m, torch.rand(1, 3, size, size)


def timed(fn, repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def interleaved(fns: dict, repeat: int) -> dict:
    """Median seconds of each function, run in turns (a busy machine slows all of them alike)."""
    ts: dict = {k: [] for k in fns}
    for _ in range(repeat):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            ts[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in ts.items()}


def main(argv=None) -> dict:
    import torch

    import qref

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--engine", default="fbgemm", choices=["fbgemm", "x86"])
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    m, x = build(a.size, a.engine)
    with torch.no_grad():
        expected = m(x)
    t0 = time.perf_counter()
    r = qref.check(m, x, threads=1)
    t_first = time.perf_counter() - t0
    assert r.ok, str(r)
    n_ops = len(r.layers)
    assert torch.equal(qref.run(m, x, threads=1), expected)

    def fwd():
        with torch.no_grad():
            m(x)

    t = interleaved({"torch": fwd, "check": lambda: qref.check(m, x, threads=1),
                     "ops": lambda: qref.check(m, x, threads=1, end_to_end=False),
                     "run": lambda: qref.run(m, x, threads=1)}, a.repeat)
    t_torch, t_check, t_check_ops, t_run = t["torch"], t["check"], t["ops"], t["run"]
    res = dict(size=a.size, engine=a.engine, ops=n_ops, torch_ms=t_torch * 1e3, check_first_ms=t_first * 1e3,
               check_ms=t_check * 1e3, check_ops_only_ms=t_check_ops * 1e3, run_ms=t_run * 1e3)
    print(f"ResNet-50-style, 1x3x{a.size}x{a.size}, engine {a.engine}, single thread; {n_ops} quantized op calls, "
          f"all bit-exact, qref.run == torch")
    print("| what | ms | / torch forward |")
    print("|---|---:|---:|")
    for label, key in (("torch forward", "torch_ms"), ("qref.check, first call (prepares every module)",
                                                       "check_first_ms"),
                       ("qref.check, repeated (op by op + end to end)", "check_ms"),
                       ("qref.check(end_to_end=False), repeated", "check_ops_only_ms"),
                       ("qref.run (every quantized op by qref)", "run_ms")):
        print(f"| {label} | {res[key]:.1f} | {res[key] / res['torch_ms']:.2f} |")
    return res


if __name__ == "__main__":
    main()
