// tabfit kv: the plain KV cache — f32 or f16 cells allocated up front for
// `capacity` tokens, charged to the ledger component "kv_cache".
#pragma once

#include <memory>

#include "model/llama/kv_cache.h"

namespace tabfit {

Result<std::unique_ptr<KvCache>> CreatePlainKvCache(const KvCacheConfig& config, MemoryLedger& ledger);

}  // namespace tabfit
