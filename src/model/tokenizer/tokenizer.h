// tabfit model/tokenizer: text <-> token ids from GGUF vocab metadata.
//
// Two vocab kinds, each reproducing llama.cpp's tokenizer of the same name:
//  - "llama": SentencePiece BPE by scores (llm_tokenizer_spm). Spaces become
//    U+2581 "▁"; a dummy-prefix space is prepended to the text and after each
//    special token (add_space_prefix); the highest-scoring adjacent pair that
//    forms a piece is merged first (ties: leftmost). Characters that form no
//    piece fall back to byte tokens "<0xXX>"; with no byte tokens (e.g.
//    BabyLlama tok105) they become <unk>, a run of them ONE <unk> (as
//    SentencePiece does; llama.cpp aborts there). Only normal and
//    user-defined pieces take part in merging, so text such as "<s>" or
//    "<0x0A>" is never turned into a control or byte token by accident.
//    Decode(Encode(x)) == " " + x for any bytes x, except that a literal
//    U+2581 "▁" in x comes back as " " (as in SentencePiece and llama.cpp).
//  - "gpt2": byte-level BPE (llm_tokenizer_bpe): pre-tokenizer regex split
//    (see pretokenize.h; tokenizer.ggml.pre), bytes mapped to printable code
//    points, merges applied by rank from `tokenizer.ggml.merges`.
// Special tokens (control, user-defined, unknown) are cut out of the text
// first, longest text first (llama.cpp's tokenizer_st_partition): user-defined
// tokens always, control/unknown tokens only when parse_special is true.
//
// Invalid UTF-8 is tokenized byte-exactly: an invalid byte is a unit of its
// own (llama.cpp instead groups by the lead byte's claimed length, and its BPE
// path replaces invalid bytes by U+FFFD); valid text gives llama.cpp's ids.
// Verified: llama.cpp's ggml-vocab-llama-spm test (all cases), the
// SentencePiece library on the shared models' vocabs, a backtracking regex
// engine for the pre-tokenizers, and (crosscheck/) llama3-tokenizer-js and
// gpt-3-encoder on the real Llama 3 and GPT-2 vocabs.
//
// Memory: the vocab text is held twice (raw and decoded), the merges once,
// plus key-less hash indexes (8 bytes a slot). MemoryBytes() reports it:
// 0.4 MB for the 4k demo vocab, 3.4 MB for a 32k SentencePiece vocab, 21 MB
// for Llama 3's 128k tokens + 280k merges. It is
// host-side and not charged to a ledger.
//
// Thread-safety: a Tokenizer is immutable after construction; every const
// method may be called concurrently. StreamDecoder is single-threaded state.
// Encode never fails: any byte string, valid UTF-8 or not, gets token ids.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "model/tokenizer/piece_index.h"
#include "model/tokenizer/pretokenize.h"

namespace tabfit {

class GgufFile;

// GGUF `tokenizer.ggml.token_type` values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,  // treated as normal
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,  // "<0xXX>" (llama vocabs)
};

// Plain vocab description, the input of Tokenizer::FromVocab (FromGguf fills
// it from `tokenizer.ggml.*`). Ids are -1 when absent.
struct Vocab {
  std::string model = "llama";      // "llama" (SentencePiece) | "gpt2" (byte-level BPE)
  std::string pre = "default";      // gpt2: pre-tokenizer name (tokenizer.ggml.pre)
  std::vector<std::string> tokens;  // piece text per id (n_vocab entries)
  std::vector<float> scores;        // empty, or one per token (llama merge priority)
  std::vector<int32_t> types;       // empty (= all normal), or one TokenType per token
  std::vector<std::string> merges;  // gpt2: "left right", rank = index
  int32_t bos_id = -1;
  int32_t eos_id = -1;
  int32_t unk_id = -1;
  int32_t eot_id = -1;  // end of turn (also end-of-generation)
  int32_t eom_id = -1;  // end of message (also end-of-generation)
  int32_t pad_id = -1;
  bool add_bos = true;           // the model expects BOS in front of a prompt
  bool add_eos = false;
  bool add_space_prefix = true;  // llama: dummy-prefix space
};

// The `tokenizer.ggml.*` metadata of a GGUF file as a Vocab (not yet
// validated: Tokenizer::FromVocab does that). Errors as Tokenizer::FromGguf,
// without the file name.
Result<Vocab> VocabFromGguf(const GgufFile& gguf);

class Tokenizer {
 public:
  // Reads tokenizer.ggml.{model,pre,tokens,scores,token_type,merges,
  // *_token_id,add_bos_token,add_eos_token,add_space_prefix}. Errors name the
  // file and key: NotFound (no tokenizer), CorruptData (malformed arrays or
  // ids), Unsupported (other tokenizer models / pre-tokenizers).
  static Result<Tokenizer> FromGguf(const GgufFile& gguf);
  // Validates `vocab` (array lengths, type values, special ids in range, byte
  // token spelling, merge syntax) and builds the lookup tables.
  static Result<Tokenizer> FromVocab(Vocab vocab);

  // Token ids of `text`. add_bos: prepend bos() (if the vocab has one; callers
  // normally pass add_bos()). No EOS is appended (see add_eos()).
  // parse_special: control tokens written in the text ("<s>", "<|im_start|>")
  // become their ids; otherwise they are tokenized as plain text.
  // A byte that has no piece, no byte token and no <unk> to fall back to
  // (a vocab without byte tokens and without unk id) is dropped.
  std::vector<int32_t> Encode(std::string_view text, bool add_bos, bool parse_special = false) const;

  // Bytes of one token as llama.cpp's common_token_to_piece (special = true):
  // "▁the" -> " the", "<0x0A>" -> "\n", control/unknown/user-defined -> their
  // text ("<s>"), unused -> "". gpt2: byte-level code points back to bytes.
  // With render_special = false, control and unknown tokens give "".
  // An id outside [0, n_vocab) gives "".
  std::string TokenToPiece(int32_t id, bool render_special = true) const;
  // Concatenated TokenToPiece of every id (how llama.cpp prints a generation,
  // e.g. BOS + "▁The" -> "<s> The"). May contain partial UTF-8 at the end.
  std::string Decode(const std::vector<int32_t>& ids) const;
  // llama.cpp's llama_detokenize (without clean_spaces): with add_space_prefix
  // the first piece loses its leading space; remove_special drops a leading
  // BOS (then the space is kept) and, if add_eos, a trailing EOS;
  // unparse_special renders control tokens (else they give "").
  std::string Detokenize(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const;

  int32_t bos() const { return bos_; }
  int32_t eos() const { return eos_; }
  int32_t unk() const { return unk_; }
  int32_t eot() const { return eot_; }
  int32_t pad() const { return pad_; }
  int32_t n_vocab() const { return static_cast<int32_t>(tokens_.size()); }
  bool add_bos() const { return add_bos_; }
  bool add_eos() const { return add_eos_; }
  bool add_space_prefix() const { return add_space_prefix_; }
  // End of generation: eos, eot, eom and control tokens such as <|im_end|>,
  // <|eot_id|>, <|endoftext|>, <end_of_turn>.
  bool IsEog(int32_t id) const;
  bool IsControl(int32_t id) const;
  const std::string& model_kind() const { return model_; }  // "llama" / "gpt2"
  PreTokenizer pre_tokenizer() const { return pre_; }

  // Raw vocab text of a token ("▁the", "<0x0A>"); empty for an invalid id.
  const std::string& TokenText(int32_t id) const;
  TokenType token_type(int32_t id) const;
  float score(int32_t id) const;
  // Id of a piece with exactly this text (any type), or -1.
  int32_t PieceToId(std::string_view text) const;
  // Approximate heap bytes held by this tokenizer.
  size_t MemoryBytes() const;

 private:
  Tokenizer() = default;

  // A raw-text span or a special token, after special-token partitioning.
  struct Fragment {
    int32_t token;          // -1 for raw text
    std::string_view text;  // raw text (token == -1)
  };
  std::vector<Fragment> Partition(std::string_view text, bool parse_special) const;
  struct SpmScratch;
  void EncodeSpm(std::string_view escaped, std::vector<int32_t>* out) const;
  void EncodeSpmChunk(std::string_view escaped, SpmScratch* scratch, std::vector<int32_t>* out) const;
  void EncodeBpe(std::string_view text, std::vector<int32_t>* out) const;
  int32_t FindMergeable(std::string_view piece) const;
  int32_t FindAny(std::string_view piece) const;
  int32_t MergeRank(std::string_view left, std::string_view right, std::string* scratch) const;

  std::string model_;
  bool is_spm_ = true;
  PreTokenizer pre_ = PreTokenizer::kDefault;
  bool ignore_merges_ = false;
  std::vector<std::string> tokens_;
  std::vector<float> scores_;
  std::vector<TokenType> types_;
  std::vector<std::string> pieces_;  // TokenToPiece(id, true) per id
  PieceIndex any_;                   // text -> id, every token (later ids win, as llama.cpp)
  PieceIndex mergeable_;             // llama: normal/user-defined/undefined pieces
  PieceIndex merge_ranks_;           // gpt2: "left right" -> rank
  std::string merges_text_;          // gpt2: all merges, concatenated
  std::vector<uint32_t> merge_offsets_;  // merge r is [offsets[r], offsets[r+1]) of merges_text_
  std::string_view MergeText(int32_t r) const {
    return std::string_view(merges_text_).substr(merge_offsets_[r], merge_offsets_[r + 1] - merge_offsets_[r]);
  }
  size_t max_mergeable_len_ = 0;
  bool spm_split_words_ = false;     // llama: no piece has "▁" after another character
  int32_t byte_tokens_[256];         // llama: byte fallback id, -1 if none
  std::vector<int32_t> specials_;    // control/user-defined/unknown, longest text first
  std::vector<bool> eog_;
  int32_t bos_ = -1, eos_ = -1, unk_ = -1, eot_ = -1, pad_ = -1;
  bool add_bos_ = false, add_eos_ = false, add_space_prefix_ = false;
};

// Streaming detokenizer for generated ids: returns only complete UTF-8
// characters, holding back the bytes of a character split across tokens
// (e.g. "<0xE2>" "<0x9C>" "<0x85>") until it is complete. Bytes that can never
// form a character are passed through unchanged (so the concatenation of all
// Push and Flush results equals Decode of all ids) or, with replace_invalid,
// replaced by U+FFFD each. Not thread-safe; the Tokenizer must outlive it.
class StreamDecoder {
 public:
  explicit StreamDecoder(const Tokenizer& tok, bool replace_invalid = false)
      : tok_(&tok), replace_invalid_(replace_invalid) {}
  std::string Push(int32_t id);
  // Whatever is still held back (an incomplete character at the very end).
  std::string Flush();

 private:
  std::string Take(bool final);
  const Tokenizer* tok_;
  bool replace_invalid_;
  std::string pending_;
};

}  // namespace tabfit
