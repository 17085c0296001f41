// The forward pass gives bit-identical logits however its mat-mul rows are
// shared among threads: 1 thread, 2 threads on equal shares, and 2 threads on
// shares skewed as far as WorkShares allows. Run on the bundled demo model in
// F16 and in TF_Q2 (its x16 run-time layout where the CPU has that kernel).
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "core/thread_pool.h"
#include "kv/plain_kv_cache.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "test_util.h"

namespace tabfit {
namespace {

// Logits of every position of `tokens`, fed one token at a time (decode) after
// a batched prompt of the first three.
std::vector<float> Logits(const LlamaModel& model, MemoryLedger& ledger, int threads, int skew_towards) {
  const auto& hp = model.hparams();
  const std::vector<int32_t> tokens = {1, 17, 4, 33, 49, 200, 8, 1000};
  KvCacheConfig kc{.n_layers = hp.n_layer, .n_kv_heads = hp.n_head_kv, .head_dim = hp.head_dim, .capacity = 16,
                   .type = "f32"};
  auto kv = CreatePlainKvCache(kc, ledger);
  EXPECT_TRUE(kv.ok());
  auto s = model.CreateScratch(ledger, 3, 16, threads, /*all_logits=*/false);
  EXPECT_TRUE(s.ok());
  if (skew_towards >= 0) {
    // Tell every site that thread `skew_towards` is 100x faster, many times over.
    for (int site = 0; site < s->shares.sites(); ++site) {
      for (int rep = 0; rep < 50; ++rep) {
        for (int t = 0; t < threads; ++t) s->shares.Record(site, t, t == skew_towards ? 0.01 : 1.0);
        s->shares.Update(site);
      }
    }
    EXPECT_NEAR(s->shares.share(0, skew_towards), 0.75f, 1e-6f);
  }
  ThreadPool pool(threads);
  std::vector<float> out;
  auto step = [&](const int32_t* ids, int n) {
    ASSERT_TRUE(model.Forward(ids, n, **kv, pool, *s).ok());
    const float* l = s->logits.as<float>();
    out.insert(out.end(), l, l + hp.n_vocab);
  };
  step(tokens.data(), 3);
  for (size_t i = 3; i < tokens.size(); ++i) step(&tokens[i], 1);
  return out;
}

TEST(ForwardThreads, LogitsAreBitIdenticalHoweverRowsAreShared) {
  auto g = GgufFile::Open(testing::DemoModel());
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  for (auto type : {std::optional<TensorType>(), std::optional<TensorType>(TensorType::kTF_Q2)}) {
    MemoryLedger ledger;
    ModelLoadOptions o;
    o.weight_type = type;
    auto model = LlamaModel::Load(*g, ledger, o);
    ASSERT_TRUE(model.ok()) << model.status().ToString();
    const std::vector<float> one = Logits(**model, ledger, 1, -1);
    for (int skew : {-1, 0, 1}) {
      const std::vector<float> two = Logits(**model, ledger, 2, skew);
      ASSERT_EQ(one.size(), two.size());
      EXPECT_EQ(0, std::memcmp(one.data(), two.data(), one.size() * sizeof(float)))
          << (type ? "TF_Q2" : "F16") << ", 2 threads, shares skewed towards thread " << skew;
    }
  }
}

}  // namespace
}  // namespace tabfit
