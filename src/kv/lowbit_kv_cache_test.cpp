// The KIVI-style low-bit KV cache: its formats, its kernels against the scalar
// oracle, attention over the stored blocks, storage that follows the tokens,
// rebuilds (pruning, requantize) and bad options.
#include "kv/lowbit_kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/f16.h"
#include "core/rss.h"
#include "kv/kv_factory.h"
#include "kv/lowbit_kernels.h"
#include "kv/plain_kv_cache.h"
#include "quant/kernels.h"

namespace tabfit {
namespace {

std::vector<float> Gauss(size_t n, uint32_t seed, float sigma = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

TEST(LowBitFormat, RoundTripIsWithinHalfAStepAndDequantAtAgrees) {
  for (int bits : {2, 3, 4}) {
    for (int n : {32, 64, 128}) {
      auto x = Gauss(n, 3 + bits * n, 2.f);
      x[5] = 7.5f;  // an outlier widens the range
      std::vector<uint8_t> g(kvlow::GroupBytes(n, bits));
      kvlow::QuantizeGroup(x.data(), 1, n, bits, g.data());
      std::vector<float> y(n);
      kvlow::DequantizeGroup(g.data(), n, bits, y.data(), 1);
      float s, m;
      kvlow::GroupRange(g.data(), &s, &m);
      EXPECT_GT(s, 0.f);
      for (int i = 0; i < n; ++i) {
        EXPECT_LE(std::fabs(y[i] - x[i]), s / 2 * (1 + 1e-5f) + 1e-6f) << bits << " " << n << " " << i;
        EXPECT_EQ(kvlow::DequantAt(g.data(), bits, i), y[i]) << bits << " " << i;
      }
    }
  }
}

TEST(LowBitFormat, ConstantAndStridedGroups) {
  std::vector<float> x(64 * 3, 0.25f);
  std::vector<uint8_t> g(kvlow::GroupBytes(64, 2));
  kvlow::QuantizeGroup(x.data() + 1, 3, 64, 2, g.data());  // every third value
  std::vector<float> y(64);
  kvlow::DequantizeGroup(g.data(), 64, 2, y.data(), 1);
  for (float v : y) EXPECT_NEAR(v, 0.25f, 0.25f / 1024);
  std::vector<float> bad(32, NAN);
  std::vector<uint8_t> gb(kvlow::GroupBytes(32, 3));
  kvlow::QuantizeGroup(bad.data(), 1, 32, 3, gb.data());  // no crash, finite output
  kvlow::DequantizeGroup(gb.data(), 32, 3, y.data(), 1);
  for (int i = 0; i < 32; ++i) EXPECT_TRUE(std::isfinite(y[i]));
}

// Every kernel of Best() against the scalar oracle: both compute the same sums
// in float in another order, so they agree to a few ulp of the sum of |terms|.
TEST(LowBitKernels, BestMatchesScalarOracle) {
  const kvlow::Kernels& S = kvlow::Scalar();
  const kvlow::Kernels& B = kvlow::Best();
  std::printf("low-bit KV kernels: %s\n", B.name);
  for (int bits : {2, 3, 4}) {
    for (int G : {32, 64, 128}) {
      for (int hd : {64, 128}) {
        const size_t rec = kvlow::GroupBytes(G, bits);
        std::vector<uint8_t> recs(rec * hd);
        auto keys = Gauss(static_cast<size_t>(hd) * G, bits * 7 + G + hd);
        for (int c = 0; c < hd; ++c) kvlow::QuantizeGroup(keys.data() + c * G, 1, G, bits, recs.data() + c * rec);
        auto q = Gauss(hd, 11);
        std::vector<float> a(G), b(G);
        S.key_scores(recs.data(), rec, hd, G, bits, q.data(), a.data());
        B.key_scores(recs.data(), rec, hd, G, bits, q.data(), b.data());
        for (int t = 0; t < G; ++t) {
          double mag = 0;
          for (int c = 0; c < hd; ++c) mag += std::fabs(q[c] * kvlow::DequantAt(recs.data() + c * rec, bits, t));
          EXPECT_NEAR(a[t], b[t], 4e-6 * mag + 1e-6) << bits << " G" << G << " hd" << hd << " t" << t;
        }
        const int Gv = std::min(G, hd);
        const size_t vg = kvlow::GroupBytes(Gv, bits);
        std::vector<uint8_t> vrec(vg * (hd / Gv));
        auto vals = Gauss(hd, 5 + bits);
        for (int g = 0; g < hd / Gv; ++g) kvlow::QuantizeGroup(vals.data() + g * Gv, 1, Gv, bits, vrec.data() + g * vg);
        std::vector<float> oa(hd, 0.5f), ob(hd, 0.5f);
        S.value_axpy(vrec.data(), hd, Gv, bits, 0.37f, oa.data());
        B.value_axpy(vrec.data(), hd, Gv, bits, 0.37f, ob.data());
        for (int c = 0; c < hd; ++c) EXPECT_NEAR(oa[c], ob[c], 1e-5 * (0.5 + std::fabs(0.37 * vals[c])) + 1e-6);
      }
    }
  }
  // The tile kernels (grouped-query attention).
  for (int bits : {2, 3, 4}) {
    for (int hd : {64, 128}) {
      const int G = 64;
      const size_t rec = kvlow::GroupBytes(G, bits);
      std::vector<uint8_t> recs(rec * hd);
      auto keys = Gauss(static_cast<size_t>(hd) * G, 40 + bits + hd);
      for (int c = 0; c < hd; ++c) kvlow::QuantizeGroup(keys.data() + c * G, 1, G, bits, recs.data() + c * rec);
      std::vector<float> ka(hd * 32), kb(hd * 32);
      S.key_tile(recs.data(), rec, hd, bits, 1, ka.data());
      B.key_tile(recs.data(), rec, hd, bits, 1, kb.data());
      for (int c = 0; c < hd; ++c) {
        for (int t = 0; t < 32; ++t) {
          ASSERT_NEAR(ka[c * 32 + t], kvlow::DequantAt(recs.data() + c * rec, bits, 32 + t), 1e-6f * (1 + std::fabs(ka[c * 32 + t])));
          ASSERT_NEAR(kb[c * 32 + t], ka[c * 32 + t], 1e-6f * (1 + std::fabs(ka[c * 32 + t])));
        }
      }
      for (int len : {32, 13}) {  // the window's rows into the key-tile layout: an exact move
        auto rows = Gauss(static_cast<size_t>(len) * hd, 70 + len);
        std::vector<float> ta(hd * 32, -1.f), tb(hd * 32, -1.f);
        S.rows_to_tile(rows.data(), len, hd, ta.data());
        B.rows_to_tile(rows.data(), len, hd, tb.data());
        for (int c = 0; c < hd; ++c) {
          for (int t = 0; t < 32; ++t) {
            ASSERT_EQ(ta[c * 32 + t], t < len ? rows[t * hd + c] : 0.f);
            ASSERT_EQ(tb[c * 32 + t], ta[c * 32 + t]);
          }
        }
      }
      for (int n_q : {1, 2, 5, 8}) {
        for (int len : {32, 7}) {
          auto q = Gauss(static_cast<size_t>(n_q) * hd, 50 + n_q);
          const size_t ld = 40;
          std::vector<float> sa(n_q * ld, -1.f), sb(n_q * ld, -1.f);
          S.tile_scores(ka.data(), hd, q.data(), n_q, len, sa.data(), ld);
          B.tile_scores(ka.data(), hd, q.data(), n_q, len, sb.data(), ld);
          for (int h = 0; h < n_q; ++h) {
            for (int t = 0; t < len; ++t) {
              double mag = 0;
              for (int c = 0; c < hd; ++c) mag += std::fabs(q[h * hd + c] * ka[c * 32 + t]);
              ASSERT_NEAR(sa[h * ld + t], sb[h * ld + t], 4e-6 * mag + 1e-6);
            }
            for (size_t t = len; t < ld; ++t) ASSERT_EQ(sb[h * ld + t], -1.f);  // nothing past len
          }
          std::vector<float> vt(static_cast<size_t>(len) * hd);
          auto vals = Gauss(static_cast<size_t>(len) * hd, 60 + len);
          const int Gv = std::min(G, hd);
          const size_t vg = kvlow::GroupBytes(Gv, bits), vrec = vg * (hd / Gv);
          std::vector<uint8_t> vr(vrec * len);
          for (int t = 0; t < len; ++t) {
            for (int g = 0; g < hd / Gv; ++g) {
              kvlow::QuantizeGroup(vals.data() + t * hd + g * Gv, 1, Gv, bits, vr.data() + t * vrec + g * vg);
            }
          }
          std::vector<float> va(vt.size()), vb(vt.size());
          S.value_tile(vr.data(), vrec, len, hd, Gv, bits, va.data());
          B.value_tile(vr.data(), vrec, len, hd, Gv, bits, vb.data());
          for (size_t i = 0; i < va.size(); ++i) ASSERT_NEAR(va[i], vb[i], 1e-6f * (1 + std::fabs(va[i])));
          std::vector<float> oa(n_q * hd, 0.25f), ob(n_q * hd, 0.25f);
          S.tile_accumulate(va.data(), hd, len, sa.data(), ld, n_q, oa.data());
          B.tile_accumulate(va.data(), hd, len, sa.data(), ld, n_q, ob.data());
          for (int h = 0; h < n_q; ++h) {
            for (int c = 0; c < hd; ++c) {
              double mag = 0.25;
              for (int t = 0; t < len; ++t) mag += std::fabs(sa[h * ld + t] * va[t * hd + c]);
              ASSERT_NEAR(oa[h * hd + c], ob[h * hd + c], 4e-6 * mag + 1e-6);
            }
          }
        }
      }
    }
  }
  for (int hd : {32, 64, 128, 256}) {
    auto x = Gauss(hd, 21);
    std::vector<BlockQ8_0> blk(hd / 32);
    QuantizeRow(TensorType::kQ8_0, x.data(), blk.data(), hd, nullptr);
    std::vector<uint16_t> h(hd);
    for (int i = 0; i < hd; ++i) h[i] = F32ToF16(x[i]);
    auto q = Gauss(hd, 22);
    double mag = 0;
    for (int i = 0; i < hd; ++i) mag += std::fabs(q[i] * x[i]);
    EXPECT_NEAR(S.dot_q8(blk.data(), hd / 32, q.data()), B.dot_q8(blk.data(), hd / 32, q.data()), 4e-6 * mag + 1e-6);
    EXPECT_NEAR(S.dot_f16(h.data(), hd, q.data()), B.dot_f16(h.data(), hd, q.data()), 4e-6 * mag + 1e-6);
    std::vector<float> a(hd, 1.f), b(hd, 1.f), c(hd, 1.f), d(hd, 1.f);
    S.axpy_q8(0.7f, blk.data(), hd / 32, a.data());
    B.axpy_q8(0.7f, blk.data(), hd / 32, b.data());
    S.axpy_f16(0.7f, h.data(), hd, c.data());
    B.axpy_f16(0.7f, h.data(), hd, d.data());
    for (int i = 0; i < hd; ++i) {
      EXPECT_NEAR(a[i], b[i], 1e-5 * (1 + std::fabs(x[i]))) << i;
      EXPECT_NEAR(c[i], d[i], 1e-5 * (1 + std::fabs(x[i]))) << i;
    }
  }
}

// Drives a cache the way the forward pass does, remembering the originals.
struct Driver {
  KvCacheConfig c;
  std::vector<std::vector<float>> K, V;  // [token][layer * row]
  std::vector<int32_t> pos;
  explicit Driver(KvCacheConfig config) : c(std::move(config)) {}
  size_t row() const { return static_cast<size_t>(c.n_kv_heads) * c.head_dim; }
  Status Step(KvCache& kv, int n, uint32_t seed) {
    std::vector<int32_t> p(n);
    for (int t = 0; t < n; ++t) p[t] = static_cast<int32_t>(pos.size()) + t;
    std::vector<std::vector<float>> ks, vs;
    for (int l = 0; l < c.n_layers; ++l) {
      auto k = Gauss(n * row(), seed * 31 + l);
      auto v = Gauss(n * row(), seed * 37 + l);
      for (size_t i = 0; i < k.size(); i += 7) k[i] *= 4.f;  // a few outlier channels, as real keys have
      TF_RETURN_IF_ERROR(kv.Write(l, n, p.data(), k.data(), v.data()));
      ks.push_back(k);
      vs.push_back(v);
    }
    TF_RETURN_IF_ERROR(kv.Commit(n, p.data()));
    for (int t = 0; t < n; ++t) {
      std::vector<float> kk, vv;
      for (int l = 0; l < c.n_layers; ++l) {
        kk.insert(kk.end(), ks[l].begin() + t * row(), ks[l].begin() + (t + 1) * row());
        vv.insert(vv.end(), vs[l].begin() + t * row(), vs[l].begin() + (t + 1) * row());
      }
      K.push_back(kk);
      V.push_back(vv);
      pos.push_back(p[t]);
    }
    return Status::Ok();
  }
};

// Attention in double over the cache's own stored (dequantized) K and V.
std::vector<float> AttendOverStored(const KvCache& kv, int layer, int kvh, const float* q, float scale) {
  const KvCacheConfig& c = kv.config();
  const size_t row = static_cast<size_t>(c.n_kv_heads) * c.head_dim;
  const int n = kv.size();
  std::vector<float> k(row), v(row);
  std::vector<double> s(n);
  std::vector<std::vector<float>> vs;
  double mx = -1e300;
  for (int i = 0; i < n; ++i) {
    EXPECT_TRUE(kv.Get(layer, i, k.data(), v.data(), nullptr).ok());
    double d = 0;
    for (int j = 0; j < c.head_dim; ++j) d += static_cast<double>(q[j]) * k[kvh * c.head_dim + j];
    s[i] = d * scale;
    mx = std::max(mx, s[i]);
    vs.emplace_back(v.begin() + kvh * c.head_dim, v.begin() + (kvh + 1) * c.head_dim);
  }
  double sum = 0;
  for (auto& x : s) sum += (x = std::exp(x - mx));
  std::vector<float> out(c.head_dim, 0.f);
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < c.head_dim; ++j) out[j] += static_cast<float>(s[i] / sum) * vs[i][j];
  }
  return out;
}

void ExpectAttendMatchesStored(const KvCache& kv, uint32_t seed) {
  const KvCacheConfig& c = kv.config();
  std::vector<float> scores(kv.size()), out(c.head_dim);
  for (int l = 0; l < c.n_layers; ++l) {
    for (int h = 0; h < c.n_kv_heads; ++h) {
      auto q = Gauss(c.head_dim, seed + l * 3 + h);
      kv.Attend(l, h, q.data(), 0.125f, kv.size(), scores.data(), out.data());
      auto want = AttendOverStored(kv, l, h, q.data(), 0.125f);
      for (int j = 0; j < c.head_dim; ++j) ASSERT_NEAR(out[j], want[j], 2e-4) << "layer " << l << " head " << h;
      // Grouped-query attention (3 query heads on this kv head, the tiled path)
      // gives each head what Attend gives it.
      const int n_q = 3;
      auto qg = Gauss(static_cast<size_t>(n_q) * c.head_dim, seed + 100 + l * 3 + h);
      std::vector<float> sg(static_cast<size_t>(n_q) * kv.size()), og(static_cast<size_t>(n_q) * c.head_dim);
      kv.AttendGroup(l, h, qg.data(), n_q, 0.125f, kv.size(), sg.data(), og.data());
      for (int i = 0; i < n_q; ++i) {
        auto wi = AttendOverStored(kv, l, h, qg.data() + i * c.head_dim, 0.125f);
        for (int j = 0; j < c.head_dim; ++j) ASSERT_NEAR(og[i * c.head_dim + j], wi[j], 2e-4) << "group head " << i;
        double psum = 0;
        for (int s2 = 0; s2 < kv.size(); ++s2) psum += sg[static_cast<size_t>(i) * kv.size() + s2];
        ASSERT_NEAR(psum, 1.0, 1e-4);
      }
    }
  }
}

KvCacheConfig Shape(int capacity = 512) {
  return KvCacheConfig{.n_layers = 2, .n_kv_heads = 2, .head_dim = 64, .capacity = capacity, .type = "kivi"};
}

TEST(LowBitKv, WindowHoldsTheNewestAtEightBitsAndOlderTokensMoveToTwoBits) {
  MemoryLedger ledger;
  KvLowBitOptions o;
  o.rolling_window = 40;
  auto kv = LowBitKvCache::Create(Shape(), o, ledger);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  Driver d((*kv)->config());
  EXPECT_EQ((*kv)->bytes(), ledger.current_bytes());
  for (int step = 0; step < 30; ++step) ASSERT_TRUE(d.Step(**kv, step % 3 == 0 ? 9 : 1, step).ok());
  const int n = (*kv)->size();
  ASSERT_EQ(n, 10 * 9 + 20);
  // 110 tokens, window 40 + group 32: two groups (64 tokens) moved to 2 bits.
  EXPECT_EQ((*kv)->low_tokens(0), 64);
  const size_t row = d.row();
  std::vector<float> k(row), v(row);
  for (int s = 0; s < n; ++s) {
    int bits = 0;
    ASSERT_TRUE((*kv)->Get(1, s, k.data(), v.data(), &bits).ok());
    EXPECT_EQ(bits, s < 64 ? 2 : 8) << s;
    EXPECT_EQ((*kv)->position(s), s);
    // Error bounds of the format: 8-bit within d/2 = amax/254 per block of 32;
    // 2-bit within half a step of the group's range (keys per channel over the
    // group's tokens, values per token over 64 channels).
    for (size_t i = 0; i < row; ++i) {
      const float ko = d.K[s][row + i], vo = d.V[s][row + i];
      if (bits == 8) {
        float amax = 0.f;
        for (size_t j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(d.K[s][row + j]));
        // Q8_0: codes from d = amax/127, stored as f16(d): |x - q d16| <= d/2 + 127 |d - d16|.
        EXPECT_LE(std::fabs(k[i] - ko), amax / 254 * 1.01f + amax / 2048 + 1e-6f);
      } else {
        // The group was quantized from the 8-bit window's values: their error
        // (amax/254 of each token's block of 32) comes on top.
        auto q8err = [&](const std::vector<float>& x, size_t at) {
          float amax = 0.f;
          for (size_t j = at / 32 * 32; j < at / 32 * 32 + 32; ++j) amax = std::max(amax, std::fabs(x[row + j]));
          return amax / 254 * 1.01f + amax / 2048;
        };
        float lo = 1e30f, hi = -1e30f, kq = 0.f;
        for (int t = s / 32 * 32; t < s / 32 * 32 + 32; ++t) {
          lo = std::min(lo, d.K[t][row + i]);
          hi = std::max(hi, d.K[t][row + i]);
          kq = std::max(kq, q8err(d.K[t], i));
        }
        EXPECT_LE(std::fabs(k[i] - ko), (hi - lo + 2 * kq) / 3 / 2 * 1.01f + kq + 1e-5f) << s << " " << i;
        float vlo = 1e30f, vhi = -1e30f, vq = 0.f;
        for (size_t j = i / 64 * 64; j < i / 64 * 64 + 64; ++j) {
          vlo = std::min(vlo, d.V[s][row + j]);
          vhi = std::max(vhi, d.V[s][row + j]);
          vq = std::max(vq, q8err(d.V[s], j));
        }
        EXPECT_LE(std::fabs(v[i] - vo), (vhi - vlo + 2 * vq) / 3 / 2 * 1.01f + vq + 1e-5f) << s << " " << i;
      }
    }
  }
  ExpectAttendMatchesStored(**kv, 99);
  EXPECT_EQ((*kv)->bytes(), ledger.current_bytes());
  EXPECT_EQ((*kv)->bytes(), LowBitKvCacheBytes((*kv)->config(), o, n));
}

TEST(LowBitKv, EveryBitWidthAndGroupAttendsOverItsStoredValues) {
  for (int bits : {2, 3, 4}) {
    for (int rbits : {8, 16}) {
      for (int G : {32, 128}) {
        SCOPED_TRACE(std::to_string(bits) + "/" + std::to_string(rbits) + " G" + std::to_string(G));
        MemoryLedger ledger;
        KvLowBitOptions o;
        o.default_bits = bits;
        o.recent_token_bits = rbits;
        o.rolling_window = 16;
        o.group_size = G;
        auto kv = LowBitKvCache::Create(Shape(), o, ledger);
        ASSERT_TRUE(kv.ok()) << kv.status().ToString();
        Driver d((*kv)->config());
        ASSERT_TRUE(d.Step(**kv, 200, 1).ok());  // a prefill batch
        for (int i = 0; i < 5; ++i) ASSERT_TRUE(d.Step(**kv, 1, 10 + i).ok());
        EXPECT_GT((*kv)->low_tokens(0), 0);
        ExpectAttendMatchesStored(**kv, bits * 10 + rbits);
      }
    }
  }
}

TEST(LowBitKv, StorageFollowsTheTokensAndPruningReturnsChunks) {
  MemoryLedger ledger;
  KvLowBitOptions o;
  o.rolling_window = 32;
  o.chunk_bytes = 8 << 10;  // small chunks: many of them
  KvCacheConfig c = Shape(4096);
  auto kv = LowBitKvCache::Create(c, o, ledger);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  const uint64_t empty = ledger.current_bytes();  // the scratch only
  Driver d((*kv)->config());
  ASSERT_TRUE(d.Step(**kv, 100, 1).ok());
  const uint64_t at100 = ledger.current_bytes();
  EXPECT_EQ(at100, LowBitKvCacheBytes(c, o, 100));
  // 100 tokens of a 4096 context hold a small part of what the full context would.
  EXPECT_LT(at100 * 5, LowBitKvCacheBytes(c, o, 4096));
  for (int i = 0; i < 8; ++i) ASSERT_TRUE(d.Step(**kv, 100, 2 + i).ok());
  const uint64_t at900 = ledger.current_bytes();
  EXPECT_GT(at900, at100);
  // Keep every other token of the first 800: the ledger gets back whole chunks.
  std::vector<bool> keep(900, true);
  for (int s = 1; s < 800; s += 2) keep[s] = false;
  ASSERT_TRUE((*kv)->Retain(keep).ok());
  ASSERT_EQ((*kv)->size(), 500);
  EXPECT_EQ(ledger.current_bytes(), LowBitKvCacheBytes(c, o, 500));
  EXPECT_LT(ledger.current_bytes(), at900);
  EXPECT_EQ((*kv)->bytes(), ledger.current_bytes());
  EXPECT_EQ((*kv)->position(1), 2);
  EXPECT_EQ((*kv)->position(499), 899);
  ExpectAttendMatchesStored(**kv, 5);
  (*kv)->Clear();
  EXPECT_EQ(ledger.current_bytes(), empty);
}

// After a prune the cache equals one built from scratch from the kept tokens'
// stored values: same positions, same stored K/V (to the rounding of the
// re-encoded groups), and generation continues in it.
TEST(LowBitKv, RetainEqualsACacheRebuiltFromTheKeptTokens) {
  MemoryLedger ledger;
  KvLowBitOptions o;
  o.rolling_window = 24;
  auto kv = LowBitKvCache::Create(Shape(), o, ledger);
  ASSERT_TRUE(kv.ok());
  Driver d((*kv)->config());
  ASSERT_TRUE(d.Step(**kv, 150, 3).ok());
  const size_t row = d.row();
  std::vector<bool> keep(150, true);
  for (int s = 40; s < 150; s += 3) keep[s] = false;
  // The kept tokens' stored values, before the prune.
  std::vector<std::vector<std::vector<float>>> sk(2), sv(2);
  std::vector<int32_t> kept_pos;
  for (int s = 0; s < 150; ++s) {
    if (!keep[s]) continue;
    kept_pos.push_back((*kv)->position(s));
    for (int l = 0; l < 2; ++l) {
      std::vector<float> k(row), v(row);
      ASSERT_TRUE((*kv)->Get(l, s, k.data(), v.data(), nullptr).ok());
      sk[l].push_back(k);
      sv[l].push_back(v);
    }
  }
  ASSERT_TRUE((*kv)->Retain(keep).ok());
  MemoryLedger l2;
  auto fresh = LowBitKvCache::Create(Shape(), o, l2);
  ASSERT_TRUE(fresh.ok());
  const int n = static_cast<int>(kept_pos.size());
  for (int l = 0; l < 2; ++l) {
    std::vector<float> k, v;
    for (int t = 0; t < n; ++t) {
      k.insert(k.end(), sk[l][t].begin(), sk[l][t].end());
      v.insert(v.end(), sv[l][t].begin(), sv[l][t].end());
    }
    ASSERT_TRUE((*fresh)->Write(l, n, kept_pos.data(), k.data(), v.data()).ok());
  }
  ASSERT_TRUE((*fresh)->Commit(n, kept_pos.data()).ok());
  ASSERT_EQ((*kv)->size(), n);
  EXPECT_EQ((*kv)->bytes(), (*fresh)->bytes());
  std::vector<float> a(row), b(row), c2(row), e(row);
  for (int l = 0; l < 2; ++l) {
    EXPECT_EQ((*kv)->low_tokens(l), (*fresh)->low_tokens(l));
    for (int s = 0; s < n; ++s) {
      ASSERT_EQ((*kv)->position(s), (*fresh)->position(s));
      ASSERT_TRUE((*kv)->Get(l, s, a.data(), b.data(), nullptr).ok());
      int fresh_bits = 0;
      ASSERT_TRUE((*fresh)->Get(l, s, c2.data(), e.data(), &fresh_bits).ok());
      for (size_t i = 0; i < row; ++i) {
        if (fresh_bits == 8) {  // window: both re-encoded the same 8-bit values
          ASSERT_NEAR(a[i], c2[i], 2e-3 * (1 + std::fabs(c2[i]))) << l << " " << s << " " << i;
          ASSERT_NEAR(b[i], e[i], 2e-3 * (1 + std::fabs(e[i]))) << l << " " << s << " " << i;
          continue;
        }
        // Low store: the pruned cache may have kept a whole group as it was
        // where the fresh one re-encoded its decoded values: they differ by at
        // most half a step of the fresh group's grid (keys per channel over
        // the group's tokens, values per token over 64 channels).
        float lo = 1e30f, hi = -1e30f;
        for (int t = s / 32 * 32; t < s / 32 * 32 + 32; ++t) {
          lo = std::min(lo, sk[l][t][i]);
          hi = std::max(hi, sk[l][t][i]);
        }
        ASSERT_LE(std::fabs(a[i] - c2[i]), (hi - lo) / 3 / 2 * 1.01f + 2e-3f) << l << " " << s << " " << i;
        float vlo = 1e30f, vhi = -1e30f;
        for (size_t j = i / 64 * 64; j < i / 64 * 64 + 64; ++j) {
          vlo = std::min(vlo, sv[l][s][j]);
          vhi = std::max(vhi, sv[l][s][j]);
        }
        ASSERT_LE(std::fabs(b[i] - e[i]), (vhi - vlo) / 3 / 2 * 1.01f + 2e-3f) << l << " " << s << " " << i;
      }
    }
  }
  // And the next tokens go on at the next positions.
  Driver d2((*kv)->config());
  d2.pos.assign(150, 0);
  ASSERT_TRUE(d2.Step(**kv, 1, 77).ok());
  EXPECT_EQ((*kv)->position(n), 150);
  ExpectAttendMatchesStored(**kv, 8);
}

TEST(LowBitKv, RequantizeLowersTheBitsAndFreesWhatTheLedgerShows) {
  MemoryLedger ledger;
  KvLowBitOptions o;
  o.default_bits = 4;
  o.recent_token_bits = 16;
  o.rolling_window = 64;
  auto kv = LowBitKvCache::Create(Shape(), o, ledger);
  ASSERT_TRUE(kv.ok());
  Driver d((*kv)->config());
  ASSERT_TRUE(d.Step(**kv, 400, 4).ok());
  const uint64_t before = ledger.current_bytes();
  auto freed = (*kv)->Requantize(2, 8);
  ASSERT_TRUE(freed.ok()) << freed.status().ToString();
  EXPECT_GT(*freed, 0u);
  EXPECT_EQ(ledger.current_bytes(), before - *freed);
  KvLowBitOptions o2 = o;
  o2.default_bits = 2;
  o2.recent_token_bits = 8;
  EXPECT_EQ(ledger.current_bytes(), LowBitKvCacheBytes(Shape(), o2, 400));
  int bits = 0;
  std::vector<float> k(d.row()), v(d.row());
  ASSERT_TRUE((*kv)->Get(0, 0, k.data(), v.data(), &bits).ok());
  EXPECT_EQ(bits, 2);
  ASSERT_TRUE((*kv)->Get(0, 399, k.data(), v.data(), &bits).ok());
  EXPECT_EQ(bits, 8);
  ExpectAttendMatchesStored(**kv, 12);
  // Raising precision is refused, with the option named.
  auto up = (*kv)->Requantize(4, 8);
  ASSERT_FALSE(up.ok());
  EXPECT_NE(up.status().message().find("default_bits"), std::string::npos);
  // Shrinking the window moves tokens into the 2-bit store.
  auto freed2 = (*kv)->Requantize(-1, -1, 0);
  ASSERT_TRUE(freed2.ok());
  EXPECT_GT(*freed2, 0u);
  EXPECT_GE((*kv)->low_tokens(0), 400 - 32);
  ASSERT_TRUE(d.Step(**kv, 3, 9).ok());
  ExpectAttendMatchesStored(**kv, 13);
}

TEST(LowBitKv, AStepThatFailedBeforeCommitIsRolledBack) {
  MemoryLedger ledger;
  KvLowBitOptions o;
  o.rolling_window = 8;
  auto kv = LowBitKvCache::Create(Shape(), o, ledger);
  ASSERT_TRUE(kv.ok());
  Driver d((*kv)->config());
  ASSERT_TRUE(d.Step(**kv, 50, 1).ok());
  // A step writes layer 0 (moving tokens into a new group) and then fails.
  auto junk = Gauss(40 * d.row(), 5);
  std::vector<int32_t> p(40);
  for (int t = 0; t < 40; ++t) p[t] = 50 + t;
  ASSERT_TRUE((*kv)->Write(0, 40, p.data(), junk.data(), junk.data()).ok());
  EXPECT_FALSE((*kv)->Commit(40, p.data()).ok());  // layer 1 never written
  EXPECT_EQ((*kv)->size(), 50);
  ASSERT_TRUE(d.Step(**kv, 2, 2).ok());
  ASSERT_EQ((*kv)->size(), 52);
  EXPECT_EQ((*kv)->low_tokens(0), (*kv)->low_tokens(1));
  ExpectAttendMatchesStored(**kv, 3);
}

TEST(LowBitKv, BadOptionsNameTheOptionAndItsRange) {
  MemoryLedger ledger;
  struct Case {
    KvLowBitOptions o;
    const char* needle;
  };
  std::vector<Case> cases;
  KvLowBitOptions o;
  o.default_bits = 5;
  cases.push_back({o, "default_bits must be 2, 3 or 4"});
  o = {};
  o.recent_token_bits = 4;
  cases.push_back({o, "recent_token_bits must be 8 or 16"});
  o = {};
  o.rolling_window = 513;
  cases.push_back({o, "rolling_window must be in [0, 512]"});
  o = {};
  o.group_size = 48;
  cases.push_back({o, "group_size must be 32, 64 or 128"});
  for (const Case& c : cases) {
    auto kv = LowBitKvCache::Create(Shape(), c.o, ledger);
    ASSERT_FALSE(kv.ok());
    EXPECT_EQ(kv.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(kv.status().message().find(c.needle), std::string::npos) << kv.status().message();
  }
  KvCacheConfig odd = Shape();
  odd.head_dim = 48;
  EXPECT_EQ(LowBitKvCache::Create(odd, KvLowBitOptions{}, ledger).status().code(), StatusCode::kUnsupported);
  // A chunk larger than the ledger allows: refused with the flag to raise.
  MemoryLedger small(MemoryLedger::Options{.budget_bytes = 0, .max_buffer_bytes = 1024});
  auto kv = LowBitKvCache::Create(Shape(), KvLowBitOptions{}, small);
  ASSERT_FALSE(kv.ok());
  EXPECT_NE(kv.status().message().find("--max-buffer"), std::string::npos) << kv.status().message();
  EXPECT_EQ(ledger.current_bytes(), 0u);
}

// The plain f16 cache in many small chunks (--max-buffer 64KiB): attention
// across chunk boundaries equals attention over its stored values, storage
// follows the tokens, and Retain returns whole chunks.
TEST(PlainKvChunks, ManyChunksUnderASmallMaxBuffer) {
  MemoryLedger ledger(MemoryLedger::Options{.budget_bytes = 0, .max_buffer_bytes = 64 << 10});
  KvCacheConfig c{.n_layers = 2, .n_kv_heads = 4, .head_dim = 64, .capacity = 2048, .type = "f16"};
  auto kv = CreatePlainKvCache(c, ledger);
  ASSERT_TRUE(kv.ok()) << kv.status().ToString();
  EXPECT_EQ(ledger.current_bytes(), 0u);
  Driver d(c);
  ASSERT_TRUE(d.Step(**kv, 100, 1).ok());
  // 64 KiB chunks of 64 cells (2 x 4 x 64 x 2 bytes = 1 KiB a cell).
  EXPECT_EQ(ledger.current_bytes(), 2u * 2 * 64 * 1024);
  EXPECT_EQ(ledger.current_bytes(), PlainKvCacheBytes(c, 64 << 10, 100));
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(d.Step(**kv, 1, 2 + i).ok());
  ExpectAttendMatchesStored(**kv, 4);
  // Grouped query heads across chunks too.
  std::vector<float> q = Gauss(3 * 64, 9), scores(3 * 105), out(3 * 64), one(64), s1(105);
  (*kv)->AttendGroup(1, 2, q.data(), 3, 0.125f, 105, scores.data(), out.data());
  for (int i = 0; i < 3; ++i) {
    (*kv)->Attend(1, 2, q.data() + i * 64, 0.125f, 105, s1.data(), one.data());
    for (int j = 0; j < 64; ++j) EXPECT_NEAR(out[i * 64 + j], one[j], 1e-5);
  }
  std::vector<bool> keep(105, false);
  for (int s = 0; s < 40; ++s) keep[s] = true;
  ASSERT_TRUE((*kv)->Retain(keep).ok());
  EXPECT_EQ(ledger.current_bytes(), 2u * 64 * 1024);
  ExpectAttendMatchesStored(**kv, 6);
}

// What pruning frees leaves the process too, not just the ledger: KV chunks of
// 1 MiB (256 cells of 8 kv heads x 128 x K,V x f16) are mapped from the OS and
// unmapped when the cache shrinks (core/ledger.cpp maps buffers >= 256 KiB).
TEST(KvChunksRss, PruningAndClearLowerTheProcessResidentSize) {
  if (ProcessResidentBytes() == 0) GTEST_SKIP() << "no resident-size reading on this platform";
  MemoryLedger ledger;
  KvCacheConfig c{.n_layers = 16, .n_kv_heads = 8, .head_dim = 128, .capacity = 4096, .type = "f16"};
  auto kv = CreatePlainKvCache(c, ledger);
  ASSERT_TRUE(kv.ok());
  std::vector<float> k(256 * 1024, 0.5f);
  std::vector<int32_t> pos(256);
  for (int step = 0; step < 8; ++step) {  // 2048 tokens: 128 MiB of cells, written (resident)
    for (int t = 0; t < 256; ++t) pos[t] = step * 256 + t;
    for (int l = 0; l < 16; ++l) ASSERT_TRUE((*kv)->Write(l, 256, pos.data(), k.data(), k.data()).ok());
    ASSERT_TRUE((*kv)->Commit(256, pos.data()).ok());
  }
  const uint64_t ledger_full = ledger.current_bytes(), rss_full = ProcessResidentBytes();
  ASSERT_EQ(ledger_full, 128ull << 20);
  std::vector<bool> keep(2048, false);
  for (int s = 2048 - 256; s < 2048; ++s) keep[s] = true;  // keep the last 256: one chunk per layer
  ASSERT_TRUE((*kv)->Retain(keep).ok());
  EXPECT_EQ(ledger.current_bytes(), 16ull << 20);
  const uint64_t rss_pruned = ProcessResidentBytes();
  // 112 MiB left the ledger; at least 96 MiB of it left the process.
  EXPECT_LT(rss_pruned + (96ull << 20), rss_full) << rss_full << " -> " << rss_pruned;
  (*kv)->Clear();
  EXPECT_EQ(ledger.current_bytes(), 0u);
  EXPECT_LT(ProcessResidentBytes() + (12ull << 20), rss_pruned);
}

}  // namespace
}  // namespace tabfit
