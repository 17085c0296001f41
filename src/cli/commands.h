// tabfit CLI: one file per subcommand; each registers itself through a Command.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "cli/kv_flags.h"
#include "engine/engine.h"

namespace tabfit::cli {

struct Command {
  // Adds the subcommand and its flags to the app (flags bind into state owned
  // by the closures) and returns it.
  std::function<CLI::App*(CLI::App&)> setup;
  std::function<int()> run;
};

// Every subcommand file (src/cli/*_cmd.cpp) registers its factory with a
// static initializer:  static const bool kRegistered = RegisterCommand(MakeFooCommand);
// The order of `tabfit --help` follows the `order` argument.
bool RegisterCommand(Command (*factory)(), int order = 100);
std::vector<Command> AllCommands();

// Shared helpers.
int ExitCodeFor(const Status& s);
int Fail(const Status& s);  // prints "error: ..." and returns the exit code
std::string DefaultModelPath();

// Engine flags shared by run / bench: -m, -t, -c, --budget, --max-buffer, --kv-type, --kv-recent, --kv-prune,
// --kv-sinks, --weight-type.
struct EngineFlags {
  std::string model;
  int threads = 0;
  int n_ctx = 0;
  int n_batch = 64;
  std::string budget;
  std::string max_buffer = "1GiB";
  std::string kv_type = "f16";
  int kv_recent = 256;     // --kv-recent: 8-bit window of the "mixed" KV cache
  float kv_prune = 0.f;    // --kv-prune: auto-prune to this fraction of the context when full (0: off)
  int kv_sinks = 4;        // --kv-sinks: first tokens pruning always keeps
  int kv_keep_recent = 0;  // --kv-keep-recent: last tokens pruning always keeps (0: auto)
  KvFlags kv;              // --kv-bits / --kv-window / pruning knobs
  std::string weight_type;
  std::string profile;
  std::string precision;  // precision config JSON (per-layer / per-tensor bits)
  bool adapt = false;
  bool no_repack = false;  // --no-repack: no run-time weight layouts (A/B and debugging)
  // Residency / progressive loading (the spec's names in EngineOptions::residency).
  std::string priority;        // --priority: comma-separated priority_components
  bool no_background = false;  // --no-background
  bool no_stream = false;      // --no-stream: unload_unused_layers = false
  std::string memory_threshold;
  int keep_layers = 0;         // --keep-layers: keep_n_layers_loaded
  int ring_slots = 2;
  bool naive_stream = false;
  bool mmap_stream = false;    // --mmap-stream: map_streamed_layers
  std::string draft;           // --draft MODEL
  int draft_tokens = 4;
  // Which flags the user gave (a profile fills in only the others).
  CLI::Option *o_threads = nullptr, *o_budget = nullptr, *o_max_buffer = nullptr, *o_kv = nullptr,
              *o_weight = nullptr, *o_ctx = nullptr;
  void Add(CLI::App* app);
  // Resolves defaults (bundled model) and sizes into EngineOptions.
  Result<EngineOptions> ToOptions();
};

// Prints the ledger (current and peak per component) and the process RSS.
void PrintMemoryReport(FILE* out, const MemoryLedger& ledger);


}  // namespace tabfit::cli
