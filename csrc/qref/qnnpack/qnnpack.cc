// qref::qnnpack reference loops (see qnnpack.h). The accumulator is exact int32 arithmetic (wrapping
// adds, as QNNPACK's _mm_add_epi32), so the loop order does not change a byte.
#include "qref/qnnpack/qnnpack.h"

#include <vector>

#include "qref/common/taps.h"

namespace qref {
namespace qnnpack {

void conv2d_nchw(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvQuant& q, uint8_t* out,
                 int32_t* acc, float* y) {
  const int64_t OH = s.OH(), OW = s.OW();
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups;
  // activations channels last, zero point subtracted: a padded tap reads the zero point in QNNPACK
  // (its indirection buffer points at a row of input_zero_point), which contributes 0 here.
  std::vector<int32_t> xs(static_cast<size_t>(s.N * s.H * s.W * s.C));
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t ww = 0; ww < s.W; ++ww)
          xs[static_cast<size_t>(((n * s.H + h) * s.W + ww) * s.C + c)] =
              static_cast<int32_t>(x[((n * s.C + c) * s.H + h) * s.W + ww]) - q.input_zero_point;
  // weights (O, KH, KW, Cg), kernel zero point subtracted
  std::vector<int32_t> ws(static_cast<size_t>(s.O * s.KH * s.KW * Cg));
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t c = 0; c < Cg; ++c)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw)
          ws[static_cast<size_t>(((o * s.KH + kh) * s.KW + kw) * Cg + c)] =
              static_cast<int32_t>(w[((o * Cg + c) * s.KH + kh) * s.KW + kw]) - q.weight_zero_point[o];
  for (int64_t n = 0; n < s.N; ++n)
    for (int64_t oh = 0; oh < OH; ++oh)
      for (int64_t ow = 0; ow < OW; ++ow)
        for (int64_t o = 0; o < s.O; ++o) {
          const int64_t g = o / Og;
          uint32_t a = static_cast<uint32_t>(q.bias[o]);
          for_each_inner_tap(s, oh, ow, [&](int64_t kh, int64_t kw, int64_t ih, int64_t iw) {
            const int32_t* xp = &xs[static_cast<size_t>(((n * s.H + ih) * s.W + iw) * s.C + g * Cg)];
            const int32_t* wp = &ws[static_cast<size_t>(((o * s.KH + kh) * s.KW + kw) * Cg)];
            uint32_t part = 0;
            for (int64_t c = 0; c < Cg; ++c) part += static_cast<uint32_t>(xp[c] * wp[c]);
            a += part;
          });
          const int32_t ai = static_cast<int32_t>(a);
          const float yf = requant_prerounding(ai, q.scale[o]);
          const int64_t idx = ((n * s.O + o) * OH + oh) * OW + ow;
          out[idx] = requant_output(yf, q.output_zero_point, q.output_min, q.output_max);
          if (acc) acc[idx] = ai;
          if (y) y[idx] = yf;
        }
}

void linear(int64_t M, int64_t K, int64_t N, const uint8_t* x, const int8_t* w, const ConvQuant& q, uint8_t* out,
            int32_t* acc, float* y) {
  std::vector<int32_t> ws(static_cast<size_t>(N * K));
  for (int64_t o = 0; o < N; ++o)
    for (int64_t k = 0; k < K; ++k)
      ws[static_cast<size_t>(o * K + k)] = static_cast<int32_t>(w[o * K + k]) - q.weight_zero_point[o];
  std::vector<int32_t> xr(static_cast<size_t>(K));
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t k = 0; k < K; ++k) xr[static_cast<size_t>(k)] = static_cast<int32_t>(x[m * K + k]) - q.input_zero_point;
    for (int64_t o = 0; o < N; ++o) {
      const int32_t* wp = &ws[static_cast<size_t>(o * K)];
      uint32_t a = static_cast<uint32_t>(q.bias[o]);
      for (int64_t k = 0; k < K; ++k) a += static_cast<uint32_t>(xr[static_cast<size_t>(k)] * wp[k]);
      const int32_t ai = static_cast<int32_t>(a);
      const float yf = requant_prerounding(ai, q.scale[o]);
      out[m * N + o] = requant_output(yf, q.output_zero_point, q.output_min, q.output_max);
      if (acc) acc[m * N + o] = ai;
      if (y) y[m * N + o] = yf;
    }
  }
}

void add(int64_t n, const uint8_t* a, const uint8_t* b, const AddParams& p, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = add_output(add_shifted(a[i], b[i], p), p);
}

void lut_table(int kind, float x_scale, int32_t x_zp, float y_scale, int32_t y_zp, int32_t y_min, int32_t y_max,
               uint8_t* table) {
  for (int32_t i = 0; i < 256; ++i) table[i] = lut_entry(kind, i, x_scale, x_zp, y_scale, y_zp, y_min, y_max);
}

void lut_apply(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* out) {
  for (int64_t i = 0; i < n; ++i) out[i] = table[x[i]];
}

}  // namespace qnnpack
}  // namespace qref
