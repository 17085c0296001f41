// Helpers shared by tabfit tests: where ../shared lives, skipping when absent.
#pragma once

#include <cstdlib>
#include <filesystem>
#include <string>

namespace tabfit::testing {

// ../shared (CI has it beside the clone); TABFIT_SHARED_DIR overrides.
inline std::string SharedDir() {
  if (const char* env = std::getenv("TABFIT_SHARED_DIR")) return env;
#ifdef TABFIT_SHARED_DIR_DEFAULT
  return TABFIT_SHARED_DIR_DEFAULT;
#else
  return "../shared";
#endif
}

inline std::string SharedModel(const std::string& name) { return SharedDir() + "/models/" + name; }

inline std::string SourceDir() {
#ifdef TABFIT_SOURCE_DIR
  return TABFIT_SOURCE_DIR;
#else
  return ".";
#endif
}

// The bundled default model, committed in the repo.
inline std::string DemoModel() { return SourceDir() + "/models/tabfit-demo-8m-f16.gguf"; }

}  // namespace tabfit::testing

// Skips the current test, saying which file is missing, when `path` is absent.
#define TABFIT_REQUIRE_FILE(path)                                                          \
  do {                                                                                     \
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "missing " << (path)               \
                                                     << " (../shared not present); skipped"; \
  } while (0)
