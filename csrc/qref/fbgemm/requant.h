// qref: THE normative requantization of fbgemm (docs/numerics.md §5). Every kernel,
// the Python explainer and the docs follow this function.
//
// fbgemm sources: include/fbgemm/OutputProcessing-inl.h ReQuantizeOutput::f,
// src/QuantUtilsAvx2.cc requantizeOutputProcessingAvx2 (and the GConv and
// depthwise twins, which have the same arithmetic on x86).
#pragma once

#include <cmath>
#include <cstdint>

#include "qref/common/int.h"
#include "qref/gemm/conv2d.h"

namespace qref {

// The receptive field of output pixel (n, oh, ow) in group g, NHWC input, into
// a[0..K) in the per-group reduction order k = (kh*KW + kw)*Cg + c (conv2d.h);
// padded taps hold the activation zero point (fbgemm's im2col memset and the
// depthwise/groupwise a_zp registers; docs/numerics.md §4.1-§4.3). Returns the row sum
// (exact: at most K * 255). Step 1 of the scalar kernel and of reference.h.
inline int64_t receptive_field(const Conv2dShape& s, const uint8_t* in, int64_t n, int64_t oh, int64_t ow,
                               int64_t g, uint8_t a_zp, uint8_t* a) {
  const int64_t Cg = s.cin_per_group();
  int64_t rowsum = 0;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
      const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
      const uint8_t* px = inside ? in + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg : nullptr;
      for (int64_t c = 0; c < Cg; ++c) {
        const uint8_t v = inside ? px[c] : a_zp;
        a[(kh * s.KW + kw) * Cg + c] = v;
        rowsum += v;
      }
    }
  }
  return rowsum;
}

// acc = sum_k a[k] * w[k] over one output element's reduction (k in the
// per-group order of conv2d.h). With `saturate`, consecutive pairs (2i, 2i+1)
// are summed and saturated to int16 first, as vpmaddubsw does on every fbgemm
// path that saturates (docs/numerics.md §0, §4.6); an odd last element pairs with zero.
// The sum wraps to int32 like vpaddd. Plain loop: the normative scalar kernel
// and the header-only reference (reference.h) both call it.
inline int32_t pair_dot(const uint8_t* a, const int8_t* w, int64_t K, bool saturate) {
  int64_t acc = 0;
  for (int64_t k = 0; k < K; k += 2) {
    const int32_t p0 = static_cast<int32_t>(a[k]) * w[k];
    const int32_t p1 = k + 1 < K ? static_cast<int32_t>(a[k + 1]) * w[k + 1] : 0;
    acc += saturate ? sat16(p0 + p1) : p0 + p1;
  }
  return wrap32(acc);
}

// raw = acc - a_zp * col_offset[o] - rowsum * w_zp[o], all int32 wrapping.
inline int32_t zero_point_terms(int32_t acc, int32_t rowsum, int32_t a_zp, int32_t col_offset,
                                int32_t w_zp) {
  int32_t r = wrap32(static_cast<int64_t>(acc) - static_cast<int64_t>(wrap32(static_cast<int64_t>(a_zp) * col_offset)));
  return wrap32(static_cast<int64_t>(r) - static_cast<int64_t>(wrap32(static_cast<int64_t>(rowsum) * w_zp)));
}

// y = f32(yf * M) with
//   per-channel weights: yf = f32(float(raw) + bterm[o]),       bterm = f32(bias / S)
//   per-tensor weights:  yf = fma(bias[o], R, float(raw)),        R = f32(1.0 / (double)S), one rounding
// (see Requant::bias_fma in conv2d.h for why the per-tensor form is fused). float(raw) rounds to
// nearest even above 2^24 as cvtdq2ps does. Every other step is one IEEE operation (the build uses
// -ffp-contract=off, so the only fused multiply-add is the explicit std::fma below).
inline float requant_prerounding(int32_t raw, bool has_bias, bool bias_fma, float bias_term, float bias_rcp,
                                 float multiplier) {
  float yf = static_cast<float>(raw);
  if (has_bias) yf = bias_fma ? std::fma(bias_term, bias_rcp, yf) : yf + bias_term;
  return yf * multiplier;
}

// The uint8 output: cvtps2dq, pack to int16 with saturation, saturating int16
// add of the zero point, pack to uint8 with unsigned saturation, then the
// clamp [lo, 255], lo = out_zp when ReLU is fused (docs/numerics.md §5.1 step 7, §5.2).
inline uint8_t requant_output(float y, int32_t out_zp, bool relu) {
  int32_t r = sat16(cvtps2dq(y));
  r = sat16(r + out_zp);
  r = r < 0 ? 0 : (r > 255 ? 255 : r);
  const int32_t lo = relu ? out_zp : 0;
  if (r < lo) r = lo;
  if (r > 255) r = 255;
  return static_cast<uint8_t>(r);
}

// The per-channel constants, rounded to float32 in fbgemm's order (docs/numerics.md §2.1,
// §5.1), for O output channels of reduction length K over the OHWI weight w:
//   S = f32(a_s * w_s[o]), M = f32(S / out_s), every scale narrowed to float
//   first (qconv.cpp GetQuantizationParams keeps float scales);
//   bias per-channel: bias_term = f32(bias / S) (added);
//   bias per-tensor:  bias_term = bias, bias_rcp = f32(1.0 / (double)S), fused
//     with float(raw) in one fma (requantizeOutputProcessingAvx2 multiplies by
//     _mm256_set1_ps(1.0 / act_times_w_scale) and the compiler contracts the
//     mul+add; see Requant::bias_fma);
//   col_offset = colsum - w_zp * K, int32 wrapping.
// One function for qref's prepare_requant (api.h, double scales) and the
// header-only ref::prepare (reference.h, float scales): `Args` is either
// argument struct, both have the same member names; a null weight_zero_point
// means all zero.
template <typename Args>
inline Requant make_requant(int64_t O, int64_t K, const int8_t* w, const Args& a) {
  Requant rq;
  rq.input_zero_point = a.input_zero_point;
  rq.output_zero_point = a.output_zero_point;
  rq.relu = a.relu;
  rq.has_bias = a.bias != nullptr;
  rq.multiplier.resize(O);
  rq.col_offset.resize(O);
  rq.weight_zero_point.resize(O);
  if (rq.has_bias) rq.bias_term.resize(O);
  const float a_f = static_cast<float>(a.input_scale);
  const float o_f = static_cast<float>(a.output_scale);
  for (int64_t o = 0; o < O; ++o) {
    const int64_t i = a.per_channel ? o : 0;
    const float S = a_f * static_cast<float>(a.weight_scale[i]);
    rq.multiplier[o] = S / o_f;
    rq.weight_zero_point[o] = a.weight_zero_point ? a.weight_zero_point[i] : 0;
    if (rq.has_bias) {
      if (a.per_channel) {
        rq.bias_term[o] = a.bias[o] / S;
      } else {
        rq.bias_fma = true;
        rq.bias_rcp = static_cast<float>(1.0 / static_cast<double>(S));
        rq.bias_term[o] = a.bias[o];
      }
    }
    int64_t colsum = 0;
    for (int64_t k = 0; k < K; ++k) colsum += w[o * K + k];
    rq.col_offset[o] = wrap32(colsum - static_cast<int64_t>(rq.weight_zero_point[o]) * K);
  }
  return rq;
}

}  // namespace qref
