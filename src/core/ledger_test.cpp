#include "core/ledger.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

namespace tabfit {
namespace {

TEST(Ledger, TracksCurrentAndPeakPerComponent) {
  MemoryLedger ledger;
  {
    auto a = ledger.Allocate("embeddings", 1000);
    ASSERT_TRUE(a.ok());
    auto b = ledger.Allocate("layers.0", 500);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(ledger.current_bytes(), 1500u);
    EXPECT_EQ(ledger.component_bytes("embeddings"), 1000u);
    EXPECT_EQ(ledger.bytes_with_prefix("layers."), 500u);
    std::memset(a->data(), 1, a->size());
    b->Reset();
    EXPECT_EQ(ledger.current_bytes(), 1000u);
  }
  EXPECT_EQ(ledger.current_bytes(), 0u);
  EXPECT_EQ(ledger.peak_bytes(), 1500u);
  auto snap = ledger.Snapshot();
  ASSERT_EQ(snap.components.size(), 2u);
  EXPECT_EQ(snap.components[0].name, "embeddings");
  EXPECT_EQ(snap.components[0].peak_bytes, 1000u);
  EXPECT_EQ(snap.components[1].current_bytes, 0u);
}

TEST(Ledger, BudgetRefusalNamesComponentAndRemedy) {
  MemoryLedger ledger(MemoryLedger::Options{.budget_bytes = 4096, .max_buffer_bytes = 0});
  auto a = ledger.Allocate("kv_cache", 3000);
  ASSERT_TRUE(a.ok());
  int refused = 0;
  ledger.Subscribe([&](const LedgerEvent& e) {
    if (e.kind == LedgerEvent::Kind::kRefused) ++refused;
  });
  auto b = ledger.Allocate("layers.7", 2000);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(b.status().message().find("layers.7"), std::string::npos);
  EXPECT_NE(b.status().message().find("budget"), std::string::npos);
  EXPECT_NE(b.status().message().find("precision"), std::string::npos);
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(ledger.current_bytes(), 3000u);
}

TEST(Ledger, MaxBufferSizeAndChunking) {
  MemoryLedger ledger(MemoryLedger::Options{.budget_bytes = 0, .max_buffer_bytes = 1000});
  auto big = ledger.Allocate("lm_head", 1001);
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kBufferLimit);
  auto chunked = ledger.AllocateChunked("lm_head", 3 * 7 * 100, 100);  // 21 rows of 100 B
  ASSERT_TRUE(chunked.ok()) << chunked.status().ToString();
  EXPECT_EQ(chunked->units_per_chunk, 10u);
  EXPECT_EQ(chunked->chunks.size(), 3u);  // 10 + 10 + 1 rows
  for (auto& c : chunked->chunks) EXPECT_LE(c.size(), 1000u);
  EXPECT_EQ(ledger.component_bytes("lm_head"), 2100u);
  // Row 15 lives in chunk 1 at row 5.
  EXPECT_EQ(chunked->at(1500), chunked->chunks[1].as<uint8_t>() + 500);
}

TEST(Ledger, ListenersSeeAllocationsAndFrees) {
  MemoryLedger ledger;
  std::vector<int64_t> deltas;
  int id = ledger.Subscribe([&](const LedgerEvent& e) { deltas.push_back(e.delta_bytes); });
  { auto a = ledger.Allocate("scratch", 64); }
  ledger.Unsubscribe(id);
  { auto a = ledger.Allocate("scratch", 64); }
  EXPECT_EQ(deltas, (std::vector<int64_t>{64, -64}));
}

TEST(Ledger, ExternalChargesCountAgainstTheBudgetWithoutMemory) {
  MemoryLedger ledger(MemoryLedger::Options{.budget_bytes = 1000, .max_buffer_bytes = 100});
  auto c = ledger.ChargeExternal("tokenizer", 600);  // over max_buffer: not a buffer, allowed
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->data(), nullptr);
  EXPECT_EQ(c->size(), 600u);
  EXPECT_EQ(ledger.component_bytes("tokenizer"), 600u);
  EXPECT_FALSE(ledger.ChargeExternal("tokenizer", 500).ok());  // budget
  Buffer moved = std::move(*c);
  EXPECT_EQ(ledger.current_bytes(), 600u);
  moved.Reset();
  EXPECT_EQ(ledger.current_bytes(), 0u);
}

TEST(Ledger, GroupBuffersAreChargedAndFreedOneByOne) {
  MemoryLedger ledger;
  std::vector<int64_t> deltas;
  ledger.Subscribe([&](const LedgerEvent& e) { deltas.push_back(e.delta_bytes); });
  // Over 2 MiB in all: one shared block where huge pages are possible.
  auto g = ledger.AllocateGroup("layers.3", {size_t{1} << 20, 100, 0, (size_t{3} << 20) / 2});
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  ASSERT_EQ(g->size(), 4u);
  EXPECT_EQ((*g)[1].size(), 100u);
  EXPECT_TRUE((*g)[2].empty());
  EXPECT_EQ(ledger.component_bytes("layers.3"), (size_t{1} << 20) + 100 + (size_t{3} << 20) / 2);
  EXPECT_EQ(ledger.Snapshot().components[0].live_buffers, 3u);
  for (auto& b : *g) {
    if (b.empty()) continue;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b.data()) % 64, 0u);
    std::memset(b.data(), 7, b.size());  // disjoint and writable (ASan checks the bounds)
  }
  const auto* p0 = (*g)[0].as<uint8_t>();
  EXPECT_GE((*g)[1].as<uint8_t>(), p0 + (*g)[0].size());
  EXPECT_GE((*g)[3].as<uint8_t>(), (*g)[1].as<uint8_t>() + 100);
  Buffer moved = std::move((*g)[0]);
  g->clear();  // the others go; `moved` keeps the block alive
  EXPECT_EQ(ledger.component_bytes("layers.3"), size_t{1} << 20);
  EXPECT_EQ(moved.as<uint8_t>()[(size_t{1} << 20) - 1], 7);
  moved.Reset();
  EXPECT_EQ(ledger.current_bytes(), 0u);
  EXPECT_EQ(deltas.size(), 6u);  // 3 allocations, 3 frees
}

TEST(Ledger, GroupIsAllOrNothingAgainstBudgetAndBufferLimit) {
  MemoryLedger ledger(MemoryLedger::Options{.budget_bytes = 5000, .max_buffer_bytes = 3000});
  auto over = ledger.AllocateGroup("layers.0", {3000, 3000});  // each fits; the sum does not
  ASSERT_FALSE(over.ok());
  EXPECT_EQ(over.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(over.status().message().find("layers.0"), std::string::npos);
  auto big = ledger.AllocateGroup("layers.0", {100, 3001});
  ASSERT_FALSE(big.ok());
  EXPECT_EQ(big.status().code(), StatusCode::kBufferLimit);
  EXPECT_EQ(ledger.current_bytes(), 0u);
  // Chunked ranges: 2100 B of 100 B rows -> chunks of 30 rows at most.
  auto c = ledger.AllocateChunkedGroup("layers.0", {{2100, 100}, {0, 10}, {2000, 1000}});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[0].chunks.size(), 1u);
  EXPECT_EQ((*c)[0].total_bytes, 2100u);
  EXPECT_TRUE((*c)[1].chunks.empty());
  EXPECT_EQ((*c)[2].chunks.size(), 1u);
  EXPECT_EQ((*c)[2].units_per_chunk, 2u);
  EXPECT_EQ(ledger.current_bytes(), 4100u);
}

TEST(ParseBytes, Units) {
  EXPECT_EQ(*ParseBytes("1.5GB"), 1500000000u);
  EXPECT_EQ(*ParseBytes("2GiB"), 2147483648u);
  EXPECT_EQ(*ParseBytes("800 MiB"), 838860800u);
  EXPECT_EQ(*ParseBytes("123"), 123u);
  EXPECT_FALSE(ParseBytes("lots").ok());
  EXPECT_FALSE(ParseBytes("5 parsecs").ok());
}

#if defined(__linux__)
// VmFlags of the mapping that holds `p`, from /proc/self/smaps ("" if not found).
std::string VmFlagsAt(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long long lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = addr >= lo && addr < hi;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

TEST(Ledger, LargeBuffersAreHugePageAlignedAndAdvised) {
  MemoryLedger ledger;
  auto big = ledger.Allocate("layers.0", (size_t{6} << 20) + 12345);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big->data()) % (size_t{2} << 20), 0u);
  EXPECT_NE(VmFlagsAt(big->data()).find(" hg"), std::string::npos) << VmFlagsAt(big->data());
  // The tail past the last whole 2 MiB region is not advised (no page beyond the buffer).
  EXPECT_EQ(VmFlagsAt(big->as<uint8_t>() + (size_t{6} << 20)).find(" hg"), std::string::npos);
  auto small = ledger.Allocate("layers.0", size_t{1} << 20);
  ASSERT_TRUE(small.ok());
  EXPECT_EQ(VmFlagsAt(small->data()).find(" hg"), std::string::npos);
}

TEST(Ledger, GroupSharesHugePagesAmongBuffersUnderTwoMiB) {
  MemoryLedger ledger;
  const size_t mib = size_t{1} << 20;
  auto g = ledger.AllocateGroup("layers.0", {mib + 4096, mib, mib, 12345});  // none >= 2 MiB alone
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  EXPECT_EQ(reinterpret_cast<uintptr_t>((*g)[0].data()) % (2 * mib), 0u);
  EXPECT_NE(VmFlagsAt((*g)[0].data()).find(" hg"), std::string::npos) << VmFlagsAt((*g)[0].data());
  EXPECT_NE(VmFlagsAt((*g)[1].data()).find(" hg"), std::string::npos);  // straddles the first 2 MiB boundary
  // The last buffer ends past the block's last whole 2 MiB region: not advised.
  EXPECT_EQ(VmFlagsAt((*g)[3].data()).find(" hg"), std::string::npos);
}
#endif

}  // namespace
}  // namespace tabfit
