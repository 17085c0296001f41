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
#include <string>

#include "model/llama/kv_cache.h"

namespace tabfit {

struct KvPruneOptions {
  int sinks = 4;          // first slots always kept
  int recent = 64;        // last slots always kept (the protected recent window)
  float auto_keep = 0.f;  // 0: no automatic pruning when full; else the fraction of capacity MakeRoom prunes to
  // Baseline for comparisons: ignore the scores and keep the newest middle
  // slots (sinks + sliding window, as StreamingLLM).
  bool recency_only = false;

  // The spec's configure_pruning knobs, used by PruneNow() and interval pruning:
  //   strategy "threshold": drop tokens whose score is below threshold x the
  //     mean score of the prunable tokens (lowest first);
  //   "budget": keep the `budget` best-scoring tokens;
  //   "window": keep the `budget` newest (plus sinks) — a sliding window.
  // When the context is full (auto_keep), "threshold" first drops what is
  // below the threshold, then (like "budget") the lowest scored until the
  // next step fits; "window" drops the oldest.
  // Every strategy keeps the sinks and the recent window, never goes below
  // min_tokens_to_keep, and drops at most max_tokens_to_drop x size() per call.
  std::string strategy = "budget";
  float threshold = 0.5f;           // [0, 1]
  int budget = 0;                   // budget / window: tokens kept (0: half of those held)
  int min_tokens_to_keep = 0;
  float max_tokens_to_drop = 0.5f;  // (0, 1]
  // Weigh how often a token was among the most attended (attention >= twice
  // uniform in a query row): score x (0.5 + that fraction of rows).
  bool frequency_aware = false;
  // H2O-style decay: each committed token multiplies the attention gathered
  // so far by `decay` ((0, 1]; 1 = plain mean over every far query).
  float decay = 1.f;
  // enable_auto_pruning(max_tokens, pruning_interval): every `auto_interval`
  // tokens, MakeRoom prunes back to auto_max_tokens when the cache holds more.
  int auto_max_tokens = 0;
  int auto_interval = 0;
};

// Checks every knob; the message names the option (the spec's name) and its range.
Status CheckPruneOptions(const KvPruneOptions& options);

// What one prune did: tokens dropped and bytes the cache returned to the ledger.
struct KvPruneResult {
  int tokens = 0;
  uint64_t bytes = 0;
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

  Status Get(int layer, int slot, float* k, float* v, int* bits) const override {
    return inner_->Get(layer, slot, k, v, bits);
  }
  Status SetCapacity(int capacity) override;

  // Mean attention per query row of slot s (0 for a slot no query has seen yet).
  float score(int slot) const;
  // The score pruning ranks by: score(), weighted by frequency when frequency_aware.
  float rank_score(int slot) const;
  // The spec's prune(): one prune by the configured strategy.
  Result<KvPruneResult> PruneNow();
  // configure_pruning / enable_auto_pruning (options checked as at Create).
  Status Configure(const KvPruneOptions& options);
  Status EnableAutoPruning(int max_tokens, int pruning_interval);
  // Keeps the sinks and the last keep_recent tokens.
  Result<KvPruneResult> Truncate(int keep_recent);
  KvCache& inner() { return *inner_; }
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
  Buffer hits_acc_;  // frequency_aware: as acc_, rows where the slot was heavily attended
  Buffer hits_;      // [capacity] floats
  Status Allocate(MemoryLedger& ledger, int capacity);
  void Accumulate(int layer, int kv_head, int n_q, int n_visible, const float* scores) const;
  Result<KvPruneResult> DropLowest(int drop, bool oldest_first);
  MemoryLedger* ledger_ = nullptr;
  int alloc_capacity_ = 0;
  int since_auto_ = 0;
  uint64_t own_bytes_ = 0;
  int pruned_total_ = 0;
};

}  // namespace tabfit
