"""The torch bridge: qref.from_torch on converted modules, engine detection."""

from __future__ import annotations

import numpy as np
import pytest

import qref
from qref.torch_bridge import UnsupportedModuleError, packed_engine

torch = pytest.importorskip("torch")
nnq = pytest.importorskip("torch.ao.nn.quantized")
nniq = pytest.importorskip("torch.ao.nn.intrinsic.quantized")


def _module(cls, engine, C, O, k, *, groups=1, padding=0, stride=1, dilation=1, per_channel=True, w_zp=0,
            bias=True, padding_mode="zeros", seed=0):
    g = torch.Generator().manual_seed(seed)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        m = cls(C, O, k, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=bias,
                padding_mode=padding_mode)
        wi = torch.randint(-128, 128, (O, C // groups, k, k), dtype=torch.int8, generator=g)
        if per_channel:
            qw = torch._make_per_channel_quantized_tensor(wi, torch.rand(O, generator=g, dtype=torch.float64) * 0.01
                                                          + 0.001, torch.full((O,), w_zp, dtype=torch.long), 0)
        else:
            qw = torch._make_per_tensor_quantized_tensor(wi, 0.004, w_zp)
        b = torch.randn(O, generator=g) if bias else None
        m.set_weight_bias(qw, b)
        m.scale, m.zero_point = 0.07, 61
    finally:
        torch.backends.quantized.engine = prev
    return m


def _input(C, H=9, W=10, N=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch._make_per_tensor_quantized_tensor(torch.randint(0, 256, (N, C, H, W), dtype=torch.uint8,
                                                                 generator=g), 0.03, 9)


CASES = [
    ("conv3x3", nnq.Conv2d, dict(C=8, O=16, k=3, padding=1)),
    ("convrelu-dw", nniq.ConvReLU2d, dict(C=16, O=16, k=3, padding=1, groups=16)),
    ("conv-gw", nnq.Conv2d, dict(C=16, O=16, k=3, padding=1, groups=4)),
    ("conv1x1-pt-affine", nnq.Conv2d, dict(C=12, O=8, k=1, per_channel=False, w_zp=5)),
    ("convrelu-s2-dil", nniq.ConvReLU2d, dict(C=6, O=4, k=3, stride=2, dilation=2, padding=2, bias=False)),
    ("conv-reflect", nnq.Conv2d, dict(C=4, O=4, k=3, padding=1, padding_mode="reflect")),
]


@pytest.mark.parametrize("name,cls,kw", CASES, ids=[c[0] for c in CASES])
def test_from_torch_fbgemm_module(name, cls, kw):
    m = _module(cls, "fbgemm", **kw)
    qx = _input(kw["C"])
    assert packed_engine(m) == "fbgemm"
    p = qref.from_torch(m)
    assert p.relu == (cls is nniq.ConvReLU2d)
    out = p(qx)
    ref = m(qx)
    assert out.q_scale() == ref.q_scale() and out.q_zero_point() == ref.q_zero_point()
    assert torch.equal(out.int_repr(), ref.int_repr())
    # the same through numpy arrays
    o2 = p(qx.int_repr().numpy(), input_scale=qx.q_scale(), input_zero_point=qx.q_zero_point())
    assert np.array_equal(o2, ref.int_repr().numpy())


def test_x86_engine_asymmetric_weights_run_fbgemm():
    """Under the default x86 engine, asymmetric weights go to fbgemm (docs/numerics.md §1): qref verifies them."""
    m = _module(nnq.Conv2d, "x86", C=8, O=8, k=3, padding=1, per_channel=False, w_zp=3)
    assert packed_engine(m) == "fbgemm"
    qx = _input(8)
    assert torch.equal(qref.from_torch(m)(qx).int_repr(), m(qx).int_repr())


def test_x86_engine_symmetric_weights_never_silently_wrong():
    """Symmetric weights under x86 on an AVX512-VNNI Linux host run oneDNN. qref must either refuse
    with a reason or reproduce oneDNN's bytes; computing fbgemm's formula silently is the defect."""
    if not qref.torch_isa().cpu_features["avx512vnni"]:
        pytest.skip("needs an AVX512-VNNI host, where the x86 engine routes to oneDNN")
    m = _module(nnq.Conv2d, "x86", C=8, O=8, k=3, padding=1)
    assert packed_engine(m) == "onednn"
    qx = _input(8)
    try:
        p = qref.from_torch(m)
    except UnsupportedModuleError as e:
        assert "oneDNN" in str(e) and "fbgemm" in str(e)
        return
    assert torch.equal(p(qx).int_repr(), m(qx).int_repr())


def test_from_torch_rejects_float_module():
    with pytest.raises((UnsupportedModuleError, TypeError)):
        qref.from_torch(torch.nn.Conv2d(3, 3, 3))
