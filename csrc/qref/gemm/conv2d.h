// qref: parameter structs of a quantized conv2d, shared by every kernel.
//
// Layouts inside qref (as fbgemm's, see docs/numerics.md §2.4):
//   input   uint8  [N][H][W][C]            (NHWC)
//   weight  int8   [O][KH][KW][C/groups]   (channels last)
//   output  uint8  [N][OH][OW][O]          (NHWC)
// The reduction order of one output element inside its group is (kh, kw, c):
// k = (kh * KW + kw) * Cg + c. fbgemm's int16-saturating pairs are (2i, 2i+1)
// of that order on every path (docs/numerics.md §0, §4.6).
#pragma once

#include <cstdint>
#include <vector>

namespace qref {

struct Conv2dShape {
  int64_t N = 0, C = 0, H = 0, W = 0;  // input
  int64_t O = 0, KH = 0, KW = 0;       // weight
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
  int64_t OH = 0, OW = 0;  // derived by finalize()

  int64_t cin_per_group() const { return C / groups; }
  int64_t cout_per_group() const { return O / groups; }
  int64_t K() const { return KH * KW * cin_per_group(); }  // reduction length per group
  void finalize() {
    OH = (H + 2 * pad_h - dilation_h * (KH - 1) - 1) / stride_h + 1;
    OW = (W + 2 * pad_w - dilation_w * (KW - 1) - 1) / stride_w + 1;
  }
};

// fbgemm's requantization, prepared per output channel (docs/numerics.md §5). Every
// float here is already rounded to float32 in the order fbgemm rounds it; see
// requant.h for the formula and make_requant() there for how the
// per-channel values are derived from the user's scales.
struct Requant {
  int32_t input_zero_point = 0;
  int32_t output_zero_point = 0;
  bool relu = false;
  bool has_bias = false;
  std::vector<float> multiplier;          // M[o]   = f32(f32(a_s * w_s[o]) / f32(out_s))
  // Bias (only if has_bias), in the form fbgemm adds it (docs/numerics.md §5.1 step 4):
  //   per-channel (bias_fma false): bias_term[o] = f32(bias[o] / S[o]), added: f32(float(raw) + bias_term)
  //   per-tensor  (bias_fma true):  bias_term[o] = bias[o], bias_rcp = f32(1.0 / (double)S), fused:
  //     fma(bias_term[o], bias_rcp, float(raw)) with ONE rounding. fbgemm writes
  //     _mm256_add_ps(x, _mm256_mul_ps(bias, rcp)) in requantizeOutputProcessingAvx2 and the compiler
  //     contracts it into vfmadd; torch 2.13 matches the fused value at constructed ties on every path
  //     (tests/test_requant.py, tests/test_linear.py). The per-channel division cannot be contracted.
  std::vector<float> bias_term;
  bool bias_fma = false;
  float bias_rcp = 0.0f;
  std::vector<int32_t> col_offset;        // colsum[o] - w_zp[o] * K (int32, wrapping)
  std::vector<int32_t> weight_zero_point; // per output channel (broadcast if per-tensor)
};

// Which of fbgemm's int16 pair saturations apply to this problem. Decided
// once from the path (paths.h) and the ISA semantics the caller asked for.
struct Conv2dProblem {
  Conv2dShape shape;
  Requant rq;
  bool saturate = false;  // sum consecutive K pairs with int16 saturation
};

// Optional stage-by-stage outputs (NHWC, one per output element).
struct Conv2dIntermediates {
  int32_t* acc = nullptr;  // sum of products (with saturated pairs), before zero-point terms
  int32_t* raw = nullptr;  // after zero-point terms (what is converted to float)
  float* y = nullptr;      // pre-rounding value f32(f32(raw + bterm) * M)
};

}  // namespace qref
