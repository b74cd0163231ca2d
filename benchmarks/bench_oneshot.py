"""The one-shot public API as users call it: ``qref.conv2d(qx, qw, bias, ...)`` in a loop, on the
NCHW-contiguous quantized tensors torch produces by default, and on numpy arrays, against
``torch.ops.quantized.conv2d`` with prepacked weights (torch's fastest call), on the layer shapes and
operands of ``qref.bench`` (``shapes()``, ``make_operands``) that bench_conv2d.py times too.

Single thread (torch.set_num_threads(1), ``threads=1``), one process, timed in alternating blocks
(qref.bench.interleaved, medians); every shape's outputs are asserted byte-equal to torch's in the
same run before timing. The ratio is t_torch / t_qref (above 1: qref is faster). The qref call gets
the same weight objects on every call, as a user's loop does; what it costs beyond the kernel
(validation, layout conversion, the prepared-weight cache check) is part of the time.

Run: ``python benchmarks/bench_oneshot.py [--budget SECONDS] [--markdown FILE]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def run(budget_s: float, engine: str = "fbgemm") -> list[dict]:
    import torch

    import qref
    from qref.bench import interleaved, make_operands, shapes

    torch.set_num_threads(1)
    torch.backends.quantized.engine = engine
    rows = []
    for shape in shapes():  # qref.bench's table of real layer shapes, with its operands
        ops = make_operands(shape)
        name, s, p, g = shape.name, shape.stride, shape.padding, shape.groups
        x, w, bias, w_scale, w_zp = ops["x"], ops["w"], ops["bias"], ops["w_scale"], ops["w_zp"]
        out_s, out_zp, a_s, a_zp = ops["out_scale"], ops["out_zp"], ops["a_scale"], ops["a_zp"]
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), a_s, a_zp)  # NCHW-contiguous
        qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(w_scale),
                                                      torch.from_numpy(w_zp), 0)
        tb = torch.from_numpy(bias)
        packed = torch.ops.quantized.conv2d_prepack(qw, tb, [s, s], [p, p], [1, 1], g)

        def f_torch():
            return torch.ops.quantized.conv2d(qx, packed, out_s, out_zp)

        def f_qref_torch():
            return qref.conv2d(qx, qw, tb, stride=s, padding=p, groups=g, output_scale=out_s,
                               output_zero_point=out_zp, engine=engine, threads=1)

        def f_qref_numpy():
            return qref.conv2d(x, w, bias, stride=s, padding=p, groups=g, input_scale=a_s, input_zero_point=a_zp,
                               weight_scale=w_scale, weight_zero_point=w_zp, output_scale=out_s,
                               output_zero_point=out_zp, engine=engine, threads=1)

        ref = f_torch().int_repr().numpy()
        got_t = f_qref_torch().int_repr().numpy()
        got_n = f_qref_numpy()
        assert np.array_equal(ref, got_t), f"{name}: qref (torch tensors) differs from torch"
        assert np.array_equal(ref, got_n), f"{name}: qref (numpy arrays) differs from torch"
        t = interleaved({"torch": f_torch, "qref_torch": f_qref_torch, "qref_numpy": f_qref_numpy}, budget_s)
        rows.append(dict(name=name, t_torch=t["torch"], t_qref_torch=t["qref_torch"], t_qref_numpy=t["qref_numpy"]))
        print(f"{name:36s} torch {t['torch'] * 1e3:7.3f} ms  qref(torch) {t['qref_torch'] * 1e3:7.3f} ms "
              f"({t['torch'] / t['qref_torch']:.2f})  qref(numpy) {t['qref_numpy'] * 1e3:7.3f} ms "
              f"({t['torch'] / t['qref_numpy']:.2f})", file=sys.stderr)
    return rows


def geomean(v: list) -> float:
    return float(np.exp(np.mean(np.log(v))))


def markdown(rows: list[dict], engine: str) -> str:
    out = [f"engine={engine!r}, single thread, NCHW-contiguous inputs, bytes asserted equal to torch's",
           "", "| shape | torch ms | qref (torch tensors) ms | ratio | qref (numpy arrays) ms | ratio |",
           "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        out.append(f"| {r['name']} | {r['t_torch'] * 1e3:.3f} | {r['t_qref_torch'] * 1e3:.3f} | "
                   f"{r['t_torch'] / r['t_qref_torch']:.2f} | {r['t_qref_numpy'] * 1e3:.3f} | "
                   f"{r['t_torch'] / r['t_qref_numpy']:.2f} |")
    gt = geomean([r["t_torch"] / r["t_qref_torch"] for r in rows])
    gn = geomean([r["t_torch"] / r["t_qref_numpy"] for r in rows])
    out.append(f"| **geo-mean** | | | **{gt:.2f}** | | **{gn:.2f}** |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of timing per shape (default 1.5)")
    ap.add_argument("--engine", default="fbgemm", choices=("fbgemm", "x86"))
    ap.add_argument("--markdown", help="write the table to this file")
    args = ap.parse_args(argv)
    t0 = time.time()
    rows = run(args.budget, args.engine)
    md = markdown(rows, args.engine)
    print(md)
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
