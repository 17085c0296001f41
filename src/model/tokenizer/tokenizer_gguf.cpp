// Tokenizer::FromGguf: the vocab from `tokenizer.ggml.*` metadata.
#include <limits>

#include "model/gguf/gguf.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit {
namespace {

// A special token id key: absent -> `def`; -1 / 0xFFFFFFFF (the converters'
// "none") -> -1; other values pass through for FromVocab's range check.
Result<int32_t> ReadId(const GgufFile& g, const char* key, int32_t def) {
  const GgufValue* v = g.Find(key);
  if (v == nullptr) return def;
  TF_ASSIGN_OR_RETURN(int64_t id, g.GetI64(key));
  if (id == -1 || id == 0xFFFFFFFFll) return -1;
  if (id < std::numeric_limits<int32_t>::min() || id > std::numeric_limits<int32_t>::max()) {
    return CorruptData(std::string(key) + " = " + std::to_string(id) + " is not a valid token id");
  }
  return static_cast<int32_t>(id);
}

}  // namespace

Result<Vocab> VocabFromGguf(const GgufFile& g) {
  Vocab v;
  const GgufValue* model = g.Find("tokenizer.ggml.model");
  if (model == nullptr) {
    return NotFound("no tokenizer.ggml.model key: the file carries no tokenizer; use a GGUF converted with its vocab");
  }
  TF_ASSIGN_OR_RETURN(v.model, g.GetString("tokenizer.ggml.model"));
  if (v.model != "llama" && v.model != "gpt2") {
    return Unsupported("tokenizer.ggml.model = '" + v.model +
                       "' is not supported (tabfit handles 'llama' SentencePiece and 'gpt2' byte-level BPE vocabs)");
  }
  const bool spm = v.model == "llama";
  if (g.Find("tokenizer.ggml.tokens") == nullptr) {
    return CorruptData("tokenizer.ggml.model is '" + v.model + "' but the tokenizer.ggml.tokens array is missing");
  }
  TF_ASSIGN_OR_RETURN(v.tokens, g.GetStringArray("tokenizer.ggml.tokens"));
  if (g.Find("tokenizer.ggml.scores") != nullptr) {
    TF_ASSIGN_OR_RETURN(v.scores, g.GetF32Array("tokenizer.ggml.scores"));
  }
  if (g.Find("tokenizer.ggml.token_type") != nullptr) {
    TF_ASSIGN_OR_RETURN(v.types, g.GetI32Array("tokenizer.ggml.token_type"));
  }
  if (!spm) {
    if (g.Find("tokenizer.ggml.merges") == nullptr) {
      return CorruptData("tokenizer.ggml.model is 'gpt2' but the tokenizer.ggml.merges array is missing");
    }
    TF_ASSIGN_OR_RETURN(v.merges, g.GetStringArray("tokenizer.ggml.merges"));
  }
  TF_ASSIGN_OR_RETURN(v.pre, g.GetStringOr("tokenizer.ggml.pre", "default"));

  // llama.cpp's defaults for SentencePiece vocabs: unk 0, bos 1, eos 2 (when they exist).
  const int32_t n = static_cast<int32_t>(std::min<size_t>(v.tokens.size(), std::numeric_limits<int32_t>::max()));
  auto def = [&](int32_t id) { return spm && id < n ? id : -1; };
  TF_ASSIGN_OR_RETURN(v.bos_id, ReadId(g, "tokenizer.ggml.bos_token_id", def(1)));
  TF_ASSIGN_OR_RETURN(v.eos_id, ReadId(g, "tokenizer.ggml.eos_token_id", def(2)));
  TF_ASSIGN_OR_RETURN(v.unk_id, ReadId(g, "tokenizer.ggml.unknown_token_id", def(0)));
  TF_ASSIGN_OR_RETURN(v.eot_id, ReadId(g, "tokenizer.ggml.eot_token_id", -1));
  TF_ASSIGN_OR_RETURN(v.eom_id, ReadId(g, "tokenizer.ggml.eom_token_id", -1));
  TF_ASSIGN_OR_RETURN(v.pad_id, ReadId(g, "tokenizer.ggml.padding_token_id", -1));
  // A padding id past the vocab is harmless (llama.cpp warns and ignores it).
  if (v.pad_id >= n) v.pad_id = -1;

  const bool llama3 = v.pre == "llama3" || v.pre == "llama-v3" || v.pre == "llama-bpe";
  TF_ASSIGN_OR_RETURN(v.add_bos, g.GetBoolOr("tokenizer.ggml.add_bos_token", spm || llama3));
  TF_ASSIGN_OR_RETURN(v.add_eos, g.GetBoolOr("tokenizer.ggml.add_eos_token", false));
  TF_ASSIGN_OR_RETURN(v.add_space_prefix, g.GetBoolOr("tokenizer.ggml.add_space_prefix", spm));
  return v;
}

Result<Tokenizer> Tokenizer::FromGguf(const GgufFile& gguf) {
  Result<Vocab> v = VocabFromGguf(gguf);
  if (!v.ok()) return v.status().WithContext(gguf.name());
  Result<Tokenizer> t = FromVocab(std::move(v).value());
  if (!t.ok()) return t.status().WithContext(gguf.name());
  return t;
}

}  // namespace tabfit
