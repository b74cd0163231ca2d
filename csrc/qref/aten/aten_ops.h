// qref::aten -- ATen's quantized (non-conv) CPU ops, bit for bit. Plain C++
// entry points (no pybind11); element type chosen by `s8` (false: quint8 as
// uint8_t, true: qint8 as int8_t). Formulas: aten_ref.h; per-op notes in
// aten_ops.cc and docs/ops.md.
#pragma once

#include <cstdint>

namespace qref {
namespace aten {

// Elementwise ops run the way TensorIterator's cpu_kernel_vec runs them: one
// chunk per OpenMP thread when n > 32768 (at::internal::GRAIN_SIZE), in each
// chunk a SIMD body over whole blocks of Vectorized<q>::size() elements,
// then a scalar tail. `cap` (Cap) and `num_threads` say which.
// `simd` false runs the scalar reference even where a vectorized body
// (kernels/, same bytes) is usable.
struct Sched {
  int cap;
  int num_threads;
  bool simd = true;
  // every element through the scalar op: what cpu_kernel_vec does when the
  // operands' inner strides differ (e.g. a channels_last input written to a
  // contiguous output).
  bool scalar_only = false;
};

void quantize_per_tensor(const float* x, int64_t n, double scale, int64_t zp, bool s8, void* out, int num_threads);
void quantize_per_channel(const float* x, int64_t outer, int64_t channels, int64_t inner, const double* scales,
                          const int64_t* zps, bool s8, void* out);
void dequantize_per_tensor(const void* q, int64_t n, double scale, int64_t zp, bool s8, float* out);
void dequantize_per_channel(const void* q, int64_t outer, int64_t channels, int64_t inner, const double* scales,
                            const int64_t* zps, bool s8, float* out);

enum BinaryOp : int { kAdd = 0, kAddRelu = 1, kMul = 2, kMulRelu = 3 };
void binary(int op, const void* a, const void* b, int64_t n, double sa, int64_t za, double sb, int64_t zb, double so,
            int64_t zo, bool s8, void* out, Sched sched);

enum UnaryOp : int {
  kHardswish = 0,
  kHardsigmoid = 1,
  kLeakyRelu = 2,
  kThreshold = 3,
  kSigmoid = 4,
  kTanh = 5,
  kElu = 6,
  kGelu = 7,
  kGeluTanh = 8
};
// arg0/arg1/arg2: leaky_relu negative_slope; threshold threshold, value; elu
// alpha, scale, input_scale.
void unary(int op, const void* x, int64_t n, double si, int64_t zi, double so, int64_t zo, double arg0, double arg1,
           double arg2, bool s8, void* out, Sched sched);

// quantized clamp / hardtanh / relu6: bounds quantized with the input's qparams
// (quantize_val), then an integer clamp. has_lo/has_hi select the bounds.
void clamp(const void* x, int64_t n, double scale, int64_t zp, bool has_lo, double lo, bool has_hi, double hi, bool s8,
           void* out);

// quantized add_scalar (BinaryOps.cpp _add_scalar_out): writes out and its
// qparams.
void add_scalar(const void* x, int64_t n, double scale, int64_t zp, double c, bool relu, bool s8, void* out,
                double* out_scale, int64_t* out_zp, Sched sched);

// quantized mul_scalar (BinaryOps.cpp _mul_scalar_out): writes out and its
// qparams.
void mul_scalar(const void* x, int64_t n, double scale, int64_t zp, double c, bool relu, bool s8, void* out,
                double* out_scale, int64_t* out_zp);

// quantized prelu over (outer, channels, inner) with one quantized weight per
// channel (qprelu_out_kernel).
void prelu(const void* x, int64_t outer, int64_t channels, int64_t inner, const void* w, double si, int64_t zi,
           double sw, int64_t zw, double so, int64_t zo, bool s8, void* out);

// Channels-last concatenation along C of `count` NHWC inputs (qcat_nhwc_kernel).
void cat_nhwc(const void* const* xs, const int64_t* cs, const double* scales, const int64_t* zps, int64_t count,
              int64_t pixels, double scale, int64_t zp, bool relu, bool s8, void* out, int cap);

// max pooling over planes (planes x H x W, NCHW order).
void max_pool2d(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t kh, int64_t kw,
                int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool s8, void* out);
// The same max pool on an (n, ih, iw, c) channels-last array.
void max_pool2d_nhwc(const void* x, int64_t n, int64_t ih, int64_t iw, int64_t c, int64_t oh, int64_t ow, int64_t kh,
                     int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, int64_t dh, int64_t dw, bool s8,
                     void* out);

// avg_pool2d: NCHW (avg_pool2d_out_frame) or NHWC (qavg_pool2d_nhwc_kernel).
void avg_pool2d_nchw(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, int64_t kh,
                     int64_t kw, int64_t sh, int64_t sw, int64_t ph, int64_t pw, bool count_include_pad,
                     int64_t divisor_override, double si, int64_t zi, double so, int64_t zo, bool s8, void* out);
void avg_pool_nhwc(const void* x, int64_t batch, int64_t channels, int64_t id, int64_t ih, int64_t iw, int64_t od,
                   int64_t oh, int64_t ow, int64_t kd, int64_t kh, int64_t kw, int64_t sd, int64_t sh, int64_t sw,
                   int64_t pd, int64_t ph, int64_t pw, bool count_include_pad, int64_t divisor_override, double si,
                   int64_t zi, double so, int64_t zo, bool s8, void* out, int cap);

// adaptive average pooling, 2-d (id = od = 1) and 3-d.
void adaptive_avg_pool_nchw(const void* x, int64_t planes, int64_t id, int64_t ih, int64_t iw, int64_t od, int64_t oh,
                            int64_t ow, bool s8, void* out);
void adaptive_avg_pool_nhwc(const void* x, int64_t batch, int64_t channels, int64_t id, int64_t ih, int64_t iw,
                            int64_t od, int64_t oh, int64_t ow, double si, int64_t zi, double so, int64_t zo, bool s8,
                            void* out, int cap);

// mean over the innermost `inner` elements of each of `outer` rows.
void mean_inner(const void* x, int64_t outer, int64_t inner, bool s8, void* out);

// upsample_nearest2d (a gather) and upsample_bilinear2d on planes (NCHW
// order). scale_h/scale_w <= 0: none given. `contracted`: the FMA-contracted
// arithmetic of the channels_last kernel under AVX2/AVX512.
void upsample_nearest2d(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow, double scale_h,
                        double scale_w, bool s8, void* out);
void upsample_bilinear2d(const void* x, int64_t planes, int64_t ih, int64_t iw, int64_t oh, int64_t ow,
                         bool align_corners, double scale_h, double scale_w, double si, int64_t zi, double so,
                         int64_t zo, bool s8, void* out, bool contracted);

// quantized::batch_norm (and _relu) on NHWC data (pixels x channels);
// weight/bias may be null.
void batch_norm_nhwc(const void* x, int64_t pixels, int64_t channels, const float* weight, const float* bias,
                     const float* mean, const float* var, double eps, double si, int64_t zi, double so, int64_t zo,
                     bool relu, bool s8, void* out, int cap);

// quantized layer_norm (per_channel = false: gamma/beta of N values) and
// group_norm / instance_norm (per_channel = true: one value per channel) over
// M contiguous groups of N elements; gamma/beta may be null.
void normalize(const void* x, int64_t M, int64_t N, const float* gamma, const float* beta, bool per_channel,
               int64_t num_channels, int64_t num_groups, double eps, double xs, int64_t xz, double ys, int64_t yz,
               bool s8, void* out, int cap);

// quantized::softmax over the last dimension (qsoftmax.cpp: quantize_per_tensor
// of the float softmax of the dequantized input): `rows` rows of n elements.
void softmax_lastdim(const void* x, int64_t rows, int64_t n, double si, int64_t zi, double so, int64_t zo, bool s8,
                     void* out, int cap);

// quantized::linear_dynamic (and _relu) with fbgemm's packed weights
// (qlinear_dynamic.cpp PackedLinearWeight::apply_dynamic_impl): x (M x K)
// float, w (N x K) int8 with one scale/zero point (per_channel false) or N of
// them; bias N floats or null. Writes out (M x N) floats and the activation's
// dynamic qparams.
void linear_dynamic(const float* x, int64_t M, int64_t K, const int8_t* w, int64_t N, const float* w_scales,
                    const int32_t* w_zps, bool per_channel, const float* bias, bool reduce_range, bool relu,
                    float* out, double* x_scale, int32_t* x_zp);

// fbgemm/ATen ChooseQuantizationParams (quant_utils.h) for [min, max] and
// [qmin, qmax]: scale (double) and zero point.
void choose_qparams(float min, float max, int32_t qmin, int32_t qmax, bool reduce_range, double* scale,
                    int32_t* zp);

}  // namespace aten
}  // namespace qref
