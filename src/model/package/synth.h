// tabfit model/package: synthetic llama-family models of real shapes with
// random weights (`tabfit synth`), for benchmarks and format tests.
//
// The file is a normal GGUF (architecture "llama") written row by row through
// GgufWriter's lazy fillers: memory stays at a few MiB per thread whatever the
// model size. 2-D weights have mean 0 and RMS `stddev`: random codes and scales
// of the requested block type (or, with SynthOptions::quantize, Gaussian rows
// quantized to it); norms are 1.0 (F32). The vocabulary is a valid
// SentencePiece-style ("llama") vocab of n_vocab pieces: <unk>, <s>, </s>, the
// 256 byte tokens <0x00>..<0xFF>, then "▁", characters, and "▁"-prefixed and
// plain letter n-grams with decreasing scores — so tokenizers (tabfit's and
// llama.cpp's) encode any text. F16/Q8_0/Q4_0/Q2_K files are readable by llama.cpp.
// Weights depend only on (seed, tensor name, row): the same arguments give the
// same bytes whatever the thread count.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "quant/types.h"

namespace tabfit {

struct SynthShape {
  std::string name;
  int n_layer = 0, n_embd = 0, n_ff = 0, n_head = 0, n_head_kv = 0, n_vocab = 0, n_ctx = 0;
  uint64_t ParameterCount() const;  // untied output
};

// Built-in shapes: "tinyllama-1.1b", "llama2-7b", "llama2-13b", "tiny" (tests),
// or an explicit "layers=2,embd=256,ff=512,heads=4,kv_heads=2,vocab=512,ctx=256".
// InvalidArgument (listing the known names) otherwise.
Result<SynthShape> FindSynthShape(const std::string& name);
std::vector<std::string> SynthShapeNames();

// Parses "f16", "Q4_0", "tf_q4", ... (case-insensitive) into a TensorType.
Result<TensorType> ParseTensorTypeName(const std::string& name);

struct SynthVocab {
  std::vector<std::string> tokens;
  std::vector<float> scores;
  std::vector<int32_t> types;  // TokenType values
};
// InvalidArgument if n_vocab < 260 (specials + bytes + "▁") or larger than the
// generator can spell (> 1,000,000).
Result<SynthVocab> MakeSynthVocab(int n_vocab);

struct SynthOptions {
  TensorType type = TensorType::kF16;  // every 2-D weight; norms stay F32
  uint64_t seed = 1;
  float stddev = 0.02f;
  int threads = 0;  // 0 = hardware concurrency
  // false (default): block formats get random codes and scales written directly
  // (dequantized weights: mean 0, RMS stddev; seconds for a 1.1B model; also
  // GGML Q2_K, which tabfit only reads). true: Gaussian rows through QuantizeRow
  // (slow for the TF formats; values are the format's rounding of a Gaussian).
  // F32/F16/BF16 are always Gaussian rows.
  bool quantize = false;
  std::function<void(uint64_t done, uint64_t total)> progress;  // tensor bytes
};

struct SynthResult {
  uint64_t file_bytes = 0;
  uint64_t n_params = 0;
};

// Writes the model to `path` (via path + ".tmp", renamed on success).
Result<SynthResult> WriteSyntheticModel(const SynthShape& shape, const SynthOptions& options,
                                        const std::string& path);

}  // namespace tabfit
