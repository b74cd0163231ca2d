// qref: oneDNN's N-d reference loop (onednn.h run_onednn_conv_nd): Conv3d and the
// deconvolutions with every compensation chain of requant.h, including ref_deconvolution's
// float round trip and the AMX micro-kernel's float compensation.
#include <algorithm>
#include <vector>

#include "qref/gemm/api.h"
#include "qref/onednn/onednn.h"
#include "qref/onednn/requant.h"

namespace qref {

namespace {

void nd_rows(const ConvNdShape& s, const OnednnParams& p, OnednnComp comp, const uint8_t* in, const int8_t* w,
             const std::vector<int64_t>& col_all, uint8_t* out, int64_t m_begin, int64_t m_end) {
  const int64_t Cg = s.cin_per_group(), Og = s.cout_per_group(), K = s.K();
  const OnednnRequant rq = p.requant();
  const float* scale = p.scales();
  const int64_t dims_in[3] = {s.D, s.H, s.W};
  for (int64_t m = m_begin; m < m_end; ++m) {  // m = (n * OD + od) * OH + oh
    const int64_t oh = m % s.OH, od = (m / s.OH) % s.OD, n = m / (s.OH * s.OD);
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t oi[3] = {od, oh, ow};
      const int64_t pos = ((n * s.OD + od) * s.OH + oh) * s.OW + ow;
      for (int64_t o = 0; o < s.O; ++o) {
        const int64_t g = o / Og;
        int64_t acc = 0, colsum = 0;
        for (int64_t kd = 0; kd < s.KD; ++kd)
          for (int64_t kh = 0; kh < s.KH; ++kh)
            for (int64_t kw = 0; kw < s.KW; ++kw) {
              const int64_t k[3] = {kd, kh, kw};
              int64_t idx[3];
              bool inside = true;
              for (int i = 0; i < 3 && inside; ++i)
                inside = onednn_input_index(s.transposed, oi[i], k[i], s.stride[i], s.pad[i], s.dilation[i], dims_in[i],
                                        &idx[i]);
              if (!inside) continue;  // no product, no compensation
              const uint8_t* px = in + (((n * s.D + idx[0]) * s.H + idx[1]) * s.W + idx[2]) * s.C + g * Cg;
              const int8_t* wt = w + o * K + ((kd * s.KH + kh) * s.KW + kw) * Cg;
              for (int64_t c = 0; c < Cg; ++c) {
                acc += static_cast<int32_t>(px[c]) * wt[c];
                colsum += wt[c];
              }
            }
        const int32_t acc32 = wrap32(acc), col32 = wrap32(colsum);
        float A;
        switch (comp) {
          case OnednnComp::ref_deconv:
            A = onednn_compensated_ref_deconv(acc32, col32, wrap32(col_all[o]), rq.a_zp);
            break;
          case OnednnComp::float_comp:
            A = onednn_compensated(acc32, col32, rq.a_zp, true);
            break;
          default:
            A = onednn_compensated(acc32, col32, rq.a_zp, false);
        }
        const float y = onednn_prerounding(A, scale[o], rq.has_bias ? p.bias[o] : 0.f, rq);
        out[pos * s.O + o] = onednn_output(y);
      }
    }
  }
}

}  // namespace

void run_onednn_conv_nd(const ConvNdShape& s, const OnednnParams& p, OnednnComp comp, const uint8_t* in,
                        const int8_t* w, uint8_t* out, int num_threads) {
  const int64_t rows = s.N * s.OD * s.OH;
  if (rows == 0 || s.OW == 0 || s.O == 0) return;
  const int64_t K = s.K();
  std::vector<int64_t> col_all(static_cast<size_t>(s.O), 0);  // sum of every weight of o
  for (int64_t o = 0; o < s.O; ++o)
    for (int64_t k = 0; k < K; ++k) col_all[o] += w[o * K + k];
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * K);
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 16) / macs_per_row);
  int64_t nt = std::min<int64_t>(cap_threads(num_threads), (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  const int64_t chunk = (rows + nt - 1) / nt;
  auto work = [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(rows, b + chunk);
    if (b < e) nd_rows(s, p, comp, in, w, col_all, out, b, e);
  };
  run_parallel(nt, work);
}

}  // namespace qref
