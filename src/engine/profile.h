// tabfit engine: browser profiles — how much memory, how large a buffer, how
// many threads and which precisions one class of browser can afford.
//
// The data lives in profiles/*.json (schema: profiles/schema.json; each number
// has its source in the file's "notes"). The built-in profiles are embedded in
// the binary at build time, so `--profile safari` works from any directory;
// a path ("./my.json", anything containing '/' or ending in ".json") loads a
// user file instead.
//
// Ownership: plain values. Thread-safety: all functions are pure / reentrant.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tabfit {

struct BrowserProfile {
  std::string name;
  std::string description;
  uint64_t memory_budget_bytes = 0;   // ledger budget; 0 = unlimited
  uint64_t max_buffer_bytes = 1ull << 30;
  int threads = 0;                    // 0 = "auto" (hardware concurrency)
  bool simd = true;
  bool wasm_fallback = false;
  std::string weight_precision = "keep";  // "keep", "f32", "f16", "bf16", "q8_0", "q4_0", "tf_q8".."tf_q2"
  std::string kv_precision = "f16";       // "f32", "f16", "q8_0", "q4_0", "mixed" (kv/kv_factory.h)
  double load_threshold = 0.25;       // fractions of memory_budget_bytes
  double unload_threshold = 0.9;
  double pressure_warning = 0.7;
  double pressure_critical = 0.85;
  double pressure_emergency = 0.95;
  int max_context = 0;                // 0 = the model's
  std::map<std::string, std::string> notes;  // field -> where its value comes from

  // Weight type for EngineOptions::weight_type ("" for "keep").
  std::string engine_weight_type() const { return weight_precision == "keep" ? "" : weight_precision; }
};

// Names of the profiles compiled into the binary ("chrome", "edge", ...).
std::vector<std::string> BuiltinProfileNames();

// The embedded JSON text of a built-in profile, or NotFound.
Result<std::string> BuiltinProfileJson(std::string_view name);

// Parses and validates one profile. Errors name the field and why: unknown
// field, wrong type, negative or zero sizes, thresholds outside (0, 1] or out
// of order (warning < critical < emergency; load < unload).
// `origin` (file name or "built-in chrome") prefixes every message.
Result<BrowserProfile> ParseProfile(const std::string& json, std::string_view origin = "profile");

// A built-in name (case-insensitive) or a path to a JSON file.
Result<BrowserProfile> LoadProfile(std::string_view name_or_path);

// Bytes per weight of a precision name ("q4_0" -> 18/32 = 0.5625), 0 if unknown
// (or "keep").
double BytesPerWeight(std::string_view precision);

// What a plan needs. Only the byte counts are required; the rest improves advice.
struct PlanRequest {
  uint64_t weight_bytes = 0;
  uint64_t kv_bytes = 0;
  uint64_t activation_bytes = 0;
  uint64_t n_params = 0;          // weight count, to say what other precisions would need (0: unknown)
  int n_ctx = 0;                  // context the kv_bytes were computed for (0: unknown)
  std::string weight_precision;   // precision weight_bytes is in ("" unknown)
};

// Ok when weights + KV + activations fit the profile's budget (always when the
// budget is 0). Otherwise OutOfMemory whose message (also written to *advice
// when non-null) says what is needed, what the profile allows, and what would
// fit: smaller weight precisions, a shorter context, another built-in profile.
// On success *advice gets a one-line summary ("2.9 GiB of 3.5 GiB (83%)").
Status CheckPlan(const BrowserProfile& profile, const PlanRequest& plan, std::string* advice);
Status CheckPlan(const BrowserProfile& profile, uint64_t weight_bytes, uint64_t kv_bytes,
                 uint64_t activation_bytes, std::string* advice);

}  // namespace tabfit
