"""qref.conv1d and qref.conv3d vs torch's fbgemm (docs/numerics.md §2.4, §3, §4), both ISA settings,
and torch's depthwise-3D row-sum defect (docs/numerics.md §4.2)."""

from __future__ import annotations

import numpy as np
import pytest

import oracle_nd as on

torch = pytest.importorskip("torch")

import qref  # noqa: E402

# conv1d: torch runs it as conv2d on (N, C, 1, L) with kernel (1, k): pointwise or im2col only.
CONV1D = [
    on.spec("conv1d", N=2, C=8, O=16, spatial=[20], k=[3], padding=[1]),
    on.spec("conv1d", N=2, C=6, O=4, spatial=[19], k=[5], stride=[2], padding=[2], dilation=[2], groups=2,
            per_channel=False, w_zp=3),
    on.spec("conv1d", N=1, C=8, O=8, spatial=[17], k=[1]),  # pointwise
    on.spec("conv1d", N=2, C=16, O=16, spatial=[12], k=[3], padding=[1], groups=16, w_zp="random", a_zp=99),
    on.spec("conv1d", N=3, C=24, O=12, spatial=[9], k=[3], act="high", weight="extreme", relu=True),
    on.spec("conv1d", N=1, C=3, O=5, spatial=[4], k=[4], bias=False, a_zp=255),
]
# conv3d: every fbgemm 3D path (labels in the ids come from qref's plan, checked below).
CONV3D = [
    (on.spec("conv3d", N=2, C=8, O=16, spatial=[5, 6, 7], k=[3, 3, 3], padding=[1, 1, 1]), "im2col"),
    (on.spec("conv3d", N=1, C=6, O=4, spatial=[6, 7, 5], k=[2, 3, 1], stride=[2, 1, 1], padding=[0, 1, 0],
             dilation=[1, 2, 1], groups=2, per_channel=False, w_zp=-2, act="high", weight="extreme"), "im2col"),
    (on.spec("conv3d", N=2, C=16, O=16, spatial=[4, 6, 6], k=[3, 3, 3], padding=[1, 1, 1], groups=16,
             act="high", weight="extreme"), "depthwise"),
    (on.spec("conv3d", N=1, C=16, O=32, spatial=[7, 8, 8], k=[3, 5, 5], stride=[2, 2, 2], padding=[1, 2, 2],
             groups=16, per_channel=False, w_zp=3, a_zp=7), "depthwise"),
    (on.spec("conv3d", N=1, C=8, O=8, spatial=[9, 5, 5], k=[7, 3, 3], padding=[3, 1, 1], groups=8,
             w_zp="random", relu=True), "depthwise"),
    (on.spec("conv3d", N=1, C=40, O=40, spatial=[3, 6, 5], k=[3, 5, 5], stride=[1, 2, 1], padding=[1, 2, 2],
             groups=40, w_zp="random", a_zp=250, act="high", weight="extreme"), "depthwise"),
    # 56 channels: the AVX2 accumulation's 32-, 16- and 1-channel blocks (fbgemm/kernels/conv_nd_avx2.cc)
    (on.spec("conv3d", N=2, C=56, O=56, spatial=[4, 5, 6], k=[3, 3, 3], padding=[1, 1, 1], groups=56,
             w_zp="random", a_zp=31, act="high", weight="extreme"), "depthwise"),
    (on.spec("conv3d", N=2, C=32, O=32, spatial=[4, 6, 6], k=[3, 3, 3], stride=[1, 2, 2], padding=[1, 1, 1],
             groups=8, act="high", weight="extreme"), "groupwise"),
    (on.spec("conv3d", N=1, C=16, O=16, spatial=[3, 5, 5], k=[3, 3, 3], stride=[2, 1, 1], padding=[1, 1, 1],
             groups=1, per_channel=False, w_zp=5), "groupwise"),  # groups=1, C=16 -> groupwise
    (on.spec("conv3d", N=2, C=12, O=8, spatial=[3, 4, 5], k=[1, 1, 1], w_zp="random", a_zp=200), "pointwise"),
    (on.spec("conv3d", N=1, C=24, O=16, spatial=[4, 4, 4], k=[1, 1, 1], stride=[2, 2, 2], act="high",
             weight="extreme"), "im2col"),
]
CONV3D_IDS = [f"{path}-{on.case_id(s)}" for s, path in CONV3D]


@pytest.mark.parametrize("s", CONV1D, ids=[on.case_id(s) for s in CONV1D])
def test_conv1d_matches_torch_default_isa(s):
    b = on.build(s)
    on.assert_same(on.qref_run(s, b), on.torch_run(s, b), on.case_id(s))


@pytest.mark.parametrize("s,path", CONV3D, ids=CONV3D_IDS)
def test_conv3d_matches_torch_default_isa(s, path):
    assert f"fbgemm {path} path" in on.plan(s), on.plan(s)
    b = on.build(s)
    on.assert_same(on.qref_run(s, b), on.torch_run(s, b), on.case_id(s))


def test_conv1d_conv3d_match_torch_fbgemm_avx2_subprocess():
    """FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (GEMM paths saturate; depthwise always; groupwise follows
    the CPU). qref(isa="auto") in that process matches torch there."""
    on.check_avx2_subprocess(CONV1D + [s for s, _ in CONV3D])


def test_conv3d_depthwise_saturates_on_every_isa():
    """The depthwise 3D JIT is AVX2-only: tap pairs saturate even under isa='vnni'."""
    s, _ = CONV3D[2]
    b = on.build(s)
    t = on.torch_run(s, b)
    on.assert_same(on.qref_run(s, b, isa="vnni"), t, "depthwise 3D isa=vnni")
    on.assert_same(on.qref_run(s, b, isa="avx2"), t, "depthwise 3D isa=avx2")
    out, it = on.qref_run(s, b, return_intermediates=True)
    assert it.plan.saturates and it.plan.path == "depthwise"
    # The exact sum of products differs from the saturated one somewhere (the case is built for it).
    x = b["x"].astype(np.int64)
    w = b["w"].astype(np.int64)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1), (1, 1)), constant_values=b["a_zp"])
    exact = np.zeros_like(it.acc, dtype=np.int64)
    for kd in range(3):
        for kh in range(3):
            for kw in range(3):
                exact += xp[:, :, kd:kd + 4, kh:kh + 6, kw:kw + 6] * w[None, :, 0, kd, kh, kw, None, None, None]
    assert np.any(exact != it.acc)


@pytest.mark.parametrize("k,per_channel", [((7, 7, 7), False), ((7, 7, 7), True), ((5, 7, 7), False)])
def test_conv3d_depthwise_rowsum_defect(k, per_channel):
    """docs/numerics.md §4.2: fbgemm's depthwise 3D kernel sums the activations of each receptive field with
    vpaddsw (int16 saturating). With > 128 taps and large activations the sum passes 32767, and a
    weight zero point != 0 multiplies the clipped sum into the output: torch is wrong. qref's
    default is the correct value, reproduce_defects=True gives torch's bytes exactly, and the
    outputs differ exactly where the exact row sum exceeds 32767 (for channels with w_zp != 0)."""
    C = 24  # one 16-channel SIMD block and an 8-channel remainder in the fast loop
    s = on.spec("conv3d", N=1, C=C, O=C, spatial=[8, 8, 8], k=list(k), padding=[(v - 1) // 2 for v in k],
                groups=C, per_channel=per_channel, w_zp="random" if per_channel else 5, act="high",
                weight="small", a_zp=230, seed=11)
    b = on.build(s)
    t = on.torch_run(s, b)
    correct = on.qref_run(s, b)
    reproduced = on.qref_run(s, b, reproduce_defects=True)
    on.assert_same(reproduced, t, "reproduce_defects=True vs torch")
    # where the exact row sum exceeds 32767 and the weight zero point is not 0
    pad = [(v - 1) // 2 for v in k]
    xp = np.pad(b["x"].astype(np.int64), ((0, 0), (0, 0)) + tuple((p, p) for p in pad), constant_values=b["a_zp"])
    rowsum = np.zeros(t.shape, np.int64)
    for kd in range(k[0]):
        for kh in range(k[1]):
            for kw in range(k[2]):
                rowsum += xp[:, :, kd:kd + 8, kh:kh + 8, kw:kw + 8]
    wzp = np.broadcast_to(b["w_zp"].reshape(-1, 1, 1, 1) if per_channel else b["w_zp"][0], t.shape[1:])
    affected = (rowsum > 32767) & (wzp != 0)[None]
    assert affected.any()
    differs = correct != t
    assert not np.any(differs & ~affected), "torch differs from the correct value outside the predicted set"
    assert differs.sum() > 0.5 * affected.sum()
    # qref reports it
    m = _conv3d_module(b, s)
    p = qref.from_torch(m)
    reason = qref.known_torch_defect(p, b["x"].shape)
    assert reason is not None and "vpaddsw" in reason
    # The same layer with w_zp == 0 everywhere is not affected, and known_torch_defect says so.
    s0 = dict(s, w_zp=0)
    b0 = on.build(s0)
    on.assert_same(on.qref_run(s0, b0), on.torch_run(s0, b0), "w_zp 0: no defect")
    assert qref.known_torch_defect(qref.from_torch(_conv3d_module(b0, s0)), b0["x"].shape) is None


def test_conv3d_depthwise_small_input_defect():
    """torch's fbgemm depthwise 3D kernel reads out of bounds when an input dim is smaller than the
    padding of that dim (here depth 1 with a 7x3x3 kernel, pad 3): the process usually dies with
    SIGSEGV (E: 3 of 3 runs on the development host). qref computes the layer, and known_torch_defect says why torch
    cannot be trusted for it. torch runs in subprocesses so the crash cannot take pytest down."""
    import json
    import subprocess
    import sys

    s = on.spec("conv3d", N=1, C=16, O=16, spatial=[1, 2, 4], k=[7, 3, 3], padding=[3, 1, 1], groups=16,
                per_channel=False)
    assert "depthwise" in on.plan(s)
    b = on.build(s)
    q = on.qref_run(s, b)
    code = ("import sys, json, warnings; warnings.filterwarnings('ignore'); sys.path.insert(0, sys.argv[2]); "
            "import oracle_nd as on, numpy as np; s = json.loads(sys.argv[1]); "
            "np.save(sys.stdout.buffer, on.torch_run(s))")
    outcomes = []
    for _ in range(2):
        r = subprocess.run([sys.executable, "-c", code, json.dumps(s), on.HERE], capture_output=True, timeout=300)
        if r.returncode != 0:
            outcomes.append(f"died ({r.returncode})")
        else:
            import io

            t = np.load(io.BytesIO(r.stdout))
            outcomes.append("correct" if np.array_equal(t, q) else "wrong")
    assert any(o != "correct" for o in outcomes), outcomes
    m = _conv3d_module(b, s)
    reason = qref.known_torch_defect(qref.from_torch(m), b["x"].shape)
    assert reason is not None and "smaller than" in reason
    # the same layer on an input at least as large as the padding is fine and not flagged
    assert qref.known_torch_defect(qref.from_torch(m), (1, 16, 3, 2, 4)) is None


def _conv3d_module(b, s):
    import torch.ao.nn.quantized as nnq

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        _, qw, bias = on._torch_operands(b)
        m = nnq.Conv3d(s["C"], s["O"], tuple(s["k"]), stride=tuple(s["stride"]), padding=tuple(s["padding"]),
                       dilation=tuple(s["dilation"]), groups=s["groups"])
        m.set_weight_bias(qw, bias)
        m.scale, m.zero_point = b["out_scale"], b["out_zp"]
        return m
    finally:
        torch.backends.quantized.engine = prev


def _qw(g, shape, per_channel, zp):
    wf = torch.randn(shape, generator=g)
    if per_channel:
        return torch.quantize_per_channel(wf, torch.rand(shape[0], generator=g).double() * 0.02 + 0.002,
                                          torch.full((shape[0],), zp), 0, torch.qint8)
    return torch.quantize_per_tensor(wf, 0.013, zp, torch.qint8)


@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_from_torch_conv1d_conv3d(engine):
    """Modules converted under either engine: qref reproduces those that run fbgemm, and with
    oneDNN's arithmetic (engine "onednn", by probe) those the x86 engine sent to oneDNN."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    from qref.bridge_nd import packed_engine_nd

    g = torch.Generator().manual_seed(5)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        layers = [
            (nnq.Conv1d(8, 12, 3, padding=1), (12, 8, 3), True, 0, (2, 8, 15)),
            (nniq.ConvReLU1d(8, 8, 3, padding=1, padding_mode="reflect"), (8, 8, 3), False, 2, (2, 8, 11)),
            (nnq.Conv3d(8, 8, 3, padding=1), (8, 8, 3, 3, 3), True, 0, (1, 8, 4, 5, 6)),
            (nniq.ConvReLU3d(16, 16, 3, padding=1, groups=16), (16, 1, 3, 3, 3), False, 3, (2, 16, 4, 5, 5)),
            (nnq.Conv3d(16, 16, (3, 1, 1), stride=(2, 1, 1)), (16, 16, 3, 1, 1), True, 1, (1, 16, 5, 3, 3)),
        ]
        for m, wshape, pc, zp, xshape in layers:
            m.set_weight_bias(_qw(g, wshape, pc, zp), torch.randn(wshape[0], generator=g))
            m.scale, m.zero_point = 0.31, 64
            x = torch.quantize_per_tensor(torch.randn(xshape, generator=g) * 2, 0.05, 70, torch.quint8)
            name = type(m).__name__
            p = qref.from_torch(m)
            # oneDNN-packed (x86 engine, VNNI host, symmetric weights): oneDNN's arithmetic
            assert p.engine == ("onednn" if packed_engine_nd(m) == "onednn" else "fbgemm")
            assert p.engine == "fbgemm" or (engine == "x86" and zp == 0)
            assert p.relu == ("ReLU" in name)
            on.assert_same(p(x).int_repr().numpy(), m(x).int_repr().numpy(), f"{engine} {name}")
            assert p.known_torch_defect(x.shape) is None
    finally:
        torch.backends.quantized.engine = prev


def test_conv1d_conv3d_numpy_io_and_errors():
    s = on.spec("conv3d", N=1, C=4, O=4, spatial=[3, 4, 5], k=[1, 2, 3])
    b = on.build(s)
    out = on.qref_run(s, b)
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == (1, 4, 3, 3, 3)
    kw = dict(input_scale=0.1, input_zero_point=0, weight_scale=0.1, output_scale=0.1, output_zero_point=0)
    x5 = np.zeros((1, 4, 3, 4, 5), np.uint8)
    with pytest.raises(ValueError, match=r"conv3d: input.shape=\(4, 3, 4, 5\) has 4 dimensions \(must be 5-D"):
        qref.conv3d(x5[0], b["w"], **kw)
    with pytest.raises(ValueError, match="conv3d: .*groups=3"):
        qref.conv3d(x5, b["w"], groups=3, **kw)
    with pytest.raises(ValueError, match="conv3d: kernel size 3 with dilation 2 spans 5"):
        qref.conv3d(x5[:, :, :, :, :3], b["w"], dilation=2, **kw)
    with pytest.raises(ValueError, match=r"conv3d: stride=\(1, 2\) must be an int or a tuple of 3 ints"):
        qref.conv3d(x5, b["w"], stride=(1, 2), **kw)
    with pytest.raises(TypeError, match=r"conv3d: reproduce_defects=1 has type int \(must be a bool\)"):
        qref.conv3d(x5, b["w"], reproduce_defects=1, **kw)
    with pytest.raises(ValueError, match="conv1d: input.shape="):
        qref.conv1d(x5, b["w"], **kw)
    with pytest.raises(qref.OneDNNNotSupportedError, match="symmetric weights"):
        qref.conv3d(x5, b["w"], engine="onednn", **dict(kw, weight_zero_point=2))
    with pytest.raises(ValueError, match="return_intermediates=True is not available"):
        qref.conv3d(x5, b["w"], engine="onednn", return_intermediates=True, **kw)


def _random_spec(rng, kind: str, i: int) -> dict:
    nd = 1 if kind == "conv1d" else 3
    G = int(rng.choice([1, 1, 2, 4, 8, 16]))
    Cg = int(rng.choice([1, 2, 3, 4, 8])) if G < 16 else 1
    C = G * Cg
    O = G * int(rng.choice([1, 2, 3, 4])) if G < 16 else G * int(rng.choice([1, 2]))
    k = [int(rng.choice([1, 2, 3, 3, 5])) for _ in range(nd)]
    if nd == 3 and rng.integers(0, 3) == 0:  # bias towards fbgemm's fast paths
        k = [int(rng.choice([3, 5, 7])), 3, 3] if rng.integers(0, 2) else [3, 3, 3]
    pad = [(v - 1) // 2 if rng.integers(0, 3) else int(rng.integers(0, 2)) for v in k]
    stride = [int(rng.choice([1, 1, 2])) for _ in range(nd)]
    dil = [1 if rng.integers(0, 4) else 2 for _ in range(nd)]
    spatial = [max(d * (kk - 1) + 1 - 2 * p, int(rng.integers(1, 8 if nd == 3 else 20)))
               for kk, p, d in zip(k, pad, dil)]
    s = on.spec(kind, N=int(rng.integers(1, 3)), C=C, O=O, spatial=spatial, k=k, stride=stride, padding=pad,
                dilation=dil, groups=G, per_channel=bool(rng.integers(0, 2)),
                w_zp=["random", 0, 0][int(rng.integers(0, 3))], a_zp=int(rng.integers(0, 256)),
                relu=bool(rng.integers(0, 2)), bias=bool(rng.integers(0, 4)),
                act=["full", "high", "reduce"][int(rng.integers(0, 3))],
                weight=["full", "extreme", "small"][int(rng.integers(0, 3))], seed=i)
    if kind == "conv3d" and "depthwise" in on.plan(s):
        # torch's depthwise 3D kernel crashes when an input dim is smaller than its padding
        # (test_conv3d_depthwise_small_input_defect); keep the sweep to inputs torch can run.
        s["spatial"] = [max(n, p) for n, p in zip(s["spatial"], s["padding"])]
    return s


def test_conv3d_kernels_agree(kernel):
    """conv3d runs on the conv2d core (depth taps gathered into channels) for every kernel but
    "scalar", which runs the normative N-d reference: same bytes for both ISA semantics, including
    odd channel counts per group (the reordering is used only where the pairs survive it)."""
    rng = np.random.default_rng(606)
    specs = [s for s, _ in CONV3D] + [_random_spec(rng, "conv3d", i) for i in range(24)]
    for s in specs:
        b = on.build(s)
        for isa in ("avx2", "vnni"):
            ref = on.qref_run(s, b, isa=isa, kernel="scalar")
            on.assert_same(on.qref_run(s, b, isa=isa, kernel=kernel), ref, f"{on.case_id(s)} {kernel} {isa}")


@pytest.mark.parametrize("kind", ["conv1d", "conv3d"])
def test_random_sweep_small(kind):
    """A few seeded random configurations by default (the slow sweep below runs many)."""
    rng = np.random.default_rng(77 if kind == "conv1d" else 78)
    for i in range(8):
        s = _random_spec(rng, kind, i)
        b = on.build(s)
        on.assert_same(on.qref_run(s, b), on.torch_run(s, b), f"seed {i}: {on.case_id(s)} [{on.plan(s)}]")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["conv1d", "conv3d"])
def test_random_sweep(kind, request):
    n = request.config.getoption("--sweep") or 200
    rng = np.random.default_rng(4321 if kind == "conv1d" else 4322)
    specs = [_random_spec(rng, kind, i) for i in range(n)]
    on.check_sweep(specs)


def test_conv3d_depthwise_fused_bias_tie_every_kernel():
    """The depthwise-3D AVX2 requantization (fbgemm/kernels/conv_nd_avx2.cc) fuses a per-tensor bias with
    vfmadd like requant.h: at a constructed tie (raw = -55691, bias 0.59146, S = 0.02 * 0.003,
    output scale 0.5) torch gives the fused value 59 (unfused: 58), and every kernel gives torch's
    bytes on every output. 16 channels: the 16-channel accumulation and the 8-channel epilogue."""
    C = 16
    x = np.full((1, C, 3, 3, 3), 255, np.uint8)
    x[:, :, 0, 0, 0] = 101
    w = np.full((C, 1, 3, 3, 3), -8, np.int8)
    wf = w.reshape(C, 27)
    wf[:, 0] = -1
    wf[:, 1:11] = -9  # tap 0: 101 * -1; taps 1..26: 255 * (-90 - 128) -> raw -55691 at the centre
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.02, 0)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), 0.003, 0)
    b = torch.full((C,), 0.5914599299430847, dtype=torch.float32)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        pp = torch.ops.quantized.conv3d_prepack(qw, b, [1, 1, 1], [1, 1, 1], [1, 1, 1], C)
        t = torch.ops.quantized.conv3d(qx, pp, 0.5, 64).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = prev
    assert (t[:, :, 1, 1, 1] == 59).all()
    for kernel in qref.kernels():
        q, it = qref.conv3d(qx, qw, b, padding=1, groups=C, output_scale=0.5, output_zero_point=64, kernel=kernel,
                            return_intermediates=True)
        assert it.plan.path == "depthwise" and (it.raw[:, :, 1, 1, 1] == -55691).all()
        on.assert_same(q.int_repr().numpy(), t, f"kernel {kernel}")
        on.assert_same(qref.conv3d(qx, qw, b, padding=1, groups=C, output_scale=0.5, output_zero_point=64,
                                   kernel=kernel).int_repr().numpy(), t, f"kernel {kernel} (fast loop)")


def test_conv1d_conv3d_params_cache(kernel):
    for s in CONV1D + [s for s, _ in CONV3D]:
        on.check_params_cache(s, kernel)
    # a channels_last (fbgemm output) input and a changed input shape make new entries
    s = CONV3D[0][0]
    b = on.build(s)
    p = on.params_for(s, b)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"]), b["a_scale"], b["a_zp"])
    for x in (qx, qx.contiguous(memory_format=torch.channels_last_3d), qx[:, :, 1:], qx[:, :, 1:]):
        s2 = dict(s, spatial=list(x.shape[2:]))
        b2 = dict(b, x=np.ascontiguousarray(x.int_repr().numpy()))
        on.assert_same(p(x, kernel=kernel).int_repr().numpy(), on.torch_run(s2, b2), f"{x.shape} {x.stride()}")
