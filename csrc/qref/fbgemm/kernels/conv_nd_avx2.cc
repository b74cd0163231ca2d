// qref: AVX2 accumulation for the depthwise-3D path (Cg == 1, one output channel per input
// channel). It computes exactly fbgemm's integer arithmetic (GenerateI8Depthwise.cc
// genMaddEpi16xNPacked): per channel and tap pair (2i, 2i+1), vpmaddubsw of the interleaved
// activation bytes with the interleaved weight bytes = sat16(a0*w0 + a1*w1), widened and added
// in int32. The row sums are exact int32 sums. conv_nd_requant_avx2 restates requant.h with
// intrinsics (requant.h's inline functions are not compiled here, see below).
//
// This translation unit is compiled with the AVX2 flags of CMakeLists.txt (like the conv2d AVX2
// kernel; on other architectures it holds only the stubs at its end) and called only after
// avx2_kernel_usable() (common/cpu.cc) was checked.
// It includes no standard-library templates (Highway's one-definition-rule hazard), only
// <immintrin.h> and <cstdint>.
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

namespace qref {

// The weight layout conv_nd_dw_acc_avx2 reads: for tap pair j and channel c, the bytes
// (w[c][2j], w[c][2j+1]) (w is [c][tap], T taps; an odd last tap pairs with 0). Channels in
// blocks of 32 are stored with their middle two groups of 8 swapped (0-7, 16-23, 8-15, 24-31):
// the order vpunpcklbw / vpunpckhbw of two 32-byte activation rows produce in-lane.
static inline int64_t dw_slot(int64_t c, int64_t C) {
  const int64_t c32 = C / 32 * 32;
  if (c >= c32) return c;
  const int64_t i = c % 32, grp = i / 8;
  const int64_t g2 = grp == 1 ? 2 : (grp == 2 ? 1 : grp);
  return c - i + g2 * 8 + i % 8;
}

void conv_nd_dw_pack_avx2(const int8_t* w, int64_t T, int64_t C, int8_t* wpairs) {
  const int64_t T2 = (T + 1) / 2 * 2;
  for (int64_t i = 0; i < T2 * C; ++i) wpairs[i] = 0;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t t = 0; t < T; ++t) wpairs[((t / 2) * C + dw_slot(c, C)) * 2 + (t % 2)] = w[c * T + t];
}

// Row sums of 16 channels: rowsum[c..c+15] = sum over the T2 taps (the zero row adds nothing).
static inline void dw_rowsum16(const uint8_t* const* taps, int64_t T2, int64_t c, int32_t* rowsum) {
  __m256i rs_lo = _mm256_setzero_si256(), rs_hi = _mm256_setzero_si256();
  for (int64_t t = 0; t < T2; ++t) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[t] + c));
    rs_lo = _mm256_add_epi32(rs_lo, _mm256_cvtepu8_epi32(a));
    rs_hi = _mm256_add_epi32(rs_hi, _mm256_cvtepu8_epi32(_mm_srli_si128(a, 8)));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(rowsum + c), rs_lo);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(rowsum + c + 8), rs_hi);
}

// taps[t] (t < T2, T2 even): C activation bytes of tap t (padded taps point at an a_zp row, the
// tap after an odd last one at a zero row). wpairs: conv_nd_dw_pack_avx2's layout. acc[c] =
// sum_j sat16(...); rowsum (if not null) [c] = sum_t a[t][c] over the T real taps.
// The int16 pair sums are widened to int32 with vpmaddwd by (1, 0) and (0, 1) (exact: p * 1 +
// 0 * p'), which gives the even and the odd channels without a lane-crossing shuffle; the
// channel order is restored once per block, after the taps.
bool conv_nd_dw_acc_avx2(const uint8_t* const* taps, int64_t T2, const int8_t* wpairs, int64_t C, int32_t* acc,
                         int32_t* rowsum) {
  const __m256i even = _mm256_set1_epi32(1), odd = _mm256_set1_epi32(1 << 16);
  int64_t c = 0;
  for (; c + 32 <= C; c += 32) {
    // lo: channels 0-7 | 16-23, hi: 8-15 | 24-31 (in-lane unpack); e/o: even/odd channels
    __m256i lo_e = _mm256_setzero_si256(), lo_o = _mm256_setzero_si256();
    __m256i hi_e = _mm256_setzero_si256(), hi_o = _mm256_setzero_si256();
    for (int64_t t = 0; t < T2; t += 2) {
      const __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(taps[t] + c));
      const __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(taps[t + 1] + c));
      const int8_t* wp = wpairs + ((t / 2) * C + c) * 2;
      const __m256i plo = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(a0, a1),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp)));
      const __m256i phi = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(a0, a1),
                                               _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 32)));
      lo_e = _mm256_add_epi32(lo_e, _mm256_madd_epi16(plo, even));
      lo_o = _mm256_add_epi32(lo_o, _mm256_madd_epi16(plo, odd));
      hi_e = _mm256_add_epi32(hi_e, _mm256_madd_epi16(phi, even));
      hi_o = _mm256_add_epi32(hi_o, _mm256_madd_epi16(phi, odd));
    }
    const __m256i l0 = _mm256_unpacklo_epi32(lo_e, lo_o);  // 0-3 | 16-19
    const __m256i l1 = _mm256_unpackhi_epi32(lo_e, lo_o);  // 4-7 | 20-23
    const __m256i h0 = _mm256_unpacklo_epi32(hi_e, hi_o);  // 8-11 | 24-27
    const __m256i h1 = _mm256_unpackhi_epi32(hi_e, hi_o);  // 12-15 | 28-31
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + c), _mm256_permute2x128_si256(l0, l1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + c + 8), _mm256_permute2x128_si256(h0, h1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + c + 16), _mm256_permute2x128_si256(l0, l1, 0x31));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + c + 24), _mm256_permute2x128_si256(h0, h1, 0x31));
    if (rowsum) {
      dw_rowsum16(taps, T2, c, rowsum);
      dw_rowsum16(taps, T2, c + 16, rowsum);
    }
  }
  for (; c + 16 <= C; c += 16) {
    __m256i acc_e = _mm256_setzero_si256(), acc_o = _mm256_setzero_si256();
    for (int64_t t = 0; t < T2; t += 2) {
      const __m128i a0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[t] + c));
      const __m128i a1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(taps[t + 1] + c));
      // channels c..c+7 in the low lane, c+8..c+15 in the high lane, (a0, a1) byte pairs
      const __m256i a = _mm256_set_m128i(_mm_unpackhi_epi8(a0, a1), _mm_unpacklo_epi8(a0, a1));
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wpairs + ((t / 2) * C + c) * 2));
      const __m256i p = _mm256_maddubs_epi16(a, w);  // sat16(a0*w0 + a1*w1), channel order
      acc_e = _mm256_add_epi32(acc_e, _mm256_madd_epi16(p, even));
      acc_o = _mm256_add_epi32(acc_o, _mm256_madd_epi16(p, odd));
    }
    const __m256i l0 = _mm256_unpacklo_epi32(acc_e, acc_o);  // 0-3 | 8-11
    const __m256i l1 = _mm256_unpackhi_epi32(acc_e, acc_o);  // 4-7 | 12-15
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + c), _mm256_permute2x128_si256(l0, l1, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + c + 8), _mm256_permute2x128_si256(l0, l1, 0x31));
    if (rowsum) dw_rowsum16(taps, T2, c, rowsum);
  }
  // remaining channels (C % 16): the same arithmetic, one channel at a time
  for (; c < C; ++c) {
    int32_t s = 0, r = 0;
    for (int64_t t = 0; t < T2; t += 2) {
      const int8_t* wp = wpairs + ((t / 2) * C + c) * 2;  // c >= C / 32 * 32: natural slot
      int32_t v = static_cast<int32_t>(taps[t][c]) * wp[0] + static_cast<int32_t>(taps[t + 1][c]) * wp[1];
      v = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);
      s += v;
      r += taps[t][c] + taps[t + 1][c];
    }
    acc[c] = s;
    if (rowsum) rowsum[c] = r;
  }
  return true;
}

// fbgemm's requantization of 8 channels at a time (QuantUtilsAvx2.cc
// requantizeOutputProcessingAvx2; the scalar statement of it is requant.h, which this file does
// not include): raw = acc - a_zp * col_offset - rowsum * w_zp (vpmulld / vpsubd, wrapping);
// y = (float(raw) + bias_term) * multiplier; cvtps2dq; packs to int16; adds the zero point with
// int16 saturation; packus to uint8; max with lo (out_zp if relu). bias_term may be null (no bias:
// float(raw) + 0.0f == float(raw) for every integer raw, so adding zero is the same).
// bias_fma (per-tensor weights, requant.h requant_prerounding): y = fma(bias_term, bias_rcp,
// float(raw)) rounded once -- fbgemm's _mm256_add_ps(x, _mm256_mul_ps(bias, rcp)) contracted into
// vfmadd231ps -- so this is _mm256_fmadd_ps, the only fused operation here (the file is built
// with -ffp-contract=off like the rest; the intrinsic is explicit). Needs cpu_features().fma.
// Returns the number of channels done (a multiple of 8); the caller finishes the rest.
int64_t conv_nd_requant_avx2(const int32_t* acc, const int32_t* rowsum, bool rowsum_saturates, int32_t a_zp,
                             const int32_t* col_offset, const int32_t* w_zp, const float* bias_term,
                             bool bias_fma, float bias_rcp, const float* multiplier, int32_t out_zp, bool relu,
                             int64_t O, uint8_t* dst) {
  const __m256 vrcp = _mm256_set1_ps(bias_rcp);
  const __m256i vazp = _mm256_set1_epi32(a_zp);
  const __m256i vmax16 = _mm256_set1_epi32(32767);
  const __m128i vozp = _mm_set1_epi16(static_cast<int16_t>(out_zp));
  const __m128i vlo = _mm_set1_epi8(static_cast<char>(relu ? out_zp : 0));
  int64_t o = 0;
  for (; o + 8 <= O; o += 8) {
    __m256i r = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o));
    r = _mm256_sub_epi32(r, _mm256_mullo_epi32(vazp, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col_offset + o))));
    if (rowsum) {
      __m256i rs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(rowsum + o));
      if (rowsum_saturates) rs = _mm256_min_epi32(rs, vmax16);
      r = _mm256_sub_epi32(r, _mm256_mullo_epi32(rs, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w_zp + o))));
    }
    __m256 y = _mm256_cvtepi32_ps(r);
    if (bias_term) {
      const __m256 b = _mm256_loadu_ps(bias_term + o);
      y = bias_fma ? _mm256_fmadd_ps(b, vrcp, y) : _mm256_add_ps(y, b);
    }
    y = _mm256_mul_ps(y, _mm256_loadu_ps(multiplier + o));
    const __m256i q = _mm256_cvtps_epi32(y);
    __m128i q16 = _mm_packs_epi32(_mm256_castsi256_si128(q), _mm256_extracti128_si256(q, 1));
    q16 = _mm_adds_epi16(q16, vozp);
    __m128i q8 = _mm_packus_epi16(q16, q16);
    q8 = _mm_max_epu8(q8, vlo);
    _mm_storel_epi64(reinterpret_cast<__m128i*>(dst + o), q8);
  }
  return o;
}

// The direct transposed path's channel reduction for one input pixel and one tap (fbgemm
// GenerateKernelDirectConvU8S8S32ACC32.cc genComputeBlockDirectConvTrans: vpbroadcastd of four
// activation bytes, vpmaddubsw with the packed weights = sat16 of each consecutive channel pair,
// vpmaddwd with ones = the exact int32 sum of the two pair sums, vpaddd). acc[o] += that sum
// over the IC / 4 channel quads (IC % 4 == 0; the direct path has IC % 8 == 0), wrapping int32
// as vpaddd. wq: for quad q and output o, the bytes w[o][4q .. 4q+3] at (q * O + o) * 4.
// Returns the number of outputs done (a multiple of 8); the caller finishes the rest.
// Also returns the pixel's activation sum (directConvRowSum's addend; exact, vpsadbw) in *rowsum.
int64_t conv_nd_direct_tap_avx2(const uint8_t* px, const int8_t* wq, int64_t IC, int64_t O, int32_t* acc,
                                int64_t* rowsum) {
  {
    __m256i sad = _mm256_setzero_si256();
    int64_t c = 0;
    for (; c + 32 <= IC; c += 32)
      sad = _mm256_add_epi64(sad, _mm256_sad_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(px + c)),
                                                  _mm256_setzero_si256()));
    int64_t sum = _mm256_extract_epi64(sad, 0) + _mm256_extract_epi64(sad, 1) + _mm256_extract_epi64(sad, 2) +
                  _mm256_extract_epi64(sad, 3);
    for (; c < IC; ++c) sum += px[c];
    *rowsum = sum;
  }
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t Q = IC / 4;
  int64_t o = 0;
  for (; o + 32 <= O; o += 32) {
    __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o));
    __m256i a1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o + 8));
    __m256i a2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o + 16));
    __m256i a3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o + 24));
    for (int64_t q = 0; q < Q; ++q) {
      int32_t quad;
      __builtin_memcpy(&quad, px + 4 * q, 4);
      const __m256i a = _mm256_set1_epi32(quad);
      const int8_t* wp = wq + (q * O + o) * 4;
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                    a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp))), ones));
      a1 = _mm256_add_epi32(a1, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                    a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 32))), ones));
      a2 = _mm256_add_epi32(a2, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                    a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 64))), ones));
      a3 = _mm256_add_epi32(a3, _mm256_madd_epi16(_mm256_maddubs_epi16(
                                    a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wp + 96))), ones));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + o), a0);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + o + 8), a1);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + o + 16), a2);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + o + 24), a3);
  }
  for (; o + 8 <= O; o += 8) {
    __m256i a0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(acc + o));
    for (int64_t q = 0; q < Q; ++q) {
      int32_t quad;
      __builtin_memcpy(&quad, px + 4 * q, 4);
      const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wq + (q * O + o) * 4));
      a0 = _mm256_add_epi32(a0, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi32(quad), w), ones));
    }
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + o), a0);
  }
  return o;
}

}  // namespace qref

#else

namespace qref {
void conv_nd_dw_pack_avx2(const int8_t*, int64_t, int64_t, int8_t*) {}
bool conv_nd_dw_acc_avx2(const uint8_t* const*, int64_t, const int8_t*, int64_t, int32_t*, int32_t*) {
  return false;
}
int64_t conv_nd_requant_avx2(const int32_t*, const int32_t*, bool, int32_t, const int32_t*, const int32_t*,
                             const float*, bool, float, const float*, int32_t, bool, int64_t, uint8_t*) {
  return 0;
}
int64_t conv_nd_direct_tap_avx2(const uint8_t*, const int8_t*, int64_t, int64_t, int32_t*, int64_t*) { return 0; }
}  // namespace qref

#endif
