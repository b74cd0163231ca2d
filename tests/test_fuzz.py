"""Fuzzing with hypothesis.

1. Valid configurations, drawn per fbgemm path (depthwise, groupwise, pointwise,
   im2col; each path has its own strategy so all are drawn), checked qref == torch
   bit for bit: under the default ISA in this process, and under
   FBGEMM_ENABLE_INSTRUCTIONS=AVX2 in one subprocess per drawn batch.
   Fast profile by default; long profile with --runslow (size: QREF_FUZZ_EXAMPLES).
2. The binding boundary: arbitrary arguments (wrong types, shapes, dtypes, NaN, huge
   ints, negative values, empty arrays) to qref.conv2d, qref.quantize and every
   qref._core function must give a clean TypeError / ValueError (or qref's documented
   NotImplementedError for oneDNN), never a crash. Runs in a subprocess, so a segfault
   fails the test instead of killing pytest.

Run as a script (``python test_fuzz.py boundary N SEED``) it is the boundary worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from oracle import case_id, spec  # noqa: E402

FAST = int(os.environ.get("QREF_FUZZ_FAST", "60"))  # valid configurations per ISA setting, default run
LONG = int(os.environ.get("QREF_FUZZ_EXAMPLES", "2000"))  # with --runslow
PATHS = ("depthwise", "groupwise", "pointwise", "im2col")

# ----------------------------------------------------------------------------- valid configurations

quant = st.fixed_dictionaries(dict(
    N=st.integers(1, 2),
    per_channel=st.booleans(),
    w_zp=st.one_of(st.just(0), st.just("random"), st.integers(-128, 127)),
    a_zp=st.one_of(st.sampled_from([0, 128, 255]), st.integers(0, 255)),
    relu=st.booleans(),
    bias=st.booleans(),
    act=st.sampled_from(["full", "reduce", "high"]),
    weight=st.sampled_from(["full", "extreme", "small"]),
    seed=st.integers(0, 2**31 - 1),
    out_zp=st.one_of(st.none(), st.sampled_from([0, 255]), st.integers(0, 255)),
))


@st.composite
def depthwise(draw):
    # FbgemmConv.cc takeDepthWiseFastPath: G == C, O in {G, 2G}, G % 8 == 0, square k in
    # {3,5,7}, stride 1/2, pad (k-1)/2, no dilation.
    G = draw(st.sampled_from([8, 16, 24, 32]))
    k = draw(st.sampled_from([3, 5, 7]))
    return dict(C=G, O=G * draw(st.sampled_from([1, 2])), groups=G, KH=k, KW=k, padding=(k - 1) // 2,
                stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), dilation=1,
                H=draw(st.integers(1, 12)), W=draw(st.integers(1, 12)))


@st.composite
def groupwise(draw):
    # fbgemmOptimizedGConv: Cg == Og in {2,4,8,16}, 3x3, pad 1, stride 1 or 2 (both), no
    # dilation, G >= G_together (64 lanes on an AVX512 host: max(64/Og/max(Cg,4), 1)).
    # G is a multiple of G_together: torch 2.13's fbgemm corrupts the heap otherwise (see
    # _torch_groupwise_crashes).
    cg = draw(st.sampled_from([2, 4, 8, 16]))
    g_together = max(64 // cg // max(cg, 4), 1)
    G = g_together * draw(st.integers(1, 3 if g_together > 1 else 6))
    s = draw(st.integers(1, 2))
    return dict(C=cg * G, O=cg * G, groups=G, KH=3, KW=3, padding=1, stride=s, dilation=1,
                H=draw(st.integers(1, 10)), W=draw(st.integers(1, 10)))


@st.composite
def pointwise(draw):
    g = draw(st.sampled_from([1, 1, 1, 2, 3]))
    return dict(C=g * draw(st.integers(1, 40)), O=g * draw(st.integers(1, 24)), groups=g, KH=1, KW=1, padding=0,
                stride=1, dilation=1, H=draw(st.integers(1, 9)), W=draw(st.integers(1, 9)))


@st.composite
def im2col(draw):
    g = draw(st.sampled_from([1, 1, 2, 3, 4]))
    kh, kw = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    st_ = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pd = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    dl = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    # input at least as large as the dilated kernel minus padding
    H = max(dl[0] * (kh - 1) + 1 - 2 * pd[0], 1) + draw(st.integers(0, 6))
    W = max(dl[1] * (kw - 1) + 1 - 2 * pd[1], 1) + draw(st.integers(0, 6))
    return dict(C=g * draw(st.integers(1, 12)), O=g * draw(st.integers(1, 12)), groups=g, KH=kh, KW=kw,
                padding=pd, stride=st_, dilation=dl, H=H, W=W)


SHAPES = dict(depthwise=depthwise(), groupwise=groupwise(), pointwise=pointwise(), im2col=im2col())


def _torch_groupwise_crashes(s) -> bool:
    """fbgemm's groupwise kernel (torch 2.13) writes out of bounds when G is not a multiple of
    G_together (e.g. C_per_G 4 with G 5, C_per_G 2 with G 17 on an AVX512 host: "free(): invalid
    next size", SIGABRT). torch is no oracle there, so the strategies leave such shapes out."""
    cg, og = s["C"] // s["groups"], s["O"] // s["groups"]
    if not (cg == og and cg in (2, 4, 8, 16) and s["KH"] == 3 and s["KW"] == 3 and s["padding"] == (1, 1)
            and s["dilation"] == (1, 1) and s["stride"] in ((1, 1), (2, 2))):
        return False
    return any(s["groups"] % max(simd // og // max(cg, 4), 1) for simd in (64, 32))


def config(path: str):
    return st.builds(lambda shape, q: spec(**{**q, **shape}), SHAPES[path], quant).filter(
        lambda s: not _torch_groupwise_crashes(s))


def _plan(s, isa="auto"):
    import qref

    return qref.conv_plan((s["N"], s["C"], s["H"], s["W"]), (s["O"], s["C"] // s["groups"], s["KH"], s["KW"]),
                          s["stride"], s["padding"], s["dilation"], s["groups"], isa)


def _check_in_process(s, path):
    import qref  # noqa: F401
    from oracle import assert_same, build, qref_conv, torch_conv

    plan = _plan(s, "vnni")  # the path rules with AVX512 G_together, as the strategies assume
    if path != "im2col":  # im2col draws may legitimately land on another path
        assert plan.path == path, (case_id(s), str(plan))
    b = build(s)
    assert_same(qref_conv(s, b, isa="auto"), torch_conv(s, b), f"{case_id(s)} [{_plan(s)}] spec={json.dumps(s)}")


def _fast(n):
    return settings(max_examples=n, deadline=None, database=None, print_blob=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ----------------------------------------------------------------------------- boundary worker

# Integers that are either small (cheap shapes) or beyond every range qref accepts;
# mid-sized values (e.g. padding 2^15) would be valid and merely allocate gigabytes.
_INTS = st.one_of(st.integers(-3, 12), st.sampled_from(
    [-2**70, -2**63 - 1, -2**63, -2**31 - 1, -2**31, 2**31 - 1, 2**31, 2**32, 2**40, 2**63 - 1, 2**63, 2**70]))
_FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from([0.0, -0.0, 1e-45, 1e-40, 1.17e-38, 3.4e38, 3.5e38, 1e300, -1.0, 0.1]))


def _make_array(np, dtype, shape, seed, layout):
    rng = np.random.default_rng(seed)
    if dtype is object:
        a = np.empty(shape, object)
    elif np.dtype(dtype).kind == "f" or np.dtype(dtype).kind == "c":
        with np.errstate(all="ignore"):
            a = (rng.normal(0, 1e3, shape) * rng.choice([1, 1e30, np.nan, np.inf], shape)).astype(dtype)
    elif np.dtype(dtype).kind == "b":
        a = rng.integers(0, 2, shape).astype(bool)
    else:
        info = np.iinfo(dtype)
        a = rng.integers(max(info.min, -2**62), min(info.max, 2**62), shape, endpoint=True).astype(dtype)
    if layout == "f":
        a = np.asfortranarray(a)
    elif layout == "neg" and a.ndim:
        a = a[::-1]
    elif layout == "strided" and a.ndim:
        a = np.repeat(a, 2, axis=-1)[..., ::2]
    return a


def _arrays(np, dtypes=None, ndims=(0, 5), dims=(0, 4)):
    dtypes = dtypes or [np.uint8, np.int8, np.float32, np.float64, np.int32, np.int64, np.bool_, np.float16,
                        np.complex64, object, np.dtype(">f4"), np.uint64]
    return st.builds(lambda d, sh, seed, lay: _make_array(np, d, sh, seed, lay), st.sampled_from(dtypes),
                     st.lists(st.integers(*dims), min_size=ndims[0], max_size=ndims[1]).map(tuple),
                     st.integers(0, 2**32 - 1), st.sampled_from(["c", "c", "f", "neg", "strided"]))


def _garbage(np):
    return st.one_of(st.none(), st.booleans(), _INTS, _FLOATS, st.text(max_size=3),
                     st.lists(_INTS, max_size=3), st.tuples(_INTS, _INTS), _arrays(np),
                     st.just(object()), st.just(np.float32(np.nan)), st.just(np.int64(2**62)), st.just({}))


def _boundary_worker(n: int, seed: int) -> None:
    """Arbitrary arguments; only TypeError/ValueError (or qref's documented NotImplementedError)
    may come out. Any other exception fails here; a crash kills this process."""
    import resource

    import numpy as np

    import qref
    from qref import _core

    # A missed size check must show as MemoryError (a failure here), not as swapping.
    if "libasan" not in os.environ.get("LD_PRELOAD", ""):  # ASan maps terabytes of shadow memory
        resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))
    G = _garbage(np)
    kernels = list(_core.compiled_kernels())

    @st.composite
    def consistent(draw):
        """A mostly valid conv: consistent shapes, plausible parameters, edge values sometimes."""
        g = draw(st.sampled_from([1, 1, 2, 4]))
        N, H, W = draw(st.integers(0, 2)), draw(st.integers(0, 6)), draw(st.integers(0, 6))
        cg, og = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        x = rng.integers(0, 256, (N, cg * g, H, W), dtype=np.uint8)
        w = rng.integers(-128, 128, (og * g, cg, kh, kw), dtype=np.int8)
        O = og * g
        pc = draw(st.booleans())
        small = st.integers(0, 2)
        sc = st.one_of(st.floats(1e-6, 10.0), _FLOATS)
        return dict(
            input=x, weight=w, bias=draw(st.one_of(st.none(), st.just(rng.normal(0, 5, O).astype(np.float32)))),
            stride=draw(st.one_of(st.integers(1, 3), st.tuples(st.integers(1, 3), st.integers(1, 3)))),
            padding=draw(st.one_of(small, st.tuples(small, small))),
            dilation=draw(st.one_of(st.integers(1, 2), st.tuples(st.integers(1, 2), st.integers(1, 2)))),
            groups=g, input_scale=draw(sc), input_zero_point=draw(st.integers(-1, 256)),
            weight_scale=(rng.uniform(1e-3, 1e-2, O).tolist() if pc else draw(sc)),
            weight_zero_point=(rng.integers(-128, 128, O).tolist() if pc else draw(st.integers(-129, 128))),
            output_scale=draw(sc), output_zero_point=draw(st.integers(-1, 256)), relu=draw(st.booleans()),
            return_intermediates=draw(st.booleans()),
            engine=draw(st.sampled_from(["fbgemm", "fbgemm", "x86", "onednn"])),
            isa=draw(st.sampled_from(["auto", "avx2", "vnni"])), kernel=draw(st.sampled_from(["auto"] + kernels)),
            threads=draw(st.one_of(st.none(), st.integers(1, 7))))

    @st.composite
    def corrupt(draw, base):
        """0-2 arguments replaced by arbitrary values (the rest stay plausible)."""
        args = draw(base)
        keys = list(args) if isinstance(args, dict) else list(range(len(args)))
        args = dict(args) if isinstance(args, dict) else list(args)
        for _ in range(draw(st.integers(0, 2))):
            args[draw(st.sampled_from(keys))] = draw(G)
        return args

    def core_from(kw):
        def pair(v):
            return tuple(v) if isinstance(v, tuple) else (v, v)

        pc = isinstance(kw["weight_scale"], list)
        return [np.ascontiguousarray(kw["input"].transpose(0, 2, 3, 1)),
                np.ascontiguousarray(kw["weight"].transpose(0, 2, 3, 1)), kw["bias"], pair(kw["stride"]),
                pair(kw["padding"]), pair(kw["dilation"]), kw["groups"], kw["input_scale"], kw["input_zero_point"],
                np.atleast_1d(np.asarray(kw["weight_scale"], np.float64)),
                np.atleast_1d(np.asarray(kw["weight_zero_point"], np.int32)), pc, kw["output_scale"],
                kw["output_zero_point"], kw["relu"], kw["isa"] == "avx2",
                kw["kernel"] if kw["kernel"] != "auto" else "scalar", kw["threads"] or 1, kw["return_intermediates"]]

    def req_from(a):
        return [a[1], a[7], a[8], a[9], a[10], a[11], a[12], a[2], a[6]]

    def path_from(a):
        return [list(a[0].shape), list(a[1].shape), a[3], a[4], a[5], a[6], a[15]]

    base_core = consistent().map(core_from)
    floats_in = st.one_of(_arrays(np, [np.float32], (0, 4), (0, 5)), st.just(np.array([np.nan, np.inf], np.float32)))
    q = st.tuples(floats_in, st.one_of(st.floats(1e-6, 10.0), _FLOATS), st.integers(-1, 256))
    def prep_from(a):
        return a[:17]

    known = {"conv2d_nhwc", "requant_params", "conv_path", "quantize", "conv2d_prepare", "conv2d_run"}
    others = sorted(n for n in dir(_core) if not n.startswith("_") and callable(getattr(_core, n)) and n not in known)
    generic = st.tuples(st.sampled_from(others), st.lists(G, max_size=8)) if others else st.nothing()

    target = st.one_of(
        st.tuples(st.just("qref.conv2d"), corrupt(consistent())),
        st.tuples(st.just("qref.quantize"), corrupt(q)),
        st.tuples(st.just("_core.conv2d_nhwc"), corrupt(base_core)),
        st.tuples(st.just("_core.requant_params"), corrupt(base_core.map(req_from))),
        st.tuples(st.just("_core.conv_path"), corrupt(base_core.map(path_from))),
        st.tuples(st.just("_core.quantize"), corrupt(q)),
        st.tuples(st.just("_core.*"), generic),
    )
    if hasattr(_core, "conv2d_prepare"):  # the prepared conv: prepare, then run on drawn inputs
        target = st.one_of(
            target,
            st.tuples(st.just("_core.conv2d_prepare"), corrupt(base_core.map(prep_from))),
            st.tuples(st.just("_core.conv2d_run"),
                      st.tuples(base_core.map(prep_from),
                                corrupt(st.tuples(_arrays(np, [np.uint8], (4, 4), (0, 6)), st.integers(-2, 7))))),
        )
    counts: dict = {}

    @settings(max_examples=n, deadline=None, database=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(t=target)
    def run(t):
        name, args = t
        try:
            if name == "qref.conv2d":
                kw = dict(args)
                qref.conv2d(kw.pop("input"), kw.pop("weight"), kw.pop("bias"), **kw)
            elif name == "qref.quantize":
                qref.quantize(*args)
            elif name == "_core.*":
                getattr(_core, args[0])(*args[1])
            elif name == "_core.conv2d_run":
                prep_args, run_args = args
                try:
                    prep = _core.conv2d_prepare(*prep_args)
                except (TypeError, ValueError):
                    prep = None
                if prep is not None:
                    # the drawn input, or one of the prepared shape, run with drawn threads
                    x = run_args[0]
                    if isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 4 and prep_args[0].size:
                        x = prep_args[0] if x.shape[0] % 2 == 0 else x
                    _core.conv2d_run(prep, x, run_args[1])
            else:
                getattr(_core, name.split(".")[1])(*args)
            outcome = "ok"
        except (TypeError, ValueError, NotImplementedError) as e:
            # qref's own messages start with the function name; pybind's type errors are
            # "incompatible function arguments" / "Unable to cast"; numpy's are its own.
            assert str(e), f"{name}: empty {type(e).__name__}"
            outcome = type(e).__name__
        counts[(name, outcome)] = counts.get((name, outcome), 0) + 1

    import random

    random.seed(seed)
    run()
    print(json.dumps({f"{k[0]} -> {k[1]}": v for k, v in sorted(counts.items())}, indent=1))
    print("boundary fuzz ok")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "boundary":
    _boundary_worker(int(sys.argv[2]), int(sys.argv[3]))
    sys.exit(0)


# ----------------------------------------------------------------------------- default ISA, in process

import pytest  # noqa: E402

torch = pytest.importorskip("torch")


def _per_path(n_total):
    return max(1, n_total // len(PATHS))


@pytest.mark.parametrize("path", PATHS)
def test_fuzz_vs_torch_default_isa(path):
    @_fast(_per_path(2 * FAST))  # in-process examples are cheap: twice the AVX2 batch
    @given(s=config(path))
    def run(s):
        _check_in_process(s, path)

    run()


@pytest.mark.slow
@pytest.mark.parametrize("path", PATHS)
def test_fuzz_vs_torch_default_isa_long(path):
    @_fast(_per_path(LONG))
    @given(s=config(path))
    def run(s):
        _check_in_process(s, path)

    run()


# ----------------------------------------------------------------------------- AVX2, one subprocess per batch


def _batch(per_path):
    return st.tuples(*[st.lists(config(p), min_size=per_path, max_size=per_path) for p in PATHS]).map(
        lambda t: [s for lst in t for s in lst])


def _check_avx2_batch(specs):
    from oracle import assert_same, run_in_subprocess

    res = run_in_subprocess(specs, {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    for s, r in zip(specs, res):
        assert_same(r["qref"], r["torch"], f"{case_id(s)} under FBGEMM_ENABLE_INSTRUCTIONS=AVX2 [{r['plan']}] "
                                           f"spec={json.dumps(s)}")


# Shrinking would rerun the subprocess per step; the failing spec is printed whole instead.
_NO_SHRINK = [Phase.explicit, Phase.reuse, Phase.generate]


def test_fuzz_vs_torch_avx2_subprocess():
    @settings(max_examples=1, deadline=None, database=None, phases=_NO_SHRINK,
              suppress_health_check=list(HealthCheck))
    @given(specs=_batch(_per_path(FAST)))
    def run(specs):
        _check_avx2_batch(specs)

    run()


@pytest.mark.slow
def test_fuzz_vs_torch_avx2_subprocess_long():
    batch = 100
    @settings(max_examples=max(1, LONG // batch), deadline=None, database=None, phases=_NO_SHRINK,
              suppress_health_check=list(HealthCheck))
    @given(specs=_batch(batch // len(PATHS)))
    def run(specs):
        _check_avx2_batch(specs)

    run()


# ----------------------------------------------------------------------------- the binding boundary


def _run_boundary(n: int, seed: int) -> None:
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "boundary", str(n), str(seed)],
                       capture_output=True, text=True, timeout=900, cwd=HERE)
    tail = (r.stdout[-4000:] + "\n" + r.stderr[-8000:]).strip()
    if r.returncode < 0:
        raise AssertionError(f"boundary fuzz worker died of signal {-r.returncode} (a crash):\n{tail}")
    assert r.returncode == 0, f"boundary fuzz worker failed (rc {r.returncode}):\n{tail}"
    assert "boundary fuzz ok" in r.stdout, tail


def test_fuzz_boundary_clean_errors():
    _run_boundary(int(os.environ.get("QREF_FUZZ_BOUNDARY", "600")), 6)


@pytest.mark.slow
def test_fuzz_boundary_clean_errors_long():
    _run_boundary(20 * int(os.environ.get("QREF_FUZZ_BOUNDARY", "600")), 66)
