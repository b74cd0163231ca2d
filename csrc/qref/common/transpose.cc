// qref: byte-matrix transposes (transpose.h). 16x16 tiles by four rounds of byte
// interleaving with SSE2, which every x86-64 CPU has (the compiler's baseline, no ISA
// flag); scalar edges and non-x86 builds.
#include "qref/common/transpose.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace qref {

void transpose_bytes(const uint8_t* src, int64_t sstride, uint8_t* dst, int64_t dstride, int64_t rows,
                     int64_t cols) {
  int64_t r0 = 0;
#if defined(__SSE2__)
  for (; r0 + 16 <= rows; r0 += 16) {
    int64_t c0 = 0;
    for (; c0 + 16 <= cols; c0 += 16) {
      __m128i x[16], t[16];
      for (int i = 0; i < 16; ++i) x[i] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + (r0 + i) * sstride + c0));
      for (int round = 0; round < 4; ++round) {
        for (int i = 0; i < 8; ++i) {
          t[2 * i] = _mm_unpacklo_epi8(x[i], x[i + 8]);
          t[2 * i + 1] = _mm_unpackhi_epi8(x[i], x[i + 8]);
        }
        for (int i = 0; i < 16; ++i) x[i] = t[i];
      }
      for (int i = 0; i < 16; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (c0 + i) * dstride + r0), x[i]);
    }
    for (; c0 < cols; ++c0)
      for (int64_t i = 0; i < 16; ++i) dst[c0 * dstride + r0 + i] = src[(r0 + i) * sstride + c0];
  }
#endif
  for (; r0 < rows; ++r0)
    for (int64_t c = 0; c < cols; ++c) dst[c * dstride + r0] = src[r0 * sstride + c];
}

void channels_transpose(const uint8_t* src, const int64_t shape[4], bool to_last, uint8_t* dst) {
  const int64_t n = shape[0];
  const int64_t rows = to_last ? shape[1] : shape[1] * shape[2];
  const int64_t cols = to_last ? shape[2] * shape[3] : shape[3];
  for (int64_t i = 0; i < n; ++i) transpose_bytes(src + i * rows * cols, cols, dst + i * rows * cols, rows, rows, cols);
}

}  // namespace qref
