"""How long qref.check takes on a whole model, against the model's own torch forward.

A ResNet-50-style network (Bottleneck blocks [3, 4, 6, 3], written here, no torchvision), eager
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


def resnet50ish(eager: bool = True):
    import torch
    import torch.ao.quantization as tq
    import torch.nn as nn

    class Bottleneck(nn.Module):
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = width * 4
            self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(width)
            self.relu1 = nn.ReLU()
            self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(width)
            self.relu2 = nn.ReLU()
            self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            self.skip = torch.ao.nn.quantized.FloatFunctional()

        def forward(self, x):
            idn = x if self.down is None else self.down(x)
            y = self.relu1(self.bn1(self.conv1(x)))
            y = self.relu2(self.bn2(self.conv2(y)))
            return self.skip.add_relu(self.bn3(self.conv3(y)), idn)

        def fuse(self):
            tq.fuse_modules(self, [["conv1", "bn1", "relu1"], ["conv2", "bn2", "relu2"], ["conv3", "bn3"]],
                            inplace=True)
            if self.down is not None:
                tq.fuse_modules(self.down, [["0", "1"]], inplace=True)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = tq.QuantStub()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU()
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            blocks, cin = [], 64
            for width, n, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
                for i in range(n):
                    blocks.append(Bottleneck(cin, width, stride if i == 0 else 1))
                    cin = width * 4
            self.blocks = nn.Sequential(*blocks)
            self.avgpool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(2048, 1000)
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(self.quant(x)))))
            x = self.avgpool(self.blocks(x))
            return self.dequant(self.fc(torch.flatten(x, 1)))

        def fuse(self):
            tq.fuse_modules(self, [["conv1", "bn1", "relu"]], inplace=True)
            for b in self.blocks:
                b.fuse()

    return Net()


def build(size: int, engine: str):
    import torch
    import torch.ao.quantization as tq

    torch.manual_seed(0)
    torch.backends.quantized.engine = engine
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = resnet50ish().eval()
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
