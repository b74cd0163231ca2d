// qref: CPU feature detection and the kernel table.
#include <cstddef>

#include "qref/common/kernels.h"

namespace qref {

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = [] {
    CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
    c.x86 = true;
    __builtin_cpu_init();
    // libgcc checks XCR0 (OS support for ymm/zmm state) before reporting these.
    c.avx2 = __builtin_cpu_supports("avx2");
    c.fma = __builtin_cpu_supports("fma");
    c.avx512f = __builtin_cpu_supports("avx512f");
    c.avx512bw = __builtin_cpu_supports("avx512bw");
    c.avx512dq = __builtin_cpu_supports("avx512dq");
    c.avx512vl = __builtin_cpu_supports("avx512vl");
    c.avx512vnni = __builtin_cpu_supports("avx512vnni");
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11
    c.avxvnni = __builtin_cpu_supports("avxvnni");
#endif
    {
      unsigned a, b, cc, d;
      __asm__ __volatile__("cpuid" : "=a"(a), "=b"(b), "=c"(cc), "=d"(d) : "a"(1), "c"(0));
      c.f16c = (cc >> 29) & 1u;
    }
#endif
    return c;
  }();
  return f;
}

bool avx2_kernel_usable() {
  const CpuFeatures& f = cpu_features();
  return f.x86 && f.avx2 && f.fma && f.f16c;  // -mavx2 -mfma -mf16c
}

bool avx512vnni_kernel_usable() {
  // libgcc's checks include the OS's XCR0 state for ymm/zmm.
  const CpuFeatures& f = cpu_features();
  return f.x86 && f.avx2 && f.fma && f.avx512() && f.avx512vnni;
}

namespace {
// Pointers (address constants), so the table needs no dynamic initialization.
const KernelEntry* const kTable[] = {
#ifdef QREF_HAVE_AVX512VNNI_KERNEL
    &kAvx512VnniKernel,
#endif
#ifdef QREF_HAVE_AVX2_KERNEL
    &kAvx2Kernel,
#endif
    &kScalarKernel,
};
}  // namespace

const KernelEntry* const* compiled_kernels(size_t* count) {
  *count = sizeof(kTable) / sizeof(kTable[0]);
  return kTable;
}

}  // namespace qref
