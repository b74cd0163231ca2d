"""Requantization battery (docs/numerics.md §5) against torch: the float32 order of
operations, per-tensor reciprocal vs per-channel division of the bias, ties
rounded half to even, clamps, the |y| >= 2^31 edge, float rounding of |raw| > 2^24.

Each test also shows that it discriminates: the rejected formula would fail it.
"""

from __future__ import annotations

import numpy as np
import pytest

import qref

torch = pytest.importorskip("torch")


def run_both(x, w, bias, a_scale, a_zp, w_scale, w_zp, out_scale, out_zp, relu=False, padding=0, groups=1,
             isa="auto"):
    """torch fbgemm (this process) and qref on the same integer operands."""
    prev = torch.backends.quantized.engine
    torch.backends.quantized.engine = "fbgemm"
    try:
        qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), a_scale, a_zp)
        if np.ndim(w_scale):
            qw = torch._make_per_channel_quantized_tensor(torch.from_numpy(w), torch.from_numpy(np.asarray(w_scale)),
                                                          torch.from_numpy(np.asarray(w_zp, np.int64)), 0)
        else:
            qw = torch._make_per_tensor_quantized_tensor(torch.from_numpy(w), w_scale, w_zp)
        tb = None if bias is None else torch.from_numpy(bias)
        pp = torch.ops.quantized.conv2d_prepack(qw, tb, [1, 1], [padding, padding], [1, 1], groups)
        op = torch.ops.quantized.conv2d_relu if relu else torch.ops.quantized.conv2d
        ref = op(qx, pp, out_scale, out_zp).int_repr().numpy()
    finally:
        torch.backends.quantized.engine = prev
    out = qref.conv2d(x, w, bias, padding=padding, groups=groups, input_scale=a_scale, input_zero_point=a_zp,
                      weight_scale=w_scale, weight_zero_point=w_zp, output_scale=out_scale,
                      output_zero_point=out_zp, relu=relu, isa=isa)
    return out, ref


def _tie_biases(S: np.float32, n: int, rng) -> np.ndarray:
    """Biases whose two candidate bias terms, f32(b * f32(1/(double)S)) and f32(b / S), round
    (half to even) to different integers: found by search near k + 0.5."""
    R = np.float32(1.0 / np.float64(S))
    found = []
    while len(found) < n:
        k = rng.integers(-100, 100)
        b0 = np.float32((k + 0.5) * np.float64(S))
        for d in range(-6, 7):
            b = np.nextafter(b0, np.float32(np.inf)) if d > 0 else b0
            for _ in range(abs(d)):
                b = np.nextafter(b, np.float32(np.inf) if d > 0 else np.float32(-np.inf))
            rec, div = np.rint(np.float32(b * R)), np.rint(np.float32(b / S))
            if rec != div:
                found.append(b)
                break
    return np.array(found[:n], np.float32)


@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_bias_term_reciprocal_vs_division(per_channel):
    """Per-tensor: bias * f32(1.0/(double)S); per-channel: bias / S (docs/numerics.md §5.1 step 4).

    Zero weights make raw = 0 and out_scale = S makes the multiplier exactly 1, so the
    output is rne(bias_term) + zp: the two candidate bias terms round apart on every channel."""
    rng = np.random.default_rng(7)
    O = 64
    a_scale, w_scale = 0.0173, 0.00291
    S = np.float32(np.float32(a_scale) * np.float32(w_scale))
    bias = _tie_biases(S, O, rng)
    x = rng.integers(0, 256, (1, 4, 3, 3), dtype=np.uint8)
    w = np.zeros((O, 4, 1, 1), np.int8)
    ws = np.full(O, w_scale) if per_channel else w_scale
    wz = np.zeros(O, np.int64) if per_channel else 0
    out, ref = run_both(x, w, bias, a_scale, 3, ws, wz, float(S), 128)
    assert np.array_equal(out, ref)
    R = np.float32(1.0 / np.float64(S))
    term = np.float32(bias * R) if not per_channel else np.float32(bias / S)
    other = np.float32(bias / S) if not per_channel else np.float32(bias * R)
    model = (np.rint(term).astype(np.int64) + 128).clip(0, 255)
    rejected = (np.rint(other).astype(np.int64) + 128).clip(0, 255)
    assert np.array_equal(ref[0, :, 0, 0], model)
    assert np.all(ref[0, :, 0, 0] != rejected)


def test_ties_round_half_to_even():
    """M = 0.5 exactly and raw = x: odd x land on exact ties, which fbgemm rounds to even."""
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)
    w = np.ones((1, 1, 1, 1), np.int8)
    out, ref = run_both(x, w, None, 0.5, 0, 1.0, 0, 1.0, 0)
    assert np.array_equal(out, ref)
    xi = x.astype(np.int64)
    half_even = np.rint(xi / 2.0).astype(np.int64)
    half_up = np.floor(xi / 2.0 + 0.5).astype(np.int64)
    assert np.array_equal(ref.astype(np.int64), half_even)
    assert np.count_nonzero(half_up != half_even) == 64


def test_overflow_edge_gives_zero():
    """|y| >= 2^31: cvtps2dq gives INT32_MIN, which saturates to 0 (ReLU: out_zp), even for
    huge positive values (docs/numerics.md §5.4)."""
    x = np.full((1, 1, 4, 4), 255, np.uint8)
    w = np.full((2, 1, 1, 1), 127, np.int8)
    w[1] = -127
    for relu, zp in [(False, 0), (False, 100), (True, 100)]:
        out, ref = run_both(x, w, None, 1.0, 0, 1.0, 0, 1e-5, zp, relu=relu)
        assert np.array_equal(out, ref)
        assert np.all(ref[0, 0] == (zp if relu else 0))  # positive overflow does not give 255


def test_large_raw_float_rounding():
    """|raw| > 2^24: float(raw) rounds to nearest even before the bias is added."""
    rng = np.random.default_rng(3)
    C = 2048
    x = rng.integers(240, 256, (1, C, 2, 3), dtype=np.uint8)
    w = np.full((4, C, 1, 1), 127, np.int8)
    w[1] = -128
    w[2, ::2] = 126
    bias = np.array([0.37, -1.5, 2.25, 1e3], np.float32)
    for isa in ("auto",):
        out, ref = run_both(x, w, bias, 0.011, 17, 0.0007, 0, 51.3, 111, isa=isa)
        assert np.array_equal(out, ref)


@pytest.mark.parametrize("out_zp,relu", [(0, False), (255, False), (0, True), (255, True), (77, True)])
def test_clamps_and_zero_point_extremes(out_zp, relu):
    rng = np.random.default_rng(out_zp + relu)
    x = rng.integers(0, 256, (1, 8, 6, 6), dtype=np.uint8)
    w = rng.integers(-128, 128, (8, 8, 3, 3), dtype=np.int8)
    bias = rng.normal(0, 2, 8).astype(np.float32)
    out, ref = run_both(x, w, bias, 0.02, 250, rng.uniform(0.001, 0.01, 8), rng.integers(-128, 128, 8),
                        0.5, out_zp, relu=relu, padding=1)
    assert np.array_equal(out, ref)
    lo = out_zp if relu else 0
    assert ref.min() >= lo
    assert (ref == lo).any() and (ref == 255).any() or out_zp in (0, 255)


def test_per_tensor_scale_narrowing():
    """Only the float32 rounding of the (double) scales matters to fbgemm (docs/numerics.md §2.1):
    two doubles with the same float32 value give the same output."""
    rng = np.random.default_rng(11)
    x = rng.integers(0, 256, (1, 4, 5, 5), dtype=np.uint8)
    w = rng.integers(-128, 128, (4, 4, 3, 3), dtype=np.int8)
    s1 = 0.1
    s2 = float(np.nextafter(0.1, 1.0))  # a different double, same float32
    assert np.float32(s1) == np.float32(s2)
    outs = []
    for s in (s1, s2):
        out, ref = run_both(x, w, None, s, 0, 0.003, 0, 7.0, 10)
        assert np.array_equal(out, ref)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])


def test_per_tensor_bias_is_one_fused_multiply_add():
    """Per-tensor weights: fbgemm adds the bias as fma(bias, R, float(raw)) with ONE rounding (the
    compiler contracts _mm256_add_ps(x, _mm256_mul_ps(bias, rcp)) in requantizeOutputProcessingAvx2).
    With M = 1 every output is rne(that) + zp; the biases are searched so that, for each channel,
    some raw in [-128, 127] rounds differently fused and unfused. torch must agree with the fused
    form on every element, and the unfused form must be wrong somewhere in every channel."""
    from qref.common.fp import fma_f32

    rng = np.random.default_rng(5)
    a_scale, w_scale = 0.0173, 0.00291
    S = np.float32(np.float32(a_scale) * np.float32(w_scale))
    R = np.float32(1.0 / np.float64(S))
    raw = np.arange(-128, 128, dtype=np.int64).astype(np.float32)
    biases = []
    while len(biases) < 48:
        k = int(rng.integers(-20, 20))
        b = np.float32((k + 0.5 + rng.uniform(-1e-3, 1e-3)) * np.float64(S))
        fused = np.rint(fma_f32(b, R, raw))
        unfused = np.rint((np.float32(b * R) + raw).astype(np.float32))
        inside = (fused + 128 >= 0) & (fused + 128 <= 255) & (unfused + 128 >= 0) & (unfused + 128 <= 255)
        if np.any((fused != unfused) & inside):
            biases.append(b)
    bias = np.array(biases, np.float32)
    O = len(bias)
    x = np.arange(256, dtype=np.uint8).reshape(1, 1, 16, 16)  # a_zp 128: raw = x - 128
    w = np.ones((O, 1, 1, 1), np.int8)
    out, ref = run_both(x, w, bias, a_scale, 128, w_scale, 0, float(S), 128)
    assert np.array_equal(out, ref)
    r = (x.astype(np.float32) - 128).reshape(1, 1, 16, 16)
    b4 = bias[None, :, None, None]
    fused = np.clip(np.rint(fma_f32(b4, R, r)) + 128, 0, 255)
    unfused = np.clip(np.rint((np.float32(b4 * R) + r).astype(np.float32)) + 128, 0, 255)
    assert np.array_equal(ref, fused.astype(np.uint8))
    assert np.all(np.any(ref != unfused.astype(np.uint8), axis=(0, 2, 3)))
