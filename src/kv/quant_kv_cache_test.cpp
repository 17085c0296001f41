#include "kv/quant_kv_cache.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "kv/kv_factory.h"
#include "quant/kernels.h"

namespace tabfit {
namespace {

constexpr int kL = 2, kH = 2, kHD = 64, kRow = kH * kHD, kCap = 48;

// Per-element quantization error bounds (|x - deq(x)| <= bound), from the formats:
//   Q8_0: d = amax/127 (fp16-rounded, rel. 2^-11), round to nearest -> d/2.
//   Q4_0: d = amax/8 with codes -8..7; the clamp at +7 for the opposite sign -> d.
float Bound8(float amax) { return amax / 127.f * 0.5f * 1.002f + 1e-7f; }
float Bound4(float amax) { return amax / 8.f * 1.002f + 1e-7f; }

float BlockAmax(const float* x, int i) {
  float a = 0;
  for (int j = i / 32 * 32; j < i / 32 * 32 + 32; ++j) a = std::max(a, std::fabs(x[j]));
  return a;
}

// Element-wise bound for a value stored with `bits` (mixed old cells: 8-bit then 4-bit).
float ElemBound(const float* row, int i, int bits, bool requantized) {
  const float a = BlockAmax(row, i);
  if (bits == 8) return Bound8(a);
  if (!requantized) return Bound4(a);
  return Bound8(a) + Bound4(a + Bound8(a));
}

struct Ref {
  std::vector<float> p, out;
};
Ref Attention(const std::vector<std::vector<float>>& K, const std::vector<std::vector<float>>& V, const float* q,
              int kvh, float scale, int n) {
  Ref r;
  r.p.resize(n);
  double mx = -1e30;
  std::vector<double> s(n);
  for (int i = 0; i < n; ++i) {
    double d = 0;
    for (int j = 0; j < kHD; ++j) d += static_cast<double>(K[i][kvh * kHD + j]) * q[j];
    s[i] = d * scale;
    mx = std::max(mx, s[i]);
  }
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += (s[i] = std::exp(s[i] - mx));
  r.out.assign(kHD, 0.f);
  for (int i = 0; i < n; ++i) {
    r.p[i] = static_cast<float>(s[i] / sum);
    for (int j = 0; j < kHD; ++j) r.out[j] += r.p[i] * V[i][kvh * kHD + j];
  }
  return r;
}

struct Case {
  std::string type;
  int window;
};

class QuantKv : public ::testing::TestWithParam<Case> {};

// Writes steps of 1..11 tokens (batches larger than the mixed window included),
// then checks (a) every cell holds exactly Q8_0(x), Q4_0(x) or Q4_0(Q8_0(x)) as the
// format says, (b) bytes/ledger, (c) Attend vs f32 attention within the bound
// derived from the per-element errors, for full and causal (prefix) visibility.
TEST_P(QuantKv, CellsAndAttendWithinFormatBound) {
  const Case cs = GetParam();
  MemoryLedger ledger;
  KvCacheConfig c{.n_layers = kL, .n_kv_heads = kH, .head_dim = kHD, .capacity = kCap, .type = cs.type};
  KvCacheOptions o;
  o.recent_window = cs.window;
  // The quantized cache itself (MakeKvCache builds "q8_0" as the low-bit cache
  // with a context-long 8-bit window: lowbit_kv_cache_test.cpp covers that).
  auto kvr = CreateQuantKvCache(c, o.recent_window, ledger);
  ASSERT_TRUE(kvr.ok()) << kvr.status().ToString();
  KvCache& kv = **kvr;
  EXPECT_EQ(kv.bytes(), QuantKvCacheBytes(c, o.recent_window));
  EXPECT_EQ(ledger.component_bytes("kv_cache"), kv.bytes());
  const uint64_t nb = kRow / 32;
  const int w8 = cs.type == "q8_0" ? kCap : cs.type == "q4_0" ? 0 : cs.window;
  EXPECT_EQ(kv.bytes(), 2ull * kL * nb * (34ull * w8 + 18ull * (kCap - w8)));

  std::mt19937 rng(11);
  std::normal_distribution<float> nd;
  std::vector<std::vector<float>> K, V;
  int step = 0;
  while (kv.size() < 40) {
    int n = std::min(1 + (step * 5) % 11, 40 - kv.size());
    ++step;
    std::vector<float> k(n * kRow), v(n * kRow);
    for (auto& x : k) x = nd(rng) * (1.f + 0.3f * ((&x - k.data()) % 7));  // uneven magnitudes per block
    for (auto& x : v) x = nd(rng);
    std::vector<int32_t> pos(n);
    for (int t = 0; t < n; ++t) pos[t] = kv.size() + t;
    for (int l = 0; l < kL; ++l) ASSERT_TRUE(kv.Write(l, n, pos.data(), k.data(), v.data()).ok());
    ASSERT_TRUE(kv.Commit(n, pos.data()).ok());
    for (int t = 0; t < n; ++t) {
      K.emplace_back(k.begin() + t * kRow, k.begin() + (t + 1) * kRow);
      V.emplace_back(v.begin() + t * kRow, v.begin() + (t + 1) * kRow);
    }
  }
  const int n = kv.size();
  // (a) storage: exact re-quantization of the input.
  std::vector<int> bits(n);
  for (int s = 0; s < n; ++s) {
    std::vector<float> kc(kRow), vc(kRow);
    ASSERT_TRUE(ReadQuantKvCell(kv, 1, s, kc.data(), vc.data(), &bits[s]).ok());
    const int want_bits = s < n - w8 ? 4 : 8;
    ASSERT_EQ(bits[s], want_bits) << "slot " << s;
    std::vector<uint8_t> blk(kRow * 2);
    std::vector<float> want(kRow), tmp(kRow);
    if (want_bits == 8) {
      QuantizeRow(TensorType::kQ8_0, K[s].data(), blk.data(), kRow, nullptr);
      DequantizeRow(TensorType::kQ8_0, blk.data(), want.data(), kRow);
    } else if (cs.type == "q4_0") {
      QuantizeRow(TensorType::kQ4_0, K[s].data(), blk.data(), kRow, nullptr);
      DequantizeRow(TensorType::kQ4_0, blk.data(), want.data(), kRow);
    } else {
      QuantizeRow(TensorType::kQ8_0, K[s].data(), blk.data(), kRow, nullptr);
      DequantizeRow(TensorType::kQ8_0, blk.data(), tmp.data(), kRow);
      QuantizeRow(TensorType::kQ4_0, tmp.data(), blk.data(), kRow, nullptr);
      DequantizeRow(TensorType::kQ4_0, blk.data(), want.data(), kRow);
    }
    for (int i = 0; i < kRow; ++i) ASSERT_EQ(kc[i], want[i]) << "slot " << s << " elem " << i;
  }
  // (c) attention vs f32.
  std::vector<float> q(kHD), scores(kCap), out(kHD);
  const float scale = 1.f / 8.f;
  for (int trial = 0; trial < 4; ++trial) {
    for (auto& x : q) x = nd(rng) * 0.5f;
    const int kvh = trial % 2;
    const int vis = trial < 2 ? n : n - 7;  // causal prefix
    kv.Attend(0, kvh, q.data(), scale, vis, scores.data(), out.data());
    Ref ref = Attention(K, V, q.data(), kvh, scale, vis);
    // Logit error bound: sum_i |q_i| ek_i + |k_i| eq_i + eq_i ek_i (q is quantized to 8 bits).
    double delta = 0, ev = 0, vmax = 0;
    std::vector<double> ds(vis);
    for (int s = 0; s < vis; ++s) {
      const bool req = cs.type == "mixed";
      double d = 0;
      for (int j = 0; j < kHD; ++j) {
        const int i = kvh * kHD + j;
        const double ek = ElemBound(K[s].data(), i, bits[s], req);
        const double eq = Bound8(BlockAmax(q.data(), j));
        d += std::fabs(q[j]) * ek + std::fabs(K[s][i]) * eq + eq * ek;
        ev = std::max<double>(ev, ElemBound(V[s].data(), i, bits[s], req));
        vmax = std::max<double>(vmax, std::fabs(V[s][i]));
      }
      ds[s] = d * scale;
      delta = std::max(delta, d * scale);
    }
    // Each scaled logit moves by at most ds[s]: log-odds against the top slot move by <= ds[s] + ds[top].
    const int top = static_cast<int>(std::max_element(ref.p.begin(), ref.p.end()) - ref.p.begin());
    for (int s = 0; s < vis; ++s) {
      const double moved = std::log(scores[s] / scores[top]) - std::log(ref.p[s] / ref.p[top]);
      EXPECT_LE(std::fabs(moved), ds[s] + ds[top] + 1e-4) << "slot " << s;
    }
    const double pf = std::exp(2 * delta) - 1;  // each p moves by at most this factor
    double psum = 0;
    for (int s = 0; s < vis; ++s) {
      psum += scores[s];
      EXPECT_LE(std::fabs(scores[s] - ref.p[s]), ref.p[s] * pf + 1e-6) << "slot " << s;
    }
    EXPECT_NEAR(psum, 1.0, 1e-5);
    // |out_j - ref_j| <= sum_s |p'_s - p_s| |v_sj| + sum_s p'_s ev <= pf * sum_s p_s |v_sj| + ev.
    double bound = 0;
    for (int j = 0; j < kHD; ++j) {
      double a = 0;
      for (int s = 0; s < vis; ++s) a += ref.p[s] * std::fabs(V[s][kvh * kHD + j]);
      const double bj = pf * a + ev + 1e-5;
      bound = std::max(bound, bj);
      EXPECT_LE(std::fabs(out[j] - ref.out[j]), bj) << cs.type << " trial " << trial << " j " << j;
    }
    (void)vmax;
    // The 8-bit bound is informative (well below the outputs' scale of ~1).
    if (cs.type == "q8_0") EXPECT_LT(bound, 0.5);
  }
  // Retain keeps the survivors' cells (and their precision) in order.
  std::vector<bool> keep(n);
  for (int s = 0; s < n; ++s) keep[s] = (s % 3) != 1;
  std::vector<std::vector<float>> before;
  for (int s = 0; s < n; ++s) {
    if (!keep[s]) continue;
    std::vector<float> kc(kRow), vc(kRow);
    int b;
    ASSERT_TRUE(ReadQuantKvCell(kv, 0, s, kc.data(), vc.data(), &b).ok());
    kc.insert(kc.end(), vc.begin(), vc.end());
    before.push_back(kc);
  }
  ASSERT_TRUE(kv.Retain(keep).ok());
  ASSERT_EQ(kv.size(), static_cast<int>(before.size()));
  for (int s = 0; s < kv.size(); ++s) {
    std::vector<float> kc(kRow), vc(kRow);
    int b;
    ASSERT_TRUE(ReadQuantKvCell(kv, 0, s, kc.data(), vc.data(), &b).ok());
    kc.insert(kc.end(), vc.begin(), vc.end());
    ASSERT_EQ(kc, before[s]) << "slot " << s;
  }
  EXPECT_EQ(kv.position(1), 2);
  // Keep writing after Retain: the window refills, then old cells are demoted again.
  std::vector<float> k(kRow, 0.5f), v(kRow, -0.25f);
  while (kv.size() < kCap) {
    int32_t p = kv.position(kv.size() - 1) + 1;
    for (int l = 0; l < kL; ++l) ASSERT_TRUE(kv.Write(l, 1, &p, k.data(), v.data()).ok());
    ASSERT_TRUE(kv.Commit(1, &p).ok());
  }
  for (int s = kCap - std::min(w8, kCap); s < kCap; ++s) {
    std::vector<float> kc(kRow), vc(kRow);
    int b;
    ASSERT_TRUE(ReadQuantKvCell(kv, 1, s, kc.data(), vc.data(), &b).ok());
    EXPECT_EQ(b, 8);
  }
  EXPECT_EQ(kv.Write(0, 1, nullptr, k.data(), v.data()).code(), StatusCode::kOutOfRange);
  kvr->reset();
  EXPECT_EQ(ledger.current_bytes(), 0u);
}

INSTANTIATE_TEST_SUITE_P(Types, QuantKv,
                         ::testing::Values(Case{"q8_0", 0}, Case{"q4_0", 0}, Case{"mixed", 8}, Case{"mixed", 1},
                                           Case{"mixed", 47}),
                         [](const auto& info) { return info.param.type + "_w" + std::to_string(info.param.window); });

TEST(QuantKv, BadConfigsAreErrors) {
  MemoryLedger ledger;
  KvCacheOptions o;
  KvCacheConfig c{.n_layers = 1, .n_kv_heads = 1, .head_dim = 48, .capacity = 8, .type = "q8_0"};
  auto r = MakeKvCache(c, o, ledger);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("multiple of 32"), std::string::npos);
  c.head_dim = 64;
  c.type = "q2";
  EXPECT_FALSE(MakeKvCache(c, o, ledger).ok());
  c.type = "mixed";
  o.recent_window = 0;
  EXPECT_FALSE(MakeKvCache(c, o, ledger).ok());
  EXPECT_EQ(KvCacheBytes(c, o), 0u);
  EXPECT_EQ(ledger.current_bytes(), 0u);
  // A window larger than the capacity is the whole cache at 8 bits.
  o.recent_window = 100;
  auto m = MakeKvCache(c, o, ledger);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ((*m)->bytes(), 2ull * 8 * 2 * 34);
}

TEST(QuantKv, SavesBytesVsF16) {
  // TinyLlama-1.1B shape at 4096 tokens.
  KvCacheConfig c{.n_layers = 22, .n_kv_heads = 4, .head_dim = 64, .capacity = 4096, .type = "f16"};
  KvCacheOptions o;
  const uint64_t f16 = KvCacheBytes(c, o);
  EXPECT_EQ(f16, 2ull * 22 * 4096 * 256 * 2);  // 92 274 688
  c.type = "q8_0";
  // Q8_0 cells (34/64 of f16) plus the low-bit cache's staging scratch of 34 cells of f32.
  EXPECT_EQ(KvCacheBytes(c, o), f16 * 34 / 64 + 34ull * 256 * 4);
  c.type = "q4_0";
  EXPECT_EQ(KvCacheBytes(c, o) * 64, f16 * 18);
  c.type = "mixed";
  o.recent_window = 256;
  EXPECT_EQ(KvCacheBytes(c, o), 2ull * 22 * 8 * (34ull * 256 + 18ull * 3840));
}

}  // namespace
}  // namespace tabfit
