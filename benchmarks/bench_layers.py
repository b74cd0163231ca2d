"""qref vs torch fbgemm for the layers beyond conv2d: linear, conv1d, conv3d, conv_transpose2d.

Both run in one process on the same inputs, timed interleaved (torch, qref, torch, qref, ...)
single-threaded, best of R; every qref output is asserted equal (``==``) to torch's. The ratio is
t_torch / t_qref (> 1: qref is faster). Two qref columns: the function (``qref.linear`` etc.: it
validates, rearranges and packs the weights on every call) and the layer's params object
(``qref.bridge_nd.LinearParams`` etc., what ``qref.from_torch`` returns: weights prepared once and
cached, as torch's prepacked weights are; the first, untimed call prepares them). ``--avx2`` reruns the table in a subprocess with
FBGEMM_ENABLE_INSTRUCTIONS=AVX2 set before torch is imported.

Run: ``python benchmarks/bench_layers.py [--avx2] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np

# Real layer shapes. Columns: name, kind, input shape, weight shape (torch layout), conv kwargs.
SHAPES = [
    ("bert-base FFN in (128 tok)", "linear", (128, 768), (3072, 768), {}),
    ("bert-base FFN out (128 tok)", "linear", (128, 3072), (768, 3072), {}),
    ("classifier 2048->1000 (N=8)", "linear", (8, 2048), (1000, 2048), {}),
    ("wav2letter conv1d k11", "conv1d", (1, 256, 400), (256, 256, 11), dict(padding=5)),
    ("tcn conv1d k3 d4", "conv1d", (1, 128, 1000), (128, 128, 3), dict(padding=4, dilation=4)),
    ("r3d-18 3x3x3 @8x28x28", "conv3d", (1, 128, 8, 28, 28), (128, 128, 3, 3, 3), dict(padding=1)),
    ("r(2+1)d 1x3x3 @8x28x28", "conv3d", (1, 64, 8, 28, 28), (144, 64, 1, 3, 3), dict(padding=(0, 1, 1))),
    ("r(2+1)d 3x1x1 @8x28x28", "conv3d", (1, 144, 8, 28, 28), (64, 144, 3, 1, 1), dict(padding=(1, 0, 0))),
    ("i3d 1x1x1 @8x28x28", "conv3d", (1, 256, 8, 28, 28), (64, 256, 1, 1, 1), {}),
    ("x3d depthwise 3x3x3 @8x28x28", "conv3d", (1, 96, 8, 28, 28), (96, 1, 3, 3, 3), dict(padding=1, groups=96)),
    ("fcn up 3x3 s2 p1 op1", "convt2d", (1, 128, 32, 32), (128, 64, 3, 3), dict(stride=2, padding=1,
                                                                                   output_padding=1)),
    # fbgemm's direct path, stride_h 2: torch is wrong here (docs/numerics.md §4.5); qref reproduces it only with
    # reproduce_defects=True, which is what is timed and compared.
    ("unet up 2x2 s2 (direct, defective)", "convt2d", (1, 128, 32, 32), (128, 64, 2, 2), dict(stride=2)),
    ("dcgan 4x4 s2 p1", "convt2d", (1, 256, 16, 16), (256, 128, 4, 4), dict(stride=2, padding=1)),
]


def _best(fns, repeat):
    best = [float("inf")] * len(fns)
    for _ in range(repeat):
        for i, f in enumerate(fns):
            t = time.perf_counter()
            f()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


def run(repeat: int) -> list[tuple]:
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    import qref

    torch.backends.quantized.engine = "fbgemm"
    torch.set_num_threads(1)
    # Deterministic data (biases included): with random biases about one run in four hits a
    # near-tie where torch's fused per-tensor bias term differs from qref's requant.h
    # (tests/test_linear.py test_per_tensor_bias_is_fused_multiply_add).
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    rows = []
    for name, kind, xs, ws, kw in SHAPES:
        x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(rng.integers(0, 256, xs, dtype=np.uint8)),
                                                    0.02, 7)
        w = torch._make_per_tensor_quantized_tensor(torch.from_numpy(rng.integers(-128, 128, ws, dtype=np.int8)),
                                                    0.003, 0)
        b = torch.randn(ws[1] if kind == "convt2d" else ws[0])
        q = torch.ops.quantized
        nd = len(xs) - 2
        st = kw.get("stride", 1)
        pd = kw.get("padding", 0)
        dl = kw.get("dilation", 1)
        g = kw.get("groups", 1)

        def lst(v):
            return list(v) if isinstance(v, tuple) else [v] * nd

        if kind == "linear":
            pp = q.linear_prepack(w, b)

            def t_fn():
                return q.linear(x, pp, 0.5, 64)

            def q_fn():
                return qref.linear(x, w, b, output_scale=0.5, output_zero_point=64, threads=1)
        elif kind in ("conv1d", "conv3d"):
            pp = getattr(q, f"{kind}_prepack")(w, b, lst(st), lst(pd), lst(dl), g)
            top = getattr(q, kind)
            qop = getattr(qref, kind)

            def t_fn():
                return top(x, pp, 0.5, 64)

            def q_fn():
                return qop(x, w, b, output_scale=0.5, output_zero_point=64, threads=1, **kw)
        else:
            pp = q.conv_transpose2d_prepack(w, b, lst(st), lst(pd), lst(kw.get("output_padding", 0)), lst(dl), g)
            defect = "defective" in name

            def t_fn():
                return q.conv_transpose2d(x, pp, 0.5, 64)

            def q_fn():
                return qref.conv_transpose2d(x, w, b, output_scale=0.5, output_zero_point=64, threads=1,
                                             reproduce_defects=defect, **kw)
        params = _params(kind, w, b, kw)
        extra = dict(reproduce_defects=True) if "defective" in name else {}

        def p_fn():
            return params(x, threads=1, **extra)

        tr = t_fn().int_repr()
        for what, f in (("function", q_fn), ("params (first call)", p_fn), ("params (cached)", p_fn)):
            qr = f().int_repr()
            if not torch.equal(tr, qr):
                bad = (tr != qr).nonzero()
                t2, q2 = t_fn().int_repr(), f().int_repr()
                raise AssertionError(f"{name} {what}: {len(bad)} of {tr.numel()} differ, first {bad[0].tolist()}; "
                                     f"torch repeatable {torch.equal(tr, t2)}, qref repeatable {torch.equal(qr, q2)}")
        tt, tq, tp = _best([t_fn, q_fn, p_fn], repeat)
        rows.append((name, kind, tt * 1e3, tq * 1e3, tp * 1e3))
    return rows


def _params(kind: str, w, b, kw: dict):
    """The layer's qref params object (what qref.from_torch returns for the module), per-tensor weight."""
    import numpy as np

    from qref.bridge_nd import Conv1dParams, Conv3dParams, ConvTransposeParams, LinearParams

    common = dict(weight=w.int_repr().numpy(), weight_scale=np.array([w.q_scale()], np.float64),
                  weight_zero_point=np.array([w.q_zero_point()], np.int32), per_channel=False,
                  bias=b.numpy().astype(np.float32), output_scale=0.5, output_zero_point=64, relu=False,
                  module_type=kind)
    if kind == "linear":
        return LinearParams(**common)
    nd = w.dim() - 2

    def tup(name, default):
        v = kw.get(name, default)
        return tuple(v) if isinstance(v, tuple) else (v,) * nd

    conv = dict(stride=tup("stride", 1), padding=tup("padding", 0), dilation=tup("dilation", 1),
                groups=kw.get("groups", 1))
    if kind == "conv1d":
        return Conv1dParams(**common, **conv)
    if kind == "conv3d":
        return Conv3dParams(**common, **conv)
    return ConvTransposeParams(**common, **conv, output_padding=tup("output_padding", 0))


def table(rows, title: str) -> str:
    out = [f"### {title}", "", "| layer | kind | torch ms | qref fn ms | qref params ms | torch/qref fn | "
           "torch/qref params |", "|---|---|---:|---:|---:|---:|---:|"]
    for name, kind, tt, tq, tp in rows:
        out.append(f"| {name} | {kind} | {tt:.2f} | {tq:.2f} | {tp:.2f} | {tt / tq:.2f} | {tt / tp:.2f} |")
    gm = [float(np.exp(np.mean([np.log(r[2] / r[i]) for r in rows]))) for i in (3, 4)]
    out += ["", f"Geometric mean torch/qref: function {gm[0]:.2f}, params {gm[1]:.2f}"]
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--avx2", action="store_true", help="also under FBGEMM_ENABLE_INSTRUCTIONS=AVX2")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    import qref

    if a._child:
        print(table(run(a.repeat), f"FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (qref isa='auto' -> {qref.torch_isa().gemm_isa})"))
        return
    print(f"qref kernels: {qref.kernels()}; single thread; best of {a.repeat}\n")
    print(table(run(a.repeat), f"default ISA (fbgemm GEMM ISA {qref.torch_isa().gemm_isa})"))
    if a.avx2:
        env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS="AVX2")
        r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", "--repeat", str(a.repeat)], env=env,
                           capture_output=True, text=True)
        print()
        print(r.stdout if r.returncode == 0 else r.stderr)


if __name__ == "__main__":
    main()
