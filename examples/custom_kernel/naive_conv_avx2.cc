// The user's kernel: one output pixel at a time, gather the receptive field,
// then an AVX2 dot product per output channel (16 bytes widened to int16,
// _mm256_madd_epi16 into exact int32 lanes: the products of a VNNI host, no
// int16 pair saturation), then float requantization per element.
//
// Version 1 pads out-of-image taps with 0, the float habit. In a quantized
// conv, the real value 0 is the activation zero point, so fbgemm (and torch)
// pad with input_zero_point; version 2 does that.
#include "naive_conv_avx2.h"

#include <immintrin.h>

#include <cmath>
#include <cstdlib>

namespace {

int32_t dot_avx2(const uint8_t* a, const int8_t* w, int64_t K) {
  __m256i acc = _mm256_setzero_si256();
  int64_t k = 0;
  for (; k + 16 <= K; k += 16) {
    const __m256i a16 = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k)));
    const __m256i w16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + k)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(a16, w16));
  }
  alignas(32) int32_t lanes[8];
  _mm256_store_si256(reinterpret_cast<__m256i*>(lanes), acc);
  int32_t s = 0;
  for (int i = 0; i < 8; ++i) s += lanes[i];
  for (; k < K; ++k) s += static_cast<int32_t>(a[k]) * w[k];
  return s;
}

}  // namespace

void naive_conv_avx2(int version, const NaiveConvParams& p, const uint8_t* in, const int8_t* w, uint8_t* out) {
  const qref::Conv2dShape& s = p.shape;
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups, K = s.KH * s.KW * Cg;
  const uint8_t pad = version == 1 ? 0 : static_cast<uint8_t>(p.input_zero_point);
  uint8_t* a = static_cast<uint8_t*>(std::malloc(K + 16));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow = 0; ow < s.OW; ++ow)
        for (int64_t g = 0; g < s.groups; ++g) {
          int32_t rowsum = 0;
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
              const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
              const bool inside = ih >= 0 && ih < s.H && iw >= 0 && iw < s.W;
              for (int64_t c = 0; c < Cg; ++c) {
                const uint8_t v = inside ? in[((n * s.H + ih) * s.W + iw) * s.C + g * Cg + c] : pad;
                a[(kh * s.KW + kw) * Cg + c] = v;
                rowsum += v;
              }
            }
          for (int64_t oc = 0; oc < Og; ++oc) {
            const int64_t o = g * Og + oc;
            const int8_t* wo = w + o * K;
            int32_t colsum = 0;
            for (int64_t k = 0; k < K; ++k) colsum += wo[k];
            // sum((a - a_zp) * (w - w_zp)) expanded
            const int32_t acc = dot_avx2(a, wo, K);
            const int32_t raw = acc - p.input_zero_point * colsum - rowsum * p.weight_zero_point[o] +
                                static_cast<int32_t>(K) * p.input_zero_point * p.weight_zero_point[o];
            const float S = p.input_scale * p.weight_scale[o];
            float y = static_cast<float>(raw);
            if (p.bias) y = y + p.bias[o] / S;
            y = y * (S / p.output_scale);
            int32_t q = static_cast<int32_t>(std::nearbyint(y)) + p.output_zero_point;
            const int32_t lo = p.relu ? p.output_zero_point : 0;
            q = q < lo ? lo : (q > 255 ? 255 : q);
            out[((n * s.OH + oh) * s.OW + ow) * s.O + o] = static_cast<uint8_t>(q);
          }
        }
  std::free(a);
}
