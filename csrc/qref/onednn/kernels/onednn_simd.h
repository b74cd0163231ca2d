// qref: interface between the oneDNN driver (../onednn.cc) and its ISA
// translation units. Plain data only (see common/kernels.h for why).
#pragma once

#include <cstdint>

#include "qref/onednn/requant.h"

namespace qref {

struct OnednnSimdProblem {
  int64_t N, H, W, C, OH, OW, KH, KW;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups, Cg, Og;
  int64_t quads;    // ceil(Cg / 4)
  int64_t oblocks;  // ceil(Og / 16)
  const int8_t* w;       // packed, 64-byte aligned (see onednn_avx512vnni.cc)
  const int32_t* wsum;   // packed per-tap weight sums, 64-byte aligned
  const uint8_t* zeros;  // Cg + 4 zero bytes (stands in for taps outside the image)
  // Requantization (../requant.h; every value already rounded as oneDNN rounds it).
  OnednnRequant rq;
  const float* scale;  // [O]: f32(ss * ws[o]) when combined, else ws[o]
  const float* bias;   // [O] or null
  uint8_t* out;       // NHWC [N][OH][OW][O]
  int64_t O;
  // Depthwise tap-pair kernel (onednn_avx512_dw_pair_rows), 32 channels per chunk, two
  // halves of 16 int32 lanes; lane j of half h is channel 8*(j/4) + 4*h + j%4 of the chunk
  // (the order vpunpck{l,h}wd leave them in). All 64-byte aligned, zero-padded.
  const int16_t* wpair;   // [tap pair][chunk][half][16 lanes][2]: weights of taps 2p, 2p+1 (0 past the last)
  const int32_t* colp;    // [chunk][half][16]: wrap32(a_zp * sum of the weights over ALL taps)
  const float* scale_p;   // [chunk][half][16]: comb (combined) or ws
  const float* bias_p;    // [chunk][half][16]: bias (0 without)
  const uint8_t* zp_row;  // groups rounded up to 64 bytes of a_zp (stand in for padded taps)
  // Depthwise VNNI kernel (onednn_vnni_dw_rows), 64 channels per chunk in four quarters
  // j = 0..3 of 16 int32 lanes, lane q of quarter j = channel 4q + j of the chunk.
  // Weights [tap][chunk][j][64 bytes]: the tap's 64 weights with only bytes 4q + j kept.
  // colp / scale_p / bias_p as above, [chunk][j][16] (the pair kernel's fields reused).
  const int8_t* wquad;
};

// Per output position and (group, 16-channel block): the exact int32 sum of
// products over the real taps and the sum of the weights over them (wrapping
// int32), then oneDNN's requantization on 16 lanes (same IEEE operations, in
// the same order: ../requant.h).
// Computes output rows [m_begin, m_end) into P.out. Call only when the CPU
// has AVX512 (f/bw/dq/vl) and AVX512-VNNI.
void onednn_vnni_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end);
// Depthwise (groups > 1, one input and one output channel per group), exact
// products: P.wsum holds the int32 weights [tap][groups rounded up to 16].
// Needs AVX512 (f/bw/dq/vl) only.
void onednn_avx512_dw_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end);
// The same for the exact integer compensation (not float_comp), faster: padded taps read
// a_zp (they then add (a_zp - a_zp) * w = 0 to acc - a_zp * colsum, the ring identity the
// fbgemm path uses), so the colsum is the all-taps one; two taps per vpmaddwd (u8 values
// and s8 weights as int16: exact products, exact int32 pair sums). Needs AVX512 (f/bw/dq/vl).
void onednn_avx512_dw_pair_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end);
// The same arithmetic with AVX512-VNNI and no shuffles: each tap's 64 activation bytes
// (channels in natural order) go through four vpdpbusd, each with the weights of one
// channel per int32 lane (the other three bytes 0), so every lane adds one exact product;
// the four quarters' rounded bytes are merged back in order by shifts and ors.
void onednn_vnni_dw_rows(const OnednnSimdProblem& P, const uint8_t* in, int64_t m_begin, int64_t m_end);

#if defined(__AVX512F__)
// The requantization helpers of the AVX-512 translation units (compiled only there, all with
// AVX-512 flags): the one formula of ../requant.h applied to the problem's arrays.
namespace avx512 {
namespace {  // internal linkage: each AVX-512 translation unit compiles its own copy

// oneDNN's requantization of 16 output channels o0.. (../requant.h) from the int32 sums over
// the real taps, stored as bytes under mask k.
inline void onednn_store16(const OnednnSimdProblem& P, const OnednnRequant16& c, __m512i acc,
                                       __m512i col, int64_t o0, __mmask16 k, uint8_t* dst) {
  const __m512 A = P.rq.float_comp
                       ? onednn_compensated16_float(acc, col, P.rq.a_zp)
                       : onednn_compensated16(acc, _mm512_mullo_epi32(col, _mm512_set1_epi32(P.rq.a_zp)));
  const __m512 bias = P.rq.has_bias ? _mm512_maskz_loadu_ps(k, P.bias + o0) : _mm512_setzero_ps();
  const __m512i q = onednn_requant16(A, _mm512_maskz_loadu_ps(k, P.scale + o0), bias, c);
  _mm512_mask_cvtepi32_storeu_epi8(dst, k, q);
}

// oneDNN's requantization of one half (16 lanes, permuted arrays: onednn_simd.h) from the
// zero-point-compensated int32 raw (../requant.h). Returns the rounded int32 in [0, 255].
inline __m512i onednn_requant_half(const OnednnSimdProblem& P, const OnednnRequant16& c,
                                               __m512i raw, const float* scale, const float* bias) {
  return onednn_requant16(_mm512_cvtepi32_ps(raw), _mm512_load_ps(scale),
                                  P.rq.has_bias ? _mm512_load_ps(bias) : _mm512_setzero_ps(), c);
}

}  // namespace
}  // namespace avx512
#endif

}  // namespace qref
