// qref: torch.compile's PT2E int8 program (pt2e.h).
#include "qref/pt2e/pt2e.h"

#include <cstring>

namespace qref {

void pt2e_postops(const float* A, int64_t M, int64_t O, const float* wscale, const float* bias, const void* other,
                  bool other_u8, const OnednnPostOps& p, void* out) {
  const float* of = p.sum && !other_u8 ? static_cast<const float*>(other) : nullptr;
  const uint8_t* ou = p.sum && other_u8 ? static_cast<const uint8_t*>(other) : nullptr;
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t o = 0; o < O; ++o) {
      const int64_t i = m * O + o;
      const float oth = of ? of[i] : (ou ? static_cast<float>(ou[i]) : 0.f);
      const float y = onednn_postops_y(A[i], wscale[o], bias ? bias[o] : 0.f, oth, p);
      switch (p.out) {
        case OnednnOutType::u8:
          static_cast<uint8_t*>(out)[i] = onednn_postops_u8(y, p);
          break;
        case OnednnOutType::bf16:
          static_cast<uint16_t*>(out)[i] = onednn_bf16(y);
          break;
        default:
          static_cast<float*>(out)[i] = y;
      }
    }
  }
}

void inductor_quantize_array(const float* x, int64_t n, double scale, int64_t zp, int64_t qmin, int64_t qmax,
                             uint8_t* out) {
  const float inv = inductor_inv_scale(scale);
  const float z = static_cast<float>(zp), lo = static_cast<float>(qmin), hi = static_cast<float>(qmax);
  for (int64_t i = 0; i < n; ++i) out[i] = inductor_quantize(x[i], inv, z, lo, hi);
}

void inductor_dequantize_array(const uint8_t* q, int64_t n, double scale, int64_t zp, float* out) {
  const float s = static_cast<float>(scale), z = static_cast<float>(zp);
  for (int64_t i = 0; i < n; ++i) out[i] = (static_cast<float>(q[i]) - z) * s;
}

}  // namespace qref
