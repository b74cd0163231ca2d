// qref::mlas: ONNX Runtime's CPU execution provider int8 arithmetic (MLAS), scalar reference.
//
// Every function computes what the named ORT kernel computes, in the order MLAS computes it
// (docs/onnxruntime.md derives each step from the source file and function it cites). Integer
// arithmetic wraps like the runtime's int32 registers; float32 operations are one IEEE
// operation each (this file is compiled with -ffp-contract=off), and an FMA the runtime issues
// is written as std::fma.
#pragma once

#include <cstdint>

namespace qref::mlas {

// How the U8S8 (uint8 activation, int8 weight) GEMM/conv kernels accumulate: exactly
// (AVX512-VNNI and AVX-VNNI kernels: vpdpbusd(s); also every U8U8 / S8S8 / depthwise kernel),
// or with vpmaddubsw's int16 saturation of each pair of products (the AVX2 and AVX512-core
// U8S8 kernels, QgemmU8S8KernelAvx2 / ConvSymKernelAvx2 on hosts without VNNI).
enum class U8S8 : int { kExact = 0, kSaturatePairs = 1 };

// MlasRequantizeOutput (onnxruntime/core/mlas/lib/quantize.cpp), also the post-processing of
// the ConvSym kernels (ConvSymKernelAvx2.S ConvertAccumulatorToFloat / ConvertFloatToInteger):
//   v = acc + bias[col] (int32);  f = f32(float(v) * scale[col or 0]);
//   f = min(max(f, lo - zp), hi - zp);  out = rne(f) + zp.
// acc: rows x cols int32; bias: cols int32 or nullptr; out: rows x cols bytes (uint8 or int8).
void requantize_output(const int32_t* acc, const int32_t* bias, int64_t rows, int64_t cols, const float* scale,
                       bool per_column, int32_t zero_point, bool out_s8, void* out);

// Integer GEMM as MLAS's QGEMM computes it: C[m][n] = sum_k (A[m][k] - za)(B[n][k] - zb[n]) in
// wrapping int32. A is rows x K (uint8 or int8 bytes), Bt is N x K (the weight rows). zb has N
// entries when zb_per_column, else 1. With U8S8::kSaturatePairs (A uint8, Bt int8 only) the raw
// products are summed in pairs (k, k+1), k even, each pair saturated to int16, as vpmaddubsw
// does, and the zero points enter through MLAS's row/column sums.
void qgemm(const void* A, bool a_s8, int32_t za, const void* Bt, bool b_s8, const int32_t* zb, bool zb_per_column,
           int64_t M, int64_t N, int64_t K, U8S8 mode, int32_t* C);

// QLinearConv / ConvInteger accumulators (qlinearconv.cc; conv_integer.cc): x is NHWC
// (N, H, W, C) bytes; w is ONNX's (M, C/groups, KH, KW) bytes; out is (N, OH, OW, M) int32.
// Padded taps read the activation zero point. The reduction order of a group is
// k = (kh * KW + kw) * Cg + c (ReorderFilter + NHWC im2col), which fixes the pairs of kSaturatePairs.
void conv2d_int32(const void* x, bool x_s8, int32_t x_zp, int64_t N, int64_t H, int64_t W, int64_t C, const void* w,
                  bool w_s8, int32_t w_zp, int64_t M, int64_t KH, int64_t KW, int64_t groups, int64_t stride_h,
                  int64_t stride_w, int64_t pad_top, int64_t pad_left, int64_t pad_bottom, int64_t pad_right,
                  int64_t dil_h, int64_t dil_w, U8S8 mode, int32_t* out, int64_t OH, int64_t OW);

// MlasQuantizeLinear (quantize.cpp, SSE2/AVX512F kernels): f = x / scale; clamp to
// [lo - zp, hi - zp] in float; rne; + zp.
void quantize_linear(const float* x, int64_t n, float scale, int32_t zero_point, bool out_s8, void* out);

// DequantizeLinear: f32(float(int32(x) - zp) * scale[c]); scale/zp per `axis` block: element i
// uses index (i / inner) % channels (channels == 1: per tensor).
void dequantize_linear(const void* x, bool x_s8, int64_t n, const float* scale, const int32_t* zero_point,
                       int64_t channels, int64_t inner, float* out);

// QLinearAdd (MlasQLinearAddKernelAvx2Helper, qladd_avx2.cpp, on AVX2 hosts):
//   ra = f32(sa / sc), rb = f32(sb / sc); fixed = f32(float(zc) - f32(fma(ra, za, f32(rb * zb))))
//   y = fma(a, ra, fma(b, rb, fixed)); r = rne(y) saturated to int16 then to the 8-bit type.
// a_scalar / b_scalar: that input has one element (its term is folded into `fixed`).
void qlinear_add(const void* a, float sa, int32_t za, bool a_scalar, const void* b, float sb, int32_t zb,
                 bool b_scalar, float sc, int32_t zc, bool s8, int64_t n, void* out);

// QLinearMul (MlasQLinearMulKernel, qlmul.cpp, SSE2): p = (a - za)(b - zb) int32;
//   ratio = f32(f32(sa * sb) / sc); y = f32(f32(float(p) * ratio) + float(zc)); rne; saturate.
void qlinear_mul(const void* a, float sa, int32_t za, const void* b, float sb, int32_t zb, bool b_scalar, float sc,
                 int32_t zc, bool s8, int64_t n, void* out);

// The 256-entry tables of QLinearSigmoid / QLinearLeakyRelu / QLinearConcat
// (QlinearBuildLookupTable, qlinear_lookup_table.cc): x_i = f32(sx * float(int(i) - zx)) for every
// byte value i (read as uint8 or int8), y_i = f(x_i), then quantize_linear(y, sy, zy).
// kind 0: identity (concat), 1: leaky relu (x >= 0 ? x : f32(alpha * x)),
// 2: sigmoid as MlasComputeLogistic's FMA3 kernel (LogisticKernelFma3.S).
void lookup_table(int kind, float alpha, float sx, int32_t zx, float sy, int32_t zy, bool s8, uint8_t* table);

// MlasComputeLogisticF32KernelFma3 on one value (clamp to [-18, 18], odd/even rational
// polynomial with FMAs, p / q + 0.5, max with 0).
float logistic_fma3(float x);

// QLinearGlobalAveragePool (MlasQLinearGlobalAveragePoolNchw/Nhwc, qlgavgpool.cpp):
// acc = sum(x) - zx * image (int32); scale = f32(sx / f32(sy * float(image)));
// then requantize_output(acc, scale, zy). x is (rows, image) with channels_last false, or
// (N, image, C) with true. Returns false when MLAS refuses the scale (it throws).
bool global_average_pool(const void* x, bool s8, int64_t batch, int64_t channels, int64_t image, bool channels_last,
                         float sx, int32_t zx, float sy, int32_t zy, void* out);

// QLinearAveragePool (qlinear_pool.cc, 2-D, not global): x dequantized to float
// f32(sx * float(int(x) - zx)), summed in window order (h, then w), divided by the count
// (kernel area with count_include_pad, else the in-image taps), then
// q = clamp(int(rne(f32(f32(avg / sy) + float(zy)))), lo, hi).
void average_pool2d(const void* x, bool s8, int64_t N, int64_t C, int64_t H, int64_t W, bool channels_last,
                    int64_t KH, int64_t KW, int64_t stride_h, int64_t stride_w, int64_t pad_top, int64_t pad_left,
                    bool count_include_pad, float sx, int32_t zx, float sy, int32_t zy, int64_t OH, int64_t OW,
                    void* out);

// DynamicQuantizeLinear (GetQuantizationParameter, core/util/qmath.h, uint8):
// min = min(min(x), 0), max = max(max(x), 0); scale = max == min ? 1 : f32((max - min) / 255);
// zp = rne(clamp(f32(0 - f32(min / scale)), 0, 255)).
void dynamic_qparams(const float* x, int64_t n, float* scale, int32_t* zero_point);

// MatMulIntegerToFloat / DynamicQuantizeMatMul output (MLAS_QGEMM_SCALE_BIAS_OUTPUT_PROCESSOR):
// y = f32(f32(float(acc) * scale[col or 0]) + bias[col]) (bias may be nullptr).
void scale_bias_output(const int32_t* acc, int64_t rows, int64_t cols, const float* scale, bool per_column,
                       const float* bias, float* out);

}  // namespace qref::mlas
