// qref: the AVX-512 (f/bw/dq/vl, no VNNI) depthwise kernels of the oneDNN arithmetic, which
// AVX-512 CPUs without VNNI run too. Same bytes as the reference loop in ../onednn.cc.
//
// Compiled with the AVX-512 flags set in CMakeLists.txt (no VNNI, so the compiler cannot
// emit VNNI instructions here) and called only after the dispatcher checked the CPU.
#include <immintrin.h>

#include <cstdint>

#include "qref/common/taps.h"
#include "qref/onednn/kernels/onednn_simd.h"

namespace qref {

using avx512::OnednnRequant16;

// Depthwise (one input and one output channel per group): channels are
// contiguous in NHWC, so 16 groups go in one vector. P.w holds the weights
// widened to int32 as [tap][G rounded up to 16] (zero-padded); vpmaddwd of a
// zero-extended byte (high half 0) with a sign-extended weight is the exact
// product.
void onednn_avx512_dw_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end) {
  const OnednnRequant16 c = avx512::onednn_requant16_consts(P.rq);
  const int64_t G = P.groups, Gp = (G + 15) / 16 * 16;
  const int32_t* w32 = P.wsum;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / P.OH, oh = m % P.OH;
    for (int64_t ow = 0; ow < P.OW; ++ow) {
      const int64_t pos = (n * P.OH + oh) * P.OW + ow;
      for (int64_t c0 = 0; c0 < G; c0 += 16) {
        const int64_t lanes = G - c0 < 16 ? G - c0 : 16;
        const __mmask16 k = static_cast<__mmask16>((1u << lanes) - 1u);
        __m512i acc = _mm512_setzero_si512(), col = _mm512_setzero_si512();
        for_each_inner_tap(P, oh, ow, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
          const uint8_t* px = in + ((n * P.H + ih) * P.W + iw) * P.C + c0;
          const __m512i a = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, px));
          const __m512i wv = _mm512_load_si512(w32 + (kh * P.KW + kw) * Gp + c0);
          acc = _mm512_add_epi32(acc, _mm512_madd_epi16(a, wv));
          col = _mm512_add_epi32(col, wv);
        });
        avx512::onednn_store16(P, c, acc, col, c0, k, P.out + pos * P.O + c0);
      }
    }
  }
}

// Depthwise, 32 channels per vector pair. Per output position: each tap's 32 bytes
// widened to int16 (vpmovzxbw), taps 2p and 2p+1 interleaved per channel (vpunpck{l,h}wd),
// vpmaddwd with the interleaved weights adds both exact products into the channel's int32
// lane. Padded taps read P.zp_row (a_zp), so raw = acc - a_zp * colsum(all taps) is
// oneDNN's int32 (onednn_simd.h). vpackusdw of the two halves restores the channel order.
void onednn_avx512_dw_pair_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end) {
  const OnednnRequant16 c = avx512::onednn_requant16_consts(P.rq);
  const int64_t G = P.groups, T = P.KH * P.KW, TP = (T + 1) / 2, NC = (G + 31) / 32;
  const uint8_t* ptr[64];  // taps of one position (KH * KW <= 64: onednn.cc routes larger kernels elsewhere)
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / P.OH, oh = m % P.OH;
    for (int64_t ow = 0; ow < P.OW; ++ow) {
      pixel_taps(P, in, n, oh, ow, P.zp_row, ptr);
      uint8_t* dst = P.out + ((n * P.OH + oh) * P.OW + ow) * P.O;
      for (int64_t cb = 0; cb < NC; ++cb) {
        const int64_t c0 = cb * 32;
        const int64_t lanes = G - c0 < 32 ? G - c0 : 32;
        const __mmask32 k = lanes == 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << lanes) - 1u);
        const int16_t* wc = P.wpair + cb * 64;
        __m512i acc_lo = _mm512_setzero_si512(), acc_hi = _mm512_setzero_si512();
        for (int64_t p = 0; p < TP; ++p) {
          const __m512i x0 = _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(k, ptr[2 * p] + c0));
          const __m512i x1 = 2 * p + 1 < T ? _mm512_cvtepu8_epi16(_mm256_maskz_loadu_epi8(k, ptr[2 * p + 1] + c0))
                                           : _mm512_setzero_si512();
          const int16_t* wp = wc + p * NC * 64;
          acc_lo = _mm512_add_epi32(acc_lo, _mm512_madd_epi16(_mm512_unpacklo_epi16(x0, x1), _mm512_load_si512(wp)));
          acc_hi = _mm512_add_epi32(acc_hi,
                                    _mm512_madd_epi16(_mm512_unpackhi_epi16(x0, x1), _mm512_load_si512(wp + 32)));
        }
        // raw = acc - wrap32(a_zp * colsum) (P.colp holds the product)
        const int32_t* cz = P.colp + cb * 32;
        const __m512i q_lo = avx512::onednn_requant_half(P, c, _mm512_sub_epi32(acc_lo, _mm512_load_si512(cz)), P.scale_p + c0,
                                          P.bias_p + c0);
        const __m512i q_hi = avx512::onednn_requant_half(P, c, _mm512_sub_epi32(acc_hi, _mm512_load_si512(cz + 16)),
                                          P.scale_p + c0 + 16, P.bias_p + c0 + 16);
        // per 128-bit lane: q_lo's channels 8L..8L+3 then q_hi's 8L+4..8L+7, as uint16
        _mm256_mask_storeu_epi8(dst + c0, k, _mm512_cvtepi16_epi8(_mm512_packus_epi32(q_lo, q_hi)));
      }
    }
  }
}

}  // namespace qref
