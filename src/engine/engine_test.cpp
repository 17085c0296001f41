#include "engine/engine.h"

#include <gtest/gtest.h>

#include <cstring>

#include "core/rss.h"
#include "engine/profile.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "model/tokenizer/tokenizer.h"
#include "test_util.h"

namespace tabfit {
namespace {

EngineOptions TwoThreads() {
  EngineOptions o;
  o.threads = 2;
  return o;
}

TEST(Engine, LoadsDemoModelWithEveryComponentInTheLedger) {
  auto e = Engine::LoadFile(testing::DemoModel(), TwoThreads());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  MemoryLedger& l = (*e)->ledger();
  // Load returns once the priority components are in; the rest arrives in the background.
  EXPECT_GT(l.component_bytes("layers.0"), 0u);
  ASSERT_TRUE((*e)->WaitUntilLoaded().ok());
  EXPECT_GT(l.component_bytes("embeddings"), 0u);
  EXPECT_GT(l.component_bytes("lm_head"), 0u);
  EXPECT_EQ(l.component_bytes("kv_cache"), 0u);  // the KV cache grows with the tokens
  EXPECT_GT(l.component_bytes("activations"), 0u);
  for (int i = 0; i < 8; ++i) EXPECT_GT(l.component_bytes("layers." + std::to_string(i)), 0u) << i;
  EXPECT_EQ(l.component_bytes("loader"), 0u);  // conversion scratch is freed after load
  // Weights as counted by the ledger equal the model's own count.
  uint64_t weights = l.component_bytes("embeddings") + l.bytes_with_prefix("layers.") + l.component_bytes("lm_head") +
                     l.component_bytes("output_norm");
  EXPECT_EQ(weights, (*e)->model().weight_bytes());
  // KV after a few tokens: one chunk of 128 cells (a quarter of the 512 context) per layer:
  // 8 layers x 128 x (2 kv heads x 64) x 2 (K,V) x 2 bytes; 300 tokens: three chunks.
  ASSERT_TRUE((*e)->Eval(std::vector<int32_t>(10, 5), false).ok());
  EXPECT_EQ(l.component_bytes("kv_cache"), 8ull * 128 * 128 * 2 * 2);
  ASSERT_TRUE((*e)->Eval(std::vector<int32_t>(290, 5), false).ok());
  EXPECT_EQ(l.component_bytes("kv_cache"), 3 * 8ull * 128 * 128 * 2 * 2);
  (*e)->ResetContext();
  EXPECT_EQ(l.component_bytes("kv_cache"), 0u);
}

TEST(Engine, GreedyIsDeterministicAndUnloadReturnsLedgerToZero) {
  auto e = Engine::LoadFile(testing::DemoModel(), TwoThreads());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  GenerateOptions go;
  go.max_tokens = 12;
  go.sampler.temperature = 0;
  std::string a, b;
  GenerateStats st;
  ASSERT_TRUE((*e)->Generate("In the beginning", go, [&](const std::string& p, int32_t) { a += p; return true; }, &st).ok());
  ASSERT_TRUE((*e)->Generate("In the beginning", go, [&](const std::string& p, int32_t) { b += p; return true; }).ok());
  EXPECT_EQ(a, b);
  EXPECT_FALSE(a.empty());
  EXPECT_EQ(st.generated_tokens, 12);
  EXPECT_EQ(st.stop_reason, "max_tokens");
  (*e)->Unload();
  EXPECT_EQ((*e)->ledger().current_bytes(), 0u);
  EXPECT_FALSE((*e)->Generate("x", go, nullptr).ok());
}

TEST(Engine, StopStringsAndCancellation) {
  auto e = Engine::LoadFile(testing::DemoModel(), TwoThreads());
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  GenerateOptions go;
  go.max_tokens = 64;
  go.sampler.temperature = 0;
  std::string full;
  ASSERT_TRUE((*e)->Generate("The king said", go, [&](const std::string& p, int32_t) { full += p; return true; }).ok());
  // Stop at the first comma of the continuation: output is what came before it.
  size_t comma = full.find(',');
  ASSERT_NE(comma, std::string::npos);
  go.stop = {","};
  std::string cut;
  GenerateStats st;
  ASSERT_TRUE((*e)->Generate("The king said", go, [&](const std::string& p, int32_t) { cut += p; return true; }, &st).ok());
  EXPECT_EQ(cut, full.substr(0, comma));
  EXPECT_EQ(st.stop_reason, "stop_string");
  int calls = 0;
  go.stop.clear();
  ASSERT_TRUE((*e)->Generate("The king said", go, [&](const std::string&, int32_t) { return ++calls < 3; }, &st).ok());
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(st.stop_reason, "cancelled");
}

TEST(Engine, BudgetTooSmallEvenToStreamSaysTheMinimum) {
  EngineOptions o = TwoThreads();
  o.budget_bytes = 4 << 20;  // the demo model's embeddings + head alone are 4 MiB
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kOutOfMemory);
  const std::string& m = e.status().message();
  EXPECT_NE(m.find("too small even to stream"), std::string::npos) << m;
  EXPECT_NE(m.find("the minimum is"), std::string::npos) << m;
  EXPECT_NE(m.find("budget"), std::string::npos) << m;
}

TEST(Engine, ModelLargerThanTheBudgetFailsWhenLayersMayNotStream) {
  EngineOptions o = TwoThreads();
  o.budget_bytes = 14 << 20;  // weights 16 MiB
  o.residency.unload_unused_layers = false;
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kOutOfMemory);
  EXPECT_NE(e.status().message().find("unload_unused_layers"), std::string::npos) << e.status().message();
}

TEST(Engine, MaxBufferChunksWeightsAndStillComputesTheSame) {
  EngineOptions o = TwoThreads();
  auto ref = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(ref.ok());
  o.max_buffer_bytes = 300 * 1024;  // embeddings (4096 x 256 f16 = 2 MiB) split into 7 chunks
  auto small = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(small.ok()) << small.status().ToString();
  for (const auto& c : (*small)->ledger().Snapshot().components) {
    if (c.name == "embeddings") EXPECT_GE(c.live_buffers, 7u);
  }
  ASSERT_TRUE((*ref)->Eval({1, 415, 1002}).ok());
  ASSERT_TRUE((*small)->Eval({1, 415, 1002}).ok());
  int nv = (*ref)->model().hparams().n_vocab;
  EXPECT_EQ(0, std::memcmp((*ref)->logits(), (*small)->logits(), nv * sizeof(float)));
}

// Weights in a 16-row interleaved run-time layout (TF_Q2x16, TF_Q4x16, TF_Q8x16,
// Q8_0x16, Q4_0x16; where this CPU has the kernel) compute what the row-major
// kernels do, prefill (several tokens per mat-mul) and decode (one). TF formats:
// bit-identical (both equal the scalar oracle). Q8_0, Q4_0: same integer sums, but
// the row-major prefill kernels sum in another float order; through the 8 layers
// of the demo model that leaves logits within 3e-2 of their largest magnitude
// (measured 4.3e-3 to 1.07e-2) and the same top token.
TEST(Engine, RuntimeLayoutMatchesRowMajorLogits) {
  for (const char* type : {"tf_q2", "tf_q4", "tf_q8", "q8_0", "q4_0"}) {
    EngineOptions o = TwoThreads();
    o.weight_type = type;
    auto tiled = Engine::LoadFile(testing::DemoModel(), o);
    o.runtime_layouts = false;
    auto rows = Engine::LoadFile(testing::DemoModel(), o);
    ASSERT_TRUE(tiled.ok() && rows.ok()) << tiled.status().ToString() << rows.status().ToString();
    EXPECT_TRUE((*rows)->model().LayoutTable().empty());
    const auto layouts = (*tiled)->model().LayoutTable();
    const std::string ts = type;
    const TensorType t = ts == "q8_0"    ? TensorType::kQ8_0
                         : ts == "q4_0"  ? TensorType::kQ4_0
                         : ts == "tf_q4" ? TensorType::kTF_Q4
                         : ts == "tf_q8" ? TensorType::kTF_Q8
                                         : TensorType::kTF_Q2;
    if (PreferredLayout(t, 256, 256) != WeightLayout::kRowMajor) {
      // Every matrix but token_embd (read row by row); the demo model's rows are multiples of 16.
      EXPECT_EQ(layouts.size(), (*tiled)->model().WeightTable().size() - 1) << type;
      for (const auto& [name, l] : layouts) EXPECT_NE(name, "token_embd.weight");
    } else {
      EXPECT_TRUE(layouts.empty()) << type;
    }
    const int nv = (*rows)->model().hparams().n_vocab;
    std::vector<int32_t> ids = (*rows)->tokenizer().Encode("It is a truth universally acknowledged", true);
    ASSERT_TRUE((*tiled)->Eval(ids, /*all_logits=*/true).ok());
    ASSERT_TRUE((*rows)->Eval(ids, /*all_logits=*/true).ok());
    const bool exact = t == TensorType::kTF_Q2 || t == TensorType::kTF_Q4 || t == TensorType::kTF_Q8;
    auto same = [&](size_t n, const std::string& what) {
      const float* a = (*tiled)->logits();
      const float* b = (*rows)->logits();
      if (exact) {
        EXPECT_EQ(0, std::memcmp(a, b, n * sizeof(float))) << type << " " << what;
        return;
      }
      float maxabs = 0, maxdiff = 0;
      for (size_t i = 0; i < n; ++i) {
        maxabs = std::max(maxabs, std::fabs(b[i]));
        maxdiff = std::max(maxdiff, std::fabs(a[i] - b[i]));
      }
      EXPECT_LE(maxdiff, 3e-2f * maxabs) << type << " " << what;
      EXPECT_GT(maxabs, 0.f);
      for (size_t r = 0; r < n / nv; ++r) {
        EXPECT_EQ(std::max_element(a + r * nv, a + (r + 1) * nv) - (a + r * nv),
                  std::max_element(b + r * nv, b + (r + 1) * nv) - (b + r * nv))
            << type << " " << what << " row " << r;
      }
    };
    same(ids.size() * nv, "prompt");
    for (int32_t tok : {415, 1002, 7}) {
      ASSERT_TRUE((*tiled)->Eval({tok}).ok());
      ASSERT_TRUE((*rows)->Eval({tok}).ok());
      same(nv, "token " + std::to_string(tok));
    }
  }
}

TEST(Engine, PromptLongerThanContextIsAClearError) {
  EngineOptions o = TwoThreads();
  o.n_ctx = 16;
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(e.ok());
  std::string prompt;
  for (int i = 0; i < 40; ++i) prompt += "and the king said ";
  GenerateOptions go;
  Status s = (*e)->Generate(prompt, go, nullptr);
  EXPECT_EQ(s.code(), StatusCode::kOutOfRange);
  EXPECT_NE(s.message().find("context"), std::string::npos);
}

TEST(Engine, BatchedPrefillEqualsTokenByToken) {
  EngineOptions o = TwoThreads();
  auto a = Engine::LoadFile(testing::DemoModel(), o);
  o.n_batch = 1;
  auto b = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(a.ok() && b.ok());
  std::vector<int32_t> ids = (*a)->tokenizer().Encode("It is a truth universally acknowledged", true);
  ASSERT_TRUE((*a)->Eval(ids).ok());
  ASSERT_TRUE((*b)->Eval(ids).ok());
  int nv = (*a)->model().hparams().n_vocab;
  double maxdiff = 0, maxabs = 0;
  for (int i = 0; i < nv; ++i) {
    maxdiff = std::max<double>(maxdiff, std::fabs((*a)->logits()[i] - (*b)->logits()[i]));
    maxabs = std::max<double>(maxabs, std::fabs((*a)->logits()[i]));
  }
  EXPECT_LT(maxdiff, 1e-3 * maxabs);  // only summation order differs
}

TEST(Engine, LedgerMatchesResidentMemoryGrowth) {
  // The 30M model (58 MB of F16 weights) makes the growth large against allocator noise.
  std::string path = testing::SharedModel("tabfit-test-30m-f16.gguf");
  TABFIT_REQUIRE_FILE(path);
  uint64_t rss0 = ProcessResidentBytes();
  ASSERT_GT(rss0, 0u);
  auto e = Engine::LoadFile(path, TwoThreads());
  ASSERT_TRUE(e.ok());
  GenerateOptions go;
  go.max_tokens = 32;
  go.sampler.temperature = 0;
  ASSERT_TRUE((*e)->Generate("The king said", go, nullptr).ok());
  uint64_t rss1 = ProcessResidentBytes();
  double growth = static_cast<double>(rss1) - rss0;
  double ledger = static_cast<double>((*e)->ledger().current_bytes());
  // Stated tolerance: 10 % of the ledger + 8 MiB (tokenizer tables, thread stacks, allocator slack).
  // The KV cache is allocated for the full context but only touched pages are resident, so compare
  // against the ledger minus the untouched KV pages bound.
  double kv = static_cast<double>((*e)->ledger().component_bytes("kv_cache"));
  EXPECT_LE(growth, ledger * 1.10 + 8.0 * (1 << 20)) << "rss growth " << growth << " ledger " << ledger;
  EXPECT_GE(growth, (ledger - kv) * 0.90 - 8.0 * (1 << 20)) << "rss growth " << growth << " ledger " << ledger;
}

}  // namespace
}  // namespace tabfit

namespace tabfit {
namespace {

std::shared_ptr<const BrowserProfile> TinyProfile(uint64_t budget) {
  std::string json = R"({"name":"tiny","description":"test","memory_budget_bytes":)" + std::to_string(budget) +
                     R"(,"max_buffer_bytes":1073741824,"threads":"auto","simd":true,"wasm_fallback":false,
      "weight_precision":"keep","kv_precision":"f16","load_threshold":0.25,"unload_threshold":0.9,
      "pressure":{"warning":0.7,"critical":0.85,"emergency":0.95},"max_context":0,"notes":{}})";
  auto p = ParseProfile(json, "test");
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::make_shared<BrowserProfile>(*p);
}

TEST(EngineProfile, PlanThatDoesNotFitIsRefusedWithWhatFits) {
  EngineOptions o = TwoThreads();
  o.profile = TinyProfile(12 << 20);  // the demo model needs ~19 MiB at F16
  o.residency.unload_unused_layers = false;
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kOutOfMemory);
  const std::string& m = e.status().message();
  EXPECT_NE(m.find("tiny"), std::string::npos) << m;
  EXPECT_NE(m.find("q8_0 weights"), std::string::npos) << m;  // names a precision that fits
  EXPECT_NE(m.find("--adapt"), std::string::npos) << m;
}

TEST(EngineProfile, PlanThatDoesNotFitStreamsLayersAndSaysSo) {
  EngineOptions o = TwoThreads();
  o.profile = TinyProfile(12 << 20);
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  const std::string& r = (*e)->load_report();
  EXPECT_NE(r.find("q8_0 weights"), std::string::npos) << r;  // still names what would fit
  EXPECT_NE(r.find("stream"), std::string::npos) << r;
  EXPECT_GT((*e)->residency().streamed_layers(), 0);
  GenerateOptions go;
  go.max_tokens = 8;
  go.sampler.temperature = 0;
  ASSERT_TRUE((*e)->Generate("The king said", go, nullptr).ok());
  EXPECT_LE((*e)->ledger().peak_bytes(), 12u << 20);
}

TEST(EngineProfile, AdaptLowersPrecisionToFitAndStaysInBudget) {
  EngineOptions o = TwoThreads();
  o.profile = TinyProfile(12 << 20);
  o.adapt_precision = true;
  auto e = Engine::LoadFile(testing::DemoModel(), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_NE((*e)->load_report().find("adapted"), std::string::npos) << (*e)->load_report();
  EXPECT_LE((*e)->ledger().peak_bytes(), 12u << 20);
  GenerateOptions go;
  go.max_tokens = 8;
  go.sampler.temperature = 0;
  std::string out;
  ASSERT_TRUE((*e)->Generate("The king said", go, [&](const std::string& p, int32_t) { out += p; return true; }).ok());
  EXPECT_FALSE(out.empty());
}

}  // namespace
}  // namespace tabfit
