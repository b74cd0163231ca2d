// qref: the AVX2 conv2d kernel. Gives the scalar reference's bytes
// (kernels/conv2d_scalar.cc) for every Conv2dProblem; only faster.
//
// Two code paths, chosen per problem (both handle every semantics):
//  * GEMM (pointwise, im2col, groupwise, anything with Cg > 1): per group g,
//    out[m][n] = sum_k A[m][k] * B[k][n] with K = KH*KW*Cg in (kh, kw, c)
//    order. A (the receptive fields) is packed in blocks of rows, never as a
//    full M x K im2col matrix; a 1x1 stride-1 conv with Cg % 4 == 0 reads the
//    input rows directly. B is packed by pack_weights (once per call, or once
//    per PreparedConv2d) as [K/4][16][4] bytes: 4 consecutive k of an output
//    channel per 32-bit lane, as fbgemm's PackBMatrix (row interleave 4).
//    Micro-tile: 4 rows x 16 channels (8 ymm accumulators).
//    - saturating semantics: vpmaddubsw(u8 a[4k..4k+3], s8 w) sums the pairs
//      (4k, 4k+1) and (4k+2, 4k+3) with int16 saturation -- exactly the pairs
//      (2i, 2i+1) of the scalar reference, because every group's K starts at
//      k = 0 and steps by 4 -- then vpmaddwd(.., 1) adds the two int16 pair
//      sums exactly into int32 (fbgemm's GenerateKernelU8S8S32ACC32 inner loop).
//    - exact semantics: A and B widened to int16, vpmaddwd (a0*w0 + a1*w1 is
//      at most 2 * 255 * 128 in magnitude, so nothing saturates).
//  * depthwise (Cg == 1, >= 8 groups, <= 4 outputs per group): 32 channels
//    in the lanes, taps paired (t0, t1), (t2, t3), ... as fbgemm's depthwise
//    JIT does (src/GenerateI8Depthwise.cc: vpunpck{l,h}bw of two taps, then
//    vpmaddubsw); two pair sums are folded into int32 by vpmaddwd with 1
//    (exact), in a lane order whose vpackssdw/vpackuswb needs no permute.
//
// Requantization follows requant.h one float32 operation at a time:
// vcvtdq2ps, vaddps bias term, vmulps multiplier, vcvtps2dq (0x80000000 out
// of range), vpackssdw, vpaddsw zero point, vpackuswb, vpmaxub lo (as
// src/QuantUtilsAvx2.cc requantizeOutputProcessingAvx2).
//
// ODR note: this file is compiled with ISA flags, so it includes no
// standard-library template header, keeps every helper in an anonymous
// namespace and reads Requant's std::vector arrays only through out-of-line
// accessors defined in gemm/conv2d.cc: no inline function shared with generic code
// is compiled here (`nm` shows the kernel entry as the only external symbol).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qref/common/kernels.h"
#include "qref/common/taps.h"
#include "qref/gemm/requant_views.h"

namespace qref {
namespace {

constexpr int64_t kMR = 4;    // GEMM rows per micro-tile
constexpr int64_t kNR = 16;   // GEMM columns (output channels) per micro-tile
constexpr int64_t kDW = 32;   // depthwise channels per block
constexpr int64_t kTargetABytes = 96 * 1024;  // packed A block (stays in L2)

// Shared helpers (cin_pg, round_up, RqArrays, set_rq, copy_small, sum_bytes,
// im2col_row, ...), compiled here privately: see the file's comment.
#include "qref/fbgemm/kernels/common-inl.h"

// --------------------------------------------------------------------------
// Problem classification and packed layouts.

// saturating: 4 u8 k per step; exact: 2 int16 k per step. 64 bytes/step either way.
GemmLayout gemm_layout(const Conv2dProblem& p) { return gemm_layout_for(p, kNR, p.saturate ? 4 : 2); }

// Depthwise packing, per 32-channel block and tap pair p: 64 bytes of weights,
// lo = [c0-7 | c16-23] and hi = [c8-15 | c24-31] as (w_t0, w_t1) byte pairs --
// the order vpunpck{l,h}bw of two 32-channel tap loads produce. Output channel
// slot Og holds all-one weights ((1, 0) for an odd last tap): the row sums.
// Requantization constants per block in accumulator order (see dw_block).
struct DwLayout {
  int64_t G, GP, Og, T, P, oc_bytes;
  size_t b_off, total;
};

DwLayout dw_layout(const Conv2dProblem& p) {
  const Conv2dShape& s = p.shape;
  DwLayout L;
  L.G = s.groups;
  L.GP = round_up(L.G, kDW);
  L.Og = cout_pg(s);
  L.T = s.KH * s.KW;
  L.P = (L.T + 1) / 2;
  L.oc_bytes = (L.GP / kDW) * L.P * 64;
  L.b_off = align64(static_cast<size_t>(L.Og * L.GP) * 16);
  L.total = L.b_off + static_cast<size_t>((L.Og + 1) * L.oc_bytes);
  return L;
}

// --------------------------------------------------------------------------
// Requantization of 16 int32 accumulators (channels 0-7 in a0, 8-15 in a1).

struct Epilogue {
  bool has_bias, bias_fma, use_rowsum;
  __m256 bias_rcp;  // per-tensor: fma(bias, rcp, float(raw)) (Requant::bias_fma)
  __m256i zp16;  // output zero point, int16 lanes
  __m128i lo8;   // ReLU floor (out_zp) or 0
};

inline __m256i requant_f32(__m256i acc, __m256i rowsum, const float* mult, const float* bias,
                           const int32_t* azp_col, const int32_t* wzp, const Epilogue& e) {
  // raw = acc - wrap(a_zp * col_offset) - wrap(rowsum * w_zp)  (requant.h zero_point_terms)
  __m256i raw = _mm256_sub_epi32(acc, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(azp_col)));
  if (e.use_rowsum)
    raw = _mm256_sub_epi32(raw, _mm256_mullo_epi32(rowsum, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wzp))));
  __m256 y = _mm256_cvtepi32_ps(raw);
  if (e.has_bias)
    y = e.bias_fma ? _mm256_fmadd_ps(_mm256_loadu_ps(bias), e.bias_rcp, y) : _mm256_add_ps(y, _mm256_loadu_ps(bias));
  y = _mm256_mul_ps(y, _mm256_loadu_ps(mult));
  return _mm256_cvtps_epi32(y);
}

inline __m128i requant16(__m256i a0, __m256i a1, __m256i rs0, __m256i rs1, const float* mult,
                         const float* bias, const int32_t* azp_col, const int32_t* wzp, const Epilogue& e) {
  const __m256i q0 = requant_f32(a0, rs0, mult, bias, azp_col, wzp, e);
  const __m256i q1 = requant_f32(a1, rs1, mult + 8, bias + 8, azp_col + 8, wzp + 8, e);
  // vpackssdw interleaves 128-bit lanes; the permute restores channel order.
  __m256i p16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q0, q1), 0xD8);
  p16 = _mm256_adds_epi16(p16, e.zp16);
  __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
  return _mm_max_epu8(p8, e.lo8);  // min(., 255) is implied by vpackuswb
}

inline void store_n(uint8_t* dst, __m128i v, int64_t n) {
  if (n >= 16) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
  } else {
    alignas(16) uint8_t tmp[16];
    _mm_store_si128(reinterpret_cast<__m128i*>(tmp), v);
    std::memcpy(dst, tmp, static_cast<size_t>(n));
  }
}

// --------------------------------------------------------------------------
// GEMM path.

// A row's bytes: u8 k (saturating) or int16 k (widened), and the rows of an A block.
int64_t a_row_bytes(const Conv2dProblem& p, const GemmLayout& L) { return p.saturate ? L.Kp : 2 * L.Kp; }
int64_t gemm_block_rows(const Conv2dProblem& p, const GemmLayout& L) {
  return block_rows(kTargetABytes, a_row_bytes(p, L), kMR, 64);
}

size_t gemm_scratch(const Conv2dProblem& p) {
  const GemmLayout L = gemm_layout(p);
  const int64_t row_bytes = a_row_bytes(p, L), mb = gemm_block_rows(p, L);
  // packed A (+ one staging row for the int16 widening), rowsums
  return align64(static_cast<size_t>(mb * row_bytes)) + align64(static_cast<size_t>(L.Kp) + 64) +
         align64(static_cast<size_t>(mb) * 4) + 64;
}

void gemm_pack(const Conv2dProblem& p, const int8_t* w, void* packed) {
  const Conv2dShape& s = p.shape;
  const GemmLayout L = gemm_layout(p);
  const int64_t G = s.groups, Og = cout_pg(s), K = L.K;
  char* base = static_cast<char*>(packed);
  gemm_fill_rq(p, L, packed);
  for (int64_t g = 0; g < G; ++g) {
    char* gb = base + L.b_off + g * L.group_bytes;
    std::memset(gb, 0, static_cast<size_t>(L.group_bytes));
    for (int64_t n = 0; n < Og; ++n) {
      const int8_t* wo = w + (g * Og + n) * K;
      char* panel = gb + (n / kNR) * L.panel_bytes;
      const int64_t i = n % kNR, half = i / 8, lane = i % 8;
      // One int32 of the panel per step: 4 k as bytes, or 2 k as int16.
      char* dst = panel + half * 32 + lane * 4;
      if (p.saturate) {
        int64_t k = 0;
        for (; k + 4 <= K; k += 4, dst += 64) std::memcpy(dst, wo + k, 4);
        for (int64_t q = 0; k + q < K; ++q) dst[q] = static_cast<char>(wo[k + q]);
      } else {
        for (int64_t k = 0; k < K; k += 2, dst += 64) {
          const int16_t pair[2] = {wo[k], static_cast<int16_t>(k + 1 < K ? wo[k + 1] : 0)};
          std::memcpy(dst, pair, 4);
        }
      }
    }
  }
}

inline __m256i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

template <bool SAT>
inline __m256i dot4(__m256i a, __m256i b, __m256i ones) {
  if (SAT) return _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), ones);
  return _mm256_madd_epi16(a, b);
}

struct Tile {
  const uint8_t* a[kMR];  // A rows (duplicates of the last row past mvalid)
  int32_t rowsum[kMR];
  uint8_t* out[kMR];      // output rows at this panel's first channel
  int64_t mvalid, nvalid, steps;
  const uint8_t* b;       // panel
  const float* mult;      // requant arrays at this panel's first channel
  const float* bias;
  const int32_t* azp_col;
  const int32_t* wzp;
};

// One kMR x 16 micro-tile: 2*kMR ymm accumulators, B in two ymm, A broadcast.
// kMR = 4 leaves GCC enough of the 16 ymm registers for its schedule (with 6
// rows it hoists the broadcasts and spills accumulators to the stack).
#define QREF_ROW(r)                                                     \
  {                                                                     \
    const __m256i a = bcast4(t.a[r] + o);                               \
    c##r##0 = _mm256_add_epi32(c##r##0, dot4<SAT>(a, b0, ones));        \
    c##r##1 = _mm256_add_epi32(c##r##1, dot4<SAT>(a, b1, ones));        \
  }
#define QREF_OUT(r)                                                                                       \
  if (r < t.mvalid) {                                                                                    \
    const __m256i rs = _mm256_set1_epi32(t.rowsum[r]);                                                   \
    store_n(t.out[r], requant16(c##r##0, c##r##1, rs, rs, t.mult, t.bias, t.azp_col, t.wzp, e), t.nvalid); \
  }
template <bool SAT>
void micro_tile(const Tile& t, const Epilogue& e) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
  const uint8_t* b = t.b;
  for (int64_t st = 0; st < t.steps; ++st, b += 64) {
    const __m256i b0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b));
    const __m256i b1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + 32));
    const int64_t o = st * 4;
    QREF_ROW(0) QREF_ROW(1) QREF_ROW(2) QREF_ROW(3)
    // No instruction: pins the 8 accumulators to fixed registers across iterations. Without
    // it GCC rotates them through other registers (8 extra moves a step) and spills one to the
    // stack every step, which left the loop at ~87% of the vpmaddubsw/vpmaddwd ceiling.
    __asm__("" : "+x"(c00), "+x"(c01), "+x"(c10), "+x"(c11), "+x"(c20), "+x"(c21), "+x"(c30), "+x"(c31));
  }
  QREF_OUT(0) QREF_OUT(1) QREF_OUT(2) QREF_OUT(3)
}
#undef QREF_ROW
#undef QREF_OUT

Epilogue make_epilogue(const Conv2dProblem& p, bool use_rowsum) {
  Epilogue e;
  e.has_bias = p.rq.has_bias;
  e.bias_fma = p.rq.bias_fma;
  e.bias_rcp = _mm256_set1_ps(p.rq.bias_rcp);
  e.use_rowsum = use_rowsum;
  e.zp16 = _mm256_set1_epi16(static_cast<int16_t>(p.rq.output_zero_point));
  e.lo8 = _mm_set1_epi8(static_cast<char>(p.rq.relu ? p.rq.output_zero_point : 0));
  return e;
}

inline void widen_row(const uint8_t* src, int64_t Kp, uint8_t* dst) {
  int64_t k = 0;
  for (; k + 16 <= Kp; k += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + 2 * k),
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + k))));
  for (; k < Kp; ++k) {
    const uint16_t v = src[k];
    std::memcpy(dst + 2 * k, &v, 2);
  }
}

template <bool SAT>
void gemm_run(const Conv2dProblem& p, const void* packed, const uint8_t* in, uint8_t* out, int64_t m_begin,
              int64_t m_end, void* scratch) {
  const Conv2dShape& s = p.shape;
  const GemmLayout L = gemm_layout(p);
  const int64_t G = s.groups, Og = cout_pg(s), Cg = cin_pg(s);
  const int64_t row_bytes = a_row_bytes(p, L), mb = gemm_block_rows(p, L);
  uint8_t* abuf = static_cast<uint8_t*>(scratch);
  uint8_t* stage = abuf + align64(static_cast<size_t>(mb * row_bytes));
  int32_t* rowsum = reinterpret_cast<int32_t*>(stage + align64(static_cast<size_t>(L.Kp) + 64));
  const bool use_rowsum = any_weight_zero_point(p);
  const Epilogue e = make_epilogue(p, use_rowsum);
  const uint8_t a_zp = static_cast<uint8_t>(p.rq.input_zero_point);
  const char* base = static_cast<const char*>(packed);
  const RqArrays r = rq_arrays(base, G * L.NP);
  // 1x1, stride 1, no padding: A rows are input rows (no over-read when Cg % 4 == 0).
  const bool direct = SAT && s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                      s.pad_w == 0 && Cg % 4 == 0;
  const int64_t OHW = s.OH * s.OW;
  const int64_t pix_begin = m_begin * s.OW, pix_end = m_end * s.OW;

  for (int64_t g = 0; g < G; ++g) {
    const uint8_t* bg = reinterpret_cast<const uint8_t*>(base + L.b_off + g * L.group_bytes);
    for (int64_t p0 = pix_begin; p0 < pix_end; p0 += mb) {
      const int64_t rows = imin(mb, pix_end - p0);
      // Pack (or point at) the A rows of this block and their rowsums.
      const uint8_t* arow_base = abuf;
      int64_t lda = row_bytes;
      if (direct) {
        // m = n*OH*OW + oh*OW + ow and the input pixel is the same index.
        arow_base = in + p0 * s.C + g * Cg;
        lda = s.C;
        if (use_rowsum)
          for (int64_t i = 0; i < rows; ++i) rowsum[i] = sum_bytes(arow_base + i * lda, Cg);
      } else {
        for (int64_t i = 0; i < rows; ++i) {
          const int64_t pix = p0 + i;
          const int64_t n = pix / OHW, rem = pix % OHW, oh = rem / s.OW, ow = rem % s.OW;
          uint8_t* dst = SAT ? abuf + i * row_bytes : stage;
          im2col_row(s, in, n, oh, ow, g, a_zp, L.Kp, dst);
          if (use_rowsum) rowsum[i] = sum_bytes(dst, L.K);
          if (!SAT) widen_row(stage, L.Kp, abuf + i * row_bytes);
        }
      }
      Tile t;
      gemm_block_tiles<kMR, kNR>(t, L, r, bg, g, Og, rows, arow_base, lda, rowsum, use_rowsum, out + p0 * s.O, s.O,
                                 [](Tile&, int64_t, int64_t) {}, [&](const Tile& tt) { micro_tile<SAT>(tt, e); });
    }
  }
}

// --------------------------------------------------------------------------
// Depthwise path: 32 channels (groups) in the lanes, taps paired.

size_t dw_scratch(const Conv2dProblem& p) {
  const DwLayout L = dw_layout(p);
  // zero-point row (GP + 32 wide), tap pointers, tail staging, Og staging
  return align64(static_cast<size_t>(L.GP) + 64) + align64(static_cast<size_t>(L.T + 1) * 8) +
         align64(static_cast<size_t>(L.T + 1) * kDW) + align64(static_cast<size_t>(L.Og) * kDW) + 64;
}

// Lane position (0..31) of channel c (0..31) in the accumulators A0..A3:
// A0 = [c0-3 | c16-19], A1 = [c4-7 | c20-23], A2 = [c8-11 | c24-27],
// A3 = [c12-15 | c28-31] (8 lanes each).
inline int64_t dw_slot(int64_t c) {
  const int64_t half = c / 16, r = c % 16;  // r / 4 = accumulator, r % 4 = lane in the 128-bit half
  return (r / 4) * 8 + half * 4 + r % 4;
}

void dw_pack(const Conv2dProblem& p, const int8_t* w, void* packed) {
  const DwLayout L = dw_layout(p);
  char* base = static_cast<char*>(packed);
  const RqArrays r = rq_arrays(base, L.Og * L.GP);
  for (int64_t oc = 0; oc < L.Og; ++oc)
    for (int64_t g = 0; g < L.GP; ++g) {
      const int64_t i = oc * L.GP + (g / kDW) * kDW + dw_slot(g % kDW);
      set_rq(r, i, p, g < L.G ? g * L.Og + oc : -1);
    }
  int8_t* b = reinterpret_cast<int8_t*>(base + L.b_off);
  std::memset(b, 0, static_cast<size_t>((L.Og + 1) * L.oc_bytes));
  for (int64_t oc = 0; oc <= L.Og; ++oc)
    for (int64_t g = 0; g < L.G; ++g) {
      const int8_t* wo = w + (g * L.Og + (oc < L.Og ? oc : 0)) * L.T;  // K = T for Cg = 1
      const int64_t blk = g / kDW, c = g % kDW;
      // byte offset of channel c in the 64-byte pair record: lo/hi half, 128-bit lane
      const int64_t off = ((c / 8) % 2) * 32 + (c / 16) * 16 + (c % 8) * 2;
      for (int64_t t = 0; t < L.T; ++t) {
        int8_t* pp = b + oc * L.oc_bytes + (blk * L.P + t / 2) * 64;
        pp[off + t % 2] = oc < L.Og ? wo[t] : 1;
      }
    }
}

// Folds two vectors of 16-bit pair sums (P, Q) into the int32 accumulators:
// vpunpck{l,h}wd puts P and Q of one channel side by side, vpmaddwd by 1 adds
// them exactly.
inline void dw_fold(__m256i P, __m256i Q, __m256i ones16, __m256i* a_lo, __m256i* a_hi) {
  *a_lo = _mm256_add_epi32(*a_lo, _mm256_madd_epi16(_mm256_unpacklo_epi16(P, Q), ones16));
  *a_hi = _mm256_add_epi32(*a_hi, _mm256_madd_epi16(_mm256_unpackhi_epi16(P, Q), ones16));
}

inline __m256i load32(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }

// One 32-channel block over all tap pairs. SAT: vpmaddubsw's int16-saturated
// pair sums (t0, t1), consecutive pairs folded together. Exact: each pair's
// sum split as a = (a & 0x7f) + (a & 0x80), two vpmaddubsw that cannot
// saturate (|127*w0 + 127*w1| <= 32512, 128*(w0 + w1) in [-32768, 32512]),
// folded together into the exact int32 pair sum.
template <bool SAT>
inline void dw_block(const uint8_t* const* taps, int64_t T, int64_t c0, const uint8_t* wb, __m256i* acc) {
  const __m256i ones16 = _mm256_set1_epi16(1);
  __m256i A0 = _mm256_setzero_si256(), A1 = A0, A2 = A0, A3 = A0;
  int64_t t = 0;
  if (SAT) {
    // Four taps (two pairs) per step: the two pairs' int16 sums are folded together.
    for (; t + 4 <= T; t += 4, wb += 128) {
      const __m256i x0 = load32(taps[t] + c0), x1 = load32(taps[t + 1] + c0);
      const __m256i x2 = load32(taps[t + 2] + c0), x3 = load32(taps[t + 3] + c0);
      const __m256i p_lo = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(x0, x1), load32(wb));
      const __m256i p_hi = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(x0, x1), load32(wb + 32));
      const __m256i q_lo = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(x2, x3), load32(wb + 64));
      const __m256i q_hi = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(x2, x3), load32(wb + 96));
      dw_fold(p_lo, q_lo, ones16, &A0, &A1);
      dw_fold(p_hi, q_hi, ones16, &A2, &A3);
    }
    // 1-3 taps left: one pair (odd last tap pairs with a zero weight), and a
    // second, single-tap pair when 3 are left; folded with zeros if alone.
    if (t < T) {
      const __m256i x0 = load32(taps[t] + c0), x1 = t + 1 < T ? load32(taps[t + 1] + c0) : x0;
      const __m256i p_lo = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(x0, x1), load32(wb));
      const __m256i p_hi = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(x0, x1), load32(wb + 32));
      __m256i q_lo = _mm256_setzero_si256(), q_hi = q_lo;
      if (t + 2 < T) {
        const __m256i x2 = load32(taps[t + 2] + c0);
        q_lo = _mm256_maddubs_epi16(_mm256_unpacklo_epi8(x2, x2), load32(wb + 64));
        q_hi = _mm256_maddubs_epi16(_mm256_unpackhi_epi8(x2, x2), load32(wb + 96));
      }
      dw_fold(p_lo, q_lo, ones16, &A0, &A1);
      dw_fold(p_hi, q_hi, ones16, &A2, &A3);
    }
  } else {
    const __m256i m7f = _mm256_set1_epi8(0x7f), m80 = _mm256_set1_epi8(static_cast<char>(0x80));
    for (; t < T; t += 2, wb += 64) {
      const __m256i x0 = load32(taps[t] + c0), x1 = t + 1 < T ? load32(taps[t + 1] + c0) : x0;
      const __m256i lo = _mm256_unpacklo_epi8(x0, x1), hi = _mm256_unpackhi_epi8(x0, x1);
      const __m256i wlo = load32(wb), whi = load32(wb + 32);
      dw_fold(_mm256_maddubs_epi16(_mm256_and_si256(lo, m7f), wlo),
              _mm256_maddubs_epi16(_mm256_and_si256(lo, m80), wlo), ones16, &A0, &A1);
      dw_fold(_mm256_maddubs_epi16(_mm256_and_si256(hi, m7f), whi),
              _mm256_maddubs_epi16(_mm256_and_si256(hi, m80), whi), ones16, &A2, &A3);
    }
  }
  acc[0] = A0;
  acc[1] = A1;
  acc[2] = A2;
  acc[3] = A3;
}

// Requantizes a block: packssdw(A0, A1) = [c0-7 | c16-23], packssdw(A2, A3) =
// [c8-15 | c24-31], packuswb of those = c0..c31 in order.
inline __m256i dw_requant(const __m256i* acc, const __m256i* rs, const RqArrays& r, int64_t ri, const Epilogue& e) {
  __m256i q[4];
  for (int j = 0; j < 4; ++j)
    q[j] = requant_f32(acc[j], rs[j], r.mult + ri + 8 * j, r.bias + ri + 8 * j, r.azp_col + ri + 8 * j,
                       r.wzp + ri + 8 * j, e);
  const __m256i zp16 = e.zp16;
  const __m256i p01 = _mm256_adds_epi16(_mm256_packs_epi32(q[0], q[1]), zp16);
  const __m256i p23 = _mm256_adds_epi16(_mm256_packs_epi32(q[2], q[3]), zp16);
  return _mm256_max_epu8(_mm256_packus_epi16(p01, p23), _mm256_set_m128i(e.lo8, e.lo8));
}

template <bool SAT>
void dw_run(const Conv2dProblem& p, const void* packed, const uint8_t* in, uint8_t* out, int64_t m_begin,
            int64_t m_end, void* scratch) {
  const Conv2dShape& s = p.shape;
  const DwLayout L = dw_layout(p);
  const int64_t G = L.G, Og = L.Og, T = L.T, O = s.O;
  uint8_t* zrow = static_cast<uint8_t*>(scratch);
  const uint8_t** taps = reinterpret_cast<const uint8_t**>(zrow + align64(static_cast<size_t>(L.GP) + 64));
  uint8_t* tail = reinterpret_cast<uint8_t*>(taps) + align64(static_cast<size_t>(T + 1) * 8);
  uint8_t* stage = tail + align64(static_cast<size_t>(T + 1) * kDW);
  std::memset(zrow, p.rq.input_zero_point, static_cast<size_t>(L.GP) + 64);
  const bool use_rowsum = any_weight_zero_point(p);
  const Epilogue e = make_epilogue(p, use_rowsum);
  const char* base = static_cast<const char*>(packed);
  const RqArrays r = rq_arrays(base, Og * L.GP);
  const uint8_t* wbase = reinterpret_cast<const uint8_t*>(base + L.b_off);
  const int64_t full_blocks = G / kDW, rem = G % kDW;

  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / s.OH, oh = m % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      pixel_taps(s, in, n, oh, ow, zrow, taps);
      uint8_t* orow = out + (m * s.OW + ow) * O;
      for (int64_t blk = 0; blk <= full_blocks; ++blk) {
        const int64_t c0 = blk * kDW;
        const int64_t nch = blk < full_blocks ? kDW : rem;
        if (nch == 0) break;
        int64_t cc = c0;
        if (nch < kDW) {
          // A tail block reads 32 bytes per tap: stage them so no read passes
          // the input's end (the tap pointers are rebuilt for the next pixel).
          for (int64_t t = 0; t < T; ++t) {
            std::memset(tail + t * kDW, 0, kDW);
            std::memcpy(tail + t * kDW, taps[t] + c0, static_cast<size_t>(nch));
            taps[t] = tail + t * kDW;
          }
          cc = 0;
        }
        __m256i rs[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(),
                         _mm256_setzero_si256()};
        if (use_rowsum) dw_block<true>(taps, T, cc, wbase + Og * L.oc_bytes + blk * L.P * 64, rs);
        for (int64_t oc = 0; oc < Og; ++oc) {
          __m256i acc[4];
          dw_block<SAT>(taps, T, cc, wbase + oc * L.oc_bytes + blk * L.P * 64, acc);
          const __m256i v = dw_requant(acc, rs, r, oc * L.GP + c0, e);
          if (Og == 1 && nch == kDW) {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(orow + c0), v);
          } else {
            _mm256_storeu_si256(reinterpret_cast<__m256i*>(stage + oc * kDW), v);
          }
        }
        if (Og == 1 && nch < kDW) {
          std::memcpy(orow + c0, stage, static_cast<size_t>(nch));
        } else if (Og > 1) {
          for (int64_t l = 0; l < nch; ++l)
            for (int64_t oc = 0; oc < Og; ++oc) orow[(c0 + l) * Og + oc] = stage[oc * kDW + l];
        }
      }
    }
  }
}

// --------------------------------------------------------------------------
// KernelEntry functions.

// avx2_kernel_usable() is defined in cpu.cc: it runs on every CPU, so it must not be
// compiled with this file's -mavx2 (nor get cpu_features() inlined into AVX2 code).

size_t avx2_packed_bytes(const Conv2dProblem& p) {
  return use_depthwise(p.shape) ? dw_layout(p).total : gemm_layout(p).total;
}

void avx2_pack(const Conv2dProblem& p, const Conv2dEpilogue&, const int8_t* w, void* packed) {
  if (use_depthwise(p.shape))
    dw_pack(p, w, packed);
  else
    gemm_pack(p, w, packed);
}

size_t avx2_scratch_bytes(const Conv2dProblem& p) {
  return use_depthwise(p.shape) ? dw_scratch(p) : gemm_scratch(p);
}

void avx2_run_rows(const Conv2dProblem& p, const Conv2dEpilogue&, const int8_t*, const void* packed, const uint8_t* in, uint8_t* out,
                   int64_t m_begin, int64_t m_end, void* scratch, const Conv2dIntermediates*) {
  if (use_depthwise(p.shape)) {
    if (p.saturate)
      dw_run<true>(p, packed, in, out, m_begin, m_end, scratch);
    else
      dw_run<false>(p, packed, in, out, m_begin, m_end, scratch);
  } else if (p.saturate) {
    gemm_run<true>(p, packed, in, out, m_begin, m_end, scratch);
  } else {
    gemm_run<false>(p, packed, in, out, m_begin, m_end, scratch);
  }
}

}  // namespace

extern const KernelEntry kAvx2Kernel;  // external linkage even without kernels.h's macro
const KernelEntry kAvx2Kernel = {"avx2",        avx2_kernel_usable, avx2_packed_bytes,
                                 avx2_pack,     avx2_scratch_bytes, avx2_run_rows,
                                 /*onednn_epilogue=*/false, ConvNdLoops::avx2};

}  // namespace qref
