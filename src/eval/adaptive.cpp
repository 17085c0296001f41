#include "eval/adaptive.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <thread>

#include <nlohmann/json.hpp>

#include "core/ledger.h"
#include "core/thread_pool.h"
#include "eval/eval_model.h"
#include "eval/importance.h"
#include "eval/perplexity.h"
#include "eval/quantize_model.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"

namespace tabfit {

namespace {

Result<double> RunKl(const GgufFile& src, const PrecisionPlan& plan, const SensitivityOptions& o,
                     const std::vector<int32_t>& tokens, int32_t bos, MemoryReference& ref, int n_threads) {
  EvalModelOptions eo;
  eo.plan = &plan;
  eo.importance = o.importance;
  eo.threads = n_threads;
  TF_ASSIGN_OR_RETURN(auto m, LoadEvalModel(src, eo));
  PerplexityOptions po;
  po.n_ctx = o.n_ctx;
  po.n_chunks = o.n_chunks;
  po.first = o.first;
  po.threads = n_threads;
  TF_ASSIGN_OR_RETURN(auto runner, PerplexityRunner::Create(*m->model, po));
  TF_ASSIGN_OR_RETURN(PerplexityResult r, runner->Run(tokens, bos, nullptr, &ref));
  return std::max(0.0, r.kl_mean);
}

}  // namespace

Result<SensitivityReport> MeasureSensitivity(const GgufFile& src, const std::vector<int32_t>& tokens, int32_t bos,
                                             const SensitivityOptions& o) {
  const int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<TensorType> cands;
  for (TensorType t : o.candidates) {
    if (CheckTypeUsable(t, "candidate").ok() && std::find(cands.begin(), cands.end(), t) == cands.end()) {
      cands.push_back(t);
    }
  }
  if (cands.empty()) return InvalidArgument("adaptive precision: no usable candidate types in this build");
  SensitivityReport rep;
  ThreadPool pool(threads);
  for (const GgufTensorInfo& t : src.tensors()) {
    rep.source_bytes += t.nbytes;
    rep.parameters += static_cast<uint64_t>(t.n_elements());
    if (t.ne.size() != 2 || !IdentifyTensor(t.name)) {
      rep.fixed_bytes += t.nbytes;
      continue;
    }
    TensorSensitivity ts;
    ts.name = t.name;
    ts.cols = t.ne[0];
    ts.rows = t.rows();
    ts.source_type = t.type;
    ts.options.push_back({t.type, t.nbytes, 0.0, 0.0, true});
    const float* imp = o.importance ? o.importance->For(t.name, ts.cols) : nullptr;
    for (TensorType c : cands) {
      if (c == t.type) continue;
      TF_ASSIGN_OR_RETURN(TensorQuantReport e, MeasureTensorError(src, t.name, c, imp, &pool));
      if (!e.kept_reason.empty()) continue;
      ts.options.push_back({c, e.bytes, 0.0, e.weighted_rel_error, false});
    }
    rep.tensors.push_back(std::move(ts));
  }
  // Reference: the unquantized model on the calibration chunks.
  MemoryReference ref;
  {
    TF_ASSIGN_OR_RETURN(auto m, LoadEvalModel(src, EvalModelOptions{}));
    PerplexityOptions po;
    po.n_ctx = o.n_ctx;
    po.n_chunks = o.n_chunks;
    po.first = o.first;
    po.threads = threads;
    TF_ASSIGN_OR_RETURN(auto runner, PerplexityRunner::Create(*m->model, po));
    if (runner->ChunksFor(tokens.size()) < 1) {
      return InvalidArgument("adaptive precision: the calibration text has " + std::to_string(tokens.size()) +
                             " tokens, fewer than one chunk of " + std::to_string(o.n_ctx));
    }
    TF_ASSIGN_OR_RETURN(PerplexityResult r, runner->Run(tokens, bos, &ref, nullptr));
    rep.calibration_tokens = static_cast<int>(r.n_scored);
  }
  int total = 0, done = 0;
  for (const auto& ts : rep.tensors) {
    if (ts.options.size() > 1) total += o.proxy ? 1 : static_cast<int>(ts.options.size()) - 1;
  }
  for (auto& ts : rep.tensors) {
    if (ts.options.size() <= 1) continue;
    // Proxy: measure only the option with the fewest bytes.
    size_t probe = 1;
    for (size_t i = 2; i < ts.options.size(); ++i) {
      if (ts.options[i].bytes < ts.options[probe].bytes) probe = i;
    }
    for (size_t i = 1; i < ts.options.size(); ++i) {
      if (o.proxy && i != probe) continue;
      PrecisionPlan plan;
      TF_RETURN_IF_ERROR(plan.AddRule(ts.name, ts.options[i].type));
      TF_ASSIGN_OR_RETURN(double kl, RunKl(src, plan, o, tokens, bos, ref, threads));
      ts.options[i].kl = kl;
      ts.options[i].measured = true;
      ++done;
      if (o.progress && !o.progress(done, total, ts.name + " " + TypeNameLower(ts.options[i].type))) {
        return Cancelled("sensitivity measurement cancelled");
      }
    }
    if (o.proxy) {
      const TensorOption& p = ts.options[probe];
      for (size_t i = 1; i < ts.options.size(); ++i) {
        if (i == probe) continue;
        double ratio = p.weighted_error > 0 ? ts.options[i].weighted_error / p.weighted_error : 0;
        ts.options[i].kl = p.kl * ratio * ratio;
      }
    }
  }
  return rep;
}

Result<BudgetPlan> AllocateBudget(const SensitivityReport& rep, uint64_t budget) {
  uint64_t min_bytes = rep.fixed_bytes;
  for (const auto& ts : rep.tensors) {
    uint64_t mn = std::numeric_limits<uint64_t>::max();
    for (const auto& op : ts.options) mn = std::min(mn, op.bytes);
    min_bytes += mn;
  }
  if (budget < min_bytes) {
    return InvalidArgument("budget " + FormatBytes(budget) + " is below the smallest possible plan (" +
                           FormatBytes(min_bytes) + " with every matrix at its cheapest candidate); raise --budget "
                           "or allow lower-bit candidates");
  }
  const uint64_t cap_bytes = budget - rep.fixed_bytes;
  constexpr uint64_t kUnits = 20000;
  const uint64_t g = std::max<uint64_t>(1, (cap_bytes + kUnits - 1) / kUnits);
  const size_t cap = static_cast<size_t>(cap_bytes / g);
  const size_t n = rep.tensors.size();
  const double kInf = std::numeric_limits<double>::infinity();
  std::vector<double> dp(cap + 1, 0.0), next(cap + 1);
  std::vector<std::vector<uint8_t>> choice(n, std::vector<uint8_t>(cap + 1, 0));
  for (size_t t = 0; t < n; ++t) {
    const auto& ops = rep.tensors[t].options;
    std::fill(next.begin(), next.end(), kInf);
    for (size_t k = 0; k < ops.size(); ++k) {
      const size_t w = static_cast<size_t>((ops[k].bytes + g - 1) / g);
      for (size_t u = w; u <= cap; ++u) {
        double v = dp[u - w] + ops[k].kl;
        if (v < next[u]) {
          next[u] = v;
          choice[t][u] = static_cast<uint8_t>(k);
        }
      }
    }
    dp.swap(next);
  }
  if (!(dp[cap] < kInf)) {
    return InvalidArgument("budget " + FormatBytes(budget) + " is too tight after rounding; raise it slightly");
  }
  BudgetPlan bp;
  bp.budget_bytes = budget;
  bp.total_bytes = rep.fixed_bytes;
  size_t u = cap;
  bp.tensors.resize(n);
  for (size_t t = n; t-- > 0;) {
    const auto& op = rep.tensors[t].options[choice[t][u]];
    bp.tensors[t] = {rep.tensors[t].name, op.type, op.bytes, op.kl};
    u -= static_cast<size_t>((op.bytes + g - 1) / g);
  }
  for (const auto& pt : bp.tensors) {
    bp.total_bytes += pt.bytes;
    bp.expected_kl += pt.expected_kl;
    TF_RETURN_IF_ERROR(bp.plan.AddRule(pt.name, pt.type));
  }
  bp.bits_per_weight = rep.parameters ? 8.0 * bp.total_bytes / rep.parameters : 0;
  return bp;
}

std::string BudgetPlan::ToJson() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(plan.ToJson());
  nlohmann::ordered_json p;
  p["budget_bytes"] = budget_bytes;
  p["total_bytes"] = total_bytes;
  p["bits_per_weight"] = bits_per_weight;
  p["expected_kl"] = expected_kl;
  nlohmann::ordered_json t = nlohmann::ordered_json::array();
  for (const auto& pt : tensors) {
    t.push_back({{"tensor", pt.name}, {"readable", ReadableTensorName(pt.name)}, {"type", TypeNameLower(pt.type)},
                 {"bytes", pt.bytes}, {"expected_kl", pt.expected_kl}});
  }
  p["tensors"] = t;
  j["plan"] = p;
  return j.dump(2) + "\n";
}

std::string SensitivityToJson(const SensitivityReport& r) {
  nlohmann::ordered_json j;
  j["format"] = "tabfit-sensitivity";
  j["fixed_bytes"] = r.fixed_bytes;
  j["source_bytes"] = r.source_bytes;
  j["parameters"] = r.parameters;
  j["calibration_tokens"] = r.calibration_tokens;
  nlohmann::ordered_json ts = nlohmann::ordered_json::array();
  for (const auto& t : r.tensors) {
    nlohmann::ordered_json ops = nlohmann::ordered_json::array();
    for (const auto& o : t.options) {
      ops.push_back({{"type", TypeNameLower(o.type)}, {"bytes", o.bytes}, {"kl", o.kl},
                     {"weighted_error", o.weighted_error}, {"measured", o.measured}});
    }
    ts.push_back({{"name", t.name}, {"rows", t.rows}, {"cols", t.cols}, {"source_type", TypeNameLower(t.source_type)},
                  {"options", ops}});
  }
  j["tensors"] = ts;
  return j.dump(1) + "\n";
}

Result<SensitivityReport> SensitivityFromJson(const std::string& text) {
  SensitivityReport r;
  try {
    auto j = nlohmann::json::parse(text);
    if (j.value("format", "") != "tabfit-sensitivity") {
      return CorruptData("not a tabfit sensitivity file (\"format\" must be \"tabfit-sensitivity\")");
    }
    r.fixed_bytes = j.at("fixed_bytes").get<uint64_t>();
    r.source_bytes = j.at("source_bytes").get<uint64_t>();
    r.parameters = j.at("parameters").get<uint64_t>();
    r.calibration_tokens = j.at("calibration_tokens").get<int>();
    for (const auto& t : j.at("tensors")) {
      TensorSensitivity ts;
      ts.name = t.at("name").get<std::string>();
      ts.rows = t.at("rows").get<int64_t>();
      ts.cols = t.at("cols").get<int64_t>();
      TF_ASSIGN_OR_RETURN(ts.source_type, ParseTypeName(t.at("source_type").get<std::string>()));
      for (const auto& o : t.at("options")) {
        TensorOption op;
        TF_ASSIGN_OR_RETURN(op.type, ParseTypeName(o.at("type").get<std::string>()));
        op.bytes = o.at("bytes").get<uint64_t>();
        op.kl = o.at("kl").get<double>();
        op.weighted_error = o.at("weighted_error").get<double>();
        op.measured = o.at("measured").get<bool>();
        ts.options.push_back(op);
      }
      if (ts.options.empty() || ts.options.size() > 255) {
        return CorruptData("sensitivity file: tensor " + ts.name + " has " + std::to_string(ts.options.size()) +
                           " options (1..255 allowed)");
      }
      r.tensors.push_back(std::move(ts));
    }
  } catch (const std::exception& e) {
    return CorruptData(std::string("malformed sensitivity file: ") + e.what());
  }
  return r;
}

Result<uint64_t> ParseBudget(const std::string& text, uint64_t source_bytes) {
  if (!text.empty() && text.back() == '%') {
    double pct = 0;
    try {
      size_t pos = 0;
      pct = std::stod(text.substr(0, text.size() - 1), &pos);
      if (pos != text.size() - 1) throw std::invalid_argument("trailing");
    } catch (const std::exception&) {
      return InvalidArgument("budget '" + text + "': expected a percentage such as 40%");
    }
    if (!(pct > 0 && pct <= 1000)) return InvalidArgument("budget '" + text + "' must be between 0% and 1000%");
    return static_cast<uint64_t>(source_bytes * pct / 100.0);
  }
  return ParseBytes(text);
}

}  // namespace tabfit
