// tabfit cli: the KV cache flags run, bench and eval share — the low-bit cache
// (--kv-bits, --kv-recent-bits, --kv-window, --kv-group) and the pruning knobs
// (--kv-prune-strategy, --kv-prune-threshold, --kv-min-keep, --kv-max-drop,
// --kv-frequency-aware, --kv-prune-decay). Checked here so errors name the flag.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "core/status.h"
#include "kv/lowbit_kv_cache.h"
#include "kv/pruning_kv_cache.h"

namespace tabfit::cli {

struct KvFlags {
  int bits = 0;             // --kv-bits: 2, 3, 4 turns on the low-bit cache (0: --kv-type decides)
  int recent_bits = 8;      // --kv-recent-bits
  int window = 128;         // --kv-window
  int group = 32;           // --kv-group
  std::string strategy;     // --kv-prune-strategy (empty: not set)
  float threshold = 0.5f;
  int min_keep = 0;
  float max_drop = 0.5f;
  bool frequency_aware = false;
  float decay = 1.f;
  CLI::Option* o_window = nullptr;
  void Add(CLI::App* app);
  // Fills the low-bit options and the pruning knobs; *kv_type becomes "kivi"
  // when --kv-bits is given (and must not contradict --kv-type).
  Status Apply(std::string* kv_type, bool kv_type_given, int n_ctx, KvLowBitOptions* lowbit,
               KvPruneOptions* prune) const;
};

}  // namespace tabfit::cli
