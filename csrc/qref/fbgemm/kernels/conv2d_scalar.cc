// qref: the scalar reference conv2d. NORMATIVE: plain loops that say what
// fbgemm computes; every SIMD kernel must give these bytes exactly.
//
// For one output element (n, oh, ow, o) in group g:
//   1. the receptive field a[k], k = (kh*KW + kw)*Cg + c, with padded taps
//      holding the activation zero point (fbgemm's im2col memset, depthwise
//      and groupwise a_zp registers; docs/numerics.md §4.1-§4.3);
//   2. acc = sum_k a[k]*w[o][k], where on saturating paths consecutive pairs
//      (2i, 2i+1) are summed and saturated to int16 first (vpmaddubsw), and an
//      odd last element pairs with zero; int32 wrapping sums otherwise;
//   3. rowsum = sum_k a[k] (exact in 2D: at most 49 * 255 for a 7x7 depthwise);
//   4. requantization as requant.h.
#include <cstdint>

#include "qref/common/kernels.h"
#include "qref/fbgemm/requant.h"
#include "qref/onednn/requant.h"

namespace qref {
namespace {

size_t scalar_packed_bytes(const Conv2dProblem&) { return 0; }
void scalar_pack(const Conv2dProblem&, const Conv2dEpilogue&, const int8_t*, void*) {}
size_t scalar_scratch_bytes(const Conv2dProblem& p) { return static_cast<size_t>(p.shape.K()); }
bool scalar_usable() { return true; }

void scalar_run_rows(const Conv2dProblem& p, const Conv2dEpilogue& e, const int8_t* w, const void*, const uint8_t* in,
                     uint8_t* out, int64_t m_begin, int64_t m_end, void* scratch,
                     const Conv2dIntermediates* inter) {
  const Conv2dShape& s = p.shape;
  const Requant& rq = p.rq;
  const int64_t Og = s.cout_per_group(), K = s.K();
  const uint8_t a_zp = static_cast<uint8_t>(rq.input_zero_point);
  uint8_t* a = static_cast<uint8_t*>(scratch);
  const bool onednn = e.kind == Conv2dEpilogue::Kind::onednn;

  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / s.OH, oh = m % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t out_pos = (n * s.OH + oh) * s.OW + ow;
      for (int64_t g = 0; g < s.groups; ++g) {
        // 1. receptive field in (kh, kw, c) order, and its sum
        const int64_t rowsum = receptive_field(s, in, n, oh, ow, g, a_zp, a);
        for (int64_t oc = 0; oc < Og; ++oc) {
          const int64_t o = g * Og + oc;
          // 2. products, pairwise int16 saturation where the path has it
          const int32_t acc32 = pair_dot(a, w + o * K, K, p.saturate);
          // 3-4. zero-point terms and requantization
          const int32_t raw = zero_point_terms(acc32, wrap32(rowsum), rq.input_zero_point,
                                               rq.col_offset[o], rq.weight_zero_point[o]);
          float y;
          if (onednn) {
            // oneDNN's epilogue (gemm/epilogue.h): raw is oneDNN's compensated int32 (w_zp = 0)
            y = onednn_prerounding(static_cast<float>(raw), e.scale[o], e.bias ? e.bias[o] : 0.f, e.onednn);
            out[out_pos * s.O + o] = onednn_output(y);
          } else {
            y = requant_prerounding(raw, rq.has_bias, rq.bias_fma, rq.has_bias ? rq.bias_term[o] : 0.0f,
                                    rq.bias_rcp, rq.multiplier[o]);
            out[out_pos * s.O + o] = requant_output(y, rq.output_zero_point, rq.relu);
          }
          if (inter) {
            if (inter->acc) inter->acc[out_pos * s.O + o] = acc32;
            if (inter->raw) inter->raw[out_pos * s.O + o] = raw;
            if (inter->y) inter->y[out_pos * s.O + o] = y;
          }
        }
      }
    }
  }
}

}  // namespace

const KernelEntry kScalarKernel = {"scalar",    scalar_usable,        scalar_packed_bytes, scalar_pack,
                                   scalar_scratch_bytes, scalar_run_rows, /*onednn_epilogue=*/true, ConvNdLoops::reference};

}  // namespace qref
