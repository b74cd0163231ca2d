// qref: fbgemm's quantization (quantize.h).
#include "qref/fbgemm/quantize.h"

#include <cmath>

#include "qref/common/int.h"

namespace qref {

void quantize_u8(const float* src, int64_t n, double scale, int32_t zero_point, uint8_t* dst) {
  // fbgemm::Quantize<uint8_t, LEGACY=true> AVX2+FMA path:
  // t = fma(x, f32(1/f32(scale)), f32(zp)), min(t, 2147483520), cvtps2dq, clamp.
  const float inv = 1.0f / static_cast<float>(scale);
  const float zp = static_cast<float>(zero_point);
  for (int64_t i = 0; i < n; ++i) {
    float t = std::fmaf(src[i], inv, zp);
    // _mm256_min_ps(t, max): a NaN t yields the second operand.
    t = (t < 2147483520.0f) ? t : 2147483520.0f;
    const int32_t q = cvtps2dq(t);
    dst[i] = static_cast<uint8_t>(q < 0 ? 0 : (q > 255 ? 255 : q));
  }
}

}  // namespace qref
