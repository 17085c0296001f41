#include "eval/precision.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "quant/kernels.h"

namespace tabfit {

namespace {

struct RoleEntry {
  TensorRole role;
  const char* readable;
  const char* gguf;  // part between "blk.N." and ".weight" (or the whole stem)
};
constexpr RoleEntry kRoles[] = {
    {TensorRole::kEmbeddings, "embeddings", "token_embd"},  {TensorRole::kLmHead, "lm_head", "output"},
    {TensorRole::kAttnQuery, "attention.query", "attn_q"},  {TensorRole::kAttnKey, "attention.key", "attn_k"},
    {TensorRole::kAttnValue, "attention.value", "attn_v"},  {TensorRole::kAttnOutput, "attention.output", "attn_output"},
    {TensorRole::kMlpGate, "mlp.gate", "ffn_gate"},         {TensorRole::kMlpUp, "mlp.up", "ffn_up"},
    {TensorRole::kMlpDown, "mlp.down", "ffn_down"},
};

const std::vector<TensorRole> kAttention = {TensorRole::kAttnQuery, TensorRole::kAttnKey, TensorRole::kAttnValue,
                                            TensorRole::kAttnOutput};
const std::vector<TensorRole> kMlp = {TensorRole::kMlpGate, TensorRole::kMlpUp, TensorRole::kMlpDown};

bool IsAttention(TensorRole r) { return std::find(kAttention.begin(), kAttention.end(), r) != kAttention.end(); }
bool IsMlp(TensorRole r) { return std::find(kMlp.begin(), kMlp.end(), r) != kMlp.end(); }

std::string Lower(std::string_view s) {
  std::string o(s);
  for (char& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size() && *out >= 0;
}

const char* kPatternHelp =
    "use embeddings, lm_head, attention[.query|.key|.value|.output], mlp[.gate|.up|.down] (alias feed_forward), "
    "optionally prefixed by layers.N. / layers.A-B. / layers.*., or layers.A-B alone, or an exact GGUF tensor name "
    "such as blk.0.ffn_down.weight";

}  // namespace

std::optional<TensorId> IdentifyTensor(std::string_view name) {
  if (name == "token_embd.weight") return TensorId{TensorRole::kEmbeddings, -1};
  if (name == "output.weight") return TensorId{TensorRole::kLmHead, -1};
  if (name.substr(0, 4) != "blk.") return std::nullopt;
  std::string_view rest = name.substr(4);
  size_t dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  int layer = 0;
  if (!ParseInt(rest.substr(0, dot), &layer)) return std::nullopt;
  std::string_view stem = rest.substr(dot + 1);
  constexpr std::string_view kSuffix = ".weight";
  if (stem.size() <= kSuffix.size() || stem.substr(stem.size() - kSuffix.size()) != kSuffix) return std::nullopt;
  stem = stem.substr(0, stem.size() - kSuffix.size());
  for (const auto& e : kRoles) {
    if (e.role != TensorRole::kEmbeddings && e.role != TensorRole::kLmHead && stem == e.gguf) {
      return TensorId{e.role, layer};
    }
  }
  return std::nullopt;
}

std::string_view RoleName(TensorRole role) {
  for (const auto& e : kRoles) {
    if (e.role == role) return e.readable;
  }
  return "?";
}

std::string ReadableTensorName(std::string_view gguf_name) {
  auto id = IdentifyTensor(gguf_name);
  if (!id) return "";
  if (id->layer < 0) return std::string(RoleName(id->role));
  return "layers." + std::to_string(id->layer) + "." + std::string(RoleName(id->role));
}

Result<TensorType> BitsToType(int bits, BitsFamily family) {
  switch (bits) {
    case 32: return TensorType::kF32;
    case 16: return TensorType::kF16;
    case 8: return family == BitsFamily::kTf ? TensorType::kTF_Q8 : TensorType::kQ8_0;
    case 4: return family == BitsFamily::kTf ? TensorType::kTF_Q4 : TensorType::kQ4_0;
    case 3: return TensorType::kTF_Q3;
    case 2: return TensorType::kTF_Q2;
    default:
      return InvalidArgument(std::to_string(bits) +
                             " bits is not a storage precision; use 2, 3, 4, 8, 16 or 32 (or a type name such as "
                             "q8_0, q4_0, tf_q3)");
  }
}

Result<TensorType> ParseTypeName(std::string_view name) {
  static const std::pair<const char*, TensorType> kTypes[] = {
      {"f32", TensorType::kF32},     {"f16", TensorType::kF16},     {"bf16", TensorType::kBF16},
      {"q8_0", TensorType::kQ8_0},   {"q4_0", TensorType::kQ4_0},   {"tf_q8", TensorType::kTF_Q8},
      {"tf_q4", TensorType::kTF_Q4}, {"tf_q3", TensorType::kTF_Q3}, {"tf_q2", TensorType::kTF_Q2},
      {"tf_q2r", TensorType::kTF_Q2R},   {"tf_q2s", TensorType::kTF_Q2S}, {"tf_q2sr", TensorType::kTF_Q2SR},
  };
  std::string n = Lower(name);
  for (auto& [s, t] : kTypes) {
    if (n == s) return t;
  }
  return InvalidArgument("unknown type '" + std::string(name) +
                         "'; use f32, f16, bf16, q8_0, q4_0, tf_q8, tf_q4, tf_q3, tf_q2, tf_q2r, tf_q2s, tf_q2sr or a bit count");
}

std::string TypeNameLower(TensorType t) { return Lower(TensorTypeName(t)); }

Status CheckTypeUsable(TensorType t, std::string_view context) {
  if (t == TensorType::kF32 || t == TensorType::kF16 || t == TensorType::kBF16) {
    if (IsSupported(t)) return Status::Ok();
  }
  if (!IsSupported(t) || !CanQuantize(t)) {
    return Unsupported(std::string(context) + ": type " + TypeNameLower(t) +
                       " has no quantizer/kernels in this build; pick another type (q8_0, q4_0, f16)");
  }
  return Status::Ok();
}

Result<TensorType> ParseBitsOrType(std::string_view value, BitsFamily family) {
  int bits = 0;
  if (ParseInt(value, &bits)) return BitsToType(bits, family);
  return ParseTypeName(value);
}

Status PrecisionPlan::AddRule(const std::string& pattern, TensorType type) {
  Rule r;
  r.pattern = pattern;
  r.type = type;
  if (IdentifyTensor(pattern)) {
    r.exact = pattern;
    rules.push_back(std::move(r));
    return Status::Ok();
  }
  std::string_view p = pattern;
  if (p.substr(0, 7) == "layers.") {
    std::string_view rest = p.substr(7);
    size_t dot = rest.find('.');
    std::string_view range = rest.substr(0, dot);
    if (range != "*") {
      size_t dash = range.find('-');
      int lo = 0, hi = 0;
      bool ok = dash == std::string_view::npos
                    ? (ParseInt(range, &lo) && (hi = lo, true))
                    : (ParseInt(range.substr(0, dash), &lo) && ParseInt(range.substr(dash + 1), &hi));
      if (!ok || lo > hi) {
        return InvalidArgument("precision pattern '" + pattern + "': layer range '" + std::string(range) +
                               "' is not N, A-B (A <= B) or *");
      }
      r.layer_lo = lo;
      r.layer_hi = hi;
    }
    p = dot == std::string_view::npos ? std::string_view() : rest.substr(dot + 1);
    if (dot != std::string_view::npos && p.empty()) {
      return InvalidArgument("precision pattern '" + pattern + "' ends with '.'; " + kPatternHelp);
    }
  }
  if (!p.empty()) {
    std::string s(p);
    if (s.rfind("feed_forward", 0) == 0) s = "mlp" + s.substr(12);
    if (s == "attention") {
      r.group = kAttention;
    } else if (s == "mlp") {
      r.group = kMlp;
    } else {
      for (const auto& e : kRoles) {
        if (s == e.readable) r.role = e.role;
      }
      if (!r.role) return InvalidArgument("precision pattern '" + pattern + "' is not understood; " + kPatternHelp);
    }
    if (r.layer_lo >= 0 && r.role &&
        (*r.role == TensorRole::kEmbeddings || *r.role == TensorRole::kLmHead)) {
      return InvalidArgument("precision pattern '" + pattern + "': embeddings and lm_head belong to no layer");
    }
  } else if (r.layer_lo < 0 && pattern != "layers.*") {
    return InvalidArgument("precision pattern '" + pattern + "' is empty; " + kPatternHelp);
  }
  rules.push_back(std::move(r));
  return Status::Ok();
}

const PrecisionPlan::Rule* PrecisionPlan::BestRule(const std::string& name, const TensorId* id) const {
  const Rule* best = nullptr;
  long best_score = -1;
  for (const Rule& r : rules) {
    long score;
    if (!r.exact.empty()) {
      if (r.exact != name) continue;
      score = 10'000'000;
    } else {
      if (!id) continue;
      if (r.layer_lo >= 0 && (id->layer < r.layer_lo || id->layer > r.layer_hi)) continue;
      int level;
      if (r.role) {
        if (*r.role != id->role) continue;
        level = 2;
      } else if (!r.group.empty()) {
        if (std::find(r.group.begin(), r.group.end(), id->role) == r.group.end()) continue;
        level = 1;
      } else {
        if (id->layer < 0) continue;  // layer-only rules cover layer matrices only
        level = 0;
      }
      long narrow = r.layer_lo >= 0 ? 100'000 - (r.layer_hi - r.layer_lo) : 0;
      score = level * 1'000'000L + narrow;
    }
    if (score >= best_score) {  // later rules win ties
      best_score = score;
      best = &r;
    }
  }
  return best;
}

std::optional<TensorType> PrecisionPlan::TypeFor(const std::string& name) const {
  auto id = IdentifyTensor(name);
  if (!id) return std::nullopt;
  if (const Rule* r = BestRule(name, &*id)) return r->type;
  std::optional<TensorType> group;
  switch (id->role) {
    case TensorRole::kEmbeddings: group = embedding_type; break;
    case TensorRole::kLmHead: group = lm_head_type; break;
    default: group = IsAttention(id->role) ? attention_type : IsMlp(id->role) ? feed_forward_type : std::nullopt;
  }
  if (group) return group;
  return default_type;
}

std::string PrecisionPlan::SourceFor(const std::string& name) const {
  auto id = IdentifyTensor(name);
  if (!id) return "";
  if (const Rule* r = BestRule(name, &*id)) return "tensors[\"" + r->pattern + "\"]";
  if (id->role == TensorRole::kEmbeddings && embedding_type) return "embedding_bits";
  if (id->role == TensorRole::kLmHead && lm_head_type) return "lm_head_bits";
  if (IsAttention(id->role) && attention_type) return "attention_bits";
  if (IsMlp(id->role) && feed_forward_type) return "feed_forward_bits";
  if (default_type) return "default_bits";
  return "";
}

bool PrecisionPlan::empty() const {
  return !default_type && !attention_type && !feed_forward_type && !embedding_type && !lm_head_type && rules.empty();
}

std::string PrecisionPlan::ToJson() const {
  nlohmann::ordered_json j;
  j["family"] = family == BitsFamily::kTf ? "tf" : "ggml";
  auto put = [&](const char* key, const std::optional<TensorType>& t) {
    if (t) j[key] = TypeNameLower(*t);
  };
  put("default_bits", default_type);
  put("attention_bits", attention_type);
  put("feed_forward_bits", feed_forward_type);
  put("embedding_bits", embedding_type);
  put("lm_head_bits", lm_head_type);
  if (!rules.empty()) {
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    for (const Rule& r : rules) t[r.pattern] = TypeNameLower(r.type);
    j["tensors"] = t;
  }
  return j.dump(2) + "\n";
}

Result<PrecisionPlan> ParsePrecisionConfig(std::string_view json_text) {
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(json_text.begin(), json_text.end());
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("precision config is not valid JSON: ") + e.what());
  }
  if (!j.is_object()) return InvalidArgument("precision config must be a JSON object");
  PrecisionPlan plan;
  if (auto it = j.find("family"); it != j.end()) {
    if (!it->is_string() || (*it != "ggml" && *it != "tf")) {
      return InvalidArgument("precision config: \"family\" must be \"ggml\" (8/4 bits -> q8_0/q4_0) or \"tf\" "
                             "(8/4 bits -> tf_q8/tf_q4)");
    }
    plan.family = *it == "tf" ? BitsFamily::kTf : BitsFamily::kGgml;
  }
  auto value = [&](const std::string& where, const nlohmann::ordered_json& v) -> Result<TensorType> {
    Result<TensorType> t = InvalidArgument("");
    if (v.is_number_integer()) {
      t = BitsToType(v.get<int>(), plan.family);
    } else if (v.is_string()) {
      t = ParseBitsOrType(v.get<std::string>(), plan.family);
    } else {
      return InvalidArgument("precision config: " + where + " must be a bit count (2, 3, 4, 8, 16, 32) or a type "
                             "name, not " + v.dump());
    }
    if (!t.ok()) return InvalidArgument("precision config: " + where + ": " + t.status().message());
    TF_RETURN_IF_ERROR(CheckTypeUsable(*t, "precision config: " + where));
    return t;
  };
  struct GroupKey {
    const char* key;
    std::optional<TensorType> PrecisionPlan::*field;
  };
  static const GroupKey kGroups[] = {
      {"default_bits", &PrecisionPlan::default_type},
      {"attention_bits", &PrecisionPlan::attention_type},
      {"feed_forward_bits", &PrecisionPlan::feed_forward_type},
      {"embedding_bits", &PrecisionPlan::embedding_type},
      {"lm_head_bits", &PrecisionPlan::lm_head_type},
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    if (key == "family") continue;
    bool known = false;
    for (const auto& g : kGroups) {
      if (key == g.key) {
        TF_ASSIGN_OR_RETURN(TensorType t, value("\"" + key + "\"", it.value()));
        plan.*(g.field) = t;
        known = true;
      }
    }
    if (known) continue;
    if (key == "tensors") {
      if (!it.value().is_object()) {
        return InvalidArgument("precision config: \"tensors\" must be an object of pattern -> bits");
      }
      for (auto r = it.value().begin(); r != it.value().end(); ++r) {
        TF_ASSIGN_OR_RETURN(TensorType t, value("tensors[\"" + r.key() + "\"]", r.value()));
        Status s = plan.AddRule(r.key(), t);
        if (!s.ok()) return InvalidArgument("precision config: " + s.message());
      }
      continue;
    }
    if (key == "comment" || key == "_comment" || key == "plan") continue;  // free-form notes
    return InvalidArgument("precision config: unknown key \"" + key +
                           "\"; known keys: default_bits, attention_bits, feed_forward_bits, embedding_bits, "
                           "lm_head_bits, family, tensors, comment");
  }
  return plan;
}

Result<PrecisionPlan> LoadPrecisionConfig(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open precision config '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  auto plan = ParsePrecisionConfig(ss.str());
  if (!plan.ok()) return plan.status().WithContext(path);
  return plan;
}

Result<PrecisionPlan> PrecisionFlags::ToPlan() const {
  PrecisionPlan plan;
  if (!config_path.empty()) {
    TF_ASSIGN_OR_RETURN(plan, LoadPrecisionConfig(config_path));
  }
  if (!family.empty()) {
    if (family != "ggml" && family != "tf") return InvalidArgument("--family must be ggml or tf, not '" + family + "'");
    plan.family = family == "tf" ? BitsFamily::kTf : BitsFamily::kGgml;
  }
  auto set = [&](const char* flag, const std::string& v, std::optional<TensorType>* field) -> Status {
    if (v.empty()) return Status::Ok();
    auto t = ParseBitsOrType(v, plan.family);
    if (!t.ok()) return InvalidArgument(std::string(flag) + ": " + t.status().message());
    TF_RETURN_IF_ERROR(CheckTypeUsable(*t, flag));
    *field = *t;
    return Status::Ok();
  };
  TF_RETURN_IF_ERROR(set("--weight-type", weight_type, &plan.default_type));
  TF_RETURN_IF_ERROR(set("--default-bits", default_bits, &plan.default_type));
  TF_RETURN_IF_ERROR(set("--attention-bits", attention_bits, &plan.attention_type));
  TF_RETURN_IF_ERROR(set("--feed-forward-bits", feed_forward_bits, &plan.feed_forward_type));
  TF_RETURN_IF_ERROR(set("--embedding-bits", embedding_bits, &plan.embedding_type));
  TF_RETURN_IF_ERROR(set("--lm-head-bits", lm_head_bits, &plan.lm_head_type));
  for (const std::string& tb : tensor_bits) {
    size_t eq = tb.rfind('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == tb.size()) {
      return InvalidArgument("--tensor-bits '" + tb + "': expected PATTERN=BITS, e.g. layers.0-3.mlp.down=8");
    }
    std::optional<TensorType> t;
    TF_RETURN_IF_ERROR(set("--tensor-bits", tb.substr(eq + 1), &t));
    Status s = plan.AddRule(tb.substr(0, eq), *t);
    if (!s.ok()) return InvalidArgument("--tensor-bits: " + s.message());
  }
  return plan;
}

}  // namespace tabfit
