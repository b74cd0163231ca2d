// qref: int32/int16 register arithmetic shared by every engine (fbgemm's and oneDNN's
// requantization, the scalar references, the header-only reference.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

namespace qref {

// int32 arithmetic that wraps like vpaddd / vpmulld.
inline int32_t wrap32(int64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(static_cast<uint64_t>(v))); }

// int16 saturation (vpmaddubsw's pair sum, vpackssdw, vpaddsw).
inline int32_t sat16(int32_t v) { return v < -32768 ? -32768 : (v > 32767 ? 32767 : v); }

// cvtps2dq in the default MXCSR mode: round half to even; NaN and values
// outside int32 return the "integer indefinite" INT32_MIN (docs/numerics.md §5.4).
inline int32_t cvtps2dq(float y) {
  if (!(y >= -2147483648.0f && y < 2147483648.0f)) return std::numeric_limits<int32_t>::min();
  return static_cast<int32_t>(std::nearbyint(y));
}

}  // namespace qref
