"""torch's QNNPACK engine: qref's engine="qnnpack" against torch's qnnpack ops and modules, in process, with ==."""

import warnings

import numpy as np
import pytest

import qref
from qref import _core
from qref.demo import quantized_engine

torch = pytest.importorskip("torch")
nnq = pytest.importorskip("torch.ao.nn.quantized")
nniq = pytest.importorskip("torch.ao.nn.intrinsic.quantized")
pytestmark = pytest.mark.skipif("qnnpack" not in torch.backends.quantized.supported_engines,
                                reason="this torch build has no qnnpack engine")
warnings.filterwarnings("ignore", message=".*quantize.*deprecated", category=UserWarning)


@pytest.fixture
def qnnpack_engine():
    with quantized_engine("qnnpack"):
        yield


def _qweight(rng, shape, per_channel, zp=0):
    wf = torch.from_numpy(rng.normal(0, 0.2, shape).astype(np.float32))
    if per_channel:
        s = torch.from_numpy(np.abs(rng.normal(0.01, 0.004, shape[0])) + 1e-3)
        return torch.quantize_per_channel(wf, s, torch.zeros(shape[0], dtype=torch.long), 0, torch.qint8)
    return torch.quantize_per_tensor(wf, 0.0031, zp, torch.qint8)


CONVS = [  # C, O, groups, k, stride, pad, dilation
    (8, 16, 1, 3, 1, 1, 1), (16, 16, 16, 3, 1, 1, 1), (16, 16, 16, 3, 2, 1, 1), (16, 32, 16, 5, 1, 2, 1),
    (8, 12, 4, 3, 1, 1, 1), (8, 12, 4, 3, 2, 0, 2), (32, 8, 1, 1, 1, 0, 1), (3, 5, 1, 3, 2, 2, 1),
]


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("cfg", CONVS)
def test_conv2d_equals_torch_qnnpack(qnnpack_engine, cfg, relu, per_channel):
    C, O, g, k, s, p, d = cfg
    rng = np.random.default_rng(hash((cfg, relu, per_channel)) % 2**32)
    qw = _qweight(rng, (O, C // g, k, k), per_channel, zp=0 if per_channel else 3)
    bias = torch.from_numpy(rng.normal(0, 2, O).astype(np.float32))
    m = (nniq.ConvReLU2d if relu else nnq.Conv2d)(C, O, k, s, p, d, g)
    m.set_weight_bias(qw, bias)
    m.scale, m.zero_point = float(rng.uniform(0.02, 0.2)), int(rng.integers(0, 256))
    qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(rng.integers(0, 256, (2, C, 11, 10), np.uint8)),
                                                 float(rng.uniform(0.005, 0.05)), int(rng.integers(0, 256)))
    expected = m(qx)
    params = qref.from_torch(m)
    assert params.engine == "qnnpack"
    got = params(qx)
    assert torch.equal(got.int_repr(), expected.int_repr())
    direct = qref.conv2d(qx, m.weight(), m.bias(), stride=s, padding=p, dilation=d, groups=g,
                         output_scale=m.scale, output_zero_point=m.zero_point, relu=relu, engine="qnnpack")
    assert torch.equal(direct.int_repr(), expected.int_repr())


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("relu", [False, True])
def test_linear_equals_torch_qnnpack(qnnpack_engine, relu, per_channel):
    rng = np.random.default_rng(7 + relu + 2 * per_channel)
    for K, N, M in ((17, 9, 1), (64, 10, 5), (3, 1, 2), (100, 33, 7)):
        m = (nniq.LinearReLU if relu else nnq.Linear)(K, N)
        m.set_weight_bias(_qweight(rng, (N, K), per_channel), torch.from_numpy(rng.normal(0, 1, N).astype(np.float32)))
        m.scale, m.zero_point = float(rng.uniform(0.02, 0.2)), int(rng.integers(0, 256))
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(rng.integers(0, 256, (M, K), np.uint8)),
                                                     float(rng.uniform(0.005, 0.05)), int(rng.integers(0, 256)))
        params = qref.from_torch(m)
        assert params.engine == "qnnpack"
        assert torch.equal(params(qx).int_repr(), m(qx).int_repr())


def test_add_every_pair_of_bytes(qnnpack_engine):
    """QNNPACK's fixed-point add on all 65536 (a, b) byte pairs, and short tensors (its n < 8 path)."""
    a = np.repeat(np.arange(256), 256).astype(np.uint8)
    b = np.tile(np.arange(256), 256).astype(np.uint8)
    rng = np.random.default_rng(3)
    for t in range(8):
        sa, sb, so = rng.uniform(0.01, 0.1), rng.uniform(0.01, 0.1), rng.uniform(0.02, 0.2)
        za, zb, zo = (int(v) for v in rng.integers(0, 256, 3))
        relu = bool(t % 2)
        op = torch.ops.quantized.add_relu if relu else torch.ops.quantized.add
        for n in (a.size, 5, 13):
            qa = torch._make_per_tensor_quantized_tensor(torch.from_numpy(a[:n].copy()), sa, za)
            qb = torch._make_per_tensor_quantized_tensor(torch.from_numpy(b[-n:].copy()), sb, zb)
            got = _core.qnnpack_add(a[:n].copy(), b[-n:].copy(), sa, za, sb, zb, so, zo, relu)
            assert np.array_equal(got, op(qa, qb, so, zo).int_repr().numpy())


def test_add_refuses_what_qnnpack_refuses(qnnpack_engine):
    qa = torch.quantize_per_tensor(torch.randn(8), 0.05, 100, torch.quint8)
    with pytest.raises(RuntimeError):
        torch.ops.quantized.add(qa, qa, 0.0001, 10)
    from qref.engines.qnnpack import add

    with pytest.raises(ValueError, match="2\\*\\*-14, 2\\*\\*8"):
        add("add", qa, qa, 0.0001, 10)


@pytest.mark.parametrize("kind", ["sigmoid", "tanh", "hardsigmoid", "hardswish"])
def test_lookup_tables_every_input_byte(qnnpack_engine, kind):
    rng = np.random.default_rng(11)
    fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "hardsigmoid": torch.nn.functional.hardsigmoid}.get(kind)
    for _ in range(40):
        xs, xz = float(rng.uniform(0.001, 0.2)), int(rng.integers(0, 256))
        qx = torch._make_per_tensor_quantized_tensor(torch.arange(256, dtype=torch.uint8), xs, xz)
        if fn is None:
            os_, oz = float(rng.uniform(0.01, 0.2)), int(rng.integers(0, 256))
            expected = torch.ops.quantized.hardswish(qx, os_, oz)
        else:
            expected = fn(qx)
        table = qref.engines.qnnpack.lut_table(kind, xs, xz, expected.q_scale(), expected.q_zero_point())
        assert np.array_equal(table, expected.int_repr().numpy())


def test_fbgemm_and_x86_modules_are_not_taken_for_qnnpack():
    from qref.bridge.qnnpack import packed_by_qnnpack

    old = torch.backends.quantized.engine
    try:
        for eng in ("fbgemm", "x86"):
            torch.backends.quantized.engine = eng
            assert not packed_by_qnnpack(nnq.Conv2d(4, 4, 3))
            assert not packed_by_qnnpack(nnq.Linear(5, 3))
        torch.backends.quantized.engine = "qnnpack"
        m = nnq.Conv2d(4, 4, 3)
        qx = torch.quantize_per_tensor(torch.randn(1, 4, 8, 8), 0.05, 100, torch.quint8)
        before = m(qx).int_repr()
        assert packed_by_qnnpack(m)
        assert torch.equal(m(qx).int_repr(), before)  # the probe leaves no state behind
    finally:
        torch.backends.quantized.engine = old


class _Shuffle(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.quant = torch.ao.quantization.QuantStub()
        self.c1 = torch.nn.Conv2d(3, 16, 3, 2, 1)
        self.r1 = torch.nn.ReLU()
        self.dw = torch.nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.pw = torch.nn.Conv2d(16, 16, 1, groups=4)
        self.r2 = torch.nn.ReLU()
        self.add = torch.ao.nn.quantized.FloatFunctional()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 10)
        self.act = torch.nn.Hardswish()
        self.dequant = torch.ao.quantization.DeQuantStub()

    def forward(self, x):
        x = self.r1(self.c1(self.quant(x)))
        y = torch.nn.functional.channel_shuffle(self.dw(x), 4)
        y = self.r2(self.pw(y))
        x = self.act(self.add.add(x, y))
        x = self.pool(x).flatten(1)
        return self.dequant(torch.sigmoid(self.fc(x)))


def _convert_qnnpack(model, x):
    model.eval()
    model.qconfig = torch.ao.quantization.get_default_qconfig("qnnpack")
    torch.ao.quantization.fuse_modules(model, [["c1", "r1"], ["pw", "r2"]], inplace=True)
    p = torch.ao.quantization.prepare(model)
    p(x)
    return torch.ao.quantization.convert(p)


def test_whole_model_under_qnnpack_checks_and_runs(qnnpack_engine):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    q = _convert_qnnpack(_Shuffle(), x)
    report = qref.check(q, x)
    assert report.ok, str(report)
    assert all(r.status == "ok" for r in report.layers)
    assert torch.equal(qref.run(q, x), q(x))
