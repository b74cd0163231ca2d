// qref::aten -- the per-element arithmetic of ATen's own quantized CPU kernels
// (aten/src/ATen/native/quantized/cpu/), written once as scalar reference
// functions. Every function here is one IEEE float32 operation at a time, in
// the order ATen performs it (this file is compiled with -ffp-contract=off;
// the one fused multiply-add ATen's SIMD bodies use is spelled std::fma).
//
// ATen compiles its quantized kernels once per CPU capability (DEFAULT, AVX2,
// AVX512) and picks one at run time. Two things then differ between the
// vectorized body of a loop and its scalar tail:
//  - dequantize: the scalar tail (and every element under DEFAULT) uses
//    fbgemm::Dequantize, scale * (q - zp); the AVX2/AVX512 body uses
//    Vectorized<qint>::dequantize(scale, zp, premul) = fma(scale, q, premul),
//    premul = scale * -float(zp)  (vec256_qint.h / vec512_qint.h);
//  - quantize: the scalar tail uses quantize_val (inverse 1.0f/scale,
//    nearbyint(zp + x * inverse) in float, clamp in double); the body uses
//    QuantizeAvx2/QuantizeAvx512 lanes (x * inverse_scale handed in by the
//    kernel, cvtps_epi32 after a min with 2147483520.f, + zp in wrapping int32,
//    saturating clamp).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

namespace qref {
namespace aten {

// ATen CPU capability, as ATEN_CPU_CAPABILITY names it.
enum Cap : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// Vectorized<quint8/qint8>::size(): bytes per SIMD register (DEFAULT keeps
// the 256-bit layout of vec_base.h's VectorizedQuantizedConverter).
inline int64_t qvec_size(int cap) { return cap == kAvx512 ? 64 : 32; }
// Vectorized<float>::size().
inline int64_t fvec_size(int cap) { return cap == kAvx512 ? 16 : 8; }

template <class T>
struct QLim {
  static constexpr int32_t lo = std::numeric_limits<T>::min();
  static constexpr int32_t hi = std::numeric_limits<T>::max();
};

// fbgemm::Dequantize<T> (AffineQuantizerBase.cpp dequantize_val under
// USE_FBGEMM): float(scale) * (q - zp), the difference exact in int32.
inline float dequantize_val(float scale, int32_t zp, int32_t q) { return scale * static_cast<float>(q - zp); }

// scale * Vectorized<float>(zp).neg(): the premultiplied term of the SIMD body.
inline float premul(float scale, int64_t zp) { return scale * -static_cast<float>(zp); }

// Vectorized<qint>::dequantize(scale, zp, premul) on AVX2/AVX512: one fma.
inline float dequantize_fma(float scale, float pre, int32_t q) {
  return std::fma(scale, static_cast<float>(q), pre);
}

// at::native::quantize_val (AffineQuantizerBase.cpp under USE_FBGEMM), the
// scalar tail of every quantized kernel. Measured on torch 2.13: it rounds
// the sum zp + x * (1/scale) (fbgemm::Quantize's LEGACY form, no fma: the
// zero point is added in float before nearbyint), then clamps in double.
template <class T>
inline T quantize_val(float scale, int32_t zp, float x) {
  const float inv = 1.0f / scale;
  const float t = x * inv;
  const float r = std::nearbyint(static_cast<float>(zp) + t);
  const double c = std::min<double>(std::max<double>(r, QLim<T>::lo), QLim<T>::hi);
  return static_cast<T>(static_cast<int32_t>(c));
}

// cvtps_epi32 in the default rounding mode: nearest-even; NaN and values
// outside int32 give INT32_MIN (the "integer indefinite" value).
inline int32_t cvt_rne_i32(float t) {
  if (!(t >= -2147483648.0f && t < 2147483648.0f)) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(std::nearbyint(t));
}

// One lane of QuantizeAvx2 / QuantizeAvx512 (ATen vec256_qint.h /
// vec512_qint.h) and of fbgemm's QuantizeAvx2 vector body.
template <class T>
inline T quantize_lane(float inverse_scale, int32_t zp, float x) {
  float t = x * inverse_scale;
  t = (t < 2147483520.0f) ? t : 2147483520.0f;  // _mm_min_ps(t, c): c when t is NaN
  const int32_t r = cvt_rne_i32(t);
  const int32_t s = static_cast<int32_t>(static_cast<uint32_t>(r) + static_cast<uint32_t>(zp));  // epi32 add wraps
  return static_cast<T>(std::min(std::max(s, QLim<T>::lo), QLim<T>::hi));
}

// The scalar tail of ATen's QuantizeAvx2/QuantizeAvx512 (given inverse).
template <class T>
inline T quantize_avx_tail(float inverse_scale, int32_t zp, float x) {
  float t = x * inverse_scale;
  t = static_cast<float>(zp) + std::nearbyint(t);
  const float c = std::min(std::max(t, static_cast<float>(QLim<T>::lo)), static_cast<float>(QLim<T>::hi));
  return static_cast<T>(static_cast<int32_t>(c));
}

// fbgemm::Quantize<T, LEGACY=true> (what torch.quantize_per_tensor runs):
// nearest-even of fma(x, 1/scale, zp), clamped. The SIMD body's min with
// 2147483520.f and cvtps_epi32 saturate like the scalar tail's float clamp.
template <class T>
inline T quantize_legacy(float inverse_scale, int32_t zp, float x) {
  float t = std::fma(x, inverse_scale, static_cast<float>(zp));
  t = (t < 2147483520.0f) ? t : 2147483520.0f;
  const int32_t r = cvt_rne_i32(t);
  return static_cast<T>(std::min(std::max(r, QLim<T>::lo), QLim<T>::hi));
}

// at::native::requantize_from_int: zp + lrintf(src * float(multiplier)),
// clamped. Its AVX2/AVX512 forms (cvtepi32_ps, mul_ps, cvtps_epi32, add,
// saturate) agree for every int32 src the quantized kernels produce.
template <class T>
inline T requantize_from_int(float multiplier, int64_t zp, int64_t src) {
  const int64_t q = zp + static_cast<int64_t>(std::lrintf(static_cast<float>(src) * multiplier));
  return static_cast<T>(std::min<int64_t>(std::max<int64_t>(q, QLim<T>::lo), QLim<T>::hi));
}

// SLEEF's expf_u10 (Sleef_expf8_u10 / Sleef_expf16_u10), which
// Vectorized<float>::exp calls under AVX2/AVX512: Cody-Waite reduction by
// ln 2, a degree-6 polynomial evaluated with fma, scaling by 2^q in two
// steps. Constants are SLEEF's.
inline float pow2i_f(int32_t q) {
  const uint32_t bits = static_cast<uint32_t>(q + 0x7f) << 23;
  float f;
  static_assert(sizeof(f) == sizeof(bits), "float is 32-bit");
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

inline float sleef_expf_u10(float d) {
  const int32_t q = static_cast<int32_t>(std::nearbyint(d * 1.442695040888963407359924681001892137426645954152985934135449406931f));
  const float qf = static_cast<float>(q);
  float s = std::fma(qf, -0.693145751953125f, d);
  s = std::fma(qf, -1.428606765330187045e-06f, s);
  float u = 0.000198527617612853646278381f;
  u = std::fma(u, s, 0.00139304355252534151077271f);
  u = std::fma(u, s, 0.00833336077630519866943359f);
  u = std::fma(u, s, 0.0416664853692054748535156f);
  u = std::fma(u, s, 0.166666671633720397949219f);
  u = std::fma(u, s, 0.5f);
  u = 1.0f + std::fma(s * s, u, s);
  const int32_t h = q >> 1;
  u = u * pow2i_f(h) * pow2i_f(q - h);
  if (d < -104.0f) u = 0.0f;
  if (100.0f < d) u = std::numeric_limits<float>::infinity();
  return u;
}


// SLEEF's double-float ("df") helpers in their FMA form (df.h under
// ENABLE_FMA_SP, which SLEEF's AVX2 and AVX512F builds define): a value is
// the unevaluated sum x + y of two floats.
struct DF {
  float x, y;
};
inline DF df_add2_ff(DF a, float b) {  // dfadd2_vf2_vf2_vf
  const float s = a.x + b, v = s - a.x;
  const float t = (a.x - (s - v)) + (b - v);
  return {s, t + a.y};
}
inline DF df_add2_dd(DF a, DF b) {  // dfadd2_vf2_vf2_vf2
  const float s = a.x + b.x, v = s - a.x;
  const float t = (a.x - (s - v)) + (b.x - v);
  return {s, t + (a.y + b.y)};
}
inline DF df_add_dd(DF a, DF b) {  // dfadd_vf2_vf2_vf2 (|a| >= |b|)
  const float s = a.x + b.x;
  return {s, (((a.x - s) + b.x) + a.y) + b.y};
}
inline DF df_add_fd(float a, DF b) {  // dfadd_vf2_vf_vf2
  const float s = a + b.x;
  return {s, ((a - s) + b.x) + b.y};
}
inline DF df_mul_df(DF a, float b) {  // dfmul_vf2_vf2_vf
  const float s = a.x * b;
  return {s, std::fma(a.y, b, std::fma(a.x, b, -s))};
}
inline DF df_mul_dd(DF a, DF b) {  // dfmul_vf2_vf2_vf2
  const float s = a.x * b.x;
  return {s, std::fma(a.x, b.y, std::fma(a.y, b.x, std::fma(a.x, b.x, -s)))};
}
inline DF df_squ(DF a) {  // dfsqu_vf2_vf2
  const float s = a.x * a.x;
  return {s, std::fma(a.x + a.x, a.y, std::fma(a.x, a.x, -s))};
}
inline DF df_rec(DF d) {  // dfrec_vf2_vf2
  const float s = 1.0f / d.x;
  return {s, s * std::fma(-d.y, s, std::fma(-d.x, s, 1.0f))};
}
inline DF df_div(DF n, DF d) {  // dfdiv_vf2_vf2_vf2
  const float t = 1.0f / d.x;
  const float s = n.x * t;
  const float u = std::fma(t, n.x, -s);
  const float v = std::fma(-d.y, t, std::fma(-d.x, t, 1.0f));
  return {s, std::fma(s, v, std::fma(n.y, t, u))};
}
// vldexp2_vf_vf_vi2: d * 2^(e >> 1) * 2^(e - (e >> 1)).
inline float ldexp2_f(float d, int32_t e) { return d * pow2i_f(e >> 1) * pow2i_f(e - (e >> 1)); }

// SLEEF's expk2f: exp of a double-float, as a double-float.
inline DF sleef_expk2f(DF d) {
  const float u0 = (d.x + d.y) * 1.442695040888963407359924681001892137426645954152985934135449406931f;
  const int32_t q = cvt_rne_i32(u0);
  const float qf = static_cast<float>(q);
  DF s = df_add2_ff(d, qf * -0.693145751953125f);
  s = df_add2_ff(s, qf * -1.428606765330187045e-06f);
  float u = 0.1980960224e-3f;
  u = std::fma(u, s.x, 0.1394256484e-2f);
  u = std::fma(u, s.x, 0.8333456703e-2f);
  u = std::fma(u, s.x, 0.4166637361e-1f);
  DF t = df_add2_ff(df_mul_df(s, u), 0.166666659414234244790680580464e+0f);
  t = df_add2_ff(df_mul_dd(s, t), 0.5f);
  t = df_add2_dd(s, df_mul_dd(df_squ(s), t));
  t = df_add_fd(1.0f, t);
  t.x = ldexp2_f(t.x, q);
  t.y = ldexp2_f(t.y, q);
  if (d.x < -104.0f) t = {0.0f, 0.0f};
  return t;
}

// SLEEF's tanhf_u10 (Sleef_tanhf8_u10 / Sleef_tanhf16_u10, sleefsimdsp.c
// xtanhf), which Vectorized<float>::tanh calls under AVX2/AVX512.
inline float sleef_tanhf_u10(float x) {
  float y = std::fabs(x);
  DF d = sleef_expk2f({y, 0.0f});
  const DF e = df_rec(d);
  d = df_div(df_add_dd(d, {-e.x, -e.y}), df_add_dd(d, e));
  y = d.x + d.y;
  if (std::fabs(x) > 8.664339742f || std::isnan(y)) y = 1.0f;
  y = std::signbit(x) ? -y : y;  // vmulsign (y >= 0 here)
  if (std::isnan(x)) y = x;
  return y;
}

// Vectorized<float>::erf under AVX2/AVX512 (vec256_float.h / vec512_float.h):
// Abramowitz-Stegun 7.1.26 with fma and SLEEF's expf_u10.
inline float aten_vec_erf(float v) {
  const float a = std::fabs(v);
  const float t = 1.0f / std::fma(0.3275911f, a, 1.0f);
  float r = std::fma(1.061405429f, t, -1.453152027f);
  r = std::fma(r, t, 1.421413741f);
  r = std::fma(r, t, -0.284496736f);
  r = std::fma(r, t, 0.254829592f);
  const float e = sleef_expf_u10(-(v * v));
  const float y = std::fma(-e * t, r, 1.0f);
  return std::signbit(v) ? -y : y;
}

}  // namespace aten
}  // namespace qref
