// qref: fbgemm's float -> uint8 quantization (fbgemm::Quantize<uint8_t, LEGACY=true>, the
// AVX2+FMA path torch's quantize_per_tensor takes; docs/numerics.md §7).
#pragma once

#include <cstdint>

namespace qref {

// dst[i] = clamp(cvtps2dq(min(fma(src[i], f32(1/f32(scale)), f32(zp)), 2147483520)), 0, 255).
void quantize_u8(const float* src, int64_t n, double scale, int32_t zero_point, uint8_t* dst);

}  // namespace qref
