// c_api_test: the C API on the bundled demo model — options, errors per
// handle, loading from a file / memory / reader, step-wise greedy generation
// against llama.cpp's golden text, cancellation, ledger back to zero.
#include "c_api/tabfit_c.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace {

using nlohmann::json;

struct Golden {
  std::string prompt, output;
  int n_predict;
};

std::vector<Golden> DemoGolden() {
  std::vector<Golden> out;
  std::ifstream f(tabfit::testing::SharedModel("golden/greedy.jsonl"));
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    json j = json::parse(line);
    if (j["model"] == "tabfit-demo-8m-f16.gguf") out.push_back({j["prompt"], j["output"], j["n_predict"]});
  }
  return out;
}

std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(f), {});
}

json Ledger(tabfit_engine* h) {
  const char* s = nullptr;
  EXPECT_EQ(tabfit_engine_ledger_json(h, &s), TABFIT_OK) << tabfit_last_error(h);
  return json::parse(s);
}

struct GenRun {
  std::string text;
  std::vector<int32_t> ids;
  json stats;
};

// Drives begin/next/end; stops after `cancel_after` tokens when >= 0.
GenRun Generate(tabfit_engine* h, const std::string& prompt, const std::string& options, int cancel_after = -1) {
  GenRun r;
  EXPECT_EQ(tabfit_generate_begin(h, prompt.c_str(), options.c_str()), TABFIT_OK) << tabfit_last_error(h);
  for (int i = 0; i < 10000; ++i) {
    if (cancel_after >= 0 && static_cast<int>(r.ids.size()) >= cancel_after) break;
    const char* piece = nullptr;
    int32_t token = -1;
    int done = 0;
    tabfit_status st = tabfit_generate_next(h, &piece, &token, &done);
    EXPECT_EQ(st, TABFIT_OK) << tabfit_last_error(h);
    if (st != TABFIT_OK) break;
    r.text += piece;
    if (token >= 0) r.ids.push_back(token);
    if (done) break;
  }
  const char* stats = nullptr;
  EXPECT_EQ(tabfit_generate_end(h, &stats), TABFIT_OK);
  r.stats = json::parse(stats);
  return r;
}

class CApi : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = tabfit::testing::DemoModel();
    if (!std::filesystem::exists(path_)) GTEST_SKIP() << "missing " << path_;
    ASSERT_EQ(tabfit_engine_create(R"({"threads":2,"n_ctx":256})", &h_), TABFIT_OK) << tabfit_last_error(h_);
  }
  void TearDown() override { tabfit_engine_destroy(h_); }
  std::string path_;
  tabfit_engine* h_ = nullptr;
};

TEST(CApiOptions, BadJsonAndUnknownKeysAreReportedOnTheHandle) {
  tabfit_engine* h = nullptr;
  EXPECT_EQ(tabfit_engine_create("{threads:2", &h), TABFIT_INVALID_ARGUMENT);
  ASSERT_NE(h, nullptr);
  EXPECT_NE(std::string(tabfit_last_error(h)).find("not a JSON object"), std::string::npos) << tabfit_last_error(h);
  tabfit_engine_destroy(h);

  EXPECT_EQ(tabfit_engine_create(R"({"thread":2})", &h), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(h)).find("unknown key \"thread\""), std::string::npos)
      << tabfit_last_error(h);
  tabfit_engine_destroy(h);

  EXPECT_EQ(tabfit_engine_create(R"({"n_ctx":"big"})", &h), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(h)).find("\"n_ctx\" must be an integer"), std::string::npos);
  tabfit_engine_destroy(h);

  EXPECT_EQ(tabfit_engine_create(nullptr, &h), TABFIT_OK);
  EXPECT_STREQ(tabfit_last_error(h), "");
  tabfit_engine_destroy(h);
  EXPECT_STREQ(tabfit_status_name(TABFIT_CANCELLED), "Cancelled");
}

TEST_F(CApi, CallsBeforeLoadFailWithBadState) {
  EXPECT_EQ(tabfit_generate_begin(h_, "hi", nullptr), TABFIT_BAD_STATE);
  EXPECT_NE(std::string(tabfit_last_error(h_)).find("no model is loaded"), std::string::npos);
  const char* piece;
  int32_t tok;
  int done;
  EXPECT_EQ(tabfit_generate_next(h_, &piece, &tok, &done), TABFIT_BAD_STATE);
  json l = Ledger(h_);
  EXPECT_FALSE(l["loaded"]);
  EXPECT_EQ(l["total_current"], 0);
}

TEST_F(CApi, MissingFileNamesThePath) {
  EXPECT_EQ(tabfit_engine_load_file(h_, "/nonexistent/model.gguf", nullptr, nullptr), TABFIT_NOT_FOUND);
  EXPECT_NE(std::string(tabfit_last_error(h_)).find("/nonexistent/model.gguf"), std::string::npos)
      << tabfit_last_error(h_);
}

TEST_F(CApi, GreedyStepwiseMatchesGolden) {
  auto golden = DemoGolden();
  if (golden.empty()) GTEST_SKIP() << "missing ../shared golden/greedy.jsonl";
  ASSERT_EQ(tabfit_engine_load_file(h_, path_.c_str(), nullptr, nullptr), TABFIT_OK) << tabfit_last_error(h_);
  const char* info = nullptr;
  ASSERT_EQ(tabfit_engine_info_json(h_, &info), TABFIT_OK);
  json ij = json::parse(info);
  EXPECT_TRUE(ij["loaded"]);
  EXPECT_EQ(ij["n_ctx"], 256);
#if defined(__EMSCRIPTEN__) && !defined(__EMSCRIPTEN_PTHREADS__)
  EXPECT_EQ(ij["threads"], 1);  // no pthreads in this build
#else
  EXPECT_EQ(ij["threads"], 2);
#endif
  for (const auto& g : golden) {
    GenRun r = Generate(h_, g.prompt, R"({"temperature":0,"max_tokens":)" + std::to_string(g.n_predict) + "}");
    std::string want = g.output;
    if (!want.empty() && want.back() == '\n') want.pop_back();
    const std::string prefix = "<s> " + g.prompt;
    ASSERT_EQ(want.substr(0, prefix.size()), prefix);
    EXPECT_EQ(r.text, want.substr(prefix.size())) << "prompt '" << g.prompt << "'";
    EXPECT_EQ(r.stats["generated_tokens"], g.n_predict);
    EXPECT_EQ(r.stats["stop_reason"], "max_tokens");
    // The per-token pieces render the same text (as llama.cpp prints it).
    const char* pieces = nullptr;
    ASSERT_EQ(tabfit_token_pieces_json(h_, r.ids.data(), r.ids.size(), &pieces), TABFIT_OK);
    std::string joined;
    for (const auto& p : json::parse(pieces)) joined += p.get<std::string>();
    EXPECT_EQ(joined, r.text);
  }
}

TEST_F(CApi, ContextCapAndBudgetReachTheEngine) {
  tabfit_engine* h = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"threads":1,"n_ctx_max":96})", &h), TABFIT_OK);
  ASSERT_EQ(tabfit_engine_load_file(h, path_.c_str(), nullptr, nullptr), TABFIT_OK) << tabfit_last_error(h);
  const char* info = nullptr;
  ASSERT_EQ(tabfit_engine_info_json(h, &info), TABFIT_OK);
  EXPECT_EQ(json::parse(info)["n_ctx"], 96);  // the demo model's own context is 512
  tabfit_engine_destroy(h);

  ASSERT_EQ(tabfit_engine_create(R"({"threads":1,"budget_bytes":4000000})", &h), TABFIT_OK);
  EXPECT_EQ(tabfit_engine_load_file(h, path_.c_str(), nullptr, nullptr), TABFIT_OUT_OF_MEMORY);
  EXPECT_NE(std::string(tabfit_last_error(h)).find("budget"), std::string::npos) << tabfit_last_error(h);
  EXPECT_FALSE(Ledger(h)["loaded"]);
  tabfit_engine_destroy(h);
}

TEST_F(CApi, KvTypeRecentWindowAndPruningReachTheEngine) {
  tabfit_engine* h = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"threads":1,"n_ctx":64,"kv_type":"mixed","kv_recent":16,"kv_prune":0.5})", &h),
            TABFIT_OK);
  ASSERT_EQ(tabfit_engine_load_file(h, path_.c_str(), nullptr, nullptr), TABFIT_OK) << tabfit_last_error(h);
  // mixed: 16 tokens at 8 bits + 48 at 4 bits, 8 layers, 2 kv heads x 64 (4 blocks of 32 per cell).
  uint64_t kv = 0;
  const json ledger = Ledger(h);
  for (const auto& c : ledger["components"]) {
    if (c["name"] == "kv_cache") kv = c["current_bytes"].get<uint64_t>();
  }
  EXPECT_EQ(kv, 2ull * 8 * 4 * (34 * 16 + 18 * 48));
  // Pruning lets generation run past the 64-token context.
  GenRun r = Generate(h, "The king said", R"({"temperature":0,"max_tokens":100,"stop_at_eos":false})");
  EXPECT_EQ(r.stats["stop_reason"], "max_tokens");
  EXPECT_EQ(r.ids.size(), 100u);
  tabfit_engine_destroy(h);
  EXPECT_EQ(tabfit_engine_create(R"({"kv_prune":"half"})", &h), TABFIT_INVALID_ARGUMENT);
  tabfit_engine_destroy(h);
  h = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"kv_type":"q3"})", &h), TABFIT_OK);
  EXPECT_EQ(tabfit_engine_load_file(h, path_.c_str(), nullptr, nullptr), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(h)).find("KV cache type"), std::string::npos) << tabfit_last_error(h);
  tabfit_engine_destroy(h);
}

TEST_F(CApi, CancelMidGenerationThenGenerateAgain) {
  ASSERT_EQ(tabfit_engine_load_file(h_, path_.c_str(), nullptr, nullptr), TABFIT_OK) << tabfit_last_error(h_);
  GenRun full = Generate(h_, "The king said", R"({"temperature":0,"max_tokens":12})");
  GenRun cut = Generate(h_, "The king said", R"({"temperature":0,"max_tokens":12})", 4);
  EXPECT_EQ(cut.stats["stop_reason"], "cancelled");
  EXPECT_EQ(cut.ids.size(), 4u);
  EXPECT_EQ(std::vector<int32_t>(full.ids.begin(), full.ids.begin() + 4), cut.ids);
  GenRun again = Generate(h_, "The king said", R"({"temperature":0,"max_tokens":12})");
  EXPECT_EQ(again.ids, full.ids);
  EXPECT_EQ(again.text, full.text);
}

TEST_F(CApi, StopStringEndsAndIsNotEmitted) {
  ASSERT_EQ(tabfit_engine_load_file(h_, path_.c_str(), nullptr, nullptr), TABFIT_OK) << tabfit_last_error(h_);
  GenRun full = Generate(h_, "The king said", R"({"temperature":0,"max_tokens":64})");
  size_t comma = full.text.find("God");
  ASSERT_NE(comma, std::string::npos) << full.text;
  GenRun stopped = Generate(h_, "The king said", R"({"temperature":0,"max_tokens":64,"stop":["God"]})");
  EXPECT_EQ(stopped.stats["stop_reason"], "stop_string");
  EXPECT_EQ(stopped.text, full.text.substr(0, comma));
}

TEST_F(CApi, BadGenerateOptionsAreRejected) {
  ASSERT_EQ(tabfit_engine_load_file(h_, path_.c_str(), nullptr, nullptr), TABFIT_OK);
  EXPECT_EQ(tabfit_generate_begin(h_, "x", R"({"max_tokens":0})"), TABFIT_INVALID_ARGUMENT);
  EXPECT_EQ(tabfit_generate_begin(h_, "x", R"({"temprature":0})"), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(h_)).find("temprature"), std::string::npos);
  // Still usable.
  GenRun r = Generate(h_, "x", R"({"temperature":0,"max_tokens":3})");
  EXPECT_EQ(r.ids.size(), 3u);
}

struct ReaderState {
  const std::vector<uint8_t>* bytes;
  uint64_t max_end = 0;
  int reads = 0;
  int progress_calls = 0;
  uint64_t last_done = 0, total = 0;
  int cancel_after = -1;
  std::vector<std::string> components;
};

int ReadCb(void* user, uint64_t offset, void* dst, size_t n) {
  auto* s = static_cast<ReaderState*>(user);
  if (offset + n > s->bytes->size()) return 1;
  std::memcpy(dst, s->bytes->data() + offset, n);
  s->max_end = std::max<uint64_t>(s->max_end, offset + n);
  s->reads++;
  return 0;
}

int ProgressCb(void* user, uint64_t done, uint64_t total, const char* component) {
  auto* s = static_cast<ReaderState*>(user);
  s->progress_calls++;
  s->last_done = done;
  s->total = total;
  if (s->components.empty() || s->components.back() != component) s->components.push_back(component);
  return s->cancel_after >= 0 && s->progress_calls > s->cancel_after ? 0 : 1;
}

TEST_F(CApi, ReaderLoadReportsProgressAndMatchesFileLoad) {
  std::vector<uint8_t> bytes = ReadAll(path_);
  ReaderState st{&bytes};
  ASSERT_EQ(tabfit_engine_load_reader(h_, "demo.gguf", bytes.size(), ReadCb, &st, ProgressCb, &st), TABFIT_OK)
      << tabfit_last_error(h_);
  EXPECT_GT(st.reads, 2);
  EXPECT_EQ(st.max_end, bytes.size());  // the last tensor ends the file
  EXPECT_GT(st.progress_calls, 1);
  EXPECT_EQ(st.last_done, st.total);
  EXPECT_GT(st.components.size(), 2u);
  GenRun a = Generate(h_, "In the beginning", R"({"temperature":0,"max_tokens":8})");

  tabfit_engine* h2 = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"threads":1,"n_ctx":128})", &h2), TABFIT_OK);
  ASSERT_EQ(tabfit_engine_load_memory(h2, bytes.data(), bytes.size(), "demo-mem", nullptr, nullptr), TABFIT_OK)
      << tabfit_last_error(h2);
  GenRun b = Generate(h2, "In the beginning", R"({"temperature":0,"max_tokens":8})");
  EXPECT_EQ(a.ids, b.ids);  // two handles, side by side
  tabfit_engine_destroy(h2);
}

TEST_F(CApi, ProgressCancelFailsCleanlyAndTheHandleStaysUsable) {
  std::vector<uint8_t> bytes = ReadAll(path_);
  ReaderState st{&bytes};
  st.cancel_after = 2;
  EXPECT_EQ(tabfit_engine_load_reader(h_, "demo.gguf", bytes.size(), ReadCb, &st, ProgressCb, &st),
            TABFIT_CANCELLED);
  EXPECT_FALSE(Ledger(h_)["loaded"]);
  ReaderState again{&bytes};
  EXPECT_EQ(tabfit_engine_load_reader(h_, "demo.gguf", bytes.size(), ReadCb, &again, nullptr, nullptr), TABFIT_OK)
      << tabfit_last_error(h_);
}

TEST_F(CApi, ReaderFailureIsAnIoErrorNamingTheSource) {
  std::vector<uint8_t> bytes = ReadAll(path_);
  std::vector<uint8_t> truncated(bytes.begin(), bytes.begin() + bytes.size() / 2);
  ReaderState st{&truncated};
  // Claims the full size, but reads past the half fail.
  EXPECT_EQ(tabfit_engine_load_reader(h_, "half.gguf", bytes.size(), ReadCb, &st, nullptr, nullptr),
            TABFIT_IO_ERROR);
  EXPECT_NE(std::string(tabfit_last_error(h_)).find("half.gguf"), std::string::npos) << tabfit_last_error(h_);
}

TEST_F(CApi, UnloadReturnsTheLedgerToZero) {
  ASSERT_EQ(tabfit_engine_load_file(h_, path_.c_str(), nullptr, nullptr), TABFIT_OK);
  Generate(h_, "The king said", R"({"temperature":0,"max_tokens":4})");
  json before = Ledger(h_);
  EXPECT_TRUE(before["loaded"]);
  EXPECT_GT(before["total_current"].get<uint64_t>(), 10'000'000u);  // 8M f16 params + KV
  bool has_kv = false;
  for (const auto& c : before["components"]) has_kv |= c["name"] == "kv_cache";
  EXPECT_TRUE(has_kv);
  ASSERT_EQ(tabfit_engine_unload(h_), TABFIT_OK);
  json after = Ledger(h_);
  EXPECT_FALSE(after["loaded"]);
  EXPECT_EQ(after["total_current"], 0);
  EXPECT_EQ(after["total_peak"], before["total_peak"]);
  EXPECT_EQ(after["components"].size(), before["components"].size());
  for (const auto& c : after["components"]) {
    EXPECT_EQ(c["current_bytes"], 0) << c["name"];
    EXPECT_EQ(c["live_buffers"], 0) << c["name"];
  }
  // Loadable again.
  ASSERT_EQ(tabfit_engine_load_file(h_, path_.c_str(), nullptr, nullptr), TABFIT_OK);
  EXPECT_GT(Ledger(h_)["total_current"].get<uint64_t>(), 0u);
}

}  // namespace

// Bytes lent for the load only cannot be read again: unloading layers is refused
// (the engine would read freed memory later); a reader kept open may.
TEST_F(CApi, UnloadingLayersNeedsASourceThatCanBeReadAgain) {
  std::vector<uint8_t> bytes = ReadAll(path_);
  ASSERT_EQ(tabfit_engine_load_memory(h_, bytes.data(), bytes.size(), "demo-mem", nullptr, nullptr), TABFIT_OK)
      << tabfit_last_error(h_);
  GenRun want = Generate(h_, "In the beginning", R"({"temperature":0,"max_tokens":8})");
  EXPECT_EQ(tabfit_engine_unload_components(h_, R"(["layers"])"), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(h_)).find("could not be read again"), std::string::npos)
      << tabfit_last_error(h_);
  EXPECT_EQ(Generate(h_, "In the beginning", R"({"temperature":0,"max_tokens":8})").ids, want.ids);

  tabfit_engine* h2 = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"threads":2,"n_ctx":256,"unload_unused_layers":true})", &h2), TABFIT_OK);
  ReaderState st{&bytes};
  ASSERT_EQ(tabfit_engine_load_reader(h2, "demo.gguf", bytes.size(), ReadCb, &st, nullptr, nullptr), TABFIT_OK)
      << tabfit_last_error(h2);
  const uint64_t before = Ledger(h2)["total_current"];
  ASSERT_EQ(tabfit_engine_unload_components(h2, R"(["layers"])"), TABFIT_OK) << tabfit_last_error(h2);
  EXPECT_LT(Ledger(h2)["total_current"].get<uint64_t>() + 10'000'000u, before);  // 12 MiB of layers left
  const int reads = st.reads;
  EXPECT_EQ(Generate(h2, "In the beginning", R"({"temperature":0,"max_tokens":8})").ids, want.ids);
  EXPECT_GT(st.reads, reads);  // the layers streamed from the reader
  ASSERT_EQ(tabfit_engine_load_components(h2, R"(["layers"])"), TABFIT_OK) << tabfit_last_error(h2);
  // Every layer pinned again: the ring's buffers went back too.
  json l = Ledger(h2);
  for (const auto& c : l["components"]) {
    if (c["name"] == "stream_buffers") EXPECT_EQ(c["current_bytes"], 0);
  }
  // Back to what it held before, plus the KV cache the generation grew.
  uint64_t kv = 0;
  for (const auto& c : l["components"]) {
    if (c["name"] == "kv_cache") kv = c["current_bytes"];
  }
  EXPECT_GT(kv, 0u);
  EXPECT_EQ(l["total_current"].get<uint64_t>(), before + kv);
  tabfit_engine_destroy(h2);
}

namespace tabfit {
namespace {

// The KV cache through the C API: the low-bit cache from the spec's option
// names, get(layer, position), prune / truncate / requantize freeing what the
// ledger shows, and errors that name the option.
TEST(CApiKv, LowBitCacheGetPruneRequantize) {
  const std::string path = testing::DemoModel();
  TABFIT_REQUIRE_FILE(path);
  tabfit_engine* h = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"threads":2,"n_ctx":512,"kv_type":"kivi","default_bits":4,
      "recent_token_bits":16,"rolling_window":32,"pruning":{"strategy":"budget","budget":48,"max_tokens_to_drop":1}})",
                                 &h),
            TABFIT_OK)
      << tabfit_last_error(h);
  ASSERT_EQ(tabfit_engine_load_file(h, path.c_str(), nullptr, nullptr), TABFIT_OK) << tabfit_last_error(h);
  GenRun g = Generate(h, "It is a truth universally acknowledged", R"({"temperature":0,"max_tokens":100})");
  const char* out = nullptr;
  ASSERT_EQ(tabfit_engine_kv_json(h, R"({"op":"info"})", &out), TABFIT_OK) << tabfit_last_error(h);
  json info = json::parse(out);
  const int tokens = info["tokens"];
  ASSERT_GT(tokens, 100);
  // get(): position 0 is in the 4-bit store, the last token in the 16-bit window.
  std::vector<float> k(128), v(128);
  int bits = 0;
  ASSERT_EQ(tabfit_engine_kv_get(h, 3, 0, k.data(), v.data(), k.size(), &bits), TABFIT_OK) << tabfit_last_error(h);
  EXPECT_EQ(bits, 4);
  ASSERT_EQ(tabfit_engine_kv_get(h, 3, tokens - 1, k.data(), v.data(), k.size(), &bits), TABFIT_OK);
  EXPECT_EQ(bits, 16);
  EXPECT_EQ(tabfit_engine_kv_get(h, 3, tokens + 5, k.data(), v.data(), k.size(), &bits), TABFIT_NOT_FOUND);
  EXPECT_EQ(tabfit_engine_kv_get(h, 3, 0, k.data(), v.data(), 10, &bits), TABFIT_INVALID_ARGUMENT);
  // requantize 4 -> 2 bits and 16 -> 8: bytes leave the ledger.
  const uint64_t before = Ledger(h)["total_current"];
  ASSERT_EQ(tabfit_engine_kv_json(h, R"({"op":"requantize","default_bits":2,"recent_token_bits":8})", &out), TABFIT_OK)
      << tabfit_last_error(h);
  const uint64_t freed = json::parse(out)["bytes_freed"];
  EXPECT_GT(freed, 0u);
  EXPECT_EQ(Ledger(h)["total_current"].get<uint64_t>(), before - freed);
  // prune(): a budget of 48 tokens, but the 4 sinks and the protected recent
  // window (64 by default) always stay.
  ASSERT_EQ(tabfit_engine_kv_json(h, R"({"op":"prune"})", &out), TABFIT_OK) << tabfit_last_error(h);
  json pr = json::parse(out);
  EXPECT_EQ(pr["tokens"], 68);
  EXPECT_EQ(pr["tokens_pruned"], tokens - 68);
  EXPECT_GE(pr["bytes_freed"].get<uint64_t>(), 0u);
  ASSERT_EQ(tabfit_engine_kv_json(h, R"({"op":"truncate","keep_recent":20})", &out), TABFIT_OK);
  EXPECT_EQ(json::parse(out)["tokens"], 24);  // 4 sinks + 20
  // reduce_context_window: down to 16 tokens frees chunks; raised again, generation goes on.
  const uint64_t kv_before = json::parse(out)["bytes"];
  ASSERT_EQ(tabfit_engine_kv_json(h, R"({"op":"set_context_window","n_ctx":16})", &out), TABFIT_OK)
      << tabfit_last_error(h);
  json cw = json::parse(out);
  EXPECT_EQ(cw["tokens"], 16);
  EXPECT_EQ(cw["capacity"], 16);
  EXPECT_LE(cw["bytes"].get<uint64_t>(), kv_before);
  EXPECT_EQ(tabfit_engine_kv_json(h, R"({"op":"set_context_window","n_ctx":4096})", &out), TABFIT_INVALID_ARGUMENT);
  ASSERT_EQ(tabfit_engine_kv_json(h, R"({"op":"set_context_window","n_ctx":512})", &out), TABFIT_OK);
  EXPECT_EQ(json::parse(out)["capacity"], 512);
  // Bad knobs name the option and its range.
  EXPECT_EQ(tabfit_engine_kv_json(h, R"({"op":"configure_pruning","threshold":2})", &out), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(h)).find("threshold must be in [0, 1]"), std::string::npos)
      << tabfit_last_error(h);
  EXPECT_EQ(tabfit_engine_kv_json(h, R"({"op":"shrink"})", &out), TABFIT_INVALID_ARGUMENT);
  tabfit_engine_destroy(h);
  tabfit_engine* bad = nullptr;
  ASSERT_EQ(tabfit_engine_create(R"({"kv_type":"kivi","default_bits":5})", &bad), TABFIT_OK);
  EXPECT_EQ(tabfit_engine_load_file(bad, path.c_str(), nullptr, nullptr), TABFIT_INVALID_ARGUMENT);
  EXPECT_NE(std::string(tabfit_last_error(bad)).find("default_bits must be 2, 3 or 4"), std::string::npos)
      << tabfit_last_error(bad);
  tabfit_engine_destroy(bad);
}

}  // namespace
}  // namespace tabfit
