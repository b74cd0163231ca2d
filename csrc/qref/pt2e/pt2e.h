// qref: what torch.compile (inductor, freezing on) runs for a torchao PT2E model quantized with
// X86InductorQuantizer (docs/pt2e.md):
//   - oneDNN's int8 conv / linear with post-ops (onednn::qconv_pointwise & co.): the exact
//     zero-point-compensated int32 sum A from the oneDNN conv driver (onednn.h), then the
//     post-op chain of onednn/requant.h (OnednnPostOps), run here over whole arrays;
//   - inductor's own generated code for quantize_per_tensor / dequantize_per_tensor
//     (torch/_inductor/decomposition.py and the C++ it generates, read with
//     TORCH_LOGS=output_code):
//       quantize:   q = convert(min(max(f32(rne(f32(x * f32(1 / (double)scale))) + f32(zp)),
//                                         qmin), qmax))
//       dequantize: x = f32(f32(float(q) - f32(zp)) * f32(scale))
#pragma once

#include <cstdint>

#include "qref/onednn/requant.h"

namespace qref {

// The post-op chain over A[m][o] (m < M rows, o < O channels, row-major). wscale[O]; bias[O]
// or null; other[M][O] (float, or u8 when other_u8) or null without sum; out: uint8, float
// or bfloat16 bits per p.out.
void pt2e_postops(const float* A, int64_t M, int64_t O, const float* wscale, const float* bias, const void* other,
                  bool other_u8, const OnednnPostOps& p, void* out);

// inductor's quantize_per_tensor (float -> uint8 in [qmin, qmax]) and dequantize_per_tensor.
inline uint8_t inductor_quantize(float x, float inv_scale, float zp, float qmin, float qmax) {
  float t = std::nearbyint(x * inv_scale) + zp;
  t = t > qmin ? t : qmin;  // at::vec::maximum / minimum (no NaN inputs here)
  t = t < qmax ? t : qmax;
  return static_cast<uint8_t>(t);
}
inline float inductor_inv_scale(double scale) { return static_cast<float>(1.0 / scale); }
void inductor_quantize_array(const float* x, int64_t n, double scale, int64_t zp, int64_t qmin, int64_t qmax,
                             uint8_t* out);
void inductor_dequantize_array(const uint8_t* q, int64_t n, double scale, int64_t zp, float* out);

}  // namespace qref
