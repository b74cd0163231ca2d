// The inline-assembly frame every peak loop shares (peak_*.cc): the aligned counted loop
// around a body, the operands (%0: the iteration count, counted down; %1: the sink the
// summed accumulators are stored to) and the clobbers of the 16 vector registers the loops
// use. Macros only (string pieces of one asm statement), so each ISA file still compiles
// with its own flags and nothing else.
#pragma once

// The loop: `body` runs `n` times; the label is local (1b), so one file can hold many loops.
#define QREF_PROBE_LOOP(body) \
  ".p2align 5\n"              \
  "1:\n\t" body               \
  "dec %0\n\t"                \
  "jnz 1b\n\t"

// Output and input operands of a loop function with locals `n` (count) and `sink`.
#define QREF_PROBE_OPERANDS : "+r"(n) : "r"(sink)

// Memory, flags and vector registers 0-15 (xmm names cover ymm/zmm); more can follow.
#define QREF_PROBE_CLOBBERS                                                                                  \
  "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", \
      "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"

// Stores the total in register 0 (ymm) to the sink and leaves the AVX state clean.
#define QREF_PROBE_STORE_YMM0 \
  "vmovdqu %%ymm0, (%1)\n\t"  \
  "vzeroupper\n\t"
