#include "kv/pruning_kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kv/kv_factory.h"
#include "kv/plain_kv_cache.h"

namespace tabfit {
namespace {

constexpr int kHD = 32;

struct Harness {
  MemoryLedger ledger;
  std::unique_ptr<PruningKvCache> kv;
  std::vector<std::vector<float>> K, V;  // by original position
  std::mt19937 rng{5};
  std::normal_distribution<float> nd;

  Harness(int cap, KvPruneOptions po, const std::string& type = "f32") {
    KvCacheConfig c{.n_layers = 2, .n_kv_heads = 1, .head_dim = kHD, .capacity = cap, .type = type};
    KvCacheOptions o;
    o.prune = po;
    if (po.auto_keep > 0) {
      auto r = MakeKvCache(c, o, ledger);
      EXPECT_TRUE(r.ok()) << r.status().ToString();
      kv.reset(AsPruning(r->release()));
    } else {
      auto inner = CreatePlainKvCache(c, ledger);
      auto r = PruningKvCache::Create(std::move(*inner), po, ledger);
      EXPECT_TRUE(r.ok());
      kv = std::move(*r);
    }
  }
  // One decode step the way the forward pass drives the cache: write every
  // layer, attend every layer with query `q`, commit.
  void Step(const std::vector<float>& k, const std::vector<float>& q) {
    int32_t pos = kv->size() ? kv->position(kv->size() - 1) + 1 : 0;
    std::vector<float> v(kHD);
    for (auto& x : v) x = nd(rng);
    for (int l = 0; l < 2; ++l) ASSERT_TRUE(kv->Write(l, 1, &pos, k.data(), v.data()).ok());
    std::vector<float> scores(kv->config().capacity), out(kHD);
    for (int l = 0; l < 2; ++l) kv->Attend(l, 0, q.data(), 0.2f, kv->size() + 1, scores.data(), out.data());
    ASSERT_TRUE(kv->Commit(1, &pos).ok());
    ASSERT_EQ(static_cast<int>(K.size()), pos);
    K.push_back(k);
    V.push_back(v);
  }
};

TEST(PruningKv, DropsLowestMassKeepsSinksAndRecent) {
  KvPruneOptions po;
  po.sinks = 2;
  po.recent = 4;
  Harness h(32, po);
  std::vector<float> u(kHD, 0.f);
  u[3] = 1.f;
  // Slots 7 and 11 have keys along u; every query looks along u.
  for (int t = 0; t < 24; ++t) {
    std::vector<float> k(kHD);
    for (auto& x : k) x = h.nd(h.rng) * 0.3f;
    if (t == 7 || t == 11) k[3] = 12.f;
    std::vector<float> q(kHD);
    for (int j = 0; j < kHD; ++j) q[j] = u[j] * 2.f + h.nd(h.rng) * 0.1f;
    h.Step(k, q);
  }
  EXPECT_GT(h.kv->score(7), 10 * h.kv->score(8));
  std::vector<float> before(24);
  for (int s = 0; s < 24; ++s) before[s] = h.kv->score(s);
  auto dropped = h.kv->Prune(10);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(*dropped, 14);
  ASSERT_EQ(h.kv->size(), 10);
  std::vector<int> kept;
  for (int s = 0; s < 10; ++s) kept.push_back(h.kv->position(s));
  EXPECT_EQ(kept[0], 0);
  EXPECT_EQ(kept[1], 1);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(kept[6 + i], 20 + i);
  EXPECT_NE(std::find(kept.begin(), kept.end(), 7), kept.end());
  EXPECT_NE(std::find(kept.begin(), kept.end(), 11), kept.end());
  // Every dropped middle slot scored no higher than every kept middle slot; scores moved with their slots.
  float min_kept = 1e30f;
  for (int s = 2; s < 6; ++s) min_kept = std::min(min_kept, before[kept[s]]);
  for (int p = 2; p < 20; ++p) {
    if (std::find(kept.begin(), kept.end(), p) == kept.end()) EXPECT_LE(before[p], min_kept) << p;
  }
  for (int s = 0; s < 10; ++s) EXPECT_EQ(h.kv->score(s), before[kept[s]]);
  // Attention after pruning equals attention over the surviving (original) keys/values.
  std::vector<float> q(kHD), scores(32), out(kHD);
  for (auto& x : q) x = h.nd(h.rng);
  h.kv->Attend(1, 0, q.data(), 0.2f, 10, scores.data(), out.data());
  std::vector<double> p(10);
  double mx = -1e30, sum = 0;
  for (int s = 0; s < 10; ++s) {
    double d = 0;
    for (int j = 0; j < kHD; ++j) d += h.K[kept[s]][j] * q[j];
    p[s] = d * 0.2;
    mx = std::max(mx, p[s]);
  }
  for (auto& x : p) sum += (x = std::exp(x - mx));
  for (int j = 0; j < kHD; ++j) {
    double want = 0;
    for (int s = 0; s < 10; ++s) want += p[s] / sum * h.V[kept[s]][j];
    EXPECT_NEAR(out[j], want, 1e-5);
  }
  // The recency baseline keeps the newest middle slots instead.
  {
    KvPruneOptions ro = po;
    ro.recency_only = true;
    Harness r(32, ro);
    for (int t = 0; t < 24; ++t) {
      std::vector<float> k(kHD, 0.1f);
      if (t == 7) k[3] = 12.f;
      r.Step(k, u);
    }
    ASSERT_TRUE(r.kv->Prune(10).ok());
    for (int s = 2; s < 10; ++s) EXPECT_EQ(r.kv->position(s), 14 + s) << s;
  }
  // Asking to keep fewer than sinks + recent keeps exactly those.
  ASSERT_TRUE(h.kv->Prune(0).ok());
  EXPECT_EQ(h.kv->size(), 6);
}

TEST(PruningKv, AutoPruneLetsTheContextGrowPastCapacity) {
  KvPruneOptions po;
  po.sinks = 2;
  po.recent = 3;
  po.auto_keep = 0.5f;
  Harness h(16, po, "q8_0");
  ASSERT_NE(h.kv, nullptr);
  // Ledger: the quantized cells (and their staging scratch) plus the score accumulators.
  EXPECT_EQ(h.ledger.component_bytes("kv_cache.scores"), 4u * 16 * (2 + 2));
  EXPECT_EQ(h.ledger.current_bytes(), h.kv->bytes());
  int max_size = 0;
  for (int t = 0; t < 60; ++t) {
    auto r = h.kv->MakeRoom(1);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    std::vector<float> k(kHD), q(kHD);
    for (auto& x : k) x = h.nd(h.rng);
    for (auto& x : q) x = h.nd(h.rng);
    h.Step(k, q);
    max_size = std::max(max_size, h.kv->size());
  }
  EXPECT_EQ(max_size, 16);
  EXPECT_EQ(h.kv->pruned_total(), 60 - h.kv->size());
  EXPECT_EQ(h.kv->position(0), 0);
  EXPECT_EQ(h.kv->position(1), 1);
  EXPECT_EQ(h.kv->position(h.kv->size() - 1), 59);
  for (int s = 1; s < h.kv->size(); ++s) EXPECT_LT(h.kv->position(s - 1), h.kv->position(s));
  // Without auto pruning MakeRoom leaves a full cache alone (the forward pass reports it).
  Harness off(4, KvPruneOptions{.sinks = 1, .recent = 1, .auto_keep = 0.f});
  for (int t = 0; t < 4; ++t) off.Step(std::vector<float>(kHD, 0.1f), std::vector<float>(kHD, 0.1f));
  auto r = off.kv->MakeRoom(1);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 0);
  EXPECT_EQ(off.kv->size(), 4);
  // A step larger than what pruning can free is an error, not a silent overflow.
  EXPECT_FALSE(h.kv->MakeRoom(15).ok());
  h.kv.reset();
  EXPECT_EQ(h.ledger.current_bytes(), 0u);
}

// The spec's knobs on prune(): threshold drops only what scores below the
// threshold x the mean, budget keeps the top N, window keeps the newest; all
// keep the sinks and recent window, respect min_tokens_to_keep and
// max_tokens_to_drop, and report the bytes the ledger got back.
TEST(PruningKv, PruneNowByThresholdBudgetAndWindowFreesLedgerBytes) {
  auto run = [](KvPruneOptions po, int* kept_heavy) {
    po.sinks = 2;
    po.recent = 4;
    Harness h(600, po, "f16");
    std::vector<float> u(kHD, 0.f);
    u[3] = 1.f;
    for (int t = 0; t < 520; ++t) {
      std::vector<float> k(kHD);
      for (auto& x : k) x = h.nd(h.rng) * 0.3f;
      if (t % 10 == 7) k[3] = 6.f;  // 52 heavy hitters
      std::vector<float> q(kHD);
      for (int j = 0; j < kHD; ++j) q[j] = u[j] * 2.f + h.nd(h.rng) * 0.1f;
      h.Step(k, q);
    }
    const uint64_t before = h.ledger.current_bytes();
    auto r = h.kv->PruneNow();
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(h.ledger.current_bytes(), before - r->bytes);
    EXPECT_EQ(h.kv->size(), 520 - r->tokens);
    EXPECT_EQ(h.kv->position(0), 0);
    EXPECT_EQ(h.kv->position(1), 1);
    EXPECT_EQ(h.kv->position(h.kv->size() - 1), 519);
    *kept_heavy = 0;
    for (int s = 0; s < h.kv->size(); ++s) *kept_heavy += h.kv->position(s) % 10 == 7 ? 1 : 0;
    return *r;
  };
  int heavy = 0;
  KvPruneOptions th;
  th.strategy = "threshold";
  th.threshold = 0.5f;
  th.max_tokens_to_drop = 1.f;
  KvPruneResult r = run(th, &heavy);
  // Most light tokens score below half the mean and go; the heavy hitters stay.
  EXPECT_GE(r.tokens, 234);
  EXPECT_LT(r.tokens, 468);
  EXPECT_EQ(heavy, 52);
  EXPECT_GT(r.bytes, 0u);  // f16 chunks of 256 cells: whole chunks came back
  th.max_tokens_to_drop = 0.25f;
  r = run(th, &heavy);
  EXPECT_EQ(r.tokens, 130);  // capped at a quarter of 520
  th.max_tokens_to_drop = 1.f;
  th.min_tokens_to_keep = 300;
  r = run(th, &heavy);
  EXPECT_EQ(r.tokens, 220);
  KvPruneOptions bu;
  bu.strategy = "budget";
  bu.budget = 100;
  bu.max_tokens_to_drop = 1.f;
  r = run(bu, &heavy);
  EXPECT_EQ(r.tokens, 420);
  EXPECT_EQ(heavy, 52);
  KvPruneOptions wi = bu;
  wi.strategy = "window";
  r = run(wi, &heavy);
  EXPECT_EQ(r.tokens, 420);
  EXPECT_EQ(heavy, 10);  // a sliding window keeps whatever is recent
  KvPruneOptions fr = bu;
  fr.frequency_aware = true;
  fr.decay = 0.99f;
  r = run(fr, &heavy);
  EXPECT_EQ(heavy, 52);
}

TEST(PruningKv, TruncateAndIntervalAutoPruning) {
  KvPruneOptions po;
  po.sinks = 2;
  po.recent = 4;
  Harness h(300, po, "f16");
  for (int t = 0; t < 40; ++t) h.Step(std::vector<float>(kHD, 0.1f), std::vector<float>(kHD, 0.1f));
  auto r = h.kv->Truncate(10);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->tokens, 28);
  ASSERT_EQ(h.kv->size(), 12);
  EXPECT_EQ(h.kv->position(1), 1);
  EXPECT_EQ(h.kv->position(2), 30);
  // enable_auto_pruning(max_tokens = 20, pruning_interval = 5).
  ASSERT_TRUE(h.kv->EnableAutoPruning(20, 5).ok());
  int max_size = 0;
  for (int t = 0; t < 40; ++t) {
    ASSERT_TRUE(h.kv->MakeRoom(1).ok());
    h.Step(std::vector<float>(kHD, 0.1f), std::vector<float>(kHD, 0.1f));
    max_size = std::max(max_size, h.kv->size());
  }
  EXPECT_LE(max_size, 20 + 5);
  EXPECT_GE(max_size, 20);
  EXPECT_FALSE(h.kv->EnableAutoPruning(-1, 5).ok());
}

TEST(PruningKv, BadKnobsNameTheOptionAndRange) {
  struct Case {
    KvPruneOptions o;
    const char* needle;
  };
  std::vector<Case> cases;
  KvPruneOptions o;
  o.threshold = 1.5f;
  cases.push_back({o, "threshold must be in [0, 1]"});
  o = {};
  o.max_tokens_to_drop = 1.5f;
  cases.push_back({o, "max_tokens_to_drop must be in (0, 1]"});
  o = {};
  o.strategy = "random";
  cases.push_back({o, "strategy must be threshold, budget or window"});
  o = {};
  o.decay = 0.f;
  cases.push_back({o, "decay must be in (0, 1]"});
  for (const Case& c : cases) {
    Status s = CheckPruneOptions(c.o);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
    EXPECT_NE(s.message().find(c.needle), std::string::npos) << s.message();
    MemoryLedger ledger;
    KvCacheConfig kc{.n_layers = 1, .n_kv_heads = 1, .head_dim = 32, .capacity = 8, .type = "f16"};
    KvCacheOptions ko;
    ko.prune = c.o;
    ko.pruning = true;
    EXPECT_FALSE(MakeKvCache(kc, ko, ledger).ok());
    EXPECT_EQ(ledger.current_bytes(), 0u);
  }
}

}  // namespace
}  // namespace tabfit
