// qref: the float reductions inductor generates C++ for between the int8 ops of a compiled PT2E
// program (sum, mean, the two-step var_mean of layer_norm), in the order that code adds
// (docs/pt2e.md, read with TORCH_LOGS=output_code, torch 2.13):
//
//   horizontal (the reduced elements are contiguous; vectorized along them with L lanes, L from
//   torch._inductor.cpu_vec_isa.pick_vec_isa(): 16 for AVX-512, 8 for AVX2):
//     lane j (j < L) starts at +0 and adds x[j], x[j+L], x[j+2L], ... in order (the last,
//     partial chunk is a masked add: only its lanes < n % L change);
//     then the horizontal combine of at::vec::vec_reduce_all: v[i] = v[i] + v[i ^ s] for
//     s = L/2, L/4, ..., 1, the result is lane 0; then the scalar accumulator: 0 + that.
//   vertical (the reduced elements are strided and the output index is the contiguous one;
//     vectorized along the outputs): each output starts at +0 and adds its elements one at a
//     time in memory order.
//
// Each addition rounds to float32 (inductor compiles with -ffp-contract=off, no fast-math).
// Welford (var_mean over more than 1024 elements, or a single row) and cascade summation (sums
// over more than 4096 elements) are other orders: not reproduced here.
#pragma once

#include <cstdint>

namespace qref {

// out[r] = inductor's horizontal sum of x[r*n .. r*n + n) with `lanes` lanes (a power of two).
void inductor_sum_rows(const float* x, int64_t rows, int64_t n, int lanes, float* out);

// x is [outer][n][inner] (row-major); out[o][i] = the sequential sum over k of x[o][k][i].
void inductor_sum_strided(const float* x, int64_t outer, int64_t n, int64_t inner, float* out);

}  // namespace qref
