"""qref vs torch fbgemm vs plain numpy on real conv layer shapes (``qref bench``).

Everything that is compared runs in ONE process on the same inputs, timed in
alternating blocks (torch, qref, torch, qref, ...) so the noise of a shared host
hits both sides alike; ratios are t_torch / t_qref (> 1: qref is faster). Every
qref output is asserted equal (``==`` on the uint8 values) to torch's.

Sections:
  default ISA    torch's default fbgemm kernels (VNNI on a VNNI host) vs qref isa="auto"
  AVX2           a subprocess with FBGEMM_ENABLE_INSTRUCTIONS=AVX2 set before torch
                 is imported: torch's AVX2 kernels vs qref isa="auto" (= fbgemm's
                 AVX2 arithmetic there), with qref's best kernel and kernel="avx2"
  numpy          the fastest plain-numpy reference a user would write (im2col
                 with sliding_window_view + float64 BLAS matmul + rounding), in a
                 subprocess with one BLAS thread, against qref single-threaded
  memory         extra memory of a qref call: packed weights + per-thread scratch

Run: ``python -m qref.bench [--quick] [--markdown FILE]`` or
``python benchmarks/bench_conv2d.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import _core
from .bridge.from_torch import from_torch
from .bridge.modules import Conv2dParams
from .common.isa import torch_isa
from .common.kernels import _resolve_kernel, kernels
from .common.layout import _quint8_nhwc_view

# Real layer shapes. Columns: name, N, C, H, W, O, k, stride, padding, groups.
SHAPES = [
    ("resnet50.conv1 7x7 s2", 1, 3, 224, 224, 64, 7, 2, 3, 1),
    ("resnet50 3x3 @56", 1, 64, 56, 56, 64, 3, 1, 1, 1),
    ("resnet50 1x1 64->256 @56", 1, 64, 56, 56, 256, 1, 1, 0, 1),
    ("resnet50 1x1 256->64 @56", 1, 256, 56, 56, 64, 1, 1, 0, 1),
    ("resnet50 3x3 @14", 1, 256, 14, 14, 256, 3, 1, 1, 1),
    ("resnet50 1x1 1024->256 @14", 1, 1024, 14, 14, 256, 1, 1, 0, 1),
    ("mobilenetv2 dw 3x3 s2 @112", 1, 96, 112, 112, 96, 3, 2, 1, 96),
    ("batch8 3x3 @56", 8, 64, 56, 56, 64, 3, 1, 1, 1),
    ("large 1x64x224x224 3x3", 1, 64, 224, 224, 64, 3, 1, 1, 1),
]


@dataclass
class Shape:
    name: str
    N: int
    C: int
    H: int
    W: int
    O: int
    k: int
    stride: int
    padding: int
    groups: int

    @property
    def OH(self) -> int:
        return (self.H + 2 * self.padding - self.k) // self.stride + 1

    @property
    def OW(self) -> int:
        return (self.W + 2 * self.padding - self.k) // self.stride + 1

    @property
    def macs(self) -> int:
        return self.N * self.OH * self.OW * self.O * (self.C // self.groups) * self.k * self.k

    @property
    def im2col_bytes(self) -> int:
        return self.N * self.OH * self.OW * (self.C // self.groups) * self.k * self.k * self.groups


def shapes(quick: bool = False) -> list[Shape]:
    out = [Shape(*row) for row in SHAPES]
    if quick:
        # the same layers, smaller: batch at most 2, at most 56x56
        small = []
        for s in out:
            n, h, w = min(s.N, 2), min(s.H, 56), min(s.W, 56)
            tag = [f"N={n}"] if n != s.N else []
            tag += [f"{h}x{w}"] if (h, w) != (s.H, s.W) else []
            small.append(Shape(s.name + (f" ({', '.join(tag)})" if tag else ""), n, s.C, h, w, s.O, s.k, s.stride,
                               s.padding, s.groups))
        out = small
    return out


# ----------------------------------------------------------------------------- operands


def make_operands(s: Shape, seed: int = 0) -> dict:
    """Integer operands and quantization parameters of a layer (deterministic)."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (s.N, s.C, s.H, s.W), dtype=np.uint8)
    w = rng.integers(-127, 128, (s.O, s.C // s.groups, s.k, s.k), dtype=np.int8)
    K = (s.C // s.groups) * s.k * s.k
    return dict(
        x=x, w=w,
        bias=rng.normal(0.0, 1.0, s.O).astype(np.float32),
        a_scale=0.05, a_zp=64,
        w_scale=rng.uniform(0.002, 0.01, s.O), w_zp=np.zeros(s.O, np.int64),
        out_scale=float(0.05 * 0.006 * 74 * 110 * math.sqrt(K) / 40), out_zp=120,
    )


def torch_layer(s: Shape, ops: dict, engine: str = "fbgemm"):
    """(module, quantized channels-last input), packed under ``engine`` (fbgemm by default)."""
    import torch

    torch.backends.quantized.engine = engine
    conv = torch.ao.nn.quantized.Conv2d(s.C, s.O, s.k, stride=s.stride, padding=s.padding, groups=s.groups)
    qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(ops["w"]), torch.from_numpy(ops["w_scale"]),
                                                  torch.from_numpy(ops["w_zp"]), 0)
    conv.set_weight_bias(qw, torch.from_numpy(ops["bias"]))
    conv.scale = ops["out_scale"]
    conv.zero_point = ops["out_zp"]
    # channels_last: what a previous quantized layer hands over (fbgemm's output format)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(ops["x"]), ops["a_scale"], ops["a_zp"])
    qx = qx.contiguous(memory_format=torch.channels_last)
    return conv, qx


def numpy_reference(s: Shape, ops: dict) -> Callable[[], np.ndarray]:
    """The fastest plain-numpy conv a user would write: im2col with a strided view,
    one float64 BLAS matmul per group, float64 requantization."""
    x = ops["x"].astype(np.float64) - ops["a_zp"]
    wf = ops["w"].astype(np.float64)
    G, Cg, Og = s.groups, s.C // s.groups, s.O // s.groups
    mult = ops["a_scale"] * ops["w_scale"] / ops["out_scale"]
    bias = ops["bias"].astype(np.float64) / ops["out_scale"]

    def run() -> np.ndarray:
        xp = np.pad(x, ((0, 0), (0, 0), (s.padding, s.padding), (s.padding, s.padding)))
        win = sliding_window_view(xp, (s.k, s.k), axis=(2, 3))[:, :, ::s.stride, ::s.stride]  # N C OH OW k k
        outs = []
        for g in range(G):
            cols = win[:, g * Cg:(g + 1) * Cg].transpose(0, 2, 3, 1, 4, 5).reshape(-1, Cg * s.k * s.k)
            wg = wf[g * Og:(g + 1) * Og].reshape(Og, -1)
            outs.append(cols @ wg.T)
        acc = np.concatenate(outs, axis=1)
        y = np.rint(acc * mult + bias) + ops["out_zp"]
        y = np.clip(y, 0, 255).astype(np.uint8)
        return y.reshape(s.N, s.OH, s.OW, s.O).transpose(0, 3, 1, 2)

    return run


# ----------------------------------------------------------------------------- timing


def interleaved(fns: dict, budget_s: float, min_reps: int = 3, rounds: int = 5) -> dict:
    """Median time of each callable, run in alternating blocks: `rounds` times, each callable
    runs repeatedly for its share of the budget. Blocks rather than strict alternation: an
    OpenMP pool (torch's) keeps spinning for a while after its parallel region and would
    otherwise take a core from the next callable's threads on every single call."""
    for f in fns.values():
        f()  # warm-up (first-touch allocations, caches, cached weight packing)
    times: dict = {k: [] for k in fns}
    share = budget_s / rounds / max(1, len(fns))
    for _ in range(rounds):
        for k, f in fns.items():
            end = time.perf_counter() + share
            n = 0
            while n < 1 or (time.perf_counter() < end and n < 1000):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)
                n += 1
    for k, f in fns.items():
        while len(times[k]) < min_reps:
            t0 = time.perf_counter()
            f()
            times[k].append(time.perf_counter() - t0)
    return {k: float(np.median(v)) for k, v in times.items()}


def geomean(v: list) -> float:
    v = [x for x in v if x and x > 0]
    return float(math.exp(sum(math.log(x) for x in v) / len(v))) if v else float("nan")


def _threads_all() -> int:
    return int(_core.default_threads())


def bench_torch_vs_qref(shape_list: list[Shape], budget_s: float, extra_kernels: tuple = (),
                        also_exact_isa: Optional[str] = None) -> list[dict]:
    """torch fbgemm (as configured in this process) vs qref isa="auto", single- and all-thread.
    ``also_exact_isa``: also assert that qref with that explicit isa gives torch's bytes."""
    import torch


    rows = []
    for s in shape_list:
        ops = make_operands(s)
        conv, qx = torch_layer(s, ops)
        params = from_torch(conv, check_engine=False)
        for threads in (1, _threads_all()):
            torch.set_num_threads(threads)
            ref = conv(qx)
            fns = {"torch": lambda: conv(qx), "qref": lambda: params(qx, threads=threads)}
            for kname in extra_kernels:
                fns[f"qref[{kname}]"] = (lambda kn: lambda: params(qx, threads=threads, kernel=kn))(kname)
            checks = dict(fns)
            if also_exact_isa:
                checks[f"qref isa={also_exact_isa}"] = lambda: params(qx, threads=threads, isa=also_exact_isa)
            for name, f in checks.items():
                if name == "torch":
                    continue
                got = f()
                if not torch.equal(got.int_repr(), ref.int_repr()):
                    n = int((got.int_repr() != ref.int_repr()).sum())
                    raise AssertionError(f"{s.name}: {name} differs from torch in {n} of {ref.numel()} outputs "
                                         f"(threads={threads})")
            # The C++ kernel call alone (packed weights cached, input read in place): the
            # rest of t_qref is Python / torch-bridge overhead.
            auto = _resolve_kernel("bench", "auto")
            prep = next(v[0] for v in params._prepared.values() if v[0].kernel == auto)
            nhwc = np.ascontiguousarray(_quint8_nhwc_view(qx))
            fns["kernel"] = lambda: _core.conv2d_run(prep, nhwc, threads)
            t = interleaved(fns, budget_s)
            row = dict(shape=s.name, threads=threads, macs=s.macs, t_torch=t["torch"], t_qref=t["qref"],
                       t_kernel=t["kernel"], kernel=auto)
            for kname in extra_kernels:
                row[f"t_qref_{kname}"] = t[f"qref[{kname}]"]
            rows.append(row)
        torch.set_num_threads(_threads_all())
    return rows


def bench_numpy(shape_list: list[Shape], budget_s: float) -> list[dict]:
    """qref (single thread, isa="auto") on numpy NCHW arrays vs the plain-numpy reference
    (BLAS threads as configured). Both prepare their weights once, outside the timing (the
    reference its float64 copy, qref a Conv2dParams)."""
    rows = []
    for s in shape_list:
        ops = make_operands(s)
        ref = numpy_reference(s, ops)
        params = Conv2dParams(
            weight=ops["w"], weight_scale=ops["w_scale"], weight_zero_point=ops["w_zp"].astype(np.int32),
            per_channel=True, bias=ops["bias"], stride=(s.stride, s.stride), padding=(s.padding, s.padding),
            dilation=(1, 1), groups=s.groups, output_scale=ops["out_scale"], output_zero_point=ops["out_zp"],
            relu=False)
        x, a_s, a_zp = ops["x"], ops["a_scale"], ops["a_zp"]
        t = interleaved({"numpy": ref, "qref": lambda: params(x, input_scale=a_s, input_zero_point=a_zp, threads=1)},
                        budget_s, min_reps=2)
        rows.append(dict(shape=s.name, macs=s.macs, t_numpy=t["numpy"], t_qref=t["qref"]))
    return rows


def bench_memory(shape_list: list[Shape], threads: int) -> list[dict]:
    """Extra memory qref allocates for one call through the torch bridge: the packed
    weights (kept on Conv2dParams) plus the per-thread scratch (packed receptive-field
    blocks: never a full im2col matrix). A channels_last quint8 input is read in place;
    the output array is the result itself. The full im2col size is given for comparison."""
    rows = []
    for s in shape_list:
        ops = make_operands(s)
        conv, qx = torch_layer(s, ops)
        params = from_torch(conv, check_engine=False)
        params(qx, threads=threads)
        prep = next(iter(params._prepared.values()))[0]
        rows.append(dict(shape=s.name, kernel=prep.kernel, packed_bytes=int(prep.packed_bytes),
                         scratch_bytes=int(prep.scratch_bytes_per_thread) * threads,
                         output_bytes=s.N * s.O * s.OH * s.OW, im2col_bytes=s.im2col_bytes))
    return rows


def _child_env(extra: dict) -> dict:
    env = dict(os.environ)
    env.update(extra)
    return env


def run_subprocess_numpy(args: argparse.Namespace) -> list[dict]:
    """The numpy section in a fresh interpreter with one BLAS thread: qref runs single
    threaded too, and an idle multi-threaded BLAS pool would spin on the cores the
    qref side is timed on."""
    one = {k: "1" for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cmd = [sys.executable, "-m", "qref.bench", "--_child-numpy", "--budget", str(args.budget)]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, env=_child_env(one), capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"numpy subprocess failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_subprocess_avx2(args: argparse.Namespace) -> list[dict]:
    """The torch-vs-qref section in a fresh interpreter with FBGEMM_ENABLE_INSTRUCTIONS=AVX2."""
    env = _child_env({"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    cmd = [sys.executable, "-m", "qref.bench", "--_child-avx2", "--budget", str(args.budget)]
    if args.quick:
        cmd.append("--quick")
    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"AVX2 subprocess failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- report


def _ms(t: float) -> str:
    return f"{t * 1e3:.3f}"


def _gmacs(macs: int, t: float) -> str:
    return f"{macs / t / 1e9:.1f}"


# Where qref's time goes, by layer kind (perf record on the kernels, see docs/performance.md);
# printed under a table for every single-thread shape whose ratio is below 0.8.
WHERE_TIME_GOES = {
    "depthwise": (
        "depthwise kernel (channels in lanes; AVX2 code on every CPU, as fbgemm's JIT is): per output pixel and "
        "32 channels, the 9 taps are 4.5 pairs of vpunpck + vpmaddubsw folded by vpmaddwd, then 32 lanes are "
        "requantized -- about a quarter of the kernel time, since only 9 products per output amortize it -- and "
        "9 tap pointers are set up per pixel. fbgemm generates a kernel for the exact shape. To close: a 3x3 "
        "loop computing two output pixels per iteration (stride-2 neighbours share a tap column) with tap rows "
        "hoisted per output row; the ~20 us of Python per call is also ~10% of a 0.2 ms layer."),
    "pointwise": (
        "pointwise GEMM reading input rows in place: at 14x14 there are only 196 rows, so the weight panels "
        "(K x 32 bytes) stream from L2 for every 8-row tile; the fixed per-call cost (output allocation, ~20 us "
        "of Python) is 10-15% of a 0.25 ms layer. To close: K-blocking so a panel stays in L1 across tiles, and "
        "a larger (12-row) tile."),
    "im2col": (
        "im2col GEMM: receptive fields are copied into an L2-sized block (the copy is ~5% at 3x3, more for 7x7 "
        "with 3 channels) and the micro-kernel runs at about 200 GMAC/s exact / 100 GMAC/s saturating "
        "(vpmaddubsw + vpdpwssd: two multiplies per 4 products); below 0.8 the fixed per-call cost dominates "
        "small layers. To close: K-blocking for large K and an AVX2-only saturating tile without the "
        "vpmaddwd-by-1 (accumulate int16 pair sums of 2 steps before widening where no overflow is possible)."),
}


def _layer_kind(name: str) -> str:
    if " dw " in f" {name} ":
        return "depthwise"
    return "pointwise" if "1x1" in name else "im2col"


def bench_x86_engine(shape_list: list[Shape], budget_s: float) -> list[dict]:
    """torch's default "x86" engine (prepack sends symmetric-weight convs with groups <= 100 to oneDNN
    on AVX512-VNNI hosts) vs qref.from_torch(module) on the same module, single thread, bytes asserted.
    Also timed alongside: qref on the same layer packed under fbgemm (fbgemm's arithmetic), which shows
    what oneDNN's requantization costs qref relative to fbgemm's (no more)."""
    import torch


    rows = []
    prev_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for s in shape_list:
            ops = make_operands(s)
            conv_fb, _ = torch_layer(s, ops, engine="fbgemm")
            params_fb = from_torch(conv_fb)
            conv, qx = torch_layer(s, ops, engine="x86")
            params = from_torch(conv)
            ref = conv(qx)
            got = params(qx, threads=1)
            if not torch.equal(got.int_repr(), ref.int_repr()):
                n = int((got.int_repr() != ref.int_repr()).sum())
                raise AssertionError(f"{s.name}: qref engine={params.engine} differs from torch x86 in {n} outputs")
            t = interleaved({"torch": lambda: conv(qx), "qref": lambda: params(qx, threads=1),
                             "qref_fbgemm": lambda: params_fb(qx, threads=1)}, budget_s)
            rows.append(dict(shape=s.name, macs=s.macs, engine=params.engine, t_torch=t["torch"], t_qref=t["qref"],
                             t_qref_fbgemm=t["qref_fbgemm"]))
    finally:
        torch.set_num_threads(prev_threads)
        torch.backends.quantized.engine = "fbgemm"
    return rows


def format_report(res: dict) -> str:
    lines = ["# qref conv2d vs torch fbgemm vs numpy", ""]
    meta = res["meta"]
    lines.append(f"Generated by: `{meta['command']}` (rerun it to regenerate this file), against a regular "
                 f"`pip install .` (an editable developer build can measure slower: docs/performance.md).")
    lines.append("")
    lines.append(f"Host: {meta['cpu']}, {meta['cores']} cores; qref kernels {meta['kernels']}; torch {meta['torch']}; "
                 f"numpy {meta['numpy']}. Times are medians of runs in alternating blocks ({meta['budget']} s per cell); the "
                 f"host may be shared, so compare ratios (measured side by side), not absolute times across runs.")
    lines.append("")

    def section(title: str, rows: list, extra: tuple = ()) -> None:
        lines.append(f"### {title}")
        lines.append("")
        hdr = ("| shape | threads | torch ms | qref ms | qref kernel-only ms | torch GMAC/s | qref GMAC/s | "
               "t_torch/t_qref |")
        sep = "|---|---:|---:|---:|---:|---:|---:|---:|"
        for k in extra:
            hdr += f" qref[{k}] ms | t_torch/t_qref[{k}] |"
            sep += "---:|---:|"
        lines.append(hdr)
        lines.append(sep)
        for r in rows:
            line = (f"| {r['shape']} | {r['threads']} | {_ms(r['t_torch'])} | {_ms(r['t_qref'])} | "
                    f"{_ms(r['t_kernel'])} | "
                    f"{_gmacs(r['macs'], r['t_torch'])} | {_gmacs(r['macs'], r['t_qref'])} | "
                    f"{r['t_torch'] / r['t_qref']:.2f} |")
            for k in extra:
                tk = r[f"t_qref_{k}"]
                line += f" {_ms(tk)} | {r['t_torch'] / tk:.2f} |"
            lines.append(line)
        for th in sorted({r["threads"] for r in rows}):
            sel = [r for r in rows if r["threads"] == th]
            g = geomean([r["t_torch"] / r["t_qref"] for r in sel])
            msg = f"Geometric mean t_torch/t_qref, {th} thread(s): **{g:.2f}**"
            for k in extra:
                msg += f"; qref[{k}]: **{geomean([r['t_torch'] / r[f't_qref_{k}'] for r in sel]):.2f}**"
            lines.append("")
            lines.append(msg)
        slow = [r for r in rows if r["threads"] == 1 and r["t_torch"] / r["t_qref"] < 0.8]
        if slow:
            lines.append("")
            lines.append("Below 0.8 single-threaded, and where qref's time goes:")
            for r in slow:
                lines.append(f"- {r['shape']}: t_torch/t_qref = {r['t_torch'] / r['t_qref']:.2f}; qref kernel "
                             f"{_ms(r['t_kernel'])} ms of {_ms(r['t_qref'])} ms (rest: Python, output); "
                             f"{WHERE_TIME_GOES[_layer_kind(r['shape'])]}")
        lines.append("")

    lines.append("The targets are the single-thread rows. On a 2-core host shared with other jobs the all-thread "
                 "rows swing widely between runs and mostly measure scheduling: torch's OpenMP team waits at its "
                 "barrier for a thread the OS has not run yet (the multi-millisecond torch cells), while qref's "
                 "helpers take row chunks from a shared counter and the caller never waits for a helper that has "
                 "not started (so qref falls back to about its single-thread time when the second core is busy).")
    lines.append("")
    checked = res["meta"].get("default_isa_checked")
    section("torch default ISA vs qref isa=\"auto\"" + (f" (isa=\"{checked}\" asserted bit-exact too)" if checked
                                                          else ""), res["default"])
    if res.get("avx2"):
        section("FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (subprocess): torch AVX2 kernels vs qref isa=\"auto\" (fbgemm's "
                "AVX2 arithmetic there; isa=\"avx2\" asserted bit-exact too)", res["avx2"], extra=("avx2",))
    if res.get("numpy"):
        lines.append("### plain numpy reference (im2col + float64 BLAS, 1 BLAS thread) vs qref on numpy arrays "
                     "(`Conv2dParams`), qref single thread")
        lines.append("")
        lines.append("| shape | numpy ms | qref ms | numpy GMAC/s | qref GMAC/s | t_numpy/t_qref |")
        lines.append("|---|---:|---:|---:|---:|---:|")
        for r in res["numpy"]:
            lines.append(f"| {r['shape']} | {_ms(r['t_numpy'])} | {_ms(r['t_qref'])} | {_gmacs(r['macs'], r['t_numpy'])} "
                         f"| {_gmacs(r['macs'], r['t_qref'])} | {r['t_numpy'] / r['t_qref']:.1f} |")
        lines.append("")
        lines.append(f"Geometric mean t_numpy/t_qref: **{geomean([r['t_numpy'] / r['t_qref'] for r in res['numpy']]):.1f}**")
        lines.append("")
    if res.get("x86"):
        lines.append("### torch's default \"x86\" engine vs qref.from_torch(module) (oneDNN arithmetic where torch "
                     "packed the weights for oneDNN), single thread, bytes asserted equal")
        lines.append("")
        lines.append("| shape | engine of the packed weights | torch ms | qref ms | torch GMAC/s | qref GMAC/s | "
                     "t_torch/t_qref | qref, layer packed under fbgemm, ms |")
        lines.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for r in res["x86"]:
            fb = _ms(r["t_qref_fbgemm"]) if "t_qref_fbgemm" in r else "-"
            lines.append(f"| {r['shape']} | {r['engine']} | {_ms(r['t_torch'])} | {_ms(r['t_qref'])} | "
                         f"{_gmacs(r['macs'], r['t_torch'])} | {_gmacs(r['macs'], r['t_qref'])} | "
                         f"{r['t_torch'] / r['t_qref']:.2f} | {fb} |")
        lines.append("")
        lines.append(f"Geometric mean t_torch/t_qref: **{geomean([r['t_torch'] / r['t_qref'] for r in res['x86']]):.2f}**"
                     " (oneDNN rows: qref's AVX512-VNNI conv2d GEMM with oneDNN's requantization, depthwise its "
                     "VNNI depthwise kernel; the last column is qref on the same layer with fbgemm's arithmetic, "
                     "timed alongside. An AMX host's oneDNN is several times faster again, see docs/onednn.md)")
        lines.append("")
    if res.get("memory"):
        lines.append(f"### extra memory of a qref call ({res['memory_threads']} threads)")
        lines.append("")
        lines.append("Packed weights (built once, kept on `Conv2dParams`) and per-thread scratch (blocks of "
                     "receptive fields; never a full im2col matrix). The channels_last input is read in place; "
                     "the output array is the result.")
        lines.append("")
        lines.append("| shape | kernel | packed weights KiB | scratch KiB (all threads) | output KiB | "
                     "full im2col would be KiB |")
        lines.append("|---|---|---:|---:|---:|---:|")
        for r in res["memory"]:
            lines.append(f"| {r['shape']} | {r['kernel']} | {r['packed_bytes'] / 1024:.0f} | "
                         f"{r['scratch_bytes'] / 1024:.0f} | {r['output_bytes'] / 1024:.0f} | "
                         f"{r['im2col_bytes'] / 1024:.0f} |")
        lines.append("")
    return "\n".join(lines)


def _meta(args: argparse.Namespace, argv: list) -> dict:
    try:
        import torch

        tv = torch.__version__
    except ImportError:  # pragma: no cover
        tv = "not installed"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    prog = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if prog == "bench_conv2d.py":
        cmd = "python benchmarks/bench_conv2d.py"
    elif prog in ("qref", "cli.py", "__main__.py") and "qref.bench" not in " ".join(sys.argv):
        cmd = "qref bench"
    else:
        cmd = "python -m qref.bench"
    return dict(command=" ".join([cmd] + argv), cpu=cpu, cores=_threads_all(),
                kernels=kernels(), torch=tv, numpy=np.__version__, budget=args.budget)


def main(argv: Optional[list] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="qref bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes (batch 1, at most 56x56), short budget")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per table cell (default 1.0, quick 0.2)")
    ap.add_argument("--no-avx2", action="store_true", help="skip the FBGEMM_ENABLE_INSTRUCTIONS=AVX2 subprocess")
    ap.add_argument("--no-numpy", action="store_true", help="skip the numpy reference")
    ap.add_argument("--no-memory", action="store_true", help="skip the memory table")
    ap.add_argument("--no-x86", action="store_true", help="skip torch's default x86 engine (oneDNN) comparison")
    ap.add_argument("--markdown", metavar="FILE", help="also write the report as Markdown to FILE")
    ap.add_argument("--json", metavar="FILE", help="also write the raw results as JSON to FILE")
    ap.add_argument("--_child-avx2", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--_child-numpy", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.budget is None:
        args.budget = 0.2 if args.quick else 1.0
    shape_list = shapes(args.quick)
    if args._child_avx2:
        rows = bench_torch_vs_qref(shape_list, args.budget, extra_kernels=("avx2",), also_exact_isa="avx2")
        print(json.dumps(rows))
        return 0
    if args._child_numpy:
        print(json.dumps(bench_numpy(shape_list, args.budget)))
        return 0
    res: dict[str, Any] = {"meta": _meta(args, argv)}
    print(f"default ISA: {len(shape_list)} shapes ...", file=sys.stderr)
    vnni_host = not torch_isa().semantics.gemm_saturates  # then isa="vnni" must match torch here too
    res["default"] = bench_torch_vs_qref(shape_list, args.budget, also_exact_isa="vnni" if vnni_host else None)
    res["meta"]["default_isa_checked"] = "vnni" if vnni_host else None
    if not args.no_avx2:
        print("FBGEMM_ENABLE_INSTRUCTIONS=AVX2 subprocess ...", file=sys.stderr)
        res["avx2"] = run_subprocess_avx2(args)
    if not args.no_numpy:
        print("numpy reference ...", file=sys.stderr)
        res["numpy"] = run_subprocess_numpy(args)
    if not args.no_x86:
        print("torch x86 engine ...", file=sys.stderr)
        res["x86"] = bench_x86_engine(shape_list, args.budget)
    if not args.no_memory:
        res["memory_threads"] = _threads_all()
        res["memory"] = bench_memory(shape_list, _threads_all())
    report = format_report(res)
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
