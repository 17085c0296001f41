// tabfit kv: the plain KV cache — f32 or f16 cells, stored in chunks of up to
// 256 cells and a quarter of the capacity (each one ledger allocation under KvCacheConfig::component, made
// as tokens arrive; Retain and Clear free the chunks left empty).
#pragma once

#include <memory>

#include "model/llama/kv_cache.h"

namespace tabfit {

// Bytes the cache holds with `tokens` cells in use (whole chunks); with
// tokens = capacity, the plan's figure. max_buffer: the ledger's (0: none).
uint64_t PlainKvCacheBytes(const KvCacheConfig& config, uint64_t max_buffer, int tokens);

Result<std::unique_ptr<KvCache>> CreatePlainKvCache(const KvCacheConfig& config, MemoryLedger& ledger);

}  // namespace tabfit
