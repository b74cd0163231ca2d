// qref: the AVX512-VNNI kernels of the oneDNN arithmetic (exact int32 class): the
// non-depthwise core and the depthwise VNNI kernel. Same bytes as the reference loop in
// ../onednn.cc (tests/test_onednn.py test_fast_equals_reference).
//
// Compiled with the AVX512-VNNI flags set in CMakeLists.txt (its only ISA mechanism) and
// called only after the dispatcher checked the CPU (onednn.cc, cpu_features()). No
// standard-library inline templates are used here.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qref/common/taps.h"
#include "qref/onednn/kernels/onednn_simd.h"

namespace qref {

// Packed weights (pack_onednn_vnni): per group g, output block ob (16 output
// channels, zero-padded), tap t, channel quad q (4 input channels,
// zero-padded): 64 bytes = 16 lanes x 4 int8, lane j = output channel
// ob*16 + j, bytes = channels 4q..4q+3 (vpdpbusd operand order). wsum: per
// (g, ob, t) 16 int32 = sum over the tap's channels of each output channel.
namespace {

using avx512::OnednnRequant16;

// Four activation bytes of channels 4q..4q+3 of one pixel, broadcast to every lane; bytes
// past Cg are zero (a masked load: nothing past the pixel's group is read, and their packed
// weights are zero too).
inline __m512i bcast4(const uint8_t* px, int64_t q, int64_t Cg) {
  const __mmask16 k = static_cast<__mmask16>((1u << (Cg - q * 4)) - 1u);  // 1 to 3 bytes
  return _mm512_broadcastd_epi32(_mm_maskz_loadu_epi8(k, px + q * 4));
}

}  // namespace

// Output positions are processed eight at a time (same n, oh; consecutive ow)
// so every 64-byte weight load feeds eight vpdpbusd.
void onednn_vnni_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end) {
  const OnednnRequant16 c = avx512::onednn_requant16_consts(P.rq);
  constexpr int NB = 8;
  const int64_t Cg = P.Cg, Q = P.quads, OB = P.oblocks, T = P.KH * P.KW;
  const int64_t Qfull = Cg / 4;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / P.OH, oh = m % P.OH;
    for (int64_t ow0 = 0; ow0 < P.OW; ow0 += NB) {
      const int64_t nb = P.OW - ow0 < NB ? P.OW - ow0 : NB;
      for (int64_t g = 0; g < P.groups; ++g) {
        for (int64_t ob = 0; ob < OB; ++ob) {
          __m512i acc[NB], col[NB];
#pragma GCC unroll 8
          for (int b = 0; b < NB; ++b) acc[b] = col[b] = _mm512_setzero_si512();
          const int8_t* wb = P.w + ((g * OB + ob) * T) * Q * 64;
          const int32_t* wsb = P.wsum + ((g * OB + ob) * T) * 16;
          for (int64_t kh = 0; kh < P.KH; ++kh) {
            const int64_t ih = oh * P.stride_h - P.pad_h + kh * P.dilation_h;
            if (ih < 0 || ih >= P.H) continue;
            const uint8_t* row = in + (n * P.H + ih) * P.W * P.C + g * Cg;
            for (int64_t kw = 0; kw < P.KW; ++kw) {
              const int64_t t = kh * P.KW + kw;
              const int8_t* wt = wb + t * Q * 64;
              const __m512i wsum = _mm512_load_si512(wsb + t * 16);
              // A tap outside the image (or a lane past the row's end) reads
              // P.zeros: zero products, and its weights are not added to colsum.
              const uint8_t* px[NB];
#pragma GCC unroll 8
              for (int b = 0; b < NB; ++b) {
                const int64_t iw = (ow0 + b) * P.stride_w - P.pad_w + kw * P.dilation_w;
                const bool ok = b < nb && iw >= 0 && iw < P.W;
                px[b] = ok ? row + iw * P.C : P.zeros;
                if (ok) col[b] = _mm512_add_epi32(col[b], wsum);
              }
              int64_t q = 0;
              for (; q < Qfull; ++q) {
                const __m512i wv = _mm512_load_si512(wt + q * 64);
#pragma GCC unroll 8
                for (int b = 0; b < NB; ++b) {
                  int32_t a4;
                  std::memcpy(&a4, px[b] + q * 4, 4);
                  acc[b] = _mm512_dpbusd_epi32(acc[b], _mm512_set1_epi32(a4), wv);
                }
              }
              if (q < Q) {
                const __m512i wv = _mm512_load_si512(wt + q * 64);
#pragma GCC unroll 8
                for (int b = 0; b < NB; ++b) acc[b] = _mm512_dpbusd_epi32(acc[b], bcast4(px[b], q, Cg), wv);
              }
            }
          }
          const int64_t lanes = P.Og - ob * 16 < 16 ? P.Og - ob * 16 : 16;
          const __mmask16 k = static_cast<__mmask16>((1u << lanes) - 1u);
          const int64_t o0 = g * P.Og + ob * 16;
          for (int b = 0; b < nb; ++b) {
            const int64_t pos = (n * P.OH + oh) * P.OW + ow0 + b;
            avx512::onednn_store16(P, c, acc[b], col[b], o0, k, P.out + pos * P.O + o0);
          }
        }
      }
    }
  }
}

// Depthwise, 64 channels per chunk, VNNI (onednn_simd.h onednn_vnni_dw_rows). Four output
// positions (consecutive ow) at a time: each weight vector feeds four vpdpbusd, and the
// sixteen independent accumulator chains and requantizations keep the core busy (one
// position alone is a chain of ~60 cycles of latency).
void onednn_vnni_dw_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end) {
  const OnednnRequant16 c = avx512::onednn_requant16_consts(P.rq);
  constexpr int NB = 4;
  const int64_t G = P.groups, T = P.KH * P.KW, NC = (G + 63) / 64;
  const uint8_t* ptr[NB][64];  // taps of each position (KH * KW <= 64: onednn.cc routes larger kernels elsewhere)
  int64_t off[64];             // tap offsets from a position's first tap, all taps inside the image
  for (int64_t kh = 0; kh < P.KH; ++kh)
    for (int64_t kw = 0; kw < P.KW; ++kw) off[kh * P.KW + kw] = (kh * P.dilation_h * P.W + kw * P.dilation_w) * P.C;
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / P.OH, oh = m % P.OH;
    const int64_t ih0 = oh * P.stride_h - P.pad_h;
    const bool rows_in = ih0 >= 0 && ih0 + (P.KH - 1) * P.dilation_h < P.H;
    for (int64_t ow0 = 0; ow0 < P.OW; ow0 += NB) {
      const int64_t nb = P.OW - ow0 < NB ? P.OW - ow0 : NB;
      const int64_t iw_first = ow0 * P.stride_w - P.pad_w;
      const int64_t iw_last = (ow0 + NB - 1) * P.stride_w - P.pad_w + (P.KW - 1) * P.dilation_w;
      if (rows_in && nb == NB && iw_first >= 0 && iw_last < P.W) {
        // interior block: no tap to test
        for (int b = 0; b < NB; ++b) {
          const uint8_t* base = in + ((n * P.H + ih0) * P.W + iw_first + b * P.stride_w) * P.C;
          for (int64_t t = 0; t < T; ++t) ptr[b][t] = base + off[t];
        }
      } else {
        for (int b = 0; b < NB; ++b) {
          const int64_t ow = ow0 + (b < nb ? b : 0);  // past the row's end: a copy of the first (not stored)
          pixel_taps(P, in, n, oh, ow, P.zp_row, ptr[b]);
        }
      }
      uint8_t* dst = P.out + ((n * P.OH + oh) * P.OW + ow0) * P.O;
      for (int64_t cb = 0; cb < NC; ++cb) {
        const int64_t c0 = cb * 64;
        const int64_t lanes = G - c0 < 64 ? G - c0 : 64;
        const __mmask64 k = lanes == 64 ? ~__mmask64{0} : ((__mmask64{1} << lanes) - 1);
        __m512i acc[NB][4];
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b)
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j) acc[b][j] = _mm512_setzero_si512();
        for (int64_t t = 0; t < T; ++t) {
          const int8_t* wt = P.wquad + (t * NC + cb) * 256;
          const __m512i w0 = _mm512_load_si512(wt), w1 = _mm512_load_si512(wt + 64);
          const __m512i w2 = _mm512_load_si512(wt + 128), w3 = _mm512_load_si512(wt + 192);
#pragma GCC unroll 4
          for (int b = 0; b < NB; ++b) {
            const __m512i x = _mm512_maskz_loadu_epi8(k, ptr[b][t] + c0);
            acc[b][0] = _mm512_dpbusd_epi32(acc[b][0], x, w0);
            acc[b][1] = _mm512_dpbusd_epi32(acc[b][1], x, w1);
            acc[b][2] = _mm512_dpbusd_epi32(acc[b][2], x, w2);
            acc[b][3] = _mm512_dpbusd_epi32(acc[b][3], x, w3);
          }
        }
        // raw = acc - wrap32(a_zp * colsum); every quarter rounds to an int32 in [0, 255]
        const int32_t* cz = P.colp + cb * 64;
        const float* sc = P.scale_p + cb * 64;
        const float* bi = P.bias_p + cb * 64;
#pragma GCC unroll 4
        for (int b = 0; b < NB; ++b) {
          __m512i q[4];
#pragma GCC unroll 4
          for (int j = 0; j < 4; ++j)
            q[j] = avx512::onednn_requant_half(P, c, _mm512_sub_epi32(acc[b][j], _mm512_load_si512(cz + 16 * j)), sc + 16 * j,
                                bi + 16 * j);
          // lane q: channels 4q..4q+3 as its four bytes
          const __m512i v = _mm512_or_si512(_mm512_or_si512(q[0], _mm512_slli_epi32(q[1], 8)),
                                            _mm512_or_si512(_mm512_slli_epi32(q[2], 16), _mm512_slli_epi32(q[3], 24)));
          if (b < nb) _mm512_mask_storeu_epi8(dst + b * P.O + c0, k, v);
        }
      }
    }
  }
}

}  // namespace qref
