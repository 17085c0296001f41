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

namespace tabfit {
namespace {

using Part = std::pair<size_t, size_t>;

// Every thread's part, over any shares the updates produce, covers [0, n)
// exactly once, in thread order, on grain boundaries.
void ExpectPartition(const WorkShares& w, int site, size_t n, size_t grain) {
  size_t next = 0;
  for (int t = 0; t < w.threads(); ++t) {
    const auto [b, e] = w.Range(site, n, grain, t);
    ASSERT_EQ(b, next) << "site " << site << " n " << n << " thread " << t;
    ASSERT_LE(b, e);
    if (e != n) ASSERT_EQ(e % grain, 0u);
    next = e;
  }
  ASSERT_EQ(next, n);
}

TEST(WorkShares, StartEqualAndPartitionExactly) {
  WorkShares w(3, 2);
  EXPECT_FLOAT_EQ(w.share(1, 0), 0.5f);
  EXPECT_EQ(w.Range(1, 2048, 16, 0), (Part{0, 1024}));
  EXPECT_EQ(w.Range(1, 2048, 16, 1), (Part{1024, 2048}));
  for (size_t n : {0u, 1u, 15u, 16u, 17u, 100u, 2048u, 5632u}) ExpectPartition(w, 1, n, 16);
  // An unknown site (or none) is the equal split.
  const WorkShares none(0, 4);
  for (size_t n : {3u, 64u, 1000u}) ExpectPartition(none, -1, n, 16);
  EXPECT_EQ(none.Range(-1, 64, 16, 2), (Part{32, 48}));
}

// A thread twice as fast ends up with two thirds of the work: the shares
// converge to equal finishing times when each run's time is share / speed.
TEST(WorkShares, ConvergeToEqualFinishingTimes) {
  WorkShares w(2, 2);
  const double speed[2] = {2.0, 1.0};
  for (int rep = 0; rep < 60; ++rep) {
    for (int t = 0; t < 2; ++t) w.Record(1, t, w.share(1, t) / speed[t]);
    w.Update(1);
    ExpectPartition(w, 1, 2048, 16);
  }
  EXPECT_NEAR(w.share(1, 0), 2.0 / 3.0, 1e-3);
  EXPECT_NEAR(w.share(1, 1), 1.0 / 3.0, 1e-3);
  EXPECT_FLOAT_EQ(w.share(0, 0), 0.5f);  // other sites untouched
  const auto [b, e] = w.Range(1, 2048, 16, 0);
  EXPECT_EQ(b, 0u);
  EXPECT_EQ(e, 1360u);  // 2/3 of 128 tiles of 16 rows, rounded: 85 tiles
}

TEST(WorkShares, StayWithinBoundsAndIgnoreIncompleteRuns) {
  WorkShares w(1, 4);
  for (int rep = 0; rep < 100; ++rep) {
    for (int t = 0; t < 4; ++t) w.Record(0, t, t == 3 ? 1e-6 : 1.0);
    w.Update(0);
  }
  float sum = 0;
  for (int t = 0; t < 4; ++t) {
    EXPECT_GE(w.share(0, t), 0.5f / 4 - 1e-6f);
    EXPECT_LE(w.share(0, t), 2.0f / 4 + 1e-6f);
    sum += w.share(0, t);
  }
  EXPECT_NEAR(sum, 1.0f, 1e-6f);
  EXPECT_GT(w.share(0, 3), 0.4f);
  ExpectPartition(w, 0, 5632, 16);
  // A run in which some thread recorded nothing (it had no rows) changes nothing.
  const float before = w.share(0, 3);
  w.Record(0, 0, 5.0);
  w.Update(0);
  EXPECT_EQ(w.share(0, 3), before);
  // Nor do records for sites or threads that do not exist.
  w.Record(7, 0, 1.0);
  w.Record(0, 9, 1.0);
  w.Update(7);
  EXPECT_EQ(w.share(0, 3), before);
}

}  // namespace
}  // namespace tabfit
