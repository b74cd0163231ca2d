"""qref.runtimes: each runtime column is that runtime's bytes (checked against torch where it runs here)."""

import warnings

import numpy as np
import pytest

import qref

torch = pytest.importorskip("torch")
nnq = pytest.importorskip("torch.ao.nn.quantized")
nniq = pytest.importorskip("torch.ao.nn.intrinsic.quantized")
warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.fc = torch.nn.Linear(16 * 6 * 6, 10)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.dw(self.conv(self.quant(x)))
        return self.dequant(self.fc(x.flatten(1)))


def _converted(engine):
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        torch.manual_seed(0)
        x = torch.randn(2, 8, 6, 6)
        m = _Net().eval()
        m.qconfig = torch.ao.quantization.get_default_qconfig(engine)
        p = torch.ao.quantization.prepare(m)
        p(x)
        return torch.ao.quantization.convert(p), x
    finally:
        torch.backends.quantized.engine = old


def test_report_lists_every_layer_and_runtime():
    q, x = _converted("fbgemm")
    rep = qref.runtimes(q, x)
    assert [r.name for r in rep.rows] == ["conv", "dw", "fc"]
    names = [r.name for r in rep.runtimes]
    assert names[:4] == ["fbgemm-vnni", "fbgemm-avx2", "x86", "qnnpack"]
    for row in rep.rows:
        assert row.numel > 0 and set(row.differing) >= set(names[1:4]) and not row.errors
    assert "qnnpack" in str(rep)


@pytest.mark.skipif("qnnpack" not in torch.backends.quantized.supported_engines, reason="no qnnpack engine")
def test_qnnpack_column_is_torch_qnnpack_on_the_same_integers():
    """The qnnpack column for an fbgemm-converted layer equals torch's qnnpack run on a module packed
    under qnnpack with the same quantized weight and bias."""
    q, x = _converted("fbgemm")
    rt = {r.name: r for r in qref.runtimes.RUNTIMES}
    qx = q.quant(x)
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"
    try:
        twin = nnq.Conv2d(8, 16, 3, padding=1)
        twin.set_weight_bias(q.conv.weight(), q.conv.bias())
        twin.scale, twin.zero_point = q.conv.scale, q.conv.zero_point
        expected = twin(qx).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = old
    params = qref.from_torch(q.conv)
    got = rt["qnnpack"].fn(params, qx).int_repr().numpy()
    assert np.array_equal(got, expected)


def test_x86_column_is_torch_x86_engine_on_the_same_integers():
    """The x86 column for fbgemm-converted conv layers equals torch's x86 engine run here on a twin packed
    under x86 with the same quantized weight and bias. Tie-rich layers (small and large, one image and two:
    on an AMX CPU oneDNN picks an AMX or a VNNI build per shape, whose scales round apart; the column reads
    which from torch rather than assuming one)."""
    from oracle import build, spec, torch_operands, torch_quantized_conv2d

    rt = {r.name: r for r in qref.runtimes.RUNTIMES}
    for i, (C, O, k, g, N, S) in enumerate([(8, 16, 3, 1, 2, 9), (32, 64, 1, 1, 1, 7), (128, 128, 1, 1, 1, 2),
                                            (64, 64, 3, 1, 1, 4), (16, 16, 3, 16, 2, 8), (48, 96, 3, 3, 1, 5)]):
        s = spec(C=C, O=O, KH=k, KW=k, groups=g, H=S, W=S, N=N, padding=k // 2, seed=40 + i, tie=True,
                 relu=bool(i % 2), per_channel=bool(i % 3))
        b = build(s)
        qx, qw, bias = torch_operands(s, b)
        expected = torch_quantized_conv2d(qx, qw, bias, s["stride"], s["padding"], s["dilation"], g, s["relu"],
                                          b["out_scale"], b["out_zp"], "x86")
        old = torch.backends.quantized.engine
        torch.backends.quantized.engine = "fbgemm"
        try:
            m = (nniq.ConvReLU2d if s["relu"] else nnq.Conv2d)(C, O, k, padding=k // 2, groups=g)
            m.set_weight_bias(qw, bias)
            m.scale, m.zero_point = b["out_scale"], b["out_zp"]
        finally:
            torch.backends.quantized.engine = old
        got = rt["x86"].fn(qref.from_torch(m), qx).int_repr().numpy()
        assert np.array_equal(got, expected), (C, O, k, g, N, S, int((got != expected).sum()))


def test_register_adds_a_column():
    reg = qref.runtimes.register
    table = qref.runtimes.RUNTIMES
    before = list(table)
    try:
        reg("same", "fbgemm again", "formula", table[0].fn)
        q, x = _converted("fbgemm")
        rep = qref.runtimes(q, x)
        assert all(row.differing["same"] == 0 for row in rep.rows)
    finally:
        table[:] = before


# ---------------------------------------------------------------------------- ONNX Runtime columns


class _Geometry(torch.nn.Module):
    """Per-tensor weights (symmetric, and asymmetric for c1 and fc), conv geometry ORT must map: stride,
    asymmetric padding, dilation, groups; a 1-D conv; a Linear without bias; a fused ReLU."""

    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.conv = torch.nn.Conv2d(4, 8, 3, stride=2, padding=(1, 2), dilation=2, groups=2)
        self.relu = torch.nn.ReLU()
        self.c1 = torch.nn.Conv1d(8, 6, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(6 * 2, 5, bias=False)
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.relu(self.conv(self.quant(x)))
        x = self.c1(x.flatten(2)[:, :, :4])
        return self.dequant(self.fc(x.flatten(1)))


def _geometry():
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        torch.manual_seed(1)
        x = torch.randn(2, 4, 9, 9)
        m = _Geometry().eval()
        with torch.no_grad():
            m.fc.weight.add_(0.2)  # a lopsided weight range: a non-zero weight zero point
        torch.ao.quantization.fuse_modules(m, [["conv", "relu"]], inplace=True)
        m.qconfig = torch.ao.quantization.QConfig(
            activation=torch.ao.quantization.MinMaxObserver.with_args(dtype=torch.quint8),
            weight=torch.ao.quantization.MinMaxObserver.with_args(dtype=torch.qint8,
                                                                  qscheme=torch.per_tensor_symmetric))
        asym = torch.ao.quantization.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_affine)
        m.c1.qconfig = m.fc.qconfig = torch.ao.quantization.QConfig(activation=m.qconfig.activation, weight=asym)
        p = torch.ao.quantization.prepare(m)
        p(x)
        return torch.ao.quantization.convert(p), x
    finally:
        torch.backends.quantized.engine = old


def _layer_inputs(model, x, names):
    """{layer name: (params, the quantized input torch fed it)}."""
    got = {}
    hooks = [getattr(model, n).register_forward_pre_hook(lambda mod, args, n=n: got.__setitem__(n, args[0]))
             for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {n: (qref.from_torch(getattr(model, n)), got[n]) for n in names}


def _ort_session_output(ops):
    """Run the operands as one hand-built ONNX node in an InferenceSession (default SessionOptions):
    the layer's input is fed, everything else is an initializer."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    h, nh = onnx.helper, onnx.numpy_helper
    names, inits = [], []
    for i, (name, a) in enumerate(ops.inputs):
        if a is None:
            names.append("")
            continue
        names.append(name)
        if i > 0:
            inits.append(nh.from_array(a, name))
    x_name, x = ops.inputs[0]
    node = h.make_node(ops.op, names, ["y"], domain=ops.domain, **ops.attrs)
    g = h.make_graph([node], "layer", [h.make_tensor_value_info(x_name, onnx.TensorProto.UINT8, list(x.shape))],
                     [h.make_tensor_value_info("y", onnx.TensorProto.UINT8, None)], initializer=inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17), h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    sess = ort.InferenceSession(m.SerializeToString(), ort.SessionOptions(), providers=["CPUExecutionProvider"])
    y = sess.run(None, {x_name: x})[0]
    if ops.relu:  # a uint8 Relu after the node (no-op here: the fused layers have output zero point 0)
        y = np.maximum(y, ops.get("y_zero_point"))
    return y


def _here_column():
    pytest.importorskip("onnxruntime")
    host = qref.onnx.ort_host()
    rt = {r.name: r for r in qref.runtimes.RUNTIMES}
    col = rt[f"ort-{host}"]
    assert col.how == "run here"
    return col


def _assert_column_is_ort(col, layers):
    for name, (params, qx) in layers.items():
        ops = qref.runtimes.ort_operands(params, qx)
        expected = _ort_session_output(ops)
        got = col.fn(params, qx)
        assert got.dtype == np.uint8 and got.shape == expected.shape, name
        assert got.tobytes() == expected.tobytes(), name


def test_ort_column_is_onnxruntime_per_channel_and_depthwise():
    """The ORT column for this host's semantics equals an InferenceSession running QLinearConv /
    QGemm on exactly the operands ort_operands gives: per-channel conv, depthwise conv, Linear."""
    col = _here_column()
    q, x = _converted("fbgemm")
    layers = _layer_inputs(q, x, ["conv", "dw", "fc"])
    ops = {n: qref.runtimes.ort_operands(p, qx) for n, (p, qx) in layers.items()}
    assert ops["conv"].op == "QLinearConv" and ops["conv"].get("w_scale").shape == (16,)
    assert ops["dw"].attrs["group"] == 16 and ops["fc"].op == "QGemm"
    assert ops["conv"].get("B").dtype == np.int32 and ops["fc"].get("C").dtype == np.int32
    _assert_column_is_ort(col, layers)


def test_ort_column_is_onnxruntime_per_tensor_geometry():
    """Per-tensor weights, with non-zero weight zero points too; stride, asymmetric padding, dilation
    and groups; Conv1d; a fused ReLU; a Linear without bias (QGemm with an empty C)."""
    col = _here_column()
    q, x = _geometry()
    layers = _layer_inputs(q, x, ["conv", "c1", "fc"])
    ops = {n: qref.runtimes.ort_operands(p, qx) for n, (p, qx) in layers.items()}
    assert ops["conv"].attrs["pads"] == [1, 2, 1, 2] and ops["conv"].relu
    assert ops["conv"].get("w_scale").shape == () and ops["fc"].get("C") is None
    assert ops["c1"].get("x").ndim == 3
    assert ops["c1"].get("w_zero_point") != 0 and ops["fc"].get("b_zero_point") != 0
    _assert_column_is_ort(col, layers)


def test_ort_bias_is_the_quantizers_int32():
    """The bias operand equals what onnxruntime.quantization's own bias quantizer writes for the
    layer's float bias and float32 scales."""
    pytest.importorskip("onnxruntime")
    from onnxruntime.quantization.base_quantizer import BaseQuantizer

    onnx = pytest.importorskip("onnx")
    q, x = _converted("fbgemm")
    params, qx = _layer_inputs(q, x, ["conv"])["conv"]
    ops = qref.runtimes.ort_operands(params, qx)

    class _Init:  # the initializer lookups quantize_bias_static_impl does, on plain arrays
        def __init__(self):
            self.inits = {"b": onnx.numpy_helper.from_array(np.asarray(params.bias, np.float32), "b")}

        def initializer(self):
            return list(self.inits.values())

        def initializer_extend(self, items):
            self.inits.update({t.name: t for t in items})

    quantizer = BaseQuantizer.__new__(BaseQuantizer)
    quantizer.model = _Init()
    quantizer.weight_qType = onnx.TensorProto.INT8
    qname = quantizer.quantize_bias_static_impl("b", ops.get("x_scale"), ops.get("w_scale"))[0]
    expected = onnx.numpy_helper.to_array(quantizer.model.inits[qname])
    assert ops.get("B").tobytes() == expected.astype(np.int32).tobytes()


def _conv_by_ort_and_torch():
    """The test model's conv (converted under fbgemm): its operands, a real InferenceSession's output on
    them and torch fbgemm's output on the same recorded input."""
    _here_column()
    q, x = _converted("fbgemm")
    params, qx = _layer_inputs(q, x, ["conv"])["conv"]
    ort_y = _ort_session_output(qref.runtimes.ort_operands(params, qx))
    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        torch_y = q.conv(qx).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = old
    return q, x, params, qx, ort_y, torch_y


def test_ort_differs_from_fbgemm_where_onnxruntime_and_torch_differ():
    """On the test model's conv, the elements the report counts for the ORT column are exactly those
    where a real InferenceSession and torch (fbgemm, this host) disagree."""
    q, x, params, qx, ort_y, torch_y = _conv_by_ort_and_torch()
    rep = qref.runtimes(q, x)
    row = next(r for r in rep.rows if r.name == "conv")
    n = int(np.count_nonzero(ort_y != torch_y))
    assert n > 0 and row.differing[f"ort-{qref.onnx.ort_host()}"] == n
    assert "why ort-vnni differs" in str(rep) and "int32 bias" in str(rep)


def test_ort_columns_labels():
    """The host this machine's onnxruntime runs is "run here", the other "formula"; both "formula"
    without onnxruntime."""
    import importlib.util

    rt = {r.name: r for r in qref.runtimes.RUNTIMES}
    assert rt["ort-vnni"].label == "ONNX Runtime, AVX512-VNNI/AVX-VNNI host"
    assert rt["ort-avx2"].label == "ONNX Runtime, AVX2 host"
    if importlib.util.find_spec("onnxruntime") is None:
        assert rt["ort-vnni"].how == rt["ort-avx2"].how == "formula"
        return
    here = qref.onnx.ort_host()
    other = {"vnni": "avx2", "avx2": "vnni"}[here]
    assert rt[f"ort-{here}"].how == "run here"
    assert rt[f"ort-{other}"].how == "formula"
    q, x = _converted("fbgemm")
    assert f"ort-{other}: {rt[f'ort-{other}'].label} (formula)" in str(qref.runtimes(q, x))


def test_ort_columns_are_formula_without_onnxruntime(monkeypatch):
    """Without onnxruntime no column can claim "run here" (the label is decided from find_spec)."""
    import importlib.util
    import sys

    mod = sys.modules["qref.runtimes"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    assert mod._ort_how("vnni") == mod._ort_how("avx2") == "formula"


def test_ort_unsupported_layers_are_reported_not_guessed():
    """Conv3d, transposed convs and a Linear on a 3-D input: the ORT columns say why, in the row's errors."""

    class _Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = torch.ao.quantization.QuantStub()
            self.c3 = torch.nn.Conv3d(2, 3, 2)
            self.up = torch.nn.ConvTranspose2d(3, 2, 2, stride=2)
            self.fc = torch.nn.Linear(8, 4)
            self.dequant = torch.ao.quantization.DeQuantStub()

        def forward(self, x):
            x = self.c3(self.quant(x))[:, :, 0]
            return self.dequant(self.fc(self.up(x)))

    old = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        torch.manual_seed(2)
        x = torch.randn(1, 2, 3, 5, 5)
        m = _Odd().eval()
        m.qconfig = torch.ao.quantization.get_default_qconfig("fbgemm")
        m.up.qconfig = torch.ao.quantization.QConfig(activation=m.qconfig.activation,
                                                     weight=torch.ao.quantization.default_weight_observer)
        p = torch.ao.quantization.prepare(m)
        p(x)
        q = torch.ao.quantization.convert(p)
        rep = qref.runtimes(q, x)
    finally:
        torch.backends.quantized.engine = old
    rows = {r.name: r for r in rep.rows}
    assert "1-D and 2-D" in rows["c3"].errors["ort-vnni"]
    assert "ConvTranspose" in rows["up"].errors["ort-avx2"]
    assert "MatMul + Add" in rows["fc"].errors["ort-vnni"]
    for r in rows.values():
        assert "fbgemm-avx2" not in r.errors
    assert "n/a: ort-vnni not computed for c3" in str(rep)


def test_ort_operands_refuses_bad_inputs():
    q, x = _converted("fbgemm")
    params, qx = _layer_inputs(q, x, ["conv"])["conv"]
    with pytest.raises(TypeError, match="quint8"):
        qref.runtimes.ort_operands(params, torch.quantize_per_tensor(torch.randn(2, 8, 6, 6), 0.1, 0, torch.qint8))
    with pytest.raises(ValueError, match="input_scale"):
        qref.runtimes.ort_operands(params, qx.int_repr().numpy())
    for bad_scale in (float("nan"), -0.1, 0.0):
        with pytest.raises(ValueError, match="input_scale"):
            qref.runtimes.ort_operands(params, qx.int_repr().numpy(), input_scale=bad_scale, input_zero_point=0)
    with pytest.raises(ValueError, match="input_zero_point=256"):
        qref.runtimes.ort_operands(params, qx.int_repr().numpy(), input_scale=0.1, input_zero_point=256)
    with pytest.raises(TypeError, match="input_zero_point"):
        qref.runtimes.ort_operands(params, qx.int_repr().numpy(), input_scale=0.1, input_zero_point=3.5)
    ops = qref.runtimes.ort_operands(params, qx.int_repr().numpy(), input_scale=qx.q_scale(),
                                     input_zero_point=qx.q_zero_point())
    assert ops.get("B").tobytes() == qref.runtimes.ort_operands(params, qx).get("B").tobytes()


def test_demo_runtimes_model_ort_column_is_onnxruntime():
    """Demo section 5's model: every layer's ORT column is InferenceSession's bytes (ReLU-fused convs
    included), and the ORT column differs from fbgemm somewhere."""
    from qref.demo import quantized_engine, runtimes_model

    col = _here_column()
    net, x = runtimes_model()
    names = ["conv1", "dw", "pw", "conv4", "fc"]
    with quantized_engine("fbgemm"):
        _assert_column_is_ort(col, _layer_inputs(net, x, names))
        rep = qref.runtimes(net, x)
    assert [r.name for r in rep.rows] == names
    assert sum(r.differing[col.name] for r in rep.rows) > 0


def test_ort_vs_fbgemm_hand_formulas_of_docs():
    """docs/runtimes.md's worked example, on every element where a real InferenceSession and torch
    (fbgemm) disagree on the test model's conv: the same integer sum ``raw``; fbgemm (per-channel)
    ``rne(f32(f32(raw + f32(bias / S)) * M)) + y_zp``; ORT ``rne(f32((raw + rne(bias / S)) * M)) + y_zp``
    with ``S = f32(x_s * w_s)``, ``M = f32(S / y_s)``. Both hand formulas give each runtime's byte."""
    q, x, params, qx, ort_y, torch_y = _conv_by_ort_and_torch()
    bad = np.argwhere(ort_y != torch_y)
    assert len(bad) > 0
    xs, xz = np.float32(qx.q_scale()), qx.q_zero_point()
    ws, ys, yz = np.float32(params.weight_scale), np.float32(params.output_scale), params.output_zero_point
    xp = np.pad(qx.int_repr().numpy().astype(np.int64), ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=xz)
    w = params.weight.astype(np.int64)
    for n, o, i, j in bad.tolist():
        raw = int(((xp[n, :, i:i + 3, j:j + 3] - xz) * w[o]).sum())
        S = np.float32(xs * ws[o])
        M = np.float32(S / ys)
        bias = np.float32(params.bias[o])
        fbgemm = int(np.rint(np.float32(np.float32(np.float32(raw) + np.float32(bias / S)) * M))) + yz
        bias_q = int(np.round(np.float64(bias) / np.float64(S)))
        ort = int(np.rint(np.float32(np.float32(raw + bias_q) * M))) + yz
        assert (fbgemm, ort) == (torch_y[n, o, i, j], ort_y[n, o, i, j])
