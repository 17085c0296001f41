#include "core/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <vector>

namespace tabfit {
namespace {

TEST(ThreadPool, CoversRangeExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    for (size_t n : {1u, 7u, 64u, 1000u}) {
      std::vector<std::atomic<int>> hits(n);
      for (int rep = 0; rep < 50; ++rep) {
        pool.ParallelFor(n, [&](size_t b, size_t e, int) {
          for (size_t i = b; i < e; ++i) hits[i]++;
        }, 4);
      }
      for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 50) << threads << " " << n << " " << i;
    }
  }
}

TEST(ThreadPool, GrainAlignsBoundaries) {
  ThreadPool pool(2);
  std::atomic<int> misaligned{0};
  pool.ParallelFor(100, [&](size_t b, size_t e, int) {
    if (b % 32 != 0) misaligned++;
  }, 32);
  EXPECT_EQ(misaligned.load(), 0);
}

}  // namespace
}  // namespace tabfit
