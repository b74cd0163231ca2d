// qref::qnnpack -- the arithmetic of torch's QNNPACK engine (torch.backends.quantized.engine =
// "qnnpack"), written once as scalar reference functions, one IEEE float32 operation at a time
// (compiled with -ffp-contract=off, as QNNPACK's SSE2 kernels have no fused multiply-add).
//
// Sources (pytorch/pytorch, aten/src/ATen/native/quantized/cpu/):
//  - QnnpackUtils.h generate_requantization_scales: scale[o] = (w_scale[o] * x_scale) * (1.f / y_scale),
//    all float32 (w_scale narrowed to float when the weights are packed);
//  - QuantUtils.h QuantizeBias: the float bias becomes int32 with scale w_scale * x_scale (double
//    product, narrowed to float by the quantizer), nearbyint(bias * (1.f / scale)), recomputed
//    whenever the input scale changes;
//  - qnnpack/src/q8gemm/4x4c2-sse2.c, q8conv/4x4c2-sse2.c, q8dwconv/up8x9-sse2.c: the accumulator
//    is bias + sum (x - x_zp) * (w - w_zp) in int32 (weights stored as w + 128 with kernel zero point
//    w_zp + 128; int16 operands, exact products), then cvtps2dq(float(acc) * scale), packs_epi32,
//    adds_epi16 of the output zero point, packus_epi16, min/max with the output bounds;
//  - qnnpack/src/qnnpack/requantization.h pytorch_qnnp_compute_add_quantization_params and
//    q8vadd/sse2.c: the add is integer fixed point (multipliers < 2^22, a rounding right shift);
//  - qnnpack/src/{sigmoid,tanh,hardsigmoid,hardswish}.c: 256-entry lookup tables built in float.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace qref {
namespace qnnpack {

// cvtps2dq: nearest-even; NaN and values outside int32 give INT32_MIN.
inline int32_t cvtps2dq(float t) {
  if (!(t >= -2147483648.0f && t < 2147483648.0f)) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(std::nearbyint(t));
}

inline int32_t sat16(int32_t v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : v); }

// generate_requantization_scales: (w_scale * x_scale) * (1.f / y_scale) in float32.
inline float requant_scale(float w_scale, float x_scale, float y_scale) {
  const float inv = 1.0f / y_scale;
  const float wx = w_scale * x_scale;
  return wx * inv;
}

// QuantizeBias: quantize_per_tensor / quantize_per_channel to qint32 with scale
// float(double(w_scale) * double(x_scale)) and zero point 0: nearbyint(bias * (1.f / scale)),
// clamped to int32 (in double, as fbgemm::Quantize / quantize_val do).
inline int32_t quantize_bias(float bias, double w_scale, float x_scale) {
  const float s = static_cast<float>(w_scale * static_cast<double>(x_scale));
  const float inv = 1.0f / s;
  const float t = bias * inv;
  const double r = std::nearbyint(static_cast<double>(t));
  const double c = r < -2147483648.0 ? -2147483648.0 : (r > 2147483647.0 ? 2147483647.0 : r);
  return static_cast<int32_t>(c);
}

// The output stage of every conv / linear kernel: float(acc) * scale, cvtps2dq, packs_epi32,
// adds_epi16 of the zero point, packus_epi16, then the [lo, hi] bounds (lo = zero point with ReLU).
inline float requant_prerounding(int32_t acc, float scale) { return static_cast<float>(acc) * scale; }

inline uint8_t requant_output(float y, int32_t out_zp, int32_t lo, int32_t hi) {
  int32_t v = sat16(sat16(cvtps2dq(y)) + out_zp);
  v = v < 0 ? 0 : (v > 255 ? 255 : v);
  v = v > hi ? hi : v;
  v = v < lo ? lo : v;
  return static_cast<uint8_t>(v);
}

// ---------------------------------------------------------------------------- add

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  return u;
}

inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

struct AddParams {
  float a_output_scale = 0;  // a_scale / y_scale in float32
  float b_output_scale = 0;
  uint32_t a_multiplier = 0;
  uint32_t b_multiplier = 0;
  uint32_t shift = 0;
  int32_t zero_point_product = 0;
  int32_t remainder_mask = 0;
  int32_t remainder_threshold = 0;
  int32_t y_zero_point = 0;
  int32_t y_min = 0;
  int32_t y_max = 255;
};

// pytorch_qnnp_create_add_nc_q8 accepts the scale ratios in [2^-14, 2^8) only.
inline bool add_ratio_ok(float r) { return r >= 0x1.0p-14f && r < 0x1.0p+8f; }

// pytorch_qnnp_compute_add_quantization_params (x86): the larger ratio's exponent e gives
// shift = 21 - e; each multiplier is lrintf(ratio * 2^shift).
inline AddParams add_params(float a_scale, int32_t a_zp, float b_scale, int32_t b_zp, float y_scale,
                            int32_t y_zp, int32_t y_min, int32_t y_max) {
  AddParams p;
  p.a_output_scale = a_scale / y_scale;
  p.b_output_scale = b_scale / y_scale;
  const float mx = p.a_output_scale > p.b_output_scale ? p.a_output_scale : p.b_output_scale;
  const int32_t e = static_cast<int32_t>(f32_bits(mx) >> 23) - 127;
  p.shift = static_cast<uint32_t>(21 - e);
  const float mult = f32_from_bits(static_cast<uint32_t>(21 - e + 127) << 23);
  p.a_multiplier = static_cast<uint32_t>(static_cast<int32_t>(std::lrintf(p.a_output_scale * mult)));
  p.b_multiplier = static_cast<uint32_t>(static_cast<int32_t>(std::lrintf(p.b_output_scale * mult)));
  const uint32_t mask = (UINT32_C(1) << p.shift) - UINT32_C(1);
  p.remainder_mask = static_cast<int32_t>(mask);
  p.remainder_threshold = static_cast<int32_t>(mask >> 1);
  p.zero_point_product = static_cast<int32_t>(
      -(p.a_multiplier * static_cast<uint32_t>(a_zp) + p.b_multiplier * static_cast<uint32_t>(b_zp)));
  p.y_zero_point = y_zp;
  p.y_min = y_min;
  p.y_max = y_max;
  return p;
}

// One element of q8vadd: products in uint32 (wrapping), a rounding arithmetic right shift
// (ties away from zero), the zero point added with int16 saturation, then the bounds.
inline int32_t add_shifted(uint8_t a, uint8_t b, const AddParams& p) {
  const int32_t acc = static_cast<int32_t>(static_cast<uint32_t>(p.zero_point_product) +
                                           static_cast<uint32_t>(a) * p.a_multiplier +
                                           static_cast<uint32_t>(b) * p.b_multiplier);
  const int32_t rem = (acc & p.remainder_mask) - static_cast<int32_t>(acc < 0);
  return (acc >> p.shift) + static_cast<int32_t>(rem > p.remainder_threshold);
}

inline uint8_t add_output(int32_t shifted, const AddParams& p) {
  int32_t v = sat16(sat16(shifted) + p.y_zero_point);
  v = v < 0 ? 0 : (v > 255 ? 255 : v);
  v = v < p.y_min ? p.y_min : v;
  v = v > p.y_max ? p.y_max : v;
  return static_cast<uint8_t>(v);
}

// ---------------------------------------------------------------------------- lookup tables

enum LutKind : int { kSigmoid = 0, kTanh = 1, kHardsigmoid = 2, kHardswish = 3 };

inline float clampf(float v, float lo, float hi) {
  if (v < lo) v = lo;
  if (v > hi) v = hi;
  return v;
}

// One entry of the table QNNPACK builds for input byte i (sigmoid.c, tanh.c, hardsigmoid.c,
// hardswish.c): x = x_scale * float(i - x_zp); the function in float32 with libm's expf / tanhf;
// scaled by 1.f / y_scale; clamped to [y_min, y_max] in float; lrintf.
inline uint8_t lut_entry(int kind, int32_t i, float x_scale, int32_t x_zp, float y_scale, int32_t y_zp,
                         int32_t y_min, int32_t y_max) {
  const float inv = 1.0f / y_scale;
  const float x = x_scale * static_cast<float>(i - x_zp);
  const float lo = static_cast<float>(y_min);
  const float hi = static_cast<float>(y_max);
  if (kind == kSigmoid) {
    // the zero point is added after rounding (sigmoid's table; torch passes y_zp = 0)
    const float s = clampf(inv / (1.0f + std::exp(-x)), lo, hi);
    return static_cast<uint8_t>(static_cast<uint8_t>(std::lrintf(s)) + static_cast<uint8_t>(y_zp));
  }
  float v;
  if (kind == kTanh) {
    v = inv * std::tanh(x) + static_cast<float>(y_zp);
  } else {
    float x2 = x + 3.0f;
    x2 = x2 > 0.0f ? x2 : 0.0f;
    x2 = x2 < 6.0f ? x2 : 6.0f;
    x2 = kind == kHardsigmoid ? x2 / 6.0f : (x * x2) / 6.0f;
    v = inv * x2 + static_cast<float>(y_zp);
  }
  return static_cast<uint8_t>(std::lrintf(clampf(v, lo, hi)));
}

}  // namespace qnnpack
}  // namespace qref
