// tabfit kv: one entry point that builds the KV cache a front end asked for.
//
// Types (KvCacheConfig::type; the same strings as EngineOptions::kv_type, the
// CLI's --kv-type and browser profiles' "kv_precision"):
//   "f32", "f16"        plain cells (plain_kv_cache.h)
//   "q8_0"              8-bit blocks of 32: the low-bit cache with a window as long
//                       as the context (storage grows; Requantize with a shorter
//                       window moves old tokens to 2/3/4 bits)
//   "q4_0"              4-bit blocks of 32 (quant_kv_cache.h)
//   "mixed"             8-bit window of the last `recent_window` tokens, 4-bit older
//   "kivi"              the KIVI-style low-bit cache (lowbit_kv_cache.h): old tokens
//                       at lowbit.default_bits, the last lowbit.rolling_window at
//                       lowbit.recent_token_bits; "kivi2", "kivi3", "kivi4" set the bits
// f16, f32, q8_0 and kivi grow with the tokens (storage in chunks); q4_0 and
// mixed allocate their capacity up front.
// With prune.auto_keep > 0, prune.auto_max_tokens > 0 or `pruning` the cache is
// wrapped in a PruningKvCache (any type): attention scores are tracked, so
// PruneNow() / Truncate() and automatic pruning can drop low-attention slots.
#pragma once

#include <memory>
#include <string>

#include "kv/lowbit_kv_cache.h"
#include "kv/pruning_kv_cache.h"
#include "model/llama/kv_cache.h"

namespace tabfit {

struct KvCacheOptions {
  int recent_window = 256;  // "mixed": tokens kept at 8 bits
  KvLowBitOptions lowbit;   // "kivi*"
  KvPruneOptions prune;     // auto_keep > 0 / auto_max_tokens > 0 turn on attention-score pruning
  bool pruning = false;     // track attention scores for on-demand pruning even without automatic pruning
};

// "f32, f16, q8_0, q4_0, mixed, kivi2, kivi3, kivi4" (for help texts and error messages).
const char* KvTypeList();
bool IsKvType(const std::string& type);

// Bytes MakeKvCache's cache holds with every context position used (0 if the
// config is invalid); the growing types hold less until the context fills.
uint64_t KvCacheBytes(const KvCacheConfig& config, const KvCacheOptions& options);

// "kivi2" -> the low-bit cache at 2 bits, etc. Fills options->lowbit.default_bits
// for the spellings that carry one; true for every low-bit spelling.
bool ParseLowBitKvType(const std::string& type, KvLowBitOptions* options);

Result<std::unique_ptr<KvCache>> MakeKvCache(const KvCacheConfig& config, const KvCacheOptions& options,
                                             MemoryLedger& ledger);

// The pruning layer of a cache made by MakeKvCache, or nullptr when it has none.
PruningKvCache* AsPruning(KvCache* cache);

}  // namespace tabfit
