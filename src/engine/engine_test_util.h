// Helpers shared by the engine's tests: two-thread options, greedy token runs,
// a fresh engine's reference tokens, a file's bytes.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace tabfit::testing {

inline EngineOptions TwoThreadOptions() {
  EngineOptions o;
  o.threads = 2;
  return o;
}

inline std::vector<uint8_t> ReadAll(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return std::vector<uint8_t>((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

// n greedy tokens after `prompt` (EOS does not stop). A failure is stored in
// *status when given, else it fails the test.
inline std::vector<int32_t> Greedy(Engine& e, const std::string& prompt, int n, GenerateStats* stats = nullptr,
                                   Status* status = nullptr) {
  GenerateOptions go;
  go.max_tokens = n;
  go.sampler.temperature = 0;
  go.stop_at_eos = false;
  std::vector<int32_t> ids;
  Status s = e.Generate(prompt, go, [&](const std::string&, int32_t id) {
    if (id >= 0) ids.push_back(id);
    return true;
  }, stats);
  if (status) *status = s;
  else EXPECT_TRUE(s.ok()) << s.ToString();
  return ids;
}

// The tokens a freshly loaded, fully resident engine gives (the engine is freed after).
inline std::vector<int32_t> ReferenceTokens(const std::string& model, const std::string& prompt, int n) {
  auto e = Engine::LoadFile(model, TwoThreadOptions());
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return {};
  return Greedy(**e, prompt, n);
}

}  // namespace tabfit::testing
