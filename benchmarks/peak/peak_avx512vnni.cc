// vpdpbusd zmm (AVX512-VNNI), and the 512-bit form of the saturating chain (vpmaddubsw zmm +
// vpdpwssd by ones: what qref's VNNI kernel runs for fbgemm's AVX2 arithmetic). Built with
// the AVX-512 F/BW/VNNI flags only (benchmarks/bench_peak.py). Inline assembly, so nothing
// is merged or hoisted; 12 independent accumulators (more than vpdpbusd's latency times its
// throughput on current cores), so the loops measure throughput.
#include <cstdint>

#include "asm_loop.h"
#include "probe.h"

namespace qref_probe {

#define QREF_ZERO12                                                                                          \
  "vpxord %%zmm0, %%zmm0, %%zmm0\n\t" "vpxord %%zmm1, %%zmm1, %%zmm1\n\t" "vpxord %%zmm2, %%zmm2, %%zmm2\n\t" \
  "vpxord %%zmm3, %%zmm3, %%zmm3\n\t" "vpxord %%zmm4, %%zmm4, %%zmm4\n\t" "vpxord %%zmm5, %%zmm5, %%zmm5\n\t" \
  "vpxord %%zmm6, %%zmm6, %%zmm6\n\t" "vpxord %%zmm7, %%zmm7, %%zmm7\n\t" "vpxord %%zmm8, %%zmm8, %%zmm8\n\t" \
  "vpxord %%zmm9, %%zmm9, %%zmm9\n\t" "vpxord %%zmm10, %%zmm10, %%zmm10\n\t"                                  \
  "vpxord %%zmm11, %%zmm11, %%zmm11\n\t"
#define QREF_SUM12_STORE                                                                                     \
  "vpaddd %%zmm1, %%zmm0, %%zmm0\n\t" "vpaddd %%zmm3, %%zmm2, %%zmm2\n\t" "vpaddd %%zmm5, %%zmm4, %%zmm4\n\t" \
  "vpaddd %%zmm7, %%zmm6, %%zmm6\n\t" "vpaddd %%zmm9, %%zmm8, %%zmm8\n\t"                                     \
  "vpaddd %%zmm11, %%zmm10, %%zmm10\n\t" "vpaddd %%zmm2, %%zmm0, %%zmm0\n\t"                                 \
  "vpaddd %%zmm6, %%zmm4, %%zmm4\n\t" "vpaddd %%zmm10, %%zmm8, %%zmm8\n\t"                                   \
  "vpaddd %%zmm4, %%zmm0, %%zmm0\n\t" "vpaddd %%zmm8, %%zmm0, %%zmm0\n\t" "vmovdqu32 %%zmm0, (%1)\n\t"        \
  "vzeroupper\n\t"

int64_t vnni512_loop(int64_t iters, int32_t* sink) {
  int64_t n = iters;
  __asm__ volatile(
      "vpternlogd $0xff, %%zmm15, %%zmm15, %%zmm15\n\t"  // a = 0xff bytes
      "vpabsb %%zmm15, %%zmm14\n\t"                      // b = 1 bytes
      QREF_ZERO12
#define DP(acc) "vpdpbusd %%zmm14, %%zmm15, %%zmm" #acc "\n\t"
      QREF_PROBE_LOOP(DP(0) DP(1) DP(2) DP(3) DP(4) DP(5) DP(6) DP(7) DP(8) DP(9) DP(10) DP(11))
#undef DP
      QREF_SUM12_STORE
      QREF_PROBE_OPERANDS
      : QREF_PROBE_CLOBBERS, "xmm16", "xmm17");
  return iters * 12 * 64;
}

int64_t avx512_chain_loop(int64_t iters, int32_t* sink) {
  int64_t n = iters;
  __asm__ volatile(
      "vpternlogd $0xff, %%zmm15, %%zmm15, %%zmm15\n\t"
      "vpabsb %%zmm15, %%zmm14\n\t"
      "vpabsw %%zmm15, %%zmm13\n\t"  // ones (int16)
      QREF_ZERO12
#define CH(acc, t)                                   \
  "vpmaddubsw %%zmm14, %%zmm15, %%zmm" #t "\n\t"     \
  "vpdpwssd %%zmm13, %%zmm" #t ", %%zmm" #acc "\n\t"
      QREF_PROBE_LOOP(CH(0, 16) CH(1, 17) CH(2, 12) CH(3, 16) CH(4, 17) CH(5, 12) CH(6, 16) CH(7, 17) CH(8, 12)
                          CH(9, 16) CH(10, 17) CH(11, 12))
#undef CH
      QREF_SUM12_STORE
      QREF_PROBE_OPERANDS
      : QREF_PROBE_CLOBBERS, "xmm16", "xmm17");
  return iters * 12 * 64;
}

}  // namespace qref_probe
