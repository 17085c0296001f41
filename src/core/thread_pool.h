// tabfit core: a persistent thread pool for data-parallel kernels.
//
// ParallelFor(n, fn) runs fn(begin, end, thread_index) over [0, n) split into
// contiguous ranges, one per thread (the calling thread takes part as thread
// 0), and returns when all are done. Workers spin briefly before sleeping so
// the hundreds of small mat-vecs per decoded token do not pay a futex wake
// each. Not reentrant: call ParallelFor from one thread at a time. With
// num_threads == 1 (or under WebAssembly without threads) it runs inline.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace tabfit {

class ThreadPool {
 public:
  using RangeFn = std::function<void(size_t begin, size_t end, int thread_index)>;

  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return num_threads_; }

  // Splits [0, n) into num_threads ranges whose boundaries are multiples of
  // `grain` (except the end) and runs them in parallel.
  void ParallelFor(size_t n, const RangeFn& fn, size_t grain = 1);

  // Runs fn(thread_index) once on every thread.
  void RunOnAll(const std::function<void(int)>& fn);

 private:
  void WorkerLoop(int index);

  int num_threads_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
  const std::function<void(int)>* job_ = nullptr;
};

// How a repeated parallel loop's work is shared among threads, learned from how
// long each thread took. A "site" is one loop that runs again and again over the
// same data (e.g. one weight matrix's rows, once per decoded token). Threads
// start on equal shares; after each run, a site's shares move a fraction of the
// way toward equal finishing times (share / seconds), within [1/(2T), 2/T].
// Why: two threads streaming from memory often do not stream equally fast (the
// part of a buffer on 4 KiB pages, the core that packed the input), and the one
// that finishes first then waits with its bandwidth unused.
//
// Range() is const and may be called from any thread; Record() from thread t
// for slot t only, during the loop; Update() from one thread after the loop has
// joined (ThreadPool::RunOnAll orders the records before it).
class WorkShares {
 public:
  WorkShares() = default;
  WorkShares(int sites, int threads);

  int sites() const { return sites_; }
  int threads() const { return threads_; }
  // Thread t's part [begin, end) of [0, n) at `site`: contiguous, boundaries at
  // multiples of `grain` (except n), in thread order, covering [0, n) exactly
  // once over t = 0..threads-1. Out-of-range sites get equal shares.
  std::pair<size_t, size_t> Range(int site, size_t n, size_t grain, int t) const;
  // Thread t spent `seconds` on its part at `site` this run.
  void Record(int site, int t, double seconds);
  // Moves the site's shares toward equal finishing times, if every thread
  // recorded a positive time this run; clears the records.
  void Update(int site);
  // The current share of thread t at `site` (0 <= site < sites(), 0 <= t < threads()).
  float share(int site, int t) const { return shares_[Index(site, t)]; }

 private:
  static constexpr int kMaxProjected = 256;  // more threads: shares stay equal
  size_t Index(int site, int t) const { return static_cast<size_t>(site) * threads_ + t; }
  int sites_ = 0, threads_ = 1;
  std::vector<float> shares_;    // [sites][threads], each site's sums to 1
  std::vector<double> seconds_;  // [sites][threads], this run's records
};

}  // namespace tabfit
