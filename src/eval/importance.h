// tabfit eval: activation statistics ("importance matrix") for quantization.
//
// For every weight matrix W [rows x cols] the importance vector is the mean
// over calibration tokens of x_c^2, the squared input activation of column c
// ([cols] floats, non-negative) — exactly what QuantizeRow's `importance`
// argument expects. ImportanceCollector gathers it through
// ForwardScratch::observe_input; ImportanceMap stores, saves and loads it.
//
// File formats (chosen by the extension of the path):
//   *.json  {"format": "tabfit-importance", "version": 1, "tokens": N, "text_hash": H,
//            "tensors": {"blk.0.attn_q.weight": {"samples": N, "values": [...]}, ...}}
//   other   binary, little-endian: "TFIM" u32 version=1, u32 count, u64 tokens, u64 text_hash,
//           then per tensor: u32 name_len, name bytes, u64 cols, u64 samples, f32[cols].
//
// Thread-safety: ImportanceMap is immutable after Load/Finish (const use is
// thread-safe). ImportanceCollector::Observe must not run concurrently with
// itself (the forward pass calls observe_input from its calling thread).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace tabfit {

struct WeightMatrix;
struct ForwardScratch;

class ImportanceMap {
 public:
  struct Entry {
    std::vector<float> values;  // [cols] mean squared activation per input column
    uint64_t samples = 0;       // tokens it was averaged over
  };

  // [cols] values for a GGUF tensor name, or nullptr when the map has none.
  const float* For(const std::string& tensor_name) const;
  // Same, but nullptr also when the stored length differs from `cols`.
  const float* For(const std::string& tensor_name, int64_t cols) const;
  const std::map<std::string, Entry>& entries() const { return entries_; }
  void Set(const std::string& tensor_name, Entry e) { entries_[tensor_name] = std::move(e); }
  uint64_t tokens() const { return tokens_; }
  void set_tokens(uint64_t t) { tokens_ = t; }
  // FNV-1a 64 of the calibration text's bytes (0: unknown), so evaluation can
  // refuse to score on the text the statistics came from.
  uint64_t text_hash() const { return text_hash_; }
  void set_text_hash(uint64_t h) { text_hash_ = h; }
  bool empty() const { return entries_.empty(); }

  // Writes JSON for *.json paths, the binary format otherwise.
  Status Save(const std::string& path) const;
  static Result<ImportanceMap> Load(const std::string& path);
  static Result<ImportanceMap> ParseBinary(const uint8_t* data, size_t size, const std::string& name);
  static Result<ImportanceMap> ParseJson(const std::string& text, const std::string& name);

 private:
  std::map<std::string, Entry> entries_;
  uint64_t tokens_ = 0;
  uint64_t text_hash_ = 0;
};

// FNV-1a 64 of bytes.
uint64_t HashBytes(const void* data, size_t n);

// Accumulates sum of x^2 per column for every weight matrix the forward pass
// multiplies. Attach it to a ForwardScratch (the collector must outlive the
// scratch's use), run the calibration text, then Finish().
class ImportanceCollector {
 public:
  void Attach(ForwardScratch& scratch);
  void Observe(const WeightMatrix& w, const float* x, int n);
  // Counts tokens for ImportanceMap::tokens() (call once per forward step).
  void AddTokens(uint64_t n) { tokens_ += n; }
  ImportanceMap Finish() const;

 private:
  struct Acc {
    std::vector<double> sum;
    uint64_t samples = 0;
  };
  std::map<std::string, Acc> acc_;
  uint64_t tokens_ = 0;
};

class LlamaModel;

// Runs the calibration tokens (whole text with BOS) through `model` in chunks
// of n_ctx tokens whose first token is replaced by `bos` (as perplexity does),
// collecting the statistics. chunks 0: every complete chunk.
Result<ImportanceMap> CollectImportance(const LlamaModel& model, int32_t bos, const std::vector<int32_t>& tokens,
                                        int n_ctx, int chunks, int threads,
                                        const std::function<void(int, int)>& progress = nullptr);

}  // namespace tabfit
