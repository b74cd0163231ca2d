// qref: oneDNN int8 conv2d arithmetic (scalar, normative). See onednn.h.
#include "qref/onednn/onednn.h"

#include <algorithm>
#include <cmath>
#include <thread>
#include <vector>

#include "qref/fbgemm/conv2d.h"
#include "qref/gemm/api.h"
#include "qref/common/kernels.h"
#include "qref/onednn/kernels/onednn_simd.h"
#include "qref/fbgemm/requant.h"

namespace qref {

OnednnParams prepare_onednn(const Conv2dShape& s, double input_scale, int32_t input_zero_point,
                            const double* weight_scale, bool per_channel, double output_scale,
                            int32_t output_zero_point, bool relu, const float* bias, OnednnVariant v) {
  OnednnParams p;
  p.input_zero_point = input_zero_point;
  p.output_zero_point = output_zero_point;
  p.relu = relu;
  p.variant = v;
  const OnednnScales sc = onednn_scales(input_scale, output_scale);  // requant.h
  p.src_scale = sc.ss;
  p.dst_scale_inv = sc.inv;
  p.dst_scale = sc.dst_scale;
  p.wei_scale.resize(s.O);
  p.comb_scale.resize(s.O);
  for (int64_t o = 0; o < s.O; ++o) {
    const double ws = weight_scale[per_channel ? o : 0];
    p.wei_scale[o] = v.weight_scale_reciprocal ? 1.0f / static_cast<float>(1.0 / ws) : static_cast<float>(ws);
    p.comb_scale[o] = p.src_scale * p.wei_scale[o];
  }
  p.has_bias = bias != nullptr;
  if (p.has_bias) p.bias.assign(bias, bias + s.O);
  return p;
}

namespace {

void run_rows(const Conv2dShape& s, const OnednnParams& p, const uint8_t* in, const int8_t* w, uint8_t* out,
              int64_t m_begin, int64_t m_end, const OnednnIntermediates* inter, bool transposed) {
  const int64_t Cg = s.cin_per_group(), Og = s.cout_per_group(), K = s.K();
  const bool sat = p.variant.saturate;
  const OnednnRequant rq = p.requant();
  const float* scale = p.scales();
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / s.OH, oh = m % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t pos = (n * s.OH + oh) * s.OW + ow;
      for (int64_t o = 0; o < s.O; ++o) {
        const int64_t g = o / Og;
        const int8_t* wo = w + o * K;
        int64_t acc = 0, colsum = 0;
        if (p.variant.kw_major_pairs && Cg == 1) {
          // Every tap position takes a slot (a padded one with product 0);
          // slots 2i and 2i+1 of the kw-major order are one int16 pair.
          int32_t pending = 0;
          int64_t slot = 0;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            for (int64_t kh = 0; kh < s.KH; ++kh, ++slot) {
              int64_t ih, iw;
              int32_t pr = 0;
              if (onednn_input_index(transposed, oh, kh, s.stride_h, s.pad_h, s.dilation_h, s.H, &ih) &&
                  onednn_input_index(transposed, ow, kw, s.stride_w, s.pad_w, s.dilation_w, s.W, &iw)) {
                const int8_t wv = wo[kh * s.KW + kw];
                pr = static_cast<int32_t>(in[((n * s.H + ih) * s.W + iw) * s.C + g]) * wv;
                colsum += wv;
              }
              if (slot % 2 == 0) {
                pending = pr;
              } else {
                acc += sat16(pending + pr);
                pending = 0;
              }
            }
          }
          if (slot % 2 == 1) acc += pending;
        }
        for (int64_t kh = 0; kh < s.KH && !(p.variant.kw_major_pairs && Cg == 1); ++kh) {
          int64_t ih, iw;
          // padded (or off-grid) tap: no product, no compensation
          if (!onednn_input_index(transposed, oh, kh, s.stride_h, s.pad_h, s.dilation_h, s.H, &ih)) continue;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            if (!onednn_input_index(transposed, ow, kw, s.stride_w, s.pad_w, s.dilation_w, s.W, &iw)) continue;
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
        const float A = onednn_compensated(acc32, col32, rq.a_zp, rq.float_comp);  // requant.h
        const float y = onednn_prerounding(A, scale[o], rq.has_bias ? p.bias[o] : 0.f, rq);
        out[pos * s.O + o] = onednn_output(y);
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


// The same arithmetic as run_rows, organised for speed (no intermediates):
// weights repacked per group as [tap][channel][Og] int16 so the innermost loop
// runs over output channels with contiguous int32 accumulators, which the
// compiler vectorises at the baseline ISA (no ISA flags in this file). u8*s8
// products fit int16, so an int16 multiply is exact. Accumulation is done in
// uint32 (wrapping, like vpaddd) to stay free of signed-overflow UB.
struct FastPack {
  int64_t T = 0, Cg = 0, Og = 0;
  std::vector<int16_t> w;      // [g][t][c][Og]
  std::vector<uint32_t> wsum;  // [g][t][Og]: sum over c of w (per-tap colsum)
  std::vector<int16_t> wdw;    // depthwise: [t][g]
};

FastPack pack_fast(const Conv2dShape& s, const int8_t* w) {
  FastPack f;
  f.T = s.KH * s.KW;
  f.Cg = s.cin_per_group();
  f.Og = s.cout_per_group();
  const int64_t K = s.K();
  f.w.assign(static_cast<size_t>(s.groups * f.T * f.Cg * f.Og), 0);
  f.wsum.assign(static_cast<size_t>(s.groups * f.T * f.Og), 0);
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t t = 0; t < f.T; ++t)
      for (int64_t oc = 0; oc < f.Og; ++oc) {
        const int8_t* wt = w + (g * f.Og + oc) * K + t * f.Cg;
        uint32_t sum = 0;
        for (int64_t c = 0; c < f.Cg; ++c) {
          f.w[((g * f.T + t) * f.Cg + c) * f.Og + oc] = wt[c];
          sum += static_cast<uint32_t>(static_cast<int32_t>(wt[c]));
        }
        f.wsum[(g * f.T + t) * f.Og + oc] = sum;
      }
  if (f.Cg == 1 && f.Og == 1 && s.groups > 1) {
    f.wdw.assign(static_cast<size_t>(f.T * s.groups), 0);
    for (int64_t g = 0; g < s.groups; ++g)
      for (int64_t t = 0; t < f.T; ++t) f.wdw[t * s.groups + g] = w[g * K + t];
  }
  return f;
}

// The requantization of run_rows for one element (acc, colsum as wrapped uint32).
inline uint8_t requant_one(const OnednnParams& p, const OnednnRequant& rq, int64_t o, uint32_t acc, uint32_t col) {
  const float A = onednn_compensated(static_cast<int32_t>(acc), static_cast<int32_t>(col), rq.a_zp, rq.float_comp);
  return onednn_output(onednn_prerounding(A, p.scales()[o], rq.has_bias ? p.bias[o] : 0.f, rq));
}

// Calls tap(t, px) for each tap t = kh * KW + kw of output pixel (n, oh, ow) of a direct conv that
// reads a real input pixel (padded taps are skipped), px pointing at that pixel's C channels (NHWC).
template <class Tap>
inline void for_each_real_tap(const Conv2dShape& s, const uint8_t* in, int64_t n, int64_t oh, int64_t ow,
                              const Tap& tap) {
  int64_t ih, iw;
  for (int64_t kh = 0; kh < s.KH; ++kh) {
    if (!onednn_input_index(false, oh, kh, s.stride_h, s.pad_h, s.dilation_h, s.H, &ih)) continue;
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      if (!onednn_input_index(false, ow, kw, s.stride_w, s.pad_w, s.dilation_w, s.W, &iw)) continue;
      tap(kh * s.KW + kw, in + ((n * s.H + ih) * s.W + iw) * s.C);
    }
  }
}

void run_rows_fast(const Conv2dShape& s, const OnednnParams& p, const FastPack& f, const uint8_t* in,
                   uint8_t* out, int64_t m_begin, int64_t m_end) {
  const int64_t Og = f.Og, Cg = f.Cg, T = f.T;
  const bool sat = p.variant.saturate;
  const OnednnRequant rq = p.requant();
  std::vector<uint32_t> acc(static_cast<size_t>(Og)), col(static_cast<size_t>(Og));
  std::vector<uint32_t> dacc(static_cast<size_t>(s.groups)), dcol(static_cast<size_t>(s.groups));
  uint32_t* __restrict accp = acc.data();
  uint32_t* __restrict colp = col.data();
  for (int64_t m = m_begin; m < m_end; ++m) {
    const int64_t n = m / s.OH, oh = m % s.OH;
    for (int64_t ow = 0; ow < s.OW; ++ow) {
      const int64_t pos = (n * s.OH + oh) * s.OW + ow;
      if (Og == 1 && Cg == 1 && s.groups > 1) {
        // Depthwise: vectorise over the groups (contiguous NHWC channels). A
        // single product per tap and channel never saturates int16.
        uint32_t* __restrict a = dacc.data();
        uint32_t* __restrict cs = dcol.data();
        const int64_t G = s.groups;
        for (int64_t g = 0; g < G; ++g) a[g] = cs[g] = 0;
        for_each_real_tap(s, in, n, oh, ow, [&](int64_t t, const uint8_t* __restrict px) {
          const int16_t* __restrict wt = f.wdw.data() + t * G;
          for (int64_t g = 0; g < G; ++g) {
            a[g] += static_cast<uint32_t>(static_cast<int32_t>(static_cast<int16_t>(static_cast<int16_t>(px[g]) * wt[g])));
            cs[g] += static_cast<uint32_t>(static_cast<int32_t>(wt[g]));
          }
        });
        for (int64_t g = 0; g < G; ++g) out[pos * s.O + g] = requant_one(p, rq, g, a[g], cs[g]);
        continue;
      }
      for (int64_t g = 0; g < s.groups; ++g) {
        for (int64_t oc = 0; oc < Og; ++oc) accp[oc] = colp[oc] = 0;
        for_each_real_tap(s, in, n, oh, ow, [&](int64_t t, const uint8_t* pixel) {
          uint32_t* __restrict acc_g = accp;
          uint32_t* __restrict col_g = colp;
          const uint8_t* px = pixel + g * Cg;
          const int16_t* wt = f.w.data() + (g * T + t) * Cg * Og;
          const uint32_t* ws = f.wsum.data() + (g * T + t) * Og;
          for (int64_t oc = 0; oc < Og; ++oc) col_g[oc] += ws[oc];
          if (!sat) {
            for (int64_t c = 0; c < Cg; ++c) {
              const int16_t a = static_cast<int16_t>(px[c]);
              const int16_t* __restrict wc = wt + c * Og;
              for (int64_t oc = 0; oc < Og; ++oc)
                acc_g[oc] += static_cast<uint32_t>(static_cast<int32_t>(static_cast<int16_t>(a * wc[oc])));
            }
          } else {
            for (int64_t c = 0; c < Cg; c += 2) {
              const int32_t a0 = px[c];
              const int32_t a1 = c + 1 < Cg ? px[c + 1] : 0;
              const int16_t* __restrict w0 = wt + c * Og;
              const int16_t* __restrict w1 = c + 1 < Cg ? wt + (c + 1) * Og : w0;
              const int32_t a1m = c + 1 < Cg ? a1 : 0;
              for (int64_t oc = 0; oc < Og; ++oc) {
                int32_t pr = a0 * w0[oc] + a1m * w1[oc];
                pr = pr < -32768 ? -32768 : (pr > 32767 ? 32767 : pr);
                acc_g[oc] += static_cast<uint32_t>(pr);
              }
            }
          }
        });
        uint8_t* o_out = out + pos * s.O + g * Og;
        for (int64_t oc = 0; oc < Og; ++oc) o_out[oc] = requant_one(p, rq, g * Og + oc, accp[oc], colp[oc]);
      }
    }
  }
}

// AVX512-VNNI integer core (kernels/onednn_avx512vnni.cc) for the exact,
// non-depthwise case; weights packed as described there.
struct VnniPack {
  std::vector<int8_t> wbuf;
  std::vector<int32_t> sbuf;
  std::vector<uint8_t> zeros;
  std::vector<int16_t> w16;  // depthwise tap pairs
  std::vector<float> fbuf;   // depthwise tap pairs: permuted scale and bias
  OnednnSimdProblem P{};
};

template <class T>
T* align64(std::vector<T>& v) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(v.data());
  return reinterpret_cast<T*>((a + 63) / 64 * 64);
}

// A depthwise packer's per-channel constants for channel g at `slot`: a_zp * colsum (wrapping like
// vpmulld), the scale (combined or the weight's) and the bias.
void put_channel(const OnednnParams& p, int64_t g, uint32_t colsum, int64_t slot, int32_t* cz, float* sc, float* bi) {
  cz[slot] = onednn_zp_comp(p.input_zero_point, static_cast<int32_t>(colsum));
  sc[slot] = p.scales()[g];
  bi[slot] = p.has_bias ? p.bias[g] : 0.f;
}

// The conv geometry every ISA problem carries (onednn_simd.h).
void set_geometry(const Conv2dShape& s, OnednnSimdProblem* P) {
  P->N = s.N; P->H = s.H; P->W = s.W; P->C = s.C; P->OH = s.OH; P->OW = s.OW; P->KH = s.KH; P->KW = s.KW;
  P->stride_h = s.stride_h; P->stride_w = s.stride_w; P->pad_h = s.pad_h; P->pad_w = s.pad_w;
  P->dilation_h = s.dilation_h; P->dilation_w = s.dilation_w; P->groups = s.groups;
}

// The geometry of a depthwise problem: one input and one output channel per group.
void set_dw_geometry(const Conv2dShape& s, OnednnSimdProblem* P) {
  set_geometry(s, P);
  P->Cg = 1; P->Og = 1; P->quads = 1; P->oblocks = 1;
}

// The per-channel tables of a depthwise VNNI-class kernel over Gp (padded) channels, which
// put_channel fills (a_zp * colsum, scale, bias), and the row of a_zp bytes the kernel reads
// for padding; the problem points at them and at no plain weights.
struct DwTables {
  int32_t* cz;
  float* sc;
  float* bi;
};

DwTables dw_tables(const OnednnParams& p, int64_t Gp, VnniPack* vp) {
  vp->sbuf.assign(static_cast<size_t>(Gp + 16), 0);
  vp->fbuf.assign(static_cast<size_t>(2 * Gp + 16), 0.f);
  vp->zeros.assign(static_cast<size_t>(Gp), static_cast<uint8_t>(p.input_zero_point));
  float* sc = align64(vp->fbuf);
  const DwTables t{align64(vp->sbuf), sc, sc + Gp};
  OnednnSimdProblem& P = vp->P;
  P.w = nullptr;
  P.wsum = nullptr;
  P.colp = t.cz;
  P.scale_p = t.sc;
  P.bias_p = t.bi;
  P.zp_row = vp->zeros.data();
  return t;
}

void pack_vnni(const Conv2dShape& s, const int8_t* w, VnniPack* vp) {
  OnednnSimdProblem& P = vp->P;
  set_geometry(s, &P);
  P.Cg = s.cin_per_group(); P.Og = s.cout_per_group();
  P.quads = (P.Cg + 3) / 4;
  P.oblocks = (P.Og + 15) / 16;
  const int64_t T = s.KH * s.KW, K = s.K();
  const size_t wn = static_cast<size_t>(s.groups * P.oblocks * T * P.quads * 64);
  const size_t sn = static_cast<size_t>(s.groups * P.oblocks * T * 16);
  vp->wbuf.assign(wn + 64, 0);
  vp->sbuf.assign(sn + 16, 0);
  int8_t* wp = align64(vp->wbuf);
  int32_t* sp = align64(vp->sbuf);
  for (int64_t g = 0; g < s.groups; ++g)
    for (int64_t ob = 0; ob < P.oblocks; ++ob)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t j = 0; j < 16; ++j) {
          const int64_t oc = ob * 16 + j;
          if (oc >= P.Og) continue;
          const int8_t* wo = w + (g * P.Og + oc) * K + t * P.Cg;
          int32_t sum = 0;
          for (int64_t c = 0; c < P.Cg; ++c) {
            wp[(((g * P.oblocks + ob) * T + t) * P.quads + c / 4) * 64 + j * 4 + c % 4] = wo[c];
            sum += wo[c];
          }
          sp[((g * P.oblocks + ob) * T + t) * 16 + j] = sum;
        }
  P.w = wp;
  P.wsum = sp;
  vp->zeros.assign(static_cast<size_t>(P.Cg + 4), 0);
  P.zeros = vp->zeros.data();
}

void pack_dw_avx512(const Conv2dShape& s, const int8_t* w, VnniPack* vp) {
  OnednnSimdProblem& P = vp->P;
  set_dw_geometry(s, &P);
  const int64_t T = s.KH * s.KW, G = s.groups, Gp = (G + 15) / 16 * 16;
  vp->sbuf.assign(static_cast<size_t>(T * Gp + 16), 0);
  int32_t* sp = align64(vp->sbuf);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t t = 0; t < T; ++t) sp[t * Gp + g] = w[g * T + t];
  P.w = nullptr;
  P.wsum = sp;
}

// Depthwise tap-pair kernel (onednn_simd.h onednn_avx512_dw_pair_rows): weights of taps
// (2p, 2p+1) interleaved per channel, per-channel constants in the lane order the kernel's
// vpunpck{l,h}wd leave the channels in (lane j of half h: channel 8*(j/4) + 4*h + j%4).
void pack_dw_pairs(const Conv2dShape& s, const OnednnParams& p, const int8_t* w, VnniPack* vp) {
  OnednnSimdProblem& P = vp->P;
  set_dw_geometry(s, &P);
  const int64_t T = s.KH * s.KW, TP = (T + 1) / 2, G = s.groups, NC = (G + 31) / 32, Gp = NC * 32;
  vp->w16.assign(static_cast<size_t>(TP * NC * 64 + 32), 0);
  int16_t* wp = align64(vp->w16);
  const DwTables tb = dw_tables(p, Gp, vp);
  for (int64_t cb = 0; cb < NC; ++cb)
    for (int64_t h = 0; h < 2; ++h)
      for (int64_t j = 0; j < 16; ++j) {
        const int64_t g = cb * 32 + 8 * (j / 4) + 4 * h + j % 4;
        const int64_t slot = cb * 32 + h * 16 + j;
        if (g >= G) continue;
        uint32_t colsum = 0;
        for (int64_t t = 0; t < T; ++t) {
          const int8_t wv = w[g * T + t];
          colsum += static_cast<uint32_t>(static_cast<int32_t>(wv));
          wp[((t / 2) * NC + cb) * 64 + h * 32 + j * 2 + t % 2] = wv;
        }
        put_channel(p, g, colsum, slot, tb.cz, tb.sc, tb.bi);
      }
  P.wpair = wp;
}

// Depthwise VNNI kernel (onednn_simd.h onednn_vnni_dw_rows): per tap and 64-channel chunk,
// four weight vectors each keeping the bytes of one channel per int32 lane; per-channel
// constants in quarter order (lane q of quarter j: channel 4q + j).
void pack_dw_quads(const Conv2dShape& s, const OnednnParams& p, const int8_t* w, VnniPack* vp) {
  OnednnSimdProblem& P = vp->P;
  set_dw_geometry(s, &P);
  const int64_t T = s.KH * s.KW, G = s.groups, NC = (G + 63) / 64, Gp = NC * 64;
  vp->wbuf.assign(static_cast<size_t>(T * NC * 256 + 64), 0);
  int8_t* wq = align64(vp->wbuf);
  const DwTables tb = dw_tables(p, Gp, vp);
  for (int64_t g = 0; g < G; ++g) {
    const int64_t cb = g / 64, c = g % 64, q = c / 4, j = c % 4;
    const int64_t slot = cb * 64 + j * 16 + q;
    uint32_t colsum = 0;
    for (int64_t t = 0; t < T; ++t) {
      const int8_t wv = w[g * T + t];
      colsum += static_cast<uint32_t>(static_cast<int32_t>(wv));
      wq[((t * NC + cb) * 4 + j) * 64 + c] = wv;  // byte c = 4q + j of quarter j's vector
    }
    put_channel(p, g, colsum, slot, tb.cz, tb.sc, tb.bi);
  }
  P.wquad = wq;
}

bool g_simd_enabled = true;
bool g_dw_vnni = true;
}  // namespace

void set_onednn_dw_vnni(bool enabled) { g_dw_vnni = enabled; }

void set_onednn_simd(bool enabled) { g_simd_enabled = enabled; }

// The routes, fastest first (each gives the reference loop's bytes:
// tests/test_onednn.py test_fast_equals_reference):
//  kGemm   exact class on the AVX512-VNNI conv2d kernel's GEMM (the exact int8 GEMM,
//          fbgemm/kernels/conv2d_avx512vnni.cc) with oneDNN's epilogue (gemm/epilogue.h)
//  kVnni   the oneDNN-specific VNNI core (float compensation; shapes the GEMM kernel hands
//          to its AVX2 depthwise code, which saturates)
//  kDwPairs depthwise (one input and one output channel per group), integer compensation,
//          every class (one product per channel pair never saturates): two taps per vpmaddwd
//          (kDwQuads: the same with VNNI, one product per int32 lane of vpdpbusd, no shuffles)
//  kDw512  the same with float compensation (or kernels over 64 taps)
//  kFast   portable repacked loop; kReference the plain loop (intermediates, transposed,
//          kw-major pairs)
struct OnednnConv2d::Impl {
  enum Route { kReference, kFast, kVnni, kDw512, kDwPairs, kDwQuads, kGemm };
  Conv2dShape s;
  OnednnParams p;
  const int8_t* w = nullptr;
  bool transposed = false;
  Route route = kReference;
  FastPack fp;
  VnniPack vp;
  Conv2dEpilogue od;
  std::unique_ptr<PreparedConv2d> gemm;
};

namespace {
// The AVX512-VNNI conv2d kernel's exact GEMM can carry oneDNN's epilogue: exact int32
// products and integer compensation (the "vnni" class; ref:any's divide_dst too), not a
// shape it forwards to the AVX2 depthwise code (use_depthwise in fbgemm/kernels/common-inl.h:
// Cg == 1, groups >= 8, Og <= 4; that code saturates pairs), and the kernel usable here.
bool gemm_eligible(const Conv2dShape& s, const OnednnVariant& v) {
#ifdef QREF_HAVE_AVX512VNNI_KERNEL
  if (v.saturate || v.float_comp || v.kw_major_pairs) return false;
  if (s.cin_per_group() == 1 && s.groups >= 8 && s.cout_per_group() <= 4) return false;
  return avx512vnni_kernel_usable();
#else
  (void)s;
  (void)v;
  return false;
#endif
}
}  // namespace

OnednnConv2d::OnednnConv2d(const Conv2dShape& s, const OnednnParams& p, const int8_t* w, bool transposed,
                           bool reference)
    : impl_(new Impl) {
  Impl& I = *impl_;
  I.s = s;
  I.p = p;
  I.w = w;
  I.transposed = transposed;
  const bool ref = reference || transposed || p.variant.kw_major_pairs;
  const CpuFeatures& cpu = cpu_features();
  const bool dw = s.cin_per_group() == 1 && s.cout_per_group() == 1 && s.groups > 1;
  if (ref) {
    I.route = Impl::kReference;
  } else if (g_simd_enabled && !dw && gemm_eligible(s, p.variant)) {
#ifdef QREF_HAVE_AVX512VNNI_KERNEL
    I.route = Impl::kGemm;
    const OnednnParams& q = I.p;  // the arrays the epilogue points into live in I
    I.od.kind = Conv2dEpilogue::Kind::onednn;
    I.od.onednn = q.requant();
    I.od.scale = q.scales();
    I.od.bias = q.has_bias ? q.bias.data() : nullptr;
    // fbgemm's Requant supplies the column sums (col_offset = colsum with w_zp = 0) and
    // the input zero point the GEMM's im2col fills padded taps with; its float terms are
    // replaced by the epilogue's.
    const double one = 1.0;
    const int32_t zero = 0;
    RequantArgs ra;
    ra.input_zero_point = q.input_zero_point;
    ra.weight_scale = &one;
    ra.weight_zero_point = &zero;
    Conv2dProblem pr;
    pr.shape = s;
    pr.rq = prepare_requant(s, w, ra);
    pr.saturate = false;
    I.gemm.reset(new PreparedConv2d(pr, kAvx512VnniKernel, w, I.od));
#endif
  } else if (g_simd_enabled && dw && cpu.avx512() && !p.variant.float_comp && s.KH * s.KW <= 64) {
    if (cpu.avx512vnni && g_dw_vnni) {
      I.route = Impl::kDwQuads;
      pack_dw_quads(s, I.p, w, &I.vp);
    } else {
      I.route = Impl::kDwPairs;
      pack_dw_pairs(s, I.p, w, &I.vp);
    }
    OnednnSimdProblem& P = I.vp.P;
    P.rq = I.p.requant();  // float_comp is false here
    P.out = nullptr;  // set per run
    P.O = s.O;
  } else if (g_simd_enabled && ((!dw && !p.variant.saturate && cpu.avx512() && cpu.avx512vnni) ||
                                (dw && cpu.avx512()))) {
    // Depthwise products never saturate (one product per pair), on every class.
    I.route = dw ? Impl::kDw512 : Impl::kVnni;
    if (dw) {
      pack_dw_avx512(s, w, &I.vp);
    } else {
      pack_vnni(s, w, &I.vp);
    }
    const OnednnParams& q = I.p;
    OnednnSimdProblem& P = I.vp.P;
    P.rq = q.requant();
    P.scale = q.scales();
    P.bias = q.has_bias ? q.bias.data() : nullptr;
    P.out = nullptr;  // set per run
    P.O = s.O;
  } else {
    I.route = Impl::kFast;
    I.fp = pack_fast(s, w);
  }
}

OnednnConv2d::~OnednnConv2d() = default;

const Conv2dShape& OnednnConv2d::shape() const { return impl_->s; }

const char* OnednnConv2d::route() const {
  switch (impl_->route) {
    case Impl::kGemm: return "vnni_gemm";
    case Impl::kVnni: return "vnni";
    case Impl::kDw512: return "dw512";
    case Impl::kDwPairs: return "dw512_pairs";
    case Impl::kDwQuads: return "dw_vnni";
    case Impl::kFast: return "portable";
    default: return "reference";
  }
}

size_t OnednnConv2d::packed_bytes() const {
  const Impl& I = *impl_;
  switch (I.route) {
    case Impl::kGemm: return I.gemm->packed_bytes;
    case Impl::kVnni:
    case Impl::kDw512:
    case Impl::kDwPairs:
    case Impl::kDwQuads:
      return I.vp.wbuf.size() + I.vp.sbuf.size() * 4 + I.vp.zeros.size() + I.vp.w16.size() * 2 +
             I.vp.fbuf.size() * 4;
    case Impl::kFast: return I.fp.w.size() * 2 + I.fp.wsum.size() * 4 + I.fp.wdw.size() * 2;
    default: return 0;
  }
}

void OnednnConv2d::run(const uint8_t* in, uint8_t* out, int num_threads,
                       const OnednnIntermediates* inter) const {
  const Impl& I = *impl_;
  const Conv2dShape& s = I.s;
  const int64_t rows = s.N * s.OH;
  if (rows == 0 || s.OW == 0 || s.O == 0) return;
  num_threads = cap_threads(num_threads);
  if (I.route == Impl::kGemm) {
    I.gemm->run(in, out, num_threads);  // gemm/conv2d.cc: the threaded driver
    return;
  }
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * s.K());
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 16) / macs_per_row);
  int64_t nt = std::min<int64_t>(num_threads, (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  const int64_t chunk = (rows + nt - 1) / nt;
  OnednnSimdProblem P = I.vp.P;
  P.out = out;
  auto work = [&](int64_t t) {
    const int64_t b = t * chunk, e = std::min(rows, b + chunk);
    if (b >= e) return;
    switch (I.route) {
#ifdef QREF_HAVE_AVX512VNNI_KERNEL  // the AVX-512 translation units (x86 builds; CMakeLists.txt)
      case Impl::kVnni: onednn_vnni_rows(P, in, b, e); break;
      case Impl::kDw512: onednn_avx512_dw_rows(P, in, b, e); break;
      case Impl::kDwPairs: onednn_avx512_dw_pair_rows(P, in, b, e); break;
      case Impl::kDwQuads: onednn_vnni_dw_rows(P, in, b, e); break;
#endif
      case Impl::kFast: run_rows_fast(s, I.p, I.fp, in, out, b, e); break;
      default: run_rows(s, I.p, in, I.w, out, b, e, inter, I.transposed); break;
    }
  };
  run_parallel(nt, work);
}

void run_onednn_conv2d(const Conv2dShape& s, const OnednnParams& p, const uint8_t* in, const int8_t* w,
                       uint8_t* out, int num_threads, const OnednnIntermediates* inter, bool transposed) {
  if (s.N * s.OH == 0 || s.OW == 0 || s.O == 0) return;
  // Intermediates come from the plain reference loop.
  const OnednnConv2d conv(s, p, w, transposed, /*reference=*/inter != nullptr);
  conv.run(in, out, num_threads, inter);
}

}  // namespace qref
