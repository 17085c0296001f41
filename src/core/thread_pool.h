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

}  // namespace tabfit
