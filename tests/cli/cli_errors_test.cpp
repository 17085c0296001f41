// Bad input to the tabfit program: each gives one clear error line, a
// non-zero exit code, and no crash (also under the sanitizer build).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "test_util.h"

namespace tabfit {
namespace {

struct RunResult {
  int exit_code = -1;
  bool signaled = false;
  std::string output;  // stdout + stderr
};

RunResult RunTabfit(const std::string& args) {
  std::string cmd = std::string(TABFIT_BINARY_DIR) + "/tabfit " + args + " 2>&1";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  int status = pclose(p);
  r.signaled = WIFSIGNALED(status);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), {}};
}

std::string TempPath(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("tabfit-cli-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

std::string WriteBytes(const std::string& name, const std::vector<uint8_t>& bytes) {
  std::string p = TempPath(name);
  std::ofstream(p, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return p;
}

// Offset just past the name of tensor `name` in the tensor-info section.
size_t TensorInfoAfterName(const std::vector<uint8_t>& b, const std::string& name) {
  // The name is stored as u64 length + bytes; find the last occurrence (metadata has none with this exact length prefix).
  std::vector<uint8_t> needle(8 + name.size());
  uint64_t len = name.size();
  std::memcpy(needle.data(), &len, 8);
  std::memcpy(needle.data() + 8, name.data(), name.size());
  auto it = std::search(b.begin(), b.end(), needle.begin(), needle.end());
  EXPECT_NE(it, b.end()) << name;
  return (it - b.begin()) + needle.size();
}

void ExpectCleanError(const RunResult& r, int want_code, const std::string& must_contain) {
  EXPECT_FALSE(r.signaled) << r.output;
  EXPECT_EQ(r.exit_code, want_code) << r.output;
  EXPECT_NE(r.output.find("error: "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(must_contain), std::string::npos) << "missing '" << must_contain << "' in: " << r.output;
  EXPECT_EQ(r.output.find("AddressSanitizer"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("runtime error"), std::string::npos) << r.output;
}

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    demo_ = ReadAll(testing::DemoModel());
    ASSERT_GT(demo_.size(), 1000u);
  }
  std::vector<uint8_t> demo_;
};

TEST_F(CliErrors, MissingFile) {
  auto r = RunTabfit("run -m /nonexistent/model.gguf -p hi -n 1");
  ExpectCleanError(r, 3, "/nonexistent/model.gguf");
}

TEST_F(CliErrors, TruncatedFile) {
  for (size_t len : {size_t{0}, size_t{3}, size_t{24}, size_t{5000}, demo_.size() / 2, demo_.size() - 1}) {
    std::string p = WriteBytes("trunc.gguf", {demo_.begin(), demo_.begin() + len});
    auto r = RunTabfit("run -m " + p + " -p hi -n 1");
    ExpectCleanError(r, 4, "trunc.gguf");
  }
}

TEST_F(CliErrors, WrongMagic) {
  auto b = demo_;
  std::memcpy(b.data(), "GGML", 4);
  auto r = RunTabfit("run -m " + WriteBytes("magic.gguf", b) + " -p hi -n 1");
  ExpectCleanError(r, 4, "magic");
}

TEST_F(CliErrors, TensorOffsetPastEnd) {
  auto b = demo_;
  size_t at = TensorInfoAfterName(b, "output.weight");
  uint64_t huge = 1ull << 40;                 // aligned, far past the end
  std::memcpy(b.data() + at + 4 + 2 * 8 + 4, &huge, 8);  // n_dims, ne[2], type, offset
  auto r = RunTabfit("run -m " + WriteBytes("offset.gguf", b) + " -p hi -n 1");
  ExpectCleanError(r, 4, "output.weight");
}

TEST_F(CliErrors, AbsurdDimensions) {
  auto b = demo_;
  size_t at = TensorInfoAfterName(b, "token_embd.weight");
  int64_t absurd = int64_t{1} << 62;
  std::memcpy(b.data() + at + 4 + 8, &absurd, 8);  // ne[1]
  auto r = RunTabfit("run -m " + WriteBytes("dims.gguf", b) + " -p hi -n 1");
  ExpectCleanError(r, 4, "token_embd.weight");
}

TEST_F(CliErrors, AbsurdCounts) {
  auto b = demo_;
  uint64_t n = 1ull << 60;
  std::memcpy(b.data() + 8, &n, 8);  // tensor count
  auto r = RunTabfit("run -m " + WriteBytes("counts.gguf", b) + " -p hi -n 1");
  ExpectCleanError(r, 4, "counts.gguf");
}

TEST_F(CliErrors, UnknownArchitecture) {
  auto g = GgufFile::Open(testing::DemoModel());
  ASSERT_TRUE(g.ok());
  GgufWriter w;
  for (const auto& [key, value] : g->metadata()) {
    if (key == "general.alignment") continue;
    if (key == "general.architecture") w.SetString(key, "gptj");
    else w.Set(key, value);
  }
  std::vector<std::vector<uint8_t>> keep;
  for (const auto& t : g->tensors()) {
    keep.emplace_back(t.nbytes);
    ASSERT_TRUE(g->ReadTensor(t, keep.back().data()).ok());
    ASSERT_TRUE(w.AddTensorView(t.name, t.type, t.ne, keep.back().data(), keep.back().size()).ok());
  }
  std::string p = TempPath("arch.gguf");
  ASSERT_TRUE(w.WriteFile(p).ok());
  auto r = RunTabfit("run -m " + p + " -p hi -n 1");
  ExpectCleanError(r, 5, "gptj");
}

TEST_F(CliErrors, PromptLongerThanContext) {
  std::string prompt;
  for (int i = 0; i < 30; ++i) prompt += "and the king said ";
  auto r = RunTabfit("run -c 32 -n 4 -p '" + prompt + "'");
  ExpectCleanError(r, 7, "context");
}

TEST_F(CliErrors, BadFlagsAndBudget) {
  ExpectCleanError(RunTabfit("run --budget lots -p hi"), 2, "lots");
  ExpectCleanError(RunTabfit("run --weight-type q9 -p hi"), 2, "q9");
  ExpectCleanError(RunTabfit("run --budget 4MB -p hi -n 1"), 6, "budget");
}

TEST(Cli, RunPrintsSpeedAndMemoryByComponent) {
  auto r = RunTabfit("run --temp 0 -n 8 -t 2 -p 'The king said'");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("The king said, \" I am not afraid"), std::string::npos) << r.output;
  for (const char* s : {"prompt:", "generation:", "tokens/s", "embeddings", "kv_cache", "layers.0-7", "lm_head", "peak"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << " in " << r.output;
  }
}

TEST(Cli, PrecisionConfigShrinksTheLayers) {
  std::string cfg = WriteBytes("prec.json", {});
  std::ofstream(cfg) << R"({"default_bits": 4, "attention_bits": 8, "embedding_bits": 8, "lm_head_bits": 8})";
  auto r = RunTabfit("run --temp 0 -n 4 -t 1 -p hi --precision " + cfg);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  // F16 layers are 12.0 MiB; 8-bit attention + 4-bit MLP is about a third of that.
  EXPECT_NE(r.output.find("layers.0-7          4.1 MiB"), std::string::npos) << r.output;
  std::ofstream(cfg) << R"({"default_bits": 5})";
  auto bad = RunTabfit("run -n 1 -p hi --precision " + cfg);
  EXPECT_FALSE(bad.signaled);
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("error: "), std::string::npos) << bad.output;
  EXPECT_NE(bad.output.find("default_bits"), std::string::npos) << bad.output;
}

TEST(Cli, ConvertWithPrecisionThenRunAndInspectThePackage) {
  std::string cfg = WriteBytes("prec2.json", {});
  std::ofstream(cfg) << R"({"default_bits": 4, "attention_bits": 8})";
  std::string dir = TempPath("pkg");
  std::filesystem::remove_all(dir);
  auto c = RunTabfit("convert -q --precision " + cfg + " " + testing::DemoModel() + " " + dir);
  ASSERT_EQ(c.exit_code, 0) << c.output;
  EXPECT_NE(c.output.find("Q8_0"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("Q4_0"), std::string::npos) << c.output;
  auto i = RunTabfit("inspect " + dir);
  EXPECT_EQ(i.exit_code, 0) << i.output;
  EXPECT_NE(i.output.find("Q8_0"), std::string::npos) << i.output;
  auto r = RunTabfit("run --temp 0 -n 4 -t 1 -p hi -m " + dir);
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Cli, BenchPairsEveryGenerationRunWithCeilingsProbedBeforeAndAfterIt) {
  auto r = RunTabfit("bench -t 1 -p 0 -n 4 -r 2 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  const auto probes = j.at("n_threads_ceiling_probes_bytes_per_second").get<std::vector<double>>();
  const auto runs = j.at("bandwidth_ratio_per_tg_run").get<std::vector<double>>();
  ASSERT_EQ(probes.size(), 3u);  // before the model loaded, after run 1, after run 2
  ASSERT_EQ(runs.size(), 2u);
  const double bytes_per_token = j.at("weight_bytes_per_token").get<double>();
  const auto tg = j.at("tg").at("samples").get<std::vector<double>>();
  const double ceiling = j.at("machine_read_bandwidth").at("n_threads_bytes_per_second").get<double>();
  for (size_t i = 0; i < runs.size(); ++i) {
    EXPECT_GT(probes[i], 0);
    EXPECT_DOUBLE_EQ(runs[i], bytes_per_token * tg[i] / std::max(probes[i], probes[i + 1]));
  }
  for (double p : probes) EXPECT_LE(p, ceiling);  // the overall ratio uses the highest ceiling seen
  EXPECT_DOUBLE_EQ(j.at("bandwidth_ratio_per_tg_run_median").get<double>(), (runs[0] + runs[1]) / 2);
}

TEST(Cli, InspectShowsMetadataTensorsAndMemory) {
  auto r = RunTabfit("inspect");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"general.architecture", "token_embd.weight", "kv_cache", "8.4M params"}) {
    EXPECT_NE(r.output.find(s), std::string::npos) << s << " in " << r.output;
  }
}

}  // namespace
}  // namespace tabfit
