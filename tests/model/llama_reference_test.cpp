// The forward pass against a plain, independent reference implementation on
// small random models: llama (adjacent-pair RoPE, no bias) and qwen2 (NEOX RoPE,
// q/k/v bias), GQA, tied and untied output heads, batched and token-by-token.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "core/thread_pool.h"
#include "kv/plain_kv_cache.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/llama/llama_model.h"

namespace tabfit {
namespace {

constexpr int kEmbd = 64, kHeads = 4, kKvHeads = 2, kHd = 16, kFf = 96, kLayers = 2, kVocab = 50;

struct RefModel {
  bool neox = false, bias = false, tied = false;
  std::vector<float> embd, out, out_norm;
  struct L {
    std::vector<float> an, fn, wq, wk, wv, wo, wg, wu, wd, bq, bk, bv;
  };
  std::vector<L> layers;
};

std::vector<float> Rand(std::mt19937& rng, size_t n, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// y[rows] = W[rows][cols] x
std::vector<float> MatVec(const std::vector<float>& w, const std::vector<float>& x, int rows, int cols) {
  std::vector<float> y(rows);
  for (int r = 0; r < rows; ++r) {
    double s = 0;
    for (int c = 0; c < cols; ++c) s += static_cast<double>(w[r * cols + c]) * x[c];
    y[r] = static_cast<float>(s);
  }
  return y;
}

std::vector<float> Norm(const std::vector<float>& x, const std::vector<float>& w) {
  double ss = 0;
  for (float v : x) ss += v * v;
  float sc = 1.f / std::sqrt(static_cast<float>(ss / x.size()) + 1e-5f);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * sc * w[i];
  return y;
}

void Rope(float* v, int pos, bool neox) {
  for (int i = 0; i < kHd / 2; ++i) {
    double theta = pos * std::pow(10000.0, -2.0 * i / kHd);
    float c = std::cos(theta), s = std::sin(theta);
    int a = neox ? i : 2 * i, b = neox ? i + kHd / 2 : 2 * i + 1;
    float x0 = v[a], x1 = v[b];
    v[a] = x0 * c - x1 * s;
    v[b] = x0 * s + x1 * c;
  }
}

// Logits for every position of `tokens`.
std::vector<std::vector<float>> RefForward(const RefModel& m, const std::vector<int>& tokens) {
  const int QD = kHeads * kHd, KVD = kKvHeads * kHd;
  std::vector<std::vector<std::vector<float>>> K(kLayers), V(kLayers);
  std::vector<std::vector<float>> logits;
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::vector<float> x(m.embd.begin() + tokens[t] * kEmbd, m.embd.begin() + (tokens[t] + 1) * kEmbd);
    for (int l = 0; l < kLayers; ++l) {
      const auto& L = m.layers[l];
      auto h = Norm(x, L.an);
      auto q = MatVec(L.wq, h, QD, kEmbd), k = MatVec(L.wk, h, KVD, kEmbd), v = MatVec(L.wv, h, KVD, kEmbd);
      if (m.bias) {
        for (int i = 0; i < QD; ++i) q[i] += L.bq[i];
        for (int i = 0; i < KVD; ++i) k[i] += L.bk[i], v[i] += L.bv[i];
      }
      for (int hh = 0; hh < kHeads; ++hh) Rope(&q[hh * kHd], t, m.neox);
      for (int hh = 0; hh < kKvHeads; ++hh) Rope(&k[hh * kHd], t, m.neox);
      K[l].push_back(k);
      V[l].push_back(v);
      std::vector<float> att(QD, 0.f);
      for (int hh = 0; hh < kHeads; ++hh) {
        int kvh = hh / (kHeads / kKvHeads);
        std::vector<double> s(t + 1);
        double mx = -1e30;
        for (size_t j = 0; j <= t; ++j) {
          double d = 0;
          for (int i = 0; i < kHd; ++i) d += q[hh * kHd + i] * K[l][j][kvh * kHd + i];
          s[j] = d / std::sqrt(static_cast<double>(kHd));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (auto& e : s) sum += (e = std::exp(e - mx));
        for (size_t j = 0; j <= t; ++j) {
          for (int i = 0; i < kHd; ++i) att[hh * kHd + i] += static_cast<float>(s[j] / sum) * V[l][j][kvh * kHd + i];
        }
      }
      auto o = MatVec(L.wo, att, kEmbd, QD);
      for (int i = 0; i < kEmbd; ++i) x[i] += o[i];
      h = Norm(x, L.fn);
      auto g = MatVec(L.wg, h, kFf, kEmbd), u = MatVec(L.wu, h, kFf, kEmbd);
      for (int i = 0; i < kFf; ++i) g[i] = g[i] / (1.f + std::exp(-g[i])) * u[i];
      auto d = MatVec(L.wd, g, kEmbd, kFf);
      for (int i = 0; i < kEmbd; ++i) x[i] += d[i];
    }
    logits.push_back(MatVec(m.tied ? m.embd : m.out, Norm(x, m.out_norm), kVocab, kEmbd));
  }
  return logits;
}

Result<GgufFile> WriteModel(const RefModel& m, const std::string& arch) {
  GgufWriter w;
  w.SetString("general.architecture", arch);
  const std::string a = arch + ".";
  w.SetU32(a + "embedding_length", kEmbd);
  w.SetU32(a + "block_count", kLayers);
  w.SetU32(a + "feed_forward_length", kFf);
  w.SetU32(a + "attention.head_count", kHeads);
  w.SetU32(a + "attention.head_count_kv", kKvHeads);
  w.SetU32(a + "context_length", 64);
  w.SetU32(a + "vocab_size", kVocab);
  w.SetF32(a + "attention.layer_norm_rms_epsilon", 1e-5f);
  w.SetF32(a + "rope.freq_base", 10000.f);
  auto add = [&](const std::string& name, const std::vector<float>& v, std::vector<int64_t> ne) {
    std::vector<uint8_t> bytes(v.size() * 4);
    std::memcpy(bytes.data(), v.data(), bytes.size());
    return w.AddTensor(name, TensorType::kF32, std::move(ne), std::move(bytes));
  };
  TF_RETURN_IF_ERROR(add("token_embd.weight", m.embd, {kEmbd, kVocab}));
  for (int l = 0; l < kLayers; ++l) {
    const auto& L = m.layers[l];
    std::string p = "blk." + std::to_string(l) + ".";
    TF_RETURN_IF_ERROR(add(p + "attn_norm.weight", L.an, {kEmbd}));
    TF_RETURN_IF_ERROR(add(p + "attn_q.weight", L.wq, {kEmbd, kHeads * kHd}));
    TF_RETURN_IF_ERROR(add(p + "attn_k.weight", L.wk, {kEmbd, kKvHeads * kHd}));
    TF_RETURN_IF_ERROR(add(p + "attn_v.weight", L.wv, {kEmbd, kKvHeads * kHd}));
    if (m.bias) {
      TF_RETURN_IF_ERROR(add(p + "attn_q.bias", L.bq, {kHeads * kHd}));
      TF_RETURN_IF_ERROR(add(p + "attn_k.bias", L.bk, {kKvHeads * kHd}));
      TF_RETURN_IF_ERROR(add(p + "attn_v.bias", L.bv, {kKvHeads * kHd}));
    }
    TF_RETURN_IF_ERROR(add(p + "attn_output.weight", L.wo, {kHeads * kHd, kEmbd}));
    TF_RETURN_IF_ERROR(add(p + "ffn_norm.weight", L.fn, {kEmbd}));
    TF_RETURN_IF_ERROR(add(p + "ffn_gate.weight", L.wg, {kEmbd, kFf}));
    TF_RETURN_IF_ERROR(add(p + "ffn_up.weight", L.wu, {kEmbd, kFf}));
    TF_RETURN_IF_ERROR(add(p + "ffn_down.weight", L.wd, {kFf, kEmbd}));
  }
  TF_RETURN_IF_ERROR(add("output_norm.weight", m.out_norm, {kEmbd}));
  if (!m.tied) TF_RETURN_IF_ERROR(add("output.weight", m.out, {kEmbd, kVocab}));
  TF_ASSIGN_OR_RETURN(auto bytes, w.WriteToMemory());
  return GgufFile::Parse(MakeMemorySource(std::move(bytes), arch + "-test.gguf"));
}

RefModel MakeRandom(bool neox, bool bias, bool tied, uint32_t seed) {
  std::mt19937 rng(seed);
  RefModel m;
  m.neox = neox;
  m.bias = bias;
  m.tied = tied;
  m.embd = Rand(rng, kVocab * kEmbd, 1.0f);
  m.out = Rand(rng, kVocab * kEmbd, 0.2f);
  m.out_norm = Rand(rng, kEmbd, 0.3f);
  for (auto& x : m.out_norm) x += 1.f;
  for (int l = 0; l < kLayers; ++l) {
    RefModel::L L;
    L.an = Rand(rng, kEmbd, 0.1f);
    L.fn = Rand(rng, kEmbd, 0.1f);
    for (auto& x : L.an) x += 1.f;
    for (auto& x : L.fn) x += 1.f;
    L.wq = Rand(rng, kHeads * kHd * kEmbd, 0.15f);
    L.wk = Rand(rng, kKvHeads * kHd * kEmbd, 0.15f);
    L.wv = Rand(rng, kKvHeads * kHd * kEmbd, 0.15f);
    L.wo = Rand(rng, kEmbd * kHeads * kHd, 0.1f);
    L.wg = Rand(rng, kFf * kEmbd, 0.15f);
    L.wu = Rand(rng, kFf * kEmbd, 0.15f);
    L.wd = Rand(rng, kEmbd * kFf, 0.1f);
    L.bq = Rand(rng, kHeads * kHd, 0.5f);
    L.bk = Rand(rng, kKvHeads * kHd, 0.5f);
    L.bv = Rand(rng, kKvHeads * kHd, 0.5f);
    m.layers.push_back(L);
  }
  return m;
}

struct Case {
  const char* arch;
  bool neox, bias, tied;
};

class ForwardVsReference : public ::testing::TestWithParam<Case> {};

TEST_P(ForwardVsReference, LogitsMatchBatchedAndStepwise) {
  const Case c = GetParam();
  RefModel m = MakeRandom(c.neox, c.bias, c.tied, 1234);
  auto g = WriteModel(m, c.arch);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  MemoryLedger ledger;
  auto model = LlamaModel::Load(*g, ledger, {});
  ASSERT_TRUE(model.ok()) << model.status().ToString();
  EXPECT_EQ((*model)->hparams().qkv_bias, c.bias);
  const std::vector<int> tokens = {1, 17, 4, 33, 49, 0, 8};
  auto want = RefForward(m, tokens);
  ThreadPool pool(2);
  for (int batch : {7, 3, 1}) {
    KvCacheConfig kc{.n_layers = kLayers, .n_kv_heads = kKvHeads, .head_dim = kHd, .capacity = 16, .type = "f32"};
    auto kv = CreatePlainKvCache(kc, ledger);
    ASSERT_TRUE(kv.ok());
    auto s = (*model)->CreateScratch(ledger, batch, 16, 2, /*all_logits=*/true);
    ASSERT_TRUE(s.ok());
    for (size_t t0 = 0; t0 < tokens.size(); t0 += batch) {
      int n = std::min<int>(batch, tokens.size() - t0);
      std::vector<int32_t> ids(tokens.begin() + t0, tokens.begin() + t0 + n);
      ASSERT_TRUE((*model)->Forward(ids.data(), n, **kv, pool, *s).ok());
      for (int t = 0; t < n; ++t) {
        const float* got = s->logits.as<float>() + t * kVocab;
        for (int i = 0; i < kVocab; ++i) {
          ASSERT_NEAR(got[i], want[t0 + t][i], 2e-3f * (1 + std::fabs(want[t0 + t][i])))
              << c.arch << " batch " << batch << " pos " << t0 + t << " logit " << i;
        }
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Archs, ForwardVsReference,
                         ::testing::Values(Case{"llama", false, false, false}, Case{"llama", false, false, true},
                                           Case{"qwen2", true, true, false}, Case{"mistral", false, false, true}),
                         [](const auto& info) {
                           return std::string(info.param.arch) + (info.param.tied ? "_tied" : "_untied");
                         });

}  // namespace
}  // namespace tabfit
