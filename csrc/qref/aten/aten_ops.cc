// qref::aten -- ATen's quantized (non-conv) CPU ops. Sources named per op are
// files under aten/src/ATen/native/quantized/cpu/ of PyTorch (and fbgemm's
// QuantUtils for quantize/dequantize); the code here is our own.
#include "qref/aten/aten_ops.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "qref/aten/aten_ref.h"
#include "qref/aten/kernels/aten_kernels.h"
#include "qref/common/kernels.h"

namespace qref {
namespace aten {
namespace {

constexpr int64_t kGrain = 32768;  // at::internal::GRAIN_SIZE

// cpu_kernel_vec over a contiguous 1-d range (ATen/native/cpu/Loops.h
// vectorized_loop) split by at::parallel_for (OpenMP: min(threads,
// ceil(n / grain)) chunks of ceil(n / chunks)). Measured on torch 2.13: the
// SIMD body covers whole blocks of 64 elements of each chunk under every
// capability (DEFAULT, AVX2, AVX512), the scalar op the rest.
// ew_drive_blocks: the same schedule, the SIMD body of each chunk handed over
// as one range [b, e) of whole 64-element blocks (a vectorized kernel).
template <class BodyRange, class Tail>
void ew_drive_blocks(int64_t n, const Sched& s, BodyRange body_range, Tail tail) {
  const int64_t v2 = 64;
  if (s.scalar_only) {
    for (int64_t i = 0; i < n; ++i) tail(i);
    return;
  }
  auto run = [&](int64_t b, int64_t e) {
    const int64_t nb = (e - b) / v2 * v2;
    if (nb > 0) body_range(b, b + nb);
    for (int64_t i = b + nb; i < e; ++i) tail(i);
  };
  if (n < kGrain || s.num_threads <= 1) {
    run(0, n);
    return;
  }
  const int64_t nt = std::min<int64_t>(s.num_threads, (n + kGrain - 1) / kGrain);
  const int64_t chunk = (n + nt - 1) / nt;
  for (int64_t t = 0; t < nt; ++t) {
    const int64_t b = t * chunk;
    if (b < n) run(b, std::min(n, b + chunk));
  }
}

template <class Body, class Tail>
void ew_drive(int64_t n, const Sched& s, Body body, Tail tail) {
  ew_drive_blocks(
      n, s,
      [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) body(j);
      },
      tail);
}

// Whether the vectorized bodies (kernels/) may run: compiled in, the CPU has
// the ISA, and the caller did not ask for the scalar reference.
inline bool simd_usable(const Sched& s) {
#ifdef QREF_HAVE_AVX2_KERNEL
  return s.simd && avx2_kernel_usable();
#else
  (void)s;
  return false;
#endif
}

template <class T>
void quantize_per_tensor_t(const float* x, int64_t n, double scale, int64_t zp, T* out) {
  // QuantizedOpKernels.cpp quantize_tensor_per_tensor_affine_cpu (USE_FBGEMM)
  // calls fbgemm::Quantize<T> with its default LEGACY=true: the zero point is
  // added inside one fma before rounding, in the 8-lane body and (measured)
  // in the scalar tail alike, so the split into threads does not matter.
  const float inv = 1.0f / static_cast<float>(scale);
  const int32_t z = static_cast<int32_t>(zp);
  for (int64_t i = 0; i < n; ++i) out[i] = quantize_legacy<T>(inv, z, x[i]);
}

// The quantize of a SIMD body: Vectorized<q>::quantize. AVX2/AVX512: ATen's
// QuantizeAvx2/QuantizeAvx512 lanes with the inverse the kernel hands in;
// DEFAULT: quantize_vec, i.e. fbgemm::Quantize's legacy lanes (measured),
// nearbyint(fma(x, 1 / scale, zp)).
template <class T>
inline T body_quantize(int cap, float inverse_scale, float scale, int32_t zp, float x) {
  return cap == kDefault ? quantize_legacy<T>(1.0f / scale, zp, x) : quantize_lane<T>(inverse_scale, zp, x);
}

template <class T>
void binary_t(int op, const T* a, const T* b, int64_t n, double sa_d, int64_t za, double sb_d, int64_t zb,
              double so_d, int64_t zo, T* out, const Sched& sc) {
  const float sa = static_cast<float>(sa_d), sb = static_cast<float>(sb_d), so = static_cast<float>(so_d);
  const int32_t zo32 = static_cast<int32_t>(zo);
  if (op == kAdd || op == kAddRelu) {
    // QuantizedOpKernels.cpp qadd_kernel<ReLUFused>.
    const bool relu = op == kAddRelu;
    const float inv = 1.0f / so;
    const float pa = premul(sa, za), pb = premul(sb, zb);
    const bool fma_body = sc.cap != kDefault;
    auto tail = [&](int64_t i) {
      float c = dequantize_val(sa, za, a[i]) + dequantize_val(sb, zb, b[i]);
      if (relu) c = std::max<float>(c, 0.0f);
      out[i] = quantize_val<T>(so, zo32, c);
    };
#ifdef QREF_HAVE_AVX2_KERNEL
    if (simd_usable(sc)) {
      AddBodyArgs g;
      g.sa = sa;
      g.sb = sb;
      g.pa = pa;
      g.pb = pb;
      g.inv = inv;
      g.za = static_cast<int32_t>(za);
      g.zb = static_cast<int32_t>(zb);
      g.zo = zo32;
      g.relu = relu;
      g.fma_body = fma_body;
      g.s8 = std::is_same<T, int8_t>::value;
      ew_drive_blocks(
          n, sc, [&](int64_t b0, int64_t e0) { add_body_avx2(g, a + b0, b + b0, e0 - b0, out + b0); }, tail);
      return;
    }
#endif
    ew_drive(
        n, sc,
        [&](int64_t i) {
          const float da = fma_body ? dequantize_fma(sa, pa, a[i]) : dequantize_val(sa, za, a[i]);
          const float db = fma_body ? dequantize_fma(sb, pb, b[i]) : dequantize_val(sb, zb, b[i]);
          float c = da + db;
          if (relu) c = c > 0.0f ? c : 0.0f;  // vec::maximum(c, 0)
          out[i] = body_quantize<T>(sc.cap, inv, so, zo32, c);
        },
        tail);
    return;
  }
  // QuantizedOpKernels.cpp qmul_kernel<ReLUFused>: integer product,
  // requantize_from_int with multiplier sa * sb * (1 / so) in float.
  const bool relu = op == kMulRelu;
  const float inv = 1.0f / so;
  const float mult = sa * sb * inv;
  const T zt = static_cast<T>(zo);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t c = (static_cast<int32_t>(a[i]) - static_cast<int32_t>(za)) *
                      (static_cast<int32_t>(b[i]) - static_cast<int32_t>(zb));
    T r = requantize_from_int<T>(mult, zo, c);
    if (relu) r = std::max(r, zt);
    out[i] = r;
  }
}

// The quantized activations whose SIMD body calls a vectorized
// transcendental (QuantizedOpKernels.cpp): the body dequantizes like every
// elementwise body, evaluates in float with Vectorized<float>'s function (SLEEF
// under AVX2/AVX512, the std:: float function under DEFAULT) and quantizes
// with the inverse the kernel hands in; the scalar tail uses the std::
// functions (in double where the kernel's expression is double).
template <class T>
void transcendental_t(int op, const T* x, int64_t n, float si, int64_t zi, float pi, double so_d, int32_t zo32,
                      double arg0, double arg1, double arg2, T* out, const Sched& sc) {
  const float so = static_cast<float>(so_d);
  const bool dflt = sc.cap == kDefault;
  auto deq_body = [&](T q) { return dflt ? dequantize_val(si, zi, q) : dequantize_fma(si, pi, q); };
  auto vexp = [&](float v) { return dflt ? std::exp(v) : sleef_expf_u10(v); };
  auto vtanh = [&](float v) { return dflt ? std::tanh(v) : sleef_tanhf_u10(v); };
  auto verf = [&](float v) { return dflt ? std::erf(v) : aten_vec_erf(v); };
  if (op == kTanh) {
    // qtanh_kernel: output qparams fixed by the caller (2/256, zero point
    // 128 or 0); inverse 1.0 / output_scale in double, rounded to float.
    const float inv = static_cast<float>(1.0 / static_cast<double>(so));
    ew_drive(
        n, sc, [&](int64_t i) { out[i] = body_quantize<T>(sc.cap, inv, so, zo32, vtanh(deq_body(x[i]))); },
        [&](int64_t i) { out[i] = quantize_val<T>(so, zo32, std::tanh(dequantize_val(si, zi, x[i]))); });
    return;
  }
  if (op == kElu) {
    // qelu_kernel: y = x > 0 ? x : (exp(x * input_scale) - 1) * alpha, then
    // * scale (the tail tests x >= 0, the same value at 0).
    const float alpha = static_cast<float>(arg0), coef = static_cast<float>(arg1), in_coef = static_cast<float>(arg2);
    const float inv = static_cast<float>(1.0 / static_cast<double>(so));  // 1.0 / float(scale)
    ew_drive(
        n, sc,
        [&](int64_t i) {
          const float v = deq_body(x[i]);
          const float neg = (vexp((v * 1.0f) * in_coef) - 1.0f) * alpha;
          out[i] = body_quantize<T>(sc.cap, inv, so, zo32, (v > 0.0f ? v : neg) * coef);
        },
        [&](int64_t i) {
          const float v = dequantize_val(si, zi, x[i]);
          const float y = v >= 0.0f ? v * coef : (std::exp(v * in_coef) - 1.0f) * alpha * coef;
          out[i] = quantize_val<T>(so, zo32, y);
        });
    return;
  }
  // qgelu_kernel: output qparams are the input's; inverse 1.0 / scale in
  // double, rounded to float.
  const float inv = static_cast<float>(1.0 / static_cast<double>(so));
  if (op == kGelu) {
    const float alpha = static_cast<float>(M_SQRT1_2);
    ew_drive(
        n, sc,
        [&](int64_t i) {
          const float v = deq_body(x[i]);
          out[i] = body_quantize<T>(sc.cap, inv, so, zo32, v * 0.5f * (1.0f + verf(v * alpha)));
        },
        [&](int64_t i) {
          const float v = dequantize_val(si, zi, x[i]);
          const double y = static_cast<double>(v) * 0.5 * (1.0 + std::erf(static_cast<double>(v) * M_SQRT1_2));
          out[i] = quantize_val<T>(so, zo32, static_cast<float>(y));
        });
    return;
  }
  // approximate='tanh'. The per-capability translation units are compiled
  // with -mfma and the compiler contracts x + kappa * x^3 into one fma under
  // AVX2/AVX512: measured on torch's float gelu(approximate='tanh') kernel
  // (same expression, same flags), which our Vectorized tanh reproduces bit
  // for bit only with the fma. The quantized outputs of a 180k-element sweep
  // did not tell the two apart; the tail's double expression is treated alike.
  const double beta_d = M_SQRT2 * M_2_SQRTPI * 0.5, kappa_d = 0.044715;
  const float beta = static_cast<float>(beta_d), kappa = static_cast<float>(kappa_d);
  ew_drive(
      n, sc,
      [&](int64_t i) {
        const float v = deq_body(x[i]);
        const float cube = v * v * v;
        const float inner = beta * (dflt ? v + kappa * cube : std::fma(kappa, cube, v));
        out[i] = body_quantize<T>(sc.cap, inv, so, zo32, 0.5f * v * (1.0f + vtanh(inner)));
      },
      [&](int64_t i) {
        const float v = dequantize_val(si, zi, x[i]);
        const float cube = v * v * v;
        const double vd = static_cast<double>(v), cd = static_cast<double>(cube);
        const double inner = beta_d * (dflt ? vd + kappa_d * cd : std::fma(kappa_d, cd, vd));
        const double y = 0.5 * static_cast<double>(v) * (1.0 + std::tanh(inner));
        out[i] = quantize_val<T>(so, zo32, static_cast<float>(y));
      });
}

template <class T>
void unary_t(int op, const T* x, int64_t n, double si_d, int64_t zi, double so_d, int64_t zo, double arg0,
             double arg1, double arg2, T* out, const Sched& sc) {
  const float si = static_cast<float>(si_d), so = static_cast<float>(so_d);
  const int32_t zo32 = static_cast<int32_t>(zo);
  const float pi = premul(si, zi);
  const bool fma_body = sc.cap != kDefault;
  // The inverse each kernel hands its SIMD quantize.
  float body_inv = 1.0f / so;
  if (op == kHardswish || op == kThreshold) body_inv = static_cast<float>(1.0 / so_d);
  if (op == kHardsigmoid) body_inv = static_cast<float>(1.0 / static_cast<double>(so));
  if (op == kTanh || op == kElu || op == kGelu || op == kGeluTanh) {
    transcendental_t<T>(op, x, n, si, zi, pi, so_d, zo32, arg0, arg1, arg2, out, sc);
    return;
  }
  if (op == kSigmoid) {
    // QuantizedOpKernels.cpp qsigmoid_kernel. Body: (q - zp) * scale, then
    // 1 / (1 + exp(-x)) in float with Vectorized<float>::exp (SLEEF expf_u10
    // under AVX2/AVX512, std::exp under DEFAULT); inverse float(1.0 / so).
    // Tail: float(1.0 / (1.0 + double(std::exp(-x)))).
    const float inv = static_cast<float>(1.0 / so_d);
    ew_drive(
        n, sc,
        [&](int64_t i) {
          const float v = dequantize_val(si, zi, x[i]);
          const float e = sc.cap == kDefault ? std::exp(-v) : sleef_expf_u10(-v);
          out[i] = body_quantize<T>(sc.cap, inv, so, zo32, 1.0f / (1.0f + e));
        },
        [&](int64_t i) {
          const float v = dequantize_val(si, zi, x[i]);
          const float y = static_cast<float>(1.0 / (1.0 + static_cast<double>(std::exp(-v))));
          out[i] = quantize_val<T>(so, zo32, y);
        });
    return;
  }
  auto f = [&](float v) -> float {
    switch (op) {
      case kHardswish:  // qhardswish_kernel: x * clamp(x + 3, 0, 6) / 6
        return v * std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
      case kHardsigmoid:  // qhardsigmoid_kernel: clamp(x + 3, 0, 6) / 6
        return std::min(std::max(v + 3.0f, 0.0f), 6.0f) / 6.0f;
      case kLeakyRelu:  // leaky_qrelu_out_kernel
        return v > 0.0f ? v : v * static_cast<float>(arg0);
      default:  // qthreshold_kernel
        return v > static_cast<float>(arg0) ? v : static_cast<float>(arg1);
    }
  };
  ew_drive(
      n, sc,
      [&](int64_t i) {
        const float v = fma_body ? dequantize_fma(si, pi, x[i]) : dequantize_val(si, zi, x[i]);
        out[i] = body_quantize<T>(sc.cap, body_inv, so, zo32, f(v));
      },
      [&](int64_t i) { out[i] = quantize_val<T>(so, zo32, f(dequantize_val(si, zi, x[i]))); });
}

template <class T>
void add_scalar_t(const T* x, int64_t n, double s, int64_t z, double c, bool relu, T* out, double* out_scale,
                  int64_t* out_zp, const Sched& sc) {
  // BinaryOps.cpp _add_scalar_out: c_q = nearbyint(c / s) in double; the
  // output either keeps the bytes with zero point z - c_q, or takes a new
  // scale and an extreme zero point and requantizes (qadd_scalar_kernel).
  const int64_t qmin = QLim<T>::lo, qmax = QLim<T>::hi;
  const int64_t c_q = static_cast<int64_t>(std::nearbyint(c / s));
  double s_prime;
  int64_t z_prime;
  if (qmin > z - c_q) {
    s_prime = ((static_cast<double>(qmax) - (z - c_q))) / (static_cast<double>(qmax) - qmin) * s;
    z_prime = qmin;
  } else if (qmax < z - c_q) {
    s_prime = (static_cast<double>(z - c_q) - qmin) / (static_cast<double>(qmax) - qmin) * s;
    z_prime = qmax;
  } else {
    *out_scale = s;
    *out_zp = z - c_q;
    const T zt = static_cast<T>(z - c_q);
    for (int64_t i = 0; i < n; ++i) out[i] = relu ? std::max(x[i], zt) : x[i];
    return;
  }
  *out_scale = s_prime;
  *out_zp = z_prime;
  // qadd_scalar_kernel: multiplier = float(s) * (1.0f / float(s'))
  const float inv = 1.0f / static_cast<float>(s_prime);
  const float mult = static_cast<float>(s) * inv;
  const T zt = static_cast<T>(z_prime);
  (void)sc;
  for (int64_t i = 0; i < n; ++i) {
    const int32_t v = static_cast<int32_t>(x[i]) - static_cast<int32_t>(z) + static_cast<int32_t>(c_q);
    T r = requantize_from_int<T>(mult, z_prime, v);
    if (relu) r = std::max(r, zt);
    out[i] = r;
  }
}

template <class T>
void cat_nhwc_t(const void* const* xs, const int64_t* cs, const double* scales, const int64_t* zps, int64_t count,
                int64_t pixels, double scale, int64_t zp, bool relu, T* out, int cap) {
  // QuantizedOpKernels.cpp qcat_nhwc_kernel<ReLUFused>: per pixel and input,
  // a memcpy when the qparams match (and no relu); else SIMD blocks of
  // Vectorized<q>::size() channels, then (measured on torch 2.13 under
  // AVX512) the remaining channels in whole groups of 8 through the same SIMD
  // formula, then scalar channels.
  int64_t c_out = 0;
  for (int64_t t = 0; t < count; ++t) c_out += cs[t];
  const float inv_scale = static_cast<float>(1.0 / scale);
  const float s_out = static_cast<float>(scale);
  const int32_t z_out = static_cast<int32_t>(zp);
  const int64_t vlen = qvec_size(cap), kvlen = 8;

  for (int64_t p = 0; p < pixels; ++p) {
    int64_t c_base = 0;
    for (int64_t t = 0; t < count; ++t) {
      const int64_t C = cs[t];
      const T* ip = static_cast<const T*>(xs[t]) + p * C;
      T* op = out + p * c_out + c_base;
      c_base += C;
      const float cs_f = static_cast<float>(scales[t]);
      const int64_t cz = zps[t];
      if (scales[t] == scale && cz == zp && !relu) {
        std::memcpy(op, ip, static_cast<size_t>(C) * sizeof(T));
        continue;
      }
      const float pre = premul(cs_f, cz);
      auto body = [&](int64_t c) {
        float v = cap == kDefault ? dequantize_val(cs_f, static_cast<int32_t>(cz), ip[c]) : dequantize_fma(cs_f, pre, ip[c]);
        if (relu) v = v > 0.0f ? v : 0.0f;
        op[c] = body_quantize<T>(cap, inv_scale, s_out, z_out, v);
      };
      int64_t c = 0;
      for (; c + vlen <= C; c += vlen)
        for (int64_t j = c; j < c + vlen; ++j) body(j);
      const int64_t rem = C - c;
      if (rem >= kvlen) {
        const int64_t m = rem / kvlen * kvlen;
        for (int64_t j = c; j < c + m; ++j) body(j);
        c += m;
      }
      for (; c < C; ++c) {
        float v = dequantize_val(cs_f, static_cast<int32_t>(cz), ip[c]);
        if (relu) v = std::max(0.0f, v);
        op[c] = quantize_val<T>(s_out, z_out, v);
      }
    }
  }
}

// The in-bounds taps [begin, end) of a dilated pooling window along one axis
// (Pooling.cpp): output index o, stride s, padding p, kernel k, dilation d,
// input size lim.
inline void pool_window(int64_t o, int64_t s, int64_t p, int64_t k, int64_t d, int64_t lim, int64_t* begin,
                        int64_t* end) {
  int64_t b = o * s - p;
  *end = std::min(b + (k - 1) * d + 1, lim);
  while (b < 0) b += d;
  *begin = b;
}

template <class T>
void max_pool2d_t(const T* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                  int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, T* out) {
  // Pooling.cpp spatial_dilated_max_pooling (and the NHWC kernel's same
  // window): max over the in-bounds taps of the dilated window.
  for (int64_t p = 0; p < planes; ++p) {
    const T* ip = x + p * ih * iw;
    T* op = out + p * oh * ow;
    for (int64_t r = 0; r < oh; ++r) {
      int64_t h0, h1;
      pool_window(r, sh, ph, kh, dh, ih, &h0, &h1);
      for (int64_t q = 0; q < ow; ++q) {
        int64_t w0, w1;
        pool_window(q, sw, pw, kw, dw, iw, &w0, &w1);
        T m = std::numeric_limits<T>::lowest();
        for (int64_t y = h0; y < h1; y += dh)
          for (int64_t xx = w0; xx < w1; xx += dw) m = std::max(m, ip[y * iw + xx]);
        op[r * ow + q] = m;
      }
    }
  }
}

template <class T>
void max_pool2d_nhwc_t(const T* x, int64_t n, int64_t ih, int64_t iw, int64_t c, int64_t oh, int64_t ow, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, T* out) {
  // The same window as max_pool2d_t, channels innermost (Pooling.cpp's
  // channels-last kernel): an integer max, so the order of taps does not matter.
  for (int64_t b = 0; b < n; ++b) {
    const T* ip = x + b * ih * iw * c;
    T* op = out + b * oh * ow * c;
    for (int64_t r = 0; r < oh; ++r) {
      int64_t h0, h1;
      pool_window(r, sh, ph, kh, dh, ih, &h0, &h1);
      for (int64_t q = 0; q < ow; ++q) {
        int64_t w0, w1;
        pool_window(q, sw, pw, kw, dw, iw, &w0, &w1);
        T* o = op + (r * ow + q) * c;
        for (int64_t k = 0; k < c; ++k) o[k] = std::numeric_limits<T>::lowest();
        for (int64_t y = h0; y < h1; y += dh)
          for (int64_t xx = w0; xx < w1; xx += dw) {
            const T* t = ip + (y * iw + xx) * c;
            for (int64_t k = 0; k < c; ++k) o[k] = std::max(o[k], t[k]);
          }
      }
    }
  }
}

template <class T>
void avg_pool2d_nchw_t(const T* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t kh,
                       int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool count_include_pad,
                       int64_t divisor_override, double si, int64_t zi, double so, int64_t zo, T* out) {
  // q_avgpool.cpp avg_pool2d_out_frame: int sum minus size * zp, then
  // nearbyint(sum * float(si / so / divide) + zo) in float.
  const double scale_factor = si / so;
  for (int64_t p = 0; p < planes; ++p) {
    const T* ip = x + p * ih * iw;
    T* op = out + p * oh * ow;
    for (int64_t r = 0; r < oh; ++r) {
      for (int64_t q = 0; q < ow; ++q) {
        int64_t h0 = r * sh - ph, w0 = q * sw - pw;
        int64_t h1 = std::min(h0 + kh, ih + ph), w1 = std::min(w0 + kw, iw + pw);
        const int64_t pool_size = (h1 - h0) * (w1 - w0);
        h0 = std::max<int64_t>(h0, 0);
        w0 = std::max<int64_t>(w0, 0);
        h1 = std::min(h1, ih);
        w1 = std::min(w1, iw);
        const int64_t size = (h1 - h0) * (w1 - w0);
        const int64_t divide = divisor_override ? divisor_override : (count_include_pad ? pool_size : size);
        int32_t sum_int = 0;
        for (int64_t y = h0; y < h1; ++y)
          for (int64_t xx = w0; xx < w1; ++xx) sum_int += ip[y * iw + xx];
        const float multiplier = static_cast<float>(scale_factor / static_cast<double>(divide));
        sum_int -= static_cast<int32_t>(size * zi);
        const float sum = static_cast<float>(sum_int);
        const int32_t v = static_cast<int32_t>(std::nearbyint(sum * multiplier + static_cast<float>(zo)));
        op[r * ow + q] = static_cast<T>(std::min<int32_t>(std::max<int32_t>(v, QLim<T>::lo), QLim<T>::hi));
      }
    }
  }
}

template <class T>
void avg_pool_nhwc_t(const T* x, int64_t batch, int64_t C, int64_t id, int64_t ih, int64_t iw, int64_t od, int64_t oh,
                     int64_t ow, int64_t kd, int64_t kh, int64_t kw, int64_t sd, int64_t sh, int64_t sw, int64_t pd,
                     int64_t ph, int64_t pw, bool count_include_pad, int64_t divisor_override, double si_d,
                     int64_t zi, double so_d, int64_t zo, T* out, int cap) {
  // QuantizedOpKernels.cpp _qavg_pool_nhwc_kernel: multiplier = si / so /
  // divide in float; SIMD channel blocks (do_avg_pool_nhwc_on_AVX_n) quantize
  // with x * multiplier, the scalar channels with quantize_val(1 / multiplier).
  const float si = static_cast<float>(si_d), so = static_cast<float>(so_d);
  const int64_t vw = cap == kDefault ? 0 : fvec_size(cap);
  const int64_t c_vec = vw ? C / vw * vw : 0;
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t a = 0; a < od; ++a)
      for (int64_t r = 0; r < oh; ++r)
        for (int64_t q = 0; q < ow; ++q) {
          int64_t d0 = a * sd - pd, h0 = r * sh - ph, w0 = q * sw - pw;
          int64_t d1 = std::min(d0 + kd, id + pd), h1 = std::min(h0 + kh, ih + ph), w1 = std::min(w0 + kw, iw + pw);
          const int64_t pool_size = (d1 - d0) * (h1 - h0) * (w1 - w0);
          d0 = std::max<int64_t>(d0, 0);
          h0 = std::max<int64_t>(h0, 0);
          w0 = std::max<int64_t>(w0, 0);
          d1 = std::min(d1, id);
          h1 = std::min(h1, ih);
          w1 = std::min(w1, iw);
          const int64_t size = (d1 - d0) * (h1 - h0) * (w1 - w0);
          const int64_t divide = divisor_override ? divisor_override : (count_include_pad ? pool_size : size);
          const float multiplier = si / so / static_cast<float>(divide);
          const int32_t acc0 = static_cast<int32_t>(-zi * size);
          const T* ip = x + b * id * ih * iw * C;
          T* op = out + (((b * od + a) * oh + r) * ow + q) * C;
          for (int64_t c = 0; c < C; ++c) {
            int32_t acc = acc0;
            for (int64_t dd = d0; dd < d1; ++dd)
              for (int64_t y = h0; y < h1; ++y)
                for (int64_t xx = w0; xx < w1; ++xx) acc += ip[((dd * ih + y) * iw + xx) * C + c];
            op[c] = c < c_vec ? quantize_lane<T>(multiplier, static_cast<int32_t>(zo), static_cast<float>(acc))
                              : quantize_val<T>(1.0f / multiplier, static_cast<int32_t>(zo), static_cast<float>(acc));
          }
        }
}

inline int64_t start_index(int64_t o, int64_t olen, int64_t ilen) {
  return static_cast<int64_t>(std::floor(static_cast<float>(o * ilen) / static_cast<float>(olen)));
}
inline int64_t end_index(int64_t o, int64_t olen, int64_t ilen) {
  return static_cast<int64_t>(std::ceil(static_cast<float>((o + 1) * ilen) / static_cast<float>(olen)));
}

template <class T>
void adaptive_avg_pool_nchw_t(const T* x, int64_t planes, int64_t id, int64_t ih, int64_t iw, int64_t od, int64_t oh,
                              int64_t ow, T* out) {
  // AdaptiveAveragePooling.cpp adaptive_avg_pool_single_out_frame:
  // nearbyint(float(sum) * (((float)(1.0 / kD) / kH) / kW)), no clamp.
  for (int64_t p = 0; p < planes; ++p) {
    const T* ip = x + p * id * ih * iw;
    for (int64_t a = 0; a < od; ++a) {
      const int64_t d0 = start_index(a, od, id), kD = end_index(a, od, id) - d0;
      const float kDr = static_cast<float>(1.0 / static_cast<double>(kD));
      for (int64_t r = 0; r < oh; ++r) {
        const int64_t h0 = start_index(r, oh, ih), kH = end_index(r, oh, ih) - h0;
        const float kDHr = kDr / static_cast<float>(kH);
        for (int64_t q = 0; q < ow; ++q) {
          const int64_t w0 = start_index(q, ow, iw), kW = end_index(q, ow, iw) - w0;
          const float kDHWr = kDHr / static_cast<float>(kW);
          int64_t sum = 0;
          for (int64_t dd = 0; dd < kD; ++dd)
            for (int64_t y = 0; y < kH; ++y)
              for (int64_t xx = 0; xx < kW; ++xx) sum += ip[((d0 + dd) * ih + h0 + y) * iw + w0 + xx];
          out[((p * od + a) * oh + r) * ow + q] =
              static_cast<T>(static_cast<int32_t>(std::nearbyint(static_cast<float>(sum) * kDHWr)));
        }
      }
    }
  }
}

template <class T>
void adaptive_avg_pool_nhwc_t(const T* x, int64_t batch, int64_t C, int64_t id, int64_t ih, int64_t iw, int64_t od,
                              int64_t oh, int64_t ow, double si_d, int64_t zi, double so_d, int64_t zo, T* out,
                              int cap) {
    // QuantizedOpKernels.cpp _qadaptive_avg_pool_kernel: int sum with -zp*size,
  // quantized with scale 1 / multiplier. Measured on torch 2.13: under
  // AVX2/AVX512 every channel, SIMD block or not, rounds the fma
  // nearbyint(fma(acc, 1 / (1 / multiplier), zp)); under DEFAULT every
  // channel takes quantize_val (no fma).
  const float si = static_cast<float>(si_d), so = static_cast<float>(so_d);
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t a = 0; a < od; ++a) {
      const int64_t d0 = start_index(a, od, id), kD = end_index(a, od, id) - d0;
      for (int64_t r = 0; r < oh; ++r) {
        const int64_t h0 = start_index(r, oh, ih), kH = end_index(r, oh, ih) - h0;
        for (int64_t q = 0; q < ow; ++q) {
          const int64_t w0 = start_index(q, ow, iw), kW = end_index(q, ow, iw) - w0;
          const int64_t size = kD * kH * kW;
          const float multiplier = si / so / static_cast<float>(size);
          const T* ip = x + b * id * ih * iw * C;
          T* op = out + (((b * od + a) * oh + r) * ow + q) * C;
          for (int64_t c = 0; c < C; ++c) {
            int32_t acc = static_cast<int32_t>(-zi * size);
            for (int64_t dd = 0; dd < kD; ++dd)
              for (int64_t y = 0; y < kH; ++y)
                for (int64_t xx = 0; xx < kW; ++xx) acc += ip[(((d0 + dd) * ih + h0 + y) * iw + w0 + xx) * C + c];
            const float sc = 1.0f / multiplier;
            op[c] = cap == kDefault ? quantize_val<T>(sc, static_cast<int32_t>(zo), static_cast<float>(acc))
                                    : quantize_legacy<T>(1.0f / sc, static_cast<int32_t>(zo), static_cast<float>(acc));
          }
        }
      }
    }
}

// UpSample.h compute_scales_value<float> / nearest_idx /
// area_pixel_compute_scale / area_pixel_compute_source_index.
inline float scales_value(double scale, int64_t in, int64_t out) {
  return scale > 0 ? static_cast<float>(1.0 / scale) : static_cast<float>(in) / static_cast<float>(out);
}
inline int64_t nearest_idx(int64_t o, int64_t in, int64_t out, double scale) {
  if (out == in) return o;
  if (out == 2 * in) return o >> 1;
  const float s = scales_value(scale, in, out);
  return std::min(static_cast<int64_t>(std::floor(static_cast<float>(o) * s)), in - 1);
}
inline float area_scale(int64_t in, int64_t out, bool align_corners, double scale) {
  if (align_corners) return out > 1 ? static_cast<float>(in - 1) / static_cast<float>(out - 1) : 0.0f;
  return scales_value(scale, in, out);
}
inline float area_src(float scale, int64_t dst, bool align_corners, bool contracted) {
  if (align_corners) return scale * static_cast<float>(dst);
  const float src = contracted ? std::fma(scale, static_cast<float>(dst) + 0.5f, -0.5f)
                               : scale * (static_cast<float>(dst) + 0.5f) - 0.5f;
  return src < 0.0f ? 0.0f : src;
}

template <class T>
void upsample_nearest2d_t(const T* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, double sh,
                          double sw, T* out) {
  std::vector<int64_t> wi(static_cast<size_t>(ow));
  for (int64_t q = 0; q < ow; ++q) wi[q] = nearest_idx(q, iw, ow, sw);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t r = 0; r < oh; ++r) {
      const int64_t y = nearest_idx(r, ih, oh, sh);
      for (int64_t q = 0; q < ow; ++q) out[(p * oh + r) * ow + q] = x[(p * ih + y) * iw + wi[q]];
    }
}

template <class T>
void upsample_bilinear2d_t(const T* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                           bool align_corners, double sh, double sw, double si, int64_t zi, double so, int64_t zo,
                           T* out, bool contracted) {
  // UpSampleBilinear2d.cpp upsample_bilinear2d_out_frame: float lambdas,
  // result minus float(zi), then quantize_val(float(so / si), zo, result).
  // The channels_last kernel (QuantizedOpKernels.cpp
  // qupsample_bilinear2d_nhwc_kernel) lives in the per-capability
  // translation unit, which the compiler builds with -mfma and contracts:
  // measured on torch 2.13 (AVX512), every channel matches
  // fma(h1, fma(w1, p3, w0 * p2), h0 * fma(w1, p1, w0 * p0)) - zi, with
  // source indices fma(scale, dst + 0.5, -0.5).
  if (ih == oh && iw == ow) {
    std::memcpy(out, x, static_cast<size_t>(planes * ih * iw) * sizeof(T));
    return;
  }
  const float rh = area_scale(ih, oh, align_corners, sh), rw = area_scale(iw, ow, align_corners, sw);
  const float oscale = static_cast<float>(so / si);
  const float zf = static_cast<float>(zi);
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t r = 0; r < oh; ++r) {
      const float h1r = area_src(rh, r, align_corners, contracted);
      const int64_t h1 = static_cast<int64_t>(h1r);
      const int64_t h1p = h1 < ih - 1 ? 1 : 0;
      const float h1l = h1r - static_cast<float>(h1), h0l = 1.0f - h1l;
      for (int64_t q = 0; q < ow; ++q) {
        const float w1r = area_src(rw, q, align_corners, contracted);
        const int64_t w1 = static_cast<int64_t>(w1r);
        const int64_t w1p = w1 < iw - 1 ? 1 : 0;
        const float w1l = w1r - static_cast<float>(w1), w0l = 1.0f - w1l;
        const T* p1 = x + (p * ih + h1) * iw + w1;
        const float a0 = static_cast<float>(p1[0]), a1 = static_cast<float>(p1[w1p]);
        const float a2 = static_cast<float>(p1[h1p * iw]), a3 = static_cast<float>(p1[h1p * iw + w1p]);
        const float res = contracted ? std::fma(h1l, std::fma(w1l, a3, w0l * a2), h0l * std::fma(w1l, a1, w0l * a0)) - zf
                                     : h0l * (w0l * a0 + w1l * a1) + h1l * (w0l * a2 + w1l * a3) - zf;
        out[(p * oh + r) * ow + q] = quantize_val<T>(oscale, static_cast<int32_t>(zo), res);
      }
    }
}

template <class T>
void batch_norm_t(const T* x, int64_t pixels, int64_t C, const float* weight, const float* bias, const float* mean,
                  const float* var, double eps, double si, int64_t zi, double so, int64_t zo, bool relu, T* out,
                  int cap) {
  // Normalization.cpp compute_fused_params (generic translation unit):
  // inv_sigma = float(1.0 / sqrtf(var + float(eps))), alpha and beta rounded
  // from double.
  std::vector<float> alpha(static_cast<size_t>(C)), beta(static_cast<size_t>(C));
  for (int64_t c = 0; c < C; ++c) {
    const float inv_sigma = static_cast<float>(1.0 / static_cast<double>(std::sqrt(var[c] + static_cast<float>(eps))));
    const float w = weight ? weight[c] : 1.0f;
    const float b = bias ? bias[c] : 0.0f;
    alpha[c] = static_cast<float>(static_cast<double>(inv_sigma * w) * (si / so));
    beta[c] = static_cast<float>(static_cast<double>(b - mean[c] * inv_sigma * w) / so);
  }
  // QuantizedOpKernels.cpp q_batch_norm_kernel<ReluFused> on the NHWC data:
  // SIMD blocks of float_num_vecs * Vectorized<float>::size() channels
  // (64 AVX512, 32 AVX2 / DEFAULT; AVX2 / DEFAULT then one block of whole
  // 8-float vectors), scalar channels after. AVX2/AVX512 bodies use fma and
  // lanes rint(v) + zo; their scalar channels are compiled with -mfma and
  // contracted (fma). DEFAULT: alpha * x + beta in two roundings, then
  // quantize_vec's legacy lanes (body) or lrintf + zo (scalar).
  const int64_t lanes = cap == kAvx512 ? 64 : 32;
  const int64_t c_body_full = C / lanes * lanes;
  const int64_t rem = C - c_body_full;
  const int64_t c_body = (lanes == 32 && rem >= 8) ? c_body_full + rem / 8 * 8 : c_body_full;
  const T zt = static_cast<T>(zo);
  for (int64_t p = 0; p < pixels; ++p) {
    const T* ip = x + p * C;
    T* op = out + p * C;
    for (int64_t c = 0; c < C; ++c) {
      const float v = static_cast<float>(static_cast<int32_t>(ip[c]) - static_cast<int32_t>(zi));
      T r;
      if (c < c_body) {
        if (cap == kDefault) {
          r = quantize_legacy<T>(1.0f, static_cast<int32_t>(zo), alpha[c] * v + beta[c]);
        } else {
          r = quantize_lane<T>(1.0f, static_cast<int32_t>(zo), std::fma(alpha[c], v, beta[c]));
        }
      } else {
        const float y = cap == kDefault ? alpha[c] * v + beta[c] : std::fma(alpha[c], v, beta[c]);
        const int64_t q = zo + static_cast<int64_t>(std::lrintf(y));
        r = static_cast<T>(std::min<int64_t>(std::max<int64_t>(q, QLim<T>::lo), QLim<T>::hi));
      }
      if (relu) r = std::max(r, zt);
      op[c] = r;
    }
  }
}

template <class T>
void normalize_t(const T* x, int64_t M, int64_t N, const float* gamma, const float* beta, bool per_channel,
                 int64_t num_channels, int64_t num_groups, double eps, double xs_d, int64_t xz, double ys_d, int64_t yz,
                 T* out, int cap) {
  // QuantizedOpKernels.cpp quantized_normalize_kernel (layer_norm; group_norm
  // and instance_norm with per-channel affine). Integer sums, float
  // statistics; under AVX2/AVX512 the compiler contracts a - b * c and
  // u * g + b into fma (measured), under DEFAULT it does not.
  const bool fma_on = cap != kDefault;
  const float xs = static_cast<float>(xs_d), ys = static_cast<float>(ys_d);
  const float y_inv = 1.0f / ys;
  const int32_t yz32 = static_cast<int32_t>(yz);
  const int64_t kint = cap == kAvx512 ? 64 : 32;
  auto q_body = [&](float v) { return body_quantize<T>(cap, y_inv, ys, yz32, v); };
  const int64_t cpg = per_channel ? num_channels / num_groups : 1;
  const int64_t n_per_ch = per_channel ? N / cpg : N;
  for (int64_t i = 0; i < M; ++i) {
    const T* xp = x + i * N;
    T* yp = out + i * N;
    int64_t sum = 0, sum_sq = 0;
    for (int64_t j = 0; j < N; ++j) {
      sum += xp[j];
      sum_sq += static_cast<int64_t>(xp[j]) * xp[j];
    }
    const float mean_shifted = static_cast<float>(sum) / static_cast<float>(N);
    const float mean = mean_shifted - static_cast<float>(xz);
    const float ex2 = static_cast<float>(sum_sq) / static_cast<float>(N);
    const float var0 = fma_on ? std::fma(-mean_shifted, mean_shifted, ex2) : ex2 - mean_shifted * mean_shifted;
    const float var = std::max(var0, 0.0f);
    const float inv_std = static_cast<float>(
        static_cast<double>(xs) / std::sqrt(static_cast<double>(var * xs * xs) + eps));
    if (per_channel) {
      for (int64_t ch = 0; ch < cpg; ++ch) {
        const int64_t si = (i * cpg + ch) % num_channels;
        const float g = gamma ? gamma[si] : 1.0f;
        const float gp = inv_std * g;
        const float b = beta ? beta[si] : 0.0f;
        for (int64_t j = ch * n_per_ch; j < (ch + 1) * n_per_ch; ++j) {
          const float dq = static_cast<float>(static_cast<int32_t>(xp[j]) - static_cast<int32_t>(xz));
          const float u = dq - mean;
          yp[j] = q_body(fma_on ? std::fma(u, gp, b) : u * gp + b);
        }
      }
    } else {
      const int64_t n_body = N / kint * kint;
      for (int64_t j = 0; j < N; ++j) {
        const float g = gamma ? gamma[j] : 1.0f;
        const float b = beta ? beta[j] : 0.0f;
        const float dq = static_cast<float>(static_cast<int32_t>(xp[j]) - static_cast<int32_t>(xz));
        const float t = (dq - mean) * inv_std;
        const float y = fma_on ? std::fma(t, g, b) : t * g + b;
        yp[j] = j < n_body ? q_body(y) : quantize_val<T>(ys, yz32, y);
      }
    }
  }
}

}  // namespace

#define QREF_ATEN_DISPATCH(s8, ...)  \
  do {                               \
    if (s8) {                        \
      using T = int8_t;              \
      __VA_ARGS__;                   \
    } else {                         \
      using T = uint8_t;             \
      __VA_ARGS__;                   \
    }                                \
  } while (0)

void quantize_per_tensor(const float* x, int64_t n, double scale, int64_t zp, bool s8, void* out, int num_threads) {
  (void)num_threads;
  QREF_ATEN_DISPATCH(s8, quantize_per_tensor_t<T>(x, n, scale, zp, static_cast<T*>(out)));
}

void quantize_per_channel(const float* x, int64_t outer, int64_t channels, int64_t inner, const double* scales,
                          const int64_t* zps, bool s8, void* out) {
  // QuantizedOpKernels.cpp quantize_tensor_per_channel_impl: quantize_val per
  // element with its channel's (float) scale and zero point.
  QREF_ATEN_DISPATCH(s8, {
    T* o = static_cast<T*>(out);
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) {
        const float s = static_cast<float>(scales[c]);
        const int32_t z = static_cast<int32_t>(zps[c]);
        const int64_t base = (a * channels + c) * inner;
        for (int64_t i = 0; i < inner; ++i) o[base + i] = quantize_val<T>(s, z, x[base + i]);
      }
  });
}

void dequantize_per_tensor(const void* q, int64_t n, double scale, int64_t zp, bool s8, float* out) {
  QREF_ATEN_DISPATCH(s8, {
    const T* v = static_cast<const T*>(q);
    const float s = static_cast<float>(scale);
    for (int64_t i = 0; i < n; ++i) out[i] = dequantize_val(s, static_cast<int32_t>(zp), v[i]);
  });
}

void dequantize_per_channel(const void* q, int64_t outer, int64_t channels, int64_t inner, const double* scales,
                            const int64_t* zps, bool s8, float* out) {
  // QuantizedOpKernels.cpp dequantize_per_channel_affine_kernel: measured
  // (q - zp) * scale with the double scale, rounded once to float.
  QREF_ATEN_DISPATCH(s8, {
    const T* v = static_cast<const T*>(q);
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) {
        const double s = scales[c];
        const int64_t z = zps[c];
        const int64_t base = (a * channels + c) * inner;
        for (int64_t i = 0; i < inner; ++i)
          out[base + i] = static_cast<float>(static_cast<double>(static_cast<int64_t>(v[base + i]) - z) * s);
      }
  });
}

void binary(int op, const void* a, const void* b, int64_t n, double sa, int64_t za, double sb, int64_t zb, double so,
            int64_t zo, bool s8, void* out, Sched sched) {
  QREF_ATEN_DISPATCH(s8, binary_t<T>(op, static_cast<const T*>(a), static_cast<const T*>(b), n, sa, za, sb, zb, so, zo,
                                     static_cast<T*>(out), sched));
}

void unary(int op, const void* x, int64_t n, double si, int64_t zi, double so, int64_t zo, double arg0, double arg1,
           double arg2, bool s8, void* out, Sched sched) {
  QREF_ATEN_DISPATCH(s8, unary_t<T>(op, static_cast<const T*>(x), n, si, zi, so, zo, arg0, arg1, arg2,
                                    static_cast<T*>(out), sched));
}

void clamp(const void* x, int64_t n, double scale, int64_t zp, bool has_lo, double lo, bool has_hi, double hi, bool s8,
           void* out) {
  // QuantizedOpKernels.cpp qclamp_kernel / qclamp_min_kernel /
  // qclamp_max_kernel (relu6: the same with [0, 6]).
  QREF_ATEN_DISPATCH(s8, {
    const T* v = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const float s = static_cast<float>(scale);
    const T qlo = has_lo ? quantize_val<T>(s, static_cast<int32_t>(zp), static_cast<float>(lo))
                         : std::numeric_limits<T>::lowest();
    const T qhi = has_hi ? quantize_val<T>(s, static_cast<int32_t>(zp), static_cast<float>(hi))
                         : std::numeric_limits<T>::max();
    for (int64_t i = 0; i < n; ++i) o[i] = std::min(std::max(v[i], qlo), qhi);
  });
}

void add_scalar(const void* x, int64_t n, double scale, int64_t zp, double c, bool relu, bool s8, void* out,
                double* out_scale, int64_t* out_zp, Sched sched) {
  QREF_ATEN_DISPATCH(s8, add_scalar_t<T>(static_cast<const T*>(x), n, scale, zp, c, relu, static_cast<T*>(out),
                                         out_scale, out_zp, sched));
}

void cat_nhwc(const void* const* xs, const int64_t* cs, const double* scales, const int64_t* zps, int64_t count,
              int64_t pixels, double scale, int64_t zp, bool relu, bool s8, void* out, int cap) {
  QREF_ATEN_DISPATCH(s8, cat_nhwc_t<T>(xs, cs, scales, zps, count, pixels, scale, zp, relu, static_cast<T*>(out), cap));
}

void max_pool2d(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool s8, void* out) {
  QREF_ATEN_DISPATCH(s8, max_pool2d_t<T>(static_cast<const T*>(x), planes, ih, iw, oh, ow, kh, kw, sh, sw, ph, pw, dh,
                                         dw, static_cast<T*>(out)));
}

void max_pool2d_nhwc(const void* x, int64_t n, int64_t ih, int64_t iw, int64_t c, int64_t oh, int64_t ow, int64_t kh,
                     int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool s8,
                     void* out) {
  QREF_ATEN_DISPATCH(s8, max_pool2d_nhwc_t<T>(static_cast<const T*>(x), n, ih, iw, c, oh, ow, kh, kw, sh, sw, ph, pw,
                                              dh, dw, static_cast<T*>(out)));
}

void avg_pool2d_nchw(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t kh,
                     int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool count_include_pad,
                     int64_t divisor_override, double si, int64_t zi, double so, int64_t zo, bool s8, void* out) {
  QREF_ATEN_DISPATCH(s8, avg_pool2d_nchw_t<T>(static_cast<const T*>(x), planes, ih, iw, oh, ow, kh, kw, sh, sw, ph, pw,
                                              count_include_pad, divisor_override, si, zi, so, zo,
                                              static_cast<T*>(out)));
}

void avg_pool_nhwc(const void* x, int64_t batch, int64_t channels, int64_t id, int64_t ih, int64_t iw, int64_t od,
                   int64_t oh, int64_t ow, int64_t kd, int64_t kh, int64_t kw, int64_t sd, int64_t sh, int64_t sw,
                   int64_t pd, int64_t ph, int64_t pw, bool count_include_pad, int64_t divisor_override, double si,
                   int64_t zi, double so, int64_t zo, bool s8, void* out, int cap) {
  QREF_ATEN_DISPATCH(s8, avg_pool_nhwc_t<T>(static_cast<const T*>(x), batch, channels, id, ih, iw, od, oh, ow, kd, kh,
                                            kw, sd, sh, sw, pd, ph, pw, count_include_pad, divisor_override, si, zi,
                                            so, zo, static_cast<T*>(out), cap));
}

void adaptive_avg_pool_nchw(const void* x, int64_t planes, int64_t id, int64_t ih, int64_t iw, int64_t od, int64_t oh,
                            int64_t ow, bool s8, void* out) {
  QREF_ATEN_DISPATCH(s8, adaptive_avg_pool_nchw_t<T>(static_cast<const T*>(x), planes, id, ih, iw, od, oh, ow,
                                                     static_cast<T*>(out)));
}

void adaptive_avg_pool_nhwc(const void* x, int64_t batch, int64_t channels, int64_t id, int64_t ih, int64_t iw,
                            int64_t od, int64_t oh, int64_t ow, double si, int64_t zi, double so, int64_t zo, bool s8,
                            void* out, int cap) {
  QREF_ATEN_DISPATCH(s8, adaptive_avg_pool_nhwc_t<T>(static_cast<const T*>(x), batch, channels, id, ih, iw, od, oh, ow,
                                                     si, zi, so, zo, static_cast<T*>(out), cap));
}

void mean_inner(const void* x, int64_t outer, int64_t inner, bool s8, void* out) {
  // QuantizedOpKernels.cpp qmean_inner_dim_kernel: hsum, float(sum) / N,
  // nearbyint (output keeps the input's qparams).
  QREF_ATEN_DISPATCH(s8, {
    const T* v = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    for (int64_t r = 0; r < outer; ++r) {
      int64_t sum = 0;
      for (int64_t i = 0; i < inner; ++i) sum += v[r * inner + i];
      const float y = static_cast<float>(sum) / static_cast<float>(inner);
      o[r] = static_cast<T>(static_cast<int32_t>(std::nearbyint(y)));
    }
  });
}

void upsample_nearest2d(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, double scale_h,
                        double scale_w, bool s8, void* out) {
  QREF_ATEN_DISPATCH(s8, upsample_nearest2d_t<T>(static_cast<const T*>(x), planes, ih, iw, oh, ow, scale_h, scale_w,
                                                 static_cast<T*>(out)));
}

void upsample_bilinear2d(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                         bool align_corners, double scale_h, double scale_w, double si, int64_t zi, double so,
                         int64_t zo, bool s8, void* out, bool contracted) {
  QREF_ATEN_DISPATCH(s8, upsample_bilinear2d_t<T>(static_cast<const T*>(x), planes, ih, iw, oh, ow, align_corners,
                                                  scale_h, scale_w, si, zi, so, zo, static_cast<T*>(out), contracted));
}

void batch_norm_nhwc(const void* x, int64_t pixels, int64_t channels, const float* weight, const float* bias,
                     const float* mean, const float* var, double eps, double si, int64_t zi, double so, int64_t zo,
                     bool relu, bool s8, void* out, int cap) {
  QREF_ATEN_DISPATCH(s8, batch_norm_t<T>(static_cast<const T*>(x), pixels, channels, weight, bias, mean, var, eps, si,
                                         zi, so, zo, relu, static_cast<T*>(out), cap));
}

void normalize(const void* x, int64_t M, int64_t N, const float* gamma, const float* beta, bool per_channel,
               int64_t num_channels, int64_t num_groups, double eps, double xs, int64_t xz, double ys, int64_t yz,
               bool s8, void* out, int cap) {
  QREF_ATEN_DISPATCH(s8, normalize_t<T>(static_cast<const T*>(x), M, N, gamma, beta, per_channel, num_channels,
                                        num_groups, eps, xs, xz, ys, yz, static_cast<T*>(out), cap));
}

void mul_scalar(const void* x, int64_t n, double scale, int64_t zp, double c, bool relu, bool s8, void* out,
                double* out_scale, int64_t* out_zp) {
  // BinaryOps.cpp _mul_scalar_out: c > 0 keeps the bytes (scale c * s; relu
  // max(q, z)); c == 0 gives zeros with scale 1, zero point 0; c < 0 mirrors
  // the bytes (q' = qmax + qmin - q, zero point qmax - (z - qmin), scale
  // |c| * s; relu max(q', z')).
  QREF_ATEN_DISPATCH(s8, {
    const T* v = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    const int64_t qmin = QLim<T>::lo, qmax = QLim<T>::hi;
    if (c > 0.0) {
      *out_scale = c * scale;
      *out_zp = zp;
      const T zt = static_cast<T>(zp);
      for (int64_t i = 0; i < n; ++i) o[i] = relu ? std::max(v[i], zt) : v[i];
    } else if (c == 0.0) {
      *out_scale = 1.0;
      *out_zp = 0;
      for (int64_t i = 0; i < n; ++i) o[i] = 0;
    } else {
      *out_scale = std::fabs(c) * scale;
      *out_zp = qmax - (zp - qmin);
      const T zt = static_cast<T>(*out_zp);
      for (int64_t i = 0; i < n; ++i) {
        T r = static_cast<T>(qmax + qmin - static_cast<int64_t>(v[i]));
        if (relu) r = std::max(r, zt);
        o[i] = r;
      }
    }
  });
}

void prelu(const void* x, int64_t outer, int64_t channels, int64_t inner, const void* w, double si, int64_t zi,
           double sw_d, int64_t zw, double so_d, int64_t zo, bool s8, void* out) {
  // QuantizedOpKernels.cpp qprelu_out_kernel: integer products with the
  // quantized weight and the quantized 1.0 (quantize_val(w_scale, w_zp, 1)),
  // requantize_from_int with multiplier si * sw * (1 / so) in float.
  QREF_ATEN_DISPATCH(s8, {
    const T* v = static_cast<const T*>(x);
    const T* wq = static_cast<const T*>(w);
    T* o = static_cast<T*>(out);
    const float sw = static_cast<float>(sw_d), so = static_cast<float>(so_d);
    const float multiplier = static_cast<float>(si) * sw * (1.0f / so);
    const int32_t one_sub = static_cast<int32_t>(quantize_val<T>(sw, static_cast<int32_t>(zw), 1.0f)) -
                            static_cast<int32_t>(zw);
    const int32_t izp = static_cast<int32_t>(zi);
    for (int64_t a = 0; a < outer; ++a)
      for (int64_t c = 0; c < channels; ++c) {
        const int32_t w_sub = static_cast<int32_t>(wq[c]) - static_cast<int32_t>(zw);
        const int64_t base = (a * channels + c) * inner;
        for (int64_t i = 0; i < inner; ++i) {
          const int32_t q = v[base + i];
          const int32_t pos = std::max(q, izp) - izp, neg = std::min(q, izp) - izp;
          o[base + i] = requantize_from_int<T>(multiplier, zo, pos * one_sub + neg * w_sub);
        }
      }
  });
}


void softmax_lastdim(const void* x, int64_t rows, int64_t n, double si, int64_t zi, double so, int64_t zo, bool s8,
                     void* out, int cap) {
  // qsoftmax.cpp (non-QNNPACK engines): quantize_per_tensor(qx.dequantize().softmax(dim)).
  // The float softmax over the last dim is SoftMaxKernel.cpp _vec_softmax_lastdim: max,
  // exp(x - max) with Vectorized<float>::exp (SLEEF expf_u10 / std::exp under DEFAULT), the sum
  // by vec::reduce_all (whole vectors accumulated lane-wise, a partial last vector merged into its
  // lanes, then the lanes combined: a halving tree under AVX2/AVX512, in lane order under
  // DEFAULT; rows shorter than a vector are summed in order), then x * (1 / sum). Measured on
  // torch 2.13 against torch.softmax under every capability.
  const float s_in = static_cast<float>(si);
  const int32_t z_in = static_cast<int32_t>(zi);
  const float inv_out = 1.0f / static_cast<float>(so);
  const int32_t z_out = static_cast<int32_t>(zo);
  const int64_t V = fvec_size(cap);
  std::vector<float> e(static_cast<size_t>(n)), acc(static_cast<size_t>(V));
  QREF_ATEN_DISPATCH(s8, {
    const T* q = static_cast<const T*>(x);
    T* o = static_cast<T*>(out);
    for (int64_t r = 0; r < rows; ++r) {
      const T* qr = q + r * n;
      float mx = -std::numeric_limits<float>::infinity();
      for (int64_t i = 0; i < n; ++i) mx = std::max(mx, dequantize_val(s_in, z_in, qr[i]));
      for (int64_t i = 0; i < n; ++i) {
        const float d = dequantize_val(s_in, z_in, qr[i]) - mx;
        e[i] = cap == kDefault ? std::exp(d) : sleef_expf_u10(d);
      }
      float sum;
      if (n < V) {
        sum = e[0];
        for (int64_t i = 1; i < n; ++i) sum = sum + e[i];
      } else {
        for (int64_t l = 0; l < V; ++l) acc[l] = e[l];
        int64_t d = V;
        for (; d < n - (n % V); d += V)
          for (int64_t l = 0; l < V; ++l) acc[l] = acc[l] + e[d + l];
        for (int64_t l = 0; d + l < n; ++l) acc[l] = acc[l] + e[d + l];
        if (cap == kDefault) {
          sum = acc[0];
          for (int64_t l = 1; l < V; ++l) sum = sum + acc[l];
        } else {
          for (int64_t w = V / 2; w >= 1; w /= 2)
            for (int64_t l = 0; l < w; ++l) acc[l] = acc[l] + acc[l + w];
          sum = acc[0];
        }
      }
      const float inv = 1.0f / sum;
      for (int64_t i = 0; i < n; ++i) o[r * n + i] = quantize_legacy<T>(inv_out, z_out, e[i] * inv);
    }
  });
}

void choose_qparams(float min, float max, int32_t qmin, int32_t qmax, bool reduce_range, double* scale_out,
                    int32_t* zp_out) {
  // ATen quant_utils.h ChooseQuantizationParams (preserve_sparsity and
  // force_scale_power_of_two false, as the dynamic linear calls it).
  if (reduce_range) {
    qmin = qmin / 2;
    qmax = qmax / 2;
  }
  min = std::min(min, 0.0f);
  max = std::max(max, 0.0f);
  double scale = (static_cast<double>(max) - min) / (qmax - qmin);
  if (static_cast<float>(scale) == 0.0f || std::isinf(1.0f / static_cast<float>(scale))) scale = 0.1;
  constexpr float kSmall = 6.1e-5f;  // SMALL_SCALE_THRESHOLD
  if (scale < kSmall) {
    const float org_scale = static_cast<float>(scale);
    scale = kSmall;
    if (min == 0.0f) {
      max = kSmall * static_cast<float>(qmax - qmin);
    } else if (max == 0.0f) {
      min = -kSmall * static_cast<float>(qmax - qmin);
    } else {
      const float amplifier = kSmall / org_scale;
      min *= amplifier;
      max *= amplifier;
    }
  }
  const double zp_from_min = qmin - min / scale;
  const double zp_from_max = qmax - max / scale;
  const double err_min = std::abs(qmin) - std::abs(min / scale);
  const double err_max = std::abs(qmax) - std::abs(max / scale);
  const double initial = err_min < err_max ? zp_from_min : zp_from_max;
  int32_t nudged;
  if (initial < qmin) {
    nudged = qmin;
  } else if (initial > qmax) {
    nudged = qmax;
  } else {
    nudged = static_cast<int32_t>(std::nearbyint(initial));
  }
  *scale_out = scale;
  *zp_out = nudged;
}

void linear_dynamic(const float* x, int64_t M, int64_t K, const int8_t* w, int64_t N, const float* w_scales,
                    const int32_t* w_zps, bool per_channel, const float* bias, bool reduce_range, bool relu,
                    float* out, double* x_scale, int32_t* x_zp) {
  // fbgemm::FindMinMax over the whole input, ChooseQuantizationParams into
  // uint8 (reduce_range: 7 bits), PackAWithQuantRowOffset quantizes with
  // fbgemm::Quantize<uint8_t> (legacy: rint(fma(x, 1/scale, zp))), the int8
  // GEMM is exact in int32, and ReQuantizeForFloat's AVX2/AVX512 path
  // (QuantUtilsAvx2.cc requantizeForFloatAvx2) gives
  //   fma(float(acc - zp_x * col_offset - row_offset * zp_w), x_scale * w_scale, bias)
  // with the scale product rounded to float first, then max(0, .) for relu.
  float mn = 0.0f, mx = 0.0f;
  if (M * K > 0) {
    mn = mx = x[0];
    for (int64_t i = 1; i < M * K; ++i) {
      mn = std::min(mn, x[i]);
      mx = std::max(mx, x[i]);
    }
  }
  double sd;
  int32_t zp;
  choose_qparams(mn, mx, 0, 255, reduce_range, &sd, &zp);
  *x_scale = sd;
  *x_zp = zp;
  const float s = static_cast<float>(sd);
  const float inv = 1.0f / s;
  std::vector<int32_t> qa(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    const float* xr = x + m * K;
    for (int64_t k = 0; k < K; ++k) qa[k] = static_cast<int32_t>(quantize_legacy<uint8_t>(inv, zp, xr[k])) - zp;
    for (int64_t n = 0; n < N; ++n) {
      const int8_t* wr = w + n * K;
      const int32_t wz = per_channel ? w_zps[n] : w_zps[0];
      int32_t acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += qa[k] * (static_cast<int32_t>(wr[k]) - wz);
      const float mult = s * (per_channel ? w_scales[n] : w_scales[0]);
      // measured on torch 2.13: the product and the bias add round once (the
      // compiler contracts _mm256_add_ps(_mm256_mul_ps(..), bias) to an fma)
      const float r0 = static_cast<float>(acc);
      float r = bias ? std::fma(r0, mult, bias[n]) : r0 * mult;
      if (relu) r = std::max(0.0f, r);
      out[m * N + n] = r;
    }
  }
}

}  // namespace aten
}  // namespace qref
