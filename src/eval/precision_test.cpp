// Precision configs (parsing, precedence, errors), budgets, importance and
// reference-logits file formats. No model files needed.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <unistd.h>
#include <filesystem>
#include <fstream>

#include "eval/adaptive.h"
#include "eval/importance.h"
#include "eval/perplexity.h"
#include "eval/precision.h"
#include "quant/kernels.h"

namespace tabfit {
namespace {

std::string TmpPath(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("tabfit_eval_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(Precision, IdentifiesLlamaTensorNames) {
  auto id = IdentifyTensor("blk.12.ffn_down.weight");
  ASSERT_TRUE(id);
  EXPECT_EQ(id->role, TensorRole::kMlpDown);
  EXPECT_EQ(id->layer, 12);
  EXPECT_EQ(IdentifyTensor("token_embd.weight")->role, TensorRole::kEmbeddings);
  EXPECT_EQ(IdentifyTensor("output.weight")->role, TensorRole::kLmHead);
  EXPECT_EQ(IdentifyTensor("blk.0.attn_output.weight")->role, TensorRole::kAttnOutput);
  EXPECT_FALSE(IdentifyTensor("blk.0.attn_norm.weight"));
  EXPECT_FALSE(IdentifyTensor("output_norm.weight"));
  EXPECT_FALSE(IdentifyTensor("blk.x.attn_q.weight"));
  EXPECT_FALSE(IdentifyTensor("blk.0.attn_q.bias"));
  EXPECT_EQ(ReadableTensorName("blk.3.attn_v.weight"), "layers.3.attention.value");
  EXPECT_EQ(ReadableTensorName("output.weight"), "lm_head");
}

TEST(Precision, BitsMapExplicitly) {
  EXPECT_EQ(*BitsToType(8, BitsFamily::kGgml), TensorType::kQ8_0);
  EXPECT_EQ(*BitsToType(4, BitsFamily::kGgml), TensorType::kQ4_0);
  EXPECT_EQ(*BitsToType(8, BitsFamily::kTf), TensorType::kTF_Q8);
  EXPECT_EQ(*BitsToType(4, BitsFamily::kTf), TensorType::kTF_Q4);
  EXPECT_EQ(*BitsToType(3, BitsFamily::kGgml), TensorType::kTF_Q3);
  EXPECT_EQ(*BitsToType(2, BitsFamily::kGgml), TensorType::kTF_Q2);
  EXPECT_EQ(*BitsToType(16, BitsFamily::kGgml), TensorType::kF16);
  EXPECT_EQ(*BitsToType(32, BitsFamily::kTf), TensorType::kF32);
  EXPECT_FALSE(BitsToType(5, BitsFamily::kGgml).ok());
  EXPECT_FALSE(BitsToType(0, BitsFamily::kGgml).ok());
  EXPECT_EQ(*ParseTypeName("Q4_0"), TensorType::kQ4_0);
  EXPECT_EQ(*ParseBitsOrType("8", BitsFamily::kGgml), TensorType::kQ8_0);
  EXPECT_FALSE(ParseTypeName("q5_k").ok());
}

TEST(Precision, GroupsAndDefault) {
  auto p = ParsePrecisionConfig(R"({"default_bits": 4, "attention_bits": 8, "embedding_bits": "f16",
                                    "lm_head_bits": 8})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->TypeFor("blk.0.attn_q.weight"), TensorType::kQ8_0);
  EXPECT_EQ(p->TypeFor("blk.5.attn_output.weight"), TensorType::kQ8_0);
  EXPECT_EQ(p->TypeFor("blk.5.ffn_up.weight"), TensorType::kQ4_0);  // default
  EXPECT_EQ(p->TypeFor("token_embd.weight"), TensorType::kF16);
  EXPECT_EQ(p->TypeFor("output.weight"), TensorType::kQ8_0);
  EXPECT_EQ(p->TypeFor("blk.0.attn_norm.weight"), std::nullopt);  // never a norm
  EXPECT_EQ(p->SourceFor("blk.5.ffn_up.weight"), "default_bits");
  EXPECT_EQ(p->SourceFor("blk.5.attn_k.weight"), "attention_bits");
}

TEST(Precision, NothingSetKeepsTypes) {
  auto p = ParsePrecisionConfig("{}");
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->empty());
  EXPECT_EQ(p->TypeFor("blk.0.attn_q.weight"), std::nullopt);
}

TEST(Precision, SpecificPatternBeatsGroupBeatsDefault) {
  auto p = ParsePrecisionConfig(R"({
    "default_bits": 4, "feed_forward_bits": 8,
    "tensors": {"mlp.down": "f16", "layers.0-3.mlp.down": "q4_0", "layers.2.mlp.down": 32,
                "layers.1-2": "f16", "blk.7.ffn_down.weight": "q8_0"}})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  // Group beats default.
  EXPECT_EQ(p->TypeFor("blk.5.ffn_up.weight"), TensorType::kQ8_0);
  // Role rule beats group.
  EXPECT_EQ(p->TypeFor("blk.5.ffn_down.weight"), TensorType::kF16);
  // A layer-restricted role rule beats the unrestricted one; a single layer beats a range.
  EXPECT_EQ(p->TypeFor("blk.0.ffn_down.weight"), TensorType::kQ4_0);
  EXPECT_EQ(p->TypeFor("blk.2.ffn_down.weight"), TensorType::kF32);
  // A layer-only rule covers every matrix of its layers, below role rules.
  EXPECT_EQ(p->TypeFor("blk.1.attn_q.weight"), TensorType::kF16);
  EXPECT_EQ(p->TypeFor("blk.1.ffn_down.weight"), TensorType::kQ4_0);
  EXPECT_EQ(p->TypeFor("blk.4.attn_q.weight"), TensorType::kQ4_0);  // default
  // An exact GGUF name beats everything.
  EXPECT_EQ(p->TypeFor("blk.7.ffn_down.weight"), TensorType::kQ8_0);
  EXPECT_EQ(p->SourceFor("blk.0.ffn_down.weight"), "tensors[\"layers.0-3.mlp.down\"]");
  // Layer-only rules never touch embeddings.
  auto q = ParsePrecisionConfig(R"({"tensors": {"layers.*": 8}})");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->TypeFor("token_embd.weight"), std::nullopt);
  EXPECT_EQ(q->TypeFor("blk.9.attn_k.weight"), TensorType::kQ8_0);
}

TEST(Precision, LaterRuleWinsTiesAndAliases) {
  auto p = ParsePrecisionConfig(R"({"tensors": {"layers.0-3.mlp": 8, "layers.2-5.feed_forward": 4,
                                                "attention.value": "f16", "attention": 8}})");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->TypeFor("blk.2.ffn_gate.weight"), TensorType::kQ4_0);  // same width, later wins
  EXPECT_EQ(p->TypeFor("blk.0.ffn_gate.weight"), TensorType::kQ8_0);
  EXPECT_EQ(p->TypeFor("blk.0.attn_v.weight"), TensorType::kF16);  // role beats a later group
  EXPECT_EQ(p->TypeFor("blk.0.attn_k.weight"), TensorType::kQ8_0);
}

TEST(Precision, TfFamilyMapsToTabfitFormats) {
  auto p = ParsePrecisionConfig(R"({"family": "tf", "default_bits": 4})");
  if (IsSupported(TensorType::kTF_Q4) && CanQuantize(TensorType::kTF_Q4)) {
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->TypeFor("blk.0.attn_q.weight"), TensorType::kTF_Q4);
  } else {
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), StatusCode::kUnsupported);
    EXPECT_NE(p.status().message().find("tf_q4"), std::string::npos);
  }
}

TEST(Precision, Errors) {
  auto expect_error = [](const char* json, const char* needle) {
    auto p = ParsePrecisionConfig(json);
    ASSERT_FALSE(p.ok()) << json;
    EXPECT_NE(p.status().message().find(needle), std::string::npos) << p.status().message();
  };
  expect_error("{", "not valid JSON");
  expect_error("[1]", "JSON object");
  expect_error(R"({"default_bit": 4})", "unknown key \"default_bit\"");
  expect_error(R"({"default_bits": 5})", "5 bits");
  expect_error(R"({"default_bits": true})", "bit count");
  expect_error(R"({"attention_bits": "q9_9"})", "unknown type 'q9_9'");
  expect_error(R"({"tensors": [1]})", "must be an object");
  expect_error(R"({"tensors": {"mlp.sideways": 4}})", "'mlp.sideways' is not understood");
  expect_error(R"({"tensors": {"layers.3-1.mlp": 4}})", "layer range '3-1'");
  expect_error(R"({"tensors": {"layers.x.mlp": 4}})", "layer range 'x'");
  expect_error(R"({"tensors": {"layers.0.embeddings": 4}})", "belong to no layer");
  expect_error(R"({"tensors": {"layers.0.": 4}})", "ends with '.'");
  expect_error(R"({"family": "k"})", "\"family\"");
}

TEST(Precision, JsonRoundTrip) {
  auto p = ParsePrecisionConfig(R"({"default_bits": 4, "lm_head_bits": 8,
                                    "tensors": {"layers.0-1.attention": 16, "blk.3.ffn_up.weight": 8}})");
  ASSERT_TRUE(p.ok());
  auto q = ParsePrecisionConfig(p->ToJson());
  ASSERT_TRUE(q.ok()) << p->ToJson();
  for (std::string n : {"blk.0.attn_q.weight", "blk.3.ffn_up.weight", "blk.2.ffn_down.weight", "output.weight",
                        "token_embd.weight"}) {
    EXPECT_EQ(p->TypeFor(n), q->TypeFor(n)) << n;
  }
}

TEST(Precision, FlagsOverrideFile) {
  std::string path = TmpPath("cfg.json");
  {
    std::ofstream f(path);
    f << R"({"default_bits": 8, "attention_bits": 8})";
  }
  PrecisionFlags fl;
  fl.config_path = path;
  fl.default_bits = "4";
  fl.tensor_bits = {"layers.0.mlp.down=f16"};
  auto p = fl.ToPlan();
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->TypeFor("blk.1.ffn_up.weight"), TensorType::kQ4_0);
  EXPECT_EQ(p->TypeFor("blk.1.attn_q.weight"), TensorType::kQ8_0);
  EXPECT_EQ(p->TypeFor("blk.0.ffn_down.weight"), TensorType::kF16);
  fl.tensor_bits = {"mlp.down"};
  EXPECT_FALSE(fl.ToPlan().ok());
  fl.tensor_bits = {};
  fl.attention_bits = "7";
  EXPECT_FALSE(fl.ToPlan().ok());
  std::remove(path.c_str());
  fl.config_path = TmpPath("missing.json");
  EXPECT_EQ(fl.ToPlan().status().code(), StatusCode::kNotFound);
}

TEST(Budget, ParsesPercentagesAndSizes) {
  EXPECT_EQ(*ParseBudget("40%", 1000), 400u);
  EXPECT_EQ(*ParseBudget("1KiB", 0), 1024u);
  EXPECT_FALSE(ParseBudget("x%", 1000).ok());
  EXPECT_FALSE(ParseBudget("-5%", 1000).ok());
}

// Brute force over all combinations equals the DP (small instance).
TEST(Budget, AllocationIsOptimalAndFits) {
  SensitivityReport r;
  r.fixed_bytes = 100;
  r.parameters = 4000;
  const double kls[4][3] = {{0, 0.01, 0.2}, {0, 0.05, 0.06}, {0, 0.001, 0.5}, {0, 0.02, 0.03}};
  const uint64_t bytes[3] = {1000, 500, 250};
  for (int t = 0; t < 4; ++t) {
    TensorSensitivity ts;
    ts.name = "blk." + std::to_string(t) + ".ffn_up.weight";
    ts.source_type = TensorType::kF16;
    TensorType types[3] = {TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_0};
    for (int k = 0; k < 3; ++k) ts.options.push_back({types[k], bytes[k] + t, kls[t][k], 0, true});
    r.tensors.push_back(ts);
  }
  for (uint64_t budget : {1106ull, 1110ull, 1300ull, 2000ull, 2600ull, 4200ull}) {
    auto plan = AllocateBudget(r, budget);
    ASSERT_TRUE(plan.ok()) << budget << ": " << plan.status().ToString();
    EXPECT_LE(plan->total_bytes, budget);
    double best = 1e9;
    for (int c = 0; c < 81; ++c) {
      uint64_t b = r.fixed_bytes;
      double kl = 0;
      for (int t = 0, x = c; t < 4; ++t, x /= 3) {
        b += r.tensors[t].options[x % 3].bytes;
        kl += r.tensors[t].options[x % 3].kl;
      }
      if (b <= budget) best = std::min(best, kl);
    }
    EXPECT_NEAR(plan->expected_kl, best, 1e-12) << budget;
    // The plan is a valid precision config naming every tensor.
    auto back = ParsePrecisionConfig(plan->ToJson());
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    for (const auto& pt : plan->tensors) EXPECT_EQ(back->TypeFor(pt.name), pt.type);
  }
  auto tight = AllocateBudget(r, 1000);
  ASSERT_FALSE(tight.ok());
  EXPECT_NE(tight.status().message().find("smallest possible plan"), std::string::npos);
  // Sensitivity JSON round trip.
  auto rr = SensitivityFromJson(SensitivityToJson(r));
  ASSERT_TRUE(rr.ok()) << rr.status().ToString();
  EXPECT_NEAR(AllocateBudget(*rr, 2000)->expected_kl, AllocateBudget(r, 2000)->expected_kl, 1e-12);
  EXPECT_FALSE(SensitivityFromJson("{\"format\": \"x\"}").ok());
}

TEST(Importance, SavesAndLoadsBothFormats) {
  ImportanceMap m;
  m.set_tokens(77);
  m.set_text_hash(HashBytes("abc", 3));
  m.Set("blk.0.attn_q.weight", {{1.f, 2.5f, 0.f}, 77});
  m.Set("output.weight", {{0.25f}, 77});
  for (std::string ext : {".bin", ".json"}) {
    std::string path = TmpPath("imp" + ext);
    ASSERT_TRUE(m.Save(path).ok());
    auto l = ImportanceMap::Load(path);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    EXPECT_EQ(l->tokens(), 77u);
    EXPECT_EQ(l->text_hash(), m.text_hash());
    ASSERT_NE(l->For("blk.0.attn_q.weight"), nullptr);
    EXPECT_FLOAT_EQ(l->For("blk.0.attn_q.weight")[1], 2.5f);
    EXPECT_EQ(l->For("blk.0.attn_q.weight", 4), nullptr);  // wrong length
    EXPECT_EQ(l->For("blk.1.attn_q.weight"), nullptr);
    std::remove(path.c_str());
  }
}

TEST(Importance, RejectsCorruptFiles) {
  ImportanceMap m;
  m.Set("blk.0.attn_q.weight", {{1.f, 2.f}, 3});
  std::string path = TmpPath("imp2.bin");
  ASSERT_TRUE(m.Save(path).ok());
  std::ifstream f(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  for (size_t cut = 0; cut < bytes.size(); ++cut) {
    auto r = ImportanceMap::ParseBinary(reinterpret_cast<const uint8_t*>(bytes.data()), cut, "x");
    EXPECT_FALSE(r.ok()) << cut;
  }
  std::string neg = bytes;
  float v = -1.f;
  std::memcpy(neg.data() + neg.size() - 4, &v, 4);
  EXPECT_FALSE(ImportanceMap::ParseBinary(reinterpret_cast<const uint8_t*>(neg.data()), neg.size(), "x").ok());
  std::string big = bytes;
  uint64_t cols = 1ull << 60;
  std::memcpy(big.data() + 4 + 4 + 4 + 8 + 8 + 4 + 19, &cols, 8);  // the column count of the only tensor
  auto r = ImportanceMap::ParseBinary(reinterpret_cast<const uint8_t*>(big.data()), big.size(), "x");
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(ImportanceMap::ParseJson("{\"format\": \"tabfit-importance\", \"version\": 1, \"tensors\": "
                                        "{\"a\": {\"values\": [-1]}}}", "x").ok());
  std::remove(path.c_str());
}

TEST(ReferenceFile, RoundTripWithinStep) {
  ReferenceHeader h;
  h.n_vocab = 5;
  h.n_ctx = 6;
  h.first = 3;  // 2 scored positions per chunk
  h.n_chunks = 2;
  h.tokens_hash = 42;
  std::string path = TmpPath("ref.bin");
  auto w = ReferenceFileWriter::Create(path, h);
  ASSERT_TRUE(w.ok());
  std::vector<float> logits = {1, 2, 3, 4, 5, -30, 0, 0.5f, 0.25f, 0.125f};
  std::vector<float> lp(10);
  LogSoftmax(logits.data(), 5, lp.data());
  LogSoftmax(logits.data() + 5, 5, lp.data() + 5);
  const int32_t targets[2] = {4, 0};  // the second one lies beyond the 24-nat range
  ASSERT_TRUE((*w)->AddChunk(lp.data(), targets, 2, 5).ok());
  ASSERT_TRUE((*w)->AddChunk(lp.data(), targets, 2, 5).ok());
  ASSERT_TRUE((*w)->Finish().ok());
  auto r = ReferenceFileReader::Open(path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)->header().tokens_hash, 42u);
  auto c = (*r)->Chunk(1, 2, 5);
  ASSERT_TRUE(c.ok());
  for (int i = 0; i < 10; ++i) {
    if (lp[i] > -24) {
      EXPECT_NEAR((*c)[i], lp[i], h.step) << i;
    }
  }
  EXPECT_FLOAT_EQ((*c)[5], lp[5]);  // the target is stored exactly
  EXPECT_LT((*c)[5], -30.f);
  EXPECT_FLOAT_EQ((*c)[4], lp[4]);
  EXPECT_FALSE((*r)->Chunk(2, 2, 5).ok());
  EXPECT_FALSE((*r)->Chunk(0, 2, 6).ok());
  // Truncation is detected.
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 1);
  EXPECT_FALSE(ReferenceFileReader::Open(path).ok());
  std::remove(path.c_str());
}

}  // namespace
}  // namespace tabfit
