#include "model/llama/hparams.h"

#include "model/gguf/gguf.h"

namespace tabfit {

namespace {

bool IsSupportedArch(const std::string& a) { return a == "llama" || a == "mistral" || a == "qwen2"; }

}  // namespace

uint64_t LlamaHParams::ParameterCount(bool untied_output) const {
  uint64_t d = n_embd;
  uint64_t per_layer = d * q_dim() + 2 * d * kv_dim() + q_dim() * d + 3 * d * n_ff + 2 * d;
  if (qkv_bias) per_layer += q_dim() + 2 * kv_dim();
  return static_cast<uint64_t>(n_vocab) * d * (untied_output ? 2 : 1) + n_layer * per_layer + d;
}

Result<LlamaHParams> ReadLlamaHParams(const GgufFile& g) {
  const std::string& file = g.source().name();
  LlamaHParams hp;
  TF_ASSIGN_OR_RETURN(hp.arch, g.GetString("general.architecture"));
  if (!IsSupportedArch(hp.arch)) {
    return Unsupported(file + ": unknown architecture '" + hp.arch +
                       "'; tabfit runs llama-family models (llama, mistral, qwen2 — TinyLlama, SmolLM and "
                       "Mistral GGUFs use these); convert another model or pick a supported one");
  }
  const std::string a = hp.arch + ".";
  auto need = [&](const std::string& key, int* out, int64_t lo, int64_t hi) -> Status {
    auto v = g.GetU64(a + key);
    if (!v.ok()) return v.status();
    if (static_cast<int64_t>(*v) < lo || static_cast<int64_t>(*v) > hi) {
      return CorruptData(file + ": " + a + key + " = " + std::to_string(*v) + " is outside [" + std::to_string(lo) +
                         ", " + std::to_string(hi) + "]; the file's metadata is damaged");
    }
    *out = static_cast<int>(*v);
    return Status::Ok();
  };
  TF_RETURN_IF_ERROR(need("embedding_length", &hp.n_embd, 1, 1 << 16));
  TF_RETURN_IF_ERROR(need("block_count", &hp.n_layer, 1, 1024));
  TF_RETURN_IF_ERROR(need("feed_forward_length", &hp.n_ff, 1, 1 << 18));
  TF_RETURN_IF_ERROR(need("attention.head_count", &hp.n_head, 1, 1024));
  hp.n_head_kv = hp.n_head;
  if (g.Find(a + "attention.head_count_kv")) TF_RETURN_IF_ERROR(need("attention.head_count_kv", &hp.n_head_kv, 1, 1024));
  hp.n_ctx_train = 2048;
  if (g.Find(a + "context_length")) TF_RETURN_IF_ERROR(need("context_length", &hp.n_ctx_train, 1, 1 << 24));
  if (hp.n_head % hp.n_head_kv != 0) {
    return CorruptData(file + ": head_count " + std::to_string(hp.n_head) + " is not a multiple of head_count_kv " +
                       std::to_string(hp.n_head_kv));
  }
  hp.head_dim = hp.n_embd / hp.n_head;
  if (g.Find(a + "attention.key_length")) TF_RETURN_IF_ERROR(need("attention.key_length", &hp.head_dim, 1, 1 << 12));
  if (hp.head_dim % 2 != 0) return CorruptData(file + ": head dimension " + std::to_string(hp.head_dim) + " is odd");
  hp.n_rot = hp.head_dim;
  if (g.Find(a + "rope.dimension_count")) TF_RETURN_IF_ERROR(need("rope.dimension_count", &hp.n_rot, 2, hp.head_dim));
  if (hp.n_rot % 2 != 0) return CorruptData(file + ": rope.dimension_count is odd");
  TF_ASSIGN_OR_RETURN(double eps, g.GetF64Or(a + "attention.layer_norm_rms_epsilon", 1e-5));
  hp.rms_eps = static_cast<float>(eps);
  TF_ASSIGN_OR_RETURN(double base, g.GetF64Or(a + "rope.freq_base", 10000.0));
  hp.rope_base = static_cast<float>(base);
  TF_ASSIGN_OR_RETURN(std::string scaling, g.GetStringOr(a + "rope.scaling.type", "none"));
  if (scaling == "linear") {
    TF_ASSIGN_OR_RETURN(double f, g.GetF64Or(a + "rope.scaling.factor", 1.0));
    if (!(f > 0)) return CorruptData(file + ": rope.scaling.factor must be > 0");
    hp.rope_freq_scale = static_cast<float>(1.0 / f);
  } else if (scaling != "none" && !scaling.empty()) {
    return Unsupported(file + ": RoPE scaling '" + scaling + "' is not supported (linear and none are)");
  }
  if (hp.arch == "qwen2") {
    hp.rope = RopeOrdering::kNeox;
    hp.qkv_bias = true;
  }
  // Vocabulary size: the token list, else the arch key, else the embedding tensor.
  if (auto toks = g.Find("tokenizer.ggml.tokens"); toks) {
    TF_ASSIGN_OR_RETURN(auto list, g.GetStringArray("tokenizer.ggml.tokens"));
    hp.n_vocab = static_cast<int>(list.size());
  } else if (g.Find(a + "vocab_size")) {
    TF_RETURN_IF_ERROR(need("vocab_size", &hp.n_vocab, 1, 1 << 22));
  } else if (auto* t = g.FindTensor("token_embd.weight"); t && t->ne.size() == 2) {
    hp.n_vocab = static_cast<int>(t->ne[1]);
  }
  if (hp.n_vocab <= 0) return CorruptData(file + ": cannot tell the vocabulary size (no tokenizer.ggml.tokens)");
  return hp;
}

}  // namespace tabfit
