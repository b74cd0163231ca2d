// qref::aten -- AVX2 bodies of ATen's elementwise quantized kernels (see
// aten_kernels.h). Compiled with the AVX2 flags of CMakeLists.txt and called
// only after avx2_kernel_usable() (common/cpu.cc). Each intrinsic below is the
// lane-wise form of one operation of aten_ref.h:
//  - dequantize_fma: _mm256_fmadd_ps(scale, float(q), premul) (one rounding,
//    like std::fma);
//  - dequantize_val: _mm256_mul_ps(scale, float(q - zp)), the difference in int32;
//  - relu: _mm256_max_ps(c, 0) = c > 0 ? c : 0 (NaN and -0 give +0);
//  - quantize_lane: min(x * inv, 2147483520.f) (_mm256_min_ps returns its
//    second operand for NaN, as the reference's t < c ? t : c),
//    _mm256_cvtps_epi32 (nearest-even, INT32_MIN for NaN / out of range),
//    wrapping epi32 add of zp, clamp in int32;
//  - quantize_legacy: fma(x, inv, float(zp)), the same min, cvtps_epi32, clamp.
// It includes no standard-library templates (Highway's one-definition-rule
// hazard), only <immintrin.h> and <cstdint>.
#include "qref/aten/kernels/aten_kernels.h"

#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace qref {
namespace aten {
namespace {

// 8 bytes at p widened to int32 lanes (sign- or zero-extended).
template <bool S8>
inline __m256i load8(const void* p) {
  const __m128i v = _mm_loadl_epi64(static_cast<const __m128i*>(p));
  return S8 ? _mm256_cvtepi8_epi32(v) : _mm256_cvtepu8_epi32(v);
}

template <bool S8, bool FMA, bool RELU>
void add_body(const AddBodyArgs& g, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* out) {
  const __m256 sa = _mm256_set1_ps(g.sa), sb = _mm256_set1_ps(g.sb);
  const __m256 pa = _mm256_set1_ps(g.pa), pb = _mm256_set1_ps(g.pb);
  const __m256i za = _mm256_set1_epi32(g.za), zb = _mm256_set1_epi32(g.zb), zo = _mm256_set1_epi32(g.zo);
  const __m256 inv = _mm256_set1_ps(g.inv);
  const __m256 zof = _mm256_set1_ps(static_cast<float>(g.zo));
  const __m256 big = _mm256_set1_ps(2147483520.0f);
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lo = _mm256_set1_epi32(S8 ? -128 : 0), hi = _mm256_set1_epi32(S8 ? 127 : 255);
  // After packs_epi32 (in-lane) the int16 order is 0-3 8-11 | 4-7 12-15 (per 128-bit lane); packs to bytes
  // then interleave again; permute the 32-bit groups back to element order.
  const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  auto one = [&](int64_t i) -> __m256i {
    const __m256i qa = load8<S8>(a + i), qb = load8<S8>(b + i);
    __m256 da, db;
    if (FMA) {
      da = _mm256_fmadd_ps(sa, _mm256_cvtepi32_ps(qa), pa);
      db = _mm256_fmadd_ps(sb, _mm256_cvtepi32_ps(qb), pb);
    } else {
      da = _mm256_mul_ps(sa, _mm256_cvtepi32_ps(_mm256_sub_epi32(qa, za)));
      db = _mm256_mul_ps(sb, _mm256_cvtepi32_ps(_mm256_sub_epi32(qb, zb)));
    }
    __m256 c = _mm256_add_ps(da, db);
    if (RELU) c = _mm256_max_ps(c, zero);
    __m256i r;
    if (FMA) {
      const __m256 t = _mm256_min_ps(_mm256_mul_ps(c, inv), big);
      r = _mm256_add_epi32(_mm256_cvtps_epi32(t), zo);
    } else {
      const __m256 t = _mm256_min_ps(_mm256_fmadd_ps(c, inv, zof), big);
      r = _mm256_cvtps_epi32(t);
    }
    return _mm256_min_epi32(_mm256_max_epi32(r, lo), hi);
  };
  for (int64_t i = 0; i < n; i += 32) {
    const __m256i r0 = one(i), r1 = one(i + 8), r2 = one(i + 16), r3 = one(i + 24);
    // Values are already clamped to the type's range, so the saturating packs are exact.
    const __m256i w01 = _mm256_packs_epi32(r0, r1), w23 = _mm256_packs_epi32(r2, r3);
    const __m256i bytes = S8 ? _mm256_packs_epi16(w01, w23) : _mm256_packus_epi16(w01, w23);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), _mm256_permutevar8x32_epi32(bytes, perm));
  }
}

template <bool S8>
void add_body_s(const AddBodyArgs& g, const uint8_t* a, const uint8_t* b, int64_t n, uint8_t* out) {
  if (g.fma_body) {
    if (g.relu) add_body<S8, true, true>(g, a, b, n, out);
    else add_body<S8, true, false>(g, a, b, n, out);
  } else {
    if (g.relu) add_body<S8, false, true>(g, a, b, n, out);
    else add_body<S8, false, false>(g, a, b, n, out);
  }
}

}  // namespace

void add_body_avx2(const AddBodyArgs& g, const void* a, const void* b, int64_t n, void* out) {
  const auto* pa = static_cast<const uint8_t*>(a);
  const auto* pb = static_cast<const uint8_t*>(b);
  auto* po = static_cast<uint8_t*>(out);
  if (g.s8) add_body_s<true>(g, pa, pb, n, po);
  else add_body_s<false>(g, pa, pb, n, po);
}

}  // namespace aten
}  // namespace qref
#endif
