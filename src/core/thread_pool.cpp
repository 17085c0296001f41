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

WorkShares::WorkShares(int sites, int threads)
    : sites_(std::max(0, sites)),
      threads_(std::max(1, threads)),
      shares_(static_cast<size_t>(sites_) * threads_, 1.0f / threads_),
      seconds_(static_cast<size_t>(sites_) * threads_, 0.0) {}

std::pair<size_t, size_t> WorkShares::Range(int site, size_t n, size_t grain, int t) const {
  grain = std::max<size_t>(1, grain);
  const size_t blocks = (n + grain - 1) / grain;
  const bool known = site >= 0 && site < sites_;
  // Boundary of thread j: the cumulative share before it, in whole blocks.
  auto boundary = [&](int j) -> size_t {
    if (j <= 0) return 0;
    if (j >= threads_) return blocks;
    if (!known) return blocks * j / threads_;
    double c = 0;
    for (int i = 0; i < j; ++i) c += shares_[Index(site, i)];
    return std::min(blocks, static_cast<size_t>(c * static_cast<double>(blocks) + 0.5));
  };
  const size_t b = boundary(t), e = std::max(b, boundary(t + 1));
  return {std::min(n, b * grain), std::min(n, e * grain)};
}

void WorkShares::Record(int site, int t, double seconds) {
  if (site < 0 || site >= sites_ || t < 0 || t >= threads_) return;
  seconds_[Index(site, t)] = seconds;
}

void WorkShares::Update(int site) {
  if (site < 0 || site >= sites_ || threads_ < 2 || threads_ > kMaxProjected) return;
  double* sec = &seconds_[Index(site, 0)];
  float* sh = &shares_[Index(site, 0)];
  bool all = true;
  for (int t = 0; t < threads_; ++t) all = all && sec[t] > 0;
  if (all) {
    // Each thread's rate (share per second) says what share would make it
    // finish with the others; step a quarter of the way there (a single run's
    // time is noisy). Then project onto {sum 1, each in [1/(2T), 2/T]}:
    // share = clamp(y + lambda), lambda found by bisection.
    double rate_sum = 0;
    for (int t = 0; t < threads_; ++t) rate_sum += sh[t] / sec[t];
    constexpr double kStep = 0.25;
    const double lo = 0.5 / threads_, hi = 2.0 / threads_;
    double y[kMaxProjected];
    const int n = threads_;  // <= kMaxProjected (checked above)
    for (int t = 0; t < n; ++t) y[t] = sh[t] + kStep * (sh[t] / sec[t] / rate_sum - sh[t]);
    bool inside = true;  // the y sum to 1 already; only a bound that binds needs the projection
    for (int t = 0; t < n; ++t) inside = inside && y[t] >= lo && y[t] <= hi;
    if (inside) {
      double sum = 0;  // 1 but for rounding, which must not pile up over many updates
      for (int t = 0; t < n; ++t) sum += y[t];
      for (int t = 0; t < n; ++t) sh[t] = static_cast<float>(y[t] / sum);
      for (int t = 0; t < threads_; ++t) sec[t] = 0;
      return;
    }
    auto sum_at = [&](double lambda) {
      double sum = 0;
      for (int t = 0; t < n; ++t) sum += std::clamp(y[t] + lambda, lo, hi);
      return sum;
    };
    double a = -1.0, b = 1.0;  // sum_at(a) = n * lo <= 1 <= n * hi = sum_at(b)
    for (int it = 0; it < 40; ++it) {
      const double m = 0.5 * (a + b);
      (sum_at(m) < 1.0 ? a : b) = m;
    }
    for (int t = 0; t < n; ++t) sh[t] = static_cast<float>(std::clamp(y[t] + 0.5 * (a + b), lo, hi));
  }
  for (int t = 0; t < threads_; ++t) sec[t] = 0;
}

}  // namespace tabfit
