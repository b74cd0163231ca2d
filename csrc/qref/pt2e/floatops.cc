// qref: inductor's float reductions (floatops.h).
#include "qref/pt2e/floatops.h"

namespace qref {

namespace {

float horizontal_sum(const float* x, int64_t n, int lanes, float* v) {
  for (int j = 0; j < lanes; ++j) v[j] = 0.f;
  int64_t k = 0;
  for (; k + lanes <= n; k += lanes) {
    for (int j = 0; j < lanes; ++j) v[j] = v[j] + x[k + j];
  }
  // masked tail: lanes < n - k add, the others keep their value
  for (int j = 0; k + j < n; ++j) v[j] = v[j] + x[k + j];
  // at::vec::vec_reduce_all: pair lane i with lane i ^ s, halving s each step
  for (int s = lanes / 2; s >= 1; s /= 2) {
    float w[64];
    for (int i = 0; i < lanes; ++i) w[i] = v[i] + v[i ^ s];
    for (int i = 0; i < lanes; ++i) v[i] = w[i];
  }
  const float acc = 0.f;
  return acc + v[0];
}

}  // namespace

void inductor_sum_rows(const float* x, int64_t rows, int64_t n, int lanes, float* out) {
  float v[64];
  for (int64_t r = 0; r < rows; ++r) out[r] = horizontal_sum(x + r * n, n, lanes, v);
}

void inductor_sum_strided(const float* x, int64_t outer, int64_t n, int64_t inner, float* out) {
  for (int64_t o = 0; o < outer; ++o) {
    float* acc = out + o * inner;
    for (int64_t i = 0; i < inner; ++i) acc[i] = 0.f;
    for (int64_t k = 0; k < n; ++k) {
      const float* row = x + (o * n + k) * inner;
      for (int64_t i = 0; i < inner; ++i) acc[i] = acc[i] + row[i];
    }
  }
}

}  // namespace qref
