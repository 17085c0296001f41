// tabfit kv: attention-score pruning on top of any KV cache.
//
// PruningKvCache wraps another KvCache (plain or quantized) and records how
// much attention each slot receives: after every Attend it adds the softmax
// probabilities (the `scores` output) into a per-(layer, kv head) accumulator;
// Commit folds them into the slot's total mass and counts how many query rows
// saw the slot — but only from queries at least `recent` tokens after it
// (every token is heavily attended while it is local; that says nothing about
// whether it is needed once it is old). A slot's score is its mean attention
// per such query row:
//   score(s) = sum over steps, layers, heads, far query rows of p(s) / far rows
// (the mean, not the sum, so old slots are not favoured just for having been
// visible longer — the H2O "heavy hitter" idea, normalised).
//
// Prune(keep_slots) drops the lowest-scoring slots through Retain, but always
// keeps the first `sinks` slots (attention sinks) and the last `recent` slots.
// Slots keep their original RoPE position (position(slot)), so generation
// continues at position(size()-1)+1 with keys that were rotated once.
//
// Automatic pruning: MakeRoom(n) is what a driver (Engine, perplexity runner)
// calls before a forward step of n tokens. When the step does not fit in the
// capacity and auto_keep > 0, it prunes to min(auto_keep * capacity,
// capacity - n) slots; otherwise it leaves the cache as it is (the forward
// pass then reports "context full" exactly as without pruning).
//
// Memory: the accumulators (n_layers * n_kv_heads * capacity floats, plus
// two floats per slot) are allocated up front under "kv_cache.scores".
// Thread-safety: as KvCache. Concurrent Attend calls for heads that share a
// kv head add into the same accumulator with atomic float adds.
#pragma once

#include <memory>

#include "model/llama/kv_cache.h"

namespace tabfit {

struct KvPruneOptions {
  int sinks = 4;          // first slots always kept
  int recent = 64;        // last slots always kept
  float auto_keep = 0.f;  // 0: no automatic pruning; else the fraction of capacity MakeRoom prunes to
  // Baseline for comparisons: ignore the scores and keep the newest middle
  // slots (sinks + sliding window, as StreamingLLM).
  bool recency_only = false;
};

class PruningKvCache final : public KvCache {
 public:
  static Result<std::unique_ptr<PruningKvCache>> Create(std::unique_ptr<KvCache> inner, const KvPruneOptions& options,
                                                        MemoryLedger& ledger);

  const KvCacheConfig& config() const override { return inner_->config(); }
  int size() const override { return inner_->size(); }
  int position(int slot) const override { return inner_->position(slot); }
  Status Write(int layer, int n, const int32_t* pos, const float* k, const float* v) override;
  Status Commit(int n, const int32_t* pos) override;
  void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
              float* out) const override;
  void AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible, float* scores,
                   float* out) const override;
  void Clear() override;
  Status Retain(const std::vector<bool>& keep) override;
  uint64_t bytes() const override { return inner_->bytes() + own_bytes_; }

  // Mean attention per query row of slot s (0 for a slot no query has seen yet).
  float score(int slot) const;
  // Keeps at most max(keep_slots, sinks + recent) slots; returns how many were dropped.
  Result<int> Prune(int keep_slots);
  // Makes room for n more tokens when automatic pruning is on (see above);
  // returns how many slots were dropped (0 if it fit or auto pruning is off).
  Result<int> MakeRoom(int n);
  const KvPruneOptions& options() const { return opt_; }
  int pruned_total() const { return pruned_total_; }

 private:
  PruningKvCache() = default;
  std::unique_ptr<KvCache> inner_;
  KvPruneOptions opt_;
  Buffer acc_;    // [n_layers * n_kv_heads][capacity] floats, this step's probabilities
  Buffer mass_;   // [capacity] floats
  Buffer seen_;   // [capacity] floats: query rows that saw the slot
  uint64_t own_bytes_ = 0;
  int pruned_total_ = 0;
};

}  // namespace tabfit
