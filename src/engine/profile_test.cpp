#include "engine/profile.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

namespace tabfit {
namespace {

using nlohmann::json;

std::string ProfilesDir() { return TABFIT_PROFILES_DIR; }

json ChromeJson() { return json::parse(BuiltinProfileJson("chrome").value()); }

Status ParseError(const json& j) {
  auto r = ParseProfile(j.dump(), "test.json");
  EXPECT_FALSE(r.ok()) << j.dump();
  return r.status();
}

TEST(ProfileTest, AllBuiltinProfilesParseAndMatchTheirFiles) {
  auto names = BuiltinProfileNames();
  ASSERT_EQ(names.size(), 6u);
  for (const auto& name : names) {
    SCOPED_TRACE(name);
    auto p = LoadProfile(name);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    EXPECT_EQ(p->name, name);
    // The embedded copy is the file in profiles/ (the build re-embeds on change).
    auto from_file = LoadProfile(ProfilesDir() + "/" + name + ".json");
    ASSERT_TRUE(from_file.ok()) << from_file.status().ToString();
    EXPECT_EQ(from_file->memory_budget_bytes, p->memory_budget_bytes);
    EXPECT_EQ(from_file->max_buffer_bytes, p->max_buffer_bytes);
    // Every number has a stated source.
    EXPECT_TRUE(p->notes.count("memory_budget_bytes")) << "notes.memory_budget_bytes missing";
    EXPECT_TRUE(p->notes.count("max_buffer_bytes")) << "notes.max_buffer_bytes missing";
  }
}

TEST(ProfileTest, BuiltinValues) {
  auto chrome = LoadProfile("Chrome");  // case-insensitive
  ASSERT_TRUE(chrome.ok());
  EXPECT_EQ(chrome->memory_budget_bytes, 3584ull << 20);  // 3.5 GiB of the 4 GiB wasm32 cap
  EXPECT_EQ(chrome->max_buffer_bytes, 256ull << 20);
  EXPECT_EQ(chrome->threads, 0);  // auto
  EXPECT_EQ(chrome->engine_weight_type(), "q4_0");
  EXPECT_DOUBLE_EQ(chrome->pressure_warning, 0.7);
  auto safari = LoadProfile("safari");
  ASSERT_TRUE(safari.ok());
  EXPECT_LT(safari->memory_budget_bytes, chrome->memory_budget_bytes);
  EXPECT_TRUE(safari->wasm_fallback);
  auto mobile = LoadProfile("mobile");
  ASSERT_TRUE(mobile.ok());
  EXPECT_EQ(mobile->threads, 2);
  EXPECT_LT(mobile->memory_budget_bytes, safari->memory_budget_bytes);
  auto custom = LoadProfile("custom");
  ASSERT_TRUE(custom.ok());
  EXPECT_EQ(custom->memory_budget_bytes, 0u);
  EXPECT_EQ(custom->engine_weight_type(), "");
}

TEST(ProfileTest, UnknownNameListsBuiltins) {
  auto p = LoadProfile("netscape");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), StatusCode::kNotFound);
  EXPECT_NE(p.status().message().find("chrome"), std::string::npos);
  EXPECT_NE(p.status().message().find("safari"), std::string::npos);
}

TEST(ProfileTest, LoadsUserFileByPath) {
  json j = ChromeJson();
  j["name"] = "mine";
  j["memory_budget_bytes"] = 1000000000;
  j["threads"] = 3;
  auto path = std::filesystem::temp_directory_path() / "tabfit_profile_test_mine.json";
  { std::ofstream(path) << j.dump(2); }
  auto p = LoadProfile(path.string());
  std::filesystem::remove(path);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "mine");
  EXPECT_EQ(p->memory_budget_bytes, 1000000000u);
  EXPECT_EQ(p->threads, 3);

  auto missing = LoadProfile("/nonexistent/dir/x.json");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/x.json"), std::string::npos);
}

TEST(ProfileTest, InvalidJsonSaysWhere) {
  auto p = ParseProfile("{\"name\": \"x\",, }", "bad.json");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("bad.json"), std::string::npos);
  EXPECT_NE(p.status().message().find("byte"), std::string::npos);
  EXPECT_FALSE(ParseProfile("[1,2]").ok());
  EXPECT_FALSE(ParseProfile("").ok());
}

TEST(ProfileTest, RejectsBadFields) {
  json j = ChromeJson();
  j["memory_budget_bytes"] = -5;
  Status s = ParseError(j);
  EXPECT_NE(s.message().find("memory_budget_bytes"), std::string::npos);
  EXPECT_NE(s.message().find("negative"), std::string::npos);

  j = ChromeJson();
  j["memory_budget_bytes"] = "lots";
  s = ParseError(j);
  EXPECT_NE(s.message().find("type string"), std::string::npos) << s.message();

  j = ChromeJson();
  j["max_buffer_bytes"] = 1.5;
  s = ParseError(j);
  EXPECT_NE(s.message().find("max_buffer_bytes"), std::string::npos);

  j = ChromeJson();
  j["max_buffer_bytes"] = 0;
  EXPECT_NE(ParseError(j).message().find(">= 4096"), std::string::npos);

  j = ChromeJson();
  j["simd"] = "yes";
  EXPECT_NE(ParseError(j).message().find("'simd'"), std::string::npos);

  j = ChromeJson();
  j["threads"] = "many";
  EXPECT_NE(ParseError(j).message().find("threads"), std::string::npos);
  j["threads"] = 0;
  EXPECT_NE(ParseError(j).message().find("threads"), std::string::npos);

  j = ChromeJson();
  j["weight_precision"] = "q5_k";
  EXPECT_NE(ParseError(j).message().find("q4_0"), std::string::npos);

  j = ChromeJson();
  j["kv_precision"] = "f8";
  EXPECT_NE(ParseError(j).message().find("kv_precision"), std::string::npos);

  j = ChromeJson();
  j["budget"] = 5;  // typo for memory_budget_bytes
  s = ParseError(j);
  EXPECT_NE(s.message().find("unknown field 'budget'"), std::string::npos) << s.message();

  j = ChromeJson();
  j.erase("max_context");
  EXPECT_NE(ParseError(j).message().find("'max_context' is missing"), std::string::npos);

  j = ChromeJson();
  j["notes"]["x"] = 3;
  EXPECT_NE(ParseError(j).message().find("notes.x"), std::string::npos);

  j = ChromeJson();
  j["name"] = "Bad Name";
  EXPECT_NE(ParseError(j).message().find("name"), std::string::npos);
}

TEST(ProfileTest, RejectsThresholdsOutOfOrderOrRange) {
  json j = ChromeJson();
  j["pressure"] = {{"warning", 0.9}, {"critical", 0.8}, {"emergency", 0.95}};
  Status s = ParseError(j);
  EXPECT_NE(s.message().find("out of order"), std::string::npos) << s.message();

  j = ChromeJson();
  j["pressure"]["emergency"] = 1.5;
  EXPECT_NE(ParseError(j).message().find("pressure.emergency"), std::string::npos);

  j = ChromeJson();
  j["pressure"]["panic"] = 0.99;
  EXPECT_NE(ParseError(j).message().find("pressure.panic"), std::string::npos);

  j = ChromeJson();
  j["load_threshold"] = 0.95;
  j["unload_threshold"] = 0.5;
  EXPECT_NE(ParseError(j).message().find("load_threshold"), std::string::npos);

  j = ChromeJson();
  j["unload_threshold"] = 0;
  EXPECT_NE(ParseError(j).message().find("(0, 1]"), std::string::npos);
}

TEST(ProfileTest, BytesPerWeight) {
  EXPECT_DOUBLE_EQ(BytesPerWeight("f32"), 4.0);
  EXPECT_DOUBLE_EQ(BytesPerWeight("f16"), 2.0);
  EXPECT_DOUBLE_EQ(BytesPerWeight("q8_0"), 34.0 / 32.0);
  EXPECT_DOUBLE_EQ(BytesPerWeight("q4_0"), 18.0 / 32.0);
  EXPECT_EQ(BytesPerWeight("keep"), 0.0);
  EXPECT_EQ(BytesPerWeight("nonsense"), 0.0);
}

TEST(ProfileTest, CheckPlanAcceptsWhatFits) {
  auto chrome = LoadProfile("chrome").value();
  std::string advice;
  EXPECT_TRUE(CheckPlan(chrome, 2ull << 30, 256ull << 20, 64ull << 20, &advice).ok());
  EXPECT_NE(advice.find("chrome"), std::string::npos);
  EXPECT_NE(advice.find("%"), std::string::npos);
  // Exactly the budget fits; one byte more does not.
  EXPECT_TRUE(CheckPlan(chrome, chrome.memory_budget_bytes, 0, 0, nullptr).ok());
  EXPECT_FALSE(CheckPlan(chrome, chrome.memory_budget_bytes, 1, 0, nullptr).ok());
  // No budget: anything fits.
  auto custom = LoadProfile("custom").value();
  EXPECT_TRUE(CheckPlan(custom, 100ull << 30, 10ull << 30, 0, &advice).ok());
}

TEST(ProfileTest, CheckPlanRefusesAndSaysWhatFits) {
  auto safari = LoadProfile("safari").value();  // 1.5 GiB
  // A 1.1B model in f16: 2.2 GB of weights.
  PlanRequest plan;
  plan.n_params = 1100000000;
  plan.weight_precision = "f16";
  plan.weight_bytes = 2 * plan.n_params;
  plan.kv_bytes = 44ull << 20;
  plan.activation_bytes = 32ull << 20;
  plan.n_ctx = 2048;
  std::string advice;
  Status s = CheckPlan(safari, plan, &advice);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOutOfMemory);
  EXPECT_EQ(s.message(), advice);
  EXPECT_NE(advice.find("needs 2.1 GiB"), std::string::npos) << advice;
  EXPECT_NE(advice.find("safari profile allows 1.5 GiB"), std::string::npos) << advice;
  // q8_0 = 1.17 GB + 76 MiB fits 1.5 GiB: the most accurate precision that fits is named.
  EXPECT_NE(advice.find("--weight-type q8_0"), std::string::npos) << advice;
  EXPECT_NE(advice.find("--profile chrome"), std::string::npos) << advice;

  // Weight count derived from bytes + precision when n_params is absent.
  plan.n_params = 0;
  s = CheckPlan(safari, plan, &advice);
  EXPECT_NE(advice.find("--weight-type q8_0"), std::string::npos) << advice;

  // A KV cache that is too large: a shorter context fits.
  PlanRequest kv;
  kv.weight_bytes = 1ull << 30;
  kv.kv_bytes = 1ull << 30;  // 8192 tokens x 128 KiB
  kv.n_ctx = 8192;
  s = CheckPlan(safari, kv, &advice);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(advice.find("--ctx-size 4096"), std::string::npos) << advice;  // (1.5 GiB - 1 GiB) / 128 KiB
}

TEST(ProfileTest, CheckPlanWithNothingThatFits) {
  auto mobile = LoadProfile("mobile").value();
  std::string advice;
  // 70B parameters: no precision, no profile fits.
  PlanRequest plan;
  plan.n_params = 70000000000ull;
  plan.weight_precision = "q4_0";
  plan.weight_bytes = static_cast<uint64_t>(plan.n_params * BytesPerWeight("q4_0"));
  Status s = CheckPlan(mobile, plan, &advice);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(advice.find("smaller model"), std::string::npos) << advice;
}

}  // namespace
}  // namespace tabfit
