// qref: which fbgemm conv path a shape takes, and whether that path sums
// int16-saturating pairs under a given ISA semantics (docs/numerics.md §3, §4.6).
//
// fbgemm sources: src/FbgemmConv.cc (takeDepthWiseFastPath,
// takePointWiseFastPath, takeDirectConvPath, ConvFastPath),
// src/Fbgemm.cc fbgemmOptimizedGConv, src/PackWeightMatrixForGConv.cc
// numOfGroupsTogether.
#pragma once

#include "qref/gemm/conv2d.h"

namespace qref {

enum class ConvPath { depthwise = 0, groupwise = 1, pointwise = 2, im2col = 3 };

const char* path_name(ConvPath p);

// The ISA whose torch output is reproduced, reduced to the three facts that
// change numerics or path choice.
struct IsaSemantics {
  bool gemm_saturates = true;       // fbgemmInstructionSet() lacks VNNI (pointwise, im2col, linear)
  bool groupwise_saturates = true;  // the CPU (cpuinfo) lacks AVX512-VNNI
  bool avx512_host = false;         // cpuinfo has AVX512 f/bw/dq/vl: groupwise G_together uses 64
};

// The N-d rule of conv_nd.h (fbgemm_conv_nd_path) for a 2D conv (D = 1).
ConvPath fbgemm_conv_path(const Conv2dShape& s, bool avx512_host);

// Depthwise always saturates (its JIT is AVX2-only on every CPU, docs/numerics.md §4.2).
bool path_saturates(ConvPath p, const IsaSemantics& isa);

}  // namespace qref
