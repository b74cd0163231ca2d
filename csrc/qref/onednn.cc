// qref: oneDNN int8 conv2d arithmetic (scalar, normative). See onednn.h.
#include "qref/onednn.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "qref/requant.h"

namespace qref {

OnednnParams prepare_onednn(const Conv2dShape& s, double input_scale, int32_t input_zero_point,
                            const double* weight_scale, bool per_channel, double output_scale,
                            int32_t output_zero_point, bool relu, const float* bias, OnednnVariant v) {
  OnednnParams p;
  p.input_zero_point = input_zero_point;
  p.output_zero_point = output_zero_point;
  p.relu = relu;
  p.variant = v;
  // qconv.cpp: src scale passed as 1.0/input_scale (double -> float); ideep
  // sets oneDNN's src scale to 1.0f / that float.
  const float src_rcp = static_cast<float>(1.0 / input_scale);
  p.src_scale = 1.0f / src_rcp;
  // qconv.cpp: dst scale passed as 1.0/output_scale; ideep inverts it; the
  // oneDNN kernel multiplies by 1.f / dst_scale.
  const float dst_rcp = static_cast<float>(1.0 / output_scale);
  const float dst_scale = 1.0f / dst_rcp;
  p.dst_scale_inv = 1.0f / dst_scale;
  p.wei_scale.resize(s.O);
  p.comb_scale.resize(s.O);
  for (int64_t o = 0; o < s.O; ++o) {
    p.wei_scale[o] = static_cast<float>(weight_scale[per_channel ? o : 0]);
    p.comb_scale[o] = p.src_scale * p.wei_scale[o];
  }
  p.has_bias = bias != nullptr;
  if (p.has_bias) p.bias.assign(bias, bias + s.O);
  return p;
}

namespace {

void run_rows(const Conv2dShape& s, const OnednnParams& p, const uint8_t* in, const int8_t* w, uint8_t* out,
              int64_t m_begin, int64_t m_end, const OnednnIntermediates* inter) {
  const int64_t Cg = s.cin_per_group(), Og = s.cout_per_group(), K = s.K();
  const bool sat = p.variant.saturate;
  const float out_zp_f = static_cast<float>(p.output_zero_point);
  const float a_zp_f = static_cast<float>(p.input_zero_point);
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / s.OH, oh = m % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t pos = (n * s.OH + oh) * s.OW + ow;
      for (int64_t o = 0; o < s.O; ++o) {
        const int64_t g = o / Og;
        const int8_t* wo = w + o * K;
        int64_t acc = 0, colsum = 0;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const int64_t ih = oh * s.stride_h - s.pad_h + kh * s.dilation_h;
          if (ih < 0 || ih >= s.H) continue;  // padded tap: no product, no compensation
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const int64_t iw = ow * s.stride_w - s.pad_w + kw * s.dilation_w;
            if (iw < 0 || iw >= s.W) continue;
            const uint8_t* px = in + ((n * s.H + ih) * s.W + iw) * s.C + g * Cg;
            const int8_t* wt = wo + (kh * s.KW + kw) * Cg;
            // Channel pairs (2i, 2i+1) of one tap: oneDNN's weight layouts
            // block input channels by 4 per tap (zero-padded), and the
            // non-VNNI kernels reduce them with vpmaddubsw (two int16 lanes).
            for (int64_t c = 0; c < Cg; c += 2) {
              int32_t pr = static_cast<int32_t>(px[c]) * wt[c];
              int32_t ws = wt[c];
              if (c + 1 < Cg) {
                pr += static_cast<int32_t>(px[c + 1]) * wt[c + 1];
                ws += wt[c + 1];
              }
              acc += sat ? sat16(pr) : pr;
              colsum += ws;
            }
          }
        }
        const int32_t acc32 = wrap32(acc), col32 = wrap32(colsum);
        float A;
        if (p.variant.float_comp) {
          // jit_brgemm_amx_uker.cpp: compensation comp = -colsum scaled by the
          // src zero point in float, added to the float accumulator.
          A = static_cast<float>(acc32) + static_cast<float>(-static_cast<int64_t>(col32)) * a_zp_f;
        } else {
          // jit_brgemm_kernel.cpp apply_compensation etc.: vpmulld + vpaddd.
          A = static_cast<float>(wrap32(static_cast<int64_t>(acc32) -
                                        static_cast<int64_t>(wrap32(static_cast<int64_t>(p.input_zero_point) * col32))));
        }
        float y = p.variant.combined ? A * p.comb_scale[o] : (A * p.src_scale) * p.wei_scale[o];
        if (p.has_bias) y = y + p.bias[o];
        if (p.relu) y = y < 0.f ? 0.f : y;  // eltwise relu post-op
        y = y * p.dst_scale_inv;
        y = y + out_zp_f;  // dst zero point added in float before rounding
        // saturate_cvt_f32 (jit_generator.hpp): clamp to [0, 255] in float, then vcvtps2dq (RNE).
        float yc = y;
        if (!(yc > 0.f)) yc = 0.f;
        if (yc > 255.f) yc = 255.f;
        out[pos * s.O + o] = static_cast<uint8_t>(std::nearbyint(yc));
        if (inter) {
          if (inter->acc) inter->acc[pos * s.O + o] = acc32;
          if (inter->colsum) inter->colsum[pos * s.O + o] = col32;
          if (inter->A) inter->A[pos * s.O + o] = A;
          if (inter->y) inter->y[pos * s.O + o] = y;
        }
      }
    }
  }
}

}  // namespace

void run_onednn_conv2d(const Conv2dShape& s, const OnednnParams& p, const uint8_t* in, const int8_t* w,
                       uint8_t* out, int num_threads, const OnednnIntermediates* inter) {
  const int64_t rows = s.N * s.OH;
  if (rows == 0 || s.OW == 0 || s.O == 0) return;
  if (num_threads < 1) num_threads = 1;
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * s.K());
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 16) / macs_per_row);
  int64_t nt = std::min<int64_t>(num_threads, (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  const int64_t chunk = (rows + nt - 1) / nt;
  auto work = [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(rows, b + chunk);
    if (b < e) run_rows(s, p, in, w, out, b, e, inter);
  };
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < nt; ++t) pool.emplace_back(work, t);
  work(0);
  for (auto& th : pool) th.join();
}

}  // namespace qref
