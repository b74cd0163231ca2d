// qref: the N-d driver and kernels of fbgemm's conv3d / transposed paths (../conv_nd.h).
// Private to the library (not installed).
#pragma once

#include <cstdint>

#include "qref/common/kernels.h"
#include "qref/fbgemm/conv_nd.h"

namespace qref {

// Runs the whole problem with up to num_threads threads. Kernel `k` of the dispatch table
// (common/kernels.h) decides the loops of the depthwise and direct transposed paths: the plain
// reference ("scalar", and always with `inter`), or the channel-vectorised loops
// (conv_nd_depthwise_rows, conv_transpose_direct_rows; same bytes, tests:
// test_conv3d_kernels_agree, test_transposed_kernels_agree), with the AVX2 helpers of
// conv_nd_avx2.cc where k.conv_nd_avx2. `inter` (may be null) receives acc / raw / y per output
// element (NDHWC).
void run_conv_nd(const ConvNdProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w, uint8_t* out,
                 int num_threads, const Conv2dIntermediates* inter);

// Scalar kernels (kernels/conv_nd_scalar.cc): output rows m in [m_begin, m_end),
// m = (n * OD + od) * OH + oh.
void conv_nd_scalar_rows(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                         int64_t m_begin, int64_t m_end, uint8_t* scratch, const Conv2dIntermediates* inter);
// The depthwise path (Cg == 1) with channels innermost: the loops over output channels are
// plain int32 arithmetic the compiler vectorises. Same arithmetic as conv_nd_scalar_rows.
void conv_nd_depthwise_rows(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                            int64_t m_begin, int64_t m_end, bool avx2);
// fbgemm's direct transposed path (scatter; docs/numerics.md §4.5), one image n.
void conv_transpose_direct_scalar(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                                  int64_t n, const Conv2dIntermediates* inter);
// The same, vectorised over output channels, for output rows m = n * OH + oh in [m_begin, m_end).
void conv_transpose_direct_rows(const ConvNdProblem& p, const int8_t* w, const uint8_t* in, uint8_t* out,
                                int64_t m_begin, int64_t m_end, bool avx2);


// AVX2 helpers (conv_nd_avx2.cc, compiled with the AVX2 flags of CMakeLists.txt; call only
// when avx2_kernel_usable()). Depthwise (G == C, Cg == 1, O = G): weights of tap pairs
// interleaved per channel; accumulation with vpmaddubsw pairs; the requantization of
// ../requant.h with intrinsics; the direct transposed path's per-tap channel reduction.
void conv_nd_dw_pack_avx2(const int8_t* w, int64_t T, int64_t C, int8_t* wpairs);
bool conv_nd_dw_acc_avx2(const uint8_t* const* taps, int64_t T2, const int8_t* wpairs, int64_t C, int32_t* acc,
                         int32_t* rowsum);
int64_t conv_nd_requant_avx2(const int32_t* acc, const int32_t* rowsum, bool rowsum_saturates, int32_t a_zp,
                             const int32_t* col_offset, const int32_t* w_zp, const float* bias_term,
                             bool bias_fma, float bias_rcp, const float* multiplier, int32_t out_zp, bool relu,
                             int64_t O, uint8_t* dst);
int64_t conv_nd_direct_tap_avx2(const uint8_t* px, const int8_t* wq, int64_t IC, int64_t O, int32_t* acc,
                                int64_t* rowsum);

}  // namespace qref
