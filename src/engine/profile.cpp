#include "engine/profile.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include <nlohmann/json.hpp>

#include "core/ledger.h"
#include "quant/types.h"

namespace tabfit {

namespace detail {
// Generated at build time from profiles/*.json (profile_data.cpp.in).
struct EmbeddedProfile {
  const char* name;
  const char* json;
};
extern const EmbeddedProfile kEmbeddedProfiles[];
extern const size_t kEmbeddedProfileCount;
}  // namespace detail

namespace {

using nlohmann::json;

const char* const kKnownFields[] = {"name",           "description",    "memory_budget_bytes", "max_buffer_bytes",
                                    "threads",        "simd",           "wasm_fallback",       "weight_precision",
                                    "kv_precision",   "load_threshold", "unload_threshold",    "pressure",
                                    "max_context",    "notes",          "$schema"};
const char* const kRequiredFields[] = {"name",           "memory_budget_bytes", "max_buffer_bytes", "threads",
                                       "simd",           "wasm_fallback",       "weight_precision", "kv_precision",
                                       "load_threshold", "unload_threshold",    "pressure",         "max_context"};
const char* const kWeightPrecisions[] = {"keep",  "f32",   "f16",   "bf16",  "q8_0",
                                         "q4_0",  "tf_q8", "tf_q4", "tf_q3", "tf_q2"};
const char* const kKvPrecisions[] = {"f32", "f16", "q8_0", "q4_0", "mixed"};

std::string TypeName(const json& v) {
  if (v.is_number_integer()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

template <size_t N>
std::string JoinList(const char* const (&items)[N]) {
  std::string out;
  for (size_t i = 0; i < N; ++i) {
    if (i) out += ", ";
    out += items[i];
  }
  return out;
}

template <size_t N>
bool InList(const char* const (&items)[N], const std::string& s) {
  for (const char* it : items)
    if (s == it) return true;
  return false;
}

// Field readers: each returns an error that names the field and the fix.
class Reader {
 public:
  explicit Reader(std::string origin) : origin_(std::move(origin)) {}

  Status Error(const std::string& field, const std::string& why) const {
    return InvalidArgument(origin_ + ": field '" + field + "' " + why + " (see profiles/schema.json)");
  }

  Status Uint(const json& v, const std::string& field, uint64_t min, uint64_t* out) const {
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (d < 0) return Error(field, "is negative (" + v.dump() + "); it must be a byte count >= " + std::to_string(min));
      return Error(field, "is " + v.dump() + "; it must be a whole number of bytes");
    }
    if (!v.is_number_integer()) return Error(field, "has type " + TypeName(v) + "; expected an integer");
    if (v.is_number_unsigned()) {
      *out = v.get<uint64_t>();
    } else {
      int64_t i = v.get<int64_t>();
      if (i < 0) return Error(field, "is negative (" + std::to_string(i) + "); it must be >= " + std::to_string(min));
      *out = static_cast<uint64_t>(i);
    }
    if (*out < min) return Error(field, "is " + std::to_string(*out) + "; it must be >= " + std::to_string(min));
    return Status::Ok();
  }

  Status Fraction(const json& v, const std::string& field, double* out) const {
    if (!v.is_number()) return Error(field, "has type " + TypeName(v) + "; expected a number in (0, 1]");
    *out = v.get<double>();
    if (!(*out > 0.0 && *out <= 1.0))
      return Error(field, "is " + v.dump() + "; it must be a fraction of the budget in (0, 1]");
    return Status::Ok();
  }

  Status String(const json& v, const std::string& field, std::string* out) const {
    if (!v.is_string()) return Error(field, "has type " + TypeName(v) + "; expected a string");
    *out = v.get<std::string>();
    return Status::Ok();
  }

  Status Bool(const json& v, const std::string& field, bool* out) const {
    if (!v.is_boolean()) return Error(field, "has type " + TypeName(v) + "; expected true or false");
    *out = v.get<bool>();
    return Status::Ok();
  }

 private:
  std::string origin_;
};

Status ParseInto(const json& root, const std::string& origin, BrowserProfile* p) {
  if (!root.is_object())
    return InvalidArgument(origin + ": a profile must be a JSON object, got " + TypeName(root));
  Reader r(origin);
  for (auto it = root.begin(); it != root.end(); ++it) {
    if (!InList(kKnownFields, it.key()))
      return InvalidArgument(origin + ": unknown field '" + it.key() + "'; known fields: " + JoinList(kKnownFields));
  }
  for (const char* f : kRequiredFields) {
    if (!root.contains(f)) return r.Error(f, "is missing; every profile sets it");
  }

  TF_RETURN_IF_ERROR(r.String(root["name"], "name", &p->name));
  if (p->name.empty() || !std::all_of(p->name.begin(), p->name.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
      }))
    return r.Error("name", "is '" + p->name + "'; use lower-case letters, digits, '_' and '-'");
  if (root.contains("description")) TF_RETURN_IF_ERROR(r.String(root["description"], "description", &p->description));

  TF_RETURN_IF_ERROR(r.Uint(root["memory_budget_bytes"], "memory_budget_bytes", 0, &p->memory_budget_bytes));
  TF_RETURN_IF_ERROR(r.Uint(root["max_buffer_bytes"], "max_buffer_bytes", 4096, &p->max_buffer_bytes));

  const json& th = root["threads"];
  if (th.is_string()) {
    if (th.get<std::string>() != "auto") return r.Error("threads", "is " + th.dump() + "; expected \"auto\" or 1..256");
    p->threads = 0;
  } else {
    uint64_t n = 0;
    TF_RETURN_IF_ERROR(r.Uint(th, "threads", 1, &n));
    if (n > 256) return r.Error("threads", "is " + std::to_string(n) + "; at most 256");
    p->threads = static_cast<int>(n);
  }

  TF_RETURN_IF_ERROR(r.Bool(root["simd"], "simd", &p->simd));
  TF_RETURN_IF_ERROR(r.Bool(root["wasm_fallback"], "wasm_fallback", &p->wasm_fallback));

  TF_RETURN_IF_ERROR(r.String(root["weight_precision"], "weight_precision", &p->weight_precision));
  if (!InList(kWeightPrecisions, p->weight_precision))
    return r.Error("weight_precision", "is '" + p->weight_precision + "'; one of " + JoinList(kWeightPrecisions));
  TF_RETURN_IF_ERROR(r.String(root["kv_precision"], "kv_precision", &p->kv_precision));
  if (!InList(kKvPrecisions, p->kv_precision))
    return r.Error("kv_precision", "is '" + p->kv_precision + "'; one of " + JoinList(kKvPrecisions));

  TF_RETURN_IF_ERROR(r.Fraction(root["load_threshold"], "load_threshold", &p->load_threshold));
  TF_RETURN_IF_ERROR(r.Fraction(root["unload_threshold"], "unload_threshold", &p->unload_threshold));
  if (!(p->load_threshold < p->unload_threshold))
    return InvalidArgument(origin + ": thresholds out of order: load_threshold " + std::to_string(p->load_threshold) +
                           " must be below unload_threshold " + std::to_string(p->unload_threshold));

  const json& pr = root["pressure"];
  if (!pr.is_object()) return r.Error("pressure", "has type " + TypeName(pr) + "; expected {warning, critical, emergency}");
  for (auto it = pr.begin(); it != pr.end(); ++it) {
    if (it.key() != "warning" && it.key() != "critical" && it.key() != "emergency")
      return InvalidArgument(origin + ": unknown field 'pressure." + it.key() + "'; known: warning, critical, emergency");
  }
  for (const char* f : {"warning", "critical", "emergency"})
    if (!pr.contains(f)) return r.Error(std::string("pressure.") + f, "is missing");
  TF_RETURN_IF_ERROR(r.Fraction(pr["warning"], "pressure.warning", &p->pressure_warning));
  TF_RETURN_IF_ERROR(r.Fraction(pr["critical"], "pressure.critical", &p->pressure_critical));
  TF_RETURN_IF_ERROR(r.Fraction(pr["emergency"], "pressure.emergency", &p->pressure_emergency));
  if (!(p->pressure_warning < p->pressure_critical && p->pressure_critical < p->pressure_emergency))
    return InvalidArgument(origin + ": pressure thresholds out of order: need warning < critical < emergency, got " +
                           pr["warning"].dump() + ", " + pr["critical"].dump() + ", " + pr["emergency"].dump());

  uint64_t ctx = 0;
  TF_RETURN_IF_ERROR(r.Uint(root["max_context"], "max_context", 0, &ctx));
  if (ctx > (1u << 24)) return r.Error("max_context", "is " + std::to_string(ctx) + "; at most 16777216 tokens");
  p->max_context = static_cast<int>(ctx);

  if (root.contains("notes")) {
    const json& n = root["notes"];
    if (!n.is_object()) return r.Error("notes", "has type " + TypeName(n) + "; expected an object of strings");
    for (auto it = n.begin(); it != n.end(); ++it) {
      if (!it.value().is_string()) return r.Error("notes." + it.key(), "has type " + TypeName(it.value()) + "; expected a string");
      p->notes[it.key()] = it.value().get<std::string>();
    }
  }
  return Status::Ok();
}

bool LooksLikePath(std::string_view s) {
  return s.find('/') != std::string_view::npos || s.find('\\') != std::string_view::npos ||
         (s.size() > 5 && s.substr(s.size() - 5) == ".json");
}

std::string Gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", bytes / double(1ull << 30));
  return buf;
}

std::string Sized(uint64_t bytes) { return bytes >= (1ull << 30) ? Gib(bytes) : FormatBytes(bytes); }

}  // namespace

std::vector<std::string> BuiltinProfileNames() {
  std::vector<std::string> names;
  for (size_t i = 0; i < detail::kEmbeddedProfileCount; ++i) names.push_back(detail::kEmbeddedProfiles[i].name);
  return names;
}

Result<std::string> BuiltinProfileJson(std::string_view name) {
  std::string lower = Lower(name);
  for (size_t i = 0; i < detail::kEmbeddedProfileCount; ++i)
    if (lower == detail::kEmbeddedProfiles[i].name) return std::string(detail::kEmbeddedProfiles[i].json);
  std::string known;
  for (const auto& n : BuiltinProfileNames()) known += (known.empty() ? "" : ", ") + n;
  return NotFound("no built-in profile named '" + std::string(name) + "'; built-in profiles: " + known +
                  "; or pass a path to a JSON file (see profiles/schema.json)");
}

Result<BrowserProfile> ParseProfile(const std::string& text, std::string_view origin) {
  std::string where(origin);
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return InvalidArgument(where + ": not valid JSON at byte " + std::to_string(e.byte) + ": " + e.what());
  } catch (const std::exception& e) {
    return InvalidArgument(where + ": not valid JSON: " + e.what());
  }
  BrowserProfile p;
  try {
    TF_RETURN_IF_ERROR(ParseInto(root, where, &p));
  } catch (const std::exception& e) {  // nlohmann type errors we did not foresee
    return InvalidArgument(where + ": " + e.what());
  }
  return p;
}

Result<BrowserProfile> LoadProfile(std::string_view name_or_path) {
  if (name_or_path.empty())
    return InvalidArgument("empty profile name; use one of the built-in names or a path to a JSON file");
  if (!LooksLikePath(name_or_path)) {
    TF_ASSIGN_OR_RETURN(std::string text, BuiltinProfileJson(name_or_path));
    return ParseProfile(text, "built-in profile '" + Lower(name_or_path) + "'");
  }
  std::string path(name_or_path);
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound(path + ": cannot open profile file (check the path; built-in names need no path)");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return IoError(path + ": read failed");
  return ParseProfile(ss.str(), path);
}

double BytesPerWeight(std::string_view precision) {
  std::string p = Lower(precision);
  if (p == "f32") return 4.0;
  if (p == "f16" || p == "bf16") return 2.0;
  TensorType t;
  if (p == "q8_0") t = TensorType::kQ8_0;
  else if (p == "q4_0") t = TensorType::kQ4_0;
  else if (p == "tf_q8") t = TensorType::kTF_Q8;
  else if (p == "tf_q4") t = TensorType::kTF_Q4;
  else if (p == "tf_q3") t = TensorType::kTF_Q3;
  else if (p == "tf_q2") t = TensorType::kTF_Q2;
  else return 0.0;
  int64_t elems = 0, bytes = 0;
  if (!TensorTypeGeometry(static_cast<uint32_t>(t), &elems, &bytes) || elems <= 0) return 0.0;
  return double(bytes) / double(elems);
}

Status CheckPlan(const BrowserProfile& profile, const PlanRequest& plan, std::string* advice) {
  const uint64_t budget = profile.memory_budget_bytes;
  const uint64_t need = plan.weight_bytes + plan.kv_bytes + plan.activation_bytes;
  auto percent = [](uint64_t a, uint64_t b) { return b ? int(std::lround(100.0 * a / b)) : 0; };
  if (budget == 0 || need <= budget) {
    if (advice) {
      *advice = budget == 0 ? Sized(need) + " needed; the " + profile.name + " profile has no budget limit"
                            : Sized(need) + " of " + Sized(budget) + " (" + std::to_string(percent(need, budget)) +
                                  "%) of the " + profile.name + " profile's budget";
    }
    return Status::Ok();
  }

  std::string msg = "needs " + Sized(need) + " (weights " + Sized(plan.weight_bytes) + ", KV cache " +
                    Sized(plan.kv_bytes) + ", activations " + Sized(plan.activation_bytes) + ") but the " +
                    profile.name + " profile allows " + Sized(budget);
  std::vector<std::string> fixes;
  const uint64_t rest = plan.kv_bytes + plan.activation_bytes;

  // Smaller weight precisions, when the weight count is known.
  uint64_t n_params = plan.n_params;
  if (n_params == 0 && !plan.weight_precision.empty()) {
    double bpw = BytesPerWeight(plan.weight_precision);
    if (bpw > 0) n_params = static_cast<uint64_t>(plan.weight_bytes / bpw);
  }
  if (n_params > 0 && rest < budget) {
    for (const char* prec : {"q8_0", "tf_q8", "q4_0", "tf_q4", "tf_q3", "tf_q2"}) {
      double bpw = BytesPerWeight(prec);
      if (bpw <= 0) continue;
      uint64_t w = static_cast<uint64_t>(std::ceil(n_params * bpw));
      if (w >= plan.weight_bytes) continue;
      if (w + rest <= budget) {
        fixes.push_back(std::string(prec) + " weights (" + Sized(w) + ") would fit: use --weight-type " + prec);
        break;  // the largest (most accurate) precision that fits
      }
    }
  }
  // A shorter context, when the KV cache is per token.
  if (plan.n_ctx > 0 && plan.kv_bytes > 0 && plan.weight_bytes + plan.activation_bytes < budget) {
    double per_token = double(plan.kv_bytes) / plan.n_ctx;
    uint64_t room = budget - plan.weight_bytes - plan.activation_bytes;
    int ctx = static_cast<int>(room / per_token);
    ctx = ctx / 256 * 256;
    if (ctx >= 256 && ctx < plan.n_ctx)
      fixes.push_back("a context of " + std::to_string(ctx) + " tokens would fit: use --ctx-size " + std::to_string(ctx));
  }
  if (profile.kv_precision == "f32" && plan.kv_bytes > 0 && need - plan.kv_bytes / 2 <= budget)
    fixes.push_back("an f16 KV cache would fit: use --kv-type f16");
  // Another built-in profile with a larger budget.
  for (const auto& name : BuiltinProfileNames()) {
    if (name == profile.name) continue;
    auto other = LoadProfile(name);
    if (!other.ok()) continue;
    uint64_t b = other->memory_budget_bytes;
    if (b != 0 && need <= b) {
      fixes.push_back("the " + name + " profile (" + Sized(b) + ") would fit: use --profile " + name);
      break;
    }
  }
  if (fixes.empty()) {
    msg += "; nothing tabfit can change fits this budget: use a smaller model";
  } else {
    msg += "; ";
    for (size_t i = 0; i < fixes.size(); ++i) msg += (i ? "; or " : "") + fixes[i];
  }
  if (advice) *advice = msg;
  return OutOfMemory(msg);
}

Status CheckPlan(const BrowserProfile& profile, uint64_t weight_bytes, uint64_t kv_bytes, uint64_t activation_bytes,
                 std::string* advice) {
  PlanRequest plan;
  plan.weight_bytes = weight_bytes;
  plan.kv_bytes = kv_bytes;
  plan.activation_bytes = activation_bytes;
  return CheckPlan(profile, plan, advice);
}

}  // namespace tabfit
