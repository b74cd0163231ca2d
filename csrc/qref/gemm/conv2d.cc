// qref: the exact int8 GEMM/conv driver: buffers, threads and the prepared conv.
#include "qref/gemm/conv2d.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <utility>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "qref/gemm/api.h"
#include "qref/common/kernels.h"
#include "qref/gemm/requant_views.h"

namespace qref {

// The CPUs this process may run on (its affinity mask: a container or `taskset` limits it
// below the machine's count), else the machine's count, at least 1.
int default_threads() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

void run_parallel(int64_t nt, const std::function<void(int64_t)>& work) {
  std::vector<std::thread> pool;
  std::vector<int64_t> inline_parts;
  for (int64_t t = 1; t < nt; ++t) {
    try {
      pool.emplace_back(work, t);
    } catch (...) {  // no thread (std::system_error) or no memory for one: do it here
      inline_parts.push_back(t);
    }
  }
  struct Joiner {
    std::vector<std::thread>& p;
    ~Joiner() {
      for (auto& th : p)
        if (th.joinable()) th.join();
    }
  } joiner{pool};
  work(0);
  for (int64_t t : inline_parts) work(t);
}

int cap_threads(int num_threads) {
  // More threads than CPUs only adds OS threads and contention (the bytes do not depend on the
  // split), and the persistent helpers below would keep every one of them.
  return std::max(1, std::min(num_threads, default_threads()));
}

namespace {
// Buffers for packed weights and per-thread scratch, reused across calls:
// a fresh multi-megabyte aligned_alloc is an mmap whose first touch
// page-faults on every call, which cost as much as packing the weights.
// Plain free list under a mutex (calls may run concurrently: the GIL is
// released); at most kPoolKeep buffers and kPoolBytes bytes are kept.
class BufferPool {
 public:
  void* acquire(size_t bytes, size_t* got) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t best = free_.size();
      for (size_t i = 0; i < free_.size(); ++i)
        if (free_[i].second >= bytes && (best == free_.size() || free_[i].second < free_[best].second)) best = i;
      if (best != free_.size()) {
        auto e = free_[best];
        free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(best));
        held_ -= e.second;
        *got = e.second;
        return e.first;
      }
    }
    const size_t rounded = (bytes + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, rounded);
    if (!p) throw std::bad_alloc();
    *got = rounded;
    return p;
  }
  // fork(): the parent holds mu_ across the fork, so the child's copy of the free list is
  // consistent; the child (one thread, the forking one) gets a fresh unlocked mutex.
  void lock_for_fork() { mu_.lock(); }
  void unlock_in_parent() { mu_.unlock(); }
  void reset_in_child() { new (&mu_) std::mutex(); }
  void release(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes > kPoolBytes) {
      std::free(p);
      return;
    }
    free_.emplace_back(p, bytes);
    held_ += bytes;
    // Drop the smallest buffers first: big ones are the expensive ones to fault in.
    while (free_.size() > kPoolKeep || held_ > kPoolBytes) {
      size_t s = 0;
      for (size_t i = 1; i < free_.size(); ++i)
        if (free_[i].second < free_[s].second) s = i;
      held_ -= free_[s].second;
      std::free(free_[s].first);
      free_.erase(free_.begin() + static_cast<std::ptrdiff_t>(s));
    }
  }

 private:
  static constexpr size_t kPoolKeep = 16;
  static constexpr size_t kPoolBytes = size_t{256} << 20;
  std::mutex mu_;
  std::vector<std::pair<void*, size_t>> free_;
  size_t held_ = 0;
};

void register_fork_handlers();

BufferPool& pool() {
  static BufferPool* p = [] {
    auto* b = new BufferPool();  // never destroyed: no exit-order issues
    register_fork_handlers();
    return b;
  }();
  return *p;
}

// RAII handle on a pooled buffer (null for 0 bytes).
class PooledBuf {
 public:
  PooledBuf() = default;
  explicit PooledBuf(size_t bytes) {
    if (bytes) p_ = pool().acquire(bytes, &n_);
  }
  PooledBuf(PooledBuf&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; }
  PooledBuf(const PooledBuf&) = delete;
  PooledBuf& operator=(const PooledBuf&) = delete;
  ~PooledBuf() {
    if (p_) pool().release(p_, n_);
  }
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};

// Persistent helper threads (created on first need, never destroyed), so a
// call does not pay for creating threads. Tasks are "help with this call's
// rows" closures; a task that runs after its call finished finds no rows left
// and returns at once. fork() copies only the forking thread: the child starts
// a new, empty pool (register_fork_handlers), whose helpers it creates on need.
class WorkerPool {
 public:
  std::mutex& mutex() { return mu_; }

  // Queues `copies` runs of fn, with at least `workers` helper threads alive.
  void submit(const std::function<void()>& fn, int64_t copies, int64_t workers) {
    std::lock_guard<std::mutex> lock(mu_);
    while (nworkers_ < workers) {
      std::thread([this] { loop(); }).detach();  // may throw: the caller does the rows
      ++nworkers_;
    }
    for (int64_t i = 0; i < copies; ++i) q_.push_back(fn);
    cv_.notify_all();
  }

 private:
  void loop() {
    for (;;) {
      std::function<void()> fn;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return !q_.empty(); });
        fn = std::move(q_.front());
        q_.pop_front();
      }
      fn();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> q_;
  int64_t nworkers_ = 0;
};

// Never destroyed: helpers outlive static destructors. Replaced (the old one leaked) in a
// forked child, whose copy has helpers that do not exist there and a condition variable
// whose waiter counts name them.
std::atomic<WorkerPool*> g_workers{nullptr};
std::mutex g_workers_init;

WorkerPool& workers() {
  WorkerPool* w = g_workers.load(std::memory_order_acquire);
  if (w) return *w;
  pool();  // registers the fork handlers first
  std::lock_guard<std::mutex> lock(g_workers_init);
  w = g_workers.load(std::memory_order_relaxed);
  if (!w) {
    w = new WorkerPool();
    g_workers.store(w, std::memory_order_release);
  }
  return *w;
}

// pthread_atfork: no mutex of the core is held by a thread that does not exist in the
// child. prepare takes every one (in this order; no code path takes two at once), the
// parent releases them, the child re-creates them.
void fork_prepare() {
  g_workers_init.lock();
  pool().lock_for_fork();
  if (WorkerPool* w = g_workers.load()) w->mutex().lock();
}
void fork_parent() {
  if (WorkerPool* w = g_workers.load()) w->mutex().unlock();
  pool().unlock_in_parent();
  g_workers_init.unlock();
}
void fork_child() {
  if (g_workers.load()) g_workers.store(new WorkerPool());
  pool().reset_in_child();
  new (&g_workers_init) std::mutex();
}

void register_fork_handlers() { pthread_atfork(fork_prepare, fork_parent, fork_child); }
}  // namespace

// Out-of-line views of Requant's arrays for the kernel translation units compiled
// with ISA flags (kernels/conv2d_avx2.cc, conv2d_avx512vnni.cc; declared in
// gemm/requant_views.h): they call these instead of std::vector members, so no standard-library
// inline code is ever compiled there with -mavx2 / -mavx512* (the
// one-definition-rule hazard Highway documents).
const float* requant_multiplier(const Requant& r) { return r.multiplier.data(); }
const float* requant_bias_term(const Requant& r) { return r.has_bias ? r.bias_term.data() : nullptr; }
const int32_t* requant_col_offset(const Requant& r) { return r.col_offset.data(); }
const int32_t* requant_weight_zero_point(const Requant& r) { return r.weight_zero_point.data(); }

namespace {
void check_epilogue(const KernelEntry& k, const Conv2dEpilogue& e) {
  if (e.kind == Conv2dEpilogue::Kind::onednn && !k.onednn_epilogue)
    throw std::invalid_argument(std::string("kernel '") + k.name + "' does not implement the oneDNN epilogue");
}
}  // namespace

void run_conv2d_packed(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                       const void* packed, uint8_t* out, int num_threads, const Conv2dIntermediates* inter,
                       const Conv2dEpilogue& epi) {
  check_epilogue(k, epi);
  const Conv2dShape& s = p.shape;
  const int64_t rows = s.N * s.OH;
  if (rows == 0 || s.OW == 0 || s.O == 0) return;
  const size_t scratch = k.scratch_bytes(p);
  num_threads = cap_threads(num_threads);
  // Threads split the output rows m = n*OH + oh into contiguous chunks. Every
  // kernel computes each output element from its own receptive field only, so
  // the bytes do not depend on the split (tested for every thread count).
  // At least ~1M MACs per chunk (tens of microseconds even at 200 GMAC/s, a
  // few times the cost of starting a thread): small problems stay single-threaded.
  const int64_t macs_per_row = std::max<int64_t>(1, s.OW * s.O * s.K());
  const int64_t min_rows = std::max<int64_t>(1, (int64_t{1} << 20) / macs_per_row);
  int64_t nt = std::min<int64_t>(num_threads, (rows + min_rows - 1) / min_rows);
  nt = std::max<int64_t>(1, std::min<int64_t>(nt, 1024));
  // Threads take chunks of rows from a shared counter (about 8 per thread), so a
  // thread the OS deschedules on a busy host does not hold up the others.
  const int64_t chunk = std::max<int64_t>(min_rows, (rows + 8 * nt - 1) / (8 * nt));
  nt = std::min<int64_t>(nt, (rows + chunk - 1) / chunk);
  PooledBuf own_scratch(scratch);  // before any helper starts: an allocation failure throws here
  if (nt == 1) {
    k.run_rows(p, epi, w, packed, in, out, 0, rows, own_scratch.get(), inter);
    return;
  }
  // Helpers (persistent pool threads) share this state through a shared_ptr.
  // The caller waits only for the rows that were claimed: a helper the OS has
  // not scheduled yet (a busy core) finds no rows left, touches nothing but
  // this state, and returns -- so the call never waits for a timeslice.
  struct Shared {
    std::atomic<int64_t> next{0}, done{0};
    std::mutex mu;
    std::condition_variable cv;
  };
  auto sh = std::make_shared<Shared>();
  const Conv2dProblem* pp = &p;
  const KernelEntry* kk = &k;
  const Conv2dEpilogue* ee = &epi;
  auto claim_and_run = [=](Shared& st, void* scr) {
    for (;;) {
      const int64_t b = st.next.fetch_add(chunk);
      if (b >= rows) return;
      const int64_t e = std::min(rows, b + chunk);
      kk->run_rows(*pp, *ee, w, packed, in, out, b, e, scr, inter);
      if (st.done.fetch_add(e - b) + (e - b) == rows) {
        std::lock_guard<std::mutex> lock(st.mu);
        st.cv.notify_all();
      }
    }
  };
  try {
    workers().submit(
        [sh, claim_and_run, scratch, rows]() {
          if (sh->next.load() >= rows) return;
          try {
            PooledBuf scr(scratch);
            claim_and_run(*sh, scr.get());
          } catch (...) {  // no scratch: leave the rows to the others
          }
        },
        nt - 1, nt - 1);
  } catch (...) {  // no threads: the caller does the rows
  }
  claim_and_run(*sh, own_scratch.get());
  std::unique_lock<std::mutex> lock(sh->mu);
  sh->cv.wait(lock, [&] { return sh->done.load() == rows; });
}

void run_conv2d(const Conv2dProblem& p, const KernelEntry& k, const uint8_t* in, const int8_t* w,
                uint8_t* out, int num_threads, const Conv2dIntermediates* inter, const Conv2dEpilogue& e) {
  const Conv2dShape& s = p.shape;
  if (s.N * s.OH == 0 || s.OW == 0 || s.O == 0) return;
  PooledBuf packed(k.packed_weight_bytes(p));
  if (packed.get()) k.pack_weights(p, e, w, packed.get());
  run_conv2d_packed(p, k, in, w, packed.get(), out, num_threads, inter, e);
}

PreparedConv2d::PreparedConv2d(const Conv2dProblem& problem, const KernelEntry& k, const int8_t* w,
                               const Conv2dEpilogue& e)
    : p(problem), epilogue(e), kernel(&k), weight(w) {
  check_epilogue(k, e);
  packed_bytes = k.packed_weight_bytes(p);
  if (packed_bytes) {
    packed = std::aligned_alloc(64, (packed_bytes + 63) / 64 * 64);
    if (!packed) throw std::bad_alloc();
    k.pack_weights(p, epilogue, w, packed);
  }
}

PreparedConv2d::~PreparedConv2d() { std::free(packed); }

void PreparedConv2d::run(const uint8_t* in, uint8_t* out, int num_threads) const {
  run_conv2d_packed(p, *kernel, in, weight, packed, out, num_threads, nullptr, epilogue);
}

}  // namespace qref
