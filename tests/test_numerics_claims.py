"""Claims of docs/numerics.md that no other test showed, each against real torch run here.

Every test builds inputs on which the stated arithmetic and its plausible alternatives give
different bytes, runs torch, and asserts (1) torch equals the stated arithmetic on every element
and (2) each alternative differs from torch somewhere, so the test discriminates. The models
below are numpy recomputations of the documented formulas (one IEEE float32 operation at a
time); nothing is a pasted output. Section numbers refer to docs/numerics.md.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

import qref
from oracle import build, run_in_subprocess, spec

torch = pytest.importorskip("torch")

AVX2_ENV = {"FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}
f32 = np.float32


def _features() -> dict:
    return qref.torch_isa().cpu_features


def _vnni_host() -> bool:
    return bool(_features().get("avx512vnni"))


class _engine:
    def __init__(self, name):
        self.name = name

    def __enter__(self):
        self.prev = torch.backends.quantized.engine
        torch.backends.quantized.engine = self.name

    def __exit__(self, *exc):
        torch.backends.quantized.engine = self.prev


def _qx(x, scale, zp):
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.ascontiguousarray(x)), scale, zp)


def _qw(w, scale, zp):
    if np.ndim(scale):
        return torch._make_per_channel_quantized_tensor(
            torch.from_numpy(w), torch.from_numpy(np.asarray(scale, np.float64)),
            torch.from_numpy(np.asarray(zp, np.int64)), 0)
    return torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), float(scale), int(zp))


def _torch_conv2d(x, w, bias, a_s, a_zp, w_s, w_zp, o_s, o_zp, engine="fbgemm", padding=0, groups=1, stride=1):
    with _engine(engine):
        tb = None if bias is None else torch.from_numpy(bias)
        pp = torch.ops.quantized.conv2d_prepack(_qw(w, w_s, w_zp), tb, [stride] * 2, [padding] * 2, [1, 1], groups)
        return torch.ops.quantized.conv2d(_qx(x, a_s, a_zp), pp, o_s, o_zp).int_repr().numpy()


def _out(y, zp):
    """fbgemm's last steps for in-range y: rne, + zero point, clamp to [0, 255]."""
    return np.clip(np.rint(y).astype(np.int64) + zp, 0, 255)


# ----------------------------------------------------------------------------- §1: routing


def test_engine_is_fixed_when_the_weights_are_packed():
    """§1: the backend is chosen at prepack time from the engine current then; switching the engine
    afterwards does not change which arithmetic the packed weights run. A depthwise 3x3 conv with
    full-range operands: fbgemm saturates its tap pairs, oneDNN does not, so the two differ."""
    if not _vnni_host():
        pytest.skip("needs an AVX512-VNNI host: only there does the x86 engine pack this conv for oneDNN")
    rng = np.random.default_rng(1)
    C = 16
    x = rng.integers(200, 256, (1, C, 10, 10), dtype=np.uint8)
    w = rng.choice(np.array([-128, -127, 126, 127], np.int8), (C, 1, 3, 3))
    ws = rng.uniform(0.002, 0.004, C)
    packed = {}
    for eng in ("fbgemm", "x86"):
        with _engine(eng):
            packed[eng] = torch.ops.quantized.conv2d_prepack(_qw(w, ws, np.zeros(C, np.int64)), None, [1, 1], [1, 1],
                                                             [1, 1], C)
    o_s, o_zp = 8.0, 10
    qx = _qx(x, 0.02, 0)
    kw = {"padding": 1, "groups": C, "input_scale": 0.02, "input_zero_point": 0, "weight_scale": ws,
              "weight_zero_point": np.zeros(C, np.int32), "output_scale": o_s, "output_zero_point": o_zp}
    fb = qref.conv2d(x, w, None, engine="fbgemm", **kw)
    dn = qref.conv2d(x, w, None, engine="x86", **kw)
    assert np.any(fb != dn), "the case does not separate the two engines"
    for run_under in ("fbgemm", "x86"):
        with _engine(run_under):
            for eng, p in packed.items():
                t = torch.ops.quantized.conv2d(qx, p, o_s, o_zp).int_repr().numpy()
                assert np.array_equal(t, fb if eng == "fbgemm" else dn), (eng, run_under)


def test_overflow_edge_tells_the_engines_apart_and_linear_stays_on_fbgemm():
    """§1, §5.4, §6.2 step 7, §8: with |y| >= 2^31 (a tiny output scale) fbgemm's cvtps2dq gives
    INT32_MIN, so the output is 0 even for huge positive values; oneDNN clamps in float first and
    gives 255. Under the x86 engine a symmetric conv2d gives 255 (oneDNN, on AVX512-VNNI hosts)
    while a symmetric Linear gives 0: Linear runs fbgemm under both engines."""
    x = np.full((1, 8, 4, 4), 255, np.uint8)
    w = np.full((4, 8, 1, 1), 127, np.int8)
    o_s = 1e-7
    fb = _torch_conv2d(x, w, None, 1.0, 0, 1.0, 0, o_s, 0, engine="fbgemm")
    assert np.all(fb == 0)
    assert np.array_equal(qref.conv2d(x, w, None, input_scale=1.0, input_zero_point=0, weight_scale=1.0,
                                      weight_zero_point=0, output_scale=o_s, output_zero_point=0), fb)
    xl = np.full((3, 16), 255, np.uint8)
    wl = np.full((5, 16), 127, np.int8)
    for eng in ("fbgemm", "x86"):
        with _engine(eng):
            pp = torch.ops.quantized.linear_prepack(_qw(wl, 1.0, 0), None)
            tl = torch.ops.quantized.linear(_qx(xl, 1.0, 0), pp, o_s, 0).int_repr().numpy()
        assert np.all(tl == 0), f"Linear under {eng}: fbgemm's overflow edge (0), not oneDNN's 255"
        ql = qref.linear(xl, wl, None, input_scale=1.0, input_zero_point=0, weight_scale=1.0, weight_zero_point=0,
                         output_scale=o_s, output_zero_point=0, engine="fbgemm")
        assert np.array_equal(ql, tl)
    if not _vnni_host():
        pytest.skip("the oneDNN half needs an AVX512-VNNI host (the x86 engine routes to oneDNN only there)")
    dn = _torch_conv2d(x, w, None, 1.0, 0, 1.0, 0, o_s, 0, engine="x86")
    assert np.all(dn == 255)
    assert np.array_equal(qref.conv2d(x, w, None, input_scale=1.0, input_zero_point=0, weight_scale=1.0,
                                      weight_zero_point=0, output_scale=o_s, output_zero_point=0, engine="x86"), dn)


def test_transposed_conv_refuses_per_channel_weights():
    """§2.3: torch's transposed conv prepack rejects per-channel weights (fbgemm and oneDNN alike),
    so a transposed conv always has per-tensor weights, and qref refuses them with a ValueError."""
    w = np.ones((8, 4, 3, 3), np.int8)
    qw = _qw(w, np.full(8, 0.1), np.zeros(8, np.int64))
    for eng in ("fbgemm", "x86"):
        with _engine(eng), pytest.raises(RuntimeError, match="(?i)per.?channel"):
            torch.ops.quantized.conv_transpose2d_prepack(qw, None, [2, 2], [1, 1], [0, 0], [1, 1], 1)
    with pytest.raises(ValueError, match="per-channel"):
        qref.conv_transpose2d(np.zeros((1, 8, 4, 4), np.uint8), w, input_scale=0.1, input_zero_point=0,
                              weight_scale=np.full(8, 0.1), output_scale=0.1, output_zero_point=0)


# ----------------------------------------------------------------------------- §2, §5: requantization


def test_multiplier_is_a_float32_division():
    """§2.1: M = f32(f32(a*w) / f32(out)) and y = f32(float(raw) * M). Raw values are searched where
    that and the same product with M = S/out in double round to different integers; a 1x1 conv
    produces exactly those raw values (channel 1 gets -raw), with pair sums below 2^15 so no path
    saturates. torch follows the float32 division everywhere."""
    a_s, w_s = 0.0173, 0.00291
    S = f32(f32(a_s) * f32(w_s))
    rng = np.random.default_rng(0)
    found = None
    for _ in range(50):
        o_s = float(f32(float(S) * rng.uniform(700, 1300)))
        Mf = f32(S / f32(o_s))
        Md = np.float64(S) / np.float64(f32(o_s))
        r = np.arange(-130000, 130001, dtype=np.int64)
        yf = (r.astype(np.float32) * Mf).astype(np.float32)
        yd = r * Md
        zp = 128
        a, b = _out(yf, zp), _out(yd, zp)
        hit = np.flatnonzero((a != b) & (np.abs(yf) < 127))
        if hit.size >= 4:
            found = o_s, r[hit]
            break
    assert found is not None, "no discriminating raw values found"
    o_s, raws = found
    C1 = 16
    raws = raws[:64]
    P = raws.size
    x = np.zeros((1, C1 + 1, 1, P), np.uint8)
    w = np.zeros((2, C1 + 1, 1, 1), np.int8)
    w[0, :C1], w[0, C1] = 127, 1
    w[1] = -w[0]
    for p, rv in enumerate(raws):  # channel 0 makes |rv|, channel 1 -|rv|
        q, rem = divmod(int(abs(rv)), 127)
        cols = np.full(C1, q // C1)
        cols[: q % C1] += 1
        assert cols.max() <= 128
        x[0, :C1, 0, p], x[0, C1, 0, p] = cols, rem
    raw = np.stack([np.abs(raws), -np.abs(raws)])[None, :, None, :]
    t = _torch_conv2d(x, w, None, a_s, 0, w_s, 0, o_s, 128)
    Mf = f32(S / f32(o_s))
    Md = np.float64(S) / np.float64(f32(o_s))
    stated = _out((raw.astype(np.float32) * Mf).astype(np.float32), 128)
    double = _out(raw * Md, 128)
    assert np.array_equal(t, stated)
    assert np.any(t != double)
    assert np.array_equal(qref.conv2d(x, w, None, input_scale=a_s, input_zero_point=0, weight_scale=w_s,
                                      weight_zero_point=0, output_scale=o_s, output_zero_point=128), t)


def _raw_ramp_case(O, per_channel=True):
    """1x1 conv, one input channel, weight 1, activation zero point 128: raw = x - 128 for the 256
    values of x, on every output channel; out_scale = 2*S makes the multiplier exactly 0.5."""
    a_s, w_s = 0.0173, 0.00291
    S = f32(f32(a_s) * f32(w_s))
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    w = np.ones((O, 1, 1, 1), np.int8)
    ws = np.full(O, w_s) if per_channel else w_s
    wz = np.zeros(O, np.int64) if per_channel else 0
    raw = (x.astype(np.int64) - 128).astype(np.float32)
    return x, w, a_s, ws, wz, S, float(2 * np.float64(S)), raw


def test_bias_is_a_float_term_not_an_int32():
    """§2.2, §5.1 step 4: torch hands fbgemm the float32 bias; it enters as the float term
    f32(bias/S) (per-channel) added to float(raw), not rounded to an int32 and added to the
    accumulator. M = 0.5 and bias terms with fractional parts 0.1 ... 0.9 separate the two."""
    O = 18
    x, w, a_s, ws, wz, S, o_s, raw = _raw_ramp_case(O)
    frac = np.concatenate([np.linspace(0.1, 0.9, O // 2), -np.linspace(0.1, 0.9, O // 2)])
    bias = (frac * np.float64(S)).astype(np.float32)
    t = _torch_conv2d(x, w, bias, a_s, 128, ws, wz, o_s, 100)
    bterm = (bias / S).astype(np.float32)[None, :, None, None]
    stated = _out(((raw + bterm).astype(np.float32) * f32(0.5)).astype(np.float32), 100)
    as_int = _out(((raw + np.rint(bterm)).astype(np.float32) * f32(0.5)).astype(np.float32), 100)
    assert np.array_equal(t, stated)
    assert np.any(t != as_int)


def test_output_zero_point_is_added_after_rounding():
    """§5.1 steps 6-7 (fbgemm): r = rne(y), then r + out_zp. With M = 0.5 odd raw values are exact
    ties; with an odd zero point, rounding y + zp instead (oneDNN's order, §6.2) rounds every tie
    the other way."""
    x, w, a_s, ws, wz, _S, o_s, raw = _raw_ramp_case(2)
    zp = 101
    t = _torch_conv2d(x, w, None, a_s, 128, ws, wz, o_s, zp)
    y = (raw * f32(0.5)).astype(np.float32)
    after = _out(y, zp)
    before = np.clip(np.rint((y + f32(zp)).astype(np.float32)).astype(np.int64), 0, 255)
    assert np.array_equal(t, np.broadcast_to(after, t.shape))
    assert np.count_nonzero(np.broadcast_to(before, t.shape) != t) >= 2 * 64


# ----------------------------------------------------------------------------- §3, §4: integer stage


def _acc(x, w, pad, order):
    """Sum of products of a groups-1 conv (stride 1) with int16-saturating pairs (2i, 2i+1) in the
    given per-output reduction order ("khwc": (kh, kw, c), fbgemm's; "ckhw": (c, kh, kw)), or
    exact products (order None). Padded taps hold 0 here (activation zero point 0)."""
    N, C, H, W = x.shape
    O, _, KH, KW = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH, OW = H + 2 * pad - KH + 1, W + 2 * pad - KW + 1
    cols = np.stack([xp[:, :, kh:kh + OH, kw:kw + OW] for kh in range(KH) for kw in range(KW)], axis=2)
    # cols: (N, C, KH*KW, OH, OW); weights (O, C, KH*KW)
    wt = w.reshape(O, C, KH * KW).astype(np.int64)
    if order in (None, "ckhw"):
        a = cols.reshape(N, C * KH * KW, OH, OW)
        b = wt.reshape(O, C * KH * KW)
    else:
        a = cols.transpose(0, 2, 1, 3, 4).reshape(N, KH * KW * C, OH, OW)
        b = wt.transpose(0, 2, 1).reshape(O, KH * KW * C)
    prod = a[:, None] * b[None, :, :, None, None]  # (N, O, K, OH, OW)
    if order is None:
        return prod.sum(axis=2)
    K = prod.shape[2]
    if K % 2:
        prod = np.concatenate([prod, np.zeros_like(prod[:, :, :1])], axis=2)
    pairs = prod[:, :, 0::2] + prod[:, :, 1::2]
    return np.clip(pairs, -32768, 32767).sum(axis=2)


def test_gemm_pairs_follow_kh_kw_c_order_and_groupwise_needs_g_together():
    """§4.1: where fbgemm's GEMM saturates (its ISA lowered with FBGEMM_ENABLE_INSTRUCTIONS=AVX2 in a
    subprocess), the int16 pairs are consecutive indices of the (kh, kw, c) reduction order: with an
    odd channel count they straddle taps, and the (c, kh, kw) pairing and the exact sum both differ.
    §3 / §4.3 (AVX512-VNNI host): a Cg = 2 groupwise-shaped conv needs G >= G_together = 8 to take
    the groupwise path, which stays exact under the variable; with G = 4 it is im2col and saturates."""
    s = spec(C=5, O=8, H=9, W=9, KH=3, KW=3, padding=1, per_channel=True, w_zp=0, a_zp=0, bias=False,
             act="high", seed=21)
    specs = [s]
    if _vnni_host():
        specs += [spec(C=16, O=16, groups=8, H=9, W=9, KH=3, KW=3, padding=1, act="high", seed=22),
                  spec(C=8, O=8, groups=4, H=9, W=9, KH=3, KW=3, padding=1, act="high", seed=23)]
    res = run_in_subprocess(specs, AVX2_ENV)
    b = build(s)
    t = res[0]["torch"]
    S = (f32(b["a_scale"]) * b["w_scale"].astype(np.float32)).astype(np.float32)
    M = (S / f32(b["out_scale"])).astype(np.float32)[None, :, None, None]

    def out(acc):
        return _out((acc.astype(np.float32) * M).astype(np.float32), b["out_zp"])

    assert np.array_equal(t, out(_acc(b["x"], b["w"], 1, "khwc")))
    assert np.any(t != out(_acc(b["x"], b["w"], 1, "ckhw")))
    assert np.any(t != out(_acc(b["x"], b["w"], 1, None)))
    if not _vnni_host():
        return
    from oracle import qref_conv

    g8, g4 = res[1]["torch"], res[2]["torch"]
    assert np.array_equal(g8, qref_conv(specs[1], isa="vnni")) and np.any(g8 != qref_conv(specs[1], isa="avx2"))
    assert np.array_equal(g4, qref_conv(specs[2], isa="avx2")) and np.any(g4 != qref_conv(specs[2], isa="vnni"))


# ----------------------------------------------------------------------------- §7: quantize


def _round_f32(v: Fraction) -> np.float32:
    """The float32 nearest to the exact rational v, ties to even (one IEEE rounding)."""
    f = f32(float(v))
    best = None
    for c in (np.nextafter(f, f32(-np.inf)), f, np.nextafter(f, f32(np.inf))):
        d = abs(Fraction(float(c)) - v)
        even = int(np.asarray(c).view(np.int32)) % 2 == 0
        key = (d, not even)
        if best is None or key < best[0]:
            best = (key, c)
    return f32(best[1])


def test_quantize_is_one_fused_multiply_add_with_the_zero_point_before_rounding():
    """§7: q = clamp(rne(fma(x, f32(1/f32(scale)), zp)), 0, 255): the product and the zero point are
    added with ONE rounding, then rounded half to even. Values within 3 ulp of every rounding
    boundary; the two-rounding form, the zero point added after rounding, and division by the
    scale each differ from torch somewhere."""
    wrong = {"two_roundings": 0, "zp_after": 0, "divide": 0}
    for scale, zp in [(0.0173, 62), (0.1, 95), (3.7, 0), (0.00291, 200)]:
        sf = f32(scale)
        inv = f32(f32(1.0) / sf)
        xs = []
        for k in range(256):
            b = f32((k + 0.5 - zp) * float(sf))
            xs.append(b)
            up = dn = b
            for _ in range(3):
                up, dn = np.nextafter(up, f32(np.inf)), np.nextafter(dn, f32(-np.inf))
                xs += [up, dn]
        x = np.array(xs, np.float32)
        t = torch.quantize_per_tensor(torch.from_numpy(x), scale, zp, torch.quint8).int_repr().numpy().astype(int)
        fused = np.array([_round_f32(Fraction(float(v)) * Fraction(float(inv)) + zp) for v in x], np.float32)
        stated = np.clip(np.rint(fused), 0, 255).astype(int)
        assert np.array_equal(t, stated), (scale, zp)
        prod = (x * inv).astype(np.float32)
        wrong["two_roundings"] += int(np.sum(t != np.clip(np.rint((prod + f32(zp)).astype(np.float32)), 0, 255)))
        wrong["zp_after"] += int(np.sum(t != np.clip(np.rint(prod) + zp, 0, 255)))
        wrong["divide"] += int(np.sum(t != np.clip(np.rint((x / sf).astype(np.float32)) + zp, 0, 255)))
        assert np.array_equal(qref.quantize(x, scale, zp), t.astype(np.uint8))
    assert all(v > 0 for v in wrong.values()), wrong


# ----------------------------------------------------------------------------- §9: threads


@pytest.mark.parametrize("name,shape,engine", [
    ("im2col", {"C": 16, "O": 32, "k": 3, "stride": 2, "groups": 1}, "fbgemm"),
    ("depthwise", {"C": 32, "O": 32, "k": 3, "stride": 1, "groups": 32}, "fbgemm"),
    ("groupwise", {"C": 16, "O": 16, "k": 3, "stride": 1, "groups": 2}, "fbgemm"),
    ("pointwise", {"C": 64, "O": 48, "k": 1, "stride": 1, "groups": 1}, "fbgemm"),
    ("onednn", {"C": 32, "O": 32, "k": 3, "stride": 1, "groups": 1}, "x86"),
])
def test_torch_thread_count_does_not_change_bytes(name, shape, engine):
    """§9: torch's output is the same for 1, 2, 3, 4 and 8 threads (fbgemm partitions rows, columns
    and groups but never splits one output's reduction; oneDNN likewise), and equals qref's."""
    if engine == "x86" and not _vnni_host():
        pytest.skip("the x86 engine runs oneDNN only on AVX512-VNNI hosts")
    rng = np.random.default_rng(len(name))
    C, O, k, st, g = shape["C"], shape["O"], shape["k"], shape["stride"], shape["groups"]
    x = rng.integers(0, 256, (2, C, 30, 30), dtype=np.uint8)
    w = rng.integers(-128, 128, (O, C // g, k, k), dtype=np.int8)
    ws = rng.uniform(0.001, 0.004, O)
    bias = rng.normal(0, 0.5, O).astype(np.float32)
    args = (x, w, bias, 0.02, 7, ws, np.zeros(O, np.int64), 0.4, 90)
    prev = torch.get_num_threads()
    outs = []
    try:
        for n in (1, 2, 3, 4, 8):
            torch.set_num_threads(n)
            outs.append(_torch_conv2d(*args, engine=engine, padding=k // 2, groups=g, stride=st))
    finally:
        torch.set_num_threads(prev)
    for o in outs[1:]:
        assert np.array_equal(o, outs[0])
    q = qref.conv2d(x, w, bias, stride=st, padding=k // 2, groups=g, input_scale=0.02, input_zero_point=7,
                    weight_scale=ws, weight_zero_point=np.zeros(O, np.int32), output_scale=0.4, output_zero_point=90,
                    engine=engine)
    assert np.array_equal(q, outs[0])


# ----------------------------------------------------------------------------- §4.2: depthwise


def _dw_acc(x, w, pad, mult, pairing):
    """Depthwise (groups == C, `mult` output channels per channel) sum over the KH*KW taps in
    row-major order: "taps" pairs taps (2j, 2j+1) and saturates each pair to int16 (the last tap
    of an odd count alone); "shifted" pairs (0), (1, 2), (3, 4), ...; None is the exact sum.
    Padded taps hold 0 (activation zero point 0)."""
    H, W = x.shape[2:]
    O, _, KH, KW = w.shape
    xp = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    OH, OW = H + 2 * pad - KH + 1, W + 2 * pad - KW + 1
    taps = np.stack([xp[:, :, kh:kh + OH, kw:kw + OW] for kh in range(KH) for kw in range(KW)], axis=2)
    taps = np.repeat(taps, mult, axis=1)  # output channel o reads input channel o // mult
    prod = taps * w.reshape(O, KH * KW).astype(np.int64)[None, :, :, None, None]
    if pairing is None:
        return prod.sum(axis=2)
    if pairing == "shifted":
        prod = np.concatenate([np.zeros_like(prod[:, :, :1]), prod], axis=2)
    if prod.shape[2] % 2:
        prod = np.concatenate([prod, np.zeros_like(prod[:, :, :1])], axis=2)
    return np.clip(prod[:, :, 0::2] + prod[:, :, 1::2], -32768, 32767).sum(axis=2)


@pytest.mark.parametrize("k,mult", [(3, 1), (5, 1), (7, 1), (3, 2)])
def test_depthwise_saturates_consecutive_tap_pairs_on_every_cpu(k, mult):
    """§4.2: fbgemm's depthwise kernel is AVX2-only, so on every CPU (this one included, whatever
    its VNNI support) the products of taps (2j, 2j+1) in row-major order are summed and saturated
    to int16; with a channel multiplier of 2 each input channel feeds two outputs with the same
    pairing. The exact sum and a shifted pairing both differ from torch."""
    rng = np.random.default_rng(k * 10 + mult)
    C = 16
    x = rng.integers(180, 256, (1, C, 9, 9), dtype=np.uint8)
    w = rng.choice(np.array([-128, -120, 110, 127], np.int8), (C * mult, 1, k, k))
    ws = rng.uniform(0.002, 0.004, C * mult)
    o_s = float(f32(0.02 * 0.003 * 255 * 127 * k * 2 / 100))
    t = _torch_conv2d(x, w, None, 0.02, 0, ws, np.zeros(C * mult, np.int64), o_s, 128, padding=k // 2, groups=C)
    S = (f32(0.02) * ws.astype(np.float32)).astype(np.float32)
    M = (S / f32(o_s)).astype(np.float32)[None, :, None, None]

    def out(acc):
        return _out((acc.astype(np.float32) * M).astype(np.float32), 128)

    assert np.array_equal(t, out(_dw_acc(x, w, k // 2, mult, "taps")))
    assert np.any(t != out(_dw_acc(x, w, k // 2, mult, None)))
    assert np.any(t != out(_dw_acc(x, w, k // 2, mult, "shifted")))


# ----------------------------------------------------------------------------- §6.1: oneDNN scales


def _round_trip_src(a):
    return f32(f32(1.0) / f32(1.0 / np.float64(a)))


def _round_trip_inv(o):
    return f32(f32(1.0) / f32(f32(1.0) / f32(1.0 / np.float64(o))))


def test_onednn_scales_pass_through_reciprocal_round_trips():
    """§6.1-§6.2 (exact non-AMX oneDNN class, i.e. torch's x86 engine on an AVX512-VNNI host):
    PyTorch hands oneDNN 1/scale computed in double and ideep inverts it again, so the effective
    source scale is ss = f32(1/f32(1/(double)a)) and the kernel multiplies by
    inv = f32(1/f32(1/f32(1/(double)out))); y = f32(f32(A*ss)*ws), + bias, then f32(y*inv) + zp in
    float before rounding. Scales are picked where each round trip differs from the plain float
    value, and weight scales make the real multiplier a power of two (many exact ties): the plain
    source scale, the plain 1/out, and the zero point added after rounding each differ from torch."""
    if not _vnni_host():
        pytest.skip("torch's x86 engine runs oneDNN only on AVX512-VNNI hosts")
    a_all = [0.013, 0.017, 0.019, 0.023, 0.029, 0.031, 0.037, 0.041, 0.043, 0.047, 0.053, 0.059, 0.061, 0.067]
    o_all = [0.065, 0.079, 0.101, 0.113, 0.127, 0.139, 0.151, 0.163, 0.173, 0.181, 0.197, 0.211, 0.223, 0.229]
    a_list = [a for a in a_all if _round_trip_src(a) != f32(a)]
    o_list = [o for o in o_all if _round_trip_inv(o) != f32(1.0 / np.float64(o))]
    assert a_list and o_list
    wrong = {"plain source scale": 0, "plain 1/out": 0, "zero point after rounding": 0}
    C = O = 16
    for i in range(8):
        rng = np.random.default_rng(100 + i)
        a_s, o_s = a_list[i % len(a_list)], o_list[(3 * i) % len(o_list)]
        x = rng.integers(0, 256, (2, C, 10, 10), dtype=np.uint8)
        w = rng.integers(-3, 4, (O, C, 3, 3)).astype(np.int8)
        e = rng.integers(6, 9, O)
        ws = np.array([float(f32(o_s / a_s * 2.0 ** -int(v))) for v in e])
        bias = (np.float64(o_s) * rng.integers(-40, 40, O) / 4).astype(np.float32)
        a_zp, zp = int(rng.integers(100, 156)), int(rng.integers(60, 200))
        kw = {"padding": 1, "input_scale": a_s, "input_zero_point": a_zp, "weight_scale": ws,
              "weight_zero_point": np.zeros(O, np.int32), "output_scale": o_s, "output_zero_point": zp}
        q, it = qref.conv2d(x, w, bias, engine="onednn", return_intermediates=True, **kw)
        if it.plan.combined_scale or it.plan.float_compensation or it.plan.saturates:
            pytest.skip("this host's oneDNN class is not the exact separate-scale one (AMX, or capped by "
                        "ONEDNN_MAX_CPU_ISA)")
        t = _torch_conv2d(x, w, bias, a_s, a_zp, ws, np.zeros(O, np.int64), o_s, zp, engine="x86", padding=1)
        assert np.array_equal(q, t)
        A = it.A.astype(np.float32)
        wsf = ws.astype(np.float32)[None, :, None, None]
        bf = bias[None, :, None, None]

        def model(ss, inv, zp_before=True, A=A, wsf=wsf, bf=bf, zp=zp):
            y = ((A * ss).astype(np.float32) * wsf).astype(np.float32)
            y = (y + bf).astype(np.float32)
            y = (y * inv).astype(np.float32)
            if zp_before:
                return np.rint(np.clip((y + f32(zp)).astype(np.float32), 0, 255)).astype(np.int64)
            return np.clip(np.rint(y).astype(np.int64) + zp, 0, 255)

        ss, inv = _round_trip_src(a_s), _round_trip_inv(o_s)
        assert np.array_equal(t, model(ss, inv)), (a_s, o_s)
        wrong["plain source scale"] += int(np.sum(t != model(f32(a_s), inv)))
        wrong["plain 1/out"] += int(np.sum(t != model(ss, f32(1.0 / np.float64(o_s)))))
        wrong["zero point after rounding"] += int(np.sum(t != model(ss, inv, zp_before=False)))
    assert all(v > 0 for v in wrong.values()), wrong
