// qref peak probe: one core's int8 multiply-accumulate ceiling per instruction sequence.
// Each ISA's loop lives in its own file compiled with that ISA's flags only (peak_*.cc);
// probe_main.cc (generic flags) checks the CPU before calling one. Every loop returns
// the number of int8 multiply-accumulates it performed, and keeps its result live.
#pragma once
#include <cstdint>

namespace qref_probe {
// (a) vpdpbusd zmm: 64 u8 x s8 products per instruction.
int64_t vnni512_loop(int64_t iters, int32_t* sink);
// (b) AVX2 saturating chain: vpmaddubsw ymm, vpmaddwd ymm by ones, vpaddd ymm: 32 products.
int64_t avx2_chain_loop(int64_t iters, int32_t* sink);
// (b') the same chain in 512-bit form (vpmaddubsw zmm + vpdpwssd by ones), for reference.
int64_t avx512_chain_loop(int64_t iters, int32_t* sink);
// (c) AVX-VNNI vpdpbusd ymm (VEX): 32 products.
int64_t avxvnni_loop(int64_t iters, int32_t* sink);
}  // namespace qref_probe
