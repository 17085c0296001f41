// `tabfit run`: generate text, streaming tokens, then speed and memory by component.
#include <algorithm>
#include <cstdio>
#include <optional>

#include "cli/commands.h"
#include "core/rss.h"
#include "engine/profile.h"
#include "kv/kv_factory.h"
#include "eval/precision.h"
#include "memory/monitor.h"
#include "memory/report.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit::cli {

void EngineFlags::Add(CLI::App* app) {
  app->add_option("-m,--model", model, "GGUF model file or tabfit package (default: the bundled demo model)");
  o_threads = app->add_option("-t,--threads", threads, "threads (default: all cores)");
  o_ctx = app->add_option("-c,--ctx-size", n_ctx, "context size in tokens (default: the model's, at most 4096)");
  app->add_option("-b,--batch-size", n_batch, "prompt tokens per forward step")->default_val(64);
  o_budget = app->add_option("--budget", budget, "memory budget, e.g. 1.5GB; allocations past it fail with advice");
  o_max_buffer = app->add_option("--max-buffer", max_buffer, "largest single buffer (browsers cap ArrayBuffers)")
                     ->default_val("1GiB");
  o_kv = app->add_option("--kv-type", kv_type,
                         "KV cache type: f16, f32, q8_0 (8-bit blocks), q4_0 (4-bit blocks), mixed (8-bit recent "
                         "window, 4-bit older tokens), kivi2/kivi3/kivi4 (low-bit cache, as --kv-bits)")
             ->default_val("f16");
  app->add_option("--kv-recent", kv_recent, "with --kv-type mixed: tokens kept at 8 bits")->default_val(256);
  app->add_option("--kv-prune", kv_prune,
                  "attention-score KV pruning: when the context is full, drop the least-attended tokens down to "
                  "this fraction of it (e.g. 0.5) and keep going; 0 = off (exact)")
      ->default_val(0.f);
  app->add_option("--kv-sinks", kv_sinks, "with --kv-prune: first tokens never pruned (attention sinks)")
      ->default_val(4);
  app->add_option("--kv-keep-recent", kv_keep_recent,
                  "with --kv-prune: last tokens never pruned (0: 3/4 of what pruning keeps)")
      ->default_val(0);
  kv.Add(app);
  o_weight = app->add_option("--weight-type", weight_type,
                             "convert weights at load time: f32, f16, bf16, q8_0, q4_0, tf_q8, tf_q4, tf_q3, tf_q2");
  app->add_flag("--no-repack", no_repack,
                "keep every weight matrix row-major (by default TF_Q2, TF_Q4, TF_Q8, Q8_0 and Q4_0 matrices get a "
                "16-row interleaved layout where this CPU has its kernel, AVX-512 VNNI: same bytes, faster decoding, "
                "same results -- the TF formats bit for bit)");
  app->add_option("--profile", profile,
                  "browser profile (chrome, edge, firefox, safari, mobile, custom, or a JSON file): its memory "
                  "budget, buffer limit, threads and precisions apply where no flag overrides them");
  app->add_flag("--adapt", adapt, "with --profile: lower the weight precision if the model does not fit");
  app->add_option("--priority", priority,
                  "progressive loading: components loaded before generation may start, comma-separated "
                  "(default embeddings,layers.0,lm_head; 'all' = everything first)");
  app->add_flag("--no-background", no_background,
                "load every kept component before returning instead of in the background while generating");
  app->add_flag("--no-stream", no_stream,
                "fail instead of streaming layers when the model does not fit the budget (--budget, --profile)");
  app->add_option("--memory-threshold", memory_threshold,
                  "bytes the ledger may reach with the weights in (default: the budget); above it layers stream");
  app->add_option("--keep-layers", keep_layers,
                  "keep at most N layers in memory at once (pinned + streaming buffers); 0 = as many as fit")
      ->default_val(0);
  app->add_option("--ring-slots", ring_slots, "buffers streamed layers pass through (2: read one while one computes)")
      ->default_val(2);
  app->add_flag("--mmap-stream", mmap_stream,
                "map streamed layers from the file's page cache instead of copying them (zero-copy; a file truncated "
                "while mapped crashes the process with SIGBUS, as with any mmap)");
  app->add_flag("--naive-stream", naive_stream,
                "for comparisons: stream every layer one at a time (no pinned layers, no read-ahead)");
  app->add_option("--draft", draft,
                  "a smaller model with the same vocabulary that drafts tokens for speculative decoding "
                  "(greedy only, same output)");
  app->add_option("--draft-tokens", draft_tokens, "tokens the draft proposes per verifying pass (1-16)")
      ->default_val(4);
  app->add_option("--precision", precision,
                  "precision config JSON: default/attention/feed_forward/embedding/lm_head bits and per-tensor "
                  "patterns, or a plan written by `tabfit calibrate --budget` (docs/precision.md)");
}

Result<EngineOptions> EngineFlags::ToOptions() {
  if (model.empty()) model = DefaultModelPath();
  EngineOptions o;
  o.threads = threads;
  o.n_ctx = n_ctx;
  o.n_batch = n_batch;
  o.kv_type = kv_type;
  o.kv_recent = kv_recent;
  o.kv_prune = kv_prune;
  o.kv_sinks = kv_sinks;
  o.kv_keep_recent = kv_keep_recent;
  TF_RETURN_IF_ERROR(kv.Apply(&o.kv_type, o_kv->count() > 0, n_ctx, &o.kv_lowbit, &o.kv_prune_config));
  o.kv_pruning = !kv.strategy.empty();
  o.weight_type = weight_type;
  o.runtime_layouts = !no_repack;
  if (!budget.empty()) {
    TF_ASSIGN_OR_RETURN(o.budget_bytes, ParseBytes(budget));
  }
  TF_ASSIGN_OR_RETURN(o.max_buffer_bytes, ParseBytes(max_buffer));
  if (!precision.empty()) {
    TF_ASSIGN_OR_RETURN(PrecisionPlan plan, LoadPrecisionConfig(precision));
    auto shared = std::make_shared<PrecisionPlan>(std::move(plan));
    o.type_for_tensor = [shared](const std::string& name) { return shared->TypeFor(name); };
  }
  if (!profile.empty()) {
    TF_ASSIGN_OR_RETURN(BrowserProfile p, LoadProfile(profile));
    if (!o_budget->count()) o.budget_bytes = p.memory_budget_bytes;
    if (!o_max_buffer->count()) o.max_buffer_bytes = p.max_buffer_bytes;
    if (!o_threads->count() && p.threads > 0) o.threads = p.threads;
    if (!o_kv->count() && kv.bits == 0 && IsKvType(p.kv_precision)) o.kv_type = p.kv_precision;
    if (!o_weight->count()) o.weight_type = p.engine_weight_type();
    if (!o_ctx->count() && p.max_context > 0) o.n_ctx = 0;  // the engine caps it at the profile's max_context
    o.profile = std::make_shared<BrowserProfile>(std::move(p));
    o.adapt_precision = adapt;
  } else if (adapt) {
    return InvalidArgument("--adapt needs --profile (the profile's budget is what the precision adapts to)");
  }
  if (!priority.empty()) {
    o.residency.priority_components.clear();
    size_t b = 0;
    while (b <= priority.size()) {
      size_t e = priority.find(',', b);
      if (e == std::string::npos) e = priority.size();
      if (e > b) o.residency.priority_components.push_back(priority.substr(b, e - b));
      b = e + 1;
    }
  }
  o.residency.background_loading = !no_background;
  o.residency.unload_unused_layers = !no_stream;
  if (!memory_threshold.empty()) {
    TF_ASSIGN_OR_RETURN(o.residency.memory_threshold, ParseBytes(memory_threshold));
  }
  if (keep_layers < 0) return InvalidArgument("--keep-layers must be >= 0");
  if (ring_slots < 1) return InvalidArgument("--ring-slots must be >= 1");
  o.residency.keep_n_layers_loaded = keep_layers;
  o.residency.ring_slots = ring_slots;
  o.residency.naive_streaming = naive_stream;
  o.residency.map_streamed_layers = mmap_stream;
  if (!draft.empty()) {
    if (draft_tokens < 1 || draft_tokens > 16) return InvalidArgument("--draft-tokens must be in [1, 16]");
    o.draft_model = draft;
    o.draft_tokens = draft_tokens;
  }
  if (threads < 0) return InvalidArgument("-t must be >= 0");
  if (n_ctx < 0) return InvalidArgument("-c must be >= 0");
  if (n_batch <= 0) return InvalidArgument("-b must be > 0");
  return o;
}

void PrintMemoryReport(FILE* out, const MemoryLedger& ledger) {
  LedgerSnapshot s = ledger.Snapshot();
  std::fprintf(out, "memory by component (ledger):\n");
  std::fprintf(out, "  %-14s %12s %12s\n", "component", "current", "peak");
  uint64_t layers_cur = 0, layers_peak = 0;
  int n_layers = 0;
  for (const auto& c : s.components) {
    if (c.name.rfind("layers.", 0) == 0) {
      layers_cur += c.current_bytes;
      layers_peak += c.peak_bytes;
      ++n_layers;
      continue;
    }
    std::fprintf(out, "  %-14s %12s %12s\n", c.name.c_str(), FormatBytes(c.current_bytes).c_str(),
                 FormatBytes(c.peak_bytes).c_str());
  }
  if (n_layers) {
    std::string name = "layers.0-" + std::to_string(n_layers - 1);
    std::fprintf(out, "  %-14s %12s %12s\n", name.c_str(), FormatBytes(layers_cur).c_str(),
                 FormatBytes(layers_peak).c_str());
  }
  std::fprintf(out, "  %-14s %12s %12s\n", "total", FormatBytes(s.total_current).c_str(),
               FormatBytes(s.total_peak).c_str());
  if (s.budget_bytes) std::fprintf(out, "  budget %s\n", FormatBytes(s.budget_bytes).c_str());
  std::fprintf(out, "process: resident %s, peak resident %s\n", FormatBytes(ProcessResidentBytes()).c_str(),
               FormatBytes(ProcessPeakResidentBytes()).c_str());
}

namespace {
Command MakeRunCommand() {
  struct State {
    EngineFlags flags;
    std::string prompt = "The king said";
    int n_predict = 64;
    float temp = 0.8f;
    int top_k = 40;
    float top_p = 0.95f;
    float min_p = 0.05f;
    float repeat_penalty = 1.0f;
    int repeat_last_n = 64;
    uint64_t seed = 0xC0FFEE;
    std::vector<std::string> stop;
    bool no_bos = false;
    bool quiet = false;
    std::string memory_log, memory_report;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand("run", "generate text from a prompt, streaming tokens");
    st->flags.Add(sub);
    sub->add_option("-p,--prompt", st->prompt, "prompt text")->default_val("The king said");
    sub->add_option("-n,--n-predict", st->n_predict, "tokens to generate")->default_val(64);
    sub->add_option("--temp", st->temp, "temperature; 0 = greedy")->default_val(0.8f);
    sub->add_option("--top-k", st->top_k, "top-k (<= 0: off)")->default_val(40);
    sub->add_option("--top-p", st->top_p, "top-p (1: off)")->default_val(0.95f);
    sub->add_option("--min-p", st->min_p, "min-p (0: off)")->default_val(0.05f);
    sub->add_option("--repeat-penalty", st->repeat_penalty, "repetition penalty (1: off)")->default_val(1.0f);
    sub->add_option("--repeat-last-n", st->repeat_last_n, "tokens the penalty looks back at")->default_val(64);
    sub->add_option("-s,--seed", st->seed, "random seed");
    sub->add_option("--stop", st->stop, "stop string (repeatable)");
    sub->add_flag("--no-bos", st->no_bos, "do not prepend the BOS token");
    sub->add_flag("-q,--quiet", st->quiet, "print only the generated text");
    sub->add_option("--memory-log", st->memory_log, "write the ledger timeline (every allocation) as JSON");
    sub->add_option("--memory-report", st->memory_report, "write an HTML report with memory-by-component charts");
    return sub;
  };
  c.run = [st]() -> int {
    auto opts = st->flags.ToOptions();
    if (!opts.ok()) return Fail(opts.status());
    if (st->n_predict < 0) return Fail(InvalidArgument("-n must be >= 0"));
    // The monitor records every ledger event from the first allocation; the
    // engine detaches it (nullptr) before its ledger goes, keeping the timeline.
    std::unique_ptr<MemoryMonitor> monitor;
    std::optional<MemoryTimeline> timeline;
    auto write_reports = [&]() -> Status {
      if (!timeline) return Status::Ok();
      if (!st->memory_log.empty()) TF_RETURN_IF_ERROR(WriteMemoryLog(*timeline, st->memory_log));
      if (!st->memory_report.empty()) TF_RETURN_IF_ERROR(WriteMemoryReport(*timeline, st->memory_report));
      return Status::Ok();
    };
    if (!st->memory_log.empty() || !st->memory_report.empty()) {
      opts->ledger_hook = [&monitor, &timeline](MemoryLedger* ledger) {
        if (ledger) {
          MemoryMonitor::Options mo;
          mo.interval_ms = 50;
          monitor = std::make_unique<MemoryMonitor>(*ledger, mo);
          monitor->Start();
          monitor->Mark("load");
        } else if (monitor) {
          monitor->Mark("unload");
          monitor->Stop();
          timeline = monitor->Timeline();
          monitor.reset();
        }
      };
    }
    auto engine = Engine::LoadFile(st->flags.model, *opts);
    if (!engine.ok()) {
      (void)write_reports();  // the timeline up to the failure helps explain an out-of-memory
      return Fail(engine.status());
    }
    if (monitor) monitor->Mark("generate");
    if (!st->quiet && !(*engine)->load_report().empty()) std::fputs((*engine)->load_report().c_str(), stderr);
    GenerateOptions go;
    go.max_tokens = st->n_predict;
    go.sampler.temperature = st->temp;
    go.sampler.top_k = st->top_k;
    go.sampler.top_p = st->top_p;
    go.sampler.min_p = st->min_p;
    go.sampler.repeat_penalty = st->repeat_penalty;
    go.sampler.repeat_last_n = st->repeat_last_n;
    go.sampler.seed = st->seed;
    go.stop = st->stop;
    go.add_bos = !st->no_bos;
    std::fputs(st->prompt.c_str(), stdout);
    std::fflush(stdout);
    GenerateStats stats;
    Status s = (*engine)->Generate(st->prompt, go, [](const std::string& piece, int32_t) {
      std::fputs(piece.c_str(), stdout);
      std::fflush(stdout);
      return true;
    }, &stats);
    std::fputs("\n", stdout);
    if (!s.ok()) return Fail(s);
    if (!st->quiet) {
      std::fprintf(stderr, "\n%s, %d threads, context %d\n", st->flags.model.c_str(), (*engine)->threads(),
                   (*engine)->context_size());
      std::fprintf(stderr, "prompt:     %4d tokens in %8.3f s = %8.2f tokens/s\n", stats.prompt_tokens,
                   stats.prompt_seconds, stats.prompt_tokens_per_second());
      std::fprintf(stderr, "generation: %4d tokens in %8.3f s = %8.2f tokens/s (stop: %s)\n",
                   stats.generated_tokens, stats.generate_seconds, stats.generate_tokens_per_second(),
                   stats.stop_reason.c_str());
      if (stats.verify_passes > 0) {
        std::fprintf(stderr, "speculative: %d of %d draft tokens accepted (%.0f %%), %d verifying passes, %.2f tokens "
                     "per pass\n", stats.draft_accepted, stats.draft_proposed,
                     100.0 * stats.draft_accepted / std::max(1, stats.draft_proposed), stats.verify_passes,
                     static_cast<double>(stats.decode_steps) / stats.verify_passes);
      } else if (!st->flags.draft.empty()) {
        std::fprintf(stderr, "speculative: the draft is used for greedy decoding only (--temp 0)\n");
      }
      if (stats.streamed_bytes > 0) {
        std::fprintf(stderr, "streamed:   %s read for streamed layers, %s per generated token\n",
                     FormatBytes(stats.streamed_bytes).c_str(),
                     FormatBytes(stats.streamed_bytes / std::max(1, stats.generated_tokens)).c_str());
      }
      PrintMemoryReport(stderr, (*engine)->ledger());
    }
    if (monitor) {
      engine->reset();  // unload: the timeline ends with the ledger back at zero
      Status ws = write_reports();
      if (!ws.ok()) return Fail(ws);
    }
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeRunCommand, 0);

}  // namespace tabfit::cli
