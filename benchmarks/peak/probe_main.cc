// qref peak probe driver (generic flags): for each loop the CPU supports, the best of several
// timed runs in GMAC/s (int8 multiply-accumulates per second) on the calling thread; a loop
// whose ISA this CPU (or this build) lacks prints "skipped" with the reason.
// Output, one line per loop: `name gmacs|skipped reason`.
// Usage: peak_probe [seconds_per_loop]
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "probe.h"

namespace {

using Loop = int64_t (*)(int64_t, int32_t*);

double measure(Loop f, double seconds) {
  alignas(64) int32_t sink[16];
  int64_t iters = 1 << 10;
  // Grow until one run takes >= 0.5 ms, then keep the best of many runs filling `seconds`:
  // short runs fit inside one scheduler time slice, so on a shared host the best of them is
  // an uninterrupted one.
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    f(iters, sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (dt >= 5e-4) break;
    iters *= 2;
  }
  double best = 0.0, spent = 0.0;
  while (spent < seconds) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t macs = f(iters, sink);
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    spent += dt;
    const double g = macs / dt * 1e-9;
    if (g > best) best = g;
  }
  volatile int32_t keep = sink[0];
  (void)keep;
  return best;
}

void row(const char* name, bool cpu_ok, bool built, Loop f, const char* need, double seconds) {
  if (!built)
    std::printf("%s skipped (not built: the compiler lacks %s)\n", name, need);
  else if (!cpu_ok)
    std::printf("%s skipped (this CPU lacks %s)\n", name, need);
  else
    std::printf("%s %.1f\n", name, measure(f, seconds));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const double seconds = argc > 1 ? std::atof(argv[1]) : 0.5;
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
  const bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vnni");
#if defined(QREF_PROBE_AVXVNNI)
  const bool avxvnni = __builtin_cpu_supports("avxvnni");
#else
  const bool avxvnni = false;
#endif
#ifdef QREF_PROBE_AVX512
  row("vpdpbusd_zmm", avx512, true, qref_probe::vnni512_loop, "AVX512-VNNI", seconds);
  row("avx512_chain_zmm", avx512, true, qref_probe::avx512_chain_loop, "AVX512-VNNI", seconds);
#else
  row("vpdpbusd_zmm", avx512, false, nullptr, "AVX512-VNNI", seconds);
  row("avx512_chain_zmm", avx512, false, nullptr, "AVX512-VNNI", seconds);
#endif
  row("avx2_chain_ymm", avx2, true, qref_probe::avx2_chain_loop, "AVX2", seconds);
#ifdef QREF_PROBE_AVXVNNI
  row("avxvnni_ymm", avxvnni, true, qref_probe::avxvnni_loop, "AVX-VNNI", seconds);
#else
  row("avxvnni_ymm", avxvnni, false, nullptr, "AVX-VNNI", seconds);
#endif
  return 0;
}
