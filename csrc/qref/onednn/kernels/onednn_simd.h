// qref: interface between the oneDNN driver (../onednn.cc) and its ISA
// translation units. Plain data only (see kernels.h for why).
#pragma once

#include <cstdint>

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
  // Requantization (onednn.h; every value already rounded as oneDNN rounds it).
  int32_t a_zp, out_zp;
  bool relu, has_bias, combined, float_comp, divide_dst;
  float ss, inv, dst_scale;
  const float* ws;    // [O]
  const float* comb;  // [O]
  const float* bias;  // [O] or null
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
// the same order, as requant_one in ../onednn.cc).
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

}  // namespace qref
