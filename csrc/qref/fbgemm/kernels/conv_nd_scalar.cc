// qref: the scalar reference for conv3d and transposed convs. NORMATIVE, like
// conv2d_scalar.cc: plain loops that say what fbgemm computes.
//
// Gather kernel (every path but the direct transposed one), per output element
// (n, od, oh, ow, o) in group g:
//   1. the receptive field a[k], k = ((kd*KH + kh)*KW + kw)*Cg + c, with taps
//      that have no input holding the activation zero point:
//        conv:       i = o*stride - pad + k*dil, outside the image -> a_zp
//                    (PackAWithIm2Col memset; depthwise/groupwise a_zp registers);
//        transposed: t = o + pad - k*dil; input i = t / stride if t % stride == 0
//                    and 0 <= i < in, else a_zp (fbgemm's output-stationary
//                    transposed im2col, PackAWithIm2Col; docs/numerics.md §4.4);
//   2. acc = sum of products; on saturating paths consecutive pairs (2i, 2i+1)
//      of that order are summed and saturated to int16 first (vpmaddubsw; for
//      depthwise the pairs are taps (2i, 2i+1) because Cg = 1, docs/numerics.md §4.2);
//   3. rowsum = sum_k a[k]; fbgemm's 3D depthwise kernel accumulates it with
//      vpaddsw (GenerateI8Depthwise.cc genMaddEpi16xNPacked): every addend is a
//      non-negative tap-pair sum, so the saturating running sum is
//      min(sum, 32767) — reproduced only with reproduce_defects;
//   4. requantization as requant.h.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "qref/fbgemm/kernels/conv_nd_kernels.h"
#include "qref/fbgemm/requant.h"

namespace qref {

namespace {
// Steps 3-4 for output channel o: the zero-point terms, then requant.h's float stage; the
// stage-by-stage values go to `inter` at idx when asked for (null: not).
inline uint8_t finish_output(const Requant& rq, int64_t o, int32_t acc32, int32_t rowsum, int32_t col_offset,
                             const Conv2dIntermediates* inter = nullptr, int64_t idx = 0) {
  const int32_t raw = zero_point_terms(acc32, rowsum, rq.input_zero_point, col_offset, rq.weight_zero_point[o]);
  const float y = requant_prerounding(raw, rq.has_bias, rq.bias_fma, rq.has_bias ? rq.bias_term[o] : 0.0f,
                                      rq.bias_rcp, rq.multiplier[o]);
  if (inter) {
    if (inter->acc) inter->acc[idx] = acc32;
    if (inter->raw) inter->raw[idx] = raw;
    if (inter->y) inter->y[idx] = y;
  }
  return requant_output(y, rq.output_zero_point, rq.relu);
}
}  // namespace

void conv_nd_scalar_rows(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                         int64_t m_begin, int64_t m_end, uint8_t* a, const Conv2dIntermediates* inter) {
  const ConvNdShape& s = p.shape;
  const Requant& rq = p.rq;
  const int64_t Cg = s.cin_per_group(), Og = s.cout_per_group(), K = s.K();
  const uint8_t a_zp = static_cast<uint8_t>(rq.input_zero_point);
  const bool sat_rowsum = p.reproduce_defects && p.path == ConvNdPath::depthwise;
  const int64_t in_dim[3] = {s.D, s.H, s.W};
  const int64_t kdim[3] = {s.KD, s.KH, s.KW};

  // Input coordinate of output coordinate o and tap k along dim i; -1: no input.
  auto src = [&](int i, int64_t o, int64_t k) -> int64_t {
    if (!s.transposed) {
      const int64_t x = o * s.stride[i] - s.pad[i] + k * s.dilation[i];
      return (x >= 0 && x < in_dim[i]) ? x : -1;
    }
    const int64_t t = o + s.pad[i] - k * s.dilation[i];
    if (t < 0 || t % s.stride[i] != 0) return -1;
    const int64_t x = t / s.stride[i];
    return x < in_dim[i] ? x : -1;
  };

  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t oh = m % s.OH, od = (m / s.OH) % s.OD, n = m / (s.OH * s.OD);
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t out_pos = ((n * s.OD + od) * s.OH + oh) * s.OW + ow;
      for (int64_t g = 0; g < s.groups; ++g) {
        // 1. receptive field in (kd, kh, kw, c) order
        int64_t rowsum = 0;
        for (int64_t kd = 0; kd < kdim[0]; ++kd) {
          const int64_t id = src(0, od, kd);
          for (int64_t kh = 0; kh < kdim[1]; ++kh) {
            const int64_t ih = src(1, oh, kh);
            for (int64_t kw = 0; kw < kdim[2]; ++kw) {
              const int64_t iw = src(2, ow, kw);
              const bool inside = id >= 0 && ih >= 0 && iw >= 0;
              const uint8_t* px = inside ? in + (((n * s.D + id) * s.H + ih) * s.W + iw) * s.C + g * Cg : nullptr;
              uint8_t* dst = a + ((kd * kdim[1] + kh) * kdim[2] + kw) * Cg;
              for (int64_t c = 0; c < Cg; ++c) {
                const uint8_t v = inside ? px[c] : a_zp;
                dst[c] = v;
                rowsum += v;
              }
            }
          }
        }
        if (sat_rowsum && rowsum > 32767) rowsum = 32767;
        for (int64_t oc = 0; oc < Og; ++oc) {
          const int64_t o = g * Og + oc;
          const int8_t* wo = w + o * K;
          // 2. products, pairwise int16 saturation where the path has it
          int64_t acc = 0;
          for (int64_t k = 0; k < K; k += 2) {
            const int32_t p0 = static_cast<int32_t>(a[k]) * wo[k];
            const int32_t p1 = k + 1 < K ? static_cast<int32_t>(a[k + 1]) * wo[k + 1] : 0;
            acc += p.saturate ? sat16(p0 + p1) : p0 + p1;
          }
          const int32_t acc32 = wrap32(acc);
          // 3-4. zero-point terms and requantization
          const int64_t idx = out_pos * s.O + o;
          out[idx] = finish_output(rq, o, acc32, wrap32(rowsum), rq.col_offset[o], inter, idx);
        }
      }
    }
  }
}

// Depthwise (G == C, Cg == 1, O = G * mult): K order = tap order, pairs are taps (2i, 2i+1)
// per output channel (docs/numerics.md §4.2). The receptive field is expanded to one int16 value per
// output channel (channel o reads input channel o / mult), so every inner loop runs over o.
void conv_nd_depthwise_rows(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                            int64_t m_begin, int64_t m_end, bool avx2) {
  const ConvNdShape& s = p.shape;
  const Requant& rq = p.rq;
  const int64_t O = s.O, C = s.C, mult = s.O / s.C, T = s.taps();
  const bool sat_rowsum = p.reproduce_defects;
  // The row sum only matters through rowsum * w_zp (requant.h zero_point_terms).
  bool need_rowsum = false;
  for (int64_t o = 0; o < O; ++o) need_rowsum = need_rowsum || rq.weight_zero_point[o] != 0;
  const int64_t in_dim[3] = {s.D, s.H, s.W};
  // weights as [tap][o] (w is [o][tap] since Cg == 1); a zero row for an odd last tap
  std::vector<int16_t> wt(static_cast<size_t>((T + 1) * O), 0);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t t = 0; t < T; ++t) wt[t * O + o] = w[o * T + t];
  // per tap: a pointer to O activation bytes (channel o reads input channel o / mult)
  std::vector<const uint8_t*> tap(static_cast<size_t>(T + 1));
  std::vector<uint8_t> zp_row(static_cast<size_t>(O), static_cast<uint8_t>(rq.input_zero_point));
  std::vector<uint8_t> zero_row(static_cast<size_t>(O), 0);
  std::vector<uint8_t> expanded(mult == 1 ? 0 : static_cast<size_t>(T * O));
  std::vector<int32_t> acc(static_cast<size_t>(O)), rowsum(static_cast<size_t>(O));
  auto src = [&](int i, int64_t o, int64_t k) -> int64_t {
    const int64_t x = o * s.stride[i] - s.pad[i] + k * s.dilation[i];
    return (x >= 0 && x < in_dim[i]) ? x : -1;
  };
  tap[T] = zero_row.data();
  // AVX2 accumulation (same arithmetic) for one output channel per input channel.
  const int64_t T2 = (T + 1) / 2 * 2;
  const bool use_avx2 = avx2 && mult == 1;  // the dispatcher checked the CPU (run_conv_nd)
  const bool avx2_requant = use_avx2;
  std::vector<int8_t> wpairs(use_avx2 ? static_cast<size_t>(T2 * O) : 0, 0);
  if (use_avx2) conv_nd_dw_pack_avx2(w, T, O, wpairs.data());
  // per (kd, kh) of the current output row: the input row (n, id, ih) or null (padding)
  std::vector<const uint8_t*> rowbase(static_cast<size_t>(s.KD * s.KH)), rowp(rowbase.size());
  std::vector<uint8_t> zp_line(mult == 1 ? static_cast<size_t>(s.W * C) : 0, static_cast<uint8_t>(rq.input_zero_point));
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t oh = m % s.OH, od = (m / s.OH) % s.OD, n = m / (s.OH * s.OD);
    for (int64_t kd = 0; kd < s.KD; ++kd) {
      const int64_t id = src(0, od, kd);
      for (int64_t kh = 0; kh < s.KH; ++kh) {
        const int64_t ih = src(1, oh, kh);
        rowbase[kd * s.KH + kh] = (id < 0 || ih < 0) ? nullptr : in + ((n * s.D + id) * s.H + ih) * s.W * C;
      }
    }
    for (int64_t r = 0; r < s.KD * s.KH; ++r) rowp[r] = rowbase[r] ? rowbase[r] : zp_line.data();
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      // receptive field; padded taps hold a_zp
      int64_t t = 0;
      const int64_t iw0 = ow * s.stride[2] - s.pad[2];
      if (mult == 1 && iw0 >= 0 && iw0 + (s.KW - 1) * s.dilation[2] < s.W) {
        // every kw inside the row: a padded (kd, kh) reads the a_zp line at the same column
        for (int64_t r = 0; r < s.KD * s.KH; ++r)
          for (int64_t kw = 0; kw < s.KW; ++kw, ++t) tap[t] = rowp[r] + (iw0 + kw * s.dilation[2]) * C;
      }
      for (int64_t r = 0; t < T && r < s.KD * s.KH; ++r) {
        {
          const uint8_t* row = rowbase[r];
          for (int64_t kw = 0; kw < s.KW; ++kw, ++t) {
            const int64_t iw = src(2, ow, kw);
            if (row == nullptr || iw < 0) {
              tap[t] = zp_row.data();
              continue;
            }
            const uint8_t* px = row + iw * C;
            if (mult == 1) {
              tap[t] = px;
            } else {
              uint8_t* e = expanded.data() + t * O;
              for (int64_t o = 0; o < O; ++o) e[o] = px[o / mult];
              tap[t] = e;
            }
          }
        }
      }
      if (use_avx2) {
        conv_nd_dw_acc_avx2(tap.data(), T2, wpairs.data(), O, acc.data(), need_rowsum ? rowsum.data() : nullptr);
      } else {
        std::fill(acc.begin(), acc.end(), 0);
        for (int64_t tp = 0; tp < T; tp += 2) {
          const uint8_t* a0 = tap[tp];
          const uint8_t* a1 = tap[tp + 1];  // the zero row after an odd last tap
          const int16_t* w0 = wt.data() + tp * O;
          const int16_t* w1 = w0 + O;
          int32_t* ac = acc.data();
          for (int64_t o = 0; o < O; ++o) {
            int32_t v = static_cast<int32_t>(a0[o]) * w0[o] + static_cast<int32_t>(a1[o]) * w1[o];
            v = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);  // vpmaddubsw
            ac[o] += v;
          }
        }
        if (need_rowsum) {
          std::fill(rowsum.begin(), rowsum.end(), 0);
          for (int64_t tt = 0; tt < T; ++tt) {
            const uint8_t* a0 = tap[tt];
            int32_t* rs = rowsum.data();
            for (int64_t o = 0; o < O; ++o) rs[o] += a0[o];
          }
        }
      }
      const int64_t out_pos = ((n * s.OD + od) * s.OH + oh) * s.OW + ow;
      uint8_t* dst = out + out_pos * O;
      int64_t o0 = 0;
      if (avx2_requant) {
        o0 = conv_nd_requant_avx2(acc.data(), need_rowsum ? rowsum.data() : nullptr, sat_rowsum, rq.input_zero_point,
                                  rq.col_offset.data(), rq.weight_zero_point.data(),
                                  rq.has_bias ? rq.bias_term.data() : nullptr, rq.bias_fma, rq.bias_rcp,
                                  rq.multiplier.data(),
                                  rq.output_zero_point, rq.relu, O, dst);
      }
      for (int64_t o = o0; o < O; ++o) {
        // fbgemm's vpaddsw clips the row sum at 32767 (reproduce_defects)
        const int32_t rs = !need_rowsum ? 0 : (sat_rowsum ? std::min<int32_t>(rowsum[o], 32767) : rowsum[o]);
        dst[o] = finish_output(rq, o, acc[o], rs, rq.col_offset[o]);
      }
    }
  }
}

// fbgemm's direct transposed conv (src/PackWeightsForDirectConv.cc
// fbgemmDirectConv, src/GenerateKernelDirectConvU8S8S32ACC32.cc
// genComputeBlockDirectConvTrans): a scatter. Each input pixel (ih, iw) and tap
// (kh, kw) adds sum_c a[c] * w[o][kh][kw][c] to output (ih*stride_h + kh,
// iw*stride_w + kw), the channel sum in int16-saturating pairs of consecutive
// input channels (vpmaddubsw; IC % 8 == 0 so pairs never straddle), everything
// else exact int32. Taps with no input contribute nothing (no a_zp fill), and the
// zero-point terms use what actually reached each output position:
//   col_offset[pos][o] = sum of those weights - w_zp * their count
//     (col_offsets_with_zero_pt_s8acc32_DirectConvT),
//   rowsum[pos] = sum of those activations (directConvRowSum),
// then requantizeOutputProcessingAvx2<..., DIRECT=true>, the same float steps.
// G == 1, no padding, no dilation, 2D (docs/numerics.md §3 takeDirectConvPath).
void conv_transpose_direct_scalar(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                                  int64_t n, const Conv2dIntermediates* inter) {
  const ConvNdShape& s = p.shape;
  const Requant& rq = p.rq;
  const int64_t IC = s.C, O = s.O, KH = s.KH, KW = s.KW, K = s.K();
  const int64_t sh = s.stride[1], sw = s.stride[2];
  // fbgemm's host loop advances the output by one row per input row (it assumes
  // stride_h == 1) while the kernel handles stride_w; its directConvRowSum does
  // the same (rowSum[(ih + r) * OUT1 + ...]), but the col_offsets use stride_h.
  const int64_t row_step = (p.reproduce_defects && sh != 1) ? 1 : sh;
  for (int64_t oh = 0; oh < s.OH; ++oh) {
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t out_pos = (n * s.OH + oh) * s.OW + ow;
      // rowsum: the activations that reach this position (directConvRowSum)
      int64_t rowsum = 0;
      for (int64_t kh = 0; kh < KH; ++kh) {
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t th = oh - kh, tw = ow - kw;
          if (th >= 0 && th % row_step == 0 && th / row_step < s.H && tw >= 0 && tw % sw == 0 && tw / sw < s.W) {
            const uint8_t* px = in + ((n * s.H + th / row_step) * s.W + tw / sw) * IC;
            for (int64_t c = 0; c < IC; ++c) rowsum += px[c];
          }
        }
      }
      for (int64_t o = 0; o < O; ++o) {
        const int8_t* wo = w + o * K;
        int64_t sum = 0, colsum = 0, count = 0;
        for (int64_t kh = 0; kh < KH; ++kh) {
          for (int64_t kw = 0; kw < KW; ++kw) {
            const int8_t* wt = wo + (kh * KW + kw) * IC;
            // products: input row ih with oh == ih * row_step + kh
            const int64_t th = oh - kh, tw = ow - kw;
            if (th >= 0 && th % row_step == 0 && th / row_step < s.H && tw >= 0 && tw % sw == 0 && tw / sw < s.W) {
              const uint8_t* px = in + ((n * s.H + th / row_step) * s.W + tw / sw) * IC;
              for (int64_t c = 0; c < IC; c += 2) {
                const int32_t p0 = static_cast<int32_t>(px[c]) * wt[c];
                const int32_t p1 = static_cast<int32_t>(px[c + 1]) * wt[c + 1];
                sum += sat16(p0 + p1);
              }
            }
            // col_offsets: always with the true stride_h
            if (th >= 0 && th % sh == 0 && th / sh < s.H && tw >= 0 && tw % sw == 0 && tw / sw < s.W) {
              for (int64_t c = 0; c < IC; ++c) colsum += wt[c];
              count += IC;
            }
          }
        }
        const int32_t acc32 = wrap32(sum);
        const int32_t col_offset = wrap32(colsum - static_cast<int64_t>(rq.weight_zero_point[o]) * count);
        const int64_t idx = out_pos * O + o;
        out[idx] = finish_output(rq, o, acc32, wrap32(rowsum), col_offset, inter, idx);
      }
    }
  }
}

// conv_transpose_direct_scalar with the output channels innermost: weights as [tap][c][o] so
// the pair sums of one input pixel and tap run over o; column sums per tap precomputed.
void conv_transpose_direct_rows(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                                int64_t m_begin, int64_t m_end, bool avx2) {
  const ConvNdShape& s = p.shape;
  const Requant& rq = p.rq;
  const int64_t IC = s.C, O = s.O, KH = s.KH, KW = s.KW, K = s.K(), T = KH * KW;
  const int64_t sh = s.stride[1], sw = s.stride[2];
  const int64_t row_step = (p.reproduce_defects && sh != 1) ? 1 : sh;  // see conv_transpose_direct_scalar
  std::vector<int16_t> wt(static_cast<size_t>(T * IC * O));
  std::vector<int32_t> tap_colsum(static_cast<size_t>(T * O), 0);
  for (int64_t o = 0; o < O; ++o)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < IC; ++c) {
        const int8_t v = w[o * K + t * IC + c];
        wt[(t * IC + c) * O + o] = v;
        tap_colsum[t * O + o] += v;
      }
  std::vector<int32_t> acc(static_cast<size_t>(O)), colsum(static_cast<size_t>(O));
  // AVX2 channel reduction (conv_nd_avx2.cc conv_nd_direct_tap_avx2, same arithmetic): weights
  // as [tap][channel quad][o][4]; the AVX2 requantization with the per-position column offsets and
  // row sum (FMA for a fused per-tensor bias).
  const bool use_avx2 = avx2 && IC % 4 == 0;  // the dispatcher checked the CPU (run_conv_nd)
  const bool avx2_requant = use_avx2;
  std::vector<int8_t> wq(use_avx2 ? static_cast<size_t>(T * IC * O) : 0);
  if (use_avx2) {
    for (int64_t t = 0; t < T; ++t)
      for (int64_t c = 0; c < IC; ++c)
        for (int64_t o = 0; o < O; ++o) wq[((t * (IC / 4) + c / 4) * O + o) * 4 + c % 4] = w[o * K + t * IC + c];
  }
  std::vector<int32_t> col_off(avx2_requant ? static_cast<size_t>(O) : 0), rs_vec(col_off.size());
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / s.OH, oh = m % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      std::fill(acc.begin(), acc.end(), 0);
      std::fill(colsum.begin(), colsum.end(), 0);
      int64_t rowsum = 0, count = 0;
      for (int64_t kh = 0; kh < KH; ++kh) {
        for (int64_t kw = 0; kw < KW; ++kw) {
          const int64_t t = kh * KW + kw, th = oh - kh, tw = ow - kw;
          const bool w_ok = tw >= 0 && tw % sw == 0 && tw / sw < s.W;
          if (w_ok && th >= 0 && th % row_step == 0 && th / row_step < s.H) {
            const uint8_t* px = in + ((n * s.H + th / row_step) * s.W + tw / sw) * IC;
            if (use_avx2) {
              int64_t px_sum = 0;
              const int64_t o0 = conv_nd_direct_tap_avx2(px, wq.data() + t * IC * O, IC, O, acc.data(), &px_sum);
              rowsum += px_sum;
              if (o0 < O) {  // never on the direct path (O % 8 == 0): the remaining outputs
                for (int64_t c = 0; c < IC; c += 2)
                  for (int64_t o = o0; o < O; ++o) {
                    int32_t v = px[c] * wt[(t * IC + c) * O + o] + px[c + 1] * wt[(t * IC + c + 1) * O + o];
                    v = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);  // vpmaddubsw
                    acc[o] = static_cast<int32_t>(static_cast<uint32_t>(acc[o]) + static_cast<uint32_t>(v));
                  }
              }
            } else {
              for (int64_t c = 0; c < IC; c += 2) {
                const int32_t a0 = px[c], a1 = px[c + 1];
                rowsum += a0 + a1;
                const int16_t* w0 = wt.data() + (t * IC + c) * O;
                const int16_t* w1 = w0 + O;
                int32_t* ac = acc.data();
                for (int64_t o = 0; o < O; ++o) {
                  int32_t v = a0 * w0[o] + a1 * w1[o];
                  v = v < -32768 ? -32768 : (v > 32767 ? 32767 : v);  // vpmaddubsw
                  ac[o] = static_cast<int32_t>(static_cast<uint32_t>(ac[o]) + static_cast<uint32_t>(v));  // vpaddd
                }
              }
            }
          }
          if (w_ok && th >= 0 && th % sh == 0 && th / sh < s.H) {
            const int32_t* cs = tap_colsum.data() + t * O;
            for (int64_t o = 0; o < O; ++o) colsum[o] += cs[o];
            count += IC;
          }
        }
      }
      uint8_t* dst = out + ((n * s.OH + oh) * s.OW + ow) * O;
      int64_t r0 = 0;
      if (avx2_requant) {
        for (int64_t o = 0; o < O; ++o) {
          col_off[o] = wrap32(static_cast<int64_t>(colsum[o]) - static_cast<int64_t>(rq.weight_zero_point[o]) * count);
          rs_vec[o] = wrap32(rowsum);
        }
        r0 = conv_nd_requant_avx2(acc.data(), rs_vec.data(), false, rq.input_zero_point, col_off.data(),
                                  rq.weight_zero_point.data(), rq.has_bias ? rq.bias_term.data() : nullptr,
                                  rq.bias_fma, rq.bias_rcp, rq.multiplier.data(), rq.output_zero_point, rq.relu, O,
                                  dst);
      }
      for (int64_t o = r0; o < O; ++o) {
        const int32_t col_offset = wrap32(static_cast<int64_t>(colsum[o]) -
                                          static_cast<int64_t>(rq.weight_zero_point[o]) * count);
        dst[o] = finish_output(rq, o, acc[o], wrap32(rowsum), col_offset);
      }
    }
  }
}

}  // namespace qref
