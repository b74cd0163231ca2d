// qref: the C++ entry points behind the Python binding (and for C++ users).
#pragma once

#include <cstdint>
#include <functional>

#include "qref/conv2d.h"
#include "qref/kernels.h"
#include "qref/paths.h"

namespace qref {

// The user's quantization parameters, before fbgemm's float32 rounding.
struct RequantArgs {
  double input_scale = 1.0;
  int32_t input_zero_point = 0;
  const double* weight_scale = nullptr;      // 1 (per-tensor) or O (per-channel)
  const int32_t* weight_zero_point = nullptr;  // same count
  bool per_channel = false;
  double output_scale = 1.0;
  int32_t output_zero_point = 0;
  bool relu = false;
  const float* bias = nullptr;  // O floats or null
};

// Per-channel multipliers, bias terms and column offsets (SPEC.md §2.1, §5.1).
// `w` is the OHWI weight.
Requant prepare_requant(const Conv2dShape& s, const int8_t* w, const RequantArgs& a);

// The CPUs this process may run on (sched_getaffinity), at least 1.
int default_threads();
// A thread count clamped to [1, default_threads()]: every driver caps its argument.
int cap_threads(int num_threads);
// Runs work(0) .. work(nt - 1), work(0) on the calling thread and the others on threads of
// their own; a thread the system refuses (EAGAIN: a pids or address-space limit) leaves its
// part to the calling thread, and every thread started is joined, whatever happens.
void run_parallel(int64_t nt, const std::function<void(int64_t)>& work);

// Runs kernel `k` over the whole problem with up to num_threads threads.
void run_conv2d(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                uint8_t* out, int num_threads, const Conv2dIntermediates* inter);

// The same with weights already packed by k.pack_weights(p, ...) (issue 3).
void run_conv2d_packed(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                       const void* packed, uint8_t* out, int num_threads, const Conv2dIntermediates* inter);

// A conv2d problem with its weights packed once for one kernel, run many times
// on inputs of exactly the problem's shape and quantization (issue 3: the torch
// bridge caches one per input shape / scale / ISA / kernel). `w` (OHWI) must
// outlive it: kernels may read it (the scalar kernel does).
struct PreparedConv2d {
  PreparedConv2d(const Conv2dProblem& problem, const KernelEntry& k, const int8_t* w);
  ~PreparedConv2d();
  PreparedConv2d(const PreparedConv2d&) = delete;
  PreparedConv2d& operator=(const PreparedConv2d&) = delete;
  void run(const uint8_t* in, uint8_t* out, int num_threads) const;

  Conv2dProblem p;
  const KernelEntry* kernel;
  const int8_t* weight;
  void* packed = nullptr;
  size_t packed_bytes = 0;
};

}  // namespace qref
