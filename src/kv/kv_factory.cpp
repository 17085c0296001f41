#include "kv/kv_factory.h"

#include "kv/plain_kv_cache.h"
#include "kv/quant_kv_cache.h"

namespace tabfit {

const char* KvTypeList() { return "f32, f16, q8_0, q4_0, mixed"; }

bool IsKvType(const std::string& type) { return type == "f32" || type == "f16" || IsQuantKvType(type); }

uint64_t KvCacheBytes(const KvCacheConfig& c, const KvCacheOptions& o) {
  uint64_t bytes = 0;
  if (c.type == "f32" || c.type == "f16") {
    if (c.n_layers <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 || c.capacity <= 0) return 0;
    bytes = 2ull * c.n_layers * c.capacity * c.n_kv_heads * c.head_dim * (c.type == "f32" ? 4 : 2);
  } else {
    bytes = QuantKvCacheBytes(c, o.recent_window);
    if (bytes == 0) return 0;
  }
  if (o.prune.auto_keep > 0.f) bytes += 4ull * c.capacity * (2ull + static_cast<uint64_t>(c.n_layers) * c.n_kv_heads);
  return bytes;
}

Result<std::unique_ptr<KvCache>> MakeKvCache(const KvCacheConfig& config, const KvCacheOptions& options,
                                             MemoryLedger& ledger) {
  if (!IsKvType(config.type)) {
    return InvalidArgument("unknown KV cache type '" + config.type + "'; use one of " + KvTypeList());
  }
  std::unique_ptr<KvCache> cache;
  if (IsQuantKvType(config.type)) {
    TF_ASSIGN_OR_RETURN(cache, CreateQuantKvCache(config, options.recent_window, ledger));
  } else {
    TF_ASSIGN_OR_RETURN(cache, CreatePlainKvCache(config, ledger));
  }
  if (options.prune.auto_keep > 0.f) {
    TF_ASSIGN_OR_RETURN(auto pruning, PruningKvCache::Create(std::move(cache), options.prune, ledger));
    cache = std::move(pruning);
  }
  return cache;
}

PruningKvCache* AsPruning(KvCache* cache) { return dynamic_cast<PruningKvCache*>(cache); }

}  // namespace tabfit
