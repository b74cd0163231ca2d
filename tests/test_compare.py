"""qref.compare: bit-exact comparison and the diagnosis of alternative arithmetics.

Each named variant of qref.variants is used on purpose to build a "custom kernel output";
compare() must name it among the variants that reproduce that output exactly, and explain every
mismatch. qref's own output (and torch's, on this host) must compare ok. The numpy stage model
behind the variants is checked against qref.conv2d's intermediates on every fbgemm path.
"""

import numpy as np
import pytest

import oracle
import qref
from qref import variants as V


def _random_case(seed=0, C=16, O=16, H=10, W=10, k=3, pad=1, groups=1, per_channel=True, a_zp=37, w_zp=False,
                 relu=False, isa="vnni", out_zp=101, N=2):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (N, C, H, W), dtype=np.uint8)
    w = rng.integers(-128, 128, (O, C // groups, k, k), dtype=np.int8)
    a_s = float(np.float32(0.02))
    if per_channel:
        ws = rng.uniform(0.001, 0.01, O).astype(np.float32).astype(np.float64)
        wz = rng.integers(-5, 6, O).astype(np.int32) if w_zp else np.zeros(O, np.int32)
    else:
        ws, wz = 0.0037, (3 if w_zp else 0)
    o_s = float(np.float32(np.sqrt(k * k * C / groups) * 128 * 74 * a_s * 0.005 / 30))
    b = (rng.normal(0, 1, O) * 200 * a_s * 0.005).astype(np.float32)
    return dict(input=x, weight=w, bias=b, padding=pad, groups=groups, input_scale=a_s, input_zero_point=a_zp,
                weight_scale=ws, weight_zero_point=wz, output_scale=o_s, output_zero_point=out_zp, relu=relu,
                isa=isa)


def _tie_case(per_channel, seed=0, O=256, relu=False, out_zp=101):
    """A pointwise conv whose rows 1.. are all-zero activations (raw = 0 there), with biases
    chosen so that the pre-rounding value lands within a few ulp of k + 0.5: every rounding,
    bias and multiplier variant differs from fbgemm somewhere."""
    rng = np.random.default_rng(seed)
    C, H, W = 4, 6, 6
    x = rng.integers(0, 256, (1, C, H, W), dtype=np.uint8)
    x[:, :, 1:, :] = 0
    w = rng.integers(-128, 128, (O, C, 1, 1), dtype=np.int8)
    a_s = float(np.float32(rng.uniform(0.005, 0.05)))
    ws = rng.uniform(0.001, 0.01, O if per_channel else 1).astype(np.float32).astype(np.float64)
    o_s = float(np.float32(a_s * 0.005 * 3.7))
    S = (np.float32(a_s) * ws.astype(np.float32)).astype(np.float32)
    M = (S / np.float32(o_s)).astype(np.float32)
    if not per_channel:
        S, M = np.full(O, S[0]), np.full(O, M[0])
    k = rng.integers(-40, 40, O) + 0.5
    b = (k / M.astype(np.float64) * S.astype(np.float64)).astype(np.float32)
    b = (b.view(np.int32) + rng.integers(-3, 4, O).astype(np.int32)).view(np.float32)
    return dict(input=x, weight=w, bias=b, input_scale=a_s, input_zero_point=0,
                weight_scale=ws if per_channel else float(ws[0]),
                weight_zero_point=np.zeros(O, np.int32) if per_channel else 0, output_scale=o_s,
                output_zero_point=out_zp, relu=relu, isa="vnni")


# Which case makes each variant differ from fbgemm.
VARIANT_CASES = {
    "exact_products": lambda: _random_case(isa="avx2"),
    "saturated_pairs": lambda: _random_case(isa="vnni"),
    "pad_zero": lambda: _random_case(),
    "no_weight_zp_term": lambda: _random_case(w_zp=True),
    "bias_divided": lambda: _tie_case(per_channel=False),
    "bias_reciprocal": lambda: _tie_case(per_channel=True),
    "bias_int32": lambda: _tie_case(per_channel=True),
    "bias_after_multiplier": lambda: _tie_case(per_channel=False),
    "no_bias": lambda: _random_case(),
    "multiplier_double": lambda: _tie_case(per_channel=True),
    "round_half_away": lambda: _tie_case(per_channel=True),
    "round_half_up": lambda: _tie_case(per_channel=False),
    "truncate": lambda: _random_case(),
    "zero_point_before_rounding": lambda: _tie_case(per_channel=True),
    "overflow_saturates": lambda: dict(_random_case(), output_scale=1e-12),
    "relu_at_zero": lambda: _random_case(relu=True),
}


def test_every_variant_has_a_case():
    assert set(VARIANT_CASES) == set(V.VARIANTS_BY_NAME)


@pytest.mark.parametrize("name", sorted(VARIANT_CASES))
def test_compare_names_the_variant(name):
    args = VARIANT_CASES[name]()
    v = V.VARIANTS_BY_NAME[name]
    case = V.make_case("test", **args)
    assert v.applicable(case)
    expected = qref.conv2d(**case.conv_kwargs())
    custom = V.model(case, **v.changes)["out"]
    n = int(np.count_nonzero(custom != expected))
    assert n > 0, f"{name}: the case does not separate the variant from fbgemm"
    cmp = qref.compare(custom, **args)
    assert not cmp.ok and cmp.mismatches == n and cmp.numel == expected.size
    exact = [c.name for c in cmp.diagnosis if c.exact]
    assert name in exact, f"{name} not named:\n{cmp}"
    assert cmp.best is not None and cmp.best.explained == n and cmp.best.breaks == 0
    hit = next(c for c in cmp.diagnosis if c.name == name)
    assert hit.explained == n and hit.mismatches == n and hit.breaks == 0
    assert name in str(cmp)
    # qref's own output compares ok against the same arguments
    ok = qref.compare(expected, **args)
    assert ok.ok and ok.mismatches == 0 and ok.diagnosis is None and "OK" in str(ok)


def test_two_bugs_at_once_are_named_as_a_pair():
    args = _random_case(isa="vnni")
    case = V.make_case("test", **args)
    custom = V.model(case, pad="zero", rounding="truncate")["out"]
    cmp = qref.compare(custom, **args)
    assert cmp.best is not None and cmp.best.name == "pad_zero + truncate", str(cmp)


def test_first_mismatches_carry_values_and_stages():
    args = _random_case()
    case = V.make_case("test", **args)
    exp, inter = qref.conv2d(**case.conv_kwargs(), return_intermediates=True)
    custom = exp.copy()
    custom[1, 3, 4, 5] ^= 1
    custom[0, 0, 0, 2] = 255 - custom[0, 0, 0, 2]
    cmp = qref.compare(custom, **args, max_report=5)
    assert cmp.mismatches == 2 and len(cmp.first) == 2
    m0, m1 = cmp.first
    assert m0.index == (0, 0, 0, 2) and m0.actual == int(custom[0, 0, 0, 2]) and m0.expected == int(exp[0, 0, 0, 2])
    assert m0.acc == int(inter.acc[0, 0, 0, 2]) and m0.raw == int(inter.raw[0, 0, 0, 2])
    assert m0.y == float(inter.y[0, 0, 0, 2])
    assert m1.index == (1, 3, 4, 5)
    assert cmp.max_abs_diff == max(abs(int(custom[0, 0, 0, 2]) - int(exp[0, 0, 0, 2])), 1)
    # random bit flips match no arithmetic variant exactly
    assert cmp.best is None


def test_compare_without_conv_args():
    a = np.zeros((1, 2, 3, 4), np.uint8)
    b = a.copy()
    b[0, 1, 2, 3] = 7
    c = qref.compare(a, b)
    assert not c.ok and c.mismatches == 1 and c.max_abs_diff == 7 and c.diagnosis is None
    assert c.first[0].index == (0, 1, 2, 3) and c.first[0].actual == 0 and c.first[0].expected == 7
    assert qref.compare(a, a.copy()).ok
    # NHWC layout for the custom output
    assert qref.compare(np.ascontiguousarray(b.transpose(0, 2, 3, 1)), b, layout="NHWC").ok


def test_compare_errors():
    a = np.zeros((1, 2, 3, 4), np.uint8)
    with pytest.raises(TypeError, match="actual has dtype int32"):
        qref.compare(a.astype(np.int32), a)
    with pytest.raises(ValueError, match=r"actual has shape \(1, 3, 4, 2\).*NHWC"):
        qref.compare(np.zeros((1, 3, 4, 2), np.uint8), a)
    with pytest.raises(TypeError, match="unexpected argument.*'paddding'"):
        qref.compare(a, a, paddding=1)
    with pytest.raises(ValueError, match="expected is None and no conv arguments"):
        qref.compare(a)
    with pytest.raises(ValueError, match="layout='NCWH'"):
        qref.compare(a, a, layout="NCWH")


@pytest.mark.parametrize("kw", [
    dict(),
    dict(C=16, O=16, groups=16, padding=(1, 1), a_zp=7),  # depthwise
    dict(C=16, O=16, padding=(1, 1), a_zp=100, per_channel=False, w_zp=3, relu=True),  # groupwise
    dict(C=6, O=4, KH=1, KW=1, w_zp="random"),  # pointwise
    dict(C=8, O=8, stride=2, padding=2, dilation=2, w_zp="random", a_zp=30, act="high"),  # im2col
    dict(C=8, O=8, KH=5, KW=3, groups=2, padding=(2, 1), a_zp=255, weight="extreme"),
], ids=lambda kw: oracle.case_id(oracle.spec(**kw)))
@pytest.mark.parametrize("isa", ["avx2", "vnni"])
def test_numpy_model_equals_qref_intermediates(kw, isa):
    """The numpy stage model (the base of every variant) is qref's arithmetic, stage by stage:
    this also checks qref.conv2d(..., return_intermediates=True) against a numpy recomputation."""
    s = oracle.spec(**kw)
    b = oracle.build(s)
    out, inter = oracle.qref_conv(s, b, isa=isa, intermediates=True)
    ws = b["w_scale"] if b["per_channel"] else float(b["w_scale"][0])
    wz = b["w_zp"] if b["per_channel"] else int(b["w_zp"][0])
    case = V.make_case("test", b["x"], b["w"], b["bias"], stride=s["stride"], padding=s["padding"],
                       dilation=s["dilation"], groups=s["groups"], input_scale=b["a_scale"],
                       input_zero_point=b["a_zp"], weight_scale=ws, weight_zero_point=wz,
                       output_scale=b["out_scale"], output_zero_point=b["out_zp"], relu=s["relu"], isa=isa)
    m = V.model(case)
    assert inter.plan.saturates == case.saturates
    oracle.assert_same(m["acc"], inter.acc, "acc")
    oracle.assert_same(m["raw"], inter.raw, "raw")
    assert m["y"].dtype == np.float32 and np.array_equal(m["y"].view(np.int32), inter.y.view(np.int32)), "y"
    oracle.assert_same(m["out"], out, "out")
    # exact products: the plain int64 sum; saturated pairs never exceed it in magnitude per pair
    exact, _ = V.accumulate(case, saturate=False)
    if not case.saturates:
        assert np.array_equal(exact.astype(np.int32), inter.acc)


def test_compare_against_torch(torch_fbgemm):
    """On this host, torch's output (expected) and qref's agree, so a correct 'custom' output
    (qref's) compares ok against torch, and the expected-source note stays empty."""
    torch = torch_fbgemm
    s = oracle.spec(C=16, O=32, H=9, W=9, padding=(1, 1), a_zp=17, w_zp="random")
    b = oracle.build(s)
    t = oracle.torch_conv(s, b)
    qx, qw, bias = oracle.torch_operands(s, b)
    cmp = qref.compare(oracle.qref_conv(s, b), t, input=qx, weight=qw, bias=bias, padding=1,
                       output_scale=b["out_scale"], output_zero_point=b["out_zp"])
    assert cmp.ok and not cmp.notes, str(cmp)
    # a torch quint8 tensor as the actual output works too
    qt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(t), b["out_scale"], b["out_zp"])
    assert qref.compare(qt, t).ok


def test_compare_with_torch_module_params(torch_fbgemm):
    """params= a Conv2dParams from a real torch module, input a quint8 tensor, actual the module's
    own output (ok) and a copy with one element off (named, with its stages)."""
    torch = torch_fbgemm
    import torch.ao.nn.quantized as nnq

    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        m = nnq.Conv2d(8, 16, 3, padding=1)
        g = torch.Generator().manual_seed(1)
        qw = torch.quantize_per_channel(torch.randn(16, 8, 3, 3, generator=g) * 0.1,
                                        torch.rand(16, generator=g) * 0.01 + 0.002,
                                        torch.zeros(16, dtype=torch.long), 0, torch.qint8)
        m.set_weight_bias(qw, torch.randn(16, generator=g))
        m.scale, m.zero_point = 0.05, 70
        qx = torch.quantize_per_tensor(torch.rand(1, 8, 7, 7, generator=g), 0.01, 11, torch.quint8)
        y = m(qx)
        p = qref.from_torch(m)
        assert qref.compare(y, params=p, input=qx).ok
        bad = y.int_repr().numpy().copy()
        bad[0, 2, 3, 4] += 1
        cmp = qref.compare(bad, params=p, input=qx)
        assert cmp.mismatches == 1 and cmp.first[0].index == (0, 2, 3, 4) and cmp.first[0].acc is not None
        with pytest.raises(ValueError, match="stride must not be given"):
            qref.compare(y, params=p, input=qx, stride=2)
    finally:
        torch.backends.quantized.engine = prev
