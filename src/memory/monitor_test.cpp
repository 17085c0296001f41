#include "memory/monitor.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace tabfit {
namespace {

constexpr uint64_t kMiB = 1 << 20;

size_t IndexOf(const MemoryTimeline& t, const std::string& name) {
  for (size_t i = 0; i < t.components.size(); ++i)
    if (t.components[i] == name) return i;
  ADD_FAILURE() << "component " << name << " not in timeline";
  return 0;
}

TEST(MemoryMonitorTest, SamplesEveryLedgerEvent) {
  MemoryLedger ledger;
  MemoryMonitor mon(ledger);
  mon.Start();
  {
    auto w = ledger.Allocate("weights", kMiB);
    ASSERT_TRUE(w.ok());
    auto kv = ledger.Allocate("kv_cache", 2 * kMiB);
    ASSERT_TRUE(kv.ok());
    w->Reset();
    mon.Mark("after free");
  }  // kv freed here
  mon.Stop();
  MemoryTimeline t = mon.Timeline();
  // start, alloc weights, alloc kv, free weights, mark, free kv, stop
  ASSERT_EQ(t.samples.size(), 7u);
  EXPECT_EQ(t.samples[0].event, "start");
  EXPECT_EQ(t.samples[1].event, "alloc weights +1.0 MiB");
  EXPECT_EQ(t.samples[3].event, "free weights -1.0 MiB");
  EXPECT_EQ(t.samples[4].event, "after free");
  EXPECT_EQ(t.samples[6].event, "stop");
  size_t w = IndexOf(t, "weights"), kv = IndexOf(t, "kv_cache");
  EXPECT_EQ(t.samples[1].total_bytes, kMiB);
  EXPECT_EQ(t.component_at(1, w), kMiB);
  EXPECT_EQ(t.samples[2].total_bytes, 3 * kMiB);
  EXPECT_EQ(t.component_at(2, kv), 2 * kMiB);
  EXPECT_EQ(t.component_at(3, w), 0u);
  EXPECT_EQ(t.component_at(4, kv), 2 * kMiB);
  EXPECT_EQ(t.samples[6].total_bytes, 0u);
  EXPECT_EQ(t.peak_total_bytes, 3 * kMiB);
  EXPECT_EQ(t.peak_component_bytes[w], kMiB);
  EXPECT_EQ(t.peak_component_bytes[kv], 2 * kMiB);
  for (size_t i = 1; i < t.samples.size(); ++i) EXPECT_GE(t.samples[i].t, t.samples[i - 1].t);
  for (const auto& s : t.samples) EXPECT_GT(s.rss_bytes, 0u);  // Linux reports RSS
  EXPECT_EQ(t.peak_rss_bytes, std::max_element(t.samples.begin(), t.samples.end(), [](auto& a, auto& b) {
                                return a.rss_bytes < b.rss_bytes;
                              })->rss_bytes);
}

TEST(MemoryMonitorTest, SeesWhatWasThereBeforeStartAndRefusals) {
  MemoryLedger ledger(MemoryLedger::Options{2 * kMiB, 4 * kMiB});
  auto pre = ledger.Allocate("embeddings", kMiB);
  ASSERT_TRUE(pre.ok());
  MemoryMonitor mon(ledger, MemoryMonitor::Options{true, 0, false, 1000});
  mon.Start();
  auto too_big = ledger.Allocate("activations", 2 * kMiB);  // 1 + 2 MiB is over the 2 MiB budget
  EXPECT_FALSE(too_big.ok());
  auto more = ledger.Allocate("embeddings", kMiB);
  ASSERT_TRUE(more.ok());
  auto refused = ledger.Allocate("kv_cache", kMiB);  // 2 MiB budget is full
  EXPECT_FALSE(refused.ok());
  mon.Stop();
  MemoryTimeline t = mon.Timeline();
  EXPECT_EQ(t.budget_bytes, 2 * kMiB);
  EXPECT_EQ(t.samples[0].total_bytes, kMiB);  // the pre-existing allocation
  EXPECT_EQ(t.component_at(0, IndexOf(t, "embeddings")), kMiB);
  int refusals = 0;
  for (const auto& s : t.samples) {
    if (s.event.rfind("refused ", 0) == 0) ++refusals;
    EXPECT_EQ(s.rss_bytes, 0u);  // sample_rss = false
  }
  EXPECT_EQ(refusals, 2);
  EXPECT_EQ(t.peak_total_bytes, 2 * kMiB);
}

TEST(MemoryMonitorTest, IntervalSamplingWithoutEvents) {
  MemoryLedger ledger;
  auto b = ledger.Allocate("scratch", 4096);
  ASSERT_TRUE(b.ok());
  MemoryMonitor::Options o;
  o.sample_on_events = false;
  o.interval_ms = 2;
  MemoryMonitor mon(ledger, o);
  mon.Start();
  // Wait (generously) for the background thread to produce 3 interval samples.
  for (int i = 0; i < 5000 && mon.sample_count() < 4; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  auto c = ledger.Allocate("scratch", 4096);  // not sampled as an event, but counted in peaks
  ASSERT_TRUE(c.ok());
  c->Reset();
  mon.Stop();
  MemoryTimeline t = mon.Timeline();
  ASSERT_GE(t.samples.size(), 5u);  // start + >= 3 interval + stop
  int intervals = 0;
  for (const auto& s : t.samples) {
    EXPECT_TRUE(s.event == "start" || s.event == "interval" || s.event == "stop") << s.event;
    if (s.event == "interval") {
      ++intervals;
      EXPECT_EQ(s.total_bytes, 4096u);
    }
  }
  EXPECT_GE(intervals, 3);
  EXPECT_EQ(t.peak_total_bytes, 8192u);
  EXPECT_EQ(t.peak_component_bytes[IndexOf(t, "scratch")], 8192u);
}

TEST(MemoryMonitorTest, MaxSamplesKeepsPeaksExact) {
  MemoryLedger ledger;
  MemoryMonitor::Options o;
  o.max_samples = 3;
  o.sample_rss = false;
  MemoryMonitor mon(ledger, o);
  mon.Start();
  std::vector<Buffer> bufs;
  for (int i = 0; i < 10; ++i) bufs.push_back(std::move(ledger.Allocate("layers." + std::to_string(i), 64 * 1024).value()));
  bufs.clear();
  mon.Stop();
  MemoryTimeline t = mon.Timeline();
  EXPECT_EQ(t.samples.size(), 3u);
  EXPECT_EQ(t.dropped_samples, 1u + 10 + 10 + 1 - 3);
  EXPECT_EQ(t.peak_total_bytes, 10u * 64 * 1024);
  EXPECT_EQ(t.components.size(), 10u);
  EXPECT_EQ(t.peak_component_bytes[9], 64u * 1024);
}

TEST(MemoryMonitorTest, ConcurrentEventsAndStopDetach) {
  MemoryLedger ledger;
  auto mon = std::make_unique<MemoryMonitor>(ledger);
  mon->Start();
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&ledger, k] {
      for (int i = 0; i < 200; ++i) {
        auto b = ledger.Allocate("t" + std::to_string(k), 1024);
        if (!b.ok()) return;
      }
    });
  }
  for (auto& th : threads) th.join();
  mon->Stop();
  MemoryTimeline t = mon->Timeline();
  EXPECT_EQ(t.samples.size(), 2u + 4 * 200 * 2);
  EXPECT_EQ(t.samples.back().total_bytes, 0u);
  for (size_t c = 0; c < t.components.size(); ++c) EXPECT_EQ(t.component_at(t.samples.size() - 1, c), 0u);
  // After Stop (and after destruction) the ledger no longer reports to the monitor.
  auto after = ledger.Allocate("late", 1024);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(mon->sample_count(), t.samples.size());
  mon.reset();
  auto after2 = ledger.Allocate("late", 1024);
  EXPECT_TRUE(after2.ok());
}

}  // namespace
}  // namespace tabfit
