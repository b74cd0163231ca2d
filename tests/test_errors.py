"""Every bad argument of qref.conv2d / qref.quantize / the _core binding gets a clean
TypeError/ValueError whose message names the argument, the value and the rule
(template ``fn: argument=value ... (rule)``), raised before any kernel runs."""

from __future__ import annotations

import re

import numpy as np
import pytest

import qref
from qref import _core

RNG = np.random.default_rng(6)
X = RNG.integers(0, 256, (1, 4, 6, 6), dtype=np.uint8)
W = RNG.integers(-128, 128, (4, 4, 3, 3), dtype=np.int8)
B = RNG.normal(0, 1, 4).astype(np.float32)


def good(**over):
    kw = dict(input=X, weight=W, bias=B, input_scale=0.02, input_zero_point=3, weight_scale=0.01,
              weight_zero_point=0, output_scale=0.1, output_zero_point=5)
    kw.update(over)
    return kw


def call(kw):
    kw = dict(kw)
    return qref.conv2d(kw.pop("input"), kw.pop("weight"), kw.pop("bias"), **kw)


def test_good_call_runs():
    out = call(good())
    assert out.shape == (1, 4, 4, 4) and out.dtype == np.uint8


NAN, INF = float("nan"), float("inf")

# (id, overrides, exception, regex that must name the argument and the value)
CONV_CASES = [
    # input
    ("input-list", dict(input=X.tolist()), TypeError, r"input has type list"),
    ("input-float", dict(input=X.astype(np.float32)), TypeError, r"input\.dtype=float32 \(must be uint8"),
    ("input-int8", dict(input=X.astype(np.int8)), TypeError, r"input\.dtype=int8"),
    ("input-3d", dict(input=X[0]), ValueError, r"input\.shape=\(4, 6, 6\) has 3 dimensions \(must be 4-D"),
    ("input-5d", dict(input=X[None]), ValueError, r"input\.shape=\(1, 1, 4, 6, 6\)"),
    ("input-scale-missing", dict(input_scale=None), ValueError, r"input_scale=None.*required"),
    ("input-zp-missing", dict(input_zero_point=None), ValueError, r"input_zero_point=None.*required"),
    # scales
    ("input-scale-0", dict(input_scale=0.0), ValueError, r"input_scale=0\.0 .*finite and > 0"),
    ("input-scale-neg", dict(input_scale=-0.5), ValueError, r"input_scale=-0\.5 .*finite and > 0"),
    ("input-scale-nan", dict(input_scale=NAN), ValueError, r"input_scale=nan .*finite and > 0"),
    ("input-scale-inf", dict(input_scale=INF), ValueError, r"input_scale=inf .*finite and > 0"),
    ("input-scale-str", dict(input_scale="0.1"), TypeError, r"input_scale='0\.1' has type str \(must be a float"),
    ("input-scale-bool", dict(input_scale=True), TypeError, r"input_scale=True has type bool"),
    ("input-scale-f32-overflow", dict(input_scale=1e39), ValueError, r"input_scale=1e\+39 rounds to inf in float32"),
    ("input-scale-f32-subnormal", dict(input_scale=1e-40), ValueError, r"input_scale=1e-40 rounds to .*normal float32"),
    ("input-scale-hugeint", dict(input_scale=10**400), ValueError, r"input_scale=1000.*finite and > 0"),
    ("output-scale-0", dict(output_scale=0), ValueError, r"output_scale=0\.0 "),
    ("output-scale-nan", dict(output_scale=NAN), ValueError, r"output_scale=nan"),
    ("output-scale-none", dict(output_scale=None), TypeError, r"output_scale=None has type NoneType"),
    ("weight-scale-missing", dict(weight_scale=None), ValueError, r"weight_scale=None \(required"),
    ("weight-scale-neg", dict(weight_scale=-1.0), ValueError, r"weight_scale=-1\.0"),
    ("weight-scale-pc-nan", dict(weight_scale=[0.1, NAN, 0.1, 0.1]), ValueError, r"weight_scale\[1\]=nan"),
    ("weight-scale-pc-zero", dict(weight_scale=np.array([0.1, 0.1, 0.0, 0.1])), ValueError,
     r"weight_scale\[2\]=0\.0"),
    ("weight-scale-pc-count", dict(weight_scale=[0.1, 0.1, 0.1]), ValueError,
     r"weight_scale has 3 entries but weight has 4 output channels"),
    ("weight-scale-pc-empty", dict(weight_scale=[]), ValueError, r"weight_scale has 0 entries"),
    ("weight-scale-pc-2d", dict(weight_scale=np.full((4, 1), 0.1)), ValueError, r"weight_scale has 2 dimensions"),
    ("weight-scale-pc-str", dict(weight_scale=["a", "b", "c", "d"]), TypeError, r"weight_scale\.dtype=<U1"),
    ("weight-scale-pc-ragged", dict(weight_scale=[0.1, [0.1, 0.2], 0.1, 0.1]), TypeError, r"weight_scale="),
    # zero points
    ("input-zp-256", dict(input_zero_point=256), ValueError, r"input_zero_point=256 is out of range .*\[0, 255\]"),
    ("input-zp-neg", dict(input_zero_point=-1), ValueError, r"input_zero_point=-1 is out of range"),
    ("input-zp-float", dict(input_zero_point=3.0), TypeError, r"input_zero_point=3\.0 has type float \(must be an int"),
    ("input-zp-huge", dict(input_zero_point=2**70), ValueError, rf"input_zero_point={2**70} is out of range"),
    ("output-zp-256", dict(output_zero_point=256), ValueError, r"output_zero_point=256 is out of range"),
    ("output-zp-np-float", dict(output_zero_point=np.float32(5)), TypeError, r"output_zero_point=.*has type float32"),
    ("weight-zp-128", dict(weight_zero_point=128), ValueError, r"weight_zero_point=128 is out of range .*-128, 127"),
    ("weight-zp--129", dict(weight_zero_point=-129), ValueError, r"weight_zero_point=-129 is out of range"),
    ("weight-zp-pc-range", dict(weight_scale=[0.1] * 4, weight_zero_point=[0, 0, 200, 0]), ValueError,
     r"weight_zero_point\[2\]=200 is out of range"),
    ("weight-zp-pc-huge", dict(weight_scale=[0.1] * 4, weight_zero_point=[0, 2**80, 0, 0]), ValueError,
     rf"weight_zero_point\[1\]={2**80} is out of range"),
    ("weight-zp-pc-count", dict(weight_scale=[0.1] * 4, weight_zero_point=[0, 0]), ValueError,
     r"weight_zero_point has 2 entries but weight has 4 output channels"),
    ("weight-zp-pc-float", dict(weight_scale=[0.1] * 4, weight_zero_point=np.zeros(4)), TypeError,
     r"weight_zero_point\.dtype=float64 \(zero points must be ints"),
    ("weight-zp-array-scalar-scale", dict(weight_zero_point=[0, 0, 0, 0]), ValueError,
     r"weight_zero_point is a sequence but weight_scale=0\.01 is a scalar"),
    # weight
    ("weight-uint8", dict(weight=W.view(np.uint8)), TypeError, r"weight\.dtype=uint8 \(must be int8"),
    ("weight-3d", dict(weight=W[0]), ValueError, r"weight\.shape=\(4, 3, 3\) has 3 dimensions"),
    ("weight-empty-O", dict(weight=W[:0], bias=None), ValueError, r"weight\.shape=\(0, 4, 3, 3\) \(every weight dim"),
    ("weight-channels", dict(weight=W[:, :2]), ValueError,
     r"weight has 2 input channels per group but input has C=4 channels with groups=1"),
    # bias
    ("bias-float64", dict(bias=B.astype(np.float64)), TypeError, r"bias\.dtype=float64 \(must be float32"),
    ("bias-list", dict(bias=B.tolist()), TypeError, r"bias has type list"),
    ("bias-len", dict(bias=B[:3]), ValueError, r"bias\.shape=\(3,\) \(must be \(4,\)"),
    ("bias-2d", dict(bias=B[None]), ValueError, r"bias\.shape=\(1, 4\)"),
    ("bias-nan", dict(bias=np.array([0, 0, np.nan, 0], np.float32)), ValueError, r"bias\[2\]=nan \(bias must be finite"),
    ("bias-inf", dict(bias=np.array([np.inf, 0, 0, 0], np.float32)), ValueError, r"bias\[0\]=inf"),
    # geometry
    ("groups-0", dict(groups=0), ValueError, r"groups=0 is out of range"),
    ("groups-float", dict(groups=1.0), TypeError, r"groups=1\.0 has type float"),
    ("groups-bool", dict(groups=True), TypeError, r"groups=True has type bool"),
    ("groups-3", dict(groups=3), ValueError, r"input has C=4 channels with groups=3 \(channels must be divisible"),
    ("groups-huge", dict(groups=2**31), ValueError, r"groups=2147483648 is out of range"),
    ("groups-O", dict(groups=4, weight=np.zeros((6, 1, 3, 3), np.int8), bias=None), ValueError,
     r"weight has O=6 output channels with groups=4 \(output channels must be divisible by groups"),
    ("stride-0", dict(stride=0), ValueError, r"stride=0 is out of range \(must be an int in \[1, "),
    ("stride-neg-h", dict(stride=(-1, 1)), ValueError, r"stride\[0\]=-1 is out of range"),
    ("stride-float", dict(stride=1.5), TypeError, r"stride=1\.5 has type float"),
    ("stride-3", dict(stride=(1, 1, 1)), ValueError, r"stride=\(1, 1, 1\) has 3 entries"),
    ("stride-huge", dict(stride=2**31), ValueError, r"stride=2147483648 is out of range.*conv_param_t"),
    ("padding-neg", dict(padding=-1), ValueError, r"padding=-1 is out of range \(must be an int in \[0, "),
    ("padding-neg-w", dict(padding=[0, -2]), ValueError, r"padding\[1\]=-2 is out of range"),
    ("padding-str", dict(padding="same"), TypeError, r"padding='same' has type str"),
    ("padding-huge", dict(padding=2**40), ValueError, rf"padding={2**40} is out of range"),
    ("padding-int32-sum", dict(padding=2**30), ValueError, r"padded height H\+2\*padding=2147483654 is too large"),
    ("dilation-0", dict(dilation=0), ValueError, r"dilation=0 is out of range"),
    ("dilation-span", dict(dilation=3), ValueError,
     r"kernel 3x3 with dilation=\(3, 3\) spans 7x7, larger than the padded input 6x6"),
    ("kernel-too-big", dict(input=X[:, :, :2, :2]), ValueError, r"spans 3x3, larger than the padded input 2x2"),
    ("output-too-large", dict(padding=2**20, weight=W[:, :, :1, :1]), ValueError,
     r"too large \(at most 2\^40"),
    # options
    ("relu-int", dict(relu=1), TypeError, r"relu=1 has type int \(must be a bool"),
    ("relu-str", dict(relu="yes"), TypeError, r"relu='yes'"),
    ("intermediates-int", dict(return_intermediates=1), TypeError, r"return_intermediates=1 has type int"),
    ("engine-bad", dict(engine="nnpack"), ValueError, r"engine='nnpack' is not valid \(valid: 'fbgemm'"),
    ("engine-none", dict(engine=None), TypeError, r"engine=None has type NoneType"),
    ("isa-bad", dict(isa="avx512"), ValueError, r"isa='avx512' is not valid \(valid: 'auto', 'avx2', 'vnni'\)"),
    ("isa-int", dict(isa=2), TypeError, r"isa=2 has type int"),
    ("kernel-bad", dict(kernel="neon"), ValueError, r"kernel='neon' is not a qref kernel \(usable:"),
    ("kernel-int", dict(kernel=0), TypeError, r"kernel=0 has type int \(must be a string"),
    ("threads-0", dict(threads=0), ValueError, r"threads=0 is out of range \(must be None \(all cores\)"),
    ("threads-neg", dict(threads=-3), ValueError, r"threads=-3 is out of range"),
    ("threads-big", dict(threads=10**6), ValueError, r"threads=1000000 is out of range"),
    ("threads-float", dict(threads=2.0), TypeError, r"threads=2\.0 has type float"),
]


@pytest.mark.parametrize("over,exc,pattern", [c[1:] for c in CONV_CASES], ids=[c[0] for c in CONV_CASES])
def test_conv2d_error(over, exc, pattern):
    with pytest.raises(exc, match=r"^conv2d: ") as ei:
        call(good(**over))
    assert re.search(pattern, str(ei.value)), f"message {str(ei.value)!r} does not match {pattern!r}"
    # the rule is stated in parentheses
    assert "(" in str(ei.value)


def test_errors_name_argument_before_copying_data():
    """Scalar arguments are checked before the (possibly huge) operands are copied:
    a bad output_scale with an input of the wrong dtype reports the scale."""
    with pytest.raises(ValueError, match=r"output_scale=nan"):
        call(good(output_scale=NAN, input=X.astype(np.float64)))


def test_kernel_env_override_checked(monkeypatch):
    monkeypatch.setenv("QREF_KERNEL", "bogus")
    with pytest.raises(ValueError, match=r"QREF_KERNEL='bogus' is not a usable kernel"):
        call(good())


# ----------------------------------------------------------------------------- torch operands


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _qx(torch, x=X, scale=0.02, zp=3):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), scale, zp)


def _qw(torch, w=W, scale=0.01, zp=0):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), scale, zp)


def test_torch_operand_errors(torch):
    qx, qw = _qx(torch), _qw(torch)
    kw = dict(output_scale=0.1, output_zero_point=5)
    cases = [
        (lambda: qref.conv2d(torch.from_numpy(X).float(), qw, **kw), TypeError,
         r"input\.dtype=torch\.float32 \(must be a torch\.quint8"),
        (lambda: qref.conv2d(torch.quantize_per_tensor(torch.rand(1, 4, 6, 6), 0.1, 0, torch.qint8), qw, **kw),
         TypeError, r"input\.dtype=torch\.qint8"),
        (lambda: qref.conv2d(qx, qw, input_scale=0.1, **kw), ValueError, r"input_scale=0\.1, input_zero_point=None "
         r"with a quantized tensor input \(must be None"),
        (lambda: qref.conv2d(qx[0], qw, **kw), ValueError, r"input\.shape=\(4, 6, 6\) has 3 dimensions"),
        (lambda: qref.conv2d(qx, torch.from_numpy(W), **kw), TypeError, r"weight\.dtype=torch\.int8 \(must be a "
         r"torch\.qint8"),
        (lambda: qref.conv2d(qx, qw, weight_scale=0.1, **kw), ValueError, r"weight_scale=0\.1, "
         r"weight_zero_point=None with a quantized tensor weight"),
        (lambda: qref.conv2d(qx, torch.quantize_per_channel(torch.rand(4, 4, 3, 3), torch.full((4,), 0.1),
                                                            torch.zeros(4, dtype=torch.long), 1, torch.qint8), **kw),
         ValueError, r"weight\.shape=\(4, 4, 3, 3\)|q_per_channel_axis\(\)=1"),
        (lambda: qref.conv2d(qx, qw, torch.zeros(4, dtype=torch.float64), **kw), TypeError,
         r"bias\.dtype=torch\.float64 \(must be float32"),
        (lambda: qref.conv2d(qx, qw, torch.zeros(5), **kw), ValueError, r"bias\.shape=\(5,\)"),
        (lambda: qref.conv2d(_qx(torch, scale=1e-45), qw, **kw), ValueError, r"input\.q_scale\(\)=1e-45 rounds to"),
    ]
    for f, exc, pattern in cases:
        with pytest.raises(exc, match=r"^conv2d: ") as ei:
            f()
        assert re.search(pattern, str(ei.value)), f"message {str(ei.value)!r} does not match {pattern!r}"


def test_torch_per_channel_axis(torch):
    w = torch.quantize_per_channel(torch.rand(4, 4, 3, 3), torch.full((4,), 0.1), torch.zeros(4, dtype=torch.long),
                                   1, torch.qint8)
    with pytest.raises(ValueError, match=r"weight\.q_per_channel_axis\(\)=1 \(fbgemm needs per-channel quantization "
                                         r"along axis 0"):
        qref.conv2d(_qx(torch), w, output_scale=0.1, output_zero_point=5)


# ----------------------------------------------------------------------------- quantize

XF = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)

QUANT_CASES = [
    ("x-float64", dict(x=XF.astype(np.float64)), TypeError, r"x\.dtype=float64 \(must be float32"),
    ("x-float16", dict(x=XF.astype(np.float16)), TypeError, r"x\.dtype=float16"),
    ("x-list", dict(x=XF.tolist()), TypeError, r"x has type list"),
    ("x-bigendian", dict(x=XF.astype(">f4")), TypeError, r"x\.dtype=>f4"),
    ("scale-0", dict(scale=0.0), ValueError, r"scale=0\.0 is not a valid scale"),
    ("scale-nan", dict(scale=NAN), ValueError, r"scale=nan"),
    ("scale-inf", dict(scale=-INF), ValueError, r"scale=-inf"),
    ("scale-subnormal", dict(scale=1e-42), ValueError, r"scale=1e-42 rounds to"),
    ("scale-str", dict(scale="1"), TypeError, r"scale='1' has type str"),
    ("zp-256", dict(zero_point=256), ValueError, r"zero_point=256 is out of range"),
    ("zp-neg", dict(zero_point=-1), ValueError, r"zero_point=-1 is out of range"),
    ("zp-float", dict(zero_point=0.0), TypeError, r"zero_point=0\.0 has type float"),
]


@pytest.mark.parametrize("over,exc,pattern", [c[1:] for c in QUANT_CASES], ids=[c[0] for c in QUANT_CASES])
def test_quantize_error(over, exc, pattern):
    kw = dict(x=XF, scale=0.05, zero_point=7)
    kw.update(over)
    with pytest.raises(exc, match=r"^quantize: ") as ei:
        qref.quantize(kw["x"], kw["scale"], kw["zero_point"])
    assert re.search(pattern, str(ei.value)), f"message {str(ei.value)!r} does not match {pattern!r}"


def test_quantize_torch_dtype(torch):
    with pytest.raises(TypeError, match=r"^quantize: x\.dtype=torch\.float64"):
        qref.quantize(torch.zeros(3, dtype=torch.float64), 0.1, 0)


# ----------------------------------------------------------------------------- _core safety net


def _core_conv(**over):
    kw = dict(input=np.ascontiguousarray(X.transpose(0, 2, 3, 1)), weight=np.ascontiguousarray(W.transpose(0, 2, 3, 1)),
              bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, input_scale=0.02,
              input_zero_point=3, weight_scale=np.array([0.01]), weight_zero_point=np.array([0], np.int32),
              per_channel=False, output_scale=0.1, output_zero_point=5, relu=False, saturate=False,
              kernel="scalar", threads=1)
    kw.update(over)
    return _core.conv2d_nhwc(**kw)


CORE_CASES = [
    ("groups-0", dict(groups=0), ValueError, r"groups=0"),
    ("stride-0", dict(stride=(0, 1)), ValueError, r"stride\[0\]=0"),
    ("padding-huge", dict(padding=(2**62, 0)), ValueError, r"padding\[0\]"),
    ("dilation-neg", dict(dilation=(1, -5)), ValueError, r"dilation\[1\]=-5"),
    ("scale-nan", dict(input_scale=NAN), ValueError, r"input_scale"),
    ("scale-subnormal", dict(output_scale=1e-42), ValueError, r"output_scale"),
    ("wscale-neg", dict(weight_scale=np.array([-1.0])), ValueError, r"weight_scale"),
    ("wzp-range", dict(weight_zero_point=np.array([300], np.int32)), ValueError, r"weight_zero_point"),
    ("wscale-count", dict(per_channel=True), ValueError, r"count mismatch"),
    ("zp-range", dict(input_zero_point=-1), ValueError, r"zero point"),
    ("input-f32", dict(input=np.zeros((1, 6, 6, 4), np.float32)), TypeError, r"input must be a uint8"),
    ("input-noncontig", dict(input=np.zeros((1, 6, 6, 8), np.uint8)[..., ::2]), ValueError, r"C-contiguous"),
    ("weight-ndim", dict(weight=np.zeros((4, 9, 4), np.int8)), ValueError, r"weight must have 4 dimensions"),
    ("bias-len", dict(bias=np.zeros(3, np.float32)), ValueError, r"bias length"),
    ("bias-dtype", dict(bias=np.zeros(4)), TypeError, r"bias must be a float32"),
    ("kernel-name", dict(kernel="bogus"), ValueError, r"kernel='bogus'"),
    ("kernel-too-big", dict(weight=np.zeros((4, 7, 7, 4), np.int8)), ValueError, r"kernel larger"),
]


@pytest.mark.parametrize("over,exc,pattern", [c[1:] for c in CORE_CASES], ids=[c[0] for c in CORE_CASES])
def test_core_safety_net(over, exc, pattern):
    with pytest.raises(exc, match=pattern):
        _core_conv(**over)


def test_core_requant_params_groups_zero():
    # Used to divide by zero (SIGFPE) in Conv2dShape::K().
    with pytest.raises(ValueError, match=r"groups=0"):
        _core.requant_params(np.zeros((4, 1, 1, 4), np.int8), 0.1, 0, np.ones(1), np.zeros(1, np.int32), False, 0.1,
                             None, 0)


def test_core_quantize_checks():
    with pytest.raises(ValueError, match=r"scale"):
        _core.quantize(XF, 0.0, 0)
    with pytest.raises(ValueError, match=r"zero_point=300"):
        _core.quantize(XF, 0.1, 300)
    with pytest.raises(ValueError, match=r"C-contiguous"):
        _core.quantize(np.asfortranarray(XF), 0.1, 0)


def test_message_template_everywhere():
    """Every conv2d case's message follows ``conv2d: <arg>... (<rule>)``."""
    for cid, over, exc, _ in CONV_CASES:
        try:
            call(good(**over))
        except (TypeError, ValueError) as e:
            msg = str(e)
            assert msg.startswith("conv2d: ") and msg.rstrip().endswith(")"), (cid, msg)
        else:
            raise AssertionError(f"{cid}: no error")


# ----------------------------------------------------------------------------- the torch bridge


def test_bridge_errors(torch):
    """from_torch refuses what it cannot represent with its documented NotImplementedError
    (UnsupportedModuleError), and Conv2dParams runs through conv2d's validation."""
    for bad in (None, 3, torch.nn.Conv2d(4, 4, 3), torch.nn.Linear(4, 4)):
        with pytest.raises(NotImplementedError, match=r"^from_torch: .* is not supported \(supported:"):
            qref.from_torch(bad)
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        p = qref.from_torch(torch.ao.nn.quantized.Conv2d(4, 4, 3, padding=1))
    finally:
        torch.backends.quantized.engine = prev
    qx = _qx(torch, X[:, :, :5, :5], 0.1, 3)
    assert p(qx).shape == (1, 4, 5, 5)
    with pytest.raises(TypeError, match=r"^conv2d: input\.dtype=torch\.float32"):
        p(torch.rand(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"^conv2d: isa='bogus' is not valid"):
        p(qx, isa="bogus")
    with pytest.raises(ValueError, match=r"^conv2d: weight has 4 input channels per group but input has C=2"):
        p(qx[:, :2])
