// tabfit engine: the facade every front end uses (CLI, C API / wasm, shard worker).
//
// An Engine owns one loaded model (weights in the ledger), its tokenizer, a KV
// cache and a sampler. Load from a GGUF (file or any ByteSource) — tabfit
// packages plug in through the same ByteSource-based loader.
//
// Loading is progressive (loader/residency.h): Load returns once the priority
// components are in memory and the rest arrives on a loader thread while the
// model already runs; a model larger than the budget streams the layers that do
// not fit. An optional draft model (a second group, "draft") speeds up greedy
// decoding by speculation with the same output.
//
// Ownership: Engine owns everything it allocates; all of it is charged to
// engine.ledger() under component names ("embeddings", "layers.N", "lm_head",
// "output_norm", "stream_buffers", "loader", "kv_cache", "activations",
// "logits", "draft.*", ...). Destroying the Engine (or Unload) stops the loader
// thread and returns the ledger to zero.
// Thread-safety: one Engine is driven from one thread at a time; it uses its
// own thread pool internally (EngineOptions::threads) and a loader thread.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"
#include "engine/sampler.h"
#include "kv/lowbit_kv_cache.h"
#include "kv/pruning_kv_cache.h"
#include "loader/residency.h"
#include "quant/types.h"

namespace tabfit {

class ByteSource;
class GgufFile;
struct BrowserProfile;
class Tokenizer;
class LlamaModel;
class KvCache;
class ThreadPool;

struct EngineOptions {
  int threads = 0;                  // 0: hardware concurrency
  int n_ctx = 0;                    // 0: the model's context length (capped at 4096)
  int n_batch = 64;                 // prompt tokens per forward step
  uint64_t budget_bytes = 0;        // 0: unlimited; enforced by the ledger
  uint64_t max_buffer_bytes = 1ull << 30;  // no single buffer larger (browser limit)
  std::string kv_type = "f16";      // "f32", "f16", "q8_0", "q4_0", "mixed" (see kv/kv_factory.h)
  int kv_recent = 256;              // "mixed": the last kv_recent tokens stay 8-bit, older ones 4-bit
  // Attention-score KV pruning: 0 = off (exact, the default). In (0, 1): when
  // the context is full, drop the lowest-attention slots down to this fraction
  // of n_ctx (keeping kv_sinks first and kv_keep_recent last tokens) and go on,
  // so generation can run past n_ctx.
  float kv_prune = 0.f;
  int kv_sinks = 4;
  // Last tokens pruning never drops; 0 = auto: 3/4 of what pruning keeps
  // (kv_prune * n_ctx). Measured on the 30M test model: attention-score
  // selection only beats a plain sliding window when most of the kept budget
  // is the recent window.
  int kv_keep_recent = 0;
  // kv_type "kivi" (or "kivi2"/"kivi3"/"kivi4"): the low-bit cache's
  // default_bits, recent_token_bits, rolling_window and group_size.
  KvLowBitOptions kv_lowbit;
  // The spec's configure_pruning knobs (strategy, threshold, budget,
  // min_tokens_to_keep, max_tokens_to_drop, frequency_aware, decay,
  // auto_max_tokens / auto_interval); sinks and recent come from kv_sinks and
  // kv_keep_recent, auto_keep from kv_prune.
  KvPruneOptions kv_prune_config;
  // Track attention scores so PruneKv() works on demand (on by itself when
  // kv_prune > 0 or kv_prune_config.auto_max_tokens > 0).
  bool kv_pruning = false;
  // Weight type to convert to at load time: "" keeps the file's types;
  // "f32", "f16", "q8_0", "q4_0" (and tabfit formats once the quant module has them).
  std::string weight_type;
  // Run-time weight layouts (quant/kernels.h): matrices that are only multiplied
  // get the layout whose kernel is fastest on this CPU (same bytes, same results).
  bool runtime_layouts = true;
  // Per-tensor precision (a precision config or an adaptive plan): GGUF tensor
  // name -> type, or nullopt to fall back to weight_type / the file's type.
  std::function<std::optional<TensorType>(const std::string& tensor_name)> type_for_tensor;
  // A browser profile to check the plan against before loading (weights at
  // the chosen precision + KV at n_ctx + activations must fit its budget).
  // When it does not fit: with adapt_precision, the engine picks the highest
  // weight precision that fits (and says so in load_report()); without, Load
  // fails with kOutOfMemory naming what would fit.
  std::shared_ptr<const BrowserProfile> profile;
  bool adapt_precision = false;
  // Called with the engine's ledger before anything is allocated (so a
  // MemoryMonitor from src/memory can record the whole load), and with nullptr
  // just before the ledger is destroyed (also when Load fails): detach then.
  std::function<void(MemoryLedger*)> ledger_hook;
  // Progressive loading and layer residency, with the spec's names:
  // priority_components, background_loading, unload_unused_layers,
  // memory_threshold, keep_n_layers_loaded (and ring_slots, naive_streaming).
  ResidencyOptions residency;
  // Each component's state changes and bytes (a richer form of Load's progress
  // callback; either or both may be set). Called from the loader thread, also
  // after Load has returned, until every pinned component is in.
  LoadEventFn on_load_event;
  // Speculative decoding: a smaller model with the same vocabulary drafts
  // draft_tokens tokens that one forward pass of this model then verifies
  // (greedy decoding only; the output is the same token for token). Loaded with
  // the model unless draft_at_load is false (then LoadComponents({"draft"})).
  std::string draft_model;
  int draft_tokens = 4;
  bool draft_at_load = true;
  // Named component groups (group -> component names) that LoadComponents,
  // UnloadComponents and Swap accept by name. LoadFile of a tabfit package
  // fills them from its manifest's "groups" section when none are given.
  std::map<std::string, std::vector<std::string>> groups;
};

// A component or group as Engine::components() lists it.
struct EngineComponent {
  std::string name;            // "embeddings", "layers.3", "output_norm", "lm_head", "draft"
  std::string group;           // "model", "draft", or "group" (a named group: bytes and state over its members)
  uint64_t bytes = 0;          // in memory when resident
  std::string state;           // pending, loading, resident, evicted, streamed, failed
  bool pinned = false;         // kept once loaded (false: read each time it is needed)
  uint64_t loads = 0;          // times read from the source
  uint64_t bytes_read = 0;
  double reads_per_token = 0;  // loads / tokens evaluated so far
};

// Called while loading: bytes done / total and the component being loaded.
// Return false to cancel (Load then fails with kCancelled).
using LoadProgressFn = std::function<bool(uint64_t done, uint64_t total, const std::string& component)>;

struct GenerateOptions {
  int max_tokens = 128;
  SamplerParams sampler;
  std::vector<std::string> stop;    // stop strings (not included in the output)
  bool add_bos = true;
  bool stop_at_eos = true;
  bool parse_special = false;       // parse "<s>", "<|im_start|>"... in the prompt
};

struct GenerateStats {
  int prompt_tokens = 0;
  int generated_tokens = 0;
  int decode_steps = 0;     // single-token forward passes (generated_tokens - 1 normally)
  double prompt_seconds = 0;
  double generate_seconds = 0;
  double prompt_tokens_per_second() const { return prompt_seconds > 0 ? prompt_tokens / prompt_seconds : 0; }
  double generate_tokens_per_second() const {
    return generate_seconds > 0 ? decode_steps / generate_seconds : 0;
  }
  std::string stop_reason;  // "eos", "stop_string", "max_tokens", "cancelled", "context_full"
  // Speculative decoding (a draft loaded, greedy sampling): draft tokens
  // proposed, of which the model accepted, and the model's verifying passes.
  int draft_proposed = 0;
  int draft_accepted = 0;
  int verify_passes = 0;
  // Source bytes read for streamed layers during this generation.
  uint64_t streamed_bytes = 0;
};

// Receives each piece of generated text (complete UTF-8) and its token id.
// Return false to stop generation (stop_reason "cancelled").
using TokenFn = std::function<bool(const std::string& piece, int32_t token)>;

class Engine {
 public:
  static Result<std::unique_ptr<Engine>> LoadFile(const std::string& path, const EngineOptions& options,
                                                  LoadProgressFn progress = nullptr);
  static Result<std::unique_ptr<Engine>> Load(std::unique_ptr<ByteSource> source, const EngineOptions& options,
                                              LoadProgressFn progress = nullptr);
  ~Engine();

  // Tokenizes `prompt`, runs it, then generates. Clears the KV cache first.
  Status Generate(const std::string& prompt, const GenerateOptions& options, const TokenFn& on_token,
                  GenerateStats* stats = nullptr);

  // Low level: append tokens to the context and compute logits for the last
  // one (or for every one when all_logits). Logits stay valid until the next call.
  Status Eval(const std::vector<int32_t>& tokens, bool all_logits = false);
  const float* logits() const;      // [n_vocab] for the last token, or [n][n_vocab] with all_logits
  void ResetContext();              // empties the KV cache
  int context_used() const;
  int context_size() const;
  // True when KV pruning is on (EngineOptions::kv_prune > 0): Eval then never
  // fails for lack of room; it drops the least-attended tokens instead.
  bool context_can_grow() const;

  // The KV cache (the spec's KVCacheManager operations). Between generations only.
  const KvCache& kv_cache() const;
  // prune(): one prune by kv_prune_config (needs kv_pruning or automatic pruning).
  Result<KvPruneResult> PruneKv();
  // Keeps the kv_sinks first and the last keep_recent tokens.
  Result<KvPruneResult> TruncateKv(int keep_recent);
  // Lowers the stored tokens' precision (the low-bit cache and q8_0:
  // default_bits / recent_token_bits / a shorter rolling_window, -1 keeps one);
  // returns the bytes freed.
  Result<uint64_t> RequantizeKv(int default_bits, int recent_token_bits, int rolling_window = -1);
  // get(layer, position): the stored K and V of the token at RoPE `position`
  // (n_kv_heads * head_dim floats each); *bits its precision.
  Status KvGet(int layer, int position, float* k, float* v, int* bits) const;
  // reduce_context_window: the context becomes n_ctx tokens (<= the context
  // loaded with); tokens beyond it go, oldest first after the sinks, and their
  // KV chunks return to the ledger. Raising it again (up to the loaded context)
  // is allowed. Needs a cache whose storage grows (f16, f32, kivi*).
  Result<KvPruneResult> SetContextWindow(int n_ctx);
  // configure_pruning / enable_auto_pruning on a cache that tracks attention.
  Status ConfigureKvPruning(const KvPruneOptions& options);
  Status EnableKvAutoPruning(int max_tokens, int pruning_interval);

  // Drops all but the first n tokens of the context (n <= context_used()).
  Status TruncateContext(int n);

  // Components and groups: the model's (embeddings, layers.N, output_norm,
  // lm_head) with their residency, and the draft model as one entry "draft".
  std::vector<EngineComponent> components() const;
  // Loads (and keeps) / unloads components or groups by name: component names,
  // "layers", "all", "draft", and the names of options().groups. Idempotent;
  // every byte goes through the ledger.
  // Only while nothing runs (not from inside a generation callback).
  Status LoadComponents(const std::vector<std::string>& names);
  Status UnloadComponents(const std::vector<std::string>& names);
  // Unloads `unload`, then loads `load` (so the freed bytes are there for it).
  Status Swap(const std::vector<std::string>& unload, const std::vector<std::string>& load);
  // Blocks until every pinned component has arrived (or one failed: its error).
  Status WaitUntilLoaded();
  const Residency& residency() const { return *residency_; }
  bool draft_loaded() const;
  uint64_t tokens_evaluated() const { return tokens_evaluated_; }

  // Frees the model, KV cache and scratch; the ledger stays readable (and
  // reads zero afterwards). Every other call fails after Unload.
  void Unload();
  bool loaded() const { return model_ != nullptr; }

  const Tokenizer& tokenizer() const;
  const LlamaModel& model() const;
  MemoryLedger& ledger() { return ledger_; }
  const EngineOptions& options() const { return options_; }
  // What Load decided (profile check, adapted precision), one line each; may be empty.
  const std::string& load_report() const { return load_report_; }
  int threads() const;

 private:
  friend class Generation;
  Engine() = default;
  Status LoadDraft();
  // Replaces the names of options_.groups by their components.
  std::vector<std::string> ExpandGroups(const std::vector<std::string>& names) const;
  // The draft model's forward over `tokens` (appended to its context), its
  // logits after the last, its context length, and dropping all but n tokens.
  Status DraftEval(const std::vector<int32_t>& tokens);
  const float* draft_logits() const;
  int draft_context_used() const;
  Status DraftTruncate(int n);
  EngineOptions options_;
  std::string load_report_;
  MemoryLedger ledger_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Tokenizer> tokenizer_;
  Buffer tokenizer_charge_;  // the tokenizer's tables, charged as "tokenizer"
  std::unique_ptr<GgufFile> gguf_;  // the source the residency manager reads from
  std::unique_ptr<LlamaModel> model_;
  std::unique_ptr<Residency> residency_;
  std::unique_ptr<KvCache> kv_;
  struct State;
  std::unique_ptr<State> state_;
  struct Draft;
  std::unique_ptr<Draft> draft_;
  uint64_t tokens_evaluated_ = 0;
};

}  // namespace tabfit
