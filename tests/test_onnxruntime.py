"""qref vs ONNX Runtime (CPU execution provider, default session options), in process.

Models are quantized with ORT's own tools (quant_pre_process, quantize_static in QOperator and QDQ
formats, quantize_dynamic); qref.onnx.check recomputes every int8 node of the graph the session
runs from ORT's intermediate values and compares with ==, and qref.onnx.run must equal
session.run. Single-node models pin each kernel's arithmetic on adversarial inputs.
"""

import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx", reason="the onnx extra (onnx, onnxruntime) is not installed")
ort = pytest.importorskip("onnxruntime", reason="the onnx extra (onnx, onnxruntime) is not installed")

from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402

import qref  # noqa: E402
import qref.onnx as qo  # noqa: E402
from qref.engines import mlas  # noqa: E402

F32 = np.float32
OPSETS = [h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)]


def _session(m):
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])


# ------------------------------------------------------------------ float networks, ORT-quantized


def _conv_net(seed=0):
    """Residual + depthwise + concat + max/avg pooling + sigmoid-mul + leaky relu + global average
    pool + a final Gemm, float32, built with onnx.helper."""
    rs = np.random.RandomState(seed)

    def w(name, *shape, scale=0.3):
        return numpy_helper.from_array((rs.randn(*shape) * scale).astype(F32), name)

    inits = [w("w1", 16, 3, 3, 3), w("b1", 16, scale=0.1), w("w2", 16, 1, 3, 3), w("b2", 16, scale=0.1),
             w("w3", 16, 16, 1, 1), w("b3", 16, scale=0.1), w("w4", 8, 16, 3, 3, scale=0.1), w("b4", 8, scale=0.1),
             w("wf", 10, 24, scale=0.2), w("bf", 10, scale=0.1)]
    n = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=16),
        h.make_node("Conv", ["c2", "w3", "b3"], ["c3"]),
        h.make_node("Add", ["c3", "r1"], ["a1"]),
        h.make_node("Relu", ["a1"], ["r2"]),
        h.make_node("Conv", ["r2", "w4", "b4"], ["c4"], pads=[1, 1, 1, 1], strides=[1, 1]),
        h.make_node("Concat", ["r2", "c4"], ["cat"], axis=1),
        h.make_node("MaxPool", ["cat"], ["mp"], kernel_shape=[2, 2], strides=[2, 2]),
        h.make_node("AveragePool", ["mp"], ["ap"], kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]),
        h.make_node("Sigmoid", ["ap"], ["sg"]),
        h.make_node("Mul", ["sg", "ap"], ["sw"]),
        h.make_node("LeakyRelu", ["sw"], ["lr"], alpha=0.1),
        h.make_node("GlobalAveragePool", ["lr"], ["gp"]),
        h.make_node("Flatten", ["gp"], ["fl"]),
        h.make_node("Gemm", ["fl", "wf", "bf"], ["y"], transB=1),
    ]
    g = h.make_graph(n, "convnet", [h.make_tensor_value_info("x", T.FLOAT, [1, 3, 16, 16])],
                     [h.make_tensor_value_info("y", T.FLOAT, [1, 10])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def _matmul_net(seed=1):
    """Token-style MLP: MatMul + Add + Relu + MatMul (QLinearMatMul / MatMulInteger paths)."""
    rs = np.random.RandomState(seed)
    inits = [numpy_helper.from_array((rs.randn(32, 48) * 0.2).astype(F32), "w1"),
             numpy_helper.from_array((rs.randn(48) * 0.1).astype(F32), "b1"),
             numpy_helper.from_array((rs.randn(48, 16) * 0.2).astype(F32), "w2")]
    n = [h.make_node("MatMul", ["x", "w1"], ["m1"]), h.make_node("Add", ["m1", "b1"], ["a1"]),
         h.make_node("Relu", ["a1"], ["r1"]), h.make_node("MatMul", ["r1", "w2"], ["y"])]
    g = h.make_graph(n, "mlp", [h.make_tensor_value_info("x", T.FLOAT, [2, 5, 32])],
                     [h.make_tensor_value_info("y", T.FLOAT, [2, 5, 16])], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17)])
    m.ir_version = 8
    return m


class _Reader:
    def __init__(self, name, shape, n=4, seed=0):
        self.data = iter([{name: np.random.RandomState(seed + i).randn(*shape).astype(F32)} for i in range(n)])

    def get_next(self):
        return next(self.data, None)


def _quantize(tmp_path, make, shape, fmt, act, per_channel, tag):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    f = tmp_path / f"{tag}_f.onnx"
    onnx.save(make(), str(f))
    p = tmp_path / f"{tag}_p.onnx"
    quant_pre_process(str(f), str(p))
    out = tmp_path / f"{tag}_{fmt}_{act}_{int(per_channel)}.onnx"

    class R(_Reader, CalibrationDataReader):
        pass

    quantize_static(str(p), str(out), R("x", shape), quant_format=getattr(QuantFormat, fmt),
                    activation_type=getattr(QuantType, act), weight_type=QuantType.QInt8, per_channel=per_channel)
    return str(out)


@pytest.fixture(scope="module")
def tmp_models(tmp_path_factory):
    return tmp_path_factory.mktemp("ort_models")


def _assert_check(path, feeds):
    rep = qo.check(path, feeds)
    assert rep.int8_nodes, "the model has no int8 node"
    assert all(n.computed_by == "qref" for n in rep.int8_nodes), rep.summary()
    assert rep.ok, rep.summary()
    got = qo.run(path, feeds)
    want = _session(onnx.load(path)).run(None, feeds)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape
        assert np.array_equal(g.view(np.uint32) if g.dtype == F32 else g, w.view(np.uint32) if w.dtype == F32 else w)
    return rep


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
@pytest.mark.parametrize("act", ["QUInt8", "QInt8"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_static_conv_network_every_node_and_end_to_end(tmp_models, fmt, act, per_channel):
    path = _quantize(tmp_models, _conv_net, (1, 3, 16, 16), fmt, act, per_channel, "conv")
    feeds = {"x": (np.random.RandomState(11).randn(1, 3, 16, 16) * 1.5).astype(F32)}
    rep = _assert_check(path, feeds)
    ops = {n.op.split(":")[-1] for n in rep.int8_nodes}
    # what the session runs: QLinear kernels for the uint8 graphs in both formats
    if act == "QUInt8":
        assert {"QLinearConv", "QLinearAdd", "QLinearConcat", "QLinearAveragePool", "QLinearSigmoid",
                "QLinearMul", "QLinearLeakyRelu", "QLinearGlobalAveragePool", "QGemm"} <= ops, ops


@pytest.mark.parametrize("fmt", ["QOperator", "QDQ"])
@pytest.mark.parametrize("act", ["QUInt8", "QInt8"])
def test_static_matmul_network(tmp_models, fmt, act):
    path = _quantize(tmp_models, _matmul_net, (2, 5, 32), fmt, act, False, "mlp")
    feeds = {"x": np.random.RandomState(3).randn(2, 5, 32).astype(F32)}
    _assert_check(path, feeds)


@pytest.mark.parametrize("make,shape", [(_conv_net, (1, 3, 16, 16)), (_matmul_net, (2, 5, 32))])
@pytest.mark.parametrize("wtype", ["QInt8", "QUInt8"])
def test_dynamic_quantization(tmp_models, make, shape, wtype):
    from onnxruntime.quantization import QuantType, quantize_dynamic

    f = tmp_models / f"dyn_{make.__name__}_f.onnx"
    onnx.save(make(), str(f))
    out = tmp_models / f"dyn_{make.__name__}_{wtype}.onnx"
    quantize_dynamic(str(f), str(out), weight_type=getattr(QuantType, wtype))
    feeds = {"x": np.random.RandomState(5).randn(*shape).astype(F32)}
    rep = _assert_check(str(out), feeds)
    ops = {n.op.split(":")[-1] for n in rep.int8_nodes}
    assert "DynamicQuantizeLinear" in ops or "DynamicQuantizeMatMul" in ops, ops


def test_model_proto_and_qref_dispatch(tmp_models):
    path = _quantize(tmp_models, _conv_net, (1, 3, 16, 16), "QOperator", "QUInt8", True, "dispatch")
    feeds = {"x": np.random.RandomState(2).randn(1, 3, 16, 16).astype(F32)}
    rep = qref.check(onnx.load(path), feeds)
    assert isinstance(rep, qo.OnnxReport) and rep.ok, rep.summary()
    got = qref.run(path, feeds)
    want = _session(onnx.load(path)).run(None, feeds)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))
    got = qref.run(os.fspath(path), feeds)
    assert all(np.array_equal(g, w) for g, w in zip(got, want))


# ------------------------------------------------------------------------ single-node models


def _single(op, inputs, inits, out_type, domain="", **attrs):
    """One node; ``inputs``: (name, array) fed at run time; ``inits``: (name, array) constants."""
    node = h.make_node(op, [n for n, _ in inputs] + [n for n, _ in inits], ["y"], domain=domain, **attrs)
    g = h.make_graph([node], "one", [h.make_tensor_value_info(n, h.np_dtype_to_tensor_dtype(a.dtype), a.shape)
                                     for n, a in inputs],
                     [h.make_tensor_value_info("y", out_type, None)],
                     [numpy_helper.from_array(np.asarray(a), n) for n, a in inits])
    m = h.make_model(g, opset_imports=OPSETS)
    m.ir_version = 8
    return m


def _et(dt):
    return T.UINT8 if np.dtype(dt) == np.uint8 else T.INT8


def _qrange(dt):
    return (0, 255) if np.dtype(dt) == np.uint8 else (-128, 127)


def _check_single(m, feeds):
    rep = qo.check(m, feeds)
    assert rep.ok and rep.int8_nodes, rep.summary()
    return rep


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
@pytest.mark.parametrize("shapes", [((4, 64), (4, 64)), ((1,), (4, 64)), ((4, 64), (1,)), ((4, 1), (4, 64)),
                                    ((1, 64), (4, 64))])
def test_qlinear_add_mul_broadcasts(dt, shapes):
    rs = np.random.RandomState(abs(hash((str(dt), shapes))) % 2**31)
    lo, hi = _qrange(dt)
    for op in ("QLinearAdd", "QLinearMul"):
        for _ in range(3):
            a = rs.randint(lo, hi + 1, size=shapes[0]).astype(dt)
            b = rs.randint(lo, hi + 1, size=shapes[1]).astype(dt)
            sc = [F32(rs.uniform(0.002, 0.2)) for _ in range(3)]
            zp = [np.array(rs.randint(lo, hi + 1), dtype=dt) for _ in range(3)]
            m = h.make_model(h.make_graph(
                [h.make_node(op, ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["y"], domain="com.microsoft")], "g",
                [h.make_tensor_value_info("a", _et(dt), a.shape), h.make_tensor_value_info("b", _et(dt), b.shape)],
                [h.make_tensor_value_info("y", _et(dt), None)],
                [numpy_helper.from_array(np.array(v, F32), n) for n, v in zip(("sa", "sb", "sc"), sc)]
                + [numpy_helper.from_array(v, n) for n, v in zip(("za", "zb", "zc"), zp)]), opset_imports=OPSETS)
            m.ir_version = 8
            _check_single(m, {"a": a, "b": b})


def test_qlinear_add_uses_fused_multiply_adds():
    """MlasQLinearAddKernelAvx2Helper (qladd_avx2.cpp) accumulates each element with two FMAs:
    qref matches ORT on every pair of bytes, and the unfused formula does not."""
    rs = np.random.RandomState(1)
    a = np.repeat(np.arange(256), 256).astype(np.uint8)
    b = np.tile(np.arange(256), 256).astype(np.uint8)
    unfused_mismatches = 0
    for _ in range(30):
        sa, sb, sc = (F32(rs.uniform(0.001, 0.1)) for _ in range(3))
        za, zb, zc = (int(v) for v in rs.randint(0, 256, size=3))
        m = h.make_model(h.make_graph(
            [h.make_node("QLinearAdd", ["a", "sa", "za", "b", "sb", "zb", "sc", "zc"], ["y"], domain="com.microsoft")],
            "g", [h.make_tensor_value_info("a", T.UINT8, [65536]), h.make_tensor_value_info("b", T.UINT8, [65536])],
            [h.make_tensor_value_info("y", T.UINT8, None)],
            [numpy_helper.from_array(np.array(v, F32), n) for n, v in (("sa", sa), ("sb", sb), ("sc", sc))]
            + [numpy_helper.from_array(np.array(v, np.uint8), n) for n, v in (("za", za), ("zb", zb), ("zc", zc))]),
            opset_imports=OPSETS)
        m.ir_version = 8
        want = _session(m).run(None, {"a": a, "b": b})[0]
        got = mlas.qlinear_binary("add", a, sa, za, b, sb, zb, sc, zc)
        assert np.array_equal(got, want)
        ra, rb = F32(sa / sc), F32(sb / sc)
        fixed = F32(zc) - F32(F32(ra * F32(za)) + F32(rb * F32(zb)))
        y = F32(a.astype(F32) * ra) + F32(F32(b.astype(F32) * rb) + fixed)
        unfused_mismatches += int(np.count_nonzero(np.clip(np.rint(y), 0, 255).astype(np.uint8) != want))
    assert unfused_mismatches > 0


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_lookup_table_ops_every_byte(dt):
    """QLinearSigmoid (MLAS's FMA3 logistic), QLinearLeakyRelu and QLinearConcat's requantizing
    copy, on all 256 input bytes, for several scale pairs."""
    rs = np.random.RandomState(4)
    lo, hi = _qrange(dt)
    x = np.arange(lo, hi + 1).astype(dt).reshape(1, 256)
    for _ in range(8):
        sx, sy = F32(rs.uniform(0.005, 0.2)), F32(rs.uniform(0.001, 0.05))
        zx, zy = (np.array(rs.randint(lo, hi + 1), dt) for _ in range(2))
        consts = [("sx", np.array(sx)), ("zx", zx), ("sy", np.array(sy)), ("zy", zy)]
        for op, kw in (("QLinearSigmoid", {}), ("QLinearLeakyRelu", {"alpha": float(rs.uniform(0.01, 0.3))})):
            _check_single(_single(op, [("x", x)], consts, _et(dt), domain="com.microsoft", **kw), {"x": x})
        m = _single("QLinearConcat", [], [("sy", np.array(sy)), ("zy", zy), ("x0", x), ("s0", np.array(sx)),
                                          ("z0", zx), ("x1", x), ("s1", np.array(sy)), ("z1", zy)],
                    _et(dt), domain="com.microsoft", axis=1)
        m.graph.initializer.remove(next(i for i in m.graph.initializer if i.name == "x0"))
        m.graph.input.append(h.make_tensor_value_info("x0", _et(dt), x.shape))
        _check_single(m, {"x0": x})


def test_logistic_is_mlas_fma3_kernel():
    """The table of QLinearSigmoid comes from MlasComputeLogistic: ORT's float Sigmoid runs the
    same kernel, so qref's logistic equals it on a sweep of floats."""
    x = np.linspace(-20, 20, 100003).astype(F32)
    m = _single("Sigmoid", [("x", x)], [], T.FLOAT)
    want = _session(m).run(None, {"x": x})[0]
    assert np.array_equal(mlas.logistic(x).view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
@pytest.mark.parametrize("wdt", [np.int8, np.uint8])
@pytest.mark.parametrize("groups,w_zp_nonzero", [(1, False), (1, True), (4, False), (8, True)])
def test_qlinear_conv_single(dt, wdt, groups, w_zp_nonzero):
    if dt == np.int8 and wdt == np.uint8:
        pytest.skip("ORT registers QLinearConv<int8> with int8 weights only")
    rs = np.random.RandomState(groups * 7 + int(w_zp_nonzero))
    lo, hi = _qrange(dt)
    wlo, whi = _qrange(wdt)
    C, O = 8, 8
    x = rs.randint(lo, hi + 1, size=(2, C, 7, 9)).astype(dt)
    w = rs.randint(wlo, whi + 1, size=(O, C // groups, 3, 3)).astype(wdt)
    ws = rs.uniform(0.002, 0.02, size=O).astype(F32)
    wz = np.full(O, rs.randint(wlo, whi + 1) if w_zp_nonzero else 0, dtype=wdt)
    b = rs.randint(-5000, 5000, size=O).astype(np.int32)
    consts = [("xs", np.array(F32(0.05))), ("xz", np.array(rs.randint(lo, hi + 1), dt)), ("w", w), ("ws", ws),
              ("wz", wz), ("ys", np.array(F32(0.3))), ("yz", np.array(rs.randint(lo, hi + 1), dt)), ("b", b)]
    m = _single("QLinearConv", [("x", x)], consts, _et(dt), pads=[1, 0, 2, 1], strides=[1, 2], group=groups)
    _check_single(m, {"x": x})


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_requantize_clamps_in_float_before_rounding(dt):
    """A tiny output scale pushes products past 2^31: MlasRequantizeOutput clamps in float first,
    so they saturate to the range ends (not cvtps2dq's INT_MIN)."""
    lo, hi = _qrange(dt)
    rs = np.random.RandomState(9)
    x = rs.randint(lo, hi + 1, size=(1, 16, 5, 5)).astype(dt)
    w = rs.randint(-128, 128, size=(8, 16, 3, 3)).astype(np.int8)
    consts = [("xs", np.array(F32(1.0))), ("xz", np.array(0, dt)), ("w", w), ("ws", np.array(F32(1.0))),
              ("wz", np.array(0, np.int8)), ("ys", np.array(F32(1e-6))), ("yz", np.array(0, dt))]
    m = _single("QLinearConv", [("x", x)], consts, _et(dt), pads=[1, 1, 1, 1])
    _check_single(m, {"x": x})
    y = qo.run(m, {"x": x})[0]
    assert set(np.unique(y)) <= {lo, hi} | {0}


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_matmul_integer_and_qlinear_matmul(dt):
    rs = np.random.RandomState(6)
    lo, hi = _qrange(dt)
    a = rs.randint(lo, hi + 1, size=(3, 4, 37)).astype(dt)
    b = rs.randint(-128, 128, size=(37, 11)).astype(np.int8)
    za = np.array(rs.randint(lo, hi + 1), dt)
    m = _single("MatMulInteger", [("a", a)], [("b", b), ("za", za), ("zb", np.array(3, np.int8))], T.INT32)
    _check_single(m, {"a": a})
    consts = [("sa", np.array(F32(0.03))), ("za", za), ("b", b), ("sb", rs.uniform(0.001, 0.01, 11).astype(F32)),
              ("zb", np.zeros(11, np.int8)), ("sy", np.array(F32(0.2))), ("zy", np.array(rs.randint(lo, hi + 1), dt))]
    _check_single(_single("QLinearMatMul", [("a", a)], consts, _et(dt)), {"a": a})


def test_quantize_dequantize_and_dynamic_quantize_linear():
    rs = np.random.RandomState(8)
    x = (rs.randn(4, 8, 5) * 3).astype(F32)
    # ties: values exactly half-way between quantization steps
    x[0, 0, :] = np.array([0.5, 1.5, 2.5, -0.5, -1.5], F32) * F32(0.25)
    for dt in (np.uint8, np.int8):
        lo, hi = _qrange(dt)
        zp = np.array((lo + hi) // 2 + 3, dt)
        _check_single(_single("QuantizeLinear", [("x", x)], [("s", np.array(F32(0.25))), ("z", zp)], _et(dt)),
                      {"x": x})
        q = rs.randint(lo, hi + 1, size=(4, 8, 5)).astype(dt)
        _check_single(_single("DequantizeLinear", [("q", q)], [("s", rs.uniform(0.01, 0.1, 8).astype(F32)),
                                                               ("z", rs.randint(lo, hi + 1, 8).astype(dt))],
                              T.FLOAT, axis=1), {"q": q})
    node = h.make_node("DynamicQuantizeLinear", ["x"], ["y", "ys", "yz"])
    g = h.make_graph([node], "d", [h.make_tensor_value_info("x", T.FLOAT, x.shape)],
                     [h.make_tensor_value_info(n, t, None) for n, t in (("y", T.UINT8), ("ys", T.FLOAT),
                                                                          ("yz", T.UINT8))])
    m = h.make_model(g, opset_imports=OPSETS)
    m.ir_version = 8
    _check_single(m, {"x": x})


@pytest.mark.parametrize("dt", [np.uint8, np.int8])
def test_pools(dt):
    rs = np.random.RandomState(12)
    lo, hi = _qrange(dt)
    x = rs.randint(lo, hi + 1, size=(2, 5, 9, 7)).astype(dt)
    consts = [("sx", np.array(F32(0.07))), ("zx", np.array(rs.randint(lo, hi + 1), dt)),
              ("sy", np.array(F32(0.05))), ("zy", np.array(rs.randint(lo, hi + 1), dt))]
    for cip in (0, 1):
        m = _single("QLinearAveragePool", [("x", x)], consts, _et(dt), domain="com.microsoft", kernel_shape=[3, 2],
                    strides=[2, 1], pads=[1, 0, 1, 1], count_include_pad=cip)
        _check_single(m, {"x": x})
    _check_single(_single("QLinearGlobalAveragePool", [("x", x)], consts, _et(dt), domain="com.microsoft",
                          channels_last=0), {"x": x})
    _check_single(_single("MaxPool", [("x", x)], [], _et(dt), kernel_shape=[3, 3], strides=[2, 2],
                          pads=[1, 1, 1, 1]), {"x": x})


# --------------------------------------------------------------------- cross-runtime, explain


def test_ort_layer_outputs_this_host_matches_ort():
    """The host column this CPU runs equals ORT's QLinearConv on the quantizer's int32 bias."""
    rs = np.random.RandomState(21)
    x = rs.randint(0, 256, size=(1, 16, 6, 6)).astype(np.uint8)
    w = rs.randint(-128, 128, size=(8, 16, 3, 3)).astype(np.int8)
    ws = rs.uniform(0.002, 0.01, 8).astype(F32)
    bias = rs.randn(8).astype(F32)
    out = qo.ort_layer_outputs(x, w, bias, x_scale=0.02, x_zero_point=17, w_scale=ws, y_scale=0.1, y_zero_point=5,
                               pads=(1, 1, 1, 1))
    consts = [("xs", np.array(F32(0.02))), ("xz", np.array(17, np.uint8)), ("w", w), ("ws", ws),
              ("wz", np.zeros(8, np.int8)), ("ys", np.array(F32(0.1))), ("yz", np.array(5, np.uint8)),
              ("b", out["bias_int32"])]
    want = _session(_single("QLinearConv", [("x", x)], consts, T.UINT8, pads=[1, 1, 1, 1])).run(None, {"x": x})[0]
    assert np.array_equal(out[out["this_host"]], want)
    assert out["from_formula"] == [h_ for h_ in ("vnni", "avx2") if h_ != out["this_host"]]
    # large activations and weights of one sign: the AVX2 column saturates int16 pairs
    x2 = np.full((1, 16, 4, 4), 255, np.uint8)
    w2 = np.full((8, 16, 3, 3), 127, np.int8)
    o2 = qo.ort_layer_outputs(x2, w2, None, x_scale=0.02, x_zero_point=0, w_scale=0.001, y_scale=50.0,
                              y_zero_point=0)
    assert not np.array_equal(o2["avx2"], o2["vnni"])


def test_ort_bias_matches_quantizer(tmp_models):
    """ort_bias_int32 equals the int32 bias quantize_static writes (per-channel conv)."""
    path = _quantize(tmp_models, _conv_net, (1, 3, 16, 16), "QOperator", "QUInt8", True, "bias")
    m = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    node = next(n for n in m.graph.node if n.op_type == "QLinearConv")
    xs, ws, b32 = inits[node.input[1]], inits[node.input[4]], inits[node.input[8]]
    fb = numpy_helper.to_array(next(i for i in _conv_net().graph.initializer if i.name == "b1"))
    assert np.array_equal(qo.ort_bias_int32(fb, xs, ws, ws.size), b32)


def test_explain_element(tmp_models):
    path = _quantize(tmp_models, _conv_net, (1, 3, 16, 16), "QOperator", "QUInt8", False, "explain")
    feeds = {"x": np.random.RandomState(2).randn(1, 3, 16, 16).astype(F32)}
    opt_conv = next(n for n in qo._graph.optimized_model(onnx.load(path)).graph.node if n.op_type == "QLinearConv")
    e = qo.explain(path, feeds, opt_conv.output[0], (0, 3, 4, 5))
    assert e.value == e.ort_value
    assert "round half to even" in str(e)
    ex = qref.explain(path, feeds, opt_conv.output[0], (0, 3, 4, 5))
    assert ex.value == e.value


def test_bad_input_errors(tmp_models):
    with pytest.raises(TypeError, match="feeds"):
        qo.check(_conv_net(), [1, 2])
    with pytest.raises(ValueError, match="no such file"):
        qo.run("/nonexistent/model.onnx", {})
    with pytest.raises(ValueError, match="host"):
        qo.ort_host("sse")
    with pytest.raises(TypeError, match="x_u8"):
        qo.ort_layer_outputs(np.zeros((1, 1, 2, 2), np.int8), np.zeros((1, 1, 1, 1), np.int8), None, x_scale=1,
                             x_zero_point=0, w_scale=1, y_scale=1, y_zero_point=0)


def test_cli_check_onnx(tmp_models, capsys):
    from qref.cli import main

    path = _quantize(tmp_models, _conv_net, (1, 3, 16, 16), "QDQ", "QUInt8", False, "cli")
    rc = main(["check", path, "--input-shape", "1,3,16,16"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "QLinearConv" in out and "OK" in out
