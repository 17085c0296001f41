// Decode-attention benchmarks: one KvCache::AttendGroup call (the n_gqa query
// heads sharing one kv head attend over n_visible cells) per iteration, for each
// KV cache type, at TinyLlama-1.1B's head shape (head_dim 64, 8 query heads per
// kv head) and a range of context lengths. The capacity is the context a run
// would allocate (4096 when the context is shorter), since the plain cache's
// transposed V rows are strided by it. Reports cells per second (items) and the
// K+V bytes the call reads.
//
//   bench_attention --benchmark_filter='f16/.*/ctx:(32|1024)$'
#include <benchmark/benchmark.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "kv/kv_factory.h"

namespace tabfit {
namespace {

constexpr int kHeadDim = 64, kKvHeads = 4, kGqa = 8;

void BM_AttendGroup(benchmark::State& state, std::string type, int n_ctx, int capacity) {
  MemoryLedger ledger;
  KvCacheConfig c{.n_layers = 1, .n_kv_heads = kKvHeads, .head_dim = kHeadDim, .capacity = capacity, .type = type};
  auto kv = MakeKvCache(c, KvCacheOptions{}, ledger);
  if (!kv.ok()) {
    state.SkipWithError(kv.status().ToString().c_str());
    return;
  }
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  const int row = kKvHeads * kHeadDim;
  std::vector<float> k(row), v(row);
  for (int32_t p = 0; p < n_ctx; ++p) {
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    if (!(*kv)->Write(0, 1, &p, k.data(), v.data()).ok() || !(*kv)->Commit(1, &p).ok()) {
      state.SkipWithError("KV write failed");
      return;
    }
  }
  std::vector<float> q(kGqa * kHeadDim), out(kGqa * kHeadDim), scores(static_cast<size_t>(kGqa) * n_ctx);
  for (auto& x : q) x = nd(rng);
  const float scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
  for (auto _ : state) {
    (*kv)->AttendGroup(0, 1, q.data(), kGqa, scale, n_ctx, scores.data(), out.data());
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n_ctx);
  // The cache holds n_ctx cells (storage follows the tokens): its bytes per kv head.
  const double kv_bytes = static_cast<double>((*kv)->bytes()) / kKvHeads;
  state.counters["kv_bytes"] = kv_bytes;
}

int Register() {
  // kivi*: the low-bit cache with its defaults (8-bit window of 128, groups of 32).
  for (const char* type : {"f16", "f32", "q8_0", "q4_0", "kivi2", "kivi3", "kivi4"}) {
    for (int n_ctx : {32, 256, 1024, 2048, 4096}) {
      const int capacity = n_ctx < 4096 ? 4096 : n_ctx;
      const std::string name = std::string("AttendGroup/") + type + "/hd:64/gqa:8/ctx:" + std::to_string(n_ctx);
      benchmark::RegisterBenchmark(name.c_str(), BM_AttendGroup, std::string(type), n_ctx, capacity)
          ->Unit(benchmark::kMicrosecond);
    }
  }
  return 0;
}
const int kRegistered = Register();

}  // namespace
}  // namespace tabfit

BENCHMARK_MAIN();
