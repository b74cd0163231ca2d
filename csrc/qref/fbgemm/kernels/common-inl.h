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
    uint64_t a, b;
    std::memcpy(&a, src, 8);
    std::memcpy(&b, src + n - 8, 8);
    std::memcpy(dst, &a, 8);
    std::memcpy(dst + n - 8, &b, 8);
  } else if (n >= 4) {
    uint32_t a, b;
    std::memcpy(&a, src, 4);
    std::memcpy(&b, src + n - 4, 4);
    std::memcpy(dst, &a, 4);
    std::memcpy(dst + n - 4, &b, 4);
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
