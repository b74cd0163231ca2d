// qref: fbgemm's conv2d set-up: the user's quantization parameters and the
// per-channel requantization constants fbgemm derives from them.
#pragma once

#include <cstdint>

#include "qref/fbgemm/paths.h"
#include "qref/gemm/conv2d.h"

namespace qref {

// The user's quantization parameters, before fbgemm's float32 rounding.
struct RequantArgs {
  double input_scale = 1.0;
  int32_t input_zero_point = 0;
  const double* weight_scale = nullptr;      // 1 (per-tensor) or O (per-channel)
  const int32_t* weight_zero_point = nullptr;  // same count
  bool per_channel = false;
  double output_scale = 1.0;
  int32_t output_zero_point = 0;
  bool relu = false;
  const float* bias = nullptr;  // O floats or null
};

// Per-channel multipliers, bias terms and column offsets (docs/numerics.md §2.1, §5.1).
// `w` is the OHWI weight.
Requant prepare_requant(const Conv2dShape& s, const int8_t* w, const RequantArgs& a);

}  // namespace qref
