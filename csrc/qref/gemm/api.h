// qref: the exact int8 GEMM/conv driver: runs a Conv2dProblem with a kernel of the
// dispatch table (common/kernels.h), threaded, optionally with its weights packed once.
#pragma once

#include <cstdint>
#include <functional>

#include "qref/gemm/conv2d.h"
#include "qref/common/kernels.h"
#include "qref/gemm/epilogue.h"

namespace qref {

// The CPUs this process may run on (sched_getaffinity), at least 1.
int default_threads();
// A thread count clamped to [1, default_threads()]: every driver caps its argument.
int cap_threads(int num_threads);
// Runs work(0) .. work(nt - 1), work(0) on the calling thread and the others on threads of
// their own; a thread the system refuses (EAGAIN: a pids or address-space limit) leaves its
// part to the calling thread, and every thread started is joined, whatever happens.
void run_parallel(int64_t nt, const std::function<void(int64_t)>& work);

// Runs kernel `k` over the whole problem with up to num_threads threads.
// `e`: the output stage (gemm/epilogue.h); the default is fbgemm's requantization.
void run_conv2d(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                uint8_t* out, int num_threads, const Conv2dIntermediates* inter,
                const Conv2dEpilogue& e = Conv2dEpilogue());

// The same with weights already packed by k.pack_weights(p, ...).
void run_conv2d_packed(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                       const void* packed, uint8_t* out, int num_threads, const Conv2dIntermediates* inter,
                       const Conv2dEpilogue& e = Conv2dEpilogue());

// A conv2d problem with its weights packed once for one kernel, run many times
// on inputs of exactly the problem's shape and quantization (the torch
// bridge caches one per input shape / scale / ISA / kernel). `w` (OHWI) must
// outlive it: kernels may read it (the scalar kernel does).
struct PreparedConv2d {
  PreparedConv2d(const Conv2dProblem& problem, const KernelEntry& k, const int8_t* w,
                 const Conv2dEpilogue& e = Conv2dEpilogue());
  ~PreparedConv2d();
  PreparedConv2d(const PreparedConv2d&) = delete;
  PreparedConv2d& operator=(const PreparedConv2d&) = delete;
  void run(const uint8_t* in, uint8_t* out, int num_threads) const;

  Conv2dProblem p;
  Conv2dEpilogue epilogue;
  const KernelEntry* kernel;
  const int8_t* weight;
  void* packed = nullptr;
  size_t packed_bytes = 0;
};

}  // namespace qref
