"""qref.fuzz: run a custom int8 conv kernel on many random configurations against qref.

    report = qref.fuzz(my_kernel, 10_000, seed=0, cluster="ray")
    print(report)            # each failure shrunk to a minimal configuration and diagnosed

Configuration ``i`` of a campaign is a pure function of ``(seed, i)``: the same configurations,
the same shrinking and the same report on one process, on worker processes or on a Ray cluster
of any size. Each configuration draws a shape family so that every fbgemm path is exercised
(pointwise and im2col GEMMs, depthwise, groupwise), and a data profile:

- ``full``: activations 0..255, weights -128..127;
- ``high``: activations 200..255, weights +-127/-128: int16 pair sums saturate (``vpmaddubsw``);
- ``reduce``: 7-bit activations (``reduce_range``), never saturating;
- ``small``: weights -20..20;
- ``ties``: power-of-two scales, multiplier 1/2 or 1/4 and a bias that is a whole number of
  accumulator units, so that many outputs land exactly on k + 0.5 (the rounding shows);
- ``bias``: multiplier exactly 1 and a bias whose term ``f32(bias / S)`` is exactly j + 0.5 while
  the reciprocal product ``f32(bias * f32(1/S))`` is not: how the bias is rounded decides every
  output (per-channel: fbgemm divides; a kernel multiplying by the reciprocal shows).

Each failure is shrunk greedily (N, groups, channels per group, H, W, kernel size, stride,
dilation, padding: each made as small as possible while the kernel still fails on freshly drawn
data of that shape) and diagnosed with ``qref.compare``'s alternative arithmetics.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Optional

import numpy as np

from . import api as qref
from . import cluster as C

ENGINES = ("fbgemm", "x86", "onednn")
ISAS = {"fbgemm": ("auto", "avx2", "vnni"),
        "x86": ("auto", "avx2", "vnni", "amx", "avx512_core", "sse41"),
        "onednn": ("auto", "avx2", "vnni", "amx", "avx512_core", "sse41")}
FAMILIES = ("pointwise", "im2col", "depthwise", "groupwise")
PROFILES = ("full", "high", "reduce", "small", "ties", "bias")
SHAPE_KEYS = ("N", "C", "H", "W", "O", "KH", "KW")


# ----------------------------------------------------------------------------- configurations


def _pair(v: Any) -> list:
    return [int(v), int(v)] if np.isscalar(v) else [int(v[0]), int(v[1])]


def draw_config(seed: int, index: int, engine: str = "fbgemm") -> dict:
    """Configuration ``index`` of the campaign ``seed``: a JSON-able dict with N, C, H, W, O, KH,
    KW, the conv arguments of ``qref.conv2d`` (bias as a list of float32 values) and what the
    operands are drawn from (``profile``, ``data_seed``, ``per_channel``, ``weight_zp_mode``)."""
    rng = np.random.default_rng([seed, index])
    family = FAMILIES[int(rng.integers(len(FAMILIES)))]
    r = lambda lo, hi: int(rng.integers(lo, hi + 1))  # noqa: E731  (inclusive)
    if family == "depthwise":  # fbgemm: G == C, O in {C, 2C}, C % 8 == 0, k in {3,5,7}, same padding
        G = 8 * r(1, 4)
        k = (3, 5, 7)[r(0, 2)]
        s = dict(groups=G, Cg=1, Og=r(1, 2), KH=k, KW=k, padding=[(k - 1) // 2] * 2, stride=[r(1, 2)] * 2,
                 dilation=[1, 1], H=r(1, 12), W=r(1, 12))
    elif family == "groupwise":  # fbgemm: C/G == O/G in {2,4,8,16}, 3x3, pad 1, stride 1 or 2
        cg = (2, 4, 8, 16)[r(0, 3)]
        g_together = max(64 // cg // max(cg, 4), 1)
        s = dict(groups=g_together * r(1, 2), Cg=cg, Og=cg, KH=3, KW=3, padding=[1, 1], stride=[r(1, 2)] * 2,
                 dilation=[1, 1], H=r(1, 10), W=r(1, 10))
    elif family == "pointwise":
        G = (1, 1, 1, 2, 3)[r(0, 4)]
        s = dict(groups=G, Cg=r(1, 40), Og=r(1, 24), KH=1, KW=1, padding=[0, 0], stride=[1, 1], dilation=[1, 1],
                 H=r(1, 9), W=r(1, 9))
    else:
        G = (1, 1, 2, 3, 4)[r(0, 4)]
        kh, kw = r(1, 5), r(1, 5)
        st, pd, dl = [r(1, 3), r(1, 3)], [r(0, 3), r(0, 3)], [r(1, 2), r(1, 2)]
        s = dict(groups=G, Cg=r(1, 12), Og=r(1, 12), KH=kh, KW=kw, padding=pd, stride=st, dilation=dl,
                 H=max(dl[0] * (kh - 1) + 1 - 2 * pd[0], 1) + r(0, 6),
                 W=max(dl[1] * (kw - 1) + 1 - 2 * pd[1], 1) + r(0, 6))
    profile = PROFILES[int(rng.integers(len(PROFILES)))]
    per_channel = bool(rng.integers(2))
    zp_modes = ("zero",) if engine == "onednn" else ("zero", "zero", "same", "random")
    a_zp = r(0, 15) if profile in ("ties", "bias") else (0, 128, 255, r(0, 255))[r(0, 3)]
    gen = dict(N=r(1, 2), C=s["groups"] * s["Cg"], H=s["H"], W=s["W"], O=s["groups"] * s["Og"], KH=s["KH"],
               KW=s["KW"], stride=s["stride"], padding=s["padding"], dilation=s["dilation"], groups=s["groups"],
               input_zero_point=a_zp, relu=bool(rng.integers(2)), has_bias=bool(rng.integers(4) > 0),
               per_channel=per_channel, weight_zp_mode=zp_modes[r(0, len(zp_modes) - 1)], profile=profile,
               data_seed=int(rng.integers(2**62)), family=family)
    return materialize(gen)


def materialize(gen: dict) -> dict:
    """The full configuration (scales, zero points, bias) of a shape and its drawing rules; the
    values depend only on the dict, so a shrunk shape gets fresh, reproducible values."""
    O, K = gen["O"], (gen["C"] // gen["groups"]) * gen["KH"] * gen["KW"]
    rng = np.random.default_rng([gen["data_seed"], 3])
    profile = gen["profile"]
    cfg = {k: gen[k] for k in ("N", "C", "H", "W", "O", "KH", "KW")}
    cfg.update(stride=_pair(gen["stride"]), padding=_pair(gen["padding"]), dilation=_pair(gen["dilation"]),
               groups=int(gen["groups"]), input_zero_point=int(gen["input_zero_point"]), relu=bool(gen["relu"]))
    nsc = O if gen["per_channel"] else 1
    if profile == "bias":
        # Every output on a tie that only the bias's own rounding decides: one weight scale for
        # all channels and output_scale = S, so the multiplier is exactly 1, and a bias b whose
        # term f32(b / S) (fbgemm, per-channel) is exactly j + 0.5 while f32(b * f32(1/S)) (the
        # reciprocal, rounded before the add) is not. Small raw (activations near the zero point,
        # weights -4..4) keeps y = raw + j + 0.5 in range.
        a_s = float(np.float32(rng.uniform(0.005, 0.05)))
        w1 = float(np.float32(rng.uniform(0.0005, 0.01)))
        w_s = [w1] * nsc
        S = np.float32(np.float32(a_s) * np.float32(w1))
        out_s = float(S)
        R = np.float32(1.0 / np.float64(S))
        bias = np.empty(O, np.float32)
        for o in range(O):
            bias[o] = _bias_on_tie(rng, S, R)
        out_zp = int(rng.integers(96, 161))
    elif profile == "ties":
        # Powers of two: S = a*w and M = S/out are exact, M is 1/2 or 1/4 (per channel), and a bias
        # of k*S is exactly k accumulator units, so every raw with the right low bits is a tie.
        ea, e0, m = int(rng.integers(4, 9)), int(rng.integers(4, 9)), int(rng.integers(1, 3))
        d = rng.integers(0, 2, nsc)
        a_s, w_s = 2.0 ** -ea, [2.0 ** -(e0 + int(v)) for v in d]
        out_s = a_s * 2.0 ** -e0 * 2.0 ** m
        out_zp = int(rng.integers(96, 161))
        S = np.array([a_s * w for w in (w_s if gen["per_channel"] else w_s * O)])
        bias = (rng.integers(-40, 41, O) * S).astype(np.float32)
    else:
        xr = {"full": 147.0, "high": 228.0, "reduce": 73.0, "small": 147.0}[profile]
        wr = {"full": 74.0, "high": 127.0, "reduce": 74.0, "small": 12.0}[profile]
        a_s = float(np.float32(rng.uniform(0.005, 0.05)))
        w_s = [float(v) for v in rng.uniform(0.0005, 0.01, nsc).astype(np.float32)]
        typical = math.sqrt(K) * xr * wr * a_s * float(np.median(w_s))
        out_s = float(np.float32(typical / rng.uniform(20, 60)))
        out_zp = (0, 255, int(rng.integers(0, 256)), int(rng.integers(0, 256)))[int(rng.integers(4))]
        bias = (rng.normal(0, 1, O) * typical).astype(np.float32)
    mode = gen["weight_zp_mode"]
    zps = [0] * nsc if mode == "zero" else [int(rng.integers(-10, 11))] * nsc if mode == "same" else \
        [int(v) for v in rng.integers(-10, 11, nsc)]
    cfg.update(input_scale=a_s, weight_scale=w_s if gen["per_channel"] else w_s[0],
               weight_zero_point=zps if gen["per_channel"] else zps[0], output_scale=out_s,
               output_zero_point=out_zp, bias=[float(v) for v in bias] if gen["has_bias"] else None)
    cfg.update({k: gen[k] for k in ("has_bias", "per_channel", "weight_zp_mode", "profile", "data_seed", "family")})
    return cfg


def _bias_on_tie(rng: np.random.Generator, S: np.float32, R: np.float32) -> np.float32:
    """A float32 bias b with f32(b / S) == j + 0.5 exactly and f32(b * R) != j + 0.5 (R the
    float32 reciprocal of S), for a random j; the plain f32((j + 0.5) * S) if none is near."""
    first = None
    for _ in range(16):
        T = np.float32(int(rng.integers(-20, 21)) + 0.5)
        b0 = np.float32(np.float64(T) * np.float64(S))
        first = b0 if first is None else first
        cand = [b0]
        up = down = b0
        for _k in range(4):
            up, down = np.nextafter(up, np.float32(np.inf)), np.nextafter(down, np.float32(-np.inf))
            cand += [up, down]
        for b in cand:
            if np.float32(b / S) == T and np.float32(b * R) != T:
                return np.float32(b)
    return np.float32(first)


def _genotype(cfg: dict) -> dict:
    keep = ("N", "C", "H", "W", "O", "KH", "KW", "stride", "padding", "dilation", "groups", "input_zero_point",
            "relu", "has_bias", "per_channel", "weight_zp_mode", "profile", "data_seed", "family")
    return {k: cfg[k] for k in keep}


def operands(cfg: dict) -> tuple:
    """(x uint8 (N, C, H, W), w int8 (O, C/groups, KH, KW), bias float32 (O,) or None, kwargs): the
    arguments ``kernel(x, w, bias, **kwargs)`` and ``qref.conv2d`` get for this configuration."""
    N, Cc, H, W, O, KH, KW = (cfg[k] for k in SHAPE_KEYS)
    G, profile, azp = cfg["groups"], cfg["profile"], cfg["input_zero_point"]
    rx = np.random.default_rng([cfg["data_seed"], 1])
    rw = np.random.default_rng([cfg["data_seed"], 2])
    xs, ws = (N, Cc, H, W), (O, Cc // G, KH, KW)
    if profile in ("ties", "bias"):
        x = rx.integers(max(0, azp - 8), min(255, azp + 8) + 1, xs, dtype=np.uint8)
        w = rw.integers(-4, 5, ws, dtype=np.int8)
    else:
        lo, hi = {"full": (0, 256), "high": (200, 256), "reduce": (0, 128), "small": (0, 256)}[profile]
        x = rx.integers(lo, hi, xs, dtype=np.uint8)
        if profile == "high":
            w = rw.choice(np.array([-128, 127, -127, 126], np.int8), size=ws)
        elif profile == "small":
            w = rw.integers(-20, 21, ws, dtype=np.int8)
        else:
            w = rw.integers(-128, 128, ws, dtype=np.int8)
    bias = None if cfg["bias"] is None else np.array(cfg["bias"], np.float32)
    ws_ = cfg["weight_scale"]
    wz = cfg["weight_zero_point"]
    kw = dict(stride=tuple(cfg["stride"]), padding=tuple(cfg["padding"]), dilation=tuple(cfg["dilation"]),
              groups=cfg["groups"], input_scale=cfg["input_scale"], input_zero_point=azp,
              weight_scale=np.array(ws_, np.float64) if isinstance(ws_, list) else ws_,
              weight_zero_point=np.array(wz, np.int32) if isinstance(wz, list) else wz,
              output_scale=cfg["output_scale"], output_zero_point=cfg["output_zero_point"], relu=cfg["relu"])
    return x, w, bias, kw


def path_label(cfg: dict, isa: str, engine: str) -> str:
    """fbgemm's path for the shape (``qref.conv_plan``); prefixed by the engine when it is not fbgemm."""
    plan_isa = isa if isa in ("auto", "avx2", "vnni") else "auto"
    p = qref.conv_plan((cfg["N"], cfg["C"], cfg["H"], cfg["W"]), (cfg["O"], cfg["C"] // cfg["groups"], cfg["KH"],
                       cfg["KW"]), tuple(cfg["stride"]), tuple(cfg["padding"]), tuple(cfg["dilation"]),
                       cfg["groups"], plan_isa).path
    return p if engine == "fbgemm" else f"{engine}/{p}"


# ----------------------------------------------------------------------------- one configuration


@dataclass
class _Outcome:
    failed: bool
    invalid: bool = False
    actual: Optional[np.ndarray] = None
    expected: Optional[np.ndarray] = None
    error: Optional[str] = None


def _as_output(out: Any) -> Any:
    if hasattr(out, "int_repr") and getattr(out, "is_quantized", False):
        out = out.int_repr()
    if hasattr(out, "detach") and hasattr(out, "numpy"):
        out = out.detach().cpu().numpy()
    return out


def evaluate(kernel: Callable, cfg: dict, isa: str, engine: str) -> _Outcome:
    try:
        x, w, b, kw = operands(cfg)
        expected = qref.conv2d(x, w, b, **kw, engine=engine, isa=isa)
    except (ValueError, qref.OneDNNNotSupportedError):
        return _Outcome(False, invalid=True)  # not a configuration torch accepts (while shrinking)
    try:
        out = kernel(x.copy(), w.copy(), None if b is None else b.copy(),
                     **{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in kw.items()})
    except Exception as e:  # noqa: BLE001 - the kernel's own failure is a finding
        return _Outcome(True, expected=expected, error=f"kernel raised {type(e).__name__}: {e}")
    out = _as_output(out)
    if not isinstance(out, np.ndarray):
        return _Outcome(True, expected=expected, error=f"kernel returned {type(out).__name__}, not a numpy uint8 "
                                                       f"array (N, O, OH, OW)")
    if out.dtype != np.uint8:
        return _Outcome(True, expected=expected, error=f"kernel returned dtype {out.dtype}, not uint8")
    if out.shape != expected.shape:
        return _Outcome(True, expected=expected, error=f"kernel returned shape {out.shape}, expected "
                                                       f"{expected.shape} (N, O, OH, OW)")
    return _Outcome(bool(np.any(out != expected)), actual=out, expected=expected)


def _shrink_candidates(cfg: dict) -> list:
    """Smaller neighbours of a configuration, the biggest steps first, in the order the fields
    are minimised: N, groups, channels per group (in, out), H, W, KH, KW, stride, dilation, padding."""
    g = _genotype(cfg)
    G = g["groups"]
    fields = dict(N=g["N"], G=G, Cg=g["C"] // G, Og=g["O"] // G, H=g["H"], W=g["W"], KH=g["KH"], KW=g["KW"])
    mins = dict(N=1, G=1, Cg=1, Og=1, H=1, W=1, KH=1, KW=1)
    out = []
    for f, v in fields.items():
        for nv in sorted({mins[f], v // 2, v - 1}):
            if mins[f] <= nv < v:
                d = dict(fields, **{f: nv})
                c = dict(g, N=d["N"], groups=d["G"], C=d["G"] * d["Cg"], O=d["G"] * d["Og"], H=d["H"], W=d["W"],
                         KH=d["KH"], KW=d["KW"])
                out.append(c)
    for f, lo in (("stride", 1), ("dilation", 1), ("padding", 0)):
        for i in (0, 1):
            v = list(g[f])
            if v[i] > lo:
                for nv in sorted({lo, v[i] - 1}):
                    c = dict(g)
                    c[f] = v[:i] + [nv] + v[i + 1:]
                    out.append(c)
    return out


def shrink(kernel: Callable, cfg: dict, isa: str, engine: str, budget: int = 400) -> tuple:
    """(minimal failing configuration, its outcome, evaluations spent): greedy, first improvement."""
    best, best_out = cfg, evaluate(kernel, cfg, isa, engine)
    spent = 1
    improved = True
    while improved and spent < budget:
        improved = False
        for cand_gen in _shrink_candidates(best):
            if spent >= budget:
                break
            cand = materialize(cand_gen)
            o = evaluate(kernel, cand, isa, engine)
            spent += 1
            if o.failed:
                best, best_out, improved = cand, o, True
                break
    return best, best_out, spent


def _stats(o: _Outcome) -> dict:
    if o.actual is None:
        return dict(mismatches=int(o.expected.size) if o.expected is not None else 0,
                    numel=int(o.expected.size) if o.expected is not None else 0, max_abs_diff=0, first=[])
    mis = o.actual != o.expected
    d = np.abs(o.actual.astype(np.int16) - o.expected.astype(np.int16))
    first = [f"{tuple(int(v) for v in i)}: kernel {int(o.actual[tuple(i)])}, qref {int(o.expected[tuple(i)])}"
             for i in np.argwhere(mis)[:5]]
    return dict(mismatches=int(mis.sum()), numel=int(mis.size), max_abs_diff=int(d.max(initial=0)), first=first)


def _compare(cfg: dict, o: _Outcome, isa: str) -> Any:
    x, w, b, kw = operands(cfg)
    return qref.compare(o.actual, o.expected, input=x, weight=w, bias=b, **kw,
                        isa=isa if isa in ("auto", "avx2", "vnni") else "auto")


def _other_engine(cfg: dict, o: _Outcome, isa: str, engine: str) -> Optional[str]:
    """The kernel computes another engine's arithmetic (fbgemm's where oneDNN's is expected, or back)."""
    x, w, b, kw = operands(cfg)
    for e in [e for e in ("fbgemm", "onednn") if e != engine]:
        try:
            alt = qref.conv2d(x, w, b, **kw, engine=e, isa=isa if e == "onednn" or isa in ISAS["fbgemm"] else "auto")
        except (ValueError, qref.OneDNNNotSupportedError):
            continue
        if np.array_equal(alt, o.actual) and not np.array_equal(alt, o.expected):
            return e
    return None


def diagnose(cfg: dict, o: _Outcome, original: dict, o_orig: _Outcome, isa: str, engine: str) -> dict:
    """What the failing kernel computes, from ``qref.compare`` on the original configuration
    (more elements, fewer ambiguities) and the minimal one."""
    if o.error is not None:
        return dict(diagnosis=o.error, variant=None, explained_by=[], comparison=o.error)
    cmp_min = _compare(cfg, o, isa)
    descr = {c.name: c.description for c in (cmp_min.diagnosis or [])}
    exact_min = [c.name for c in (cmp_min.diagnosis or []) if c.exact]
    exact_orig: list = []
    if o_orig.actual is not None and o_orig is not o:
        exact_orig = [c.name for c in (_compare(original, o_orig, isa).diagnosis or []) if c.exact]
    else:
        exact_orig = exact_min
    # 1. a variant reproducing the kernel on both configurations; 2. another engine's whole
    # arithmetic on both; 3. a variant on one of them (the minimal one can be ambiguous). The
    # variants change one stage of fbgemm's arithmetic, so under another engine that engine
    # comes first (a variant that happens to change nothing would "explain" fbgemm's output).
    both = [n for n in exact_orig if n in exact_min]
    other = None
    if not both or engine != "fbgemm":
        other = _other_engine(original, o_orig, isa, engine) if o_orig.actual is not None else None
        if other is not None and _other_engine(cfg, o, isa, engine) != other:
            other = None
    if other is not None:
        return dict(diagnosis=f"{other}_arithmetic: the kernel computes {other}'s arithmetic, not "
                              f"engine={engine!r}'s", variant=f"{other}_arithmetic",
                    explained_by=[f"{other}_arithmetic"], comparison=str(cmp_min))
    exact = both or exact_orig or exact_min
    if exact:
        name = exact[0]
        text = f"{name}: {descr.get(name, '')}".rstrip(": ")
        if len(exact) > 1:
            text += f" (equally explained by: {', '.join(exact[1:])})"
        return dict(diagnosis=text, variant=name, explained_by=exact, comparison=str(cmp_min))
    if cmp_min.diagnosis:
        c = cmp_min.diagnosis[0]
        return dict(diagnosis=f"unexplained: no known alternative arithmetic reproduces the kernel; closest: "
                              f"{c.name} explains {c.explained}/{c.mismatches} mismatches", variant=None,
                    explained_by=[], comparison=str(cmp_min))
    return dict(diagnosis="unexplained: no known alternative arithmetic explains any mismatch", variant=None,
                explained_by=[], comparison=str(cmp_min))


def host_semantics() -> str:
    """What isa="auto" means on this host (fbgemm's semantics and the CPU features oneDNN's class
    follows), as a comparable string."""
    t = qref.torch_isa()
    return f"{t.semantics}, features {sorted(k for k, v in t.cpu_features.items() if v)}"


def run_shard(state: dict, shard: tuple) -> list:
    """Worker entry: ``shard = (seed, start, stop)`` -> one JSON-able summary: how many
    configurations ran, per path, and the failures (shrunk, diagnosed). A passing configuration
    costs nothing in the result, so a shard's result stays small however large the shard."""
    kernel, isa, engine, do_shrink = state["kernel"], state["isa"], state["engine"], state["shrink"]
    if isa == "auto" and state.get("host") is not None and host_semantics() != state["host"]:
        # isa="auto" means "this host's torch": a worker on another kind of CPU would compute
        # another expected output, and the report would depend on where each shard ran.
        raise RuntimeError(f"fuzz: isa='auto' resolves to {host_semantics()} on this worker but to {state['host']} "
                           f"where the campaign started; on a cluster of mixed CPUs name the arithmetic: "
                           f"isa='avx2' or 'vnni'")
    seed, start, stop = shard
    indices = range(start, stop)
    coverage: dict = {}
    failures = []
    for i in indices:
        cfg = draw_config(seed, i, engine)
        o = evaluate(kernel, cfg, isa, engine)
        label = path_label(cfg, isa, engine)
        coverage[label] = coverage.get(label, 0) + 1
        if o.invalid:  # never for drawn configurations; a failure of the generator itself
            failures.append(dict(index=i, config=cfg, original_config=cfg, mismatches=0, numel=0, max_abs_diff=0,
                                 first=[], diagnosis="invalid configuration drawn (qref refused it)",
                                 variant=None, explained_by=[], comparison="", error="invalid", shrink_steps=0))
        elif o.failed:
            small, o_small, spent = shrink(kernel, cfg, isa, engine) if do_shrink else (cfg, o, 0)
            failures.append(dict(index=i, config=small, original_config=cfg, **_stats(o_small),
                                 **diagnose(small, o_small, cfg, o, isa, engine), error=o_small.error,
                                 shrink_steps=spent))
    return [dict(configs=len(indices), coverage=coverage, failures=failures)]


# ----------------------------------------------------------------------------- report


@dataclass
class FuzzFailure:
    """One failing configuration, shrunk: ``config`` is the minimal one (``original_config`` the
    one drawn), ``mismatches`` / ``numel`` / ``max_abs_diff`` / ``first`` are on ``config``."""

    index: int
    config: dict
    original_config: dict
    mismatches: int
    numel: int
    max_abs_diff: int
    first: list
    diagnosis: str
    variant: Optional[str]
    explained_by: list
    comparison: str
    error: Optional[str]
    shrink_steps: int

    def operands(self) -> tuple:
        """``(x, w, bias, kwargs)`` of the minimal configuration: ``kernel(x, w, bias, **kwargs)``
        reproduces the failure, ``qref.conv2d(x, w, bias, **kwargs)`` is the expected output."""
        return operands(self.config)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        c = self.config
        shape = " ".join(f"{k}={c[k]}" for k in SHAPE_KEYS)
        args = ", ".join(f"{k}={c[k]}" for k in ("stride", "padding", "dilation", "groups", "input_zero_point",
                                                  "weight_zero_point", "output_zero_point", "relu"))
        o = self.original_config
        lines = [f"config #{self.index} ({c['family']} shape, {c['profile']} data): shrunk from "
                 + " ".join(f"{k}={o[k]}" for k in SHAPE_KEYS) + f" to {shape}",
                 f"  {args}; scales in {self.input_scale_text()}",
                 f"  {self.mismatches}/{self.numel} elements differ, max |diff| {self.max_abs_diff}"
                 if self.error is None else f"  {self.error}"]
        lines += [f"    {m}" for m in self.first[:3]]
        lines.append(f"  diagnosis: {self.diagnosis}")
        return "\n".join(lines)

    def input_scale_text(self) -> str:
        c = self.config
        ws = c["weight_scale"]
        wtxt = f"per-channel {ws}" if isinstance(ws, list) else f"per-tensor {ws!r}"
        return (f"input {c['input_scale']!r}, weight {wtxt}, output {c['output_scale']!r}, "
                f"bias {'none' if c['bias'] is None else 'float32'}")


@dataclass
class FuzzReport:
    """The result of ``qref.fuzz``: ``ok`` when every configuration matched bit for bit."""

    configs_run: int
    failures: list  # [FuzzFailure], by configuration index
    coverage: dict  # path -> configurations run
    seed: int
    isa: str
    engine: str
    kernel: str
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.configs_run > 0 and not self.failures

    @property
    def variants(self) -> dict:
        """How many failures each diagnosis names (``None``: unexplained or an error)."""
        out: dict = {}
        for f in self.failures:
            out[f.variant] = out.get(f.variant, 0) + 1
        return out

    def to_dict(self) -> dict:
        return dict(ok=self.ok, configs_run=self.configs_run, failures=[f.to_dict() for f in self.failures],
                    coverage=dict(self.coverage), seed=self.seed, isa=self.isa, engine=self.engine,
                    kernel=self.kernel, notes=list(self.notes))

    def __str__(self) -> str:
        cov = ", ".join(f"{k} {v}" for k, v in sorted(self.coverage.items()))
        lines = [f"qref fuzz {self.kernel} (engine={self.engine}, isa={self.isa}, seed={self.seed}): "
                 f"{self.configs_run} configurations ({cov})"]
        if self.ok:
            lines.append(f"OK: the kernel matches qref bit for bit on all {self.configs_run} configurations")
        elif self.configs_run == 0:
            lines.append("NOT OK: no configuration was run")
        else:
            lines.append(f"FAILED: {len(self.failures)} of {self.configs_run} configurations differ")
            byv = sorted(self.variants.items(), key=lambda kv: (-kv[1], str(kv[0])))
            lines.append("diagnoses: " + ", ".join(f"{k or 'unexplained/error'} x{v}" for k, v in byv))
            shown = self.failures[:10]
            for f in shown:
                lines.append(str(f))
            if len(self.failures) > len(shown):
                lines.append(f"... and {len(self.failures) - len(shown)} more (report.failures)")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _kernel_name(kernel: Any) -> str:
    mod = getattr(kernel, "__module__", None) or ""
    name = getattr(kernel, "__qualname__", None) or type(kernel).__name__
    return f"{mod}:{name}" if mod else name


def fuzz(kernel: Callable, n: int, *, isa: str = "auto", engine: str = "fbgemm", seed: int = 0,
         cluster: Any = None, workers: Optional[int] = None, results: Optional[str] = None,
         shard_size: int = 16, shrink: bool = True, progress: bool = True) -> FuzzReport:
    """Run ``kernel(x_u8, w_i8, bias_f32, **kw)`` on ``n`` random valid conv configurations and
    compare each output with ``qref.conv2d(..., engine=engine, isa=isa)`` bit for bit.

    ``kw`` holds ``qref.conv2d``'s array-form arguments: stride, padding, dilation, groups,
    input_scale, input_zero_point, weight_scale (a float: per-tensor; a float64 (O,) array:
    per-channel), weight_zero_point, output_scale, output_zero_point, relu. The kernel returns a
    uint8 array (N, O, OH, OW). ``cluster``: None, "local", "ray" or "ray://host:port" (see
    ``qref.campaign.cluster``); ``workers``: how many (default: every CPU); ``results``: a JSON-lines
    file of finished shards, so an interrupted campaign resumes where it stopped.
    """
    fn = "fuzz"
    if not callable(kernel):
        raise TypeError(f"{fn}: kernel={kernel!r} is not callable (must be kernel(x_u8, w_i8, bias_f32, **kw) -> "
                        f"uint8 array)")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{fn}: n={n!r} is not valid (must be an int >= 0: how many configurations)")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{fn}: seed={seed!r} is not valid (must be an int >= 0)")
    if engine not in ENGINES:
        raise ValueError(f"{fn}: engine={engine!r} is not valid (valid: {', '.join(map(repr, ENGINES))})")
    if isa not in ISAS[engine]:
        raise ValueError(f"{fn}: isa={isa!r} is not valid with engine={engine!r} (valid: "
                         f"{', '.join(map(repr, ISAS[engine]))})")
    cluster = C.check_cluster(fn, cluster)
    workers = C.check_workers(fn, workers)
    shard_size = C.check_shard_size(fn, shard_size)
    n, seed = int(n), int(seed)
    name = _kernel_name(kernel)
    key = dict(kind="fuzz", kernel=name, n=n, seed=seed, isa=isa, engine=engine, shard_size=shard_size,
               shrink=bool(shrink))
    res = C.ResultsFile(fn, results, key)
    shards = ((sid, (seed, sid * shard_size, min(n, (sid + 1) * shard_size)))
              for sid in range((n + shard_size - 1) // shard_size))
    bar = C.Progress("qref fuzz", n, "config", progress)
    try:
        done = C.run(fn, "qref.campaign.fuzzer:run_shard",
                     dict(kernel=kernel, isa=isa, engine=engine, shrink=bool(shrink),
                          host=host_semantics() if cluster is not None else None), shards, cluster=cluster,
                     workers=workers, results=res, progress=bar,
                     n_items=lambda items: sum(it["configs"] for it in items),
                     n_failures=lambda items: sum(len(it["failures"]) for it in items))
    finally:
        bar.close()
        res.close()
    parts = [it for v in done.values() for it in v]
    coverage: dict = {}
    for it in parts:
        for k, v in it["coverage"].items():
            coverage[k] = coverage.get(k, 0) + v
    coverage = dict(sorted(coverage.items()))
    failures = sorted((FuzzFailure(**f) for it in parts for f in it["failures"]), key=lambda f: f.index)
    configs_run = sum(it["configs"] for it in parts)
    notes = []
    if engine != "fbgemm" and failures:
        notes.append(f"diagnoses name fbgemm variants relative to engine={engine!r}'s expected output")
    return FuzzReport(configs_run, failures, coverage, seed, isa, engine, name, notes)
