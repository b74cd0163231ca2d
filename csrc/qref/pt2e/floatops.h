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
//
//   Welford (var_mean when the two-step lowering is not taken: more than 1024 reduced elements,
//   or a single output row), horizontal, lanes 8 (AVX2) or 16 (AVX-512), at most 4096 * L elements
//   (at most 4096 steps per lane: inductor's WelfordHelper then keeps no cascade stack):
//     lane j takes x[j], x[j+L], ... (count c = n / L, shared index); point k (k = 0..c-1):
//       delta = x - mean; mean = mean + delta * f32(1 / (double)(k + 1)); m2 = m2 + delta * (x - mean);
//       weight = weight + 1;
//     the tail (t = n % L elements) goes to a separate masked accumulator: lane j < t holds
//       {mean x, m2 0, weight 1}, the other lanes {0, 0, 0}; index 1;
//     each accumulator is reduced across lanes by welford_vec_reduce_all: for s = 1, 2, 4, (8):
//       lane i = combine(lane i, shuffle_down(s)[i]), where the x86 shuffle_down gives lane i
//       (within each group of 4) lanes 3,3,1,1 for s = 1, lane 2 for s = 2, lane 4 / 8 (the
//       next group / half) for s = 4 / 8; a full accumulator combines with weights = index;
//     combine(a, b): delta = b.mean - a.mean; w = a.w + b.w; r = b.w / w (0 when w == 0);
//       mean = a.mean + delta * r; m2 = (a.m2 + b.m2) + ((delta * delta) * a.w) * r;
//     result = combine(tail result, main result) (an empty one is skipped); var = m2 / f32(N - c).
#pragma once

#include <cstdint>

namespace qref {

// out[r] = inductor's horizontal sum of x[r*n .. r*n + n) with `lanes` lanes (a power of two).
void inductor_sum_rows(const float* x, int64_t rows, int64_t n, int lanes, float* out);

// x is [outer][n][inner] (row-major); out[o][i] = the sequential sum over k of x[o][k][i].
void inductor_sum_strided(const float* x, int64_t outer, int64_t n, int64_t inner, float* out);

// inductor's vectorized Welford over each of `rows` contiguous rows of n floats (n <= 4096 * lanes,
// lanes 8 or 16): mean[r] and m2[r] (the sum of squared deviations, before the division).
void inductor_welford_rows(const float* x, int64_t rows, int64_t n, int lanes, float* mean, float* m2);

}  // namespace qref
