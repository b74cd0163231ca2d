// qref: helpers shared by the ISA conv2d kernels (conv2d_avx2.cc,
// conv2d_avx512vnni.cc), written once and compiled privately in each.
//
// NOT a normal header: no includes, no include guard. Each kernel file
// includes it exactly once, INSIDE `namespace qref { namespace { ... } }`,
// after <immintrin.h>, <cstring>, "qref/common/kernels.h" and the declarations of the
// requant_* accessors (gemm/conv2d.cc). So every function here gets internal linkage
// and is compiled under that file's ISA flags only: no inline symbol is shared
// between translation units built with different -m flags (the one-definition
// -rule hazard Highway documents for its own *-inl.h files), and
// `nm -C --defined-only` on each object still shows its KernelEntry as the only
// external symbol. It uses only AVX2 (and SSE2) intrinsics, which both files'
// flags include.

// Conv2dShape's sizes without its inline members (same ODR reason as above).
inline int64_t cin_pg(const Conv2dShape& s) { return s.C / s.groups; }
inline int64_t cout_pg(const Conv2dShape& s) { return s.O / s.groups; }
inline int64_t kdim(const Conv2dShape& s) { return s.KH * s.KW * (s.C / s.groups); }
inline int64_t round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline size_t align64(size_t v) { return (v + 63) / 64 * 64; }

// The rows of one block of a GEMM's A: about target_bytes of rows of row_bytes, in whole
// tiles of mr rows, at least one tile and at most max_tiles.
inline int64_t block_rows(int64_t target_bytes, int64_t row_bytes, int64_t mr, int64_t max_tiles) {
  const int64_t mb = target_bytes / imax(1, row_bytes) / mr * mr;
  return imin(imax(mb, mr), max_tiles * mr);
}

// Depthwise lanes only pay off with several groups of one input channel. The
// VNNI kernel hands exactly these shapes to the AVX2 kernel's depthwise code,
// so both decide with this one function.
inline bool use_depthwise(const Conv2dShape& s) {
  return cin_pg(s) == 1 && s.groups >= 8 && cout_pg(s) <= 4;
}

// Per-channel requantization constants, padded and laid out for vector loads.
struct RqArrays {
  float* mult;
  float* bias;
  int32_t* azp_col;  // wrap32(a_zp * col_offset[o])
  int32_t* wzp;
};

RqArrays rq_arrays(const void* base, int64_t count) {
  char* b = static_cast<char*>(const_cast<void*>(base));
  RqArrays r;
  r.mult = reinterpret_cast<float*>(b);
  r.bias = reinterpret_cast<float*>(b + count * 4);
  r.azp_col = reinterpret_cast<int32_t*>(b + count * 8);
  r.wzp = reinterpret_cast<int32_t*>(b + count * 12);
  return r;
}

// Fills slot `i` of the padded arrays with output channel o (or zeros if o < 0).
void set_rq(const RqArrays& r, int64_t i, const Conv2dProblem& p, int64_t o) {
  if (o < 0) {
    r.mult[i] = 0.0f;
    r.bias[i] = 0.0f;
    r.azp_col[i] = 0;
    r.wzp[i] = 0;
    return;
  }
  const Requant& rq = p.rq;
  const float* bias = requant_bias_term(rq);
  r.mult[i] = requant_multiplier(rq)[o];
  r.bias[i] = bias ? bias[o] : 0.0f;
  r.azp_col[i] = static_cast<int32_t>(static_cast<uint32_t>(rq.input_zero_point) *
                                      static_cast<uint32_t>(requant_col_offset(rq)[o]));  // wraps like vpmulld
  r.wzp[i] = requant_weight_zero_point(rq)[o];
}

bool any_weight_zero_point(const Conv2dProblem& p) {
  const int32_t* wzp = requant_weight_zero_point(p.rq);
  for (int64_t o = 0; o < p.shape.O; ++o)
    if (wzp[o] != 0) return true;
  return false;
}

// Copies n bytes (sizeof(T) <= n <= 2 * sizeof(T)) as two possibly overlapping T moves.
template <class T>
inline void copy_ends(uint8_t* dst, const uint8_t* src, int64_t n) {
  T a, b;
  std::memcpy(&a, src, sizeof(T));
  std::memcpy(&b, src + n - sizeof(T), sizeof(T));
  std::memcpy(dst, &a, sizeof(T));
  std::memcpy(dst + n - sizeof(T), &b, sizeof(T));
}

// Copies n bytes with a few overlapping vector moves (im2col of small Cg).
inline void copy_small(uint8_t* dst, const uint8_t* src, int64_t n) {
  if (n >= 16) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
    if (i < n)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + n - 16),
                       _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + n - 16)));
  } else if (n >= 8) {
    copy_ends<uint64_t>(dst, src, n);
  } else if (n >= 4) {
    copy_ends<uint32_t>(dst, src, n);
  } else {
    for (int64_t i = 0; i < n; ++i) dst[i] = src[i];
  }
}

inline int32_t sum_bytes(const uint8_t* p, int64_t n) {
  __m256i acc = _mm256_setzero_si256();
  int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + i)),
                                                _mm256_setzero_si256()));
  alignas(32) int64_t l[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(l), acc);
  int64_t s = l[0] + l[1] + l[2] + l[3];
  for (; i < n; ++i) s += p[i];
  return static_cast<int32_t>(s);  // at most K * 255, exact for any practical K
}

// Receptive field of output pixel (n, oh, ow) in group g, (kh, kw, c) order,
// padded taps = a_zp, bytes K..Kp-1 = 0 (their weights are 0 too).
void im2col_row(const Conv2dShape& s, const uint8_t* in, int64_t n, int64_t oh, int64_t ow, int64_t g,
                uint8_t a_zp, int64_t Kp, uint8_t* dst) {
  const int64_t Cg = cin_pg(s);
  // One contiguous run per kernel row when taps are adjacent pixels of all channels.
  const bool row_contig = s.groups == 1 && s.dilation_w == 1;
  const int64_t iw0 = ow * s.stride_w - s.pad_w;
  uint8_t* d = dst;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
    if (ih < 0 || ih >= s.H) {
      std::memset(d, a_zp, static_cast<size_t>(s.KW * Cg));
      d += s.KW * Cg;
      continue;
    }
    const uint8_t* rowp = in + (n * s.H + ih) * s.W * s.C + g * Cg;
    if (row_contig && iw0 >= 0 && iw0 + s.KW <= s.W) {
      copy_small(d, rowp + iw0 * s.C, s.KW * Cg);
      d += s.KW * Cg;
      continue;
    }
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      const int64_t iw = iw0 + kw * s.dilation_w;
      if (iw < 0 || iw >= s.W) {
        std::memset(d, a_zp, static_cast<size_t>(Cg));
      } else {
        copy_small(d, rowp + iw * s.C, Cg);
      }
      d += Cg;
    }
  }
  for (int64_t k = kdim(s); k < Kp; ++k) dst[k] = 0;
}

// --------------------------------------------------------------------------
// The GEMM path's packed weights, as both kernels lay them out: per group, NP = Og rounded up
// to the panel width NR; a panel holds `steps` k-steps of NR output channels x 4 bytes (4 u8
// k, or 2 int16 k: `k_per_step`); the padded requantization arrays (RqArrays, G * NP
// entries) come first.
struct GemmLayout {
  int64_t K, Kp, NP, steps, panel_bytes, group_bytes;
  size_t b_off, total;
};

inline GemmLayout gemm_layout_for(const Conv2dProblem& p, int64_t nr, int64_t k_per_step) {
  const Conv2dShape& s = p.shape;
  GemmLayout L;
  L.K = kdim(s);
  L.Kp = round_up(L.K, 4);
  L.NP = round_up(cout_pg(s), nr);
  L.steps = L.Kp / k_per_step;
  L.panel_bytes = L.steps * nr * 4;
  L.group_bytes = (L.NP / nr) * L.panel_bytes;
  L.b_off = align64(static_cast<size_t>(s.groups * L.NP) * 16);
  L.total = L.b_off + static_cast<size_t>(s.groups * L.group_bytes);
  return L;
}

// Fills the padded requantization arrays of a GEMM layout (zeros past Og in each group).
inline RqArrays gemm_fill_rq(const Conv2dProblem& p, const GemmLayout& L, void* packed) {
  const int64_t G = p.shape.groups, Og = cout_pg(p.shape);
  const RqArrays r = rq_arrays(packed, G * L.NP);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t n = 0; n < L.NP; ++n) set_rq(r, g * L.NP + n, p, n < Og ? g * Og + n : -1);
  return r;
}

// Runs micro(t) over one block of A rows of group g: every NR-channel panel j, every MR rows
// (a short last tile repeats its last row; the micro-kernel stores only mvalid rows). Sets the
// fields both kernels' Tile has; per_row(t, q, i) sets a kernel's own fields for tile row q
// (block row i). Output row i of the block starts at out_block + i * O.
template <int64_t MR, int64_t NR, class Tile, class PerRow, class Micro>
inline void gemm_block_tiles(Tile& t, const GemmLayout& L, const RqArrays& r, const uint8_t* bg, int64_t g, int64_t Og,
                             int64_t rows, const uint8_t* arow_base, int64_t lda, const int32_t* rowsum,
                             bool use_rowsum, uint8_t* out_block, int64_t O, PerRow per_row, Micro micro) {
  t.steps = L.steps;
  for (int64_t j = 0; j < L.NP / NR; ++j) {
    t.b = bg + j * L.panel_bytes;
    const int64_t c0 = g * L.NP + j * NR;
    t.mult = r.mult + c0;
    t.bias = r.bias + c0;
    t.azp_col = r.azp_col + c0;
    t.wzp = r.wzp + c0;
    t.nvalid = imin(NR, Og - j * NR);
    for (int64_t i0 = 0; i0 < rows; i0 += MR) {
      t.mvalid = imin(MR, rows - i0);
      for (int64_t q = 0; q < MR; ++q) {
        const int64_t i = i0 + imin(q, t.mvalid - 1);
        t.a[q] = arow_base + i * lda;
        t.rowsum[q] = use_rowsum ? rowsum[i] : 0;
        t.out[q] = out_block + i * O + g * Og + j * NR;
        per_row(t, q, i);
      }
      micro(t);
    }
  }
}
