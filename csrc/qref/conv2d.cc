// qref: path rules, requantization set-up and the threaded driver.
#include "qref/conv2d.h"

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <thread>
#include <vector>

#include "qref/api.h"
#include "qref/kernels.h"
#include "qref/paths.h"
#include "qref/requant.h"

namespace qref {

const char* path_name(ConvPath p) {
  switch (p) {
    case ConvPath::depthwise: return "depthwise";
    case ConvPath::groupwise: return "groupwise";
    case ConvPath::pointwise: return "pointwise";
    case ConvPath::im2col: return "im2col";
  }
  return "?";
}

// FbgemmConv.cc ConvFastPath, first match wins (SPEC.md §3).
ConvPath fbgemm_conv_path(const Conv2dShape& s, bool avx512_host) {
  const int64_t G = s.groups, Cg = s.cin_per_group(), Og = s.cout_per_group();
  const bool no_dilation = s.dilation_h == 1 && s.dilation_w == 1;
  auto k357 = [](int64_t k) { return k == 3 || k == 5 || k == 7; };
  auto s12 = [](int64_t v) { return v == 1 || v == 2; };
  // takeDepthWiseFastPath
  if (G == s.C && (s.O == G || s.O == 2 * G) && G % 8 == 0 && s12(s.stride_h) && s12(s.stride_w) &&
      s.KH == s.KW && k357(s.KH) && no_dilation && s.pad_h == (s.KH - 1) / 2 &&
      s.pad_w == (s.KW - 1) / 2) {
    return ConvPath::depthwise;
  }
  // fbgemmOptimizedGConv; G_together from numOfGroupsTogether (SIMD width in
  // int32 lanes x 4: 64 with AVX512, 32 with AVX2).
  if (Cg == Og && (Cg == 2 || Cg == 4 || Cg == 8 || Cg == 16)) {
    const int64_t simd = avx512_host ? 64 : 32;
    const int64_t g_together = std::max<int64_t>(simd / Og / std::max<int64_t>(Cg, 4), 1);
    const bool strides_ok = (s.stride_h == 1 && s.stride_w == 1) || (s.stride_h == 2 && s.stride_w == 2);
    if (G >= g_together && s.KH == 3 && s.KW == 3 && s.pad_h == 1 && s.pad_w == 1 && no_dilation &&
        strides_ok) {
      return ConvPath::groupwise;
    }
  }
  // takePointWiseFastPath
  if (s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && no_dilation && s.pad_h == 0 &&
      s.pad_w == 0) {
    return ConvPath::pointwise;
  }
  return ConvPath::im2col;
}

bool path_saturates(ConvPath p, const IsaSemantics& isa) {
  switch (p) {
    case ConvPath::depthwise: return true;
    case ConvPath::groupwise: return isa.groupwise_saturates;
    case ConvPath::pointwise:
    case ConvPath::im2col: return isa.gemm_saturates;
  }
  return true;
}

Requant prepare_requant(const Conv2dShape& s, const int8_t* w, const RequantArgs& a) {
  Requant rq;
  const int64_t O = s.O, K = s.K();
  rq.input_zero_point = a.input_zero_point;
  rq.output_zero_point = a.output_zero_point;
  rq.relu = a.relu;
  rq.has_bias = a.bias != nullptr;
  rq.multiplier.resize(O);
  rq.col_offset.resize(O);
  rq.weight_zero_point.resize(O);
  if (rq.has_bias) rq.bias_term.resize(O);
  // SPEC.md §2.1: doubles narrowed to float, S = f32(a*w), M = f32(S / out).
  const float a_f = static_cast<float>(a.input_scale);
  const float o_f = static_cast<float>(a.output_scale);
  for (int64_t o = 0; o < O; ++o) {
    const int64_t i = a.per_channel ? o : 0;
    const float w_f = static_cast<float>(a.weight_scale[i]);
    const float S = a_f * w_f;
    rq.multiplier[o] = S / o_f;
    rq.weight_zero_point[o] = a.weight_zero_point[i];
    if (rq.has_bias) {
      // SPEC.md §5.1 step 4: per-tensor multiplies by a reciprocal rounded
      // from double (_mm256_set1_ps(1.0 / ats)); per-channel divides.
      if (a.per_channel) {
        rq.bias_term[o] = a.bias[o] / S;
      } else {
        const float R = static_cast<float>(1.0 / static_cast<double>(S));
        rq.bias_term[o] = a.bias[o] * R;
      }
    }
    int64_t colsum = 0;
    for (int64_t k = 0; k < K; ++k) colsum += w[o * K + k];
    rq.col_offset[o] = wrap32(colsum - static_cast<int64_t>(rq.weight_zero_point[o]) * K);
  }
  return rq;
}

int default_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

namespace {
struct AlignedFree {
  void operator()(void* p) const { std::free(p); }
};
using AlignedBuf = std::unique_ptr<void, AlignedFree>;
AlignedBuf aligned_alloc64(size_t bytes) {
  if (bytes == 0) return AlignedBuf(nullptr);
  const size_t rounded = (bytes + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p) throw std::bad_alloc();
  return AlignedBuf(p);
}
}  // namespace

void run_conv2d(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                uint8_t* out, int num_threads, const Conv2dIntermediates* inter) {
  const Conv2dShape& s = p.shape;
  const int64_t rows = s.N * s.OH;
  if (rows == 0 || s.OW == 0 || s.O == 0) return;
  AlignedBuf packed = aligned_alloc64(k.packed_weight_bytes(p));
  if (packed) k.pack_weights(p, w, packed.get());
  const size_t scratch = k.scratch_bytes(p);
  if (num_threads < 1) num_threads = 1;
  // At least ~64k MACs per thread chunk, so tiny problems stay single-threaded.
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * s.K());
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 16) / macs_per_row);
  int64_t nt = std::min<int64_t>(num_threads, (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  const int64_t chunk = (rows + nt - 1) / nt;
  std::vector<AlignedBuf> scratches;
  for (int64_t t = 0; t < nt; ++t) scratches.push_back(aligned_alloc64(scratch));
  auto work = [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(rows, b + chunk);
    if (b < e) k.run_rows(p, w, packed.get(), in, out, b, e, scratches[t].get(), inter);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nt; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

}  // namespace qref
