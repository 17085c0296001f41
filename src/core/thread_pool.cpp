#include "core/thread_pool.h"

#include <algorithm>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define TF_CPU_RELAX() _mm_pause()
#else
#define TF_CPU_RELAX() std::this_thread::yield()
#endif

namespace tabfit {

ThreadPool::ThreadPool(int num_threads) : num_threads_(std::max(1, num_threads)) {
  for (int i = 1; i < num_threads_; ++i) workers_.emplace_back([this, i] { WorkerLoop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_.store(true);
    generation_.fetch_add(1);
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
}

void ThreadPool::WorkerLoop(int index) {
  uint64_t seen = 0;
  for (;;) {
    // Spin a little, then sleep until the generation changes.
    int spins = 0;
    while (generation_.load(std::memory_order_acquire) == seen && spins < 4000) {
      TF_CPU_RELAX();
      ++spins;
    }
    if (generation_.load(std::memory_order_acquire) == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return generation_.load(std::memory_order_acquire) != seen; });
    }
    seen = generation_.load(std::memory_order_acquire);
    if (stop_.load()) return;
    (*job_)(index);
    if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      std::lock_guard<std::mutex> lock(done_mu_);
      done_cv_.notify_one();
    }
  }
}

void ThreadPool::RunOnAll(const std::function<void(int)>& fn) {
  if (num_threads_ == 1) {
    fn(0);
    return;
  }
  job_ = &fn;
  pending_.store(num_threads_ - 1, std::memory_order_release);
  {
    std::lock_guard<std::mutex> lock(mu_);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }
  cv_.notify_all();
  fn(0);
  // Spin briefly (the common case: workers finish within microseconds), then
  // sleep so an oversubscribed machine is not made slower by our spinning.
  for (int spins = 0; pending_.load(std::memory_order_acquire) != 0;) {
    if (++spins < 4000) {
      TF_CPU_RELAX();
    } else {
      std::unique_lock<std::mutex> lock(done_mu_);
      done_cv_.wait(lock, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
  }
  job_ = nullptr;
}

void ThreadPool::ParallelFor(size_t n, const RangeFn& fn, size_t grain) {
  if (n == 0) return;
  grain = std::max<size_t>(1, grain);
  size_t blocks = (n + grain - 1) / grain;
  int threads = static_cast<int>(std::min<size_t>(num_threads_, blocks));
  if (threads <= 1) {
    fn(0, n, 0);
    return;
  }
  std::function<void(int)> job = [&](int t) {
    if (t >= threads) return;
    size_t b0 = blocks * t / threads, b1 = blocks * (t + 1) / threads;
    size_t begin = b0 * grain, end = std::min(n, b1 * grain);
    if (begin < end) fn(begin, end, t);
  };
  RunOnAll(job);
}

}  // namespace tabfit
