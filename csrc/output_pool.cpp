// A per-process pool of large CPU output buffers: the y of fwd and the grad_phi of bwd.
//
// Why: glibc serves a buffer of more than 32 MiB with a fresh mmap and unmaps it on free, so
// every call of a training loop page-faults its outputs in again. At 256 x 32768 fp32 a fresh
// 32 MiB buffer costs ~11 ms to touch on the 2-core VM against ~1 ms for a warm one: ~10 ms of a
// ~70 ms forward + backward (bench/cpu_speed.py). The CUDA caching allocator exists for the same
// reason; this is its small CPU cousin, for our own outputs only.
//
// Policy:
//   * requests of at least kMinPooled bytes are rounded up to whole 2 MiB blocks (2 MiB aligned,
//     advised for transparent huge pages); smaller ones use at::empty as before;
//   * a freed buffer goes back to the pool, evicting the least recently pooled buffers while the
//     pool would hold more than the cap (REDGE_KERNELS_CPU_POOL_MB, default 1024; 0 turns the pool
//     off); a buffer larger than the cap is freed at once;
//   * a request takes a pooled buffer of exactly its rounded size, else allocates a new one.
// Tensors keep an allocator (this one), so resize_, pickling and the rest of torch work as usual.
//
// Development ops (no tensor arguments; internal, `_`-prefixed names):
//   redge_kernels_cpu::_pool_stats() -> [bytes held, buffers held, hits, misses, cap bytes];
//   _pool_set_cap(int) -> old cap (evicts down to the new cap; 0 empties and disables);
//   _pool_set_enabled(bool) -> old state (off: new outputs bypass the pool, which keeps what it
//   holds; for comparisons); _pool_clear() (frees every pooled buffer, and makes every thread drop
//   its kept kernel scratch at its next call: row_kernels_impl.h thread_scratch).
#include "redge_cpu.h"

#include <ATen/EmptyTensor.h>
#include <ATen/ops/empty.h>
#include <c10/core/Allocator.h>
#include <torch/library.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <list>
#include <mutex>
#include <vector>

namespace redge_kernels {
namespace {

constexpr size_t kBlock = size_t(1) << 21;      // 2 MiB: huge-page size and rounding unit
constexpr size_t kMinPooled = size_t(4) << 20;  // smaller outputs: at::empty (glibc's heap)

struct Buffer {
  void* ptr;
  size_t bytes;  // rounded size
};

// The pool cap in bytes from REDGE_KERNELS_CPU_POOL_MB: unset or empty -> the default (1024 MiB);
// a plain non-negative decimal integer of MiB up to kMaxPoolMb -> that (0 turns the pool off);
// anything else ("abc", "-5", "1e3", "+5", " 5", 1e20) -> a warning (once) and the default.
constexpr unsigned long long kDefaultPoolMb = 1024;
constexpr unsigned long long kMaxPoolMb = 1ull << 24;  // 16 TiB

size_t cap_from_env() {
  const char* e = std::getenv("REDGE_KERNELS_CPU_POOL_MB");
  if (e == nullptr || *e == '\0') return static_cast<size_t>(kDefaultPoolMb) << 20;
  unsigned long long mb = 0;
  bool ok = true;
  for (const char* c = e; *c != '\0'; ++c) {
    if (*c < '0' || *c > '9' || mb > kMaxPoolMb) {
      ok = false;
      break;
    }
    mb = mb * 10 + static_cast<unsigned long long>(*c - '0');
  }
  if (!ok || mb > kMaxPoolMb) {
    TORCH_WARN_ONCE("redge_kernels: REDGE_KERNELS_CPU_POOL_MB=\"", e,
                    "\" is not a whole number of MiB in [0, ", kMaxPoolMb,
                    "]; using the default of ", kDefaultPoolMb, " MiB");
    mb = kDefaultPoolMb;
  }
  return static_cast<size_t>(mb) << 20;
}

class OutputPool final : public c10::Allocator {
 public:
  OutputPool() : cap_(cap_from_env()) {}

  static size_t rounded(size_t n) { return (n + kBlock - 1) / kBlock * kBlock; }

  bool pools(size_t n) {
    std::lock_guard<std::mutex> lock(mu_);
    return enabled_ && n >= kMinPooled && rounded(n) <= cap_;
  }

  bool set_enabled(bool on) {
    std::lock_guard<std::mutex> lock(mu_);
    const bool old = enabled_;
    enabled_ = on;
    return old;
  }

  c10::DataPtr allocate(size_t n) override {
    const size_t bytes = rounded(std::max<size_t>(n, 1));
    Buffer* b = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (auto it = free_.begin(); it != free_.end(); ++it) {
        if (it->bytes == bytes) {
          b = new Buffer(*it);
          held_ -= bytes;
          free_.erase(it);
          ++hits_;
          break;
        }
      }
      if (b == nullptr) ++misses_;
    }
    if (b == nullptr) {
      void* p = std::aligned_alloc(kBlock, bytes);
      TORCH_CHECK(p != nullptr, "redge_kernels (cpu): out of memory allocating ", bytes, " bytes");
      advise_huge_pages(p, static_cast<int64_t>(bytes));
      b = new Buffer{p, bytes};
    }
    return {b->ptr, b, &OutputPool::release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }

  void copy_data(void* dest, const void* src, std::size_t count) const override {
    std::memcpy(dest, src, count);
  }

  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> lock(mu_);
    return {static_cast<int64_t>(held_), static_cast<int64_t>(free_.size()), hits_, misses_,
            static_cast<int64_t>(cap_)};
  }

  int64_t set_cap(int64_t cap) {
    TORCH_CHECK(cap >= 0, "redge_kernels_cpu::_pool_set_cap: the cap must be >= 0 bytes, got ", cap);
    std::vector<void*> drop;
    int64_t old;
    {
      std::lock_guard<std::mutex> lock(mu_);
      old = static_cast<int64_t>(cap_);
      cap_ = static_cast<size_t>(cap);
      evict_to(cap_, drop);
    }
    for (void* p : drop) std::free(p);
    return old;
  }

  void clear() {
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      evict_to(0, drop);
    }
    for (void* p : drop) std::free(p);
  }

  static OutputPool& get() {
    static OutputPool* pool = new OutputPool();  // never destroyed: tensors may outlive statics
    return *pool;
  }

 private:
  // Moves the oldest pooled buffers into `drop` until at most `limit` bytes are held (mu_ held).
  void evict_to(size_t limit, std::vector<void*>& drop) {
    while (held_ > limit && !free_.empty()) {
      drop.push_back(free_.back().ptr);
      held_ -= free_.back().bytes;
      free_.pop_back();
    }
  }

  static void release(void* ctx) {
    Buffer* b = static_cast<Buffer*>(ctx);
    OutputPool& pool = get();
    std::vector<void*> drop;
    {
      std::lock_guard<std::mutex> lock(pool.mu_);
      if (b->bytes <= pool.cap_) {
        pool.free_.push_front(*b);
        pool.held_ += b->bytes;
        pool.evict_to(pool.cap_, drop);
      } else {
        drop.push_back(b->ptr);
      }
    }
    delete b;
    for (void* p : drop) std::free(p);
  }

  std::mutex mu_;
  std::list<Buffer> free_;  // most recently pooled first
  size_t held_ = 0;
  size_t cap_ = 0;
  bool enabled_ = true;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

std::atomic<uint64_t> g_scratch_generation{1};

std::vector<int64_t> pool_stats() { return OutputPool::get().stats(); }
int64_t pool_set_cap(int64_t cap) { return OutputPool::get().set_cap(cap); }
bool pool_set_enabled(bool on) { return OutputPool::get().set_enabled(on); }
void pool_clear() {
  OutputPool::get().clear();
  g_scratch_generation.fetch_add(1);  // and the kept per-thread scratch, at each thread's next call
}

}  // namespace

uint64_t scratch_generation() { return g_scratch_generation.load(std::memory_order_relaxed); }

at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  int64_t numel = 1;
  for (int64_t s : sizes) numel *= s;
  const size_t nbytes = static_cast<size_t>(numel) * c10::elementSize(options.dtype().toScalarType());
  OutputPool& pool = OutputPool::get();
  if (!pool.pools(nbytes)) {
    at::Tensor t = at::empty(sizes, options);
    advise_huge_pages(t.data_ptr(), t.nbytes());
    return t;
  }
  return at::detail::empty_generic(sizes, &pool, c10::DispatchKeySet(c10::DispatchKey::CPU),
                                   options.dtype().toScalarType(), std::nullopt);
}

}  // namespace redge_kernels

TORCH_LIBRARY_FRAGMENT(redge_kernels_cpu, m) {
  m.def("_pool_stats() -> int[]", &redge_kernels::pool_stats);
  m.def("_pool_set_cap(int cap_bytes) -> int", &redge_kernels::pool_set_cap);
  m.def("_pool_set_enabled(bool enabled) -> bool", &redge_kernels::pool_set_enabled);
  m.def("_pool_clear() -> ()", &redge_kernels::pool_clear);
}
