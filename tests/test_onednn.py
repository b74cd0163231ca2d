"""qref engine="x86"/"onednn" vs torch's x86 and onednn quantized engines (oneDNN arithmetic).

torch runs in the test (in-process for this host's oneDNN class; in a subprocess with
ONEDNN_MAX_CPU_ISA set before torch is imported for lower classes). Cases are "tie-rich":
scales whose real multiplier is a power of two and whose double/float round trips differ,
so that every candidate formula (separate vs combined scales, round trips, zero point
before/after rounding) rounds some outputs apart; the discrimination tests prove it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from oracle import assert_same, build, case_id, spec, torch_conv  # noqa: E402

torch = pytest.importorskip("torch")
import qref  # noqa: E402
from qref import onednn  # noqa: E402
from qref.bridge.onednn_verbose import executed_kernels  # noqa: E402

_A_SCALES = [0.003, 0.007, 0.013, 0.03, 0.065, 0.079, 0.1]  # f32(1/f32(1/a)) != f32(a) for most
_O_SCALES = [0.007, 0.065, 0.079, 0.013, 0.101, 0.129, 0.149, 0.3]  # inv round trip differs for most


def build_case(s: dict) -> dict:
    """oracle.build, then (s["tie"]) small weights and power-of-two real multipliers:
    y sits near k + 0.5 for many outputs, so float rounding order decides them."""
    b = build(s)
    if not s.get("tie"):
        return b
    rng = np.random.default_rng(s["seed"] + 7919)
    O, Cg, KH, KW = b["w"].shape
    wmax = int(rng.choice([1, 2, 3, 7]))
    b["w"] = rng.integers(-wmax, wmax + 1, (O, Cg, KH, KW)).astype(np.int8)
    b["a_scale"] = float(rng.choice(_A_SCALES))
    b["out_scale"] = float(rng.choice(_O_SCALES))
    typ = np.sqrt(Cg * KH * KW) * 74 * wmax
    mexp = max(1.0, float(np.round(np.log2(typ / 60))))
    m = 2.0 ** -(mexp + rng.integers(-1, 2, O))
    ws = (b["out_scale"] * m / b["a_scale"]).astype(np.float32).astype(np.float64)
    b["w_scale"] = ws if b["per_channel"] else ws[:1]
    b["w_zp"] = np.zeros_like(b["w_zp"])
    if b["bias"] is not None:
        k = rng.integers(-40, 40, O).astype(np.float32)
        b["bias"] = (np.float32(b["out_scale"]) * k * np.float32(rng.choice([1.0, 0.5, 0.25]))).astype(np.float32)
    return b


def torch_engine_conv(s: dict, b: dict, engine: str) -> np.ndarray:
    return torch_conv(s, b, engine)


def qref_engine_conv(s: dict, b: dict, engine: str, isa: str = "auto", **kw):
    ws = b["w_scale"] if b["per_channel"] else float(b["w_scale"][0])
    wz = b["w_zp"] if b["per_channel"] else int(b["w_zp"][0])
    return qref.conv2d(b["x"], b["w"], b["bias"], stride=s["stride"], padding=s["padding"], dilation=s["dilation"],
                       groups=s["groups"], input_scale=b["a_scale"], input_zero_point=b["a_zp"], weight_scale=ws,
                       weight_zero_point=wz, output_scale=b["out_scale"], output_zero_point=b["out_zp"],
                       relu=s["relu"], engine=engine, isa=isa, **kw)


# Kernel classes on every oneDNN CPU class: 1x1 (brgconv_1x1 / jit_uni_int8_1x1), strided 1x1,
# general (brg_conv_fwd / jit_uni_int8), grouped (jit_int8), depthwise (brdgmm_dw / jit dw),
# stem (3 input channels, 7x7), odd channel counts, dilation.
SHAPES = [
    dict(C=32, O=32, KH=1, KW=1, H=12, W=12),
    dict(C=32, O=48, KH=1, KW=1, H=13, W=13, stride=2),
    dict(C=32, O=32, KH=3, KW=3, H=12, W=12, padding=1),
    dict(C=24, O=40, KH=3, KW=3, H=15, W=15, stride=2, padding=1),
    dict(C=16, O=16, KH=5, KW=5, H=14, W=14, padding=2, dilation=2),
    dict(C=64, O=64, KH=3, KW=3, H=10, W=10, padding=1, groups=16),
    dict(C=32, O=64, KH=3, KW=3, H=10, W=10, padding=1, groups=4),
    dict(C=32, O=32, KH=3, KW=3, H=16, W=16, padding=1, groups=32),
    dict(C=24, O=24, KH=5, KW=5, H=17, W=17, padding=2, stride=2, groups=24),
    dict(C=100, O=100, KH=3, KW=3, H=9, W=9, padding=1, groups=100),
    dict(C=3, O=16, KH=7, KW=7, H=24, W=24, stride=2, padding=3),
    dict(C=7, O=9, KH=3, KW=3, H=11, W=11, padding=(1, 0)),
    dict(C=2, O=8, KH=2, KW=3, H=9, W=10),
]
# One input channel per group, more than one output: brg_conv_fwd with kw-major tap pairs on
# avx512_core; ref:any (grouped) or jit_uni_int8 (groups=1) on avx2.
CG1_SHAPES = [
    dict(C=32, O=64, KH=3, KW=3, H=12, W=12, padding=1, groups=32),
    dict(C=1, O=8, KH=3, KW=3, H=12, W=12, padding=1),
]


def make_specs(shapes, seeds, tie_every=3):
    out = []
    for i, sh in enumerate(shapes):
        for seed in range(seeds):
            r = np.random.default_rng(1000 * i + seed)
            out.append(spec(**sh, N=2 if seed % 2 else 1, seed=1000 * i + seed, per_channel=seed % 4 != 3,
                            relu=bool(seed % 2), a_zp=int(r.integers(0, 256)) if seed % 5 else 0,
                            bias=seed % 7 != 6, tie=seed % tie_every != tie_every - 1))
    return out


def _host_supported(cls: str) -> bool:
    return cls in onednn.ONEDNN_ISAS


def _skip_unless_host_class():
    cls = onednn.onednn_isa().effective
    if not _host_supported(cls):
        pytest.skip(f"this host's oneDNN class {cls!r} is not reproduced by qref")
    return cls


def _torch_kernel(s: dict, b: dict, engine: str):
    """The oneDNN implementation torch runs for this case (its verbose log), or None (fbgemm ran)."""
    ks = executed_kernels(lambda: torch_engine_conv(s, b, engine), "convolution")
    return ks[-1] if ks else None


def _host_kw(s: dict, b: dict, engine: str, cls: str) -> dict:
    """On the amx class oneDNN picks its AMX or its avx512_core_vnni builds by performance heuristics:
    qref follows the name torch's log gives, as qref.check does."""
    if cls != "amx":
        return {}
    k = _torch_kernel(s, b, engine)
    return {"onednn_kernel": k} if k else {}


def _float_reference(s: dict, b: dict) -> np.ndarray:
    """The conv computed in float64 from the real values, quantized to the output: within one step of any
    correct requantization."""
    x = (b["x"].astype(np.float64) - b["a_zp"]) * b["a_scale"]
    ws = np.broadcast_to(np.asarray(b["w_scale"], np.float64), (b["w"].shape[0],))
    w = (b["w"].astype(np.float64) - np.broadcast_to(np.asarray(b["w_zp"]), ws.shape)[:, None, None, None]) \
        * ws[:, None, None, None]
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w),
                                   None if b["bias"] is None else torch.from_numpy(b["bias"].astype(np.float64)),
                                   s["stride"], s["padding"], s["dilation"], s["groups"]).numpy()
    if s["relu"]:
        y = np.maximum(y, 0)
    return np.clip(np.rint(y / b["out_scale"]) + b["out_zp"], 0, 255)


def _amx_measured_defect(s: dict, b: dict, t: np.ndarray, q: np.ndarray, kernel) -> bool:
    """torch/oneDNN's AMX brg_conv_fwd build gives wrong values for some shapes (measured with torch 2.11 on
    an AMX Xeon: grouped convs whose output channels per group are not a multiple of 16, off by up to tens
    of steps from group 1 on; a dilated strided 3x3 conv, up to 42 steps): true when this case is such a
    defect, measured as qref.check measures it — qref within one step of the float computation
    everywhere, torch 3 or more steps off where they differ (no requantization variant moves an output by
    more than one step)."""
    if not (kernel and "amx" in kernel and kernel.startswith("brg_conv_fwd")):
        return False
    ref = _float_reference(s, b)
    bad = q != t
    return bool(np.abs(q - ref).max() <= 1 and np.abs(t[bad].astype(np.float64) - ref[bad]).max() >= 3)


def _compare_host(s: dict, b: dict, engine: str, cls: str, what: str) -> None:
    kw = _host_kw(s, b, engine, cls)
    t = torch_engine_conv(s, b, engine)
    q = qref_engine_conv(s, b, engine, **kw)
    if cls == "amx" and not np.array_equal(q, t) and _amx_measured_defect(s, b, t, q, kw.get("onednn_kernel")):
        return  # torch's defect, measured (qref.check labels it TORCH_WRONG the same way)
    assert_same(q, t, f"{what} engine={engine} class={cls} kernel={kw.get('onednn_kernel')}")


# ----------------------------------------------------------------------------- in-process (host class)


@pytest.mark.parametrize("engine", ["onednn", "x86"])
@pytest.mark.parametrize("s", make_specs(SHAPES + CG1_SHAPES, 3), ids=case_id)
def test_host_class_vs_torch(s, engine):
    cls = _skip_unless_host_class()
    _compare_host(s, build_case(s), engine, cls, case_id(s))


def test_amx_1x1_scales_follow_batch_and_threads():
    """AMX host: brgconv_1x1's AMX build combines the scales, except for one image run by several threads
    (separate scales); qref reads torch's thread count. Tie-rich 1x1 layers, N 1 and 2, 1 and 4 threads."""
    cls = _skip_unless_host_class()
    if cls != "amx":
        pytest.skip(f"needs an AMX host (this host's oneDNN class is {cls})")
    prev = torch.get_num_threads()
    seen = set()
    try:
        for threads in (1, 4):
            torch.set_num_threads(threads)
            for N in (1, 2):
                for seed in range(4):
                    s = spec(C=64, O=64, KH=1, KW=1, H=14, W=14, N=N, seed=300 + seed, per_channel=seed != 3,
                             a_zp=[0, 100, 200, 31][seed], tie=True)
                    b = build_case(s)
                    k = _torch_kernel(s, b, "onednn")
                    if k and "amx" in k:
                        seen.add((threads, N))
                    _compare_host(s, b, "onednn", cls, f"{case_id(s)} threads={threads}")
    finally:
        torch.set_num_threads(prev)
    assert seen, "oneDNN ran no AMX build for these 1x1 layers"


def test_amx_host_avx2_vnni_builds():
    """AMX host: oneDNN runs its brg_conv_fwd:avx2_vnni build for some small grouped convs with one input
    channel per group; qref follows the name with the vnni class's arithmetic (exact sums, separate scales),
    and torch's bytes agree. Tie-rich layers, so a combined scale (the gemm conv's) would round apart."""
    cls = _skip_unless_host_class()
    if cls != "amx":
        pytest.skip(f"needs an AMX host (this host's oneDNN class is {cls})")
    r = np.random.default_rng(7)
    seen = []
    for i in range(200):
        g, Og, k = int(r.choice([2, 3, 4, 8])), int(r.choice([1, 2, 3, 4, 8])), int(r.choice([1, 3, 5]))
        s = spec(C=g, O=Og * g, KH=k, KW=k, groups=g, H=int(r.integers(k, 12)), W=int(r.integers(k, 12)),
                 padding=int(r.integers(0, k // 2 + 1)), stride=int(r.choice([1, 2])), N=int(r.integers(1, 3)),
                 seed=i, per_channel=bool(r.integers(0, 2)), relu=bool(r.integers(0, 2)),
                 a_zp=int(r.integers(0, 256)), tie=True)
        b = build_case(s)
        engine = "x86" if i % 2 else "onednn"
        kernel = _torch_kernel(s, b, engine)
        if kernel and "avx2_vnni" in kernel:
            seen.append(kernel)
            assert_same(qref_engine_conv(s, b, engine, onednn_kernel=kernel), torch_engine_conv(s, b, engine),
                        f"{case_id(s)} engine={engine} kernel={kernel}")
    if not seen:
        pytest.skip("oneDNN on this AMX CPU ran no avx2_vnni build for these layers (its choice is a heuristic)")


def test_host_class_random_sweep():
    """Fast seeded sweep over random shapes, both engines (long version behind --runslow)."""
    _skip_unless_host_class()
    _random_sweep(40, seed=1)


@pytest.mark.slow
def test_host_class_random_sweep_long(request):
    _skip_unless_host_class()
    _random_sweep(request.config.getoption("--sweep") or 600, seed=2)


def _random_shape(r) -> dict:
    kind = r.integers(0, 4)
    k = int(r.choice([1, 3, 5]))
    st = int(r.choice([1, 2]))
    if kind == 0:  # depthwise
        g = int(r.integers(2, 101))
        return dict(C=g, O=g, KH=k, KW=k, groups=g, H=int(r.integers(k, 14)), W=int(r.integers(k, 14)),
                    stride=st, padding=int(r.integers(0, k // 2 + 1)))
    g = int(r.choice([1, 1, 2, 4])) if kind == 1 else 1
    Cg, Og = int(r.integers(2, 20)), int(r.integers(1, 24))
    return dict(C=Cg * g, O=Og * g, KH=k, KW=int(r.choice([1, 3])) if kind == 3 else k, groups=g,
                H=int(r.integers(k, 12)), W=int(r.integers(k, 12)), stride=st, padding=int(r.integers(0, 2)),
                dilation=int(r.choice([1, 1, 2])) if k > 1 else 1)


def _random_sweep(n: int, seed: int) -> None:
    r = np.random.default_rng(seed)
    bad = []
    for i in range(n):
        sh = _random_shape(r)
        eff = sh.get("dilation", 1) * (sh["KH"] - 1) + 1
        if eff > sh["H"] + 2 * sh["padding"] or sh.get("dilation", 1) * (sh["KW"] - 1) + 1 > sh["W"] + 2 * sh["padding"]:
            continue
        s = spec(**sh, N=int(r.integers(1, 3)), seed=10_000 * seed + i, per_channel=bool(r.integers(0, 2)),
                 relu=bool(r.integers(0, 2)), a_zp=int(r.integers(0, 256)), tie=bool(r.integers(0, 3)))
        b = build_case(s)
        engine = "x86" if i % 2 else "onednn"
        cls = onednn.onednn_isa().effective
        kw = _host_kw(s, b, engine, cls)
        t = torch_engine_conv(s, b, engine)
        q = qref_engine_conv(s, b, engine, **kw)
        if not np.array_equal(q, t) and not (cls == "amx" and _amx_measured_defect(s, b, t, q, kw.get("onednn_kernel"))):
            bad.append(f"{case_id(s)} seed={s['seed']} engine={engine} kernel={kw.get('onednn_kernel')}: "
                       f"{int((q != t).sum())} of {q.size} differ")
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------------------- discrimination


def _variant_out(s: dict, b: dict, kernel=None, **variant) -> np.ndarray:
    """The core's oneDNN conv with qref's plan (for the named ``kernel``, if any) and ``variant``'s
    overrides."""
    from qref import _core

    pl = onednn.plan(b["w"].shape, s["groups"], s["stride"], s["padding"], s["dilation"], onednn_kernel=kernel,
                     batch=int(b["x"].shape[0]))
    v = dict(saturate=pl.saturates, combined=pl.combined_scale, float_comp=pl.float_compensation,
             kw_major_pairs=pl.kw_major_pairs, divide_dst=pl.divide_dst)
    v.update(variant)
    ws = np.ascontiguousarray(b["w_scale"], dtype=np.float64)
    out = _core.onednn_conv2d_nhwc(np.ascontiguousarray(b["x"].transpose(0, 2, 3, 1)),
                                   np.ascontiguousarray(b["w"].transpose(0, 2, 3, 1)), b["bias"], s["stride"],
                                   s["padding"], s["dilation"], s["groups"], b["a_scale"], b["a_zp"], ws,
                                   b["per_channel"], b["out_scale"], b["out_zp"], s["relu"], threads=1, **v)
    return out.transpose(0, 3, 1, 2)


def test_tie_cases_discriminate_scale_order():
    """The tie-rich cases separate the formulas: the other scale order mismatches torch
    somewhere while qref's choice matches everywhere. On an AMX host qref's choice follows the build
    oneDNN's log names for each case (an AMX build or a VNNI one)."""
    cls = _skip_unless_host_class()
    wrong = 0
    for s in make_specs(SHAPES[:4], 6, tie_every=100):
        b = build_case(s)
        t = torch_engine_conv(s, b, "onednn")
        k = _torch_kernel(s, b, "onednn") if cls == "amx" else None
        pl = onednn.plan(b["w"].shape, s["groups"], s["stride"], s["padding"], s["dilation"], onednn_kernel=k,
                         batch=int(b["x"].shape[0]))
        assert_same(_variant_out(s, b, k), t, f"{case_id(s)} kernel={k}")
        wrong += int((_variant_out(s, b, k, combined=not pl.combined_scale) != t).sum())
    assert wrong > 0


def test_large_accumulators_integer_compensation():
    """|acc| ~ 5e7 (float32 cannot hold it exactly) with activations near a_zp = 200: the
    non-AMX kernels compensate the zero point in int32 (float compensation mismatches)."""
    cls = _skip_unless_host_class()
    if cls != "vnni":
        pytest.skip(f"needs exact (non-saturating) non-AMX kernels; host class is {cls}")
    wrong_float = 0
    for seed in range(3):
        s = spec(C=512, O=32, KH=3, KW=3, H=8, W=8, padding=1, seed=seed, a_zp=200, out_zp=128, bias=False)
        b = build(s)
        r = np.random.default_rng(seed)
        b["x"] = (200 + r.integers(-3, 4, b["x"].shape)).astype(np.uint8)
        b["w"] = r.integers(-20, 128, b["w"].shape).astype(np.int8)
        _, it = qref_engine_conv(s, b, "onednn", return_intermediates=True)
        assert int(np.abs(it.acc).max()) > 2**25
        ss, _ = onednn.scales(b["a_scale"], 1.0)
        real = np.abs(it.A.astype(np.float64) * ss * np.asarray(b["w_scale"])[None, :, None, None]).max()
        b["out_scale"] = float(np.float32(real / 120))
        t = torch_engine_conv(s, b, "onednn")
        assert_same(qref_engine_conv(s, b, "onednn"), t, f"large acc seed {seed}")
        wrong_float += int((_variant_out(s, b, float_comp=True) != t).sum())
    assert wrong_float > 0


# ----------------------------------------------------------------------------- routing and refusals


def test_x86_routes_asymmetric_and_wide_groups_to_fbgemm():
    """engine='x86' sends asymmetric weights and groups > 100 to fbgemm, as torch's prepack does."""
    cases = [spec(C=16, O=16, KH=3, KW=3, padding=1, w_zp=3, per_channel=False, seed=5),
             spec(C=16, O=16, KH=3, KW=3, padding=1, w_zp="random", seed=6),
             spec(C=104, O=104, KH=3, KW=3, padding=1, groups=104, H=9, W=9, seed=7)]
    for s in cases:
        b = build(s)
        assert_same(qref_engine_conv(s, b, "x86"), torch_engine_conv(s, b, "x86"), case_id(s))
        assert_same(qref_engine_conv(s, b, "x86"), qref_engine_conv(s, b, "fbgemm"), case_id(s))


def test_onednn_refuses_asymmetric_weights():
    s = spec(C=8, O=8, KH=3, KW=3, w_zp=2, per_channel=False)
    b = build(s)
    with pytest.raises(qref.OneDNNNotSupportedError, match="symmetric"):
        qref_engine_conv(s, b, "onednn")


@pytest.mark.parametrize("cls", ["avx2_vnni"])
def test_unreproduced_classes_refuse(cls):
    """oneDNN classes qref has not reproduced (not emulable here) refuse, naming the class."""
    with pytest.raises(qref.OneDNNNotSupportedError, match=cls):
        onednn.plan((8, 8, 3, 3), 1, (1, 1), (1, 1), (1, 1), isa=cls)


def test_isa_names():
    s = spec(C=8, O=8, KH=3, KW=3)
    b = build(s)
    onednn._WARNED.clear()
    with pytest.warns(RuntimeWarning, match="assumed"):  # no kernel name: the AMX build is assumed
        qref_engine_conv(s, b, "onednn", isa="amx")
    for isa in ("vnni", "avx512_core", "avx2", "sse41", "auto"):
        qref_engine_conv(s, b, "onednn", isa=isa)
    with pytest.raises(ValueError, match="isa"):
        qref_engine_conv(s, b, "onednn", isa="sse9")
    with pytest.raises(ValueError, match="isa"):
        qref_engine_conv(s, b, "fbgemm", isa="amx")
    _, it = qref_engine_conv(s, b, "onednn", isa="amx", return_intermediates=True)
    assert it.plan.combined_scale and it.plan.float_compensation and not it.plan.verified
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a named kernel is followed, not assumed: no warning
        _, it = qref_engine_conv(s, b, "onednn", isa="amx", onednn_kernel="brg_conv_fwd:avx10_1_512_amx",
                                 return_intermediates=True)
    assert it.plan.combined_scale and it.plan.float_compensation and it.plan.verified


def test_torch_isa_reports_onednn():
    text = str(qref.torch_isa())
    assert "oneDNN" in text and onednn.onednn_isa().effective in text


# ----------------------------------------------------------------------------- bridge


@pytest.mark.parametrize("relu", [False, True])
def test_bridge_x86_converted_module(relu):
    """A module converted under the default x86 engine: from_torch gives params that run
    oneDNN's arithmetic when torch's packed weights are oneDNN's."""
    _skip_unless_host_class()
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "x86"
    try:
        cls = nniq.ConvReLU2d if relu else nnq.Conv2d
        m = cls(16, 24, 3, padding=1)
        w = torch.quantize_per_channel(torch.randn(24, 16, 3, 3) * 0.1, torch.rand(24, dtype=torch.float64) * 0.004
                                       + 0.001, torch.zeros(24, dtype=torch.int64), 0, torch.qint8)
        m.set_weight_bias(w, torch.randn(24))
        m.scale, m.zero_point = 0.079, 61
        qx = torch.quantize_per_tensor(torch.rand(2, 16, 11, 11) * 3, 0.013, 17, torch.quint8)
        p = qref.from_torch(m)
        expect = "onednn" if qref.torch_bridge.packed_engine(m) == "onednn" else "fbgemm"
        assert p.engine == expect
        ref = m(qx).int_repr().numpy()
        assert_same(p(qx).int_repr().numpy(), ref, "bridge x86 module")
        # the packed weights are kept (one prepared conv per input shape), and the
        # repeated call that runs them gives the same bytes.
        entries = [v[0] for v in p._prepared.values()]
        assert len(entries) == 1
        if expect == "onednn":
            assert isinstance(entries[0], qref._core.OnednnConv2d)
        assert_same(p(qx).int_repr().numpy(), ref, "bridge x86 module, second call (prepared)")
        assert [v[0] for v in p._prepared.values()] == entries
    finally:
        torch.backends.quantized.engine = prev


# ----------------------------------------------------------------------------- fast loop == reference loop


@pytest.mark.parametrize("variant", [dict(saturate=False, combined=False, float_comp=False),
                                     dict(saturate=True, combined=False, float_comp=False),
                                     dict(saturate=True, combined=True, float_comp=False),
                                     dict(saturate=False, combined=True, float_comp=True),
                                     dict(saturate=False, combined=False, float_comp=False, divide_dst=True),
                                     dict(saturate=True, combined=False, float_comp=False, kw_major_pairs=True)],
                         ids=["exact-sep", "sat-sep", "sat-comb", "amx", "ref-any", "kw-major"])
def test_fast_equals_reference(variant):
    """The repacked loops (no intermediates) give the bytes of the plain reference loop
    (return_intermediates=True), on every variant and shape family; so does the prepared
    (packed-once) conv that Conv2dParams caches, run by _core.conv2d_run. On an AVX512-VNNI
    host the exact class runs the VNNI conv2d kernel's GEMM with oneDNN's epilogue
    (route "vnni_gemm"), except the shapes that kernel hands to its
    (saturating) AVX2 depthwise code."""
    from qref import _core

    vnni = "avx512vnni" in _core.kernels()
    exact = not (variant.get("saturate") or variant.get("float_comp") or variant.get("kw_major_pairs"))
    r = np.random.default_rng(3)
    shapes = SHAPES + CG1_SHAPES + [dict(C=640, O=8, KH=3, KW=3, H=5, W=5, padding=1, weight="extreme", act="high"),
                                    # GEMM tails: O not a multiple of 16, odd Cg (K not a multiple of 4),
                                    # the 1x1 direct path, many groups with Cg=1 and Og > 4
                                    dict(C=20, O=70, KH=1, KW=1, H=7, W=9),
                                    dict(C=5, O=33, KH=3, KW=2, H=8, W=11, padding=(2, 1), stride=(2, 1)),
                                    dict(C=16, O=80, KH=3, KW=3, H=6, W=6, padding=1, groups=16),
                                    # kernel rows read in place (KW*C % 4 == 0, >= 64 bytes), whole
                                    # padded kernel rows (padding 2 > reach 1 of a 3x3 row)
                                    dict(C=32, O=40, KH=3, KW=3, H=9, W=12, padding=(2, 1), stride=(1, 2)),
                                    dict(C=8, O=8, KH=1, KW=1, H=5, W=5, groups=2, weight="extreme", act="high"),
                                    # depthwise: tap pairs with an even tap count, a channel tail,
                                    # dilation with padding wider than the kernel reach, > 64 taps
                                    dict(C=40, O=40, KH=2, KW=3, H=9, W=8, padding=(1, 2), groups=40),
                                    dict(C=72, O=72, KH=3, KW=3, H=6, W=13, padding=1, stride=(1, 2), groups=72),
                                    dict(C=35, O=35, KH=3, KW=3, H=9, W=9, padding=3, dilation=2, stride=2,
                                         groups=35, weight="extreme", act="high"),
                                    dict(C=16, O=16, KH=9, KW=9, H=10, W=10, padding=4, groups=16)]
    routes = set()
    for i, sh in enumerate(shapes):
        s = spec(**sh, N=2, seed=i, a_zp=int(r.integers(0, 256)), relu=bool(i % 2))
        b = build(s)
        args = (np.ascontiguousarray(b["x"].transpose(0, 2, 3, 1)), np.ascontiguousarray(b["w"].transpose(0, 2, 3, 1)),
                b["bias"], s["stride"], s["padding"], s["dilation"], s["groups"], b["a_scale"], b["a_zp"],
                np.ascontiguousarray(b["w_scale"], dtype=np.float64), b["per_channel"], b["out_scale"], b["out_zp"],
                s["relu"])
        ref = _core.onednn_conv2d_nhwc(*args, threads=1, intermediates=True, **variant)[0]
        pv = dict(variant, kw_major_pairs=variant.get("kw_major_pairs", False),
                  divide_dst=variant.get("divide_dst", False))
        # dw_vnni False: depthwise takes the AVX512 tap-pair kernel (what CPUs without VNNI run)
        for threads, simd, dw_vnni in ((1, True, True), (2, True, True), (1, False, True), (1, True, False)):
            _core.onednn_set_simd(simd)  # False: the portable loop even where the VNNI core runs
            _core.onednn_set_dw_vnni(dw_vnni)
            try:
                fast = _core.onednn_conv2d_nhwc(*args, threads=threads, intermediates=False, **variant)
                prep = _core.onednn_conv2d_prepare(*args, **pv)
            finally:
                _core.onednn_set_simd(True)
                _core.onednn_set_dw_vnni(True)
            assert_same(fast, ref, f"{case_id(s)} {variant} threads={threads} simd={simd} dw_vnni={dw_vnni}")
            what = f"{case_id(s)} {variant} prepared route={prep.route} threads={threads} simd={simd} dw_vnni={dw_vnni}"
            assert_same(_core.conv2d_run(prep, args[0], threads), ref, what)
            assert_same(_core.conv2d_run(prep, args[0], threads), ref, what + " (second run)")
            routes.add(prep.route)
            Cg, Og, g = s["C"] // s["groups"], s["O"] // s["groups"], s["groups"]
            dw = Cg == 1 and Og == 1 and g > 1
            gemm_shape = not dw and not (Cg == 1 and g >= 8 and Og <= 4)
            if vnni and simd and exact and gemm_shape:
                assert prep.route == "vnni_gemm", what
            if vnni and simd and dw and not variant.get("float_comp") and not variant.get("kw_major_pairs"):
                assert prep.route == (("dw_vnni" if dw_vnni else "dw512_pairs") if s["KH"] * s["KW"] <= 64
                                      else "dw512"), what
    if vnni and exact:
        assert {"vnni_gemm", "dw_vnni", "dw512_pairs", "dw512"} <= routes


@pytest.mark.parametrize("out_scale", [1e-20, 2e-4, 1e4])
def test_fast_equals_reference_extreme_scales(out_scale):
    """Pre-rounding values far past 255 (and past 2^31, where vcvtps2dq gives 0x80000000),
    and values that all round to 0: the SIMD routes clamp as the reference loop does."""
    from qref import _core

    r = np.random.default_rng(11)
    for i, sh in enumerate([dict(C=16, O=40, KH=3, KW=3, H=7, W=7, padding=1),
                            dict(C=48, O=48, KH=3, KW=3, H=7, W=7, padding=1, groups=48)]):
        for relu in (False, True):
            x = r.integers(0, 256, (2, sh["H"], sh["W"], sh["C"]), dtype=np.uint8)
            w = r.integers(-127, 128, (sh["O"], 3, 3, sh["C"] // sh.get("groups", 1)), dtype=np.int8)
            bias = r.normal(0, 100, sh["O"]).astype(np.float32)
            args = (x, w, bias, (1, 1), (1, 1), (1, 1), sh.get("groups", 1), 0.05, int(r.integers(0, 256)),
                    np.full(sh["O"], 0.01), True, out_scale, int(r.integers(0, 256)), relu)
            ref = _core.onednn_conv2d_nhwc(*args, False, False, False, 1, intermediates=True)[0]
            fast = _core.onednn_conv2d_nhwc(*args, False, False, False, 1)
            assert_same(fast, ref, f"shape {i} relu={relu} out_scale={out_scale}")
            for dw_vnni in (True, False):
                _core.onednn_set_dw_vnni(dw_vnni)
                try:
                    prep = _core.onednn_conv2d_prepare(*args, False, False, False)
                finally:
                    _core.onednn_set_dw_vnni(True)
                what = f"shape {i} relu={relu} out_scale={out_scale} route={prep.route}"
                assert_same(_core.conv2d_run(prep, x, 1), ref, what + " prepared")
            if out_scale == 1e-20:  # both clamps exercised (relu: nothing below the zero point)
                assert (ref == 255).any() and (relu or (ref == 0).any()), what


@pytest.mark.parametrize("groups", [1, 2])
def test_prepared_conv_on_zp_window_equals_deconvolution(groups):
    """The call the transposed bridge can use (qref.onednn.prepare_conv2d on an input window
    whose padding holds a_zp, kernel flipped, padding 0): oneDNN's deconvolution (reference
    loop) gives the same bytes, since a tap holding a_zp adds (a_zp - a_zp) * w = 0 to the
    compensated int32 (stride 1 here: a plain flip; the bridge's phases generalise it)."""
    from qref import _core

    r = np.random.default_rng(21 + groups)
    N, C, O, H, W, K, pad = 2, 24, 24, 7, 6, 3, 1
    Cg = C // groups
    x = r.integers(0, 256, (N, H, W, C), dtype=np.uint8)
    w2 = r.integers(-127, 128, (O, K, K, Cg), dtype=np.int8)  # [O][KH][KW][Cg], deconvolution layout
    bias = r.normal(0, 2, O).astype(np.float32)
    a_s, a_zp, w_s, o_s, o_zp = 0.02, int(r.integers(0, 256)), 0.004, 0.3, int(r.integers(0, 256))
    ref = _core.onednn_conv_transpose2d_nhwc(x, w2, bias, (1, 1), (pad, pad), (0, 0), (1, 1), groups, a_s, a_zp,
                                             np.array([w_s]), False, o_s, o_zp, False, False, False, False, 1)
    P = K - 1 - pad
    win = np.full((N, H + 2 * P, W + 2 * P, C), a_zp, np.uint8)
    win[:, P:P + H, P:P + W] = x
    v = np.ascontiguousarray(w2[:, ::-1, ::-1, :])
    plan = onednn.OnednnPlan("vnni", "brg_deconv:avx512_core_vnni", False, False, False, True)
    prep = onednn.prepare_conv2d(win.shape, v, bias, (1, 1), (0, 0), (1, 1), groups, a_s, a_zp, np.array([w_s]),
                                 False, o_s, o_zp, False, plan)
    assert_same(_core.conv2d_run(prep, win, 1), ref, f"zp window route={prep.route}")
    if "avx512vnni" in _core.kernels():
        assert prep.route == "vnni_gemm"


# ----------------------------------------------------------------------------- transposed (oneDNN deconvolution)


def _transposed_case(IC, OC, g, seed, tie=False):
    r = np.random.default_rng(seed)
    wmax = 3 if tie else 127
    w = torch.from_numpy(r.integers(-wmax, wmax + 1, (IC, OC // g, 3, 3)).astype(np.int8))
    a_s = float(r.choice(_A_SCALES))
    o_s = float(r.choice(_O_SCALES)) if tie else 0.079
    w_s = float(np.float32(o_s * 2.0 ** -int(r.integers(4, 7)) / a_s)) if tie else 0.003
    qw = torch._make_per_tensor_quantized_tensor(w, w_s, 0)
    qx = torch._make_per_tensor_quantized_tensor(
        torch.from_numpy(r.integers(0, 256, (2, IC, 9, 8)).astype(np.uint8)), a_s, int(r.integers(0, 256)))
    bias = torch.from_numpy((np.float32(o_s) * r.integers(-40, 40, OC).astype(np.float32)) if tie else
                            r.normal(0, 1, OC).astype(np.float32))
    return qx, qw, bias, o_s, int(r.integers(0, 256))


def _torch_transposed(qx, qw, bias, o_s, o_zp, g, engine):
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        pp = torch.ops.quantized.conv_transpose2d_prepack(qw, bias, [2, 2], [1, 1], [0, 0], [1, 1], g)
        return torch.ops.quantized.conv_transpose2d(qx, pp, o_s, o_zp)
    finally:
        torch.backends.quantized.engine = prev


@pytest.mark.parametrize("engine", ["x86", "onednn"])
def test_transposed_equal_channels_vs_torch(engine):
    """IC == OC: oneDNN's deconvolution = the conv formula over the input pixels that reach each output."""
    cls = _skip_unless_host_class()
    if cls != "vnni":
        pytest.skip(f"transposed oneDNN is reproduced for the vnni class only (host class {cls})")
    for i, (IC, g) in enumerate([(32, 1), (16, 1), (16, 4), (24, 24)]):
        for tie in (False, True):
            qx, qw, bias, o_s, o_zp = _transposed_case(IC, IC, g, seed=i, tie=tie)
            t = _torch_transposed(qx, qw, bias, o_s, o_zp, g, engine)
            q = onednn.conv_transpose2d(qx, qw, bias, stride=2, padding=1, groups=g, output_scale=o_s,
                                        output_zero_point=o_zp)
            assert_same(q.int_repr().numpy(), t.int_repr().numpy(), f"transposed IC=OC={IC} g={g} tie={tie}")


def test_transposed_unequal_channels_torch_is_wrong():
    """docs/numerics.md §6.5: with IC != OC torch's x86 transposed conv is wrong. qref's oneDNN formula stays
    within one quantum of the float reference; torch is off by many quanta."""
    cls = _skip_unless_host_class()
    if cls != "vnni":
        pytest.skip(f"transposed oneDNN is reproduced for the vnni class only (host class {cls})")
    for IC, OC in [(16, 32), (32, 16)]:
        assert onednn.transposed_defect(IC, OC) and onednn.transposed_defect(IC, IC) is None
        qx, qw, bias, o_s, o_zp = _transposed_case(IC, OC, 1, seed=IC)
        t = _torch_transposed(qx, qw, bias, o_s, o_zp, 1, "x86").int_repr().numpy().astype(int)
        q = onednn.conv_transpose2d(qx, qw, bias, stride=2, padding=1, output_scale=o_s,
                                    output_zero_point=o_zp).int_repr().numpy().astype(int)
        ref = torch.nn.functional.conv_transpose2d(qx.dequantize(), qw.dequantize(), bias, stride=2, padding=1)
        ref_q = torch.quantize_per_tensor(ref, o_s, o_zp, torch.quint8).int_repr().numpy().astype(int)
        assert np.abs(q - ref_q).max() <= 1
        assert np.abs(t - ref_q).max() > 20 and (t != q).mean() > 0.2


def test_transposed_refusals():
    qx, qw, bias, o_s, o_zp = _transposed_case(16, 16, 1, seed=0)
    with pytest.raises(ValueError, match="output_padding"):
        onednn.conv_transpose2d(qx, qw, bias, stride=2, padding=1, output_padding=1, output_scale=o_s,
                                output_zero_point=o_zp)
    for isa in ("avx2", "avx512_core"):
        with pytest.raises(qref.OneDNNNotSupportedError, match="deconvolution"):
            onednn.conv_transpose2d(qx, qw, bias, stride=2, padding=1, output_scale=o_s, output_zero_point=o_zp,
                                    isa=isa)


# ----------------------------------------------------------------------------- emulated lower classes


def _worker(inp: str, out: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import torch  # noqa: F401  (after ONEDNN_MAX_CPU_ISA is set)

    with open(inp) as f:
        specs = json.load(f)
    arrays, info = {}, []
    for i, s in enumerate(specs):
        s = spec(**s)
        b = build_case(s)
        arrays[f"t{i}"] = torch_engine_conv(s, b, "onednn")
        try:
            arrays[f"q{i}"], it = qref_engine_conv(s, b, "onednn", return_intermediates=True)
            info.append("ok " + it.plan.kernel)
        except qref.OneDNNNotSupportedError as e:
            arrays[f"q{i}"] = np.zeros(0, np.uint8)
            info.append(f"refused: {e}")
    np.savez(out, meta=json.dumps(dict(info=info, isa=str(onednn.onednn_isa()))), **arrays)


def run_emulated(specs: list[dict], onednn_max_isa: str) -> tuple[list, str]:
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "s.json"), os.path.join(d, "o.npz")
        with open(inp, "w") as f:
            json.dump(specs, f)
        env = dict(os.environ, ONEDNN_MAX_CPU_ISA=onednn_max_isa, ONEDNN_VERBOSE="1")
        r = subprocess.run([sys.executable, os.path.abspath(__file__), inp, out], env=env, capture_output=True,
                           text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"worker failed:\n{r.stdout}\n{r.stderr}")
        z = np.load(out)
        meta = json.loads(str(z["meta"]))
        # The oneDNN convolution each case ran, in order (one torch conv per case).
        kernels = [ln.split(",")[6] for ln in r.stdout.splitlines() if ln.startswith("onednn_verbose")
                   and ",exec,cpu,convolution," in ln]
        assert len(kernels) == len(specs), f"expected {len(specs)} oneDNN convolutions, verbose shows {len(kernels)}"
        return [(z[f"t{i}"], z[f"q{i}"], meta["info"][i], kernels[i]) for i in range(len(specs))], meta["isa"]


_EMULATED = {"AVX512_CORE": "avx512_core", "AVX2": "avx2", "AVX512_CORE_VNNI": "vnni", "SSE41": "sse41"}


def _check_emulated(env_isa: str, specs: list[dict]) -> None:
    want = _EMULATED[env_isa]
    host = onednn.host_class()
    if onednn._ORDER.get(host, -1) < onednn._ORDER[want]:
        pytest.skip(f"host oneDNN class {host} cannot emulate {want}")
    res, isa_text = run_emulated(specs, env_isa)
    assert f"oneDNN CPU class: {want}" in isa_text
    bad = []
    for s, (t, q, info, kernel) in zip(specs, res):
        cg1 = s["C"] // s["groups"] == 1 and s["O"] // s["groups"] > 1
        if want == "avx512_core" and cg1:
            # one input channel per group, not depthwise: oneDNN picks brg_conv_fwd or jit_int8 by
            # shape with different tap pairings; qref refuses by name rather than guess.
            assert info.startswith("refused") and "avx512_core" in info, f"{case_id(s)}: {info}"
            continue
        assert info.startswith("ok"), f"{case_id(s)}: {info}"
        # qref's kernel rule names the family oneDNN really chose (ONEDNN_VERBOSE).
        families, isa_part = info[3:].split(" (")[0].split(":")
        v_family, v_isa = kernel.split(":") if ":" in kernel else (kernel, "")
        if v_family not in families.split("/") or (v_isa and v_isa != isa_part):
            bad.append(f"{case_id(s)}: oneDNN ran {kernel}, qref's rule says {info[3:]}")
        if not np.array_equal(q, t):
            bad.append(f"{case_id(s)}: {int((q != t).sum())} of {q.size} differ")
    assert not bad, f"ONEDNN_MAX_CPU_ISA={env_isa}:\n" + "\n".join(bad)


@pytest.mark.parametrize("env_isa", ["AVX512_CORE", "AVX2", "AVX512_CORE_VNNI", "SSE41"])
def test_emulated_class_vs_torch(env_isa):
    _check_emulated(env_isa, make_specs(SHAPES + CG1_SHAPES, 2))


@pytest.mark.slow
@pytest.mark.parametrize("env_isa", ["AVX512_CORE", "AVX2", "AVX512_CORE_VNNI", "SSE41"])
def test_emulated_class_vs_torch_long(env_isa):
    r = np.random.default_rng(77)
    rand = []
    for i in range(200):
        sh = _random_shape(r)
        d = sh.get("dilation", 1)
        if d * (sh["KH"] - 1) + 1 > sh["H"] + 2 * sh["padding"] or d * (sh["KW"] - 1) + 1 > sh["W"] + 2 * sh["padding"]:
            continue
        rand.append(spec(**sh, N=int(r.integers(1, 3)), seed=50_000 + i, per_channel=bool(r.integers(0, 2)),
                         relu=bool(r.integers(0, 2)), a_zp=int(r.integers(0, 256)), tie=bool(r.integers(0, 3))))
    _check_emulated(env_isa, make_specs(SHAPES + CG1_SHAPES, 12) + rand)


def measure(seeds: int) -> None:
    """Mismatch counts of qref's model and of single-choice alternatives against torch for this
    process's oneDNN class (docs/onednn.md): ``python tests/test_onednn.py --measure 40``."""
    extra = [dict(C=36, O=40, KH=3, KW=3, H=10, W=10, groups=2),
             dict(C=12, O=46, KH=5, KW=5, H=10, W=10, padding=1, groups=2)]
    specs = make_specs(SHAPES + CG1_SHAPES + extra, seeds)
    n, kinds = 0, {}
    mism = {"qref": 0, "other_scale_order": 0, "other_saturation": 0, "other_dst": 0}
    for s in specs:
        b = build_case(s)
        t = torch_engine_conv(s, b, "onednn")
        pl = onednn.plan(b["w"].shape, s["groups"], s["stride"], s["padding"], s["dilation"])
        kinds[pl.kernel] = kinds.get(pl.kernel, 0) + t.size
        n += t.size
        mism["qref"] += int((qref_engine_conv(s, b, "onednn") != t).sum())
        mism["other_scale_order"] += int((_variant_out(s, b, combined=not pl.combined_scale) != t).sum())
        mism["other_saturation"] += int((_variant_out(s, b, saturate=not pl.saturates) != t).sum())
        mism["other_dst"] += int((_variant_out(s, b, divide_dst=not pl.divide_dst) != t).sum())
    print(f"class={onednn.onednn_isa().effective} cases={len(specs)} outputs={n} mismatches={mism}")
    print("   outputs per kernel rule:", kinds)


if __name__ == "__main__":
    if sys.argv[1] == "--measure":
        import warnings

        warnings.filterwarnings("ignore")
        measure(int(sys.argv[2]))
    else:
        _worker(sys.argv[1], sys.argv[2])
