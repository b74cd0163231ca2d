"""qref's QNNPACK engine vs torch's qnnpack on the same layers, single thread.

    python benchmarks/bench_qnnpack.py

Prints one row per layer: torch's time, qref's time (median of repeats) and whether the bytes are equal.
qref's QNNPACK engine is a scalar reference loop (no SIMD kernel yet).
"""

import time
import warnings

import numpy as np
import torch

import qref

warnings.filterwarnings("ignore")
LAYERS = [  # name, C, O, groups, k, stride, pad, H
    ("conv 3x3 32->32", 32, 32, 1, 3, 1, 1, 28),
    ("depthwise 3x3 64", 64, 64, 64, 3, 1, 1, 28),
    ("pointwise 1x1 64->128", 64, 128, 1, 1, 1, 0, 28),
]


def _median(fn, n=5):
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts))


def main():
    torch.set_num_threads(1)
    torch.backends.quantized.engine = "qnnpack"
    torch.manual_seed(0)
    print(f"{'layer':<24}{'torch qnnpack ms':>18}{'qref ms':>10}{'ratio':>8}  equal")
    for name, C, O, g, k, s, p, H in LAYERS:
        m = torch.ao.nn.quantized.Conv2d(C, O, k, s, p, groups=g)
        m.set_weight_bias(torch.quantize_per_tensor(torch.randn(O, C // g, k, k) * 0.1, 0.003, 0, torch.qint8),
                          torch.randn(O))
        m.scale, m.zero_point = 0.05, 100
        qx = torch.quantize_per_tensor(torch.randn(1, C, H, H), 0.05, 128, torch.quint8)
        params = qref.from_torch(m)
        equal = torch.equal(params(qx, threads=1).int_repr(), m(qx).int_repr())
        tt = _median(lambda: m(qx))
        tq = _median(lambda: params(qx, threads=1))
        print(f"{name:<24}{tt * 1e3:>18.3f}{tq * 1e3:>10.3f}{tq / tt:>8.1f}  {equal}")
    m = torch.ao.nn.quantized.Linear(512, 256)
    m.scale, m.zero_point = 0.05, 100
    qx = torch.quantize_per_tensor(torch.randn(16, 512), 0.05, 128, torch.quint8)
    params = qref.from_torch(m)
    equal = torch.equal(params(qx, threads=1).int_repr(), m(qx).int_repr())
    tt, tq = _median(lambda: m(qx)), _median(lambda: params(qx, threads=1))
    print(f"{'linear 16x512->256':<24}{tt * 1e3:>18.3f}{tq * 1e3:>10.3f}{tq / tt:>8.1f}  {equal}")


if __name__ == "__main__":
    main()
