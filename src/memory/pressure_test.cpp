#include "memory/pressure.h"

#include <gtest/gtest.h>

namespace tabfit {
namespace {

constexpr uint64_t kKiB = 1024;

// A cache of 64 KiB ledger buffers that an action can drop.
struct Cache {
  std::vector<Buffer> bufs;
  Status Fill(MemoryLedger& ledger, int n) {
    for (int i = 0; i < n; ++i) {
      auto b = ledger.Allocate("cache", 64 * kKiB);
      if (!b.ok()) return b.status();
      bufs.push_back(std::move(*b));
    }
    return Status::Ok();
  }
  uint64_t Drop(uint64_t wanted) {
    uint64_t freed = 0;
    while (freed < wanted && !bufs.empty()) {
      freed += bufs.back().size();
      bufs.pop_back();  // returns the bytes to the ledger
    }
    return freed;
  }
};

TEST(PressureMonitorTest, RejectsBadThresholds) {
  MemoryLedger ledger;
  EXPECT_FALSE(PressureMonitor::Create(ledger, {0.9, 0.8, 0.95}).ok());
  EXPECT_FALSE(PressureMonitor::Create(ledger, {0.5, 0.7, 1.2}).ok());
  EXPECT_FALSE(PressureMonitor::Create(ledger, {0.0, 0.7, 0.9}).ok());
  auto ok = PressureMonitor::Create(ledger, {0.5, 0.7, 0.9});
  EXPECT_TRUE(ok.ok());
}

TEST(PressureMonitorTest, WarningActionReallyFreesLedgerBytes) {
  MemoryLedger ledger(MemoryLedger::Options{1024 * kKiB, 1024 * kKiB});
  Cache cache;
  ASSERT_TRUE(cache.Fill(ledger, 4).ok());  // 256 KiB = 25%
  auto pm = PressureMonitor::Create(ledger, {0.5, 0.7, 0.9}).value();
  EXPECT_EQ(pm->level(), PressureLevel::kNone);
  int calls = 0;
  pm->AddAction(PressureLevel::kWarning, "drop cache", [&](PressureLevel lvl, uint64_t wanted) {
    ++calls;
    EXPECT_EQ(lvl, PressureLevel::kWarning);
    return cache.Drop(wanted);
  });
  auto w = ledger.Allocate("weights", 300 * kKiB);  // 556 KiB = 54%: warning
  ASSERT_TRUE(w.ok());
  EXPECT_EQ(calls, 1);
  // Below 50% again: one 64 KiB buffer was enough.
  EXPECT_EQ(ledger.current_bytes(), 492 * kKiB);
  EXPECT_EQ(ledger.component_bytes("cache"), 192 * kKiB);
  EXPECT_EQ(pm->level(), PressureLevel::kNone);
  auto h = pm->history();
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].action, "drop cache");
  EXPECT_EQ(h[0].bytes_freed, 64 * kKiB);
  EXPECT_EQ(h[0].bytes_reported, 64 * kKiB);
  EXPECT_EQ(h[0].total_after, 492 * kKiB);
}

TEST(PressureMonitorTest, HigherLevelsRunLowerLevelActionsFirstAndDoNotRepeat) {
  MemoryLedger ledger(MemoryLedger::Options{1024 * kKiB, 1024 * kKiB});
  Cache warm, cold;
  ASSERT_TRUE(warm.Fill(ledger, 1).ok());
  ASSERT_TRUE(cold.Fill(ledger, 4).ok());  // 320 KiB
  auto pm = PressureMonitor::Create(ledger, {0.5, 0.7, 0.9}).value();
  std::vector<std::string> order;
  // The warning action can free only 64 KiB; the critical one the rest.
  pm->AddAction(PressureLevel::kCritical, "cold", [&](PressureLevel, uint64_t wanted) {
    order.push_back("cold");
    return cold.Drop(wanted);
  });
  pm->AddAction(PressureLevel::kWarning, "warm", [&](PressureLevel, uint64_t wanted) {
    order.push_back("warm");
    return warm.Drop(wanted);
  });
  auto w = ledger.Allocate("weights", 480 * kKiB);  // 800 KiB = 78%: critical
  ASSERT_TRUE(w.ok());
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], "warm");
  EXPECT_EQ(order[1], "cold");
  // 800 - 64 = 736 KiB needs 736 - 512 = 224 KiB more: 4 cold buffers (256 KiB).
  EXPECT_EQ(ledger.current_bytes(), 480 * kKiB);
  EXPECT_EQ(ledger.component_bytes("cache"), 0u);
  // Nothing left to free: a further allocation into warning runs the actions
  // once (they free nothing), and not again for the next allocation at the same level.
  order.clear();
  auto x = ledger.Allocate("x", 64 * kKiB);  // 544 KiB: warning
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(order.size(), 1u);
  auto y = ledger.Allocate("y", 64 * kKiB);  // 608 KiB: still warning
  ASSERT_TRUE(y.ok());
  EXPECT_EQ(order.size(), 1u);
}

TEST(PressureMonitorTest, RefusedAllocationFreesEnoughToRetry) {
  MemoryLedger ledger(MemoryLedger::Options{1024 * kKiB, 1024 * kKiB});
  Cache cache;
  ASSERT_TRUE(cache.Fill(ledger, 8).ok());  // 512 KiB = 50%
  // Thresholds high so that only the refusal triggers.
  auto pm = PressureMonitor::Create(ledger, {0.97, 0.98, 0.99}).value();
  pm->AddAction(PressureLevel::kEmergency, "drop cache",
                [&](PressureLevel, uint64_t wanted) { return cache.Drop(wanted); });
  auto big = ledger.Allocate("activations", 768 * kKiB);
  ASSERT_FALSE(big.ok());  // refused, but the action ran in the refusal event
  EXPECT_EQ(big.status().code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(ledger.current_bytes(), 256 * kKiB);  // 256 KiB freed: exactly what 768 KiB needed
  auto retry = ledger.Allocate("activations", 768 * kKiB);
  EXPECT_TRUE(retry.ok()) << retry.status().ToString();
}

TEST(PressureMonitorTest, RelieveOnDemandAndNoBudget) {
  MemoryLedger ledger(MemoryLedger::Options{1024 * kKiB, 1024 * kKiB});
  Cache cache;
  ASSERT_TRUE(cache.Fill(ledger, 4).ok());
  auto pm = PressureMonitor::Create(ledger, {0.5, 0.7, 0.9}).value();
  pm->AddAction(PressureLevel::kCritical, "drop", [&](PressureLevel, uint64_t wanted) { return cache.Drop(wanted); });
  EXPECT_EQ(pm->Relieve(512 * kKiB), 0u);  // fits already
  EXPECT_EQ(pm->Relieve(900 * kKiB), 192 * kKiB);  // needs 256 + 900 - 1024 = 132 KiB: three 64 KiB buffers
  EXPECT_EQ(ledger.current_bytes() + 900 * kKiB <= 1024 * kKiB, true);

  MemoryLedger unlimited;
  Cache c2;
  ASSERT_TRUE(c2.Fill(unlimited, 4).ok());
  auto pm2 = PressureMonitor::Create(unlimited, {0.5, 0.7, 0.9}).value();
  int calls = 0;
  pm2->AddAction(PressureLevel::kWarning, "never", [&](PressureLevel, uint64_t w) { ++calls; return c2.Drop(w); });
  auto b = unlimited.Allocate("big", 1 << 20);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(pm2->Relieve(1ull << 40), 0u);
  EXPECT_EQ(calls, 0);
}

TEST(PressureMonitorTest, RemovedActionsDoNotRun) {
  MemoryLedger ledger(MemoryLedger::Options{1024 * kKiB, 1024 * kKiB});
  auto pm = PressureMonitor::Create(ledger, {0.5, 0.7, 0.9}).value();
  int calls = 0;
  int id = pm->AddAction(PressureLevel::kWarning, "a", [&](PressureLevel, uint64_t) { ++calls; return uint64_t{0}; });
  pm->RemoveAction(id);
  auto b = ledger.Allocate("w", 600 * kKiB);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(calls, 0);
  EXPECT_EQ(pm->level(), PressureLevel::kWarning);
  EXPECT_STREQ(PressureLevelName(pm->level()), "warning");
}

}  // namespace
}  // namespace tabfit
