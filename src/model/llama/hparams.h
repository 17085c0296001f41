// tabfit model: llama-family hyper-parameters read from GGUF metadata.
//
// Supported architectures (general.architecture): llama (also Mistral,
// TinyLlama, SmolLM, which use it), mistral, qwen2 (q/k/v bias, NEOX RoPE).
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace tabfit {

class GgufFile;

enum class RopeOrdering {
  kNormal,  // rotate adjacent pairs (x[2i], x[2i+1]) — GGUF llama
  kNeox,    // rotate (x[i], x[i + n_rot/2]) — qwen2, gpt-neox
};

struct LlamaHParams {
  std::string arch;
  int n_vocab = 0;
  int n_embd = 0;
  int n_layer = 0;
  int n_head = 0;
  int n_head_kv = 0;
  int head_dim = 0;   // key/value length per head
  int n_ff = 0;
  int n_ctx_train = 0;
  int n_rot = 0;      // rotated dimensions per head (<= head_dim)
  float rms_eps = 1e-5f;
  float rope_base = 10000.f;
  float rope_freq_scale = 1.f;  // positions are multiplied by this (linear scaling)
  RopeOrdering rope = RopeOrdering::kNormal;
  bool qkv_bias = false;

  int n_gqa() const { return n_head / n_head_kv; }
  int q_dim() const { return n_head * head_dim; }
  int kv_dim() const { return n_head_kv * head_dim; }
  // Number of parameters implied by the shapes (untied output assumed when `untied`).
  uint64_t ParameterCount(bool untied_output) const;
};

// Reads and validates the hyper-parameters; errors name the file and the key.
Result<LlamaHParams> ReadLlamaHParams(const GgufFile& gguf);

}  // namespace tabfit
