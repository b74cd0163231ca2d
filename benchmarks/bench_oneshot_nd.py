"""One-shot calls of qref.conv3d / qref.conv_transpose2d against torch's ops with prepacked weights.

Times, single thread, in one process with alternating blocks: torch's ``quantized::conv3d`` /
``quantized::conv_transpose2d`` on weights packed once (``conv3d_prepack`` etc.), and qref's one-shot
function on the quantized tensors (whatever it prepares per call). Every qref output is asserted equal
(``==``) to torch's first. Prints t_qref / t_torch per shape and engine.

    python benchmarks/bench_oneshot_nd.py [--repeat N]
"""

from __future__ import annotations

import argparse
import time

import torch

import qref


def _median(f, n):
    ts = []
    for _ in range(n):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    ts.sort()
    return ts[len(ts) // 2]


def _case(name, engine, x_shape, w_shape, transposed, stride, padding, n):
    torch.backends.quantized.engine = engine
    g = torch.Generator().manual_seed(0)
    x = torch.quantize_per_tensor(torch.rand(x_shape, generator=g), 0.02, 3, torch.quint8)
    w = torch.quantize_per_tensor(torch.randn(w_shape, generator=g) * 0.1, 0.01, 0, torch.qint8)
    b = torch.randn(w_shape[1] if transposed else w_shape[0], generator=g)
    nd = len(x_shape) - 2
    st, pd, dl = [stride] * nd, [padding] * nd, [1] * nd
    ops = torch.ops.quantized
    if transposed:
        packed = getattr(ops, f"conv_transpose{nd}d_prepack")(w, b, st, pd, [0] * nd, dl, 1)
        op = getattr(ops, f"conv_transpose{nd}d")
        qfn = getattr(qref, f"conv_transpose{nd}d")
    else:
        packed = getattr(ops, f"conv{nd}d_prepack")(w, b, st, pd, dl, 1)
        op = getattr(ops, f"conv{nd}d")
        qfn = getattr(qref, f"conv{nd}d")
    os_, oz = 0.05, 5

    def t_torch():
        return op(x, packed, os_, oz)

    def t_prep_torch():
        p = getattr(ops, (f"conv_transpose{nd}d" if transposed else f"conv{nd}d") + "_prepack")
        return p(w, b, st, pd, [0] * nd, dl, 1) if transposed else p(w, b, st, pd, dl, 1)

    def t_qref():
        return qfn(x, w, b, stride=stride, padding=padding, output_scale=os_, output_zero_point=oz,
                   engine=engine, threads=1)

    ref, got = t_torch(), t_qref()
    assert torch.equal(ref.int_repr(), got.int_repr()), (name, engine)
    tt = tq = tp = float("inf")
    for _ in range(3):
        tt = min(tt, _median(t_torch, n))
        tq = min(tq, _median(t_qref, n))
        tp = min(tp, _median(t_prep_torch, n))
    print(f"{name:34s} {engine:7s} torch {tt * 1e3:7.3f} ms  qref {tq * 1e3:7.3f} ms  "
          f"qref/torch {tq / tt:5.2f}  (torch's own prepack {tp * 1e3:6.3f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=20)
    n = ap.parse_args().repeat
    torch.set_num_threads(1)
    for engine in ("fbgemm", "x86"):
        _case("conv3d 64->64 3x3x3 @8x14x14", engine, (1, 64, 8, 14, 14), (64, 64, 3, 3, 3), False, 1, 1, n)
        _case("conv3d 128->128 3x3x3 @4x7x7", engine, (1, 128, 4, 7, 7), (128, 128, 3, 3, 3), False, 1, 1, n)
            # (256 -> 128 on x86 would be torch's known oneDNN ConvTranspose defect: qref.onednn.transposed_defect)
        _case("conv_transpose2d 128->128 4x4 s2 @14", engine, (1, 128, 14, 14), (128, 128, 4, 4), True, 2, 1, n)
        _case("conv_transpose2d 64->64 3x3 @28", engine, (1, 64, 28, 28), (64, 64, 3, 3), True, 1, 1, n)


if __name__ == "__main__":
    main()
