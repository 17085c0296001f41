// tabfit model: llama-family weights and forward pass.
//
// Shapes (row-major, "rows x cols" = out x in; GGUF ne = [cols, rows]):
//   token_embd  [n_vocab x n_embd]     output (lm_head) [n_vocab x n_embd]
//   wq [q_dim x n_embd]   wk, wv [kv_dim x n_embd]   wo [n_embd x q_dim]
//   w_gate, w_up [n_ff x n_embd]       w_down [n_embd x n_ff]
//   norms [n_embd] f32
// Every weight lives in ledger buffers charged to "embeddings", "layers.N",
// "output_norm" or "lm_head" (or, for weights the loader streams, to its ring's
// component); matrices are row-chunked so no buffer exceeds the ledger's max
// buffer size. The weights are planned per component (weights.h) at Plan time;
// Load also reads them all (the model then holds them: ResidentWeights), while a
// residency manager (src/loader) allocates and reads components itself through
// AllocateComponent / ReadComponent and hands them to Forward via WeightAccess.
//
// Thread-safety: after Plan/Load, the model is immutable; Forward uses caller-owned
// scratch (ForwardScratch), a KvCache and a WeightAccess, so one model can serve
// several contexts, each with its own scratch and cache, one Forward at a time
// each. AllocateComponent / ReadComponent are const and may run on a loader
// thread while Forward runs on another.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/llama/hparams.h"
#include "model/llama/weights.h"
#include "quant/kernels.h"
#include "quant/types.h"

namespace tabfit {

class GgufFile;
class KvCache;

struct ModelLoadOptions {
  // Convert every 2-D weight to this type at load time (nullopt keeps the
  // file's types). Rows whose length does not fit the type's block size keep
  // their original type.
  std::optional<TensorType> weight_type;
  // Optional per-tensor override: returns the type for a GGUF tensor name or
  // nullopt for "use weight_type / keep". (Mixed precision plugs in here.)
  std::function<std::optional<TensorType>(const std::string& tensor_name)> type_for_tensor;
  // Give matrices that are only multiplied the run-time layout whose kernel is
  // fastest on this CPU (quant/kernels.h PreferredLayout; same bytes, in place).
  bool runtime_layouts = true;
  // Progress: bytes of tensor data read so far / total, current component.
  std::function<bool(uint64_t, uint64_t, const std::string&)> progress;
};

// Per-context activations, allocated once through the ledger ("activations").
struct ForwardScratch {
  int max_tokens = 0;
  Buffer x, xb, q, k, v, att, hb, hb2;   // [max_tokens][...] f32
  Buffer packed;                          // packed activations for the widest matmul
  Buffer scores;                          // [threads][n_gqa][n_ctx] attention probabilities
  Buffer logits;                          // [max_tokens][n_vocab] (or [1][n_vocab])
  Buffer positions;                       // int32 [max_tokens]
  Buffer rope;                            // RoPE cos then sin: [max_tokens][n_rot / 2] each
  int n_ctx = 0;
  int threads = 1;
  bool all_logits = false;
  // Each mat-mul's row shares per thread, learned from the threads' times
  // (site = layer * kMatMulSitesPerLayer + matrix slot; the output head last).
  WorkShares shares;
  // Optional: sees the input of every mat-mul (x: [n][w.cols] f32) before it
  // runs — calibration collects activation statistics through it.
  std::function<void(const WeightMatrix& w, const float* x, int n)> observe_input;
};

class LlamaModel {
 public:
  // Reads the hyper-parameters and plans every component (types, layouts, bytes;
  // shapes checked) without reading any weight. `max_buffer_bytes` is the ledger's
  // cap that chunking will use (a layout's tile must fit a chunk).
  static Result<std::unique_ptr<LlamaModel>> Plan(const GgufFile& gguf, const ModelLoadOptions& options,
                                                  uint64_t max_buffer_bytes);
  // Plan, then read every component into ledger buffers the model keeps
  // (Forward without a WeightAccess then uses them).
  static Result<std::unique_ptr<LlamaModel>> Load(const GgufFile& gguf, MemoryLedger& ledger,
                                                  const ModelLoadOptions& options);
  ~LlamaModel();

  const LlamaHParams& hparams() const { return hp_; }
  uint64_t weight_bytes() const;
  // (tensor name, type, bytes) of every weight matrix as planned.
  std::vector<std::tuple<std::string, TensorType, uint64_t>> WeightTable() const;
  // (tensor name, layout) of every matrix planned with a run-time layout.
  std::vector<std::pair<std::string, WeightLayout>> LayoutTable() const;

  // Components: layers 0..n_layer-1, then embeddings, output_norm and (untied) lm_head.
  int n_components() const { return static_cast<int>(plans_.size()); }
  const ComponentPlan& component(int c) const { return plans_[c]; }
  const std::vector<ComponentPlan>& components() const { return plans_; }
  int FindComponent(std::string_view name) const;  // -1 if none
  int embeddings_component() const { return hp_.n_layer; }
  int output_norm_component() const { return hp_.n_layer + 1; }
  // The component the output head reads (the embeddings when tied).
  int lm_head_component() const { return tied_output_ ? embeddings_component() : hp_.n_layer + 2; }
  bool tied_output() const { return tied_output_; }

  // Allocates buffers for component c's plan, charged to `charge_to` (its own
  // name normally). Nothing is read.
  Result<ComponentWeights> AllocateComponent(int c, MemoryLedger& ledger, std::string_view charge_to) const;
  // Reads component c from `gguf` (the file the model was planned from, or one
  // with the same tensors) into `out`, which holds buffers allocated for c or for
  // a component whose plan has the SameShape. Loader scratch is charged to
  // "loader" in `ledger`. `on_bytes(n)` is told of every n source bytes read and
  // cancels by returning false (kCancelled). Errors name the component and tensor.
  Status ReadComponent(int c, const GgufFile& gguf, MemoryLedger& ledger, ComponentWeights* out,
                       const std::function<bool(uint64_t)>& on_bytes = nullptr) const;
  // Zero-copy instead of Allocate + Read: component c's tensors mapped from
  // gguf's source (ByteSource::MapRange), charged to `charge_to`, the mapping
  // released with the last buffer. Only for a direct() plan (no conversion, no
  // layout); Unsupported otherwise or when the source cannot map.
  Result<ComponentWeights> MapComponent(int c, const GgufFile& gguf, MemoryLedger& ledger,
                                        std::string_view charge_to) const;

  // Allocates scratch for batches of up to `max_tokens` with a context of n_ctx,
  // charged to prefix + "activations" and prefix + "logits".
  Result<ForwardScratch> CreateScratch(MemoryLedger& ledger, int max_tokens, int n_ctx, int threads,
                                       bool all_logits, std::string_view prefix = {}) const;
  // Bytes CreateScratch charges (all components), for planning before loading.
  uint64_t ScratchBytes(int max_tokens, int n_ctx, int threads, bool all_logits) const;

  // Runs `n` tokens (n <= scratch.max_tokens) at positions kv.size()..+n-1.
  // Logits of the last token (or of all n when scratch.all_logits) end in
  // scratch.logits. Fails with kOutOfRange if the context would overflow, and
  // with what `weights` returns when a component cannot be had (the KV cache
  // then holds no part of the failed step). The first form uses the weights
  // Load read (InvalidArgument after Plan alone).
  Status Forward(const int32_t* tokens, int n, KvCache& kv, ThreadPool& pool, ForwardScratch& scratch) const;
  Status Forward(const int32_t* tokens, int n, KvCache& kv, ThreadPool& pool, ForwardScratch& scratch,
                 WeightAccess& weights) const;

 private:
  LlamaModel() = default;
  // y[n][w.rows] = x[n][w.cols] * W^T. reuse_packed: x was packed for the same
  // type by the previous call (q/k/v and gate/up share their input).
  // epilogue (optional): called by each thread for its rows [begin, end) of y
  // once they are computed (for all n tokens), so element-wise work that follows
  // the mat-mul runs on every thread without another barrier.
  // site: this call's WorkShares site in s.shares (-1: equal shares).
  using Epilogue = std::function<void(int64_t begin, int64_t end)>;
  void MatMul(ThreadPool& pool, const WeightMatrix& w, const float* x, int n, float* y, ForwardScratch& s, int site,
              bool reuse_packed = false, const Epilogue& epilogue = nullptr) const;
  // Mat-muls of the same input x (q/k/v; gate/up) in ONE parallel pass when they
  // share type and width (x is packed once; MatMulPass at `site`: every matrix
  // split by that site's shares, so gate and up rows [b, e) land on one thread).
  // Otherwise MatMul each (the i-th at site + i), the epilogue after the last.
  struct MatMulOut {
    const WeightMatrix* w;
    float* y;
  };
  void MatMulSameInput(ThreadPool& pool, std::initializer_list<MatMulOut> outs, const float* x, int n,
                       ForwardScratch& s, int site, const Epilogue& epilogue = nullptr) const;
  // One parallel pass over `outs` from s.packed: thread t computes, of every
  // matrix, the rows s.shares gives it at `site` (whole 16-row tiles), then the
  // epilogue over its rows of the last; its time feeds the site's shares.
  void MatMulPass(ThreadPool& pool, std::initializer_list<MatMulOut> outs, int n, ForwardScratch& s, int site,
                  const Epilogue& epilogue) const;
  // Rows [begin, end) of w for n tokens from already packed activations.
  void MatMulRange(const WeightMatrix& w, int64_t begin, int64_t end, const void* packed, int n, float* y) const;

  LlamaHParams hp_;
  std::vector<ComponentPlan> plans_;
  bool tied_output_ = false;
  float rope_theta_scale_ = 1.f;
  // After Load: every component, resident (index = component).
  class ResidentWeights;
  std::unique_ptr<ResidentWeights> resident_;
  // RoPE at `pos`: cs[i], sn[i] = cos, sin(pos * freq_scale * base^(-2i / n_rot)), i < n_rot / 2.
  void RopeTable(int pos, float* cs, float* sn) const;
  // Rotates the first n_rot dims of each of n_heads heads of x by the table of one position.
  void ApplyRope(float* x, int n_heads, const float* cs, const float* sn) const;
};

}  // namespace tabfit
