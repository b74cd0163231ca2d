"""qref.conv_transpose1d/2d/3d vs torch's fbgemm: the transposed im2col path (docs/numerics.md §4.4) and the
direct transposed path (§4.5), both ISA settings, and torch's direct-path defects."""

from __future__ import annotations

import numpy as np
import pytest

import oracle_nd as on

torch = pytest.importorskip("torch")

import qref  # noqa: E402
from qref import _core  # noqa: E402

IM2COL = [
    on.spec("convt2d", N=1, C=6, O=4, spatial=[5, 7], k=[3, 3], stride=[2, 2], padding=[1, 1],
            output_padding=[1, 1]),
    on.spec("convt2d", N=2, C=8, O=6, spatial=[5, 7], k=[3, 3], stride=[2, 2], padding=[1, 1], groups=2, w_zp=2,
            a_zp=40),
    on.spec("convt2d", N=2, C=4, O=4, spatial=[5, 7], k=[3, 2], stride=[2, 1], padding=[1, 0],
            output_padding=[1, 0], dilation=[1, 2]),
    on.spec("convt2d", N=1, C=6, O=6, spatial=[4, 4], k=[2, 2], stride=[1, 1], act="high", weight="extreme",
            a_zp=3),
    on.spec("convt2d", N=1, C=16, O=8, spatial=[4, 5], k=[2, 2], stride=[1, 1], padding=[1, 0], act="high",
            weight="extreme"),  # IC % 8 == 0 but padded: im2col, not direct
    on.spec("convt2d", N=2, C=16, O=16, spatial=[3, 4], k=[1, 1], w_zp=-3, bias=False),
    on.spec("convt1d", N=2, C=8, O=4, spatial=[9], k=[3], stride=[2], padding=[1], output_padding=[1]),
    on.spec("convt1d", N=1, C=16, O=16, spatial=[7], k=[2], act="high", weight="extreme", w_zp=4, a_zp=250),
    on.spec("convt1d", N=3, C=6, O=9, spatial=[5], k=[4], stride=[3], padding=[2], dilation=[2], groups=3),
    on.spec("convt3d", N=2, C=4, O=6, spatial=[3, 4, 5], k=[3, 3, 3], stride=[2, 2, 2], padding=[1, 1, 1],
            output_padding=[1, 1, 1]),
    on.spec("convt3d", N=1, C=6, O=4, spatial=[3, 4, 5], k=[2, 3, 1], stride=[1, 2, 1], padding=[0, 1, 0],
            output_padding=[0, 1, 0], dilation=[1, 1, 2], groups=2, w_zp=3, a_zp=9),
    on.spec("convt3d", N=1, C=16, O=8, spatial=[2, 3, 3], k=[2, 2, 2], act="high", weight="extreme", a_zp=200),
]
# The direct path computes image 0 only and assumes stride_h 1: single images, stride_h 1.
DIRECT = [
    on.spec("convt2d", N=1, C=8, O=8, spatial=[6, 7], k=[2, 2], per_channel=False, a_zp=17),
    on.spec("convt2d", N=1, C=16, O=8, spatial=[5, 6], k=[2, 3], stride=[1, 2], w_zp=3, a_zp=200, act="high",
            weight="extreme"),
    on.spec("convt2d", N=1, C=8, O=24, spatial=[3, 9], k=[2, 6], output_padding=[0, 0], bias=False, act="high",
            weight="extreme", a_zp=255),
    on.spec("convt2d", N=1, C=32, O=16, spatial=[4, 4], k=[2, 1], w_zp=-7, a_zp=90),
    # O = 40: the AVX2 reduction's 32-output and 8-output blocks (conv_nd_direct_tap_avx2)
    on.spec("convt2d", N=1, C=24, O=40, spatial=[5, 6], k=[2, 5], stride=[1, 2], w_zp=-5, a_zp=130, act="high",
            weight="extreme"),
]


def _ids(specs):
    return [on.case_id(s) for s in specs]


@pytest.mark.parametrize("s", IM2COL, ids=_ids(IM2COL))
def test_transposed_im2col_matches_torch(s):
    assert "im2col" in on.plan(s), on.plan(s)
    b = on.build(s)
    on.assert_same(on.qref_run(s, b), on.torch_run(s, b), on.case_id(s))


@pytest.mark.parametrize("s", DIRECT, ids=_ids(DIRECT))
def test_transposed_direct_matches_torch(s):
    plan = on.plan(s)
    assert "direct" in plan and "saturating" in plan, plan
    b = on.build(s)
    t = on.torch_run(s, b)
    on.assert_same(on.qref_run(s, b), t, on.case_id(s))
    on.assert_same(on.qref_run(s, b, isa="vnni"), t, on.case_id(s) + " isa=vnni (the direct JIT is AVX2-only)")


def _core_path(s, b, path, saturate):
    """qref's N-d reference forced onto a given path (to show which model torch follows)."""
    w = b["w"]
    IC, OCg, KH, KW = w.shape
    w_oihw = w.transpose(1, 0, 2, 3)  # groups 1
    out = _core.conv_nd_ndhwc(
        np.ascontiguousarray(b["x"].transpose(0, 2, 3, 1))[:, None],
        np.ascontiguousarray(w_oihw.transpose(0, 2, 3, 1))[:, None], b["bias"], [1] + s["stride"],
        [0] + s["padding"], [1, 1, 1], [0] + s["output_padding"], 1, True, 2, b["a_scale"], b["a_zp"],
        b["w_scale"], b["w_zp"].astype(np.int32), False, b["out_scale"], b["out_zp"], False, path, saturate, False,
        1, False)
    return np.ascontiguousarray(out[:, 0].transpose(0, 3, 1, 2))


def test_direct_path_model_is_distinguished():
    """On the direct path taps without input contribute nothing (no a_zp fill, per-position column
    offsets), so the saturating im2col model — which saturates a_zp * weight pairs there — and the
    exact model both give different bytes from torch; the direct model gives torch's."""
    s = DIRECT[2]
    b = on.build(s)
    t = on.torch_run(s, b)
    on.assert_same(_core_path(s, b, "direct", True), t, "direct model")
    assert not np.array_equal(_core_path(s, b, "im2col", True), t)
    assert not np.array_equal(_core_path(s, b, "im2col", False), t)


def test_transposed_match_torch_fbgemm_avx2_subprocess():
    on.check_avx2_subprocess(IM2COL + DIRECT)


# ----------------------------------------------------------------------------- torch's direct-path defects


def _defect_params(s, b):
    """A params object for known_torch_defect (from_torch cannot read direct-path weights)."""
    return qref.ConvTransposeParams(
        weight=b["w"], weight_scale=b["w_scale"], weight_zero_point=b["w_zp"].astype(np.int32), per_channel=False,
        bias=b["bias"], output_scale=b["out_scale"], output_zero_point=b["out_zp"], relu=False,
        module_type="ConvTranspose2d", stride=tuple(s["stride"]), padding=tuple(s["padding"]),
        dilation=tuple(s["dilation"]), output_padding=tuple(s["output_padding"]), groups=1)


def test_direct_defect_batch():
    """N > 1: fbgemm's direct transposed conv computes image 0 only; images 1.. are never written.
    qref computes every image; image 0 matches torch, the others are torch's garbage."""
    s = on.spec("convt2d", N=3, C=8, O=8, spatial=[4, 7], k=[2, 2], per_channel=False, a_zp=17)
    b = on.build(s)
    t = on.torch_run(s, b)
    q = on.qref_run(s, b)
    on.assert_same(q[:1], t[:1], "image 0")
    assert not np.array_equal(q[1:], t[1:]), "images 1.. of torch's output should be unwritten memory"
    for n in range(1, 3):  # each image alone is right in torch
        s1 = dict(s, N=1)
        b1 = dict(b, x=b["x"][n:n + 1])
        on.assert_same(q[n:n + 1], on.torch_run(s1, b1), f"image {n} alone")
    reason = qref.known_torch_defect(_defect_params(s, b), b["x"].shape)
    assert reason is not None and "image 0 only" in reason
    assert qref.known_torch_defect(_defect_params(s, b), (1,) + b["x"].shape[1:]) is None


@pytest.mark.parametrize("stride", [(2, 2), (2, 1)])
def test_direct_defect_stride_h2(stride):
    """stride_h == 2: fbgemm places input row j at output rows j + kh (its host loop and row sums
    assume stride_h == 1). Row 0 is still right; qref's default is correct, and
    reproduce_defects=True reproduces torch's bytes exactly."""
    s = on.spec("convt2d", N=1, C=8, O=8, spatial=[4, 7], k=[2, 2], stride=list(stride), per_channel=False,
                a_zp=17, w_zp=2, act="reduce", weight="small")
    b = on.build(s)
    t = on.torch_run(s, b)
    correct = on.qref_run(s, b)
    on.assert_same(on.qref_run(s, b, reproduce_defects=True), t, "reproduce_defects=True")
    on.assert_same(correct[:, :, :1], t[:, :, :1], "row 0")
    assert not np.array_equal(correct, t)
    # No pair can saturate with these operands (|a*w| <= 127*20), so the correct value is also the
    # exact im2col model of the same layer.
    on.assert_same(correct, _core_path(s, b, "im2col", False), "correct == exact model")
    reason = qref.known_torch_defect(_defect_params(s, b), b["x"].shape)
    assert reason is not None and "stride_h == 2" in reason


def test_direct_defect_changed_input_size():
    """Column offsets are computed on the first call only: a later call with another input size and
    an input zero point != 0 is wrong in torch; the same call on a fresh module is right."""
    import torch.ao.nn.quantized as nnq

    s = on.spec("convt2d", N=1, C=8, O=8, spatial=[5, 6], k=[2, 2], per_channel=False, a_zp=60)
    b = on.build(s)
    _, qw, bias = on._torch_operands(b)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        def module():
            m = nnq.ConvTranspose2d(8, 8, 2)
            m.set_weight_bias(qw, bias)
            m.scale, m.zero_point = b["out_scale"], b["out_zp"]
            return m

        x = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"]), b["a_scale"], b["a_zp"])
        x_first = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"][:, :, :3, :4].copy()),
                                                          b["a_scale"], b["a_zp"])
        m = module()
        m(x_first)
        stale = m(x).int_repr().numpy()
        fresh = module()(x).int_repr().numpy()
        # torch's module weight cannot be read back for this path (see test_direct_unpack_defect),
        # so qref runs the original weight.
        q = qref.conv_transpose2d(x, qw, bias, output_scale=b["out_scale"], output_zero_point=b["out_zp"])
        on.assert_same(q.int_repr().numpy(), fresh, "fresh module")
        assert not np.array_equal(stale, fresh)
        reason = qref.known_torch_defect(_defect_params(s, b), x.shape, first_input_shape=x_first.shape,
                                         input_zero_point=b["a_zp"])
        assert reason is not None and "first call" in reason
    finally:
        torch.backends.quantized.engine = prev


def test_direct_unpack_defect_and_from_torch():
    """torch cannot unpack a direct-path transposed conv's weights (module.weight() returns
    uninitialized memory, PackedDirectConvMatrix has no unpack), so from_torch refuses the module
    with that reason; the same module shape on the im2col path round-trips and matches."""
    import torch.ao.nn.quantized as nnq

    from qref.torch_bridge import UnsupportedModuleError

    g = torch.Generator().manual_seed(9)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        qw = torch.quantize_per_tensor(torch.randn(16, 8, 2, 3, generator=g), 0.01, 0, torch.qint8)
        m = nnq.ConvTranspose2d(16, 8, (2, 3))
        m.set_weight_bias(qw, torch.randn(8, generator=g))
        # uninitialized memory: now and then (about 1 call in 6 here) it still holds the weight's
        # bytes from an earlier buffer, so look at several calls
        assert not all(torch.equal(m.weight().int_repr(), qw.int_repr()) for _ in range(10)), \
            "torch unpacked the direct-path weight?"
        with pytest.raises(UnsupportedModuleError, match="cannot unpack"):
            qref.from_torch(m)
        m2 = nnq.ConvTranspose2d(16, 8, (3, 3), stride=2, padding=1, output_padding=1)
        qw2 = torch.quantize_per_tensor(torch.randn(16, 8, 3, 3, generator=g), 0.01, 2, torch.qint8)
        m2.set_weight_bias(qw2, torch.randn(8, generator=g))
        m2.scale, m2.zero_point = 0.2, 50
        assert torch.equal(m2.weight().int_repr(), qw2.int_repr())
        p = qref.from_torch(m2)
        x = torch.quantize_per_tensor(torch.randn(2, 16, 5, 6, generator=g), 0.05, 70, torch.quint8)
        on.assert_same(p(x).int_repr().numpy(), m2(x).int_repr().numpy(), "from_torch ConvTranspose2d")
        assert p.known_torch_defect(x.shape) is None
    finally:
        torch.backends.quantized.engine = prev


@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_from_torch_transposed(engine):
    """Under the x86 engine a symmetric, output_padding-0 transposed conv runs oneDNN (reproduced, or torch
    reported wrong where in_channels != out_channels);
    asymmetric weights or output_padding != 0 keep fbgemm (reproduced)."""
    import torch.ao.nn.quantized as nnq

    from qref.bridge_nd import packed_engine_nd

    g = torch.Generator().manual_seed(2)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        layers = [
            (nnq.ConvTranspose1d(8, 4, 3, stride=2, padding=1), (8, 4, 3), 1, (2, 8, 6)),
            (nnq.ConvTranspose1d(6, 6, 3, stride=2, padding=1, output_padding=1), (6, 6, 3), 0, (1, 6, 5)),
            (nnq.ConvTranspose2d(8, 4, 3, stride=2, padding=1, output_padding=1), (8, 4, 3, 3), 0, (2, 8, 4, 5)),
            (nnq.ConvTranspose2d(6, 6, 3, stride=2, padding=1), (6, 6, 3, 3), 0, (2, 6, 4, 5)),
            (nnq.ConvTranspose2d(8, 8, 3, groups=2), (8, 4, 3, 3), -2, (1, 8, 4, 4)),
            (nnq.ConvTranspose3d(4, 6, 3, stride=2, padding=1, output_padding=1), (4, 6, 3, 3, 3), 0, (1, 4, 3, 3, 4)),
            (nnq.ConvTranspose3d(4, 4, 2), (4, 4, 2, 2, 2), 5, (2, 4, 2, 3, 3)),
        ]
        for m, wshape, zp, xshape in layers:
            qw = torch.quantize_per_tensor(torch.randn(wshape, generator=g), 0.012, zp, torch.qint8)
            m.set_weight_bias(qw, torch.randn(m.out_channels, generator=g))
            m.scale, m.zero_point = 0.27, 61
            x = torch.quantize_per_tensor(torch.randn(xshape, generator=g), 0.05, 64, torch.quint8)
            p = qref.from_torch(m)
            assert isinstance(p, qref.ConvTransposeParams)
            if packed_engine_nd(m) == "onednn":
                # oneDNN-packed (x86 engine, VNNI host): reproduced with oneDNN's arithmetic
                assert engine == "x86" and zp == 0 and not any(m.output_padding) and p.engine == "onednn"
                if m.in_channels != m.out_channels:  # torch's own defect (docs/numerics.md §6.5): reported, not matched
                    assert p.known_torch_defect(tuple(x.shape)) and (p(x).int_repr() != m(x).int_repr()).any()
                    continue
            else:
                assert p.engine == "fbgemm"
            on.assert_same(p(x).int_repr().numpy(), m(x).int_repr().numpy(), f"{engine} {type(m).__name__}")
    finally:
        torch.backends.quantized.engine = prev


def test_transposed_errors():
    x = np.zeros((1, 8, 4, 4), np.uint8)
    w = np.zeros((8, 4, 3, 3), np.int8)
    kw = dict(input_scale=0.1, input_zero_point=0, weight_scale=0.1, output_scale=0.1, output_zero_point=0)
    assert qref.conv_transpose2d(x, w, stride=2, padding=1, output_padding=1, **kw).shape == (1, 4, 8, 8)
    with pytest.raises(ValueError, match="conv_transpose2d: output_padding=2 in spatial dim 0 must be smaller"):
        qref.conv_transpose2d(x, w, stride=2, output_padding=2, **kw)
    with pytest.raises(ValueError, match="conv_transpose2d: weight has 8 input channels .* but input has 6"):
        qref.conv_transpose2d(x[:, :6], w, **kw)
    with pytest.raises(ValueError, match="conv_transpose2d: weight is per-channel quantized"):
        qref.conv_transpose2d(x, w, **dict(kw, weight_scale=np.full(8, 0.1)))
    with pytest.raises(ValueError, match="conv_transpose1d: input.shape="):
        qref.conv_transpose1d(x, w[..., 0], **kw)
    with pytest.raises(qref.OneDNNNotSupportedError, match="symmetric weights"):
        qref.conv_transpose2d(x, w, engine="onednn", weight_zero_point=3, **kw)


def test_transposed_kernels_agree(kernel):
    """conv_transpose1d/2d on the im2col path run on the conv2d core (input spread out by the
    stride, a_zp elsewhere, flipped kernel) for every kernel but "scalar", which runs the normative
    N-d reference: same bytes under both ISA semantics, odd channel counts included."""
    rng = np.random.default_rng(707)
    specs = IM2COL + DIRECT + [_random_spec(rng, k, i) for i in range(12) for k in ("convt1d", "convt2d")]
    for s in specs:
        b = on.build(s)
        for isa in ("avx2", "vnni"):
            ref = on.qref_run(s, b, isa=isa, kernel="scalar")
            on.assert_same(on.qref_run(s, b, isa=isa, kernel=kernel), ref, f"{on.case_id(s)} {kernel} {isa}")


def _random_spec(rng, kind: str, i: int) -> dict:
    nd = {"convt1d": 1, "convt2d": 2, "convt3d": 3}[kind]
    G = int(rng.choice([1, 1, 1, 2, 4]))
    C = G * int(rng.choice([1, 2, 3, 4, 8]))
    O = G * int(rng.choice([1, 2, 3, 8]))
    k = [int(rng.choice([1, 2, 3, 4])) for _ in range(nd)]
    stride = [int(rng.choice([1, 2, 3])) for _ in range(nd)]
    dil = [1 if rng.integers(0, 4) else 2 for _ in range(nd)]
    pad = [int(rng.integers(0, (d * (kk - 1)) // 2 + 1)) for kk, d in zip(k, dil)]
    op = [int(rng.integers(0, max(st, d))) if rng.integers(0, 2) else 0 for st, d in zip(stride, dil)]
    spatial = [int(rng.integers(1, 9 if nd < 3 else 5)) for _ in range(nd)]
    for j in range(nd):  # output size >= 1
        while (spatial[j] - 1) * stride[j] - 2 * pad[j] + dil[j] * (k[j] - 1) + op[j] + 1 < 1:
            spatial[j] += 1
    s = on.spec(kind, N=int(rng.integers(1, 3)), C=C, O=O, spatial=spatial, k=k, stride=stride, padding=pad,
                dilation=dil, output_padding=op, groups=G, per_channel=False,
                w_zp=["random", 0, 0][int(rng.integers(0, 3))], a_zp=int(rng.integers(0, 256)),
                bias=bool(rng.integers(0, 4)), act=["full", "high", "reduce"][int(rng.integers(0, 3))],
                weight=["full", "extreme", "small"][int(rng.integers(0, 3))], seed=i)
    if "direct" in on.plan(s):  # torch's direct path is defective for N > 1 and stride_h == 2
        s["N"] = 1
        s["stride"][0] = 1
    return s


@pytest.mark.parametrize("kind", ["convt1d", "convt2d", "convt3d"])
def test_random_sweep_small(kind):
    rng = np.random.default_rng({"convt1d": 91, "convt2d": 92, "convt3d": 93}[kind])
    for i in range(8):
        s = _random_spec(rng, kind, i)
        b = on.build(s)
        on.assert_same(on.qref_run(s, b), on.torch_run(s, b), f"seed {i}: {on.case_id(s)} [{on.plan(s)}]")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["convt1d", "convt2d", "convt3d"])
def test_random_sweep(kind, request):
    n = request.config.getoption("--sweep") or 200
    rng = np.random.default_rng({"convt1d": 5431, "convt2d": 5432, "convt3d": 5433}[kind])
    specs = [_random_spec(rng, kind, i) for i in range(n)]
    on.check_sweep(specs)


def test_transposed_params_cache(kernel):
    for s in IM2COL + DIRECT:
        on.check_params_cache(s, kernel)


def test_transposed_params_polyphase(kernel):
    """Without int16 saturation (isa="vnni" semantics) a ConvTransposeParams runs the im2col path as
    one stride-1 conv per output phase (bridge_nd._prepare_polyphase: the a_zp taps add 0 to raw
    modulo 2^32): the same bytes as the normative reference, under both ISA semantics, for random
    strides, kernels, paddings, output paddings and groups; and torch's bytes on this host."""
    rng = np.random.default_rng(909)
    specs = IM2COL[:6] + [_random_spec(rng, "convt2d", i) for i in range(40)]
    specs += [on.spec("convt2d", N=2, C=8, O=6, spatial=[4, 5], k=[k, k], stride=[s, s], padding=[p, p],
                      output_padding=[s - 1, 0], w_zp=3, a_zp=200)
              for k, s, p in ((3, 2, 1), (4, 2, 1), (5, 3, 2), (3, 3, 0), (2, 2, 0), (6, 2, 3))]
    phased = 0
    for s in specs:
        b = on.build(s)
        p = on.params_for(s, b)
        for isa in ("avx2", "vnni"):
            ref = on.qref_run(s, b, isa=isa, kernel="scalar")
            for i in range(2):  # prepare, then the cached entry
                got = p(b["x"], input_scale=b["a_scale"], input_zero_point=b["a_zp"], isa=isa, kernel=kernel)
                on.assert_same(got, ref, f"{on.case_id(s)} {kernel} {isa} call {i}")
        phased += sum(isinstance(e.keep, list) for e in p._prepared.values() if e)
        if s["dilation"] == [1, 1] and s["groups"] == 1:
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b["x"]), b["a_scale"], b["a_zp"])
            p(qx, kernel=kernel)
            on.assert_same(p(qx, kernel=kernel).int_repr().numpy(), on.torch_run(s, b), f"{on.case_id(s)} torch")
    if kernel != "scalar":
        assert phased >= 10, phased
