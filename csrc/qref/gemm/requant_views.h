// Out-of-line views of Requant's arrays (defined in gemm/conv2d.cc, generic code) for the
// kernel translation units compiled with ISA flags: they read Requant through these rather
// than through std::vector members, so no standard-library inline code is compiled there
// under -mavx2 / -mavx512*. Declarations only; safe to include from any ISA file.
#pragma once

#include <cstdint>

namespace qref {
struct Requant;

const float* requant_multiplier(const Requant& r);
const float* requant_bias_term(const Requant& r);  // null without bias
const int32_t* requant_col_offset(const Requant& r);
const int32_t* requant_weight_zero_point(const Requant& r);
}  // namespace qref
