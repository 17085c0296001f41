// `tabfit convert`: a GGUF (or a package) -> a tabfit package directory,
// optionally re-quantizing the weights (see docs/package-format.md).
#include <chrono>
#include <unistd.h>

#include <cstdio>
#include <map>

#include "cli/commands.h"
#include "eval/importance.h"
#include "eval/precision.h"
#include "model/gguf/gguf.h"
#include "loader/http_source.h"
#include "model/package/package.h"
#include "model/package/synth.h"
#include "quant/kernels.h"

namespace tabfit::cli {

namespace {

double Now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string Shape(const std::vector<int64_t>& ne) {
  std::string s;
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? " x " : "") + std::to_string(ne[i]);
  return s;
}

Command MakeConvertCommand() {
  struct State {
    std::string input;
    std::string out_dir;
    std::string weight_type;
    std::string precision;
    std::string imatrix;
    std::string max_chunk = "64MiB";
    std::vector<std::string> groups;  // --group NAME=a,b
    int threads = 0;
    bool verify = false;
    bool quiet = false;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand(
        "convert", "write a model as a tabfit package (chunked GGUF + manifest.json), optionally re-quantized");
    sub->add_option("model", st->input, "GGUF file or tabfit package to convert")->required();
    sub->add_option("out_dir", st->out_dir, "output directory (created; must be empty or a previous package)")
        ->required();
    sub->add_option("--weight-type", st->weight_type,
                    "type of every 2-D weight: f32, f16, bf16, q8_0, q4_0, tf_q8, tf_q4, tf_q3, tf_q2 (also tf_q2s, tf_q2r, tf_q2sr) "
                    "(default: keep the file's types)");
    sub->add_option("--precision", st->precision,
                    "precision config JSON (per-layer / per-tensor bits, or a `tabfit calibrate --budget` plan); "
                    "tensors it does not name keep --weight-type / their type");
    sub->add_option("--imatrix", st->imatrix,
                    "importance statistics from `tabfit calibrate` (binary or JSON): re-quantized tensors "
                    "minimise the importance-weighted error (tensors without statistics are quantized without)");
    sub->add_option("--max-chunk", st->max_chunk, "largest chunk file, e.g. 64MiB (at most 2GiB)")
        ->default_val("64MiB");
    sub->add_option("-t,--threads", st->threads, "conversion threads (default: all cores)");
    sub->add_option("--group", st->groups,
                    "a named component group for the manifest, NAME=COMPONENT,COMPONENT,... (repeatable), e.g. "
                    "early=layers.0,layers.1; engines load/unload it by name");
    sub->add_flag("--verify", st->verify, "re-read every chunk afterwards and check its sha256");
    sub->add_flag("-q,--quiet", st->quiet, "print only the totals");
    return sub;
  };
  c.run = [st]() -> int {
    PackageOptions po;
    auto mc = ParseBytes(st->max_chunk);
    if (!mc.ok()) return Fail(mc.status());
    po.max_chunk_bytes = *mc;
    po.threads = st->threads;
    for (const std::string& g : st->groups) {
      const size_t eq = g.find('=');
      if (eq == std::string::npos || eq == 0 || eq + 1 == g.size()) {
        return Fail(InvalidArgument("--group " + g + ": expected NAME=COMPONENT[,COMPONENT...]"));
      }
      std::vector<std::string> members;
      std::string rest = g.substr(eq + 1);
      for (size_t pos = 0; pos <= rest.size();) {
        size_t comma = rest.find(',', pos);
        if (comma == std::string::npos) comma = rest.size();
        if (comma > pos) members.push_back(rest.substr(pos, comma - pos));
        pos = comma + 1;
      }
      po.groups[g.substr(0, eq)] = std::move(members);
    }
    if (!st->weight_type.empty()) {
      auto t = ParseTensorTypeName(st->weight_type);
      if (!t.ok()) return Fail(t.status());
      if (!CanQuantize(*t)) return Fail(Unsupported("this build cannot write type " + st->weight_type));
      // Hook for per-tensor precision (e.g. a --precision config): any
      // TensorTypeFn works here; UniformWeightType is the uniform policy.
      po.target_type = UniformWeightType(*t);
    }
    if (!st->precision.empty()) {
      auto plan = LoadPrecisionConfig(st->precision);
      if (!plan.ok()) return Fail(plan.status());
      auto shared = std::make_shared<PrecisionPlan>(std::move(*plan));
      TensorTypeFn fallback = po.target_type;
      po.target_type = [shared, fallback](const GgufTensorInfo& t) -> std::optional<TensorType> {
        if (auto ty = shared->TypeFor(t.name)) return ty;
        return fallback ? fallback(t) : std::nullopt;
      };
    }
    std::shared_ptr<const ImportanceMap> imap;
    if (!st->imatrix.empty()) {
      auto m = ImportanceMap::Load(st->imatrix);
      if (!m.ok()) return Fail(m.status());
      if (m->empty()) return Fail(InvalidArgument("--imatrix " + st->imatrix + ": the file holds no tensors"));
      imap = std::make_shared<const ImportanceMap>(std::move(*m));
      po.importance = [imap](const GgufTensorInfo& t) -> const float* {
        return t.ne.empty() ? nullptr : imap->For(t.name, t.ne[0]);
      };
    }
    auto src = OpenAnySource(st->input);
    if (!src.ok()) return Fail(src.status());
    auto g = GgufFile::Parse(std::move(*src));
    if (!g.ok()) return Fail(g.status());
    int last_pct = -1;
    if (!st->quiet && isatty(fileno(stderr))) {
      po.progress = [&last_pct](uint64_t done, uint64_t total, const std::string& tensor) {
        int pct = total ? static_cast<int>(100 * done / total) : 100;
        if (pct != last_pct) {
          last_pct = pct;
          std::fprintf(stderr, "\r%3d%% %-40s", pct, tensor.c_str());
          std::fflush(stderr);
        }
      };
    }
    double t0 = Now();
    auto sum = WritePackageWithSummary(*g, st->out_dir, po);
    if (last_pct >= 0) std::fprintf(stderr, "\r%-48s\r", "");
    if (!sum.ok()) return Fail(sum.status());
    const double secs = Now() - t0;

    std::map<std::string, std::pair<uint64_t, uint64_t>> by_type;  // type -> (bytes, elements)
    size_t n_converted = 0, n_with_importance = 0;
    for (const auto& t : sum->tensors) {
      n_converted += t.type != t.source_type;
      n_with_importance += t.used_importance;
    }
    if (!st->quiet) {
      std::printf("%-32s %-12s %-14s %-13s %12s %s\n", "tensor", "component", "shape", "type", "bytes", "chunks");
    }
    for (const auto& t : sum->tensors) {
      uint64_t n = 1;
      for (int64_t d : t.ne) n *= static_cast<uint64_t>(d);
      auto& bt = by_type[std::string(TensorTypeName(t.type))];
      bt.first += t.nbytes;
      bt.second += n;
      if (st->quiet) continue;
      std::string types = std::string(TensorTypeName(t.type));
      if (t.type != t.source_type) types = std::string(TensorTypeName(t.source_type)) + "->" + types;
      if (t.used_importance) types += "*";
      std::string files;
      for (const auto& p : t.parts) files += (files.empty() ? "" : ",") + p.file.substr(0, p.file.find('.'));
      std::printf("%-32s %-12s %-14s %-13s %12llu %s\n", t.name.c_str(), t.component.c_str(), Shape(t.ne).c_str(),
                  types.c_str(), static_cast<unsigned long long>(t.nbytes), files.c_str());
    }
    std::printf("\n%s -> %s: %zu tensors, %zu chunk files (max %s), %.1f s\n", st->input.c_str(),
                st->out_dir.c_str(), sum->tensors.size(), sum->chunks.size(), FormatBytes(po.max_chunk_bytes).c_str(),
                secs);
    for (const auto& [type, v] : by_type) {
      std::printf("  %-6s %12s  %6.3f bits/weight\n", type.c_str(), FormatBytes(v.first).c_str(),
                  v.second ? 8.0 * v.first / v.second : 0.0);
    }
    std::printf("  total  %12s tensor data (%llu bytes) in %s on disk; %.3f bits per weight over %.1fM weights\n",
                FormatBytes(sum->tensor_bytes).c_str(), static_cast<unsigned long long>(sum->tensor_bytes),
                FormatBytes(sum->total_bytes).c_str(),
                sum->n_weights ? 8.0 * sum->tensor_bytes / sum->n_weights : 0.0, sum->n_weights / 1e6);
    if (imap) {
      std::printf("  importance (%s, %llu calibration tokens): %zu of %zu converted tensors (marked *)\n",
                  st->imatrix.c_str(), static_cast<unsigned long long>(imap->tokens()), n_with_importance,
                  n_converted);
    }
    if (st->verify) {
      Status v = VerifyPackage(st->out_dir);
      if (!v.ok()) return Fail(v);
      std::printf("  verified: every chunk's sha256 matches the manifest\n");
    }
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeConvertCommand, 40);

}  // namespace tabfit::cli
