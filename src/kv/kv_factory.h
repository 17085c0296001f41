// tabfit kv: one entry point that builds the KV cache a front end asked for.
//
// Types (KvCacheConfig::type; the same strings as EngineOptions::kv_type, the
// CLI's --kv-type and browser profiles' "kv_precision"):
//   "f32", "f16"        plain cells (plain_kv_cache.h)
//   "q8_0", "q4_0"      8-bit / 4-bit blocks of 32 (quant_kv_cache.h)
//   "mixed"             8-bit window of the last `recent_window` tokens, 4-bit older
// With prune.auto_keep > 0 the cache is wrapped in a PruningKvCache (any type),
// which lets generation go on past the capacity by dropping low-attention slots.
#pragma once

#include <memory>
#include <string>

#include "kv/pruning_kv_cache.h"
#include "model/llama/kv_cache.h"

namespace tabfit {

struct KvCacheOptions {
  int recent_window = 256;  // "mixed": tokens kept at 8 bits
  KvPruneOptions prune;     // auto_keep > 0 turns on attention-score pruning
};

// "f32, f16, q8_0, q4_0, mixed" (for help texts and error messages).
const char* KvTypeList();
bool IsKvType(const std::string& type);

// Bytes MakeKvCache will charge for this config (0 if the config is invalid).
uint64_t KvCacheBytes(const KvCacheConfig& config, const KvCacheOptions& options);

Result<std::unique_ptr<KvCache>> MakeKvCache(const KvCacheConfig& config, const KvCacheOptions& options,
                                             MemoryLedger& ledger);

// The pruning layer of a cache made by MakeKvCache, or nullptr when it has none.
PruningKvCache* AsPruning(KvCache* cache);

}  // namespace tabfit
