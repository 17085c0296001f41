// tabfit eval: perplexity exactly as llama.cpp's llama-perplexity, plus KL
// divergence and top-1 agreement against reference log-probabilities.
//
// Method (golden README): tokenize the whole text once with BOS; split into
// consecutive chunks of n_ctx tokens (the incomplete tail is dropped); in each
// chunk replace the first token by BOS, run it, and score positions
// first..n_ctx-2 (first = n_ctx/2 by default) predicting the next token.
// PPL = exp(mean NLL). Against a reference: per scored position
// KL(P_ref || P_model) over the full vocabulary and whether the arg-max agree.
//
// Reference logits file ("--save-logits"), little-endian:
//   header: "TFLG", u32 version=2, u32 n_vocab, u32 n_ctx, u32 first, u32 n_chunks,
//           u64 tokens_hash (FNV-1a 64 over the int32 tokens of all scored chunks),
//           f32 step (log-prob units per code; range = 65535 * step)
//   per scored position (n_chunks * (n_ctx - 1 - first) of them, in order):
//           f32 lp_max (the largest log-probability), i32 target token,
//           f32 lp_target (its exact log-probability), u16 code[n_vocab]
//           log p_i = lp_max - code_i * step   (code 65535 = "at most lp_max - range")
//           except log p_target = lp_target (so the reference's own PPL is exact).
//   step = 24/65535 (range 24 nats): log-probs within 24 nats of the top token are
//   stored to +-1.8e-4 absolute; lower ones (p < 4e-11 relative) saturate, which
//   changes KL by less than 1e-9 per position.
//   Version 1 files (no target fields) are still read.
// Size: 12 + 2 * n_vocab bytes per position (30M test model, 72 chunks: 150 MB).
//
// Thread-safety: a PerplexityRunner is used from one thread; it owns its
// scratch, KV cache and thread pool.
#pragma once

#include <cstdint>
#include <functional>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"
#include "kv/lowbit_kv_cache.h"
#include "kv/pruning_kv_cache.h"

namespace tabfit {

class LlamaModel;
class KvCache;
class ThreadPool;
struct ForwardScratch;

struct PerplexityOptions {
  int n_ctx = 512;
  int n_chunks = 0;        // 0: every complete chunk
  int first = -1;          // first scored position; -1: n_ctx / 2
  int threads = 0;         // 0: hardware concurrency
  std::string kv_type = "f16";  // any kv/kv_factory.h type: f32, f16, q8_0, q4_0, mixed
  int kv_recent = 256;           // "mixed": 8-bit window
  // Attention-score pruning: > 0 gives the KV cache room for only
  // kv_prune * n_ctx tokens; each chunk then runs in batches of 16 tokens and
  // the least-attended slots (never the first kv_sinks nor the last kv_keep_recent) are
  // dropped whenever a batch does not fit. 0: off (one batch per chunk).
  float kv_prune = 0.f;
  int kv_sinks = 4;
  int kv_keep_recent = 0;         // last tokens pruning never evicts; 0: 3/4 of the KV capacity
  bool kv_prune_recency = false;  // baseline: evict the oldest non-sink tokens instead (StreamingLLM)
  KvLowBitOptions kv_lowbit;       // kv_type "kivi*": default_bits, recent_token_bits, rolling_window, group_size
  KvPruneOptions kv_prune_config;  // strategy, threshold, frequency_aware, decay... (sinks/recent as above)
};

// Scored positions of one chunk: [n_scored][n_vocab] log-probabilities.
class ReferenceSink {
 public:
  virtual ~ReferenceSink() = default;
  // targets: [n_scored] the token each scored position predicts.
  virtual Status AddChunk(const float* logprobs, const int32_t* targets, int n_scored, int n_vocab) = 0;
};
class ReferenceSource {
 public:
  virtual ~ReferenceSource() = default;
  // Log-probs of chunk `chunk` ([n_scored][n_vocab]); valid until the next call.
  virtual Result<const float*> Chunk(int chunk, int n_scored, int n_vocab) = 0;
};

struct ReferenceHeader {
  uint32_t n_vocab = 0, n_ctx = 0, first = 0, n_chunks = 0;
  uint64_t tokens_hash = 0;
  float step = 24.f / 65535.f;
};

// Writes the reference logits file (see above).
class ReferenceFileWriter : public ReferenceSink {
 public:
  static Result<std::unique_ptr<ReferenceFileWriter>> Create(const std::string& path, const ReferenceHeader& h);
  Status AddChunk(const float* logprobs, const int32_t* targets, int n_scored, int n_vocab) override;
  Status Finish();  // flushes and renames path.tmp -> path; checks the chunk count
 private:
  std::string path_;
  std::ofstream f_;
  ReferenceHeader h_;
  uint32_t chunks_ = 0;
};

class ReferenceFileReader : public ReferenceSource {
 public:
  static Result<std::unique_ptr<ReferenceFileReader>> Open(const std::string& path);
  const ReferenceHeader& header() const { return h_; }
  Result<const float*> Chunk(int chunk, int n_scored, int n_vocab) override;
 private:
  std::string path_;
  std::ifstream f_;
  ReferenceHeader h_;
  uint32_t version_ = 0;
  std::vector<uint8_t> raw_;
  std::vector<float> lp_;
};

// Keeps every chunk's log-probs in memory (small evaluations, sensitivity runs).
class MemoryReference : public ReferenceSink, public ReferenceSource {
 public:
  Status AddChunk(const float* logprobs, const int32_t* targets, int n_scored, int n_vocab) override;
  Result<const float*> Chunk(int chunk, int n_scored, int n_vocab) override;
 private:
  std::vector<std::vector<float>> chunks_;
};

struct PerplexityResult {
  int n_chunks = 0;
  int64_t n_scored = 0;
  double nll_mean = 0, nll_stderr = 0;
  double ppl() const;
  double ppl_stderr() const;  // ppl * nll_stderr (llama.cpp's "+/-")
  bool has_reference = false;
  double kl_mean = 0, kl_stderr = 0;
  double kl_max = 0;
  double top1 = 0, top1_stderr = 0;   // fractions
  double ref_nll_mean = 0;            // the reference's own NLL on the scored tokens
  double seconds = 0;
  std::vector<double> chunk_ppl;      // running PPL after each chunk
};

// FNV-1a 64 of int32 tokens (to check a reference file matches the text).
uint64_t HashTokens(const int32_t* tokens, size_t n);

// In-place log-softmax of logits[n] (float math, double sum).
void LogSoftmax(const float* logits, int n, float* out);

class PerplexityRunner {
 public:
  // Allocates scratch and KV cache for `model` (which must outlive the runner).
  static Result<std::unique_ptr<PerplexityRunner>> Create(const LlamaModel& model, const PerplexityOptions& o);
  ~PerplexityRunner();

  // Number of chunks Run will score for `n_tokens` tokens.
  int ChunksFor(size_t n_tokens) const;
  int first() const { return first_; }
  int n_scored_per_chunk() const { return opt_.n_ctx - 1 - first_; }
  // The KV cache's bytes (as the ledger holds them) and tokens after the last chunk.
  uint64_t kv_bytes() const;
  int kv_tokens() const;

  // tokens: the whole text with BOS (Tokenizer::Encode(text, true)); bos: its id.
  // save: receives each chunk's log-probs; ref: compares against them.
  // progress(chunk, n_chunks, running_ppl) may return false to cancel.
  Result<PerplexityResult> Run(const std::vector<int32_t>& tokens, int32_t bos, ReferenceSink* save,
                               ReferenceSource* ref,
                               const std::function<bool(int, int, double)>& progress = nullptr);

  // Runs one chunk and returns its log-probs at the scored positions
  // ([n_scored][n_vocab]); valid until the next call.
  Result<const float*> ChunkLogProbs(const int32_t* chunk_tokens);

  MemoryLedger& ledger() { return ledger_; }
  // The forward scratch (e.g. to set observe_input for calibration).
  ForwardScratch& scratch() { return *scratch_; }

 private:
  PerplexityRunner() = default;
  const LlamaModel* model_ = nullptr;
  PerplexityOptions opt_;
  int first_ = 0;
  MemoryLedger ledger_;
  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<KvCache> kv_;
  std::unique_ptr<ForwardScratch> scratch_;
  std::vector<float> lp_;
};

}  // namespace tabfit
