// A deliberately naive int8 conv2d with AVX2, as a kernel author might first write it.
#pragma once

#include <cstdint>

#include "qref/conv2d.h"

struct NaiveConvParams {
  qref::Conv2dShape shape;  // finalized (OH, OW set)
  float input_scale, output_scale;
  int32_t input_zero_point, output_zero_point;
  const float* weight_scale;       // per channel (O values)
  const int32_t* weight_zero_point;  // per channel (O values)
  const float* bias;               // O values or null
  bool relu;
};

// version 1: the first attempt; version 2: the fixed one. NHWC in/out, OHWI weights.
void naive_conv_avx2(int version, const NaiveConvParams& p, const uint8_t* in, const int8_t* w, uint8_t* out);
