// qref: oneDNN's requantization, written once (docs/numerics.md §6; docs/onednn.md).
// Every oneDNN route uses it: the scalar reference loop and the portable loop
// (onednn.cc), the AVX-512 oneDNN kernels (kernels/onednn_avx512vnni.cc) and the
// exact int8 GEMM's oneDNN epilogue (fbgemm/kernels/conv2d_avx512vnni.cc, through
// gemm/epilogue.h).
//
// For one output element with int32 sums acc (products over the real taps) and
// colsum (weights over the same taps):
//   A = float(wrap32(acc - a_zp*colsum))                      (integer compensation,
//         jit_brgemm_kernel.cpp apply_compensation: vpmulld + vpsubd)
//     = f32(f32(acc) + f32(f32(-colsum) * f32(a_zp)))         (float_comp: the AMX
//         micro-kernel, jit_brgemm_amx_uker.cpp)
//   y = f32(A * scale[o])  with scale[o] = f32(ss * ws[o])      (combined)
//     = f32(f32(A * ss) * scale[o]) with scale[o] = ws[o]       (separate scales)
//   y = f32(y + bias[o]);  relu: y = y < 0 ? 0 : y              (eltwise post-op)
//   y = f32(y * inv)  or  f32(y / dst_scale)                    (divide_dst: ref:any)
//   y = f32(y + f32(out_zp));  out = rne(clamp(y, 0, 255))      (saturate_cvt_f32)
// with ss, inv and dst_scale as PyTorch and ideep build them (onednn_scales below).
//
// The scalar functions are plain C++; the 16-lane AVX-512 form below them is
// compiled only in translation units built with AVX-512 flags (CMakeLists.txt),
// all with the same flags, so no inline function is shared between TUs compiled
// for different ISAs.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "qref/common/int.h"
#include "qref/onednn/eltwise.h"

namespace qref {

// The per-problem constants (per-channel scale and bias arrays are the caller's:
// scale[o] is f32(ss * ws[o]) when combined, else ws[o]).
struct OnednnRequant {
  float ss = 1.f;         // effective src scale
  float inv = 1.f;        // 1 / dst scale (multiplied)
  float dst_scale = 1.f;  // divided by when divide_dst
  int32_t a_zp = 0;       // src zero point
  int32_t out_zp = 0;     // dst zero point, added in float before rounding
  bool relu = false;
  bool has_bias = false;
  bool combined = false;    // one scale f32(ss * ws[o]) instead of two multiplies
  bool divide_dst = false;  // ref:any: y / dst_scale instead of y * (1 / dst_scale)
  bool float_comp = false;  // zero-point compensation in float (AMX micro-kernel)
};

// oneDNN's effective scales (docs/numerics.md §6.1). qconv.cpp passes 1.0/input_scale and
// 1.0/output_scale (double -> float); ideep inverts them again (1.0f / that float); the
// oneDNN kernel multiplies by 1.f / dst_scale.
struct OnednnScales {
  float ss;         // f32(1 / f32(1 / (double)input_scale))
  float dst_scale;  // f32(1 / f32(1 / (double)output_scale))
  float inv;        // f32(1 / dst_scale)
};
inline OnednnScales onednn_scales(double input_scale, double output_scale) {
  const float src_rcp = static_cast<float>(1.0 / input_scale);
  const float dst_rcp = static_cast<float>(1.0 / output_scale);
  OnednnScales s;
  s.ss = 1.0f / src_rcp;
  s.dst_scale = 1.0f / dst_rcp;
  s.inv = 1.0f / s.dst_scale;
  return s;
}

// a_zp * colsum as the int32 register holds it (vpmulld wraps).
inline int32_t onednn_zp_comp(int32_t a_zp, int32_t colsum) {
  return static_cast<int32_t>(static_cast<uint32_t>(a_zp) * static_cast<uint32_t>(colsum));
}

// The zero-point-compensated accumulator A.
inline float onednn_compensated(int32_t acc, int32_t colsum, int32_t a_zp, bool float_comp) {
  if (float_comp)
    return static_cast<float>(acc) + static_cast<float>(-static_cast<int64_t>(colsum)) * static_cast<float>(a_zp);
  return static_cast<float>(wrap32(static_cast<int64_t>(acc) - static_cast<int64_t>(onednn_zp_comp(a_zp, colsum))));
}

// ref_deconvolution's compensation (oneDNN src/cpu/ref_deconvolution.cpp apply_src_zero_point):
// the backward-data conv's int32 sum over the real taps as float, minus the compensation over
// ALL taps in float, truncated to int32, plus the compensation of the taps outside the input in
// int32, as float: A = f32(int32(trunc(f32(f32(acc) - f32(zp*colsum_all)))) + zp*colsum_outside).
// The exact value while |acc| < 2^24; rounds like oneDNN beyond. colsum_* wrap like int32.
inline float onednn_compensated_ref_deconv(int32_t acc, int32_t colsum_real, int32_t colsum_all, int32_t a_zp) {
  const float t = static_cast<float>(acc) - static_cast<float>(onednn_zp_comp(a_zp, colsum_all));
  const int32_t conv = wrap32(static_cast<int64_t>(std::trunc(static_cast<double>(t))));
  const int32_t outside = onednn_zp_comp(a_zp, wrap32(static_cast<int64_t>(colsum_all) - colsum_real));
  return static_cast<float>(wrap32(static_cast<int64_t>(conv) + outside));
}

// Every float32 value of the requantization after A, in order (qref.explain shows them).
struct OnednnSteps {
  float scaled;      // f32(A * scale) or f32(f32(A * ss) * scale)
  float with_bias;   // f32(scaled + bias) (scaled without bias)
  float after_relu;  // with_bias < 0 ? 0 : with_bias (with_bias without ReLU)
  float dst_scaled;  // f32(after_relu * inv) or f32(after_relu / dst_scale)
  float y;           // f32(dst_scaled + f32(out_zp)): the value clamped and rounded
};
inline OnednnSteps onednn_steps(float A, float scale, float bias, const OnednnRequant& r) {
  OnednnSteps t;
  t.scaled = r.combined ? A * scale : (A * r.ss) * scale;
  t.with_bias = r.has_bias ? t.scaled + bias : t.scaled;
  t.after_relu = r.relu && t.with_bias < 0.f ? 0.f : t.with_bias;
  t.dst_scaled = r.divide_dst ? t.after_relu / r.dst_scale : t.after_relu * r.inv;
  t.y = t.dst_scaled + static_cast<float>(r.out_zp);
  return t;
}

// y before clamping and rounding, from A and channel o's scale and bias (0 without bias).
inline float onednn_prerounding(float A, float scale, float bias, const OnednnRequant& r) {
  return onednn_steps(A, scale, bias, r).y;
}

// saturate_cvt_f32 (jit_generator.hpp): clamp to [0, 255] in float (NaN -> 0), then RNE.
inline uint8_t onednn_output(float y) {
  if (!(y > 0.f)) y = 0.f;
  if (y > 255.f) y = 255.f;
  return static_cast<uint8_t>(std::nearbyint(y));
}


// ---- oneDNN post-ops as torch.compile's int8 ops set them (PT2E: onednn::qconv_pointwise,
// qconv2d_pointwise.binary, qlinear_pointwise(.binary); docs/pt2e.md). PyTorch hands these ops
// the float scales themselves (runtime scales), so unlike the eager quantized modules there is
// no reciprocal round trip: measured against the ops on this host, f32 outputs match only
//   y = f32(f32(A * f32(x_scale)) * w_scale[o])      (separate scales)
//   y = f32(y + bias[o])
//   sum / add:  y = f32(y + f32(f32(other - f32(other_zp)) * other_scale))
//   eltwise:    relu      y = max(y, 0)
//               hardtanh  y = min(max(y, lo), hi)
//               hardswish y = f32(y * min(max(f32(f32(y * f32(1/6)) + 0.5), 0), 1))
//                         (jit_uni_eltwise_injector.cpp hardswish_compute_vector_fwd: a multiply
//                         and an add, no FMA on this host's kernels)
//               gelu_erf, gelu_tanh, swish: oneDNN's approximations (eltwise.h); gelu_erf
//                         by the kernel's vector ISA (AVX-512 minimax table or AVX2
//                         Abramowitz-Stegun)
//   sum with a scale other than 1 in the AVX2 gemm post-processing kernel
//   (jit_gemm_inner_product_utils.cpp): y = fma(other - other_zp, other_scale, y)
//   output:     f32  y;  bf16  round-to-nearest-even of y;
//               u8   rne(clamp(f32(f32(y * f32(1 / (double)out_scale)) + f32(out_zp)), 0, 255))
// The exact zero-point-compensated int32 sum A comes from the oneDNN conv driver
// (onednn.h, the same for eager and compiled models).
enum class OnednnEltwise : int {
  none = 0,
  relu = 1,
  hardtanh = 2,
  hardswish = 3,
  gelu_erf = 4,
  gelu_tanh = 5,
  swish = 6,
};
enum class OnednnOutType : int { u8 = 0, f32 = 1, bf16 = 2 };

struct OnednnPostOps {
  float src_scale = 1.f;          // f32(x_scale)
  bool combined = false;          // f32(A * f32(src_scale * w_scale[o])) (measured per kernel class)
  bool has_bias = false;
  bool sum = false;               // binary sum / add with another tensor of the output's shape
  float sum_scale = 1.f;
  int32_t sum_zp = 0;
  OnednnEltwise eltwise = OnednnEltwise::none;
  float alpha = 0.f, beta = 0.f;  // hardtanh bounds; swish: alpha
  bool avx512 = true;             // the kernel's eltwise injector is AVX-512 (gelu_erf's form)
  bool ref = false;               // oneDNN's reference primitive: C library eltwise
  bool ref_zero_start = false;    // ref_matmul_int8: y = 0 + scaled (-0 -> +0)
  bool sum_fma = false;           // sum scale fused into the add (AVX2 gemm post-processing)
  OnednnOutType out = OnednnOutType::f32;
  float inv = 1.f;                // f32(1 / (double)out_scale) (u8 output)
  int32_t out_zp = 0;
};

// The reference primitives' post-ops (math_utils.hpp): relu is s > 0 ? s : s * 0 (-0 for a
// negative s); clip and hardswish as the JIT kernels; gelu and swish from the C library.
inline float onednn_eltwise_ref(float y, const OnednnPostOps& p) {
  switch (p.eltwise) {
    case OnednnEltwise::relu:
      return y > 0.f ? y : y * 0.f;
    case OnednnEltwise::gelu_erf:
      return onednn_ref_gelu_erf(y);
    case OnednnEltwise::gelu_tanh:
      return onednn_ref_gelu_tanh(y);
    case OnednnEltwise::swish:
      return onednn_ref_swish(y, p.alpha);
    default:
      break;
  }
  return y;  // hardtanh, hardswish: onednn_eltwise handles them
}

inline float onednn_eltwise(float y, const OnednnPostOps& p) {
  if (p.ref && p.eltwise != OnednnEltwise::hardtanh && p.eltwise != OnednnEltwise::hardswish)
    return onednn_eltwise_ref(y, p);
  switch (p.eltwise) {
    case OnednnEltwise::relu:
      return y > 0.f ? y : 0.f;
    case OnednnEltwise::hardtanh: {
      float t = y < p.alpha ? p.alpha : y;
      return t > p.beta ? p.beta : t;
    }
    case OnednnEltwise::hardswish: {
      float h = y * static_cast<float>(1.0 / 6.0);
      h = h + 0.5f;
      h = h > 0.f ? h : 0.f;
      h = h < 1.f ? h : 1.f;
      return h * y;
    }
    case OnednnEltwise::gelu_erf:
      return p.avx512 ? onednn_gelu_erf_avx512(y) : onednn_gelu_erf_avx2(y);
    case OnednnEltwise::gelu_tanh:
      return onednn_gelu_tanh(y);
    case OnednnEltwise::swish:
      return onednn_swish(y, p.alpha);
    default:
      return y;
  }
}

// The float value before the output conversion. `other`: the binary operand as float (u8
// operands converted exactly), ignored without sum.
inline float onednn_postops_y(float A, float wscale, float bias, float other, const OnednnPostOps& p) {
  float y = p.combined ? A * (p.src_scale * wscale) : (A * p.src_scale) * wscale;
  if (p.ref_zero_start) y = 0.f + y;  // ref_matmul_int8.cpp sums the scaled groups into d = 0
  if (p.has_bias) y = y + bias;
  if (p.sum) {
    const float d = other - static_cast<float>(p.sum_zp);
    if (p.sum_fma && p.sum_scale != 1.f)
      y = std::fma(d, p.sum_scale, y);
    else
      y = y + d * p.sum_scale;
  }
  return onednn_eltwise(y, p);
}

// Round-to-nearest-even float -> bfloat16 bits (NaN kept quiet), as c10::BFloat16's
// round_to_nearest_even.
inline uint16_t onednn_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline uint8_t onednn_postops_u8(float y, const OnednnPostOps& p) {
  return onednn_output(y * p.inv + static_cast<float>(p.out_zp));
}
}  // namespace qref

#if defined(__AVX512F__)
#include <immintrin.h>

namespace qref {
namespace avx512 {
namespace {  // internal linkage: each AVX-512 translation unit compiles its own copy

// OnednnRequant's scalars broadcast once per problem.
struct OnednnRequant16 {
  __m512 ss, inv, dst_scale, out_zp;
  bool relu, has_bias, combined, divide_dst;
};
inline OnednnRequant16 onednn_requant16_consts(const OnednnRequant& r) {
  OnednnRequant16 c;
  c.ss = _mm512_set1_ps(r.ss);
  c.inv = _mm512_set1_ps(r.inv);
  c.dst_scale = _mm512_set1_ps(r.dst_scale);
  c.out_zp = _mm512_set1_ps(static_cast<float>(r.out_zp));
  c.relu = r.relu;
  c.has_bias = r.has_bias;
  c.combined = r.combined;
  c.divide_dst = r.divide_dst;
  return c;
}

// onednn_compensated on 16 lanes; `zp_col` = a_zp * colsum (vpmulld) for the integer form.
inline __m512 onednn_compensated16(__m512i acc, __m512i zp_col) {
  return _mm512_cvtepi32_ps(_mm512_sub_epi32(acc, zp_col));
}
inline __m512 onednn_compensated16_float(__m512i acc, __m512i colsum, int32_t a_zp) {
  const __m512 nc = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_setzero_si512(), colsum));
  return _mm512_add_ps(_mm512_cvtepi32_ps(acc), _mm512_mul_ps(nc, _mm512_set1_ps(static_cast<float>(a_zp))));
}

// onednn_prerounding and onednn_output on 16 lanes, the same IEEE operations in the same
// order: returns the rounded int32 in [0, 255] (vmaxps with 0 as second operand maps NaN to 0,
// as !(y > 0) does; vcvtps2dq rounds half to even).
inline __m512i onednn_requant16(__m512 A, __m512 scale, __m512 bias, const OnednnRequant16& c) {
  const __m512 zero = _mm512_setzero_ps();
  __m512 y = c.combined ? _mm512_mul_ps(A, scale) : _mm512_mul_ps(_mm512_mul_ps(A, c.ss), scale);
  if (c.has_bias) y = _mm512_add_ps(y, bias);
  if (c.relu) y = _mm512_mask_mov_ps(y, _mm512_cmp_ps_mask(y, zero, _CMP_LT_OQ), zero);
  y = c.divide_dst ? _mm512_div_ps(y, c.dst_scale) : _mm512_mul_ps(y, c.inv);
  y = _mm512_add_ps(y, c.out_zp);
  y = _mm512_min_ps(_mm512_max_ps(y, zero), _mm512_set1_ps(255.0f));
  return _mm512_cvtps_epi32(y);
}

}  // namespace
}  // namespace avx512
}  // namespace qref
#endif
