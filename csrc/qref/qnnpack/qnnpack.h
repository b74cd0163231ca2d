// qref::qnnpack -- torch's QNNPACK engine: conv2d (any groups: QNNPACK's gemm, conv and depthwise
// kernels all compute the same exact accumulator), linear, add and the lookup-table ops, as plain
// reference loops over requant.h.
#pragma once

#include <cstdint>

#include "qref/qnnpack/requant.h"

namespace qref {
namespace qnnpack {

struct ConvShape {
  int64_t N, C, H, W;        // input, NCHW
  int64_t O, KH, KW;         // weight (O, C/groups, KH, KW)
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w, groups;
  int64_t OH() const { return (H + 2 * pad_h - dilation_h * (KH - 1) - 1) / stride_h + 1; }
  int64_t OW() const { return (W + 2 * pad_w - dilation_w * (KW - 1) - 1) / stride_w + 1; }
};

// Requantization per output channel: the int32 bias, the float scale, the kernel zero point.
struct ConvQuant {
  int32_t input_zero_point;
  const int32_t* weight_zero_point;  // (O,)
  const int32_t* bias;               // (O,) quantized bias (quantize_bias), never null
  const float* scale;                // (O,) requant_scale
  int32_t output_zero_point, output_min, output_max;
};

// out (N, O, OH, OW) uint8; acc / y (same shape, may be null): the int32 accumulator with the bias,
// the float32 value before rounding.
void conv2d_nchw(const ConvShape& s, const uint8_t* x, const int8_t* w, const ConvQuant& q, uint8_t* out,
                 int32_t* acc, float* y);

// x (M, K) uint8, w (N, K) int8 -> out (M, N); acc / y as above.
void linear(int64_t M, int64_t K, int64_t N, const uint8_t* x, const int8_t* w, const ConvQuant& q, uint8_t* out,
            int32_t* acc, float* y);

void add(int64_t n, const uint8_t* a, const uint8_t* b, const AddParams& p, uint8_t* out);

void lut_table(int kind, float x_scale, int32_t x_zp, float y_scale, int32_t y_zp, int32_t y_min, int32_t y_max,
               uint8_t* table);
void lut_apply(int64_t n, const uint8_t* x, const uint8_t* table, uint8_t* out);

}  // namespace qnnpack
}  // namespace qref
