// tabfit model/tokenizer: BPE pre-tokenizers (the regex word splitting that
// byte-level BPE vocabs apply before merging), written by hand over Unicode
// class tables rather than std::regex (which is wrong on UTF-8 and slow).
//
// Supported `tokenizer.ggml.pre` families (semantics of llama.cpp's
// unicode_regex_split for the same regexes):
//  - kGpt2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)
//  - kLlama3: (?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|
//             \p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//  - kQwen2:  as kLlama3 but \p{N} (one digit per word)
//  - kDefault: llama.cpp's default sequence: [\p{P}\$\+<=>\^~\|]+, then the
//             kGpt2 regex, then \p{N}+, then [0-9][0-9][0-9]
// As with those regex splitters, text between matches is kept as its own word,
// so the words always cover the input exactly, in order.
//
// Invalid UTF-8 bytes are one-byte units classed like U+FFFD (a symbol);
// unlike llama.cpp they are kept as the original bytes, not replaced.
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>
#include <vector>

namespace tabfit {

enum class PreTokenizer { kDefault, kGpt2, kLlama3, kQwen2 };

// Maps a `tokenizer.ggml.pre` value to a family; false when unknown.
bool PreTokenizerFromName(std::string_view name, PreTokenizer* out);
const char* PreTokenizerName(PreTokenizer p);

// Splits `text` into words (views into `text`) that concatenate to `text`.
std::vector<std::string_view> PreTokenize(PreTokenizer kind, std::string_view text);

}  // namespace tabfit
