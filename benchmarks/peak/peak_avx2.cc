// The AVX2 saturating chain (fbgemm's AVX2 u8s8 inner loop): vpmaddubsw, vpmaddwd by ones,
// vpaddd, all ymm. Built with -mavx2 only (benchmarks/bench_peak.py). Written as inline
// assembly so the compiler can neither merge identical chains nor hoist them out of the
// loop; 8 independent accumulators (the loop-carried dependency is only vpaddd's), so the
// loop measures throughput, not latency.
#include <cstdint>

#include "asm_loop.h"
#include "probe.h"

namespace qref_probe {

int64_t avx2_chain_loop(int64_t iters, int32_t* sink) {
  int64_t n = iters;
  __asm__ volatile(
      "vpcmpeqb %%ymm15, %%ymm15, %%ymm15\n\t"  // a = 0xff bytes
      "vpabsb %%ymm15, %%ymm14\n\t"             // b = 1 bytes
      "vpabsw %%ymm15, %%ymm13\n\t"             // ones (int16)
      "vpxor %%ymm0, %%ymm0, %%ymm0\n\t"
      "vpxor %%ymm1, %%ymm1, %%ymm1\n\t"
      "vpxor %%ymm2, %%ymm2, %%ymm2\n\t"
      "vpxor %%ymm3, %%ymm3, %%ymm3\n\t"
      "vpxor %%ymm4, %%ymm4, %%ymm4\n\t"
      "vpxor %%ymm5, %%ymm5, %%ymm5\n\t"
      "vpxor %%ymm6, %%ymm6, %%ymm6\n\t"
      "vpxor %%ymm7, %%ymm7, %%ymm7\n\t"
#define CHAIN(acc, t)                                 \
  "vpmaddubsw %%ymm14, %%ymm15, %%ymm" #t "\n\t"      \
  "vpmaddwd %%ymm13, %%ymm" #t ", %%ymm" #t "\n\t"    \
  "vpaddd %%ymm" #t ", %%ymm" #acc ", %%ymm" #acc "\n\t"
      QREF_PROBE_LOOP(CHAIN(0, 8) CHAIN(1, 9) CHAIN(2, 10) CHAIN(3, 11) CHAIN(4, 12) CHAIN(5, 8) CHAIN(6, 9)
                          CHAIN(7, 10))
#undef CHAIN
      "vpaddd %%ymm1, %%ymm0, %%ymm0\n\t"
      "vpaddd %%ymm3, %%ymm2, %%ymm2\n\t"
      "vpaddd %%ymm5, %%ymm4, %%ymm4\n\t"
      "vpaddd %%ymm7, %%ymm6, %%ymm6\n\t"
      "vpaddd %%ymm2, %%ymm0, %%ymm0\n\t"
      "vpaddd %%ymm6, %%ymm4, %%ymm4\n\t"
      "vpaddd %%ymm4, %%ymm0, %%ymm0\n\t"
      QREF_PROBE_STORE_YMM0
      QREF_PROBE_OPERANDS
      : QREF_PROBE_CLOBBERS);
  return iters * 8 * 32;
}

}  // namespace qref_probe
