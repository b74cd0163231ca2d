"""qref.linear vs torch's fbgemm quantized linear (docs/numerics.md §8), both ISA settings."""

from __future__ import annotations

import numpy as np
import pytest

import oracle_nd as on

torch = pytest.importorskip("torch")

import qref  # noqa: E402

# kind, C = in_features, O = out_features, lead = leading dims; w_zp, per_channel, relu, data
CASES = [
    on.spec("linear", C=37, O=19, lead=[5]),
    on.spec("linear", C=64, O=32, lead=[2, 3], per_channel=False, w_zp=3, relu=True),
    on.spec("linear", C=5, O=7, lead=[4], w_zp="random", a_zp=37),
    on.spec("linear", C=1, O=3, lead=[6], per_channel=False),
    on.spec("linear", C=128, O=16, lead=[1], a_zp=255, bias=False),
    on.spec("linear", C=96, O=24, lead=[7], act="high", weight="extreme", a_zp=0),  # many saturated pairs
    on.spec("linear", C=33, O=8, lead=[3], act="high", weight="extreme", per_channel=False, w_zp=-4, relu=True),
    on.spec("linear", C=200, O=40, lead=[2, 2, 2], act="reduce", w_zp="random"),
]
IDS = [on.case_id(s) for s in CASES]


@pytest.mark.parametrize("s", CASES, ids=IDS)
def test_linear_matches_torch_default_isa(s):
    b = on.build(s)
    on.assert_same(on.qref_run(s, b), on.torch_run(s, b), on.case_id(s))


def test_linear_matches_torch_fbgemm_avx2_subprocess():
    """FBGEMM_ENABLE_INSTRUCTIONS=AVX2: torch's GEMM saturates pairs of consecutive features;
    qref(isa="auto") there, and qref(isa="avx2") here, give the same bytes."""
    res = on.run_in_subprocess(CASES, env={"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"})
    saturated_somewhere = False
    for s, r in zip(CASES, res):
        assert "saturating" in r["plan"], r["plan"]
        on.assert_same(r["qref"], r["torch"], on.case_id(s) + " (AVX2 subprocess)")
        b = on.build(s)
        on.assert_same(on.qref_run(s, b, isa="avx2"), r["torch"], on.case_id(s) + " isa='avx2' here")
        if not np.array_equal(on.qref_run(s, b, isa="vnni"), r["torch"]):
            saturated_somewhere = True
    # The cases are built so that the saturation is visible: the exact model is wrong under AVX2.
    assert saturated_somewhere


def test_linear_torch_tensor_io_and_leading_dims():
    s = on.spec("linear", C=24, O=10, lead=[2, 3, 4], w_zp="random")
    b = on.build(s)
    qx, qw, bias = on._torch_operands(b)
    torch.backends.quantized.engine = "fbgemm"
    pp = torch.ops.quantized.linear_prepack(qw, bias)
    t = torch.ops.quantized.linear(qx, pp, b["out_scale"], b["out_zp"])
    q = qref.linear(qx, qw, bias, output_scale=b["out_scale"], output_zero_point=b["out_zp"])
    assert q.shape == t.shape == (2, 3, 4, 10)
    assert q.q_scale() == t.q_scale() and q.q_zero_point() == t.q_zero_point()
    on.assert_same(q.int_repr().numpy(), t.int_repr().numpy(), "torch tensors")


def test_linear_kernels_agree(kernel):
    """Linear runs through the conv2d core as a pointwise conv: every kernel gives the same bytes."""
    for s in CASES:
        b = on.build(s)
        for isa in ("avx2", "vnni"):
            ref = on.qref_run(s, b, isa=isa, kernel="scalar")
            on.assert_same(on.qref_run(s, b, isa=isa, kernel=kernel), ref, f"{on.case_id(s)} {kernel} {isa}")


def test_linear_intermediates():
    s = on.spec("linear", C=16, O=6, lead=[2, 5], w_zp=2, per_channel=False)
    b = on.build(s)
    out, it = on.qref_run(s, b, return_intermediates=True)
    assert out.shape == it.acc.shape == it.raw.shape == it.y.shape == (2, 5, 6)
    x = b["x"].astype(np.int64)
    acc = x @ b["w"].astype(np.int64).T  # exact when the plan does not saturate
    if not it.plan.saturates:
        assert np.array_equal(it.acc, acc)
    rowsum = x.sum(-1, keepdims=True)
    colsum = b["w"].astype(np.int64).sum(1) - int(b["w_zp"][0]) * 16
    raw = it.acc.astype(np.int64) - b["a_zp"] * colsum - rowsum * int(b["w_zp"][0])
    assert np.array_equal(it.raw, raw.astype(np.int32))


@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("per_channel", [False, True])
def test_from_torch_linear(engine, relu, per_channel):
    """Linear runs fbgemm under the fbgemm and the x86 engine alike (qlinear_prepack.cpp)."""
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        g = torch.Generator().manual_seed(3)
        m = (nniq.LinearReLU if relu else nnq.Linear)(40, 12)
        wf = torch.randn(12, 40, generator=g)
        if per_channel:
            qw = torch.quantize_per_channel(wf, torch.rand(12, generator=g).double() * 0.02 + 0.002,
                                            torch.randint(-3, 4, (12,), generator=g), 0, torch.qint8)
        else:
            qw = torch.quantize_per_tensor(wf, 0.013, 0, torch.qint8)
        m.set_weight_bias(qw, torch.randn(12, generator=g))
        m.scale, m.zero_point = 0.37, 71
        x = torch.quantize_per_tensor(torch.randn(3, 5, 40, generator=g) * 3, 0.04, 120, torch.quint8)
        p = qref.from_torch(m)
        assert isinstance(p, qref.LinearParams) and p.relu == relu
        assert p.known_torch_defect(x.shape) is None
        on.assert_same(p(x).int_repr().numpy(), m(x).int_repr().numpy(), f"from_torch {type(m).__name__}")
    finally:
        torch.backends.quantized.engine = prev


def test_linear_errors():
    x = np.zeros((2, 8), np.uint8)
    w = np.zeros((4, 8), np.int8)
    kw = dict(input_scale=0.1, input_zero_point=0, weight_scale=0.1, output_scale=0.1, output_zero_point=0)
    with pytest.raises(ValueError, match="linear: input has 7 features"):
        qref.linear(np.zeros((2, 7), np.uint8), w, **kw)
    with pytest.raises(TypeError, match=r"linear: input.*float32.*uint8"):
        qref.linear(x.astype(np.float32), w, **kw)
    with pytest.raises(ValueError, match=r"linear: weight.*\(4, 8, 1\)"):
        qref.linear(x, w[:, :, None], **kw)
    with pytest.raises(ValueError, match=r"linear: bias.*shape"):
        qref.linear(x, w, np.zeros(3, np.float32), **kw)
    with pytest.raises(ValueError, match=r"linear: input_scale=None, input_zero_point=None \(both are required"):
        qref.linear(x, w, weight_scale=0.1, output_scale=0.1, output_zero_point=0)
    with pytest.raises(ValueError, match=r"linear: output_zero_point.*300"):
        qref.linear(x, w, **dict(kw, output_zero_point=300))
    with pytest.raises(ValueError, match=r"linear: input.shape=\(8,\) has 1 dimensions \(must be at least 2-D"):
        qref.linear(np.zeros(8, np.uint8), w, **kw)
    assert qref.linear(np.zeros((0, 8), np.uint8), w, **kw).shape == (0, 4)
    assert np.array_equal(qref.linear(x, w, engine="x86", **kw), qref.linear(x, w, **kw))
    with pytest.raises(qref.OneDNNNotSupportedError, match="linear: engine='onednn' with weight zero points"):
        qref.linear(x, w, engine="onednn", weight_zero_point=2, **{k: v for k, v in kw.items()})
    with pytest.raises(ValueError, match="linear: return_intermediates=True is not available for engine='onednn'"):
        qref.linear(x, w, engine="onednn", return_intermediates=True, **kw)


@pytest.mark.slow
def test_linear_random_sweep(request):
    n = request.config.getoption("--sweep") or 300
    rng = np.random.default_rng(1234)
    specs = []
    for i in range(n):
        specs.append(on.spec(
            "linear", C=int(rng.integers(1, 300)), O=int(rng.integers(1, 70)),
            lead=[int(v) for v in rng.integers(1, 5, int(rng.integers(1, 4)))],
            per_channel=bool(rng.integers(0, 2)), w_zp=["random", 0, 0][int(rng.integers(0, 3))],
            a_zp=int(rng.integers(0, 256)), relu=bool(rng.integers(0, 2)), bias=bool(rng.integers(0, 4)),
            act=["full", "high", "reduce"][int(rng.integers(0, 3))],
            weight=["full", "extreme", "small"][int(rng.integers(0, 3))], seed=i))
    on.check_sweep(specs, show_plan=False)


def test_per_tensor_bias_is_fused_multiply_add():
    """A constructed tie: raw = -55691, bias 0.59146 (f32), scales 0.02 / 0.003 / 0.5, out_zp 64.
    Rounding bias*R separately gives y = -5.5 exactly (-> 58); the fused value is -5.4999995 (-> 59,
    torch's answer, for linear and conv2d alike). Per-channel (bias / S, a division) is not fused."""
    K = 436
    x = np.ones((1, K), np.uint8)
    w = np.full((1, K), -128, np.int8)
    w[0, -1] = -11  # sum = -55691
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.02, 0)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), 0.003, 0)
    b = torch.tensor([0.5914599299430847], dtype=torch.float32)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        t = torch.ops.quantized.linear(qx, torch.ops.quantized.linear_prepack(qw, b), 0.5, 64).int_repr()
        wc = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.tensor([0.003], dtype=torch.float64),
                                                      torch.tensor([0]), 0)
        tc = torch.ops.quantized.linear(qx, torch.ops.quantized.linear_prepack(wc, b), 0.5, 64).int_repr()
    finally:
        torch.backends.quantized.engine = prev
    assert int(t.item()) == 59 and int(tc.item()) == 58  # torch: fused per-tensor, divided per-channel
    qc = qref.linear(qx, wc, b, output_scale=0.5, output_zero_point=64).int_repr()
    assert int(qc.item()) == 58
    q = qref.linear(qx, qw, b, output_scale=0.5, output_zero_point=64).int_repr()
    assert int(q.item()) == int(t.item())  # the fused value (requant.h, Requant::bias_fma)


# path: (x shape, w shape, conv kwargs, output index, three (x index, w index) taps). The taps carry
# x = 255, 255, 1 and w = -128, -90, -101.
_TIE_CASES = {
    # C = O = 16, groups 1, 3x3 pad 1: fbgemm's groupwise path
    "groupwise": ((1, 16, 3, 3), (16, 16, 3, 3), dict(padding=1, groups=1), (0, 0, 1, 1),
                  [((0, 0, 0, 0), (0, 0, 0, 0)), ((0, 1, 0, 1), (0, 1, 0, 1)), ((0, 2, 1, 1), (0, 2, 1, 1))]),
    # taps 0, 2, 4 of channel 0: separate pairs, nothing saturates
    "depthwise": ((1, 16, 3, 3), (16, 1, 3, 3), dict(padding=1, groups=16), (0, 0, 1, 1),
                  [((0, 0, 0, 0), (0, 0, 0, 0)), ((0, 0, 0, 2), (0, 0, 0, 2)), ((0, 0, 1, 1), (0, 0, 1, 1))]),
    # direct transposed, IC = OC = 8, 2x2: input channels 0, 2, 4 of pixel (0, 0), tap (0, 0)
    "direct": ((1, 8, 2, 2), (8, 8, 2, 2), {}, (0, 0, 0, 0),
               [((0, 0, 0, 0), (0, 0, 0, 0)), ((0, 2, 0, 0), (2, 0, 0, 0)), ((0, 4, 0, 0), (4, 0, 0, 0))]),
}


def _tie_case(path):
    """Operands whose one output element has raw = -55691 (the tie above) on the given path."""
    x_shape, w_shape, kw, idx, taps = _TIE_CASES[path]
    x = np.zeros(x_shape, np.uint8)
    w = np.zeros(w_shape, np.int8)
    for (xi, wi), xv, wv in zip(taps, (255, 255, 1), (-128, -90, -101)):
        x[xi], w[wi] = xv, wv
    return x, w, dict(kw), idx


@pytest.mark.parametrize("path", ["groupwise", "depthwise", "direct"])
def test_per_tensor_bias_is_fused_on_every_path(path):
    """The same tie on fbgemm's groupwise, depthwise and direct transposed paths: torch gives the
    fused value (59) there too, so the fix is one change to the shared requantization."""
    x, w, kw, idx = _tie_case(path)
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), 0.02, 0)
    qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), 0.003, 0)
    O = w.shape[1] if path == "direct" else w.shape[0]
    b = torch.full((O,), 0.5914599299430847, dtype=torch.float32)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        if path == "direct":
            pp = torch.ops.quantized.conv_transpose2d_prepack(qw, b, [1, 1], [0, 0], [0, 0], [1, 1], 1)
            t = torch.ops.quantized.conv_transpose2d(qx, pp, 0.5, 64).int_repr()
            q, it = qref.conv_transpose2d(qx, qw, b, output_scale=0.5, output_zero_point=64,
                                          return_intermediates=True)
        else:
            pp = torch.ops.quantized.conv2d_prepack(qw, b, [1, 1], [kw["padding"]] * 2, [1, 1], kw["groups"])
            t = torch.ops.quantized.conv2d(qx, pp, 0.5, 64).int_repr()
            q, it = qref.conv2d(qx, qw, b, output_scale=0.5, output_zero_point=64, return_intermediates=True, **kw)
    finally:
        torch.backends.quantized.engine = prev
    assert it.plan.path == path and int(it.raw[idx]) == -55691
    assert int(t[idx]) == 59
    assert int(q.int_repr()[idx]) == int(t[idx])  # the fused value, on every path


def test_linear_params_cache(kernel):
    for s in CASES:
        on.check_params_cache(s, kernel)


def test_params_pickle_and_copy():
    """A pickled or copied params object starts with an empty cache and runs (the unpickled arrays
    are viewed with numpy's own dtypes again, which _core's dtype check needs)."""
    import copy
    import pickle

    s = CASES[1]
    b = on.build(s)
    t = on.torch_run(s, b)
    p = on.params_for(s, b)
    kw = dict(input_scale=b["a_scale"], input_zero_point=b["a_zp"])
    on.assert_same(p(b["x"], **kw), t, "original")
    for q in (pickle.loads(pickle.dumps(p)), copy.deepcopy(p), copy.copy(p)):
        assert q._prepared == {} and q._prepared is not p._prepared
        for i in range(2):
            on.assert_same(q(b["x"], **kw), t, f"{type(q).__name__} call {i}")
