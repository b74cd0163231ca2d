// qref: torch's "x86"/"onednn" quantized conv2d, i.e. oneDNN's int8
// convolution as PyTorch (qconv.cpp PackedConvWeightsOnednn, ideep conv.hpp)
// drives it. NORMATIVE scalar reference; see docs/onednn.md and docs/numerics.md §6.
//
// For one output element (n, oh, ow, o) of group g, over the taps that lie
// inside the image only (oneDNN skips padded taps and compensates the source
// zero point per position: mathematically sum((a - a_zp) * w)):
//   acc    = sum over real taps t, channel pairs (2i, 2i+1) of the group:
//              a[t][2i]*w[t][2i] + a[t][2i+1]*w[t][2i+1]
//            (pair summed and saturated to int16 where the kernel uses
//             vpmaddubsw: AVX2 and AVX512-without-VNNI oneDNN kernels)
//   colsum = sum over the same real taps of w
//   A      = float(acc - a_zp*colsum)                        (int32, most kernels)
//          = f32(f32(acc) + f32(f32(-colsum) * f32(a_zp)))   (AMX brgemm micro-kernel)
//   y      = f32(f32(A*ss)*ws[o])  (separate scales)  or  f32(A*f32(ss*ws[o]))  (combined)
//   y      = f32(y + bias[o]);  relu: y = max(y, 0)
//   y      = f32(f32(y*inv) + f32(out_zp));  out = rne(clamp(y, 0, 255))
// with ss = f32(1/f32(1/(double)a_scale)), inv = f32(1/f32(1/f32(1/(double)out_scale)))
// (PyTorch passes reciprocal scales, ideep inverts them again, the oneDNN
// kernel multiplies by 1/dst_scale: jit_brgemm_conv.cpp dst_scales_inv).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "qref/fbgemm/conv_nd.h"
#include "qref/gemm/conv2d.h"
#include "qref/onednn/requant.h"

namespace qref {

struct OnednnVariant {
  bool saturate = false;    // int16-saturating channel pairs (vpmaddubsw)
  bool combined = false;    // one scale f32(ss*ws[o]) instead of two multiplies
  bool float_comp = false;  // zero-point compensation in float (AMX micro-kernel)
  // One input channel per group on AVX512 without VNNI (brg_conv_fwd:avx512_core):
  // the taps are reduced in kw-major order (kw*KH + kh), padded taps keeping
  // their slot with a zero product, and consecutive taps form the int16 pairs.
  bool kw_major_pairs = false;
  // oneDNN's reference kernel (ref:any, AVX2 grouped convs with channels per
  // group not multiples of 8): y / dst_scale instead of y * (1 / dst_scale).
  bool divide_dst = false;
  // oneDNN matmul (torch's quantized linear): PyTorch hands oneDNN 1 / w_scale and ideep inverts
  // it, like the src and dst scales: ws = f32(1 / f32(1 / (double)w_scale)).
  bool weight_scale_reciprocal = false;
};

struct OnednnParams {
  int32_t input_zero_point = 0;
  int32_t output_zero_point = 0;
  bool relu = false;
  bool has_bias = false;
  OnednnVariant variant;
  float src_scale = 1.f;           // ss
  float dst_scale_inv = 1.f;       // inv
  float dst_scale = 1.f;           // f32(1 / f32(1 / (double)out_scale)) (divide_dst)
  std::vector<float> wei_scale;    // ws[o] (broadcast when per-tensor)
  std::vector<float> comb_scale;   // f32(ss * ws[o])
  std::vector<float> bias;         // f32 bias[o] (only if has_bias)

  // The constants of the one requantization (requant.h) and channel o's scale there.
  OnednnRequant requant() const {
    // requant.h's fields in order: ss, inv, dst_scale, a_zp, out_zp, relu, has_bias, combined,
    // divide_dst, float_comp
    return OnednnRequant{src_scale, dst_scale_inv, dst_scale, input_zero_point, output_zero_point,
                         relu, has_bias, variant.combined, variant.divide_dst, variant.float_comp};
  }
  const float* scales() const { return variant.combined ? comb_scale.data() : wei_scale.data(); }
};

// Scales as PyTorch/ideep hand them to oneDNN (docs/numerics.md §6.1).
OnednnParams prepare_onednn(const Conv2dShape& s, double input_scale, int32_t input_zero_point,
                            const double* weight_scale, bool per_channel, double output_scale,
                            int32_t output_zero_point, bool relu, const float* bias, OnednnVariant v);

// Optional per-element stages (NHWC like the output).
struct OnednnIntermediates {
  int32_t* acc = nullptr;     // sum of products over real taps (saturated pairs where applicable)
  int32_t* colsum = nullptr;  // sum of the weights over the same taps
  float* A = nullptr;         // zero-point-compensated accumulator as float
  float* y = nullptr;         // value before clamp and rounding
};

// in: NHWC uint8, w: OHWI int8, out: NHWC uint8.
// transposed: oneDNN deconvolution; w is then [O][KH][KW][C/groups] with
// w[g*Og+oc][kh][kw][c] = torch_weight[g*Cg+c][oc][kh][kw] (no kernel flip),
// and s.OH/s.OW must be set by the caller (output_padding included).
void run_onednn_conv2d(const Conv2dShape& s, const OnednnParams& p, const uint8_t* in, const int8_t* w,
                       uint8_t* out, int num_threads, const OnednnIntermediates* inter, bool transposed = false);

// A oneDNN conv2d with its weights packed once, run many times on
// inputs of exactly s's shape. `w` (and the arrays p points to: none, p is
// copied) must outlive it: the reference route reads w. `reference`: always the
// plain loop (the only route that fills OnednnIntermediates). route() names the
// implementation chosen at construction ("vnni_gemm": the AVX512-VNNI conv2d
// kernel's exact GEMM with oneDNN's epilogue; "vnni", "dw512", "portable",
// "reference"); set_onednn_simd is read then, not per run.
class OnednnConv2d {
 public:
  OnednnConv2d(const Conv2dShape& s, const OnednnParams& p, const int8_t* w, bool transposed = false,
               bool reference = false);
  ~OnednnConv2d();
  OnednnConv2d(const OnednnConv2d&) = delete;
  OnednnConv2d& operator=(const OnednnConv2d&) = delete;
  // Thread-safe (const): several runs may share one prepared conv.
  void run(const uint8_t* in, uint8_t* out, int num_threads, const OnednnIntermediates* inter = nullptr) const;
  const char* route() const;
  size_t packed_bytes() const;
  const Conv2dShape& shape() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// oneDNN's plain reference loop for Conv3d and deconvolution (2D as D = 1: the shape's
// spatial_dims 2), the compensation chains of requant.h: acc and colsum over the taps that read a
// real input pixel (deconvolution: o + pad - k*dil = i*stride), A by `comp`, then oneDNN's
// requantization with p's scales (p.variant: combined, divide_dst; saturate and kw_major_pairs
// are not used). in: [N][D][H][W][C] uint8; w: [O][KD][KH][KW][C/groups] int8 in conv form
// (deconvolution: regrouped, no kernel flip); out: [N][OD][OH][OW][O] with s.OD/OH/OW set by the
// caller (finalize()).
enum class OnednnComp { integer, float_comp, ref_deconv };
void run_onednn_conv_nd(const ConvNdShape& s, const OnednnParams& p, OnednnComp comp, const uint8_t* in,
                        const int8_t* w, uint8_t* out, int num_threads);

// Tests: false makes run_onednn_conv2d use the portable loops even where the
// AVX512-VNNI integer core could run (both must give the same bytes).
void set_onednn_simd(bool enabled);
// Tests: false makes depthwise convs take the AVX512 tap-pair kernel even on VNNI CPUs
// (so that kernel, which AVX512 CPUs without VNNI run, is tested on VNNI hosts too).
void set_onednn_dw_vnni(bool enabled);

// Input index along one dimension of output index `oi` through kernel tap `k` (the reference
// loops of onednn.cc and conv_nd.cc): direct conv i = oi*stride - pad + k*dil; transposed conv
// (oneDNN deconvolution) the input pixel whose scatter reaches oi: oi + pad - k*dil = i*stride.
// False when no real input pixel exists (padding, or not on the stride grid).
inline bool onednn_input_index(bool transposed, int64_t oi, int64_t k, int64_t stride, int64_t pad, int64_t dil,
                               int64_t n_in, int64_t* i) {
  if (!transposed) {
    *i = oi * stride - pad + k * dil;
    return *i >= 0 && *i < n_in;
  }
  const int64_t t = oi + pad - k * dil;
  if (t < 0 || t % stride != 0) return false;
  *i = t / stride;
  return *i < n_in;
}

}  // namespace qref
