// qref: fbgemm path rules for 3D and transposed convs, and the threaded driver
// of the N-d scalar reference (conv_nd.h).
#include "qref/conv_nd.h"

#include <algorithm>
#include <thread>
#include <vector>

namespace qref {

const char* path_name(ConvNdPath p) {
  switch (p) {
    case ConvNdPath::depthwise: return "depthwise";
    case ConvNdPath::groupwise: return "groupwise";
    case ConvNdPath::pointwise: return "pointwise";
    case ConvNdPath::direct: return "direct";
    case ConvNdPath::im2col: return "im2col";
  }
  return "?";
}

// fbgemm src/FbgemmConv.cc ConvFastPath, first match wins (SPEC.md §3). The
// kernel/stride/pad/dilation lists below are over the conv's spatial dims only
// (depth is skipped for a 2D conv, as conv_param_t<2> has no depth).
ConvNdPath fbgemm_conv_nd_path(const ConvNdShape& s, bool avx512_host) {
  const int first = s.spatial_dims == 3 ? 0 : 1;
  const int64_t k[3] = {s.KD, s.KH, s.KW};
  auto all = [&](auto pred) {
    for (int i = first; i < 3; ++i)
      if (!pred(i)) return false;
    return true;
  };
  const int64_t G = s.groups, Cg = s.cin_per_group(), Og = s.cout_per_group();
  const bool no_dilation = all([&](int i) { return s.dilation[i] == 1; });
  // takeDepthWiseFastPath: G == IC, OC in {G, 2G}, G % 8 == 0, strides in {1,2},
  // K_h == K_w, every kernel dim in {3,5,7}, no dilation, "same" padding, not transposed.
  if (!s.transposed && G == s.C && (s.O == G || s.O == 2 * G) && G % 8 == 0 &&
      all([&](int i) { return s.stride[i] == 1 || s.stride[i] == 2; }) && s.KH == s.KW &&
      all([&](int i) { return k[i] == 3 || k[i] == 5 || k[i] == 7; }) && no_dilation &&
      all([&](int i) { return s.pad[i] == (k[i] - 1) / 2; })) {
    return ConvNdPath::depthwise;
  }
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

void run_conv_nd(const ConvNdProblem& p, const uint8_t* in, const int8_t* w, uint8_t* out, int num_threads,
                 const Conv2dIntermediates* inter) {
  const ConvNdShape& s = p.shape;
  if (s.N == 0 || s.OD == 0 || s.OH == 0 || s.OW == 0 || s.O == 0) return;
  if (num_threads < 1) num_threads = 1;
  if (p.path == ConvNdPath::direct && p.fast_depthwise && inter == nullptr) {
    const int64_t rows = s.N * s.OH;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(num_threads, rows));
    const int64_t chunk = (rows + nt - 1) / nt;
    auto work = [&](int64_t t) {
      const int64_t b = t * chunk, e = std::min(rows, b + chunk);
      if (b < e) conv_transpose_direct_rows(p, w, in, out, b, e);
    };
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < nt; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    return;
  }
  if (p.path == ConvNdPath::direct) {
    // Images are independent; the reference computes each one the correct way
    // (fbgemm itself only computes image 0, SPEC.md §4.5).
    const int64_t nt = std::min<int64_t>(num_threads, s.N);
    auto work = [&](int64_t t) {
      for (int64_t n = t; n < s.N; n += nt) conv_transpose_direct_scalar(p, w, in, out, n, inter);
    };
    std::vector<std::thread> pool;
    for (int64_t t = 1; t < nt; ++t) pool.emplace_back(work, t);
    work(0);
    for (auto& th : pool) th.join();
    return;
  }
  const int64_t rows = s.N * s.OD * s.OH;
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * s.K());
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 16) / macs_per_row);
  int64_t nt = std::min<int64_t>(num_threads, (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  const int64_t chunk = (rows + nt - 1) / nt;
  const bool fast_dw = p.fast_depthwise && p.path == ConvNdPath::depthwise && inter == nullptr;
  auto work = [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(rows, b + chunk);
    if (b >= e) return;
    if (fast_dw) {
      conv_nd_depthwise_rows(p, w, in, out, b, e);
      return;
    }
    std::vector<uint8_t> scratch(static_cast<size_t>(s.K()));
    conv_nd_scalar_rows(p, w, in, out, b, e, scratch.data(), inter);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nt; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

}  // namespace qref
