// qref: fbgemm path rules for 3D and transposed convs, and the threaded driver
// of the N-d scalar reference (conv_nd.h).
#include "qref/fbgemm/conv_nd.h"
#include "qref/fbgemm/kernels/conv_nd_kernels.h"

#include "qref/gemm/api.h"

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

void run_conv_nd(const ConvNdProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w, uint8_t* out,
                 int num_threads, const Conv2dIntermediates* inter) {
  const bool vectorised = k.conv_nd != ConvNdLoops::reference && inter == nullptr;
  const bool avx2 = k.conv_nd == ConvNdLoops::avx2;
  const ConvNdShape& s = p.shape;
  if (s.N == 0 || s.OD == 0 || s.OH == 0 || s.OW == 0 || s.O == 0) return;
  num_threads = cap_threads(num_threads);
  if (p.path == ConvNdPath::direct && vectorised) {
    const int64_t rows = s.N * s.OH;
    const int64_t nt = std::max<int64_t>(1, std::min<int64_t>(num_threads, rows));
    const int64_t chunk = (rows + nt - 1) / nt;
    auto work = [&](int64_t t) {
      const int64_t b = t * chunk, e = std::min(rows, b + chunk);
      if (b < e) conv_transpose_direct_rows(p, w, in, out, b, e, avx2);
    };
    run_parallel(nt, work);
    return;
  }
  if (p.path == ConvNdPath::direct) {
    // Images are independent; the reference computes each one the correct way
    // (fbgemm itself only computes image 0, docs/numerics.md §4.5).
    const int64_t nt = std::min<int64_t>(num_threads, s.N);
    auto work = [&](int64_t t) {
      for (int64_t n = t; n < s.N; n += nt) conv_transpose_direct_scalar(p, w, in, out, n, inter);
    };
    run_parallel(nt, work);
    return;
  }
  const int64_t rows = s.N * s.OD * s.OH;
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * s.K());
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 16) / macs_per_row);
  int64_t nt = std::min<int64_t>(num_threads, (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  const int64_t chunk = (rows + nt - 1) / nt;
  const bool fast_dw = vectorised && p.path == ConvNdPath::depthwise;
  auto work = [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(rows, b + chunk);
    if (b >= e) return;
    if (fast_dw) {
      conv_nd_depthwise_rows(p, w, in, out, b, e, avx2);
      return;
    }
    std::vector<uint8_t> scratch(static_cast<size_t>(s.K()));
    conv_nd_scalar_rows(p, w, in, out, b, e, scratch.data(), inter);
  };
  run_parallel(nt, work);
}

}  // namespace qref
