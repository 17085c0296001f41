#include "cli/kv_flags.h"

#include <algorithm>

namespace tabfit::cli {

void KvFlags::Add(CLI::App* app) {
  app->add_option("--kv-bits", bits,
                  "low-bit KV cache (KIVI): old tokens at 2, 3 or 4 bits, keys per channel and values per token; "
                  "the last --kv-window tokens at --kv-recent-bits")
      ->default_val(0);
  app->add_option("--kv-recent-bits", recent_bits, "with --kv-bits: bits of the rolling window (8 or 16)")
      ->default_val(8);
  o_window = app->add_option("--kv-window", window, "with --kv-bits: tokens kept at --kv-recent-bits")
                 ->default_val(128);
  app->add_option("--kv-group", group, "with --kv-bits: tokens per key group and channels per value group (32, 64, 128)")
      ->default_val(32);
  app->add_option("--kv-prune-strategy", strategy,
                  "track attention for on-demand / automatic KV pruning: threshold (drop tokens scoring below "
                  "--kv-prune-threshold x the mean), budget (keep the best scored), window (keep the newest)");
  app->add_option("--kv-prune-threshold", threshold, "with strategy threshold: in [0, 1]")->default_val(0.5f);
  app->add_option("--kv-min-keep", min_keep, "pruning never keeps fewer tokens (min_tokens_to_keep)")->default_val(0);
  app->add_option("--kv-max-drop", max_drop, "pruning drops at most this fraction per call, in (0, 1]")
      ->default_val(0.5f);
  app->add_flag("--kv-frequency-aware", frequency_aware,
                "pruning also weighs how often a token was among the most attended");
  app->add_option("--kv-prune-decay", decay, "H2O-style decay of old attention per token, in (0, 1]")
      ->default_val(1.f);
}

Status KvFlags::Apply(std::string* kv_type, bool kv_type_given, int n_ctx, KvLowBitOptions* lowbit,
                      KvPruneOptions* prune) const {
  if (bits != 0) {
    if (bits < 2 || bits > 4) return InvalidArgument("--kv-bits must be 2, 3 or 4 (got " + std::to_string(bits) + ")");
    if (kv_type_given && kv_type->rfind("kivi", 0) != 0) {
      return InvalidArgument("--kv-bits " + std::to_string(bits) + " selects the low-bit KV cache; drop --kv-type " +
                             *kv_type + " (or use --kv-type kivi" + std::to_string(bits) + ")");
    }
    *kv_type = "kivi";
    lowbit->default_bits = bits;
  }
  if (recent_bits != 8 && recent_bits != 16) {
    return InvalidArgument("--kv-recent-bits must be 8 or 16 (got " + std::to_string(recent_bits) + ")");
  }
  const bool window_given = o_window && o_window->count() > 0;
  int w = window;
  if (!window_given && n_ctx > 0) w = std::min(w, n_ctx);  // the default fits any context
  if (w < 0 || (window_given && n_ctx > 0 && w > n_ctx)) {
    return InvalidArgument("--kv-window must be in [0, " + (n_ctx > 0 ? std::to_string(n_ctx) : "the context size") +
                           "] (got " + std::to_string(window) + ")");
  }
  if (group != 32 && group != 64 && group != 128) {
    return InvalidArgument("--kv-group must be 32, 64 or 128 (got " + std::to_string(group) + ")");
  }
  lowbit->recent_token_bits = recent_bits;
  lowbit->rolling_window = w;
  lowbit->group_size = group;
  if (!strategy.empty() && strategy != "threshold" && strategy != "budget" && strategy != "window") {
    return InvalidArgument("--kv-prune-strategy must be threshold, budget or window (got " + strategy + ")");
  }
  if (!(threshold >= 0.f && threshold <= 1.f)) {
    return InvalidArgument("--kv-prune-threshold must be in [0, 1] (got " + std::to_string(threshold) + ")");
  }
  if (!(max_drop > 0.f && max_drop <= 1.f)) {
    return InvalidArgument("--kv-max-drop must be in (0, 1] (got " + std::to_string(max_drop) + ")");
  }
  if (!(decay > 0.f && decay <= 1.f)) {
    return InvalidArgument("--kv-prune-decay must be in (0, 1] (got " + std::to_string(decay) + ")");
  }
  if (min_keep < 0) return InvalidArgument("--kv-min-keep must be >= 0");
  if (!strategy.empty()) prune->strategy = strategy;
  prune->threshold = threshold;
  prune->min_tokens_to_keep = min_keep;
  prune->max_tokens_to_drop = max_drop;
  prune->frequency_aware = frequency_aware;
  prune->decay = decay;
  return Status::Ok();
}

}  // namespace tabfit::cli
