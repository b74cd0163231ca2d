"""Whole quantized models, op by op and end to end: ResNet-, MobileNetV3-, ShuffleNet- and
Inception-style nets (written here, no torchvision), converted with torch.ao.quantization eager
(QuantStub/DeQuantStub, fuse_modules, prepare/convert) and FX (prepare_fx/convert_fx), under the
"fbgemm" and "x86" engines. The oracle is torch in this process: every op call's bytes
(qref.check) and the model's output (qref.run, qref.mode) must equal torch's."""

import threading
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import torch.ao.quantization as tq  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import qref  # noqa: E402
from oracle import fx_quantize  # noqa: E402
from qref.demo import quantized_engine, quiet_torch_quantization  # noqa: E402

FF = torch.ao.nn.quantized.FloatFunctional


class Stubs(nn.Module):
    """QuantStub/DeQuantStub around a body for eager mode; plain pass-through for FX."""

    def __init__(self, body: nn.Module, eager: bool) -> None:
        super().__init__()
        self.quant = tq.QuantStub() if eager else nn.Identity()
        self.body = body
        self.dequant = tq.DeQuantStub() if eager else nn.Identity()

    def forward(self, x):
        return self.dequant(self.body(self.quant(x)))


class Basic(nn.Module):
    def __init__(self, cin, cout, stride, eager):
        super().__init__()
        self.eager = eager
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.skip = FF()

    def forward(self, x):
        idn = x if self.down is None else self.down(x)
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if self.eager:
            return self.skip.add_relu(y, idn)
        return F.relu(y + idn)


class ResNetish(nn.Module):
    def __init__(self, eager):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = Basic(8, 8, 1, eager)
        self.layer2 = Basic(8, 16, 2, eager)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avg(x), 1))

    def fuse(self):
        tq.fuse_modules(self, [["conv1", "bn1", "relu"]], inplace=True)
        for b in (self.layer1, self.layer2):
            tq.fuse_modules(b, [["conv1", "bn1", "relu"], ["conv2", "bn2"]], inplace=True)
            if b.down is not None:
                tq.fuse_modules(b.down, [["0", "1"]], inplace=True)


class SE(nn.Module):
    def __init__(self, c, eager):
        super().__init__()
        self.eager = eager
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(c, 4, 1)
        self.relu = nn.ReLU()
        self.fc2 = nn.Conv2d(4, c, 1)
        self.gate = nn.Hardsigmoid()
        self.mul = FF()

    def forward(self, x):
        s = self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))
        return self.mul.mul(x, s) if self.eager else x * s


class InvertedResidual(nn.Module):
    def __init__(self, c, eager):
        super().__init__()
        self.eager = eager
        self.expand = nn.Conv2d(c, 2 * c, 1)
        self.act1 = nn.Hardswish()
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, 1, 1, groups=2 * c)
        self.act2 = nn.Hardswish()
        self.se = SE(2 * c, eager)
        self.project = nn.Conv2d(2 * c, c, 1)
        self.skip = FF()

    def forward(self, x):
        y = self.project(self.se(self.act2(self.dw(self.act1(self.expand(x))))))
        return self.skip.add(y, x) if self.eager else y + x


class MobileNetish(nn.Module):
    def __init__(self, eager):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 2, 1)
        self.act = nn.Hardswish()
        self.block = InvertedResidual(8, eager)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.block(self.act(self.stem(x)))
        return self.fc(self.pool(x).flatten(1))

    def fuse(self):
        tq.fuse_modules(self.block.se, [["fc1", "relu"]], inplace=True)


def channel_shuffle(x, groups):
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, c, eager):
        super().__init__()
        self.eager = eager
        h = c // 2
        self.pw1 = nn.Conv2d(h, h, 1)
        self.relu1 = nn.ReLU()
        self.dw = nn.Conv2d(h, h, 3, 1, 1, groups=h)
        self.pw2 = nn.Conv2d(h, h, 1)
        self.relu2 = nn.ReLU()
        self.cat = FF()

    def forward(self, x):
        a, b = x.chunk(2, dim=1)
        b = self.relu2(self.pw2(self.dw(self.relu1(self.pw1(b)))))
        y = self.cat.cat([a, b], dim=1) if self.eager else torch.cat([a, b], dim=1)
        return channel_shuffle(y, 2)


class ShuffleNetish(nn.Module):
    def __init__(self, eager):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, 1, 1)
        self.relu = nn.ReLU()
        self.u1 = ShuffleUnit(16, eager)
        self.u2 = ShuffleUnit(16, eager)
        self.fc = nn.Linear(16, 5)

    def forward(self, x):
        x = self.u2(self.u1(self.relu(self.stem(x))))
        x = x.mean((2, 3))
        return self.fc(x)

    def fuse(self):
        tq.fuse_modules(self, [["stem", "relu"]], inplace=True)
        for u in (self.u1, self.u2):
            tq.fuse_modules(u, [["pw1", "relu1"], ["pw2", "relu2"]], inplace=True)


class Inceptionish(nn.Module):
    def __init__(self, eager):
        super().__init__()
        self.eager = eager
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.relu = nn.ReLU()
        self.b1 = nn.Conv2d(8, 4, 1)
        self.b3a = nn.Conv2d(8, 4, 1)
        self.b3b = nn.Conv2d(4, 6, 3, 1, 1)
        self.bp = nn.AvgPool2d(3, 1, 1)
        self.bpc = nn.Conv2d(8, 4, 1)
        self.bm = nn.MaxPool2d(3, 1, 1)
        self.cat = FF()
        self.fc = nn.Linear(20, 5)

    def forward(self, x):
        x = self.relu(self.stem(x))
        ys = [self.b1(x), self.b3b(self.b3a(x)), self.bpc(self.bp(x)), self.bm(x)[:, :6]]
        y = self.cat.cat(ys, dim=1) if self.eager else torch.cat(ys, dim=1)
        y = F.max_pool2d(y, 2)
        return self.fc(F.adaptive_avg_pool2d(y, 1).flatten(1))

    def fuse(self):
        tq.fuse_modules(self, [["stem", "relu"]], inplace=True)


NETS = {"resnet": ResNetish, "mobilenet": MobileNetish, "shufflenet": ShuffleNetish, "inception": Inceptionish}
# the ATen/quantized ops each net must show as verified rows (beyond conv, linear, quantize, dequantize)
EXPECTED_OPS = {
    "resnet": {"eager": {"quantized::add_relu", "aten::quantized_max_pool2d", "aten::_adaptive_avg_pool2d"},
               "fx": {"quantized::add_relu", "aten::quantized_max_pool2d", "aten::_adaptive_avg_pool2d"}},
    "mobilenet": {"eager": {"quantized::hardswish", "aten::hardsigmoid", "quantized::mul", "quantized::add",
                            "aten::_adaptive_avg_pool2d"},
                  "fx": {"quantized::hardswish", "aten::hardsigmoid", "quantized::mul", "quantized::add",
                         "aten::_adaptive_avg_pool2d"}},
    "shufflenet": {"eager": {"quantized::cat", "aten::mean"}, "fx": {"aten::cat", "aten::mean"}},
    "inception": {"eager": {"quantized::cat", "aten::avg_pool2d", "aten::quantized_max_pool2d"},
                  "fx": {"aten::avg_pool2d", "aten::quantized_max_pool2d"}},
}


def build(net: str, mode: str, engine: str, size: int = 16, seed: int = 0):
    """(converted model, input)."""
    torch.manual_seed(seed)
    x = torch.rand(2, 3, size, size)
    with quantized_engine(engine), quiet_torch_quantization(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = NETS[net](mode == "eager").eval()
        # non-trivial BatchNorm statistics, so folding changes the weights
        for m in body.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.data.uniform_(0.5, 1.5)
                m.bias.data.uniform_(-0.2, 0.2)
        if mode == "eager":
            body.fuse()
            m = Stubs(body, True).eval()
            m.qconfig = tq.get_default_qconfig(engine)
            tq.prepare(m, inplace=True)
            for _ in range(2):
                m(torch.rand_like(x))
            tq.convert(m, inplace=True)
        else:
            m = fx_quantize(body, x, engine, [torch.rand_like(x) for _ in range(2)])
    return m, x


CASES = [(n, mode, eng) for n in NETS for mode in ("eager", "fx") for eng in ("fbgemm", "x86")]


@pytest.mark.parametrize("net,mode,engine", CASES, ids=["-".join(c) for c in CASES])
def test_whole_model_check_and_run(net, mode, engine):
    m, x = build(net, mode, engine)
    with quantized_engine(engine):
        expected = m(x)
        r = qref.check(m, x)
        assert r.ok, str(r)
        assert all(row.status == "ok" for row in r.layers), str(r)
        types = {row.type for row in r.layers}
        missing = EXPECTED_OPS[net][mode] - types
        assert not missing, f"{sorted(missing)} not among the verified rows:\n{r}"
        assert {"aten::quantize_per_tensor", "aten::dequantize"} <= types
        assert any(t.endswith(("Conv2d", "ConvReLU2d")) for t in types) and any("Linear" in t for t in types)
        assert r.end_to_end is not None and r.end_to_end.status == "ok", str(r)
        got = qref.run(m, x)
        assert torch.equal(got, expected)
        assert np.array_equal(got.numpy().view(np.uint32), expected.numpy().view(np.uint32))
        with qref.mode():
            got2 = m(x)
        assert torch.equal(got2, expected)


def test_rows_name_module_paths_and_fx_nodes():
    m, x = build("resnet", "eager", "fbgemm")
    with quantized_engine("fbgemm"):
        r = qref.check(m, x)
    names = [row.name for row in r.layers]
    assert names[0] == "quant" and names[-1] == "dequant"
    assert "body.layer1.skip" in names and "body.layer2.skip" in names  # QFunctional add_relu
    assert r["body.layer1.skip"].type == "quantized::add_relu"
    assert r["body.pool"].type == "aten::quantized_max_pool2d"
    m, x = build("inception", "fx", "fbgemm")
    with quantized_engine("fbgemm"):
        r = qref.check(m, x)
    fx_nodes = {n.name for n in m.graph.nodes}
    cats = [row for row in r.layers if row.type == "aten::cat"]
    assert len(cats) == 1 and cats[0].name in fx_nodes and cats[0].status == "ok"


def test_every_fx_cat_gets_a_row():
    """An FX Inception-style net with many cats: one verified row per cat call, never fewer."""

    class Cats(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.ModuleList(nn.Conv2d(4, 2, 1) for _ in range(6))
            self.stem = nn.Conv2d(3, 4, 1)

        def forward(self, x):
            x = self.stem(x)
            for i in range(0, 6, 2):
                x = torch.cat([self.c[i](x), self.c[i + 1](x)], 1)
            return x

    torch.manual_seed(3)
    x = torch.rand(1, 3, 8, 8)
    with quantized_engine("fbgemm"), quiet_torch_quantization():
        m = fx_quantize(Cats().eval(), x, "fbgemm")
        r = qref.check(m, x)
        assert torch.equal(qref.run(m, x), m(x))
    n_cats = sum(1 for n in m.graph.nodes if n.op == "call_function" and n.target is torch.cat)
    rows = [row for row in r.layers if row.type == "aten::cat"]
    assert n_cats == 3 and len(rows) == 3 and all(row.status == "ok" for row in rows), str(r)
    assert r.ok


def test_unsupported_op_is_named():
    """An op qref does not reproduce: a "not verified" row, report.ok False, and qref.run raises
    UnsupportedOpError naming it."""

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.quant = tq.QuantStub()
            self.conv = nn.Conv2d(3, 4, 3)
            self.dequant = tq.DeQuantStub()

        def forward(self, x):
            # nearest 3-d upsampling of a quantized tensor (qref reproduces the 2-d one only)
            y = F.interpolate(self.conv(self.quant(x)).unsqueeze(2), scale_factor=2, mode="nearest")
            return self.dequant(y)

    torch.manual_seed(0)
    x = torch.rand(1, 3, 8, 8)
    with quantized_engine("fbgemm"), quiet_torch_quantization():
        m = M().eval()
        m.qconfig = tq.get_default_qconfig("fbgemm")
        tq.prepare(m, inplace=True)
        m(x)
        tq.convert(m, inplace=True)
        r = qref.check(m, x)
        rows = [row for row in r.layers if row.status == "unsupported"]
        assert not r.ok and len(rows) == 1 and "aten::upsample_nearest3d" in rows[0].reason, str(r)
        with pytest.raises(qref.UnsupportedOpError, match="aten::upsample_nearest3d"):
            qref.run(m, x)
        with pytest.raises(qref.UnsupportedOpError, match="aten::upsample_nearest3d"):
            with qref.mode():
                m(x)


def test_bad_inputs():
    m, x = build("resnet", "eager", "fbgemm")
    with pytest.raises(TypeError, match="inputs\\[0\\] is a numpy float32 array"):
        qref.check(m, x.numpy())
    with pytest.raises(TypeError, match="inputs\\[0\\] is a numpy float32 array"):
        qref.run(m, x.numpy())
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        qref.run(lambda t: t, x)
    # a float model: nothing quantized is called; check says so instead of OK
    r = qref.check(nn.Sequential(nn.Conv2d(3, 4, 3)).eval(), x)
    assert not r.ok and "no quantized ops" in str(r)

    class Raises(nn.Module):
        def forward(self, x):
            raise RuntimeError("model failed on purpose")

    with pytest.raises(RuntimeError, match="on purpose"):
        qref.check(Raises(), x)
    with pytest.raises(RuntimeError, match="on purpose"):
        qref.run(Raises(), x)
    # the hooks are gone after the failure: a later check has no phantom rows
    with quantized_engine("fbgemm"):
        assert qref.check(m, x).ok


def test_two_threads_same_model():
    """Per-call capture state: two threads checking one model each see their own op calls."""
    m, x = build("mobilenet", "eager", "fbgemm")
    with quantized_engine("fbgemm"):
        n = len(qref.check(m, x).layers)
        out: list = []

        def work():
            r = qref.check(m, x)
            out.append((r.ok, len(r.layers)))

        ts = [threading.Thread(target=work) for _ in range(2)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert out == [(True, n), (True, n)]


def test_prepared_cache_follows_new_weights():
    """The per-module cache never returns stale params: new weights (set_weight_bias) are picked up."""
    m, x = build("resnet", "eager", "fbgemm")
    with quantized_engine("fbgemm"):
        assert qref.check(m, x).ok
        conv = m.body.layer1.conv2
        w, b = conv.weight(), conv.bias()
        ir = w.int_repr().clone()
        ir[0] = -ir[0]
        w2 = torch._make_per_channel_quantized_tensor(ir, w.q_per_channel_scales(), w.q_per_channel_zero_points(),
                                                      w.q_per_channel_axis())
        conv.set_weight_bias(w2, b)
        r = qref.check(m, x)
        assert r.ok, str(r)
        assert torch.equal(qref.run(m, x), m(x))


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("op", ["add", "add_relu", "mul", "mul_relu"])
def test_broadcast_binary_ops(op, channels_last, threads):
    """quantized add/mul with a (N, C, 1, 1) second operand, large enough for at::parallel_for to
    split the range across threads: qref (qref.mode) equals torch.ops.quantized.<op>."""
    torch.manual_seed(7)
    a = torch.quantize_per_tensor(torch.rand(2, 24, 37, 41) * 4 - 1, 0.03, 40, torch.quint8)
    if channels_last:
        a = a.contiguous(memory_format=torch.channels_last)
    b = torch.quantize_per_tensor(torch.rand(2, 24, 1, 1), 1 / 256, 0, torch.quint8)
    fn = getattr(torch.ops.quantized, op)
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        expected = fn(a, b, 0.05, 20)
        with qref.mode():
            got = fn(a, b, 0.05, 20)
    finally:
        torch.set_num_threads(prev)
    assert got.is_contiguous(memory_format=torch.channels_last) == expected.is_contiguous(
        memory_format=torch.channels_last)
    assert got.q_scale() == expected.q_scale() and got.q_zero_point() == expected.q_zero_point()
    assert torch.equal(got.int_repr(), expected.int_repr())


class MiscOps(nn.Module):
    """Less common quantized ops in one net: standalone BatchNorm, LeakyReLU, ReLU6, nearest and
    bilinear interpolation (by scale and by size), LayerNorm/InstanceNorm on channels_last input,
    Hardtanh, clamp, Sigmoid, avg_pool2d, an added scalar (FX), mean with keepdim."""

    def __init__(self, eager):
        super().__init__()
        self.eager = eager
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.relu = nn.ReLU()
        self.c2 = nn.Conv2d(8, 8, 1)
        self.bn = nn.BatchNorm2d(8)
        self.lr = nn.LeakyReLU(0.1)
        self.r6 = nn.ReLU6()
        self.ln = nn.LayerNorm([8, 8])
        self.inorm = nn.InstanceNorm2d(8, affine=True)
        self.ht = nn.Hardtanh(-0.5, 0.5)
        self.sig = nn.Sigmoid()

    def forward(self, x):
        y = self.bn(self.c2(self.relu(self.c(x))))
        y = self.r6(self.lr(y))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = F.interpolate(y, size=(8, 8), mode="bilinear", align_corners=False)
        y = self.inorm(self.ln(y))
        y = self.sig(torch.clamp(self.ht(y), -0.2, 0.4))
        y = F.avg_pool2d(y, 2)
        if not self.eager:
            y = y + 1.0
        return y.mean(dim=(2, 3), keepdim=True)


@pytest.mark.parametrize("mode", ["eager", "fx"])
@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_misc_ops(mode, engine):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8)
    with quantized_engine(engine), quiet_torch_quantization(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = MiscOps(mode == "eager").eval()
        if mode == "eager":
            m = Stubs(body, True).eval()
            m.qconfig = tq.get_default_qconfig(engine)
            tq.prepare(m, inplace=True)
            m(x)
            m(torch.rand_like(x))
            tq.convert(m, inplace=True)
        else:
            m = fx_quantize(body, x, engine, [x, torch.rand_like(x)])
        expected = m(x)
        r = qref.check(m, x)
        assert r.ok, str(r)
        types = {row.type for row in r.layers}
        want = {"aten::upsample_nearest2d", "aten::upsample_bilinear2d", "aten::sigmoid", "aten::clamp",
                "aten::avg_pool2d", "aten::mean", "quantized::instance_norm", "quantized::layer_norm"}
        assert want <= types, sorted(types)
        assert torch.equal(qref.run(m, x), expected)


class Activations(nn.Module):
    """tanh, ELU, GELU (both forms), a multiplied and an added scalar, softmax, Linear+ReLU (fused)."""

    def __init__(self, eager):
        super().__init__()
        self.eager = eager
        self.c = nn.Conv2d(3, 8, 3, padding=1)
        self.elu = nn.ELU(0.8)
        self.f = FF()
        self.sm = nn.Softmax(dim=-1)
        self.fc = nn.Linear(8 * 8 * 8, 6)
        self.fr = nn.ReLU()

    def forward(self, x):
        y = self.elu(torch.tanh(self.c(x)))
        y = F.gelu(F.gelu(y), approximate="tanh")
        if self.eager:
            y = self.f.add_scalar(self.f.mul_scalar(y, 0.75), 0.1)
        else:
            y = y * 0.75 + 0.1
        # eager convert keeps nn.Softmax float: call the quantized op (FX quantizes it itself)
        if self.eager and y.is_quantized:
            y = torch.ops.quantized.softmax(y, -1, 1.0 / 256, 0)
        else:
            y = self.sm(y)
        return self.fr(self.fc(torch.flatten(y, 1)))

    def fuse(self):
        tq.fuse_modules(self, [["fc", "fr"]], inplace=True)


@pytest.mark.parametrize("mode", ["eager", "fx"])
@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_activation_ops(mode, engine):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8, 8) * 4 - 2
    with quantized_engine(engine), quiet_torch_quantization(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = Activations(mode == "eager").eval()
        if mode == "eager":
            body.fuse()
            m = Stubs(body, True).eval()
            m.qconfig = tq.get_default_qconfig(engine)
            tq.prepare(m, inplace=True)
            m(x)
            tq.convert(m, inplace=True)
        else:
            m = fx_quantize(body, x, engine)
        expected = m(x)
        r = qref.check(m, x)
        assert r.ok, str(r)
        types = {row.type for row in r.layers}
        want = {"aten::tanh", "quantized::elu"}
        if mode == "eager":  # FX's default mapping runs gelu and the scalar ops in float
            want |= {"aten::gelu", "quantized::mul_scalar", "quantized::add_scalar", "quantized::softmax"}
            assert sum(1 for row in r.layers if row.type == "aten::gelu") == 2, str(r)
        assert want <= types, sorted(types)
        assert torch.equal(qref.run(m, x), expected)


class TinyTransformerish(nn.Module):
    """Linear layers as quantize_dynamic converts them (float in, float out), LSTM-free."""

    def __init__(self):
        super().__init__()
        self.q = nn.Linear(16, 16)
        self.k = nn.Linear(16, 16, bias=False)
        self.ff = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 16))

    def forward(self, x):
        a = torch.softmax(self.q(x) @ self.k(x).transpose(-1, -2) / 4.0, dim=-1)
        return self.ff(a @ x)


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_quantize_dynamic_linear(engine, per_channel):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16) * 3
    with quantized_engine(engine), quiet_torch_quantization(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        qconfig = tq.per_channel_dynamic_qconfig if per_channel else tq.default_dynamic_qconfig
        m = tq.quantize_dynamic(TinyTransformerish().eval(), {nn.Linear: qconfig})
        expected = m(x)
        r = qref.check(m, x)
        assert r.ok, str(r)
        rows = [row for row in r.layers if row.type == "quantized::linear_dynamic"]
        assert len(rows) == 4 and all(row.status == "ok" for row in rows), str(r)
        got = qref.run(m, x)
        assert np.array_equal(got.numpy().view(np.uint32), expected.numpy().view(np.uint32))


def test_dynamic_fp16_linear_is_not_verified():
    torch.manual_seed(0)
    with quantized_engine("fbgemm"), quiet_torch_quantization(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = tq.quantize_dynamic(nn.Sequential(nn.Linear(8, 4)).eval(), {nn.Linear}, dtype=torch.float16)
        r = qref.check(m, torch.randn(3, 8))
        assert not r.ok and any(row.status == "unsupported" for row in r.layers), str(r)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["fbgemm", "x86"])
def test_resnet50_scale(engine):
    """The benchmark's ResNet-50-style network at 224x224: every op call verified, qref.run equal."""
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "benchmarks"))
    from bench_check import build as build50

    prev = torch.backends.quantized.engine
    try:
        m, x = build50(224, engine)
        r = qref.check(m, x)
        assert r.ok and len(r.layers) == 74, str(r)
        assert torch.equal(qref.run(m, x), m(x))
    finally:
        torch.backends.quantized.engine = prev


@pytest.mark.parametrize("torch_threads,qref_threads", [(1, 3), (3, 1)])
def test_threads_argument_does_not_change_aten_ops(torch_threads, qref_threads):
    """``threads=`` parallelizes qref's conv/linear only; ATen's elementwise ops follow the thread
    count torch runs with (their SIMD/scalar split depends on it): an add over more than
    at::internal::GRAIN_SIZE elements stays bit-exact either way."""
    m, x = build("resnet", "eager", "fbgemm", size=94)  # add of 2x8x47x47: two chunks, not 64-aligned
    prev = torch.get_num_threads()
    torch.set_num_threads(torch_threads)
    try:
        with quantized_engine("fbgemm"):
            r = qref.check(m, x, threads=qref_threads)
            assert r.ok, str(r)
            assert max(row.numel for row in r.layers if row.type == "quantized::add_relu") > 32768
            assert torch.equal(qref.run(m, x, threads=qref_threads), m(x))
    finally:
        torch.set_num_threads(prev)


def test_same_bytes_cache_misses_after_an_in_place_change():
    """The per-check cache of equal pairs answers only for the same objects at the same versions."""
    import torch

    from qref import models

    a = torch.quantize_per_tensor(torch.rand(2, 3, 4, 5), 0.01, 3, torch.quint8)
    b = a.clone()
    c = torch.quantize_per_tensor(torch.rand(2, 3, 4, 5) + 1.0, 0.01, 3, torch.quint8)
    with models.same_bytes_cache():
        assert models.same_bytes(a, b) and models.same_bytes(b, a)
        b.copy_(c)  # in place: bumps b's version
        assert not models.same_bytes(a, b) and not models.same_bytes(b, a)
        assert models.same_bytes(b, c)
    assert not models.same_bytes(a, b)
