// qref::mlas: scalar reference of ONNX Runtime's MLAS int8 arithmetic (see mlas.h).
#include "qref/mlas/mlas.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace qref::mlas {

namespace {

inline int32_t wrap_add(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) + static_cast<uint32_t>(b));
}
inline int32_t wrap_sub(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) - static_cast<uint32_t>(b));
}
inline int32_t wrap_mul(int32_t a, int32_t b) {
  return static_cast<int32_t>(static_cast<uint32_t>(a) * static_cast<uint32_t>(b));
}

// cvtps2dq: round half to even; NaN and |f| >= 2^31 give INT32_MIN (the "integer indefinite").
inline int32_t cvtps2dq(float f) {
  if (!(f >= -2147483648.0f && f < 2147483648.0f)) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(std::nearbyint(f));  // default rounding mode: to nearest even
}

// maxps(a, b) / minps(a, b): the second operand when either is NaN (or both are zeros).
inline float maxps(float a, float b) { return a > b ? a : b; }
inline float minps(float a, float b) { return a < b ? a : b; }

inline int32_t load_q(const void* p, bool s8, int64_t i) {
  return s8 ? static_cast<int32_t>(static_cast<const int8_t*>(p)[i])
            : static_cast<int32_t>(static_cast<const uint8_t*>(p)[i]);
}
inline void store_q(void* p, bool s8, int64_t i, int32_t v) {
  if (s8)
    static_cast<int8_t*>(p)[i] = static_cast<int8_t>(v);
  else
    static_cast<uint8_t*>(p)[i] = static_cast<uint8_t>(v);
}
inline int32_t sat(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : (v > hi ? hi : v); }
inline int32_t sat16(int32_t v) { return sat(v, -32768, 32767); }

// The pack sequence of the elementwise kernels: packs_epi32 (to int16), then packus/packs_epi16.
inline int32_t pack_to_8bit(int32_t v, bool s8) {
  const int32_t w = sat16(v);
  return s8 ? sat(w, -128, 127) : sat(w, 0, 255);
}

}  // namespace

void requantize_output(const int32_t* acc, const int32_t* bias, int64_t rows, int64_t cols, const float* scale,
                       bool per_column, int32_t zero_point, bool out_s8, void* out) {
  const int32_t lo = out_s8 ? -128 : 0;
  const int32_t hi = out_s8 ? 127 : 255;
  const float fmin = static_cast<float>(lo - zero_point);
  const float fmax = static_cast<float>(hi - zero_point);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * cols + c;
      int32_t v = acc[i];
      if (bias != nullptr) v = wrap_add(v, bias[c]);
      float f = static_cast<float>(v) * scale[per_column ? c : 0];
      f = maxps(f, fmin);
      f = minps(f, fmax);
      // After the float clamp the value is in range: the packs that follow cannot saturate.
      store_q(out, out_s8, i, wrap_add(cvtps2dq(f), zero_point));
    }
  }
}

void qgemm(const void* A, bool a_s8, int32_t za, const void* Bt, bool b_s8, const int32_t* zb, bool zb_per_column,
           int64_t M, int64_t N, int64_t K, U8S8 mode, int32_t* C) {
  const bool saturate = mode == U8S8::kSaturatePairs && !a_s8 && b_s8;
  std::vector<int32_t> a(static_cast<size_t>(K));
  std::vector<int32_t> bt(static_cast<size_t>(N * K));
  for (int64_t i = 0; i < N * K; ++i) bt[static_cast<size_t>(i)] = load_q(Bt, b_s8, i);
  std::vector<int32_t> colsum(static_cast<size_t>(N), 0);
  for (int64_t n = 0; n < N; ++n) {
    int32_t s = 0;
    for (int64_t k = 0; k < K; ++k) s = wrap_add(s, bt[static_cast<size_t>(n * K + k)]);
    colsum[static_cast<size_t>(n)] = s;
  }
  for (int64_t m = 0; m < M; ++m) {
    int32_t rowsum = 0;
    for (int64_t k = 0; k < K; ++k) {
      a[static_cast<size_t>(k)] = load_q(A, a_s8, m * K + k);
      rowsum = wrap_add(rowsum, a[static_cast<size_t>(k)]);
    }
    for (int64_t n = 0; n < N; ++n) {
      const int32_t* b = bt.data() + n * K;
      const int32_t zbn = zb[zb_per_column ? n : 0];
      int32_t acc = 0;
      if (saturate) {
        // vpmaddubsw: u8 * s8 products of consecutive k summed in pairs, saturated to int16
        // (an odd K pairs its last element with the zero padding MLAS packs); vpmaddwd with
        // ones and vpaddd then add the pairs exactly.
        int64_t k = 0;
        for (; k + 1 < K; k += 2) acc = wrap_add(acc, sat16(a[k] * b[k] + a[k + 1] * b[k + 1]));
        if (k < K) acc = wrap_add(acc, a[k] * b[k]);
      } else {
        for (int64_t k = 0; k < K; ++k) acc = wrap_add(acc, wrap_mul(a[k], b[k]));
      }
      // sum (a - za)(b - zb) = sum ab - za*colsum - zb*rowsum + K*za*zb
      acc = wrap_sub(acc, wrap_mul(za, colsum[static_cast<size_t>(n)]));
      acc = wrap_sub(acc, wrap_mul(zbn, rowsum));
      acc = wrap_add(acc, wrap_mul(wrap_mul(static_cast<int32_t>(K), za), zbn));
      C[m * N + n] = acc;
    }
  }
}

void conv2d_int32(const void* x, bool x_s8, int32_t x_zp, int64_t N, int64_t H, int64_t W, int64_t C, const void* w,
                  bool w_s8, int32_t w_zp, int64_t M, int64_t KH, int64_t KW, int64_t groups, int64_t stride_h,
                  int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t /*pad_bottom*/,
                  int64_t /*pad_right*/, int64_t dil_h, int64_t dil_w, U8S8 mode, int32_t* out, int64_t OH,
                  int64_t OW) {
  const int64_t Cg = C / groups;
  const int64_t Mg = M / groups;
  const int64_t K = KH * KW * Cg;
  const int64_t P = N * OH * OW;
  // im2col of one group, in MLAS's k order (kh, kw, c); padding reads the zero point.
  std::vector<uint8_t> col(static_cast<size_t>(P * K));
  std::vector<uint8_t> wt(static_cast<size_t>(Mg * K));
  std::vector<int32_t> acc(static_cast<size_t>(P * Mg));
  const uint8_t* xb = static_cast<const uint8_t*>(x);
  const uint8_t* wb = static_cast<const uint8_t*>(w);
  const uint8_t pad_byte = static_cast<uint8_t>(x_zp);
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t n = 0; n < N; ++n)
      for (int64_t oh = 0; oh < OH; ++oh)
        for (int64_t ow = 0; ow < OW; ++ow) {
          uint8_t* row = col.data() + ((n * OH + oh) * OW + ow) * K;
          for (int64_t kh = 0; kh < KH; ++kh)
            for (int64_t kw = 0; kw < KW; ++kw) {
              const int64_t ih = oh * stride_h - pad_top + kh * dil_h;
              const int64_t iw = ow * stride_w - pad_left + kw * dil_w;
              uint8_t* dst = row + (kh * KW + kw) * Cg;
              if (ih < 0 || ih >= H || iw < 0 || iw >= W) {
                std::memset(dst, pad_byte, static_cast<size_t>(Cg));
              } else {
                std::memcpy(dst, xb + ((n * H + ih) * W + iw) * C + g * Cg, static_cast<size_t>(Cg));
              }
            }
        }
    for (int64_t m = 0; m < Mg; ++m)
      for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw)
          for (int64_t c = 0; c < Cg; ++c)
            wt[static_cast<size_t>(m * K + (kh * KW + kw) * Cg + c)] =
                wb[(((g * Mg + m) * Cg + c) * KH + kh) * KW + kw];
    const int32_t zb = w_zp;
    qgemm(col.data(), x_s8, x_zp, wt.data(), w_s8, &zb, false, P, Mg, K, mode, acc.data());
    for (int64_t p = 0; p < P; ++p)
      for (int64_t m = 0; m < Mg; ++m) out[p * M + g * Mg + m] = acc[static_cast<size_t>(p * Mg + m)];
  }
}

void quantize_linear(const float* x, int64_t n, float scale, int32_t zero_point, bool out_s8, void* out) {
  const int32_t lo = out_s8 ? -128 : 0;
  const int32_t hi = out_s8 ? 127 : 255;
  const float fmin = static_cast<float>(lo - zero_point);
  const float fmax = static_cast<float>(hi - zero_point);
  for (int64_t i = 0; i < n; ++i) {
    float f = x[i] / scale;
    f = maxps(f, fmin);
    f = minps(f, fmax);
    store_q(out, out_s8, i, wrap_add(cvtps2dq(f), zero_point));
  }
}

void dequantize_linear(const void* x, bool x_s8, int64_t n, const float* scale, const int32_t* zero_point,
                       int64_t channels, int64_t inner, float* out) {
  for (int64_t i = 0; i < n; ++i) {
    const int64_t c = channels > 1 ? (i / inner) % channels : 0;
    out[i] = static_cast<float>(load_q(x, x_s8, i) - zero_point[c]) * scale[c];
  }
}

void qlinear_add(const void* a, float sa, int32_t za, bool a_scalar, const void* b, float sb, int32_t zb,
                 bool b_scalar, float sc, int32_t zc, bool s8, int64_t n, void* out) {
  const float ra = sa / sc;
  const float rb = sb / sc;
  // (float)ZeroPointC - (ScaleRatio_AC * ZeroPointA + ScaleRatio_BC * ZeroPointB): the build
  // contracts the inner sum into one FMA (tests/test_onnxruntime.py pins which form).
  float fixed = static_cast<float>(zc) - std::fma(ra, static_cast<float>(za), rb * static_cast<float>(zb));
  if (a_scalar) fixed = std::fma(static_cast<float>(load_q(a, s8, 0)), ra, fixed);
  if (b_scalar) fixed = std::fma(static_cast<float>(load_q(b, s8, 0)), rb, fixed);
  for (int64_t i = 0; i < n; ++i) {
    float y = fixed;
    if (!b_scalar) y = std::fma(static_cast<float>(load_q(b, s8, i)), rb, y);
    if (!a_scalar) y = std::fma(static_cast<float>(load_q(a, s8, i)), ra, y);
    store_q(out, s8, i, pack_to_8bit(cvtps2dq(y), s8));
  }
}

void qlinear_mul(const void* a, float sa, int32_t za, const void* b, float sb, int32_t zb, bool b_scalar, float sc,
                 int32_t zc, bool s8, int64_t n, void* out) {
  const float ratio = (sa * sb) / sc;
  const float fzc = static_cast<float>(zc);
  for (int64_t i = 0; i < n; ++i) {
    // int16 lanes: a - za and b - zb fit int16; mullo/mulhi give the exact int32 product.
    const int32_t p = (load_q(a, s8, i) - za) * (load_q(b, s8, b_scalar ? 0 : i) - zb);
    const float y = static_cast<float>(p) * ratio + fzc;  // two roundings (-ffp-contract=off)
    store_q(out, s8, i, pack_to_8bit(cvtps2dq(y), s8));
  }
}

float logistic_fma3(float x) {
  // MlasLogisticConstants (logistic.cpp): the coefficients Eigen uses.
  const float lower = -18.0f, upper = 18.0f;
  const float a9 = 4.37031012579801e-11f, a7 = 1.15627324459942e-07f, a5 = 6.08574864600143e-05f,
              a3 = 8.51377133304701e-03f, a1 = 2.48287947061529e-01f;
  const float b10 = 6.10247389755681e-13f, b8 = 5.76102136993427e-09f, b6 = 6.29106785017040e-06f,
              b4 = 1.70198817374094e-03f, b2 = 1.16817656904453e-01f, b0 = 9.93151921023180e-01f;
  float v = maxps(lower, x);  // vmaxps ymm0, lower, x: x if NaN... (second operand)
  v = minps(upper, v);
  const float x2 = v * v;
  float p = std::fma(x2, a9, a7);
  p = std::fma(x2, p, a5);
  p = std::fma(x2, p, a3);
  p = std::fma(x2, p, a1);
  float q = std::fma(x2, b10, b8);
  q = std::fma(x2, q, b6);
  q = std::fma(x2, q, b4);
  q = std::fma(x2, q, b2);
  q = std::fma(x2, q, b0);
  p = v * p;
  const float r = p / q + 0.5f;
  return maxps(0.0f, r);
}

void lookup_table(int kind, float alpha, float sx, int32_t zx, float sy, int32_t zy, bool s8, uint8_t* table) {
  float xin[256];
  float yout[256];
  for (int i = 0; i < 256; ++i) {
    const int32_t v = s8 ? static_cast<int32_t>(static_cast<int8_t>(i)) : i;
    xin[i] = sx * static_cast<float>(v - zx);
  }
  for (int i = 0; i < 256; ++i) {
    const float v = xin[i];
    if (kind == 0)
      yout[i] = v;
    else if (kind == 1)
      yout[i] = v >= 0.0f ? v : alpha * v;
    else
      yout[i] = logistic_fma3(v);
  }
  quantize_linear(yout, 256, sy, zy, s8, table);
}

bool global_average_pool(const void* x, bool s8, int64_t batch, int64_t channels, int64_t image, bool channels_last,
                         float sx, int32_t zx, float sy, int32_t zy, void* out) {
  if (image >= 0x1000000) return false;
  const float scale = sx / (sy * static_cast<float>(image));
  if (scale < 0x1.0p-32f || scale >= 256.0f) return false;
  const int32_t bias = wrap_mul(-zx, static_cast<int32_t>(image));
  std::vector<int32_t> acc(static_cast<size_t>(batch * channels));
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t c = 0; c < channels; ++c) {
      int32_t s = bias;
      for (int64_t i = 0; i < image; ++i) {
        const int64_t idx = channels_last ? (b * image + i) * channels + c : (b * channels + c) * image + i;
        s = wrap_add(s, load_q(x, s8, idx));
      }
      acc[static_cast<size_t>(b * channels + c)] = s;
    }
  requantize_output(acc.data(), nullptr, 1, batch * channels, &scale, false, zy, s8, out);
  return true;
}

void average_pool2d(const void* x, bool s8, int64_t N, int64_t C, int64_t H, int64_t W, bool channels_last,
                    int64_t KH, int64_t KW, int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                    bool count_include_pad, float sx, int32_t zx, float sy, int32_t zy, int64_t OH, int64_t OW,
                    void* out) {
  const int32_t lo = s8 ? -128 : 0;
  const int32_t hi = s8 ? 127 : 255;
  const float fzy = static_cast<float>(zy);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t oh = 0; oh < OH; ++oh) {
        int64_t hstart = oh * stride_h - pad_top;
        const int64_t hend = std::min(hstart + KH, H);
        hstart = std::max<int64_t>(hstart, 0);
        for (int64_t ow = 0; ow < OW; ++ow) {
          int64_t wstart = ow * stride_w - pad_left;
          const int64_t wend = std::min(wstart + KW, W);
          wstart = std::max<int64_t>(wstart, 0);
          float sum = 0.0f;
          for (int64_t h = hstart; h < hend; ++h)
            for (int64_t w = wstart; w < wend; ++w) {
              const int64_t idx = channels_last ? ((n * H + h) * W + w) * C + c : ((n * C + c) * H + h) * W + w;
              sum += sx * static_cast<float>(load_q(x, s8, idx) - zx);
            }
          const int64_t count = count_include_pad ? KH * KW : (hend - hstart) * (wend - wstart);
          const float avg = sum / static_cast<float>(count);
          const float y = avg / sy + fzy;
          const int32_t q = sat(static_cast<int32_t>(std::nearbyint(y)), lo, hi);
          const int64_t o = channels_last ? ((n * OH + oh) * OW + ow) * C + c : ((n * C + c) * OH + oh) * OW + ow;
          store_q(out, s8, o, q);
        }
      }
}

void dynamic_qparams(const float* x, int64_t n, float* scale, int32_t* zero_point) {
  float mn = n > 0 ? x[0] : 0.0f;
  float mx = mn;
  for (int64_t i = 1; i < n; ++i) {
    mn = std::min(mn, x[i]);
    mx = std::max(mx, x[i]);
  }
  mn = std::min(mn, 0.0f);
  mx = std::max(mx, 0.0f);
  const float s = mx == mn ? 1.0f : (mx - mn) / 255.0f;
  const float initial = 0.0f - mn / s;
  const float clamped = std::max(0.0f, std::min(255.0f, initial));
  *scale = s;
  *zero_point = static_cast<int32_t>(std::nearbyint(clamped));
}

void scale_bias_output(const int32_t* acc, int64_t rows, int64_t cols, const float* scale, bool per_column,
                       const float* bias, float* out) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      float f = static_cast<float>(acc[r * cols + c]) * scale[per_column ? c : 0];
      if (bias != nullptr) f = f + bias[c];
      out[r * cols + c] = f;
    }
}

}  // namespace qref::mlas
