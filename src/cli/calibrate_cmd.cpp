// `tabfit calibrate`: activation statistics (importance matrix) from
// calibration text and, with --budget, an adaptive per-tensor precision plan.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "eval/adaptive.h"
#include "eval/eval_model.h"
#include "eval/importance.h"
#include "eval/perplexity.h"
#include "eval/precision.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit::cli {

namespace {

std::string SharedGolden(const std::string& file) {
  std::string shared;
  if (const char* env = std::getenv("TABFIT_SHARED_DIR")) {
    shared = env;
  } else {
    shared = std::string(TABFIT_SOURCE_DIR) + "/../shared";
  }
  return shared + "/models/golden/" + file;
}

Result<std::string> ReadText(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open text file '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

Result<std::vector<TensorType>> ParseCandidates(const std::string& list) {
  std::vector<TensorType> out;
  std::stringstream ss(list);
  std::string item;
  while (std::getline(ss, item, ',')) {
    if (item.empty()) continue;
    TF_ASSIGN_OR_RETURN(TensorType t, ParseTypeName(item));
    Status s = CheckTypeUsable(t, "--candidates " + item);
    if (!s.ok()) {
      std::fprintf(stderr, "note: skipping candidate %s (%s)\n", item.c_str(), s.message().c_str());
      continue;
    }
    out.push_back(t);
  }
  if (out.empty()) return InvalidArgument("--candidates: no usable type in '" + list + "'");
  return out;
}

Command MakeCalibrateCommand() {
  struct State {
    std::string model;
    std::string calib_file;
    std::string eval_file;
    std::string out;
    int n_ctx = 512;
    int chunks = 0;
    int threads = 0;
    std::string budget;
    std::string plan_out;
    std::string candidates = "q8_0,q4_0,tf_q8,tf_q4,tf_q3,tf_q2";
    int sens_ctx = 256;
    int sens_chunks = 2;
    bool proxy = false;
    bool no_imatrix_quant = false;
    std::string sens_file;
    std::string imatrix_in;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand(
        "calibrate", "activation statistics for importance-weighted quantization; with --budget, a precision plan");
    sub->add_option("-m,--model", st->model, "GGUF model (default: the bundled demo model)");
    sub->add_option("-f,--file", st->calib_file,
                    "calibration text (default: ../shared/models/golden/calibration-tinystories-100k.txt)");
    sub->add_option("--eval-text", st->eval_file,
                    "the evaluation text, which calibration must not use (default: the golden WikiText file)");
    sub->add_option("-o,--output", st->out, "statistics file: *.json or binary (anything else)");
    sub->add_option("--imatrix", st->imatrix_in,
                    "reuse statistics from an earlier run instead of computing them (with --budget)");
    sub->add_option("-c,--ctx", st->n_ctx, "tokens per calibration chunk")->default_val(512);
    sub->add_option("--chunks", st->chunks, "use only the first N chunks (default: all)");
    sub->add_option("-t,--threads", st->threads, "threads (default: all cores)");
    sub->add_option("--budget", st->budget, "weight bytes for an adaptive plan: 35MB, 1.5GB or 40% (of the file's)");
    sub->add_option("--plan-out", st->plan_out, "where to write the plan (a precision config; default plan.json)");
    sub->add_option("--candidates", st->candidates, "types the plan may use, comma-separated")
        ->default_val(st->candidates);
    sub->add_option("--sens-ctx", st->sens_ctx, "tokens per sensitivity chunk")->default_val(256);
    sub->add_option("--sens-chunks", st->sens_chunks, "calibration chunks per sensitivity run")->default_val(2);
    sub->add_flag("--proxy", st->proxy,
                  "measure KL only at the lowest-bit type per tensor and extrapolate with the weight error");
    sub->add_option("--sensitivity", st->sens_file,
                    "sensitivity cache (JSON): read if it exists, else measured and written there");
    sub->add_flag("--no-imatrix-quant", st->no_imatrix_quant, "sensitivity runs quantize without the statistics");
    return sub;
  };
  c.run = [st]() -> int {
    if (st->model.empty()) st->model = DefaultModelPath();
    if (st->out.empty() == st->imatrix_in.empty()) {
      return Fail(InvalidArgument("give either -o (compute statistics) or --imatrix (reuse them with --budget)"));
    }
    if (!st->imatrix_in.empty() && st->budget.empty()) {
      return Fail(InvalidArgument("--imatrix without --budget has nothing to do"));
    }
    if (st->calib_file.empty()) st->calib_file = SharedGolden("calibration-tinystories-100k.txt");
    if (st->eval_file.empty()) st->eval_file = SharedGolden("wikitext2-test-100k.txt");
    auto text = ReadText(st->calib_file);
    if (!text.ok()) return Fail(text.status());
    std::error_code ec;
    if (std::filesystem::exists(st->eval_file, ec)) {
      auto ev = ReadText(st->eval_file);
      if (ev.ok() && (*ev == *text || std::filesystem::equivalent(st->eval_file, st->calib_file, ec))) {
        return Fail(InvalidArgument("the calibration text " + st->calib_file + " is the evaluation text " +
                                    st->eval_file + "; never calibrate on the evaluation text (use e.g. "
                                    "calibration-tinystories-100k.txt)"));
      }
    }
    auto gguf = GgufFile::Open(st->model);
    if (!gguf.ok()) return Fail(gguf.status());
    auto em = LoadEvalModel(*gguf, EvalModelOptions{});
    if (!em.ok()) return Fail(em.status());
    EvalModel& m = **em;
    const std::vector<int32_t> tokens = m.tokenizer->Encode(*text, true);

    ImportanceMap imp;
    if (!st->imatrix_in.empty()) {
      auto l = ImportanceMap::Load(st->imatrix_in);
      if (!l.ok()) return Fail(l.status());
      imp = std::move(*l);
    } else {
      auto computed = CollectImportance(*m.model, m.tokenizer->bos(), tokens, st->n_ctx, st->chunks, st->threads,
                                        [](int done, int total) {
                                          std::fprintf(stderr, "\rcalibration chunk %d/%d", done, total);
                                          if (done == total) std::fprintf(stderr, "\n");
                                        });
      if (!computed.ok()) return Fail(computed.status());
      imp = std::move(*computed);
      imp.set_text_hash(HashBytes(text->data(), text->size()));
      Status s = imp.Save(st->out);
      if (!s.ok()) return Fail(s);
      std::printf("wrote %s: %zu weight matrices, %llu tokens of %s\n", st->out.c_str(), imp.entries().size(),
                  static_cast<unsigned long long>(imp.tokens()), st->calib_file.c_str());
    }
    if (st->budget.empty()) return 0;

    // Adaptive plan.
    uint64_t source_bytes = 0;
    for (const auto& t : gguf->tensors()) source_bytes += t.nbytes;
    auto budget = ParseBudget(st->budget, source_bytes);
    if (!budget.ok()) return Fail(budget.status());
    auto cands = ParseCandidates(st->candidates);
    if (!cands.ok()) return Fail(cands.status());
    SensitivityOptions so;
    so.candidates = *cands;
    so.n_ctx = std::min(st->sens_ctx, m.model->hparams().n_ctx_train);
    so.n_chunks = st->sens_chunks;
    so.first = so.n_ctx / 8;
    so.threads = st->threads;
    so.proxy = st->proxy;
    so.importance = st->no_imatrix_quant ? nullptr : &imp;
    so.progress = [](int done, int total, const std::string& what) {
      std::fprintf(stderr, "\rsensitivity %d/%d %-40s", done, total, what.c_str());
      return true;
    };
    Result<SensitivityReport> sens = Internal("unset");
    if (!st->sens_file.empty() && std::filesystem::exists(st->sens_file, ec)) {
      auto txt = ReadText(st->sens_file);
      if (!txt.ok()) return Fail(txt.status());
      sens = SensitivityFromJson(*txt);
      if (!sens.ok()) return Fail(sens.status().WithContext(st->sens_file));
      std::fprintf(stderr, "using sensitivity measurements from %s\n", st->sens_file.c_str());
    } else {
      sens = MeasureSensitivity(*gguf, tokens, m.tokenizer->bos(), so);
      std::fprintf(stderr, "\n");
      if (!sens.ok()) return Fail(sens.status());
      if (!st->sens_file.empty()) {
        std::ofstream sf(st->sens_file);
        sf << SensitivityToJson(*sens);
        if (!sf) return Fail(IoError("cannot write " + st->sens_file));
      }
    }
    auto plan = AllocateBudget(*sens, *budget);
    if (!plan.ok()) return Fail(plan.status());
    std::printf("%-28s %-20s %-7s %12s %12s\n", "tensor", "readable", "type", "bytes", "expected_kl");
    for (const auto& t : plan->tensors) {
      std::printf("%-28s %-20s %-7s %12llu %12.6f\n", t.name.c_str(), ReadableTensorName(t.name).c_str(),
                  TypeNameLower(t.type).c_str(), static_cast<unsigned long long>(t.bytes), t.expected_kl);
    }
    std::printf("budget %s: plan %llu bytes (%.3f bits/weight incl. norms), expected KL %.6f (sum of per-tensor KLs "
                "on %d calibration tokens)\n",
                FormatBytes(*budget).c_str(), static_cast<unsigned long long>(plan->total_bytes),
                plan->bits_per_weight, plan->expected_kl, sens->calibration_tokens);
    const std::string out = st->plan_out.empty() ? "plan.json" : st->plan_out;
    std::ofstream f(out);
    f << plan->ToJson();
    if (!f) return Fail(IoError("cannot write " + out));
    std::printf("wrote %s (use it with: tabfit eval --precision %s)\n", out.c_str(), out.c_str());
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeCalibrateCommand, 41);

}  // namespace tabfit::cli
