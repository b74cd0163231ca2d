"""qref.runtimes: each runtime column is that runtime's bytes (checked against torch where it runs here)."""

import warnings

import numpy as np
import pytest

import qref

torch = pytest.importorskip("torch")
nnq = pytest.importorskip("torch.ao.nn.quantized")
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
