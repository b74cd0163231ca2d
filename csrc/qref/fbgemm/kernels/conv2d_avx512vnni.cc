// qref: the AVX-512 VNNI conv2d kernel. Gives the scalar reference's bytes
// (kernels/conv2d_scalar.cc) for every Conv2dProblem; only faster.
//
// GEMM problems (everything with Cg > 1, and Cg == 1 with few groups): per
// group g, K = KH*KW*Cg in (kh, kw, c) order; A (receptive fields, u8) packed
// in row blocks (a 1x1 stride-1 conv with Cg % 4 == 0 reads input rows
// directly; with one group, dilation_w 1 and KW*Cg % 4 == 0, >= 64, interior
// pixels' kernel rows are read in place: segmented()), B packed by
// pack_weights (once per call or per PreparedConv2d) as [K/4][32][4] bytes: two zmm of 16 output channels x 4 k (fbgemm's VNNI
// GEMM uses the same row interleave of 4, src/PackBMatrix.cc). Micro-tile:
// 8 rows x 32 channels (16 zmm accumulators).
//  - exact semantics: vpdpbusd(acc, u8 a[4k..4k+3], s8 w) adds the four exact
//    products into int32 -- what fbgemm's VNNI JIT does
//    (src/GenerateKernelU8S8S32ACC32Avx512VNNI.cc).
//  - saturating semantics (reproducing an AVX2 host on this CPU): 512-bit
//    vpmaddubsw (pairs (4k,4k+1), (4k+2,4k+3) with int16 saturation: the
//    scalar reference's pairs (2i, 2i+1), since every group's K starts at 0)
//    then vpdpwssd by 1 (the exact int32 sum of the two int16 pair sums, i.e.
//    fbgemm's vpmaddwd-by-1 + vpaddd in one instruction).
// Depthwise problems (Cg == 1, >= 8 groups, <= 4 outputs per group) go to the
// AVX2 kernel's depthwise code (channels in lanes), as fbgemm's depthwise JIT
// is AVX2-only on every CPU; the decision is made from the shape alone, so the
// four entry points below always agree.
//
// Requantization follows requant.h one float32 operation at a time:
// vcvtdq2ps, vaddps bias term, vmulps multiplier, vcvtps2dq (0x80000000 out of
// range), vpmovsdw (int16 saturation = vpackssdw), vpaddsw zero point,
// vpackuswb, vpmaxub lo.
// The output stage is a parameter (gemm/epilogue.h): with Conv2dEpilogue::Kind::onednn
// (exact semantics only) the same integer core ends in oneDNN's requantization
// (onednn/requant.h, its AVX-512 form) instead. Each is a functor type the GEMM is
// instantiated with (FbgemmOut, OnednnOut below), so the fbgemm instantiations are unchanged.
//
// ODR note: this file is compiled with ISA flags, so it includes no
// standard-library template header, keeps every helper in an anonymous
// namespace and reads Requant's std::vector arrays only through out-of-line
// accessors defined in gemm/conv2d.cc (Conv2dEpilogue is a plain struct of
// pointers and scalars; onednn/requant.h's AVX-512 functions are compiled only in
// AVX-512 translation units, all with the same flags): no inline function shared with
// generic code is compiled here (`nm` shows the kernel entry as the only external symbol).
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "qref/common/kernels.h"
#include "qref/gemm/requant_views.h"
#include "qref/onednn/requant.h"

namespace qref {
namespace {

constexpr int64_t kMR = 8;    // GEMM rows per micro-tile
constexpr int64_t kNR = 32;   // output channels per micro-tile (two zmm)
constexpr int64_t kTargetABytes = 96 * 1024;

// Shared helpers (cin_pg, round_up, RqArrays, set_rq, copy_small, sum_bytes,
// im2col_row, ...), compiled here privately: see the file's comment.
#include "qref/fbgemm/kernels/common-inl.h"

#ifdef QREF_HAVE_AVX2_KERNEL
bool use_avx2_depthwise(const Conv2dShape& s) { return use_depthwise(s); }
#else
bool use_avx2_depthwise(const Conv2dShape&) { return false; }
#endif

GemmLayout gemm_layout(const Conv2dProblem& p) { return gemm_layout_for(p, kNR, 4); }

// The A block of mb rows of Kp bytes, and 32 bytes past its last row that im2col_block's
// whole-vector moves may write (bytes no row reads).
size_t abuf_bytes(int64_t mb, int64_t Kp) { return align64(static_cast<size_t>(mb * Kp) + 32); }

int64_t gemm_block_rows(const GemmLayout& L) { return block_rows(kTargetABytes, L.Kp, kMR, 32); }

size_t gemm_scratch(const Conv2dProblem& p) {
  const GemmLayout L = gemm_layout(p);
  const int64_t mb = gemm_block_rows(L);
  // A rows, row sums, segment pointers (segmented(): KH per row), one segment of a_zp bytes
  const Conv2dShape& s = p.shape;
  return abuf_bytes(mb, L.Kp) + align64(static_cast<size_t>(mb) * 4) +
         align64(static_cast<size_t>(mb * s.KH) * sizeof(void*)) + align64(static_cast<size_t>(s.KW * cin_pg(s))) +
         64;
}

// A row in KH segments read where they lie: with one group and dilation_w 1, the taps of
// one kernel row of an output pixel are KW*Cg contiguous input bytes, in the K order
// (kh, kw, c). When that length is a multiple of 4 (so no 4-byte k group straddles two
// segments: the same groups, the same pair saturations) the micro-kernel reads an interior
// pixel's segments straight from the input, a fully padded kernel row from a buffer of
// a_zp bytes, and only pixels with horizontal padding go through im2col. Worth it only for
// long segments (>= 16 k steps).
bool segmented(const Conv2dShape& s) {
  const int64_t seg = s.KW * cin_pg(s);
  const bool direct = s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                      s.pad_w == 0 && cin_pg(s) % 4 == 0;
  return !direct && s.groups == 1 && s.dilation_w == 1 && seg % 4 == 0 && seg >= 64;
}

void gemm_pack(const Conv2dProblem& p, const Conv2dEpilogue& e, const int8_t* w, void* packed) {
  const Conv2dShape& s = p.shape;
  const GemmLayout L = gemm_layout(p);
  const int64_t G = s.groups, Og = cout_pg(s), K = L.K;
  char* base = static_cast<char*>(packed);
  const RqArrays r = gemm_fill_rq(p, L, packed);
  if (e.kind == Conv2dEpilogue::Kind::onednn) {
    // oneDNN's per-channel scale and bias in the multiplier and bias slots
    // (azp_col stays wrap32(a_zp * colsum): w_zp = 0 makes col_offset the colsum).
    for (int64_t g = 0; g < G; ++g)
      for (int64_t n = 0; n < Og; ++n) {
        r.mult[g * L.NP + n] = e.scale[g * Og + n];
        r.bias[g * L.NP + n] = e.bias ? e.bias[g * Og + n] : 0.0f;
      }
  }
  for (int64_t g = 0; g < G; ++g) {
    int8_t* gb = reinterpret_cast<int8_t*>(base + L.b_off + g * L.group_bytes);
    std::memset(gb, 0, static_cast<size_t>(L.group_bytes));
    for (int64_t n = 0; n < Og; ++n) {
      // 4 consecutive k of one output channel are one int32 of the panel.
      const int8_t* wo = w + (g * Og + n) * K;
      int8_t* dst = gb + (n / kNR) * L.panel_bytes + (n % kNR) * 4;
      int64_t k = 0;
      for (; k + 4 <= K; k += 4, dst += kNR * 4) std::memcpy(dst, wo + k, 4);
      for (int64_t q = 0; k + q < K; ++q) dst[q] = wo[k + q];
    }
  }
}

// P consecutive pixels of one output row (input pixels src_step bytes apart), each with KH
// kernel rows of seg <= 32 bytes inside the input image and 32 bytes readable from each
// (im2col_block): all P * KH rows loaded first, then each A row's stored with one 32-byte
// move per kernel row and a 4-byte zero store at K (K..Kp holds at most 3 bytes). Bytes past
// a kernel row land on the next kernel row, on K..Kp or the next A row (all written after,
// in address order), or in the block's slack (abuf_bytes).
template <int KH, int P>
inline void copy_rows32(const uint8_t* src, int64_t src_step, int64_t row_step, int64_t seg, int64_t K,
                        int64_t Kp, uint8_t* dst) {
  __m256i v[P][KH];
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p)
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; ++kh)
      v[p][kh] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + p * src_step + kh * row_step));
  const uint32_t zero4 = 0;
#pragma GCC unroll 4
  for (int p = 0; p < P; ++p) {
    uint8_t* d = dst + p * Kp;
#pragma GCC unroll 8
    for (int kh = 0; kh < KH; ++kh) _mm256_storeu_si256(reinterpret_cast<__m256i*>(d + kh * seg), v[p][kh]);
    if (K < Kp) std::memcpy(d + K, &zero4, 4);
  }
}

template <int P>
inline void copy_rows32_kh(int64_t KH, const uint8_t* src, int64_t src_step, int64_t row_step, int64_t seg,
                           int64_t K, int64_t Kp, uint8_t* dst) {
  if (KH == 7) copy_rows32<7, P>(src, src_step, row_step, seg, K, Kp, dst);
  else if (KH == 5) copy_rows32<5, P>(src, src_step, row_step, seg, K, Kp, dst);
  else copy_rows32<3, P>(src, src_step, row_step, seg, K, Kp, dst);
}

// im2col of `rows` consecutive output pixels from p0 (same bytes as im2col_row, common-inl.h):
// positions advance without divisions, and a kernel row of an interior pixel whose taps are
// adjacent pixels (groups == 1, dilation_w == 1) is copied with whole-vector moves instead of
// copy_small's overlapping ones:
//  - up to 32 bytes (the stem's 7x7x3 = 21) with KH 3, 5 or 7 and every kernel row inside the
//    image: copy_rows32, four pixels at a time where four are. Measured on the stem (AMD
//    Zen 4, 0.82 ms in all): a load and a store per kernel row in turn took ~0.17 ms (the
//    loads wait on the stores just issued; masked moves were slower still); one pixel's loads
//    first, then its stores, ~0.05 ms less; four pixels at a time, ~0.08 ms less.
//  - otherwise 64-byte moves ending in one masked move (masked loads never touch the bytes
//    they leave out).
void im2col_block(const Conv2dShape& s, const uint8_t* in, int64_t p0, int64_t rows, int64_t g, uint8_t a_zp,
                  int64_t Kp, uint8_t* abuf) {
  // The shape in locals: the stores below are through uint8_t*, which may alias s, so fields
  // read in the loop would be reloaded after every store.
  const int64_t H = s.H, W = s.W, C = s.C, OH = s.OH, OW = s.OW, KH = s.KH, KW = s.KW;
  const int64_t stride_h = s.stride_h, stride_w = s.stride_w, pad_h = s.pad_h, pad_w = s.pad_w;
  const int64_t dh = s.dilation_h, row_step = dh * W * C;  // input bytes between kernel rows
  const int64_t seg = KW * cin_pg(s), K = kdim(s);
  const bool fast = s.groups == 1 && s.dilation_w == 1;
  const bool rows32 = seg <= 32 && (KH == 3 || KH == 5 || KH == 7);
  const int64_t full = (seg - 1) / 64 * 64, tail = seg - full;  // 64-byte moves, then a masked one
  const __mmask64 mseg = tail >= 64 ? ~__mmask64{0} : ((__mmask64{1} << tail) - 1);
  const __m512i zp = _mm512_set1_epi8(static_cast<char>(a_zp));
  const int64_t in_bytes = s.N * H * W * C;
  const int64_t OHW = OH * OW;
  int64_t n = p0 / OHW, oh = (p0 % OHW) / OW, ow = p0 % OW;
  for (int64_t i = 0; i < rows; ++i) {
    uint8_t* dst = abuf + i * Kp;
    const int64_t iw0 = ow * stride_w - pad_w, ih0 = oh * stride_h - pad_h;
    const int64_t off0 = ((n * H + ih0) * W + iw0) * C;  // kernel row 0's first byte (if inside)
    if (fast && iw0 >= 0 && iw0 + KW <= W) {
      if (rows32 && ih0 >= 0 && ih0 + (KH - 1) * dh < H && off0 + (KH - 1) * row_step + 32 <= in_bytes) {
        // pixels ow .. ow + 3 of this output row, all interior, all in the block
        const int64_t step = stride_w * C;
        if (i + 4 <= rows && ow + 4 <= OW && iw0 + 3 * stride_w + KW <= W &&
            off0 + 3 * step + (KH - 1) * row_step + 32 <= in_bytes) {
          copy_rows32_kh<4>(KH, in + off0, step, row_step, seg, K, Kp, dst);
          i += 3;
          ow += 3;  // < OW: the increment below ends the row at most
        } else {
          copy_rows32_kh<1>(KH, in + off0, step, row_step, seg, K, Kp, dst);
        }
      } else {
        uint8_t* d = dst;
        for (int64_t kh = 0; kh < KH; ++kh, d += seg) {
          const int64_t ih = ih0 + kh * dh;
          if (ih < 0 || ih >= H) {
            for (int64_t j = 0; j < full; j += 64) _mm512_storeu_si512(d + j, zp);
            _mm512_mask_storeu_epi8(d + full, mseg, zp);
          } else {
            const uint8_t* src = in + off0 + kh * row_step;
            for (int64_t j = 0; j < full; j += 64) _mm512_storeu_si512(d + j, _mm512_loadu_si512(src + j));
            _mm512_mask_storeu_epi8(d + full, mseg, _mm512_maskz_loadu_epi8(mseg, src + full));
          }
        }
        for (int64_t k = K; k < Kp; ++k) dst[k] = 0;
      }
    } else {
      im2col_row(s, in, n, oh, ow, g, a_zp, Kp, dst);
    }
    if (++ow == OW) {
      ow = 0;
      if (++oh == OH) {
        oh = 0;
        ++n;
      }
    }
  }
}

inline __m128i requant16(__m512i acc, __m512i rowsum, const float* mult, const float* bias, const int32_t* azp_col,
                         const int32_t* wzp, bool has_bias, bool bias_fma, bool use_rowsum, __m512 bias_rcp,
                         __m256i zp16, __m128i lo8) {
  __m512i raw = _mm512_sub_epi32(acc, _mm512_loadu_si512(azp_col));
  if (use_rowsum) raw = _mm512_sub_epi32(raw, _mm512_mullo_epi32(rowsum, _mm512_loadu_si512(wzp)));
  __m512 y = _mm512_cvtepi32_ps(raw);
  if (has_bias)
    y = bias_fma ? _mm512_fmadd_ps(_mm512_loadu_ps(bias), bias_rcp, y) : _mm512_add_ps(y, _mm512_loadu_ps(bias));
  y = _mm512_mul_ps(y, _mm512_loadu_ps(mult));
  const __m512i q = _mm512_cvtps_epi32(y);
  __m256i p16 = _mm512_cvtsepi32_epi16(q);  // int16 saturation, channel order kept
  p16 = _mm256_adds_epi16(p16, zp16);
  const __m128i p8 = _mm_packus_epi16(_mm256_castsi256_si128(p16), _mm256_extracti128_si256(p16, 1));
  return _mm_max_epu8(p8, lo8);
}

inline void store_n(uint8_t* dst, __m128i v, int64_t n) {
  if (n >= 16)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), v);
  else if (n > 0)
    _mm_mask_storeu_epi8(dst, static_cast<__mmask16>((1u << n) - 1u), v);
}

inline __m512i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <bool SAT>
inline __m512i dot4(__m512i acc, __m512i a, __m512i b, __m512i ones) {
  // vpdpwssd(acc, x, 1) = acc + x[2j] + x[2j+1]: vpmaddwd-by-1 and vpaddd in one.
  if (SAT) return _mm512_dpwssd_epi32(acc, _mm512_maddubs_epi16(a, b), ones);
  return _mm512_dpbusd_epi32(acc, a, b);
}

struct Tile {
  const uint8_t* a[kMR];
  // K in nseg segments of seg_steps k-steps each; row q's segment sg starts at segp[q][sg]
  // (unsegmented: nseg 1, segp[q] = &a[q]).
  const uint8_t* const* segp[kMR];
  int64_t nseg, seg_steps;
  int32_t rowsum[kMR];
  uint8_t* out[kMR];
  int64_t mvalid, nvalid, steps;
  const uint8_t* b;
  const float* mult;
  const float* bias;
  const int32_t* azp_col;
  const int32_t* wzp;
};

// The output stages (gemm/epilogue.h): 16 channels of one row from their int32 sums. `j` is 0
// or 16 (the tile's second zmm of channels).
// fbgemm's requantization (fbgemm/requant.h), one float32 operation at a time.
struct FbgemmOut {
  bool has_bias, bias_fma, use_rowsum;
  __m512 bias_rcp;  // per-tensor: fma(bias, rcp, float(raw)) (Requant::bias_fma)
  __m256i zp16;
  __m128i lo8;
  FbgemmOut(const Conv2dProblem& p, const Conv2dEpilogue&)
      : has_bias(p.rq.has_bias), bias_fma(p.rq.bias_fma), use_rowsum(any_weight_zero_point(p)),
        bias_rcp(_mm512_set1_ps(p.rq.bias_rcp)),
        zp16(_mm256_set1_epi16(static_cast<int16_t>(p.rq.output_zero_point))),
        lo8(_mm_set1_epi8(static_cast<char>(p.rq.relu ? p.rq.output_zero_point : 0))) {}
  __m128i operator()(__m512i acc, int32_t rowsum, const Tile& t, int64_t j) const {
    return requant16(acc, _mm512_set1_epi32(rowsum), t.mult + j, t.bias + j, t.azp_col + j, t.wzp + j, has_bias,
                     bias_fma, use_rowsum, bias_rcp, zp16, lo8);
  }
};

// oneDNN's requantization (onednn/requant.h) from raw = acc - a_zp * colsum, oneDNN's
// compensated int32 (gemm/epilogue.h); the pack put its scale and bias in the mult and bias
// slots. The result is in [0, 255], so vpmovusdb only narrows it.
struct OnednnOut {
  static constexpr bool use_rowsum = false;  // oneDNN: symmetric weights only
  avx512::OnednnRequant16 c;
  OnednnOut(const Conv2dProblem&, const Conv2dEpilogue& e) : c(avx512::onednn_requant16_consts(e.onednn)) {}
  __m128i operator()(__m512i acc, int32_t, const Tile& t, int64_t j) const {
    const __m512 A = avx512::onednn_compensated16(acc, _mm512_loadu_si512(t.azp_col + j));
    const __m512 bias = c.has_bias ? _mm512_loadu_ps(t.bias + j) : _mm512_setzero_ps();
    return _mm512_cvtusepi32_epi8(avx512::onednn_requant16(A, _mm512_loadu_ps(t.mult + j), bias, c));
  }
};

#define QREF_ROW(r)                                     \
  {                                                     \
    const __m512i a = bcast4(a##r + o);                 \
    c##r##0 = dot4<SAT>(c##r##0, a, b0, ones);          \
    c##r##1 = dot4<SAT>(c##r##1, a, b1, ones);          \
  }

// One 8 x 32 micro-tile: 16 zmm accumulators, B in two zmm, A broadcast.
template <bool SAT, class Out>
void micro_8x32(const Tile& t, const Out& out) {
  const __m512i ones = _mm512_set1_epi16(1);
  __m512i c00 = _mm512_setzero_si512(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
          c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  const uint8_t* b = t.b;
  for (int64_t sg = 0; sg < t.nseg; ++sg) {
    const uint8_t *a0 = t.segp[0][sg], *a1 = t.segp[1][sg], *a2 = t.segp[2][sg], *a3 = t.segp[3][sg],
                  *a4 = t.segp[4][sg], *a5 = t.segp[5][sg], *a6 = t.segp[6][sg], *a7 = t.segp[7][sg];
    for (int64_t st = 0; st < t.seg_steps; ++st, b += kNR * 4) {
      const __m512i b0 = _mm512_loadu_si512(b);
      const __m512i b1 = _mm512_loadu_si512(b + 64);
      const int64_t o = st * 4;
      QREF_ROW(0) QREF_ROW(1) QREF_ROW(2) QREF_ROW(3) QREF_ROW(4) QREF_ROW(5) QREF_ROW(6) QREF_ROW(7)
    }
  }
  // Requantize and store row r (rows past mvalid are duplicates: skipped).
#define QREF_OUT(r)                                                                     \
  if (r < t.mvalid) {                                                                  \
    store_n(t.out[r], out(c##r##0, t.rowsum[r], t, 0), t.nvalid);                      \
    if (t.nvalid > 16) store_n(t.out[r] + 16, out(c##r##1, t.rowsum[r], t, 16), t.nvalid - 16); \
  }
  QREF_OUT(0) QREF_OUT(1) QREF_OUT(2) QREF_OUT(3) QREF_OUT(4) QREF_OUT(5) QREF_OUT(6) QREF_OUT(7)
#undef QREF_OUT
}
#undef QREF_ROW

template <bool SAT, class Out>
void gemm_run(const Conv2dProblem& p, const Conv2dEpilogue& e, const void* packed, const uint8_t* in, uint8_t* out, int64_t m_begin,
              int64_t m_end, void* scratch) {
  const Conv2dShape& s = p.shape;
  const GemmLayout L = gemm_layout(p);
  const int64_t G = s.groups, Og = cout_pg(s), Cg = cin_pg(s), mb = gemm_block_rows(L);
  uint8_t* abuf = static_cast<uint8_t*>(scratch);
  int32_t* rowsum = reinterpret_cast<int32_t*>(abuf + abuf_bytes(mb, L.Kp));
  const uint8_t** segs = reinterpret_cast<const uint8_t**>(reinterpret_cast<char*>(rowsum) +
                                                           align64(static_cast<size_t>(mb) * 4));
  uint8_t* zpseg = reinterpret_cast<uint8_t*>(segs) + align64(static_cast<size_t>(mb * s.KH) * sizeof(void*));
  const Out epi(p, e);  // the output stage (gemm/epilogue.h), built once per call
  const bool use_rowsum = epi.use_rowsum;
  const uint8_t a_zp = static_cast<uint8_t>(p.rq.input_zero_point);
  const char* base = static_cast<const char*>(packed);
  const RqArrays r = rq_arrays(base, G * L.NP);
  const bool direct = s.KH == 1 && s.KW == 1 && s.stride_h == 1 && s.stride_w == 1 && s.pad_h == 0 &&
                      s.pad_w == 0 && Cg % 4 == 0;
  const int64_t pix_begin = m_begin * s.OW, pix_end = m_end * s.OW;
  const bool seg_rows = segmented(s);
  const int64_t seg = s.KW * Cg, nseg = seg_rows ? s.KH : 1;
  if (seg_rows) std::memset(zpseg, a_zp, static_cast<size_t>(seg));

  for (int64_t g = 0; g < G; ++g) {
    const uint8_t* bg = reinterpret_cast<const uint8_t*>(base + L.b_off + g * L.group_bytes);
    for (int64_t p0 = pix_begin; p0 < pix_end; p0 += mb) {
      const int64_t rows = imin(mb, pix_end - p0);
      const uint8_t* arow_base = abuf;
      int64_t lda = L.Kp;
      if (direct) {
        arow_base = in + p0 * s.C + g * Cg;
        lda = s.C;
        if (use_rowsum)
          for (int64_t i = 0; i < rows; ++i) rowsum[i] = sum_bytes(arow_base + i * lda, Cg);
      } else if (seg_rows) {
        // groups == 1 here (segmented()), so g == 0
        const int64_t OHW = s.OH * s.OW;
        int64_t n = p0 / OHW, oh = (p0 % OHW) / s.OW, ow = p0 % s.OW;
        for (int64_t i = 0; i < rows; ++i) {
          const uint8_t** sp = segs + i * s.KH;
          const int64_t iw0 = ow * s.stride_w - s.pad_w;
          if (iw0 >= 0 && iw0 + s.KW <= s.W) {
            for (int64_t kh = 0; kh < s.KH; ++kh) {
              const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
              sp[kh] = ih < 0 || ih >= s.H ? zpseg : in + ((n * s.H + ih) * s.W + iw0) * s.C;
            }
          } else {
            uint8_t* dst = abuf + i * L.Kp;
            im2col_row(s, in, n, oh, ow, 0, a_zp, L.Kp, dst);
            for (int64_t kh = 0; kh < s.KH; ++kh) sp[kh] = dst + kh * seg;
          }
          if (use_rowsum) {
            int32_t sum = 0;
            for (int64_t kh = 0; kh < s.KH; ++kh) sum += sum_bytes(sp[kh], seg);
            rowsum[i] = sum;
          }
          if (++ow == s.OW) {
            ow = 0;
            if (++oh == s.OH) {
              oh = 0;
              ++n;
            }
          }
        }
      } else {
        im2col_block(s, in, p0, rows, g, a_zp, L.Kp, abuf);
        if (use_rowsum)
          for (int64_t i = 0; i < rows; ++i) rowsum[i] = sum_bytes(abuf + i * L.Kp, L.K);
      }
      Tile t;
      t.nseg = nseg;
      t.seg_steps = seg_rows ? seg / 4 : L.steps;
      gemm_block_tiles<kMR, kNR>(
          t, L, r, bg, g, Og, rows, arow_base, lda, rowsum, use_rowsum, out + p0 * s.O, s.O,
          [&](Tile& tt, int64_t q, int64_t i) { tt.segp[q] = seg_rows ? segs + i * s.KH : &tt.a[q]; },
          [&](const Tile& tt) { micro_8x32<SAT>(tt, epi); });
    }
  }
}

// --------------------------------------------------------------------------
// KernelEntry functions.

// avx512vnni_kernel_usable() is defined in cpu.cc (generic code, runs on every CPU).

size_t vnni_packed_bytes(const Conv2dProblem& p) {
#ifdef QREF_HAVE_AVX2_KERNEL
  if (use_avx2_depthwise(p.shape)) return kAvx2Kernel.packed_weight_bytes(p);
#endif
  return gemm_layout(p).total;
}

void vnni_pack(const Conv2dProblem& p, const Conv2dEpilogue& e, const int8_t* w, void* packed) {
#ifdef QREF_HAVE_AVX2_KERNEL
  if (use_avx2_depthwise(p.shape)) return kAvx2Kernel.pack_weights(p, e, w, packed);
#endif
  gemm_pack(p, e, w, packed);
}

size_t vnni_scratch_bytes(const Conv2dProblem& p) {
#ifdef QREF_HAVE_AVX2_KERNEL
  if (use_avx2_depthwise(p.shape)) return kAvx2Kernel.scratch_bytes(p);
#endif
  return gemm_scratch(p);
}

void vnni_run_rows(const Conv2dProblem& p, const Conv2dEpilogue& e, const int8_t* w, const void* packed, const uint8_t* in, uint8_t* out,
                   int64_t m_begin, int64_t m_end, void* scratch, const Conv2dIntermediates* inter) {
#ifdef QREF_HAVE_AVX2_KERNEL
  if (use_avx2_depthwise(p.shape)) return kAvx2Kernel.run_rows(p, e, w, packed, in, out, m_begin, m_end, scratch, inter);
#endif
  (void)w;
  (void)inter;
  if (e.kind == Conv2dEpilogue::Kind::onednn)  // exact semantics only (onednn.cc routes nothing else here)
    gemm_run<false, OnednnOut>(p, e, packed, in, out, m_begin, m_end, scratch);
  else if (p.saturate)
    gemm_run<true, FbgemmOut>(p, e, packed, in, out, m_begin, m_end, scratch);
  else
    gemm_run<false, FbgemmOut>(p, e, packed, in, out, m_begin, m_end, scratch);
}

}  // namespace

extern const KernelEntry kAvx512VnniKernel;  // external linkage even without kernels.h's macro
const KernelEntry kAvx512VnniKernel = {"avx512vnni",       avx512vnni_kernel_usable, vnni_packed_bytes, vnni_pack,
                                       vnni_scratch_bytes, vnni_run_rows,            /*onednn_epilogue=*/true, ConvNdLoops::avx2};

}  // namespace qref
