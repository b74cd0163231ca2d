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

}  // namespace qref
