// tabfit model: the KV cache interface (implemented by the kv module, a layer above).
//
// The forward pass talks to the cache only through this interface, so the
// plain f16/f32 cache here and the quantized / pruning caches (low-bit old
// tokens, 8-bit recent window, attention-score pruning) are interchangeable.
//
// Model: one sequence; `n_layers` layers, each holding up to `capacity` cells.
// A cell stores one token's key and value for all KV heads:
//   key/value rows are [n_kv_heads * head_dim] floats (RoPE already applied to K).
// Cells are addressed by slot index 0..size()-1 in insertion order; each slot
// remembers its original position (RoPE position) so pruning may remove slots
// from the middle without re-rotating keys.
//
// Ownership: the cache allocates all its storage through the MemoryLedger it
// was given, under KvCacheConfig::component ("kv_cache", or "<component>.<detail>").
// Thread-safety: Write/Commit/Clear/Retain from one thread; Attend and AttendGroup
// may be called concurrently for different (layer, kv head) pairs in one step.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"

namespace tabfit {

struct KvCacheConfig {
  int n_layers = 0;
  int n_kv_heads = 0;
  int head_dim = 0;
  int capacity = 0;  // maximum cells (context length)
  std::string type = "f16";  // "f32", "f16" (plain); quantized types come from the kv module
  std::string component = "kv_cache";  // ledger name its storage is charged to (a draft model's: "draft.kv_cache")
};

class KvCache {
 public:
  virtual ~KvCache() = default;

  virtual const KvCacheConfig& config() const = 0;
  // Number of cells in use (the same for every layer after a full step).
  virtual int size() const = 0;
  // Original token position of slot i.
  virtual int position(int slot) const = 0;

  // Stores `n` new tokens for `layer` at positions pos[0..n): k and v are
  // [n][n_kv_heads * head_dim]. Must be called for every layer with the same
  // positions; the cell count advances after the last layer (Commit).
  virtual Status Write(int layer, int n, const int32_t* pos, const float* k, const float* v) = 0;
  // Makes the n tokens written by Write visible (size() += n).
  virtual Status Commit(int n, const int32_t* pos) = 0;

  // Attention for one query head over slots [0, n_visible):
  //   out[head_dim] = sum_s softmax_s(scale * q·K_s) V_s
  // where K/V are those of kv head `kv_head` in `layer`. `scores` is caller
  // scratch of at least n_visible floats; on return it holds the softmax
  // probabilities (the pruning caches read them). n_visible lets prefill apply
  // the causal mask (query at row t sees size()+t+1 slots during a batch).
  virtual void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
                      float* out) const = 0;
  // Attend for the n_q query heads that share kv head `kv_head` (grouped-query
  // attention): q and out are n_q rows of head_dim floats, scores n_q rows of
  // n_visible floats (row i: head i's probabilities on return). The default runs
  // Attend per head; a cache overrides it to read each K/V row once per group.
  virtual void AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible,
                           float* scores, float* out) const {
    const int hd = config().head_dim;
    for (int i = 0; i < n_q; ++i) {
      Attend(layer, kv_head, q + static_cast<size_t>(i) * hd, scale, n_visible,
             scores + static_cast<size_t>(i) * n_visible, out + static_cast<size_t>(i) * hd);
    }
  }

  // Drops every token (a cache whose storage grows with the tokens frees it).
  virtual void Clear() = 0;
  // Keeps only the slots for which keep[slot] is true, compacting in order
  // (a cache whose storage follows the tokens frees the chunks left empty).
  virtual Status Retain(const std::vector<bool>& keep) = 0;

  // The stored key and value of `slot` in `layer`, dequantized: k and v get
  // n_kv_heads * head_dim floats each; *bits (if not null) the precision the
  // slot is stored at (32, 16, 8, 4, 3 or 2). For inspection and tests.
  virtual Status Get(int layer, int slot, float* k, float* v, int* bits) const = 0;

  // Changes the capacity (most cells). Fails below size() (prune or truncate
  // first) and for caches whose storage is allocated once for the capacity.
  virtual Status SetCapacity(int capacity) {
    (void)capacity;
    return Unsupported("this KV cache type cannot change its capacity; use a cache type whose storage grows "
                       "(f16, f32 or the low-bit cache)");
  }

  // Bytes held (as charged to the ledger).
  virtual uint64_t bytes() const = 0;
};

}  // namespace tabfit
