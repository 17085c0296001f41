#include "kv/plain_kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kv/kv_factory.h"

namespace tabfit {
namespace {

// Naive attention over explicit K/V rows for one kv head.
std::vector<float> Naive(const std::vector<std::vector<float>>& K, const std::vector<std::vector<float>>& V,
                         const float* q, int kvh, int hd, float scale) {
  std::vector<float> s(K.size());
  float mx = -1e30f;
  for (size_t i = 0; i < K.size(); ++i) {
    double d = 0;
    for (int j = 0; j < hd; ++j) d += K[i][kvh * hd + j] * q[j];
    s[i] = static_cast<float>(d) * scale;
    mx = std::max(mx, s[i]);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<float> out(hd, 0.f);
  for (size_t i = 0; i < K.size(); ++i) {
    for (int j = 0; j < hd; ++j) out[j] += static_cast<float>(s[i] / sum) * V[i][kvh * hd + j];
  }
  return out;
}

class PlainKv : public ::testing::TestWithParam<std::string> {};

TEST_P(PlainKv, AttendMatchesNaiveAndRetainCompacts) {
  MemoryLedger ledger;
  KvCacheConfig c{.n_layers = 2, .n_kv_heads = 2, .head_dim = 16, .capacity = 32, .type = GetParam()};
  auto kv = CreatePlainKvCache(c, ledger);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  const size_t elem = GetParam() == "f16" ? 2 : 4;
  EXPECT_EQ(ledger.component_bytes("kv_cache"), 0u);  // storage follows the tokens
  std::mt19937 rng(7);
  std::normal_distribution<float> nd;
  std::vector<std::vector<float>> K, V;
  for (int step = 0; step < 3; ++step) {
    int n = step + 2;
    std::vector<float> k(n * 32), v(n * 32);
    for (auto& x : k) x = nd(rng);
    for (auto& x : v) x = nd(rng);
    std::vector<int32_t> pos(n);
    for (int t = 0; t < n; ++t) pos[t] = (*kv)->size() + t;
    for (int l = 0; l < 2; ++l) ASSERT_TRUE((*kv)->Write(l, n, pos.data(), k.data(), v.data()).ok());
    ASSERT_TRUE((*kv)->Commit(n, pos.data()).ok());
    for (int t = 0; t < n; ++t) {
      K.emplace_back(k.begin() + t * 32, k.begin() + (t + 1) * 32);
      V.emplace_back(v.begin() + t * 32, v.begin() + (t + 1) * 32);
    }
  }
  ASSERT_EQ((*kv)->size(), 9);
  // One chunk of 16 cells per layer (a quarter of the capacity, at least 16): K and V rows of 2 heads x 16.
  EXPECT_EQ(ledger.component_bytes("kv_cache"), 2u * 2 * 16 * 32 * elem);
  EXPECT_EQ((*kv)->bytes(), ledger.component_bytes("kv_cache"));
  std::vector<float> q(16);
  for (auto& x : q) x = nd(rng);
  const float tol = GetParam() == "f16" ? 5e-3f : 1e-5f;
  std::vector<float> scores(32), out(16);
  for (int kvh = 0; kvh < 2; ++kvh) {
    (*kv)->Attend(1, kvh, q.data(), 0.25f, 9, scores.data(), out.data());
    auto want = Naive(K, V, q.data(), kvh, 16, 0.25f);
    for (int j = 0; j < 16; ++j) EXPECT_NEAR(out[j], want[j], tol) << kvh << " " << j;
    double psum = 0;
    for (int s = 0; s < 9; ++s) psum += scores[s];
    EXPECT_NEAR(psum, 1.0, 1e-5);
  }
  // Drop slots 1, 4, 5: attention equals naive attention over the survivors, positions kept.
  std::vector<bool> keep(9, true);
  keep[1] = keep[4] = keep[5] = false;
  ASSERT_TRUE((*kv)->Retain(keep).ok());
  ASSERT_EQ((*kv)->size(), 6);
  EXPECT_EQ((*kv)->position(1), 2);
  EXPECT_EQ((*kv)->position(3), 6);
  std::vector<std::vector<float>> K2, V2;
  for (int s = 0; s < 9; ++s) {
    if (keep[s]) {
      K2.push_back(K[s]);
      V2.push_back(V[s]);
    }
  }
  (*kv)->Attend(1, 0, q.data(), 0.25f, 6, scores.data(), out.data());
  auto want = Naive(K2, V2, q.data(), 0, 16, 0.25f);
  for (int j = 0; j < 16; ++j) EXPECT_NEAR(out[j], want[j], tol);
  EXPECT_FALSE((*kv)->Retain(std::vector<bool>(3, true)).ok());
}

INSTANTIATE_TEST_SUITE_P(Types, PlainKv, ::testing::Values("f32", "f16"));

// AttendGroup (all query heads of a kv head at once, what the forward pass calls)
// equals Attend head by head, probabilities included, for every cache type.
TEST(KvCaches, AttendGroupEqualsAttendPerHead) {
  for (const char* type : {"f32", "f16", "q8_0", "q4_0", "mixed"}) {
    for (bool prune : {false, true}) {
      MemoryLedger ledger;
      KvCacheConfig c{.n_layers = 2, .n_kv_heads = 2, .head_dim = 32, .capacity = 64, .type = type};
      KvCacheOptions o;
      o.recent_window = 16;
      if (prune) o.prune.auto_keep = 0.5f;
      auto kv = MakeKvCache(c, o, ledger);
      ASSERT_TRUE(kv.ok()) << type << ": " << kv.status().ToString();
      std::mt19937 rng(11);
      std::normal_distribution<float> nd;
      const int n = 40, row = 64;
      std::vector<float> k(n * row), v(n * row);
      for (auto& x : k) x = nd(rng);
      for (auto& x : v) x = nd(rng);
      std::vector<int32_t> pos(n);
      for (int t = 0; t < n; ++t) pos[t] = t;
      for (int l = 0; l < 2; ++l) ASSERT_TRUE((*kv)->Write(l, n, pos.data(), k.data(), v.data()).ok());
      ASSERT_TRUE((*kv)->Commit(n, pos.data()).ok());
      const int n_q = 3, hd = 32, vis = 37;
      std::vector<float> q(n_q * hd);
      for (auto& x : q) x = nd(rng);
      const float tol = std::string(type) == "f32" ? 1e-5f : 5e-3f;
      for (int kvh = 0; kvh < 2; ++kvh) {
        std::vector<float> gs(n_q * vis), go(n_q * hd);
        (*kv)->AttendGroup(1, kvh, q.data(), n_q, 0.2f, vis, gs.data(), go.data());
        for (int i = 0; i < n_q; ++i) {
          std::vector<float> hs(vis), ho(hd);
          (*kv)->Attend(1, kvh, q.data() + i * hd, 0.2f, vis, hs.data(), ho.data());
          for (int j = 0; j < hd; ++j) ASSERT_NEAR(go[i * hd + j], ho[j], tol) << type << " head " << i << " dim " << j;
          double psum = 0;
          for (int s = 0; s < vis; ++s) {
            ASSERT_NEAR(gs[i * vis + s], hs[s], 1e-5f) << type << " head " << i << " slot " << s;
            psum += gs[i * vis + s];
          }
          EXPECT_NEAR(psum, 1.0, 1e-5) << type;
        }
      }
    }
  }
}

TEST(PlainKv, FullCacheAndBadConfigAreErrors) {
  MemoryLedger ledger;
  KvCacheConfig c{.n_layers = 1, .n_kv_heads = 1, .head_dim = 4, .capacity = 2, .type = "f16"};
  auto kv = CreatePlainKvCache(c, ledger);
  ASSERT_TRUE(kv.ok());
  std::vector<float> k(12), v(12);
  std::vector<int32_t> pos = {0, 1, 2};
  EXPECT_EQ((*kv)->Write(0, 3, pos.data(), k.data(), v.data()).code(), StatusCode::kOutOfRange);
  c.type = "q3";
  EXPECT_FALSE(CreatePlainKvCache(c, ledger).ok());
  c.type = "f16";
  c.capacity = 0;
  EXPECT_FALSE(CreatePlainKvCache(c, ledger).ok());
}

}  // namespace
}  // namespace tabfit
