// tabfit kv: the KIVI-style low-bit KV cache — old tokens at `default_bits`
// (2, 3 or 4), the last `rolling_window` tokens at `recent_token_bits` (8 or 16),
// storage that grows and shrinks with the tokens.
//
// Layout per layer (formats in lowbit_kernels.h):
//   low store: groups of G = group_size tokens. Keys are quantized per channel
//     over the group's G tokens (KIVI: key outliers live in channels), values
//     per token over Gv = min(G, head_dim) channels. A group is one key part
//     (n_kv_heads*head_dim channel records, head-major) and one value part
//     (n_kv_heads x G token records, head-major: a head's tokens are adjacent).
//   window: a ring of at most rolling_window + 2G cells at recent_token_bits
//     (8: Q8_0 blocks of 32; 16: f16). It always holds the newest
//     >= min(rolling_window, size) tokens; when a token arrives and the window
//     holds rolling_window + G, its oldest G cells are quantized into a new
//     low group (tokens move from the window into the low-bit store as it fills).
//   Slots [0, G*n_groups) are in the low store, the rest in the window.
// Storage: the low keys, low values, window keys and window values are each a
// ChunkedArray (kv_chunks.h): chunks of at most chunk_bytes (default
// min(1 MiB, the ledger's max buffer)) and 256 tokens (64 window cells),
// allocated as tokens arrive and freed as
// they leave, each chunk a ledger charge under KvCacheConfig::component. A
// scratch of G+2 cells of f32 ("<component>.scratch") is allocated up front.
//
// Attend runs on the stored blocks (no dequantized copy of the cache): key
// scores per low group with kvlow::Best().key_scores, window scores with the
// Q8_0 / f16 dot, then V accumulated per token from the quantized records.
//
// Retain (pruning), Truncate and Requantize rebuild one layer at a time: the
// kept tokens of a layer are decoded and appended to a fresh layer, then the
// old layer's chunks are freed — so the peak is the cache plus one layer, and
// the result equals a cache built from scratch from the kept tokens' decoded
// values (tested). Low-bit tokens re-encoded into new groups pick up the new
// group's range (a second rounding, bounded by the new scale / 2).
//
// Batches: Write stores a whole step's tokens before its queries attend, so in
// a prefill batch a query may see tokens of the same batch that were already
// moved into the low store; decode (one token per step) never does.
//
// Thread-safety: as KvCache — Write/Commit/Retain/Requantize from one thread;
// Attend may run concurrently for different (layer, kv head) pairs.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "model/llama/kv_cache.h"

namespace tabfit {

struct KvLowBitOptions {
  int default_bits = 2;       // old tokens: 2, 3 or 4
  int recent_token_bits = 8;  // the rolling window: 8 or 16
  int rolling_window = 128;   // newest tokens kept at recent_token_bits: 0..capacity
  int group_size = 32;        // G: 32, 64 or 128 (a multiple of 32 dividing... see CheckLowBitOptions)
  size_t chunk_bytes = 1u << 20;  // target chunk size (capped by the ledger's max buffer)
};

// Checks the options against the model's cache shape; the message names the
// option (the spec's names: default_bits, recent_token_bits, rolling_window,
// group_size) and its valid range.
Status CheckLowBitOptions(const KvCacheConfig& config, const KvLowBitOptions& options);

// Bytes the cache holds when all `tokens` (<= capacity) are stored, counting
// whole chunks; LowBitKvCacheBytes(c, o, c.capacity) is the plan's figure.
uint64_t LowBitKvCacheBytes(const KvCacheConfig& config, const KvLowBitOptions& options, int tokens);

class LowBitKvCache final : public KvCache {
 public:
  static Result<std::unique_ptr<LowBitKvCache>> Create(const KvCacheConfig& config, const KvLowBitOptions& options,
                                                       MemoryLedger& ledger);
  ~LowBitKvCache() override;

  const KvCacheConfig& config() const override;
  int size() const override;
  int position(int slot) const override;
  Status Write(int layer, int n, const int32_t* pos, const float* k, const float* v) override;
  Status Commit(int n, const int32_t* pos) override;
  void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
              float* out) const override;
  void AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible, float* scores,
                   float* out) const override;
  void Clear() override;
  Status Retain(const std::vector<bool>& keep) override;
  Status Get(int layer, int slot, float* k, float* v, int* bits) const override;
  Status SetCapacity(int capacity) override;
  uint64_t bytes() const override;

  // Lowers the precision of the tokens already stored (and of those to come):
  // default_bits to `default_bits`, the window to `recent_token_bits`, and
  // its length to `rolling_window` (each <= the current value; -1 keeps it).
  // Returns the bytes freed (what left the ledger).
  Result<uint64_t> Requantize(int default_bits, int recent_token_bits, int rolling_window = -1);

  const KvLowBitOptions& options() const;
  // Tokens currently in the low-bit store of `layer` (the rest are in the window).
  int low_tokens(int layer) const;

 private:
  struct Impl;
  explicit LowBitKvCache(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tabfit
