// tabfit eval: load a model for evaluation at a chosen precision.
//
// LoadEvalModel parses a GGUF, applies a PrecisionPlan (per-tensor types) with
// an optional importance map by re-quantizing into an in-memory GGUF
// (QuantizeGguf), and loads the LlamaModel from it — so every mixed-precision
// or importance-weighted variant runs through the same loader and forward pass
// as the engine. Without a plan the file is loaded as is.
// Memory: the in-memory GGUF (the quantized model's size) lives only during
// loading; afterwards the model holds its weights in `ledger`.
//
// Ownership: EvalModel owns its ledger, tokenizer and model; the ledger is
// declared first so it outlives every buffer charged to it.
#pragma once

#include <memory>
#include <string>

#include "core/ledger.h"
#include "core/status.h"
#include "eval/quantize_model.h"

namespace tabfit {

class GgufFile;
class ImportanceMap;
class LlamaModel;
class PrecisionPlan;
class Tokenizer;

struct EvalModel {
  MemoryLedger ledger;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<LlamaModel> model;
  QuantizedModel quant;       // per-tensor report (bytes cleared after loading)
  uint64_t source_file_bytes = 0;
  ~EvalModel();
};

struct EvalModelOptions {
  const PrecisionPlan* plan = nullptr;        // nullptr or empty: keep the file's types
  const ImportanceMap* importance = nullptr;  // optional
  int threads = 0;                            // for quantizing
  std::string save_path;                      // optional: also write the quantized GGUF here
};

Result<std::unique_ptr<EvalModel>> LoadEvalModel(const GgufFile& src, const EvalModelOptions& options);
// path: a GGUF file or a tabfit package directory (`tabfit convert` output).
Result<std::unique_ptr<EvalModel>> LoadEvalModel(const std::string& path, const EvalModelOptions& options);

}  // namespace tabfit
