// tabfit model: llama-family weights and forward pass.
//
// Shapes (row-major, "rows x cols" = out x in; GGUF ne = [cols, rows]):
//   token_embd  [n_vocab x n_embd]     output (lm_head) [n_vocab x n_embd]
//   wq [q_dim x n_embd]   wk, wv [kv_dim x n_embd]   wo [n_embd x q_dim]
//   w_gate, w_up [n_ff x n_embd]       w_down [n_embd x n_ff]
//   norms [n_embd] f32
// Every weight lives in ledger buffers charged to "embeddings", "layers.N",
// "output_norm" or "lm_head"; matrices are row-chunked so no buffer exceeds
// the ledger's max buffer size.
//
// Thread-safety: after Load, the model is immutable; Forward uses caller-owned
// scratch (ForwardScratch) and a KvCache, so one model can serve several
// contexts, each with its own scratch and cache, one Forward at a time each.
#pragma once

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"
#include "core/thread_pool.h"
#include "model/llama/hparams.h"
#include "quant/kernels.h"
#include "quant/types.h"

namespace tabfit {

class GgufFile;
class KvCache;

// A weight matrix: `rows` rows of `cols` elements of `type`, stored row-chunked.
// layout: kRowMajor, or a run-time layout (quant/kernels.h) the loader gave a
// matrix that is only multiplied (never token_embd); chunks then hold whole tiles.
struct WeightMatrix {
  std::string name;  // GGUF tensor name
  TensorType type = TensorType::kF32;
  WeightLayout layout = WeightLayout::kRowMajor;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
  ChunkedBuffer data;
  // Row r's bytes; only for kRowMajor (a tiled matrix interleaves its rows).
  const uint8_t* row(int64_t r) const { return data.at(static_cast<size_t>(r) * row_bytes); }
  int64_t rows_per_chunk() const { return static_cast<int64_t>(data.units_per_chunk * (data.unit / row_bytes)); }
  uint64_t bytes() const { return data.total_bytes; }
};

struct LayerWeights {
  Buffer attn_norm, ffn_norm;   // f32 [n_embd]
  WeightMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
  Buffer bq, bk, bv;            // f32 biases (qwen2), empty otherwise
};

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
  // Reads hyper-parameters and every tensor of a GGUF into ledger buffers.
  static Result<std::unique_ptr<LlamaModel>> Load(const GgufFile& gguf, MemoryLedger& ledger,
                                                  const ModelLoadOptions& options);

  const LlamaHParams& hparams() const { return hp_; }
  uint64_t weight_bytes() const;
  // (tensor name, type, bytes) of every weight as loaded.
  std::vector<std::tuple<std::string, TensorType, uint64_t>> WeightTable() const;
  // (tensor name, layout) of every matrix the loader gave a run-time layout.
  std::vector<std::pair<std::string, WeightLayout>> LayoutTable() const;

  // Allocates scratch for batches of up to `max_tokens` with a context of n_ctx.
  Result<ForwardScratch> CreateScratch(MemoryLedger& ledger, int max_tokens, int n_ctx, int threads,
                                       bool all_logits) const;

  // Runs `n` tokens (n <= scratch.max_tokens) at positions kv.size()..+n-1.
  // Logits of the last token (or of all n when scratch.all_logits) end in
  // scratch.logits. Fails with kOutOfRange if the context would overflow.
  Status Forward(const int32_t* tokens, int n, KvCache& kv, ThreadPool& pool, ForwardScratch& scratch) const;

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
  WeightMatrix tok_embd_;
  WeightMatrix output_;      // lm_head (may alias tok_embd_ when tied)
  bool tied_output_ = false;
  Buffer output_norm_;
  std::vector<LayerWeights> layers_;
  float rope_theta_scale_ = 1.f;
  const WeightMatrix& lm_head() const { return tied_output_ ? tok_embd_ : output_; }
  // RoPE at `pos`: cs[i], sn[i] = cos, sin(pos * freq_scale * base^(-2i / n_rot)), i < n_rot / 2.
  void RopeTable(int pos, float* cs, float* sn) const;
  // Rotates the first n_rot dims of each of n_heads heads of x by the table of one position.
  void ApplyRope(float* x, int n_heads, const float* cs, const float* sn) const;
};

}  // namespace tabfit
