// AVX-VNNI vpdpbusd ymm (VEX encoded, no AVX-512 needed). Built with -mavx2 -mavxvnni only
// (benchmarks/bench_peak.py); called only where the CPU reports AVX-VNNI. Inline assembly,
// 12 independent accumulators.
#include <cstdint>

#include "asm_loop.h"
#include "probe.h"

namespace qref_probe {

int64_t avxvnni_loop(int64_t iters, int32_t* sink) {
  int64_t n = iters;
  __asm__ volatile(
      "vpcmpeqb %%ymm15, %%ymm15, %%ymm15\n\t"
      "vpabsb %%ymm15, %%ymm14\n\t"
      "vpxor %%ymm0, %%ymm0, %%ymm0\n\t" "vpxor %%ymm1, %%ymm1, %%ymm1\n\t" "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpxor %%ymm3, %%ymm3, %%ymm3\n\t" "vpxor %%ymm4, %%ymm4, %%ymm4\n\t" "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
      "vpxor %%ymm6, %%ymm6, %%ymm6\n\t" "vpxor %%ymm7, %%ymm7, %%ymm7\n\t" "vpxor %%ymm8, %%ymm8, %%ymm8\n\t"
      "vpxor %%ymm9, %%ymm9, %%ymm9\n\t" "vpxor %%ymm10, %%ymm10, %%ymm10\n\t"
      "vpxor %%ymm11, %%ymm11, %%ymm11\n\t"
#define DP(acc) "%{vex%} vpdpbusd %%ymm14, %%ymm15, %%ymm" #acc "\n\t"
      QREF_PROBE_LOOP(DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10) DP(11))
#undef DP
      "vpaddd %%ymm1, %%ymm0, %%ymm0\n\t" "vpaddd %%ymm3, %%ymm2, %%ymm2\n\t" "vpaddd %%ymm5, %%ymm4, %%ymm4\n\t"
      "vpaddd %%ymm7, %%ymm6, %%ymm6\n\t" "vpaddd %%ymm9, %%ymm8, %%ymm8\n\t"
      "vpaddd %%ymm11, %%ymm10, %%ymm10\n\t" "vpaddd %%ymm2, %%ymm0, %%ymm0\n\t"
      "vpaddd %%ymm6, %%ymm4, %%ymm4\n\t" "vpaddd %%ymm10, %%ymm8, %%ymm8\n\t"
      "vpaddd %%ymm4, %%ymm0, %%ymm0\n\t" "vpaddd %%ymm8, %%ymm0, %%ymm0\n\t"
      QREF_PROBE_STORE_YMM0
      QREF_PROBE_OPERANDS
      : QREF_PROBE_CLOBBERS);
  return iters * 12 * 32;
}

}  // namespace qref_probe
