// qref: byte-matrix transposes (transpose.h). 16x16 tiles by four rounds of byte
// interleaving with SSE2, which every x86-64 CPU has (the compiler's baseline, no ISA
// flag); scalar edges and non-x86 builds. Images of 1-4 channels: plane copies / interleaving.
#include "qref/common/transpose.h"

#include <cstring>

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

namespace {

// 2, 3 or 4 planes of `n` bytes (plane stride `sstride`) -> n interleaved pixels of C bytes: the
// NCHW -> NHWC conversion of images with few channels (RGB, RGBA, gray+alpha), where 16x16 tiles
// do not apply. SSE2: 16 pixels at a time, bytes of two planes interleaved, then 16-bit pairs.
template <int C>
void interleave_planes(const uint8_t* src, int64_t sstride, uint8_t* dst, int64_t n) {
  int64_t p = 0;
#if defined(__SSE2__)
  const __m128i zero = _mm_setzero_si128();
  // C == 3 writes 8 bytes per pixel pair, 2 past the pair's end: stop while 2 more bytes of the
  // destination follow (the tail below writes the rest exactly).
  const int64_t vec_end = C == 3 ? n - 17 : n - 15;
  for (; p < vec_end; p += 16) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + p));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + sstride + p));
    if (C == 2) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * p), _mm_unpacklo_epi8(a, b));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 2 * p + 16), _mm_unpackhi_epi8(a, b));
      continue;
    }
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * sstride + p));
    const __m128i d =
        C == 4 ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 3 * sstride + p)) : zero;
    const __m128i ab_lo = _mm_unpacklo_epi8(a, b), ab_hi = _mm_unpackhi_epi8(a, b);
    const __m128i cd_lo = _mm_unpacklo_epi8(c, d), cd_hi = _mm_unpackhi_epi8(c, d);
    const __m128i q[4] = {_mm_unpacklo_epi16(ab_lo, cd_lo), _mm_unpackhi_epi16(ab_lo, cd_lo),
                          _mm_unpacklo_epi16(ab_hi, cd_hi), _mm_unpackhi_epi16(ab_hi, cd_hi)};
    if (C == 4) {
      for (int i = 0; i < 4; ++i) _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 4 * p + 16 * i), q[i]);
      continue;
    }
    // C == 3: each 32-bit lane is one pixel (a, b, c, 0); two lanes -> 6 bytes, stored as 8.
    uint8_t* o = dst + 3 * p;
    for (int i = 0; i < 4; ++i) {
      const uint64_t lo = static_cast<uint64_t>(_mm_cvtsi128_si64(q[i]));
      const uint64_t hi = static_cast<uint64_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(q[i], q[i])));
      const uint64_t v0 = (lo & 0xFFFFFFull) | ((lo >> 8) & 0xFFFFFF000000ull);
      const uint64_t v1 = (hi & 0xFFFFFFull) | ((hi >> 8) & 0xFFFFFF000000ull);
      std::memcpy(o + 12 * i, &v0, 8);
      std::memcpy(o + 12 * i + 6, &v1, 8);
    }
  }
#endif
  for (; p < n; ++p)
    for (int c = 0; c < C; ++c) dst[C * p + c] = src[c * sstride + p];
}

// n pixels of C bytes -> C planes of n bytes (plane stride dstride): NHWC -> NCHW, few channels.
template <int C>
void deinterleave_planes(const uint8_t* src, uint8_t* dst, int64_t dstride, int64_t n) {
  for (int64_t p = 0; p < n; ++p)
    for (int c = 0; c < C; ++c) dst[c * dstride + p] = src[C * p + c];
}

}  // namespace

void channels_transpose(const uint8_t* src, const int64_t shape[4], bool to_last, uint8_t* dst) {
  const int64_t n = shape[0];
  const int64_t rows = to_last ? shape[1] : shape[1] * shape[2];
  const int64_t cols = to_last ? shape[2] * shape[3] : shape[3];
  const int64_t img = rows * cols;
  const int64_t channels = to_last ? rows : cols;
  const int64_t pixels = to_last ? cols : rows;
  for (int64_t i = 0; i < n; ++i) {
    const uint8_t* s = src + i * img;
    uint8_t* d = dst + i * img;
    if (channels == 1 || pixels == 1) {
      std::memcpy(d, s, static_cast<size_t>(img));
    } else if (to_last && channels == 2) {
      interleave_planes<2>(s, pixels, d, pixels);
    } else if (to_last && channels == 3) {
      interleave_planes<3>(s, pixels, d, pixels);
    } else if (to_last && channels == 4) {
      interleave_planes<4>(s, pixels, d, pixels);
    } else if (!to_last && channels == 2) {
      deinterleave_planes<2>(s, d, pixels, pixels);
    } else if (!to_last && channels == 3) {
      deinterleave_planes<3>(s, d, pixels, pixels);
    } else if (!to_last && channels == 4) {
      deinterleave_planes<4>(s, d, pixels, pixels);
    } else {
      transpose_bytes(s, cols, d, rows, rows, cols);
    }
  }
}

}  // namespace qref
