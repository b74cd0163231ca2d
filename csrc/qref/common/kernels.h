// qref: the kernel table. Every kernel computes the same bytes as the scalar
// reference (kernels/conv2d_scalar.cc) for the same Conv2dProblem; kernels
// differ only in speed. A kernel is usable only if it was compiled in AND the
// CPU (and OS) supports its instructions.
//
// Threading, buffers and dispatch live in conv2d.cc (generic code). Kernel
// translation units compiled with ISA flags see only this plain-C-like
// interface, so no inline template of the standard library is instantiated
// with AVX2 code generation (the one-definition-rule hazard Highway documents).
#pragma once

#include <cstddef>
#include <cstdint>

#include "qref/gemm/conv2d.h"
#include "qref/gemm/epilogue.h"

namespace qref {

// The loops a kernel runs fbgemm's N-d depthwise and direct transposed paths with
// (fbgemm/kernels/conv_nd_kernels.h): the plain reference, the channel-vectorised loops, or
// those with the AVX2 helpers of fbgemm/kernels/conv_nd_avx2.cc. Same bytes.
enum class ConvNdLoops { reference, vectorised, avx2 };

struct KernelEntry {
  const char* name;
  bool (*usable)();
  // Bytes of packed weights this kernel wants (0: it reads the OHWI weights).
  size_t (*packed_weight_bytes)(const Conv2dProblem& p);
  // Pack weights into `packed` (64-byte aligned, packed_weight_bytes long).
  void (*pack_weights)(const Conv2dProblem& p, const Conv2dEpilogue& e, const int8_t* w, void* packed);
  // Per-thread scratch bytes.
  size_t (*scratch_bytes)(const Conv2dProblem& p);
  // Compute output rows m in [m_begin, m_end), m = n * OH + oh (all OW, all O).
  // `inter` is only honoured by the scalar kernel (may be null).
  void (*run_rows)(const Conv2dProblem& p, const Conv2dEpilogue& e, const int8_t* w, const void* packed, const uint8_t* in,
                   uint8_t* out, int64_t m_begin, int64_t m_end, void* scratch,
                   const Conv2dIntermediates* inter);
  // Whether run_rows implements Conv2dEpilogue::Kind::onednn (every kernel implements fbgemm).
  bool onednn_epilogue;
  ConvNdLoops conv_nd;
};

// Kernels compiled into this build, best first; scalar is last and always usable.
const KernelEntry* const* compiled_kernels(size_t* count);

extern const KernelEntry kScalarKernel;
#ifdef QREF_HAVE_AVX2_KERNEL
extern const KernelEntry kAvx2Kernel;
#endif
#ifdef QREF_HAVE_AVX512VNNI_KERNEL
extern const KernelEntry kAvx512VnniKernel;
#endif

// CPU facts (cpuid + xgetbv, via the compiler's runtime).
struct CpuFeatures {
  bool x86 = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false;
  bool avx512vnni = false, avxvnni = false;
  bool avx512() const { return avx512f && avx512bw && avx512dq && avx512vl; }
};
const CpuFeatures& cpu_features();

// The features by name, in the order qref.cpu_features() lists them.
struct CpuFeatureName {
  const char* name;
  bool CpuFeatures::*flag;
};
inline constexpr CpuFeatureName kCpuFeatureNames[] = {
    {"x86", &CpuFeatures::x86},           {"avx2", &CpuFeatures::avx2},         {"fma", &CpuFeatures::fma},
    {"f16c", &CpuFeatures::f16c},         {"avx512f", &CpuFeatures::avx512f},   {"avx512bw", &CpuFeatures::avx512bw},
    {"avx512dq", &CpuFeatures::avx512dq}, {"avx512vl", &CpuFeatures::avx512vl}, {"avx512vnni", &CpuFeatures::avx512vnni},
    {"avxvnni", &CpuFeatures::avxvnni},
};

// Whether each ISA kernel may run here: everything its translation unit is compiled for
// (CMakeLists.txt), checked at run time. Defined in cpu.cc, i.e. in generic code, because
// they run on every CPU.
bool avx2_kernel_usable();
bool avx512vnni_kernel_usable();

}  // namespace qref
