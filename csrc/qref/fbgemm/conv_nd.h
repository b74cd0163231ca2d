// qref: conv3d and transposed conv (2D/3D), the fbgemm paths conv2d.h does not
// cover. 2D shapes are run here as D = 1 (KD = 1, stride/pad/dilation 1/0/1 in
// depth), so one scalar reference serves conv3d, conv_transpose2d and
// conv_transpose3d. qref.conv2d keeps its own kernels (conv2d.h); nothing here
// changes them.
//
// Layouts (channels last, as fbgemm's; docs/numerics.md §2.4):
//   input   uint8  [N][D][H][W][C]
//   weight  int8   [O][KD][KH][KW][C/groups]   (transposed: torch's
//           [IC][OC/G][kD][kH][kW] rearranged to [G][OC/G][kD][kH][kW][IC/G],
//           no kernel flip; fbgemm PackWeightsForConv / qconv_prepack.cpp)
//   output  uint8  [N][OD][OH][OW][O]
// Per-group reduction order (kd, kh, kw, c): k = ((kd*KH + kh)*KW + kw)*Cg + c.
#pragma once

#include <algorithm>
#include <cstdint>

#include "qref/gemm/conv2d.h"

namespace qref {

struct ConvNdShape {
  int64_t N = 0, C = 0, D = 1, H = 0, W = 0;  // input
  int64_t O = 0, KD = 1, KH = 0, KW = 0;      // weight (O = output channels)
  int64_t stride[3] = {1, 1, 1};
  int64_t pad[3] = {0, 0, 0};
  int64_t dilation[3] = {1, 1, 1};
  int64_t output_padding[3] = {0, 0, 0};  // transposed only
  int64_t groups = 1;
  bool transposed = false;
  int spatial_dims = 3;                   // 2: a 2D conv run with D = KD = 1
  int64_t OD = 0, OH = 0, OW = 0;         // derived by finalize()

  int64_t cin_per_group() const { return C / groups; }
  int64_t cout_per_group() const { return O / groups; }
  int64_t taps() const { return KD * KH * KW; }
  int64_t K() const { return taps() * cin_per_group(); }
  void finalize() {
    const int64_t in[3] = {D, H, W}, k[3] = {KD, KH, KW};
    int64_t out[3];
    for (int i = 0; i < 3; ++i) {
      if (transposed) {
        // torch ConvTranspose: (in - 1) * stride - 2 * pad + dil * (k - 1) + output_padding + 1
        out[i] = (in[i] - 1) * stride[i] - 2 * pad[i] + dilation[i] * (k[i] - 1) + output_padding[i] + 1;
      } else {
        out[i] = (in[i] + 2 * pad[i] - dilation[i] * (k[i] - 1) - 1) / stride[i] + 1;
      }
    }
    OD = out[0];
    OH = out[1];
    OW = out[2];
  }
};

enum class ConvNdPath { depthwise = 0, groupwise = 1, pointwise = 2, direct = 3, im2col = 4 };
const char* path_name(ConvNdPath p);

// pred(i) for every spatial dim i of s (depth skipped when spatial_dims == 2).
template <class Pred>
inline bool all_spatial_dims(const ConvNdShape& s, Pred pred) {
  for (int i = s.spatial_dims == 3 ? 0 : 1; i < 3; ++i)
    if (!pred(i)) return false;
  return true;
}

// takeDepthWiseFastPath: G == IC, OC in {G, 2G}, G % 8 == 0, strides in {1,2},
// K_h == K_w, every kernel dim in {3,5,7}, no dilation, "same" padding, not
// transposed. Its own function (no division: safe on any shape) because
// reference.h's is_depthwise asks only this.
inline bool fbgemm_takes_depthwise(const ConvNdShape& s) {
  const int64_t k[3] = {s.KD, s.KH, s.KW}, G = s.groups;
  return !s.transposed && G == s.C && (s.O == G || s.O == 2 * G) && G % 8 == 0 &&
         all_spatial_dims(s, [&](int i) { return s.stride[i] == 1 || s.stride[i] == 2; }) && s.KH == s.KW &&
         all_spatial_dims(s, [&](int i) { return k[i] == 3 || k[i] == 5 || k[i] == 7; }) &&
         all_spatial_dims(s, [&](int i) { return s.dilation[i] == 1; }) &&
         all_spatial_dims(s, [&](int i) { return s.pad[i] == (k[i] - 1) / 2; });
}

// fbgemm ConvFastPath for SPATIAL_DIM = shape.spatial_dims (src/FbgemmConv.cc,
// first match wins; docs/numerics.md §3). The kernel/stride/pad/dilation lists below are
// over the conv's spatial dims only (depth is skipped for a 2D conv, as
// conv_param_t<2> has no depth). The one implementation of the rule: conv2d's
// fbgemm_conv_path (conv2d.cc) calls it through conv_nd_shape_2d, and the
// header-only ref::is_depthwise (reference.h) its depthwise rule, hence inline.
inline ConvNdPath fbgemm_conv_nd_path(const ConvNdShape& s, bool avx512_host) {
  if (fbgemm_takes_depthwise(s)) return ConvNdPath::depthwise;
  const int64_t k[3] = {s.KD, s.KH, s.KW};
  auto all = [&](auto pred) { return all_spatial_dims(s, pred); };
  const int64_t G = s.groups, Cg = s.cin_per_group(), Og = s.cout_per_group();
  const bool no_dilation = all([&](int i) { return s.dilation[i] == 1; });
  // fbgemmOptimizedGConv (src/Fbgemm.cc): Cg == Og in {2,4,8,16}, G >= G_together
  // (PackWeightMatrixForGConv numOfGroupsTogether), every kernel dim 3, every pad
  // 1, no dilation, H and W strides equal and in {1, 2} (the temporal stride is
  // free), not transposed.
  if (!s.transposed && Cg == Og && (Cg == 2 || Cg == 4 || Cg == 8 || Cg == 16)) {
    const int64_t simd = avx512_host ? 64 : 32;
    const int64_t g_together = std::max<int64_t>(simd / Og / std::max<int64_t>(Cg, 4), 1);
    const bool strides_ok = s.stride[1] == s.stride[2] && (s.stride[1] == 1 || s.stride[1] == 2);
    if (G >= g_together && all([&](int i) { return k[i] == 3; }) && all([&](int i) { return s.pad[i] == 1; }) &&
        no_dilation && strides_ok) {
      return ConvNdPath::groupwise;
    }
  }
  // takePointWiseFastPath
  if (!s.transposed && all([&](int i) { return k[i] == 1 && s.stride[i] == 1 && s.pad[i] == 0; }) && no_dilation) {
    return ConvNdPath::pointwise;
  }
  // takeDirectConvPath (in the fbgemm pinned by torch 2.13; later fbgemm turns it
  // off): transposed, G == 1, IC % 8 == 0, OC % 8 == 0, strides in {1,2}, 2D,
  // K_h == 2, K_w <= 6, no dilation, zero padding.
  if (s.transposed && s.spatial_dims == 2 && G == 1 && s.C % 8 == 0 && s.O % 8 == 0 &&
      all([&](int i) { return s.stride[i] == 1 || s.stride[i] == 2; }) && s.KH == 2 && s.KW <= 6 && no_dilation &&
      all([&](int i) { return s.pad[i] == 0; })) {
    return ConvNdPath::direct;
  }
  return ConvNdPath::im2col;
}

// A 2D conv in N-d form, as fbgemm's templates see conv_param_t<2>: D = KD = OD = 1
// and depth stride/pad/dilation 1/0/1 (skipped by spatial_dims = 2 anyway).
inline ConvNdShape conv_nd_shape_2d(const Conv2dShape& s) {
  ConvNdShape n;
  n.N = s.N; n.C = s.C; n.H = s.H; n.W = s.W;
  n.O = s.O; n.KH = s.KH; n.KW = s.KW;
  n.stride[1] = s.stride_h; n.stride[2] = s.stride_w;
  n.pad[1] = s.pad_h; n.pad[2] = s.pad_w;
  n.dilation[1] = s.dilation_h; n.dilation[2] = s.dilation_w;
  n.groups = s.groups;
  n.spatial_dims = 2;
  n.OD = 1; n.OH = s.OH; n.OW = s.OW;
  return n;
}

struct ConvNdProblem {
  ConvNdShape shape;
  Requant rq;
  ConvNdPath path = ConvNdPath::im2col;
  bool saturate = false;  // int16-saturating pairs (2i, 2i+1) of the K order
  // Reproduce fbgemm's deterministic defects instead of the correct result:
  //  - depthwise 3D: the activation row sum is accumulated with vpaddsw
  //    (int16 saturating), so it is min(sum, 32767) (docs/numerics.md §4.2);
  //  - direct transposed with stride_h = 2: the host loop places input row j's
  //    contributions at output rows j + kh instead of 2j + kh (docs/numerics.md §4.5).
  bool reproduce_defects = false;
};

}  // namespace qref
