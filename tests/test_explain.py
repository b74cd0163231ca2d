"""qref.explain: its Python/numpy derivation equals the C++ kernel (acc, raw, y, output) and torch,
for hundreds of elements including saturated pairs and rounding ties."""

import json

import numpy as np
import pytest

import oracle
import qref
from qref.explain import explain
from qref.torch_bridge import Conv2dParams


def params_of(s, b):
    per_channel = b["per_channel"]
    return Conv2dParams(
        weight=b["w"], weight_scale=np.asarray(b["w_scale"], np.float64),
        weight_zero_point=np.asarray(b["w_zp"], np.int32), per_channel=per_channel, bias=b["bias"],
        stride=s["stride"], padding=s["padding"], dilation=s["dilation"], groups=s["groups"],
        output_scale=b["out_scale"], output_zero_point=b["out_zp"], relu=s["relu"])


def tie_case(seed=0, per_channel=False, relu=False, bias=True):
    """Power-of-two scales: S = 1/8, M = 1/16, y = (raw + bias term) / 16, so every raw = 8 (mod 16)
    is an exact tie; small activations keep y inside the uint8 range."""
    s = oracle.spec(C=4, O=4, H=10, W=10, KH=3, KW=3, padding=1, per_channel=per_channel, weight="small",
                    act="reduce", seed=seed, relu=relu, bias=bias)
    b = oracle.build(s)
    b["x"] = b["x"] % 4
    b["a_scale"] = 0.25
    b["w_scale"] = np.full(b["w_scale"].shape, 0.5)
    b["out_scale"] = 2.0
    b["out_zp"] = 128
    if bias:
        b["bias"] = (np.arange(4, dtype=np.float32) - 2) * np.float32(2.0)  # bias term = 16 * integer
    return s, b


CASES = [
    ("depthwise-sat", oracle.spec(C=16, O=16, groups=16, padding=1, act="high", weight="extreme", seed=1)),
    ("depthwise-5x5-pt", oracle.spec(C=8, O=16, groups=8, KH=5, KW=5, padding=2, act="high", per_channel=False,
                                     seed=2)),
    ("im2col-azp-wzp", oracle.spec(C=6, O=5, KH=3, KW=2, stride=2, padding=1, a_zp=17, w_zp=3, per_channel=False,
                                   seed=3)),
    ("im2col-dil-relu", oracle.spec(C=3, O=8, dilation=2, padding=2, relu=True, seed=4, w_zp="random")),
    ("pointwise-groups", oracle.spec(C=8, O=8, KH=1, KW=1, groups=2, seed=5, act="high", weight="extreme")),
    ("groupwise", oracle.spec(C=16, O=16, groups=4, padding=1, seed=6, a_zp=9)),
    ("nobias-pt", oracle.spec(C=5, O=3, bias=False, per_channel=False, seed=7)),
]


def check_elements(p, b, isa, indices, out, inter, torch_out=None):
    n_sat = n_tie = 0
    for idx in indices:
        idx = tuple(int(v) for v in idx)
        e = explain(p, b["x"], idx, isa=isa, input_scale=b["a_scale"], input_zero_point=b["a_zp"])
        where = f"isa={isa} index={idx}"
        assert e.acc == int(inter.acc[idx]), where
        assert e.raw == int(inter.raw[idx]), where
        assert np.float32(e.y).tobytes() == inter.y[idx].tobytes(), f"{where}: y {e.y!r} vs {inter.y[idx]!r}"
        assert e.value == int(out[idx]), where
        if torch_out is not None:
            assert e.value == int(torch_out[idx]), where
        n_sat += bool(e.saturated_pairs)
        n_tie += e.tie
        json.dumps(e.to_dict())  # the structured form is JSON-able
    return n_sat, n_tie


def pick(rng, out, inter, n=40):
    """Random elements plus every tie and, where ISAs differ, saturated accumulators."""
    flat = rng.choice(out.size, size=min(n, out.size), replace=False)
    idx = [np.unravel_index(i, out.shape) for i in flat]
    y = inter.y.astype(np.float64)
    ties = np.argwhere(y - np.floor(y) == 0.5)[:20]
    return idx + [tuple(t) for t in ties]


@pytest.mark.parametrize("name,s", CASES, ids=[c[0] for c in CASES])
def test_explain_equals_kernel_and_torch(name, s):
    b = oracle.build(s)
    p = params_of(s, b)
    rng = np.random.default_rng(hash(name) % 2**32)
    torch_out = oracle.torch_conv(s, b)
    out, inter = oracle.qref_conv(s, b, isa="auto", intermediates=True)
    oracle.assert_same(out, torch_out, name)
    idx = pick(rng, out, inter)
    n_sat, _ = check_elements(p, b, "auto", idx, out, inter, torch_out)
    if name.startswith("pointwise"):
        # GEMM paths saturate only without VNNI: elements whose accumulator changes between ISAs
        ex, ie = oracle.qref_conv(s, b, isa="avx2", intermediates=True)
        _, iv = oracle.qref_conv(s, b, isa="vnni", intermediates=True)
        sat = np.argwhere(ie.acc != iv.acc)
        assert len(sat) > 0, f"{name}: the case was meant to saturate"
        n_sat2, _ = check_elements(p, b, "avx2", [tuple(t) for t in sat[:40]], ex, ie)
        assert n_sat2 == min(40, len(sat))
    if name.startswith("depthwise"):
        # depthwise saturates on every CPU: explain every element, many show saturated pairs
        n_sat, _ = check_elements(p, b, "auto", list(np.ndindex(out.shape)), out, inter, torch_out)
        assert n_sat > 0, "depthwise saturates on every CPU: some element must show a saturated pair"


@pytest.mark.parametrize("isa", ["avx2", "vnni"])
@pytest.mark.parametrize("name,s", CASES, ids=[c[0] for c in CASES])
def test_explain_equals_kernel_named_isa(name, s, isa):
    b = oracle.build(s)
    p = params_of(s, b)
    out, inter = oracle.qref_conv(s, b, isa=isa, intermediates=True)
    check_elements(p, b, isa, pick(np.random.default_rng(1), out, inter, 25), out, inter)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_explain_ties_half_to_even(per_channel, relu):
    s, b = tie_case(seed=11, per_channel=per_channel, relu=relu)
    p = params_of(s, b)
    torch_out = oracle.torch_conv(s, b)
    out, inter = oracle.qref_conv(s, b, isa="auto", intermediates=True)
    oracle.assert_same(out, torch_out, "tie case")
    y = inter.y.astype(np.float64)
    ties = [tuple(t) for t in np.argwhere(y - np.floor(y) == 0.5)]
    assert len(ties) >= 20, "power-of-two scales must produce many exact ties"
    _, n_tie = check_elements(p, b, "auto", ties, out, inter, torch_out)
    assert n_tie == len(ties)
    # round-half-up disagrees with torch on the ties that are not clamped away
    disagree = 0
    for idx in ties[:30]:
        e = explain(p, b["x"], idx, input_scale=b["a_scale"], input_zero_point=b["a_zp"])
        h = {f.name: f for f in e.hand}["round half up"]
        assert "tie" in h.why
        disagree += not h.matches
        assert "an exact tie" in str(e)
    assert disagree > 0


def test_saturated_pair_reported():
    # a GEMM-path conv: saturates with isa="avx2", exact with "vnni"
    s = oracle.spec(C=8, O=8, KH=1, KW=1, groups=2, seed=5, act="high", weight="extreme")
    b = oracle.build(s)
    p = params_of(s, b)
    _, ie = oracle.qref_conv(s, b, isa="avx2", intermediates=True)
    _, iv = oracle.qref_conv(s, b, isa="vnni", intermediates=True)
    idx = tuple(np.argwhere(ie.acc != iv.acc)[0])
    assert not explain(p, b["x"], idx, isa="vnni", input_scale=b["a_scale"],
                       input_zero_point=b["a_zp"]).saturated_pairs
    e = explain(p, b["x"], idx, isa="avx2", input_scale=b["a_scale"], input_zero_point=b["a_zp"])
    assert e.saturated_pairs
    # the exact sum minus what saturation lost is fbgemm's accumulator
    assert e.acc_exact - sum(sp.lost for sp in e.saturated_pairs) == e.acc
    for sp in e.saturated_pairs:
        assert sp.saturated in (-32768, 32767) and sp.exact != sp.saturated
    text = str(e)
    assert "saturate" in text and "ignoring saturation" in text


def test_explain_torch_module_and_flat_index():
    torch = pytest.importorskip("torch")
    from qref.demo import forum_model

    net, x = forum_model()
    qx = net.quant(x)
    ref = net.conv1(qx).int_repr()
    for flat in range(64):
        e = explain(net.conv1, qx, flat)
        assert e.value == e.torch_value == int(ref.flatten()[flat])
    assert torch is not None


def test_explain_bad_index():
    s = oracle.spec(C=4, O=4)
    b = oracle.build(s)
    p = params_of(s, b)
    with pytest.raises(ValueError, match="index"):
        explain(p, b["x"], (0, 4, 0, 0), input_scale=b["a_scale"], input_zero_point=b["a_zp"])
    with pytest.raises(ValueError, match="index"):
        explain(p, b["x"], (0, 0, 0), input_scale=b["a_scale"], input_zero_point=b["a_zp"])
    with pytest.raises(ValueError, match="input_scale"):
        explain(p, b["x"], (0, 0, 0, 0))
    with pytest.raises(TypeError, match="module_or_params"):
        explain(object(), b["x"], (0, 0, 0, 0))


# ----------------------------------------------------------------------------- oneDNN (engine x86 / onednn)

ONEDNN_CASES = [
    ("im2col-pad-azp", oracle.spec(C=8, O=6, padding=1, a_zp=37, seed=21, relu=True)),
    ("pointwise-pt", oracle.spec(C=16, O=8, KH=1, KW=1, per_channel=False, seed=22, a_zp=5)),
    ("depthwise-pad", oracle.spec(C=16, O=16, groups=16, padding=1, seed=23, a_zp=200)),
    ("grouped-stride", oracle.spec(C=8, O=8, groups=2, stride=2, padding=1, seed=24, bias=False)),
]


@pytest.mark.filterwarnings("ignore:.*assumed, not read.*:RuntimeWarning")  # AMX kernel assumed without its name
@pytest.mark.parametrize("isa", ["vnni", "amx", "avx512_core", "avx2"])
@pytest.mark.parametrize("name,s", ONEDNN_CASES, ids=[c[0] for c in ONEDNN_CASES])
def test_explain_onednn_equals_kernel(name, s, isa):
    from dataclasses import replace

    from qref.common.errors import OneDNNNotSupportedError

    b = oracle.build(s)
    p = replace(params_of(s, b), engine="onednn")
    try:
        out, inter = p(b["x"], input_scale=b["a_scale"], input_zero_point=b["a_zp"], isa=isa,
                       return_intermediates=True)
    except OneDNNNotSupportedError as err:
        pytest.skip(f"qref does not reproduce this oneDNN kernel class: {err}")
    rng = np.random.default_rng(5)
    idx = [np.unravel_index(i, out.shape) for i in rng.choice(out.size, 40, replace=False)]
    idx += [(0, 0, 0, 0), (0, out.shape[1] - 1, out.shape[2] - 1, out.shape[3] - 1)]  # padded corners
    for ix in idx:
        ix = tuple(int(v) for v in ix)
        e = explain(p, b["x"], ix, isa=isa, input_scale=b["a_scale"], input_zero_point=b["a_zp"])
        where = f"{name} isa={isa} index={ix}"
        assert e.engine == "onednn"
        assert e.acc == int(inter.acc[ix]) and e.colsum == int(inter.colsum[ix]), where
        assert np.float32(e.onednn["A"]).tobytes() == inter.A[ix].tobytes(), where
        assert np.float32(e.y).tobytes() == inter.y[ix].tobytes(), where
        assert e.value == int(out[ix]), where
        assert "oneDNN" in str(e)


def test_explain_onednn_module_equals_torch():
    torch = pytest.importorskip("torch")
    if not qref.torch_isa().cpu_features["avx512vnni"]:
        pytest.skip("the x86 engine packs for oneDNN only on AVX512-VNNI hosts")
    from qref.demo import quantized_engine, quiet_torch_quantization

    torch.manual_seed(3)
    with quantized_engine("x86"), quiet_torch_quantization():
        m = torch.nn.Sequential(torch.ao.quantization.QuantStub(), torch.nn.Conv2d(4, 8, 3, padding=1))
        m.eval().qconfig = torch.ao.quantization.get_default_qconfig("x86")
        torch.ao.quantization.prepare(m, inplace=True)
        x = torch.rand(1, 4, 10, 10)
        m(x)
        torch.ao.quantization.convert(m, inplace=True)
        qx = m[0](x)
        conv = m[1]
        if qref.from_torch(conv).engine != "onednn":
            pytest.skip("torch packed this conv for fbgemm here")
        ref = conv(qx).int_repr()
        rng = np.random.default_rng(0)
        for flat in rng.choice(ref.numel(), 60, replace=False):
            e = explain(conv, qx, int(flat))
            assert e.engine == "onednn" and e.value == e.torch_value == int(ref.flatten()[int(flat)])


@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_explain_linear_and_conv1d_modules_equal_torch(engine):
    """Linear and Conv1d run as 1x1 / (1, k) convs inside torch: explain them as such, == torch."""
    torch = pytest.importorskip("torch")
    from qref.demo import quantized_engine, quiet_torch_quantization

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.c1d = torch.nn.Conv1d(6, 8, 3, padding=1, stride=2)
            self.fc = torch.nn.Linear(8 * 10, 7)

        def forward(self, x):
            return self.fc(self.c1d(self.quant(x)).flatten(1))

    torch.manual_seed(4)
    x = torch.rand(3, 6, 20)
    with quantized_engine(engine), quiet_torch_quantization():
        m = M().eval()
        m.qconfig = torch.ao.quantization.QConfig(
            activation=torch.ao.quantization.MinMaxObserver.with_args(reduce_range=False),
            weight=torch.ao.quantization.default_per_channel_weight_observer)
        torch.ao.quantization.prepare(m, inplace=True)
        m(x)
        torch.ao.quantization.convert(m, inplace=True)
        qx = m.quant(x)
        q1 = m.c1d(qx)
        try:
            qref.from_torch(m.c1d)
            conv1d_ok = True
        except qref.torch_bridge.UnsupportedModuleError:  # oneDNN-packed Conv1d: the bridge refuses it
            conv1d_ok = engine == "x86" and qref.torch_isa().cpu_features["avx512vnni"]
            assert conv1d_ok, "the bridge refused an fbgemm-packed Conv1d"
            conv1d_ok = False
        out1 = q1.int_repr()
        for idx in [(0, 0, 0), (2, 7, 9), (1, 3, 4)] if conv1d_ok else []:
            e = explain(m.c1d, qx, idx)
            assert e.value == e.torch_value == int(out1[idx]), idx
            assert e.index == (idx[0], idx[1], 0, idx[2])
        q2 = q1.flatten(1)
        out2 = m.fc(q2).int_repr()
        for idx in [(0, 0), (2, 6), (1, 3)]:
            e = explain(m.fc, q2, idx)
            assert e.value == e.torch_value == int(out2[idx]), idx
        for flat in range(out2.numel()):
            assert explain(m.fc, q2, flat).value == int(out2.flatten()[flat])


def test_explain_linear_with_leading_dims_equals_torch():
    """A transformer-style Linear input (B, T, K): explain takes the (b, t, o) index of the output
    (torch flattens the leading dims into rows) and derives torch's value for every element."""
    torch = pytest.importorskip("torch")
    import torch.ao.nn.quantized as nnq

    import qref

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        torch.manual_seed(3)
        lin = nnq.Linear(24, 6)
        lin.set_weight_bias(torch.quantize_per_tensor(torch.randn(6, 24), 0.02, 0, torch.qint8), torch.randn(6))
        lin.scale, lin.zero_point = 0.1, 90
        qx = torch.quantize_per_tensor(torch.rand(2, 3, 24) * 2, 0.02, 3, torch.quint8)
        out = lin(qx).int_repr()
        for b in range(2):
            for t in range(3):
                for o in range(6):
                    d = qref.explain(lin, qx, (b, t, o)).to_dict()
                    assert d["value"] == d["torch_value"] == int(out[b, t, o]), (b, t, o, d["value"])
        with pytest.raises(ValueError, match="outside"):
            qref.explain(lin, qx, (2, 0, 0))
    finally:
        torch.backends.quantized.engine = prev


# ---------------------------------------------------------------------------- ATen ops


def _qt(r, shape, s, z):
    torch = pytest.importorskip("torch")
    data = r.integers(0, 256, shape).astype(np.uint8)
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(data), s, z)


def test_explain_op_matches_torch_elementwise():
    """Every element of a 400-element tensor (SIMD body and scalar tail): explain_op's
    derivation ends in torch's byte, for each elementwise op it covers."""
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(7)
    a, b = _qt(r, (1, 4, 10, 10), 0.05, 128), _qt(r, (1, 4, 10, 10), 0.03, 100)
    cases = [
        ("add", (a, b), {"scale": 0.07, "zero_point": 120}, torch.ops.quantized.add(a, b, 0.07, 120)),
        ("add_relu", (a, b), {"scale": 0.07, "zero_point": 120}, torch.ops.quantized.add_relu(a, b, 0.07, 120)),
        ("mul", (a, b), {"scale": 0.07, "zero_point": 120}, torch.ops.quantized.mul(a, b, 0.07, 120)),
        ("hardswish", (a,), {"scale": 0.04, "zero_point": 30}, torch.ops.quantized.hardswish(a, 0.04, 30)),
        ("sigmoid", (a,), {}, torch.sigmoid(a)),
        ("tanh", (a,), {}, torch.tanh(a)),
        ("elu", (a,), {"scale": 0.04, "zero_point": 60, "alpha": 0.8}, torch.ops.quantized.elu(a, 0.04, 60, 0.8)),
        ("gelu", (a,), {}, torch.nn.functional.gelu(a)),
    ]
    for name, ins, kw, ref in cases:
        parts = set()
        for flat in range(400):
            idx = tuple(int(v) for v in np.unravel_index(flat, (1, 4, 10, 10)))
            e = qref.explain_op(name, *ins, index=idx, **kw)
            assert e.value == int(ref.int_repr()[idx]), str(e)
            parts.add(e.part)
        assert parts == {"SIMD body", "scalar tail"} or name.startswith("mul"), (name, parts)
        assert str(e).startswith(name) and e.to_dict()["value"] == e.value


def test_explain_op_dynamic_linear_matches_torch():
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(8)
    w = torch.quantize_per_tensor(torch.from_numpy(r.standard_normal((6, 16)).astype(np.float32)) * 0.1, 0.002, 0,
                                  torch.qint8)
    bias = torch.from_numpy(r.standard_normal(6).astype(np.float32))
    x = torch.from_numpy(r.standard_normal((3, 16)).astype(np.float32))
    ref = torch.ops.quantized.linear_dynamic(x, torch.ops.quantized.linear_prepack(w, bias), True)
    for i in range(3):
        for j in range(6):
            e = qref.explain_op("linear_dynamic", x, w, bias, index=(i, j))
            assert np.float32(e.value).view(np.uint32) == ref[i, j].numpy().view(np.uint32), str(e)
    with pytest.raises(ValueError, match="not an element"):
        qref.explain_op("linear_dynamic", x, w, bias, index=(3, 0))
    with pytest.raises(ValueError, match="op"):
        qref.explain_op("softmax", x, index=(0, 0))


def test_explain_reduction_matches_torch():
    """max/avg pooling (padded windows, both count_include_pad), mean and softmax: every output
    element's derivation ends in torch's byte."""
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(9)
    x = _qt(r, (1, 3, 9, 9), 0.05, 100)
    kw = {"kernel_size": (3, 3), "stride": (2, 2), "padding": (1, 1)}
    refs = {
        ("max_pool2d", True): torch.nn.functional.max_pool2d(x, 3, 2, 1),
        ("avg_pool2d", True): torch.nn.functional.avg_pool2d(x, 3, 2, 1),
        ("avg_pool2d", False): torch.nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    }
    for (op, cip), ref in refs.items():
        for idx in np.ndindex(*ref.shape):
            e = qref.explain_reduction(op, x, index=idx, count_include_pad=cip, **kw)
            assert e.value == int(ref.int_repr()[idx]), str(e)
    ref = x.mean(dim=(2, 3))
    for idx in np.ndindex(*ref.shape):
        assert qref.explain_reduction("mean", x, index=idx, dims=2).value == int(ref.int_repr()[idx])
    xs = _qt(r, (2, 3, 37), 0.05, 100)
    ref = torch.ops.quantized.softmax(xs, -1, 1.0 / 256, 0)
    for idx in np.ndindex(*ref.shape):
        e = qref.explain_reduction("softmax", xs, index=idx, scale=1.0 / 256, zero_point=0)
        assert e.value == int(ref.int_repr()[idx]), str(e)
    with pytest.raises(ValueError, match="op"):
        qref.explain_reduction("median", x, index=(0, 0))
    with pytest.raises(ValueError, match="scale"):  # the norms need the output's quantization
        qref.explain_reduction("layer_norm", x, index=(0, 0, 0, 0), normalized_shape=(9,))
    with pytest.raises(ValueError, match="normalized_shape"):
        qref.explain_reduction("layer_norm", x, index=(0, 0, 0, 0), normalized_shape=(4,), scale=0.1, zero_point=3)



@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
def test_explain_op_cat_matches_torch(channels_last, relu, dtype):
    """quantized::cat(_relu): channels_last inputs along dim 1 (a copy for an input with the output's
    qparams; SIMD blocks, groups of 8 and scalar channels otherwise) and contiguous ones (dequantize,
    quantize_per_tensor): every channel of two pixels and random elements equal torch's."""
    torch = pytest.importorskip("torch")
    r = np.random.default_rng(11 + 2 * relu + channels_last)
    qd = getattr(torch, dtype)
    so, zo = 0.043, (-3 if dtype == "qint8" else 121)

    def q(c, s, z):
        f = torch.from_numpy(r.standard_normal((2, c, 3, 4)).astype(np.float32) * 3)
        t = torch.quantize_per_tensor(f, s, z, qd)
        return t.contiguous(memory_format=torch.channels_last) if channels_last else t

    xs = [q(3, 0.05, 5), q(45, 0.031, 0), q(70, 0.02, -7 if dtype == "qint8" else 200), q(9, so, zo)]
    ref = (torch.ops.quantized.cat_relu if relu else torch.ops.quantized.cat)(xs, 1, so, zo).int_repr()
    idx = [(0, c, 1, 2) for c in range(ref.shape[1])] + [(1, c, 2, 3) for c in range(ref.shape[1])]
    idx += [tuple(int(v) for v in np.unravel_index(i, ref.shape)) for i in r.choice(ref.numel(), 60, replace=False)]
    parts = set()
    for ix in idx:
        e = qref.explain_op("cat", *xs, index=ix, dim=1, scale=so, zero_point=zo, relu=relu)
        assert e.value == int(ref[ix]), str(e)
        parts.add(e.part)
    if channels_last:
        assert {"SIMD body (channels_last)", "scalar tail (channels_last)"} <= parts
        assert ("copy (channels_last)" in parts) == (not relu)
    if channels_last:  # the other capabilities' arithmetic (their block sizes): equal to qref's cat kernel
        from qref.engines import aten

        for cap in ("default", "avx2"):
            mine = aten.cat(xs, dim=1, scale=so, zero_point=zo, relu=relu, capability=cap).int_repr()
            for ix in idx[: 2 * ref.shape[1]]:
                e = qref.explain_op("cat", *xs, index=ix, dim=1, scale=so, zero_point=zo, relu=relu, capability=cap)
                assert e.value == int(mine[ix]), str(e)
    ys = [q(3, 0.05, 5), q(3, so, zo)]
    ref3 = torch.ops.quantized.cat(ys, 3, so, zo).int_repr()
    for i in r.choice(ref3.numel(), 40, replace=False):
        ix = tuple(int(v) for v in np.unravel_index(i, ref3.shape))
        assert qref.explain_op("cat", *ys, index=ix, dim=3, scale=so, zero_point=zo).value == int(ref3[ix])



@pytest.mark.parametrize("dtype", ["quint8", "qint8"])
def test_explain_reduction_norms_match_torch(dtype):
    """batch_norm (SIMD and scalar channels, relu), layer_norm (body and tail of the row),
    group_norm and instance_norm: each element's derivation ends in torch's byte; the other
    capabilities' arithmetic equals qref's kernels."""
    torch = pytest.importorskip("torch")
    from qref.engines import aten

    r = np.random.default_rng(21)
    qd = getattr(torch, dtype)
    so, zo = 0.037, (4 if dtype == "qint8" else 117)

    def q(shape):
        f = torch.from_numpy((r.standard_normal(shape) * 2 + 0.5).astype(np.float32))
        return torch.quantize_per_tensor(f, 0.03, -5 if dtype == "qint8" else 130, qd)

    def vec(n, lo=-1.0, hi=1.0):
        return torch.from_numpy(r.uniform(lo, hi, n).astype(np.float32))

    def sample(ref, n=80):
        return [tuple(int(v) for v in np.unravel_index(i, ref.shape)) for i in r.choice(ref.numel(), n, replace=False)]

    C = 45  # 32 SIMD channels, one 8-channel block, 5 scalar ones (AVX2 / DEFAULT); 45 scalar on AVX512
    x = q((2, C, 3, 4))
    w, b, m, v = vec(C, 0.5, 1.5), vec(C), vec(C), vec(C, 0.2, 2.0)
    for relu in (False, True):
        op = torch.ops.quantized.batch_norm2d_relu if relu else torch.ops.quantized.batch_norm2d
        ref = op(x, w, b, m, v, 1e-5, so, zo).int_repr()
        kw = dict(weight=w, bias=b, mean=m, var=v, eps=1e-5, scale=so, zero_point=zo, relu=relu)
        idx = [(1, c, 2, 3) for c in range(C)] + sample(ref)
        for ix in idx:
            e = qref.explain_reduction("batch_norm", x, index=ix, **kw)
            assert e.value == int(ref[ix]), str(e)
        for cap in ("default", "avx2"):
            mine = aten.batch_norm(x, capability=cap, **kw).int_repr()
            for ix in idx[:C]:
                assert qref.explain_reduction("batch_norm", x, index=ix, capability=cap, **kw).value == int(mine[ix])
    x = q((3, 2, 70))  # rows of 70: a 64/32-element body and a tail
    g, bb = vec(70, 0.5, 1.5), vec(70)
    ref = torch.ops.quantized.layer_norm(x, [70], g, bb, 1e-5, so, zo).int_repr()
    kw = dict(normalized_shape=(70,), weight=g, bias=bb, eps=1e-5, scale=so, zero_point=zo)
    idx = [(1, 1, j) for j in range(70)] + sample(ref)
    for ix in idx:
        e = qref.explain_reduction("layer_norm", x, index=ix, **kw)
        assert e.value == int(ref[ix]), str(e)
    for cap in ("default", "avx2"):
        mine = aten.layer_norm(x, capability=cap, **kw).int_repr()
        for ix in idx[:70]:
            assert qref.explain_reduction("layer_norm", x, index=ix, capability=cap, **kw).value == int(mine[ix])
    x = q((2, 6, 5, 7))
    g, bb = vec(6, 0.5, 1.5), vec(6)
    ref = torch.ops.quantized.group_norm(x, 3, g, bb, 1e-5, so, zo).int_repr()
    for ix in sample(ref, 100):
        e = qref.explain_reduction("group_norm", x, index=ix, num_groups=3, weight=g, bias=bb, scale=so, zero_point=zo)
        assert e.value == int(ref[ix]), str(e)
    ref = torch.ops.quantized.instance_norm(x, g, bb, 1e-5, so, zo).int_repr()
    for ix in sample(ref, 100):
        e = qref.explain_reduction("instance_norm", x, index=ix, weight=g, bias=bb, scale=so, zero_point=zo)
        assert e.value == int(ref[ix]), str(e)
    mine = aten.group_norm(x, num_groups=3, weight=g, bias=bb, scale=so, zero_point=zo, capability="default").int_repr()
    for ix in sample(mine, 30):
        e = qref.explain_reduction("group_norm", x, index=ix, num_groups=3, weight=g, bias=bb, scale=so, zero_point=zo,
                                   capability="default")
        assert e.value == int(mine[ix]), str(e)


# ---------------------------------------------------------------------------- Conv3d and transposed convs

ND_CASES = [
    # name, torch module class, args, input shape, weight quantization
    ("conv3d", "Conv3d", dict(kernel_size=(3, 3, 3), stride=(1, 2, 2), padding=(1, 1, 0), dilation=(1, 1, 2),
                              groups=2), (2, 4, 4, 7, 9), 6, "per_channel"),
    ("conv3d-depthwise", "Conv3d", dict(kernel_size=3, padding=1, groups=8), (1, 8, 3, 5, 5), 8, "per_tensor"),
    ("convrelu3d", "ConvReLU3d", dict(kernel_size=(1, 3, 3), padding=(0, 1, 1)), (1, 3, 2, 5, 6), 5, "per_channel"),
    ("conv3d-wzp", "Conv3d", dict(kernel_size=2, stride=2), (1, 3, 4, 4, 5), 4, "asymmetric"),
    # transposed convs run by oneDNN: in_channels == out_channels, as torch's x86 output is wrong otherwise
    # (qref.onednn.transposed_defect); those with output_padding or asymmetric weights run fbgemm under x86 too
    ("convt1d", "ConvTranspose1d", dict(kernel_size=4, stride=3, padding=1), (2, 3, 6), 3, "per_tensor"),
    ("convt2d-outpad", "ConvTranspose2d", dict(kernel_size=3, stride=2, padding=1, output_padding=1), (1, 4, 5, 6),
     6, "per_tensor"),
    ("convt2d-groups-dil", "ConvTranspose2d", dict(kernel_size=(3, 2), stride=(1, 2), padding=(2, 0), dilation=2,
                                                   groups=2), (1, 4, 5, 4), 4, "per_tensor"),
    ("convt3d", "ConvTranspose3d", dict(kernel_size=(2, 3, 3), stride=(2, 1, 2), padding=(0, 1, 1)), (1, 3, 3, 4, 5),
     3, "per_tensor"),
    ("convt2d-wzp", "ConvTranspose2d", dict(kernel_size=3, stride=2), (1, 3, 4, 4), 4, "asymmetric"),
]


def nd_module(case, engine, seed=0):
    """(quantized module, quint8 input, torch's output bytes), packed and run under ``engine``;
    output quantization spanning the float result, so elements land all over [0, 255]."""
    torch = pytest.importorskip("torch")
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq
    import torch.nn.functional as F

    from qref.demo import quantized_engine, quiet_torch_quantization

    name, cls, kw, shape, O, wq = case
    C = shape[1]
    g = kw.get("groups", 1)
    transposed = cls.startswith("ConvTranspose")
    ks = kw["kernel_size"]
    ks = (ks,) * (len(shape) - 2) if isinstance(ks, int) else ks
    wshape = ((C, O // g) if transposed else (O, C // g)) + tuple(ks)
    gen = torch.Generator().manual_seed(seed)
    wi = torch.randint(-128, 128, wshape, dtype=torch.int8, generator=gen)
    if wq == "per_channel":
        scales = torch.rand(O, generator=gen, dtype=torch.float64) * 0.02 + 0.005
        w = torch._make_per_channel_quantized_tensor(wi, scales, torch.zeros(O, dtype=torch.int64), 0)
    else:
        w = torch._make_per_tensor_quantized_tensor(wi, 0.013, 5 if wq == "asymmetric" else 0)
    bias = torch.randn(O, generator=gen) * 3
    x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=gen)
    qx = torch._make_per_tensor_quantized_tensor(x, 0.021, 9)
    if transposed:
        fl = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}[len(shape) - 2]
        ref = fl(qx.dequantize(), w.dequantize(), bias, **{k: v for k, v in kw.items() if k != "kernel_size"})
    else:
        ref = F.conv3d(qx.dequantize(), w.dequantize(), bias, **{k: v for k, v in kw.items() if k != "kernel_size"})
    lo, hi = float(ref.min()), float(ref.max())
    scale = (hi - min(lo, 0.0)) / 255
    zp = int(round(-min(lo, 0.0) / scale))
    mod_cls = getattr(nniq if cls == "ConvReLU3d" else nnq, cls)
    with quantized_engine(engine), quiet_torch_quantization():
        m = mod_cls(C, O, **kw)
        m.set_weight_bias(w, bias)
        m.scale, m.zero_point = scale, zp
        out = m(qx).int_repr().numpy()
    m.test_weight, m.test_bias = w, bias  # fbgemm's direct transposed path cannot unpack its weights
    return m, qx, out


def nd_indices(out, rng, n=24):
    """The first and last element of every channel's corner, and random ones."""
    shp = out.shape
    idx = {(0,) * len(shp), tuple(d - 1 for d in shp), (0, shp[1] - 1) + tuple(d - 1 for d in shp[2:]),
           (shp[0] - 1, 0) + (0,) * (len(shp) - 2)}
    idx |= {tuple(int(v) for v in np.unravel_index(i, shp)) for i in rng.choice(out.size, min(n, out.size),
                                                                              replace=False)}
    return sorted(idx)


@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
@pytest.mark.parametrize("case", ND_CASES, ids=[c[0] for c in ND_CASES])
def test_explain_nd_equals_torch(case, engine):
    """Conv3d and transposed convs: explain's derivation gives torch's byte for corner and random
    elements, under both engines (x86 on an AVX512-VNNI host packs symmetric ones for oneDNN); on
    fbgemm its acc, raw and y also equal qref's kernel intermediates."""
    m, qx, out = nd_module(case, engine)
    p = qref.from_torch(m)
    x = qx.int_repr().numpy()
    rng = np.random.default_rng(len(case[0]))
    n_no_input = n_sat = 0
    inter = None
    full = qx.shape[1] // m.groups * int(np.prod(m.kernel_size))  # taps of one output element
    if p.engine == "fbgemm":
        _, inter = p(x, input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point(), return_intermediates=True)
    for ix in nd_indices(out, rng):
        e = explain(p, x, ix, input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point())
        where = f"{case[0]} engine={engine} ({p.engine}) index={ix}"
        assert e.value == int(out[ix]), where
        assert e.index == ix and e.kind == case[1].replace("ReLU", ""), where
        if inter is not None:
            assert e.acc == int(inter.acc[ix]) and e.raw == int(inter.raw[ix]), where
            assert np.float32(e.y).tobytes() == inter.y[ix].tobytes(), where
        n_no_input += any(t.padded for t in e.taps) or e.K < full  # oneDNN leaves such taps out
        n_sat += bool(e.saturated_pairs)
        text = str(e)
        assert f"= {e.value}" in text.splitlines()[0]
        json.dumps(e.to_dict())
    if case[0] not in ("conv3d-wzp",):  # the others all have taps without input at their borders
        assert n_no_input > 0, "some border element must have taps without input"
    if case[0] == "conv3d-depthwise" and p.engine == "fbgemm":
        assert n_sat > 0, "fbgemm's depthwise 3D kernel saturates int16 tap pairs: some element must show one"
    if p.engine == "fbgemm":
        # an AVX2 host's arithmetic (the GEMM paths saturate int16 pairs there): equal to qref's kernel
        _, i2 = p(x, input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point(), isa="avx2",
                  return_intermediates=True)
        for ix in nd_indices(out, rng, 8):
            e = explain(p, x, ix, isa="avx2", input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point())
            assert (e.acc, e.raw) == (int(i2.acc[ix]), int(i2.raw[ix])), ix
            assert np.float32(e.y).tobytes() == i2.y[ix].tobytes(), ix
    else:
        assert e.hand and "fbgemm's formula" in [h.name for h in e.hand]
        # the AMX class's arithmetic (float compensation in the brgemm micro-kernel): equal to qref's kernel
        import warnings

        from qref.common.errors import OneDNNNotSupportedError

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the amx class warns where it assumes a kernel
            try:
                amx = p(x, input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point(), isa="amx")
            except OneDNNNotSupportedError:
                amx = None  # e.g. an AMX build of oneDNN's deconvolution: not reproduced, not explained
            for ix in nd_indices(out, rng, 8) if amx is not None else []:
                e = explain(p, x, ix, isa="amx", input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point())
                assert e.value == int(amx[ix]), ix
    # through the module: torch's own value alongside
    ix = tuple(d - 1 for d in out.shape)
    e = explain(m, qx, ix)
    assert e.value == e.torch_value == int(out[ix])
    assert explain(m, qx, int(np.ravel_multi_index(ix, out.shape))).value == int(out[ix])


def test_explain_nd_bad_input():
    """Conv3d / transposed: a wrong index or input shape is a clear ValueError naming it."""
    m, qx, out = nd_module(ND_CASES[0], "fbgemm")
    with pytest.raises(ValueError, match="index"):
        explain(m, qx, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="out of range"):
        explain(m, qx, (0, out.shape[1], 0, 0, 0))
    p = qref.from_torch(m)
    with pytest.raises(ValueError, match="qx has shape"):
        explain(p, qx.int_repr().numpy()[0], (0, 0, 0, 0), input_scale=0.1, input_zero_point=0)
    mt, qt, _ = nd_module(ND_CASES[5], "fbgemm")
    with pytest.raises(ValueError, match="input channels"):
        explain(qref.from_torch(mt), qt.int_repr().numpy()[:, :2], (0, 0, 0, 0), input_scale=0.1, input_zero_point=0)



@pytest.mark.parametrize("stride", [(1, 1), (1, 2)])
def test_explain_direct_transposed_equals_torch(stride):
    """fbgemm's direct transposed path (groups 1, channels % 8 == 0, kernel height 2, no padding):
    only the taps that reach a position, per-position column offsets; == torch for every element of
    a small layer (qref.from_torch cannot read such a module's weights: params from the weight).
    stride_h == 2 is left out: torch's direct kernel is wrong there (qref.known_torch_defect)."""
    from qref.bridge.layers import ConvTransposeParams
    from qref.torch_bridge import UnsupportedModuleError

    case = ("convt2d-direct", "ConvTranspose2d", dict(kernel_size=(2, 3), stride=stride), (1, 8, 3, 4), 16,
            "asymmetric")
    m, qx, out = nd_module(case, "fbgemm", seed=stride[1])
    with pytest.raises(UnsupportedModuleError):
        qref.from_torch(m)
    w = m.test_weight
    p = ConvTransposeParams(weight=w.int_repr().numpy(), weight_scale=np.array([w.q_scale()], np.float64),
                            weight_zero_point=np.array([w.q_zero_point()], np.int32), per_channel=False,
                            bias=m.test_bias.numpy(), output_scale=float(m.scale), output_zero_point=int(m.zero_point),
                            relu=False, module_type="ConvTranspose2d", stride=stride, padding=(0, 0),
                            dilation=(1, 1), output_padding=(0, 0), groups=1)
    x = qx.int_repr().numpy()
    assert p.plan(x.shape).path == "direct"
    _, inter = p(x, input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point(), return_intermediates=True)
    n_sat = 0
    for ix in np.ndindex(*out.shape):
        e = explain(p, x, ix, input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point())
        assert e.path == "direct" and e.value == int(out[ix]), ix
        assert (e.acc, e.raw) == (int(inter.acc[ix]), int(inter.raw[ix])), ix
        assert np.float32(e.y).tobytes() == inter.y[ix].tobytes(), ix
        n_sat += bool(e.saturated_pairs)
    assert n_sat > 0, "the direct path saturates int16 channel pairs: some element must show one"
    assert "direct path" in str(e)
