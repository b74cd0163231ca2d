"""The forum scenario: QuantStub -> Conv2d(1,1,1) -> DeQuantStub, HistogramObserver
(reduce_range=True) activations, PerChannelMinMaxObserver symmetric weights, engine "fbgemm",
input arange(64)/255 as (1,1,4,16). qref reproduces every element, and the hand formula with
the printed scales is shown (computed, not pasted) to give a different value where torch gives 30."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import qref  # noqa: E402
from qref.demo import forum_element, forum_model, printed_scale  # noqa: E402


@pytest.fixture(scope="module")
def forum():
    net, x = forum_model()
    qx = net.quant(x)
    return net, x, qx, net.conv1(qx)


def test_model_as_posted(forum):
    net, x, qx, out = forum
    assert x.shape == (1, 1, 4, 16) and x.dtype == torch.float32
    assert torch.equal(x.flatten() * 255, torch.arange(64, dtype=torch.float32))
    assert type(net.conv1).__name__ == "Conv2d" and net.conv1.kernel_size == (1, 1)
    w = net.conv1.weight()
    assert w.qscheme() == torch.per_channel_symmetric or w.qscheme() == torch.per_channel_affine
    assert int(w.q_per_channel_zero_points()[0]) == 0
    # HistogramObserver(reduce_range=True): 7-bit activations
    assert int(qx.int_repr().max()) <= 127
    assert qref.torch_bridge.packed_engine(net.conv1) == "fbgemm"


def test_qref_reproduces_every_element(forum):
    net, x, qx, out = forum
    mine = qref.from_torch(net.conv1)(qx)
    assert np.array_equal(mine.int_repr().numpy(), out.int_repr().numpy())
    assert mine.q_scale() == out.q_scale() and mine.q_zero_point() == out.q_zero_point()
    # the whole model, QuantStub included, checked layer by layer
    r = qref.check(net, x)
    assert r.ok and [row.name for row in r.layers] == ["quant", "conv1", "dequant"]
    # and the float output of the model equals dequantized qref output
    assert torch.equal(net(x), mine.dequantize())


def hand_formula(qx, net, scales):
    """The post's computation: round((s_in*q_in * s_w*q_w + bias) / s_out) + zp, in float64."""
    s_in, s_w, s_out = scales
    q_in = qx.int_repr().numpy().astype(np.float64) - qx.q_zero_point()
    q_w = float(net.conv1.weight().int_repr().flatten()[0])
    b = float(net.conv1.bias().detach()[0])
    y = (s_in * q_in * s_w * q_w + b) / s_out
    return np.clip(np.rint(y) + net.conv1.zero_point, 0, 255).astype(np.int64), y


def test_why_the_hand_formula_differs(forum):
    net, x, qx, out = forum
    torch_out = out.int_repr().numpy().astype(np.int64)
    w_scale = float(net.conv1.weight().q_per_channel_scales()[0])
    exact_scales = (qx.q_scale(), w_scale, net.conv1.scale)
    printed = tuple(printed_scale(s) for s in exact_scales)
    # what print(model) shows is a 4-digit rounding of the real scales
    assert "scale=tensor([%s])" % f"{printed[0]:.4f}" in str(net)
    assert printed != exact_scales
    hand_printed, y_printed = hand_formula(qx, net, printed)
    hand_exact, y_exact = hand_formula(qx, net, exact_scales)
    # with the exact scales the hand formula agrees with torch everywhere on this input...
    assert np.array_equal(hand_exact, torch_out)
    # ...with the printed scales it does not
    bad = np.argwhere(hand_printed != torch_out)
    assert len(bad) > 0
    idx = forum_element(net, x)
    assert tuple(idx) in {tuple(b) for b in bad}
    assert torch_out[idx] == 30 and hand_printed[idx] == 31  # the post's numbers, found by search
    # the reason: the printed scales move the value before rounding across a rounding boundary
    assert np.rint(y_printed[idx]) != np.rint(y_exact[idx])
    # qref.explain says the same, with fbgemm's float32 value
    e = qref.explain(net.conv1, qx, idx)
    assert e.value == e.torch_value == 30
    by_name = {h.name: h for h in e.hand}
    assert by_name["printed scales"].value == 31 and not by_name["printed scales"].matches
    assert by_name["double, real-number formula"].matches
    text = str(e)
    assert "31 with printed scales" in text and "= 30" in text
