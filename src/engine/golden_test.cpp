// Golden checks: tabfit's greedy output equals llama.cpp's on the shared models
// (../shared/models/golden/greedy.jsonl), and Q8_0 weights keep the first 16 tokens.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "engine/engine.h"
#include "model/tokenizer/tokenizer.h"
#include "test_util.h"

namespace tabfit {
namespace {

struct GoldenCase {
  std::string model, prompt, output;
  int n_predict;
};

std::vector<GoldenCase> ReadGolden() {
  std::vector<GoldenCase> out;
  std::ifstream f(testing::SharedModel("golden/greedy.jsonl"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    auto j = nlohmann::json::parse(line);
    out.push_back({j["model"], j["prompt"], j["output"], j["n_predict"]});
  }
  return out;
}

std::string ModelPath(const std::string& name) {
  std::string bundled = testing::SourceDir() + "/models/" + name;
  if (std::filesystem::exists(bundled)) return bundled;
  return testing::SharedModel(name);
}

// Runs BOS + prompt + n greedy tokens and renders every token's piece, BOS as "<s>" (as llama.cpp prints).
std::string RunGreedy(Engine& e, const std::string& prompt, int n) {
  const Tokenizer& tok = e.tokenizer();
  std::vector<int32_t> ids = tok.Encode(prompt, true);
  std::string text;
  for (int32_t id : ids) text += tok.TokenToPiece(id);
  GenerateOptions go;
  go.max_tokens = n;
  go.sampler.temperature = 0;
  std::vector<int32_t> gen;
  Status s = e.Generate(prompt, go, [&](const std::string&, int32_t id) {
    if (id >= 0) gen.push_back(id);
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  // Generate may hold pieces back (stop strings, partial UTF-8); render token by token instead.
  for (int32_t id : gen) text += tok.TokenToPiece(id);
  return text;
}

class GoldenGreedy : public ::testing::TestWithParam<std::string> {};

void CheckModel(const std::string& model_name, const std::string& weight_type, int compare_tokens) {
  auto cases = ReadGolden();
  if (cases.empty()) GTEST_SKIP() << "missing " << testing::SharedModel("golden/greedy.jsonl");
  const std::string path = ModelPath(model_name);
  TABFIT_REQUIRE_FILE(path);
  EngineOptions o;
  o.threads = 2;
  o.weight_type = weight_type;
  auto e = Engine::LoadFile(path, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  int checked = 0;
  for (const auto& c : cases) {
    if (c.model != model_name) continue;
    std::string want = c.output;
    if (!want.empty() && want.back() == '\n') want.pop_back();  // the tool's final newline
    std::string got = RunGreedy(**e, c.prompt, compare_tokens);
    if (compare_tokens == c.n_predict) {
      EXPECT_EQ(got, want) << model_name << " prompt '" << c.prompt << "'";
    } else {
      EXPECT_EQ(want.substr(0, got.size()), got) << model_name << " (" << weight_type << ") prompt '" << c.prompt
                                                 << "': first " << compare_tokens << " tokens differ";
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(Golden, DemoModelF16MatchesLlamaCpp) { CheckModel("tabfit-demo-8m-f16.gguf", "", 64); }
TEST(Golden, TestModel30mF16MatchesLlamaCpp) { CheckModel("tabfit-test-30m-f16.gguf", "", 64); }
TEST(Golden, Stories260kF32MatchesLlamaCpp) { CheckModel("stories260K.gguf", "", 64); }
TEST(Golden, DemoModelQ8_0First16Tokens) { CheckModel("tabfit-demo-8m-f16.gguf", "q8_0", 16); }
TEST(Golden, TestModel30mQ8_0First16Tokens) { CheckModel("tabfit-test-30m-f16.gguf", "q8_0", 16); }

}  // namespace
}  // namespace tabfit
