"""qref's conv kernels as a fraction of this machine's int8 multiply-accumulate ceiling.

1. Builds and runs the peak probe (``benchmarks/peak/``, compiled here with the host's C++
   compiler, each ISA's file with that ISA's flags only; not part of ``pip install .``): tight
   loops of independent accumulators measuring one core's GMAC/s for ``vpdpbusd`` zmm
   (AVX512-VNNI), the AVX2 saturating chain (``vpmaddubsw`` + ``vpmaddwd`` by ones + ``vpaddd``,
   ymm), its 512-bit form (``vpmaddubsw`` zmm + ``vpdpwssd`` by ones) and AVX-VNNI ``vpdpbusd``
   ymm. A loop whose ISA the CPU (or the compiler) lacks is printed as skipped, with the reason.
2. Times each qref kernel on real layer shapes, single thread, through the prepared-weights core
   call (``_core.conv2d_prepare`` / ``conv2d_run``: the kernel and its im2col and epilogue, no
   Python layer code), and torch's fbgemm for reference (its default ISA in this process, its
   AVX2 kernels in a subprocess with ``FBGEMM_ENABLE_INSTRUCTIONS=AVX2``). Each is shown in GMAC/s
   and as a fraction of the probe loop that bounds it:

   =================================  =====================================
   kernel                              ceiling
   =================================  =====================================
   qref avx512vnni, exact              vpdpbusd zmm
   qref avx512vnni, saturating         vpmaddubsw zmm + vpdpwssd (512-bit chain)
   qref avx2, saturating               AVX2 chain (ymm)
   qref avx2, exact (int16 vpmaddwd)   AVX2 chain (the same two multiplies per 32 MACs)
   torch fbgemm default ISA            vpdpbusd zmm on a VNNI host, else AVX2 chain
   torch fbgemm AVX2                   AVX2 chain
   =================================  =====================================

   Every qref output is asserted equal (``==``) to torch's for the same semantics (exact: torch's
   default kernels on a VNNI host; saturating: torch's AVX2 kernels, in the subprocess).
3. 1- vs 2-thread scaling of qref's kernels on the large shapes.

Times are the best of many calls within a budget (on a shared host the best call is the one that
ran undisturbed; the probe does the same), so these are ceilings of what the code reaches, not
typical latencies; the scaling rows also give the ratio of medians.

Run: ``python benchmarks/bench_peak.py [--budget S] [--probe-only] [--no-torch]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE_SRC = os.path.join(HERE, "peak")

# Probe loops: (name in the probe's output, label).
PROBE_LOOPS = [
    ("vpdpbusd_zmm", "vpdpbusd zmm (AVX512-VNNI)"),
    ("avx512_chain_zmm", "vpmaddubsw zmm + vpdpwssd by 1 (512-bit saturating chain)"),
    ("avx2_chain_ymm", "vpmaddubsw + vpmaddwd by 1 + vpaddd ymm (AVX2 saturating chain)"),
    ("avxvnni_ymm", "vpdpbusd ymm (AVX-VNNI)"),
]

# Layer shapes: name, N, C, H, W, O, k, stride, padding.
SHAPES = [
    ("3x3 64->64 @56", 1, 64, 56, 56, 64, 3, 1, 1),
    ("3x3 256->256 @14", 1, 256, 14, 14, 256, 3, 1, 1),
    ("1x1 1024->256 @14", 1, 1024, 14, 14, 256, 1, 1, 0),
    ("7x7 s2 3->64 @224 (stem)", 1, 3, 224, 224, 64, 7, 2, 3),
    ("batch-8 3x3 64->64 @56", 8, 64, 56, 56, 64, 3, 1, 1),
    ("3x3 64->64 @224", 1, 64, 224, 224, 64, 3, 1, 1),
]
LARGE = ("batch-8 3x3 64->64 @56", "3x3 64->64 @224")

# qref kernel variants: (label, kernel, saturate, probe loop bounding it).
VARIANTS = [
    ("qref avx512vnni exact", "avx512vnni", False, "vpdpbusd_zmm"),
    ("qref avx512vnni saturating", "avx512vnni", True, "avx512_chain_zmm"),
    ("qref avx2 saturating", "avx2", True, "avx2_chain_ymm"),
    ("qref avx2 exact", "avx2", False, "avx2_chain_ymm"),
]


# ----------------------------------------------------------------------------- probe


def build_probe(build_dir: str, cxx: str) -> tuple[str | None, str]:
    """Compiles the probe; returns (binary path or None, note)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None, f"skipped: the probe is x86-64 only (this is {platform.machine()})"
    if shutil.which(cxx) is None:
        return None, f"skipped: no C++ compiler '{cxx}' (set CXX or --cxx)"
    base = [cxx, "-O2", "-std=c++17", "-c"]
    objs, defs, notes = [], [], []
    # One ISA per file, its flags only on that file.
    units = [("peak_avx2.cc", ["-mavx2"], None),
             ("peak_avx512vnni.cc", ["-mavx512f", "-mavx512bw", "-mavx512vnni"], "-DQREF_PROBE_AVX512"),
             ("peak_avxvnni.cc", ["-mavx2", "-mavxvnni"], "-DQREF_PROBE_AVXVNNI")]
    for src, flags, define in units:
        obj = os.path.join(build_dir, src.replace(".cc", ".o"))
        r = subprocess.run(base + flags + [os.path.join(PROBE_SRC, src), "-o", obj], capture_output=True, text=True)
        if r.returncode != 0:
            if define is None:
                return None, f"skipped: {src} did not compile: {r.stderr.strip()[:300]}"
            notes.append(f"{src} not built ({' '.join(flags)} unsupported by {cxx})")
            continue
        objs.append(obj)
        if define:
            defs.append(define)
    exe = os.path.join(build_dir, "peak_probe")
    r = subprocess.run([cxx, "-O2", "-std=c++17", *defs, os.path.join(PROBE_SRC, "probe_main.cc"), *objs, "-o", exe],
                       capture_output=True, text=True)
    if r.returncode != 0:
        return None, f"skipped: probe_main.cc did not link: {r.stderr.strip()[:300]}"
    return exe, "; ".join(notes)


def run_probe(exe: str, seconds: float) -> dict:
    """{loop: GMAC/s or 'skipped (...)'}"""
    out = subprocess.run([exe, str(seconds)], capture_output=True, text=True, check=True).stdout
    res = {}
    for line in out.splitlines():
        name, _, rest = line.partition(" ")
        try:
            res[name] = float(rest)
        except ValueError:
            res[name] = rest
    return res


# ----------------------------------------------------------------------------- timing


def best_and_median(f, budget: float, min_calls: int = 5) -> tuple[float, float]:
    f()  # warm-up: buffers, page faults
    times = []
    end = time.perf_counter() + budget
    while len(times) < min_calls or time.perf_counter() < end:
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def operands(shape: tuple, seed: int = 0) -> dict:
    name, N, C, H, W, O, k, st, pd = shape
    rng = np.random.default_rng(seed)
    K = C * k * k
    return dict(
        x=rng.integers(0, 256, (N, C, H, W), dtype=np.uint8),
        w=rng.integers(-127, 128, (O, C, k, k), dtype=np.int8),
        bias=rng.normal(0.0, 1.0, O).astype(np.float32),
        a_scale=0.05, a_zp=64, w_scale=rng.uniform(0.002, 0.01, O), w_zp=np.zeros(O, np.int32),
        out_scale=float(0.05 * 0.006 * 74 * 110 * np.sqrt(K) / 40), out_zp=120,
        macs=N * ((H + 2 * pd - k) // st + 1) * ((W + 2 * pd - k) // st + 1) * O * K,
    )


def qref_prepare(shape: tuple, ops: dict, kernel: str, saturate: bool):
    from qref import _core

    _, N, C, H, W, O, k, st, pd = shape
    x = np.ascontiguousarray(ops["x"].transpose(0, 2, 3, 1))
    w = np.ascontiguousarray(ops["w"].transpose(0, 2, 3, 1))
    prep = _core.conv2d_prepare(x, w, ops["bias"], (st, st), (pd, pd), (1, 1), 1, ops["a_scale"], ops["a_zp"],
                                ops["w_scale"], ops["w_zp"], True, ops["out_scale"], ops["out_zp"], False, saturate,
                                kernel)
    return prep, x


def torch_module(shape: tuple, ops: dict):
    import torch

    _, N, C, H, W, O, k, st, pd = shape
    torch.backends.quantized.engine = "fbgemm"
    conv = torch.ao.nn.quantized.Conv2d(C, O, k, stride=st, padding=pd)
    qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(ops["w"]), torch.from_numpy(ops["w_scale"]),
                                                  torch.from_numpy(ops["w_zp"].astype(np.int64)), 0)
    conv.set_weight_bias(qw, torch.from_numpy(ops["bias"]))
    conv.scale, conv.zero_point = ops["out_scale"], ops["out_zp"]
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(ops["x"]), ops["a_scale"], ops["a_zp"])
    return conv, qx.contiguous(memory_format=torch.channels_last)


def torch_rows(budget: float) -> dict:
    """{shape: (best s, NHWC output bytes)} for torch's fbgemm as configured in this process, 1 thread."""
    import warnings

    import torch

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    res = {}
    for shape in SHAPES:
        ops = operands(shape)
        conv, qx = torch_module(shape, ops)
        out = conv(qx).int_repr().permute(0, 2, 3, 1).contiguous().numpy()
        best, _ = best_and_median(lambda: conv(qx), budget)
        res[shape[0]] = (best, out)
    return res


def torch_isa_name() -> str:
    try:
        import qref

        return str(qref.torch_isa().gemm_isa)
    except Exception as e:  # noqa: BLE001 - a label only
        return f"unknown ({e})"


def child_main(budget: float) -> None:
    """Subprocess (FBGEMM_ENABLE_INSTRUCTIONS set): torch times and output bytes as JSON."""
    rows = torch_rows(budget)
    print(json.dumps({"isa": torch_isa_name(), "rows": {k: [t, o.tobytes().hex()] for k, (t, o) in rows.items()}}))


def torch_avx2_rows(budget: float) -> tuple[str, dict] | str:
    env = dict(os.environ, FBGEMM_ENABLE_INSTRUCTIONS="AVX2")
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--_child", "--budget", str(budget)], env=env,
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"torch AVX2 subprocess failed: {r.stderr.strip()[-300:]}"
    d = json.loads(r.stdout.strip().splitlines()[-1])
    return d["isa"], {k: (t, bytes.fromhex(h)) for k, (t, h) in d["rows"].items()}


# ----------------------------------------------------------------------------- report


def fmt_frac(g: float, peaks: dict, loop: str) -> str:
    p = peaks.get(loop)
    return f"{g / p:.0%}" if isinstance(p, float) and p > 0 else "n/a"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--budget", type=float, default=1.5, help="seconds of calls per timed cell (default 1.5)")
    ap.add_argument("--probe-seconds", type=float, default=1.0, help="seconds per probe loop (default 1)")
    ap.add_argument("--cxx", default=os.environ.get("CXX", "c++"), help="C++ compiler for the probe (default $CXX or c++)")
    ap.add_argument("--probe-only", action="store_true", help="only build and run the probe")
    ap.add_argument("--no-torch", action="store_true", help="skip torch's rows and the equality checks against torch")
    ap.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._child:
        child_main(a.budget)
        return 0

    with tempfile.TemporaryDirectory(prefix="qref_peak_") as bd:
        exe, note = build_probe(bd, a.cxx)
        peaks = run_probe(exe, a.probe_seconds) if exe else {}
    print(f"## Peak probe (one core, best of {a.probe_seconds:g} s of short runs per loop)\n")
    print(f"Host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    if note:
        print(f"Probe: {note}")
    print("\n| loop | GMAC/s |\n|---|---:|")
    for key, label in PROBE_LOOPS:
        v = peaks.get(key, "skipped (probe not built)")
        print(f"| {label} | {v:.1f} |" if isinstance(v, float) else f"| {label} | {v} |")
    if a.probe_only:
        return 0

    import qref

    usable = list(qref.kernels())
    variants = [v for v in VARIANTS if v[1] in usable]
    skipped = [v[0] for v in VARIANTS if v[1] not in usable]
    t_default, t_avx2, default_isa = {}, {}, ""
    if not a.no_torch:
        default_isa = torch_isa_name()
        t_default = torch_rows(a.budget)
        r = torch_avx2_rows(a.budget)
        if isinstance(r, str):
            print(f"\n{r}")
        else:
            t_avx2 = r[1]
    default_loop = "vpdpbusd_zmm" if "vnni" in default_isa.lower() else "avx2_chain_ymm"

    print(f"\n## Kernels, single thread (best of {a.budget:g} s of calls per cell)\n")
    print(f"qref kernels usable here: {usable}" + (f"; not measured: {skipped}" if skipped else ""))
    if t_default:
        print(f"torch fbgemm default ISA in this process: {default_isa}")
    cols = [v[0] for v in variants] + (["torch fbgemm default", "torch fbgemm AVX2"] if t_default else [])
    print("\nGMAC/s (fraction of the probe loop that bounds it)\n")
    print("| shape | MMAC | " + " | ".join(cols) + " |")
    print("|---|---:|" + "---:|" * len(cols))
    from qref import _core

    for shape in SHAPES:
        ops = operands(shape)
        cells = []
        outs = {}
        for label, kern, sat, loop in variants:
            prep, x = qref_prepare(shape, ops, kern, sat)
            outs[(kern, sat)] = _core.conv2d_run(prep, x, 1)
            best, _ = best_and_median(lambda: _core.conv2d_run(prep, x, 1), a.budget)
            g = ops["macs"] / best * 1e-9
            cells.append(f"{g:.1f} ({fmt_frac(g, peaks, loop)})")
        # Bytes: every kernel of one semantics agrees, and with torch where torch ran.
        for sat in (False, True):
            got = [v for (k, s), v in outs.items() if s == sat]
            for v in got[1:]:
                assert np.array_equal(v, got[0]), f"{shape[0]}: qref kernels disagree (saturate={sat})"
        if t_default:
            tb, tout = t_default[shape[0]]
            sem = "vnni" in default_isa.lower()
            if (not sem) in [s for (_, s) in outs]:
                mine = next(v for (k, s), v in outs.items() if s == (not sem))
                assert np.array_equal(mine, tout), f"{shape[0]}: qref differs from torch's default fbgemm"
            g = ops["macs"] / tb * 1e-9
            cells.append(f"{g:.1f} ({fmt_frac(g, peaks, default_loop)})")
            if t_avx2:
                tb2, tbytes = t_avx2[shape[0]]
                if True in [s for (_, s) in outs]:
                    mine = next(v for (k, s), v in outs.items() if s)
                    assert mine.tobytes() == tbytes, f"{shape[0]}: qref saturating differs from torch's AVX2 fbgemm"
                g2 = ops["macs"] / tb2 * 1e-9
                cells.append(f"{g2:.1f} ({fmt_frac(g2, peaks, 'avx2_chain_ymm')})")
            else:
                cells.append("n/a")
        print(f"| {shape[0]} | {ops['macs'] / 1e6:.0f} | " + " | ".join(cells) + " |", flush=True)
    if t_default:
        print("\nEvery qref output above equals torch's for its semantics (exact: torch default ISA"
              + (", saturating: torch FBGEMM_ENABLE_INSTRUCTIONS=AVX2)" if t_avx2 else ")"))

    nthreads = min(2, int(_core.default_threads()))
    print(f"\n## 1- vs {nthreads}-thread scaling (qref, best and median of {a.budget:g} s of calls)\n")
    if nthreads < 2:
        print("skipped: this process may use 1 CPU only")
        return 0
    print("| shape | kernel | 1 thread ms (best / median) | 2 threads ms (best / median) | speed-up best | "
          "speed-up median |")
    print("|---|---|---:|---:|---:|---:|")
    for shape in SHAPES:
        if shape[0] not in LARGE:
            continue
        ops = operands(shape)
        for label, kern, sat, _ in variants:
            if label.endswith("avx2 exact"):
                continue
            prep, x = qref_prepare(shape, ops, kern, sat)
            b1, m1 = best_and_median(lambda: _core.conv2d_run(prep, x, 1), a.budget)
            b2, m2 = best_and_median(lambda: _core.conv2d_run(prep, x, 2), a.budget)
            print(f"| {shape[0]} | {label[5:]} | {b1 * 1e3:.2f} / {m1 * 1e3:.2f} | {b2 * 1e3:.2f} / {m2 * 1e3:.2f} | "
                  f"{b1 / b2:.2f} | {m1 / m2:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
