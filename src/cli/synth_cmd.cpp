// `tabfit synth`: a random-weight llama model of a real shape, written straight
// into the requested precision (for benchmarks; llama.cpp reads F16/Q8_0/Q4_0/Q2_K).
#include <chrono>
#include <unistd.h>

#include <cstdio>

#include "cli/commands.h"
#include "model/package/synth.h"
#include "quant/kernels.h"

namespace tabfit::cli {

namespace {

Command MakeSynthCommand() {
  struct State {
    std::string shape;
    std::string type = "f16";
    std::string out;
    uint64_t seed = 1;
    int threads = 0;
    bool quiet = false;
    bool quantize = false;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    std::string names;
    for (const auto& n : SynthShapeNames()) names += (names.empty() ? "" : ", ") + n;
    CLI::App* sub = app.add_subcommand("synth", "write a random-weight model of a real shape (speed tests only)");
    sub->add_option("--shape", st->shape, names + ", or layers=N,embd=N,ff=N,heads=N,kv_heads=N,vocab=N[,ctx=N]")
        ->required();
    sub->add_option("--type", st->type, "weight type: f32, f16, bf16, q8_0, q4_0, q2_k (for llama.cpp; tabfit cannot run it), tf_q8, tf_q4, "
                   "tf_q3, tf_q2, tf_q2r")
        ->default_val("f16");
    sub->add_option("-o,--output", st->out, "output GGUF file")->required();
    sub->add_option("--seed", st->seed, "random seed (same seed, same bytes)")->default_val(1);
    sub->add_option("-t,--threads", st->threads, "threads (default: all cores)");
    sub->add_flag("--quantize", st->quantize,
                  "quantize Gaussian rows (slow for tf_* types) instead of writing random codes and scales "
                  "directly (both: mean 0, RMS 0.02)");
    sub->add_flag("-q,--quiet", st->quiet, "no progress");
    return sub;
  };
  c.run = [st]() -> int {
    auto shape = FindSynthShape(st->shape);
    if (!shape.ok()) return Fail(shape.status());
    auto type = ParseTensorTypeName(st->type);
    if (!type.ok()) return Fail(type.status());
    SynthOptions so;
    so.type = *type;
    so.seed = st->seed;
    so.threads = st->threads;
    so.quantize = st->quantize;
    int last = -1;
    if (!st->quiet && isatty(fileno(stderr))) {
      so.progress = [&last](uint64_t done, uint64_t total) {
        int pct = total ? static_cast<int>(100 * done / total) : 100;
        if (pct != last) {
          last = pct;
          std::fprintf(stderr, "\r%3d%%", pct);
          std::fflush(stderr);
        }
      };
    }
    auto t0 = std::chrono::steady_clock::now();
    auto r = WriteSyntheticModel(*shape, so, st->out);
    if (last >= 0) std::fprintf(stderr, "\r    \r");
    if (!r.ok()) return Fail(r.status());
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%s: %s, %d layers, embd %d, ffn %d, heads %d/%d, vocab %d, ctx %d; %.1fM params, %s weights, "
                "%s (%.2f bits/param), %.1f s\n",
                st->out.c_str(), shape->name.c_str(), shape->n_layer, shape->n_embd, shape->n_ff, shape->n_head,
                shape->n_head_kv, shape->n_vocab, shape->n_ctx, r->n_params / 1e6,
                std::string(TensorTypeName(*type)).c_str(), FormatBytes(r->file_bytes).c_str(),
                8.0 * r->file_bytes / r->n_params, secs);
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeSynthCommand, 45);

}  // namespace tabfit::cli
