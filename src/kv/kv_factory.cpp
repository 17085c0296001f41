#include "kv/kv_factory.h"

#include "kv/plain_kv_cache.h"
#include "kv/quant_kv_cache.h"

namespace tabfit {

const char* KvTypeList() { return "f32, f16, q8_0, q4_0, mixed, kivi2, kivi3, kivi4"; }

bool ParseLowBitKvType(const std::string& type, KvLowBitOptions* options) {
  if (type == "kivi") return true;
  if (type == "kivi2" || type == "kivi3" || type == "kivi4") {
    if (options) options->default_bits = type[4] - '0';
    return true;
  }
  return false;
}

namespace {
// "q8_0" is the low-bit cache whose 8-bit window is the whole context: the same
// Q8_0 cells, in storage that grows, read by the tiled attention path.
KvLowBitOptions Q8Window(const KvCacheConfig& c) {
  KvLowBitOptions o;
  o.default_bits = 4;  // never used: no token leaves a window as long as the context
  o.recent_token_bits = 8;
  o.rolling_window = c.capacity;
  return o;
}
}  // namespace

bool IsKvType(const std::string& type) {
  return type == "f32" || type == "f16" || IsQuantKvType(type) || ParseLowBitKvType(type, nullptr);
}

uint64_t KvCacheBytes(const KvCacheConfig& c, const KvCacheOptions& o) {
  uint64_t bytes = 0;
  KvLowBitOptions lb = o.lowbit;
  if (c.type == "f32" || c.type == "f16") {
    bytes = PlainKvCacheBytes(c, 0, c.capacity);
    if (bytes == 0) return 0;
  } else if (ParseLowBitKvType(c.type, &lb)) {
    bytes = LowBitKvCacheBytes(c, lb, c.capacity);
    if (bytes == 0) return 0;
  } else if (c.type == "q8_0") {
    bytes = LowBitKvCacheBytes(c, Q8Window(c), c.capacity);
    if (bytes == 0) return 0;
  } else {
    bytes = QuantKvCacheBytes(c, o.recent_window);
    if (bytes == 0) return 0;
  }
  if (o.pruning || o.prune.auto_keep > 0.f || o.prune.auto_max_tokens > 0) bytes += 4ull * c.capacity * (2ull + static_cast<uint64_t>(c.n_layers) * c.n_kv_heads);
  return bytes;
}

Result<std::unique_ptr<KvCache>> MakeKvCache(const KvCacheConfig& config, const KvCacheOptions& options,
                                             MemoryLedger& ledger) {
  if (!IsKvType(config.type)) {
    return InvalidArgument("unknown KV cache type '" + config.type + "'; use one of " + KvTypeList());
  }
  std::unique_ptr<KvCache> cache;
  KvLowBitOptions lb = options.lowbit;
  if (ParseLowBitKvType(config.type, &lb)) {
    TF_ASSIGN_OR_RETURN(cache, LowBitKvCache::Create(config, lb, ledger));
  } else if (config.type == "q8_0") {
    TF_ASSIGN_OR_RETURN(cache, LowBitKvCache::Create(config, Q8Window(config), ledger));
  } else if (IsQuantKvType(config.type)) {
    TF_ASSIGN_OR_RETURN(cache, CreateQuantKvCache(config, options.recent_window, ledger));
  } else {
    TF_ASSIGN_OR_RETURN(cache, CreatePlainKvCache(config, ledger));
  }
  if (options.pruning || options.prune.auto_keep > 0.f || options.prune.auto_max_tokens > 0) {
    TF_ASSIGN_OR_RETURN(auto pruning, PruningKvCache::Create(std::move(cache), options.prune, ledger));
    cache = std::move(pruning);
  }
  return cache;
}

PruningKvCache* AsPruning(KvCache* cache) { return dynamic_cast<PruningKvCache*>(cache); }

}  // namespace tabfit
