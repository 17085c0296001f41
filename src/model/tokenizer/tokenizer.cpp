#include "model/tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <unordered_map>

#include "model/tokenizer/unicode.h"

namespace tabfit {
namespace {

constexpr std::string_view kSpmSpace = "\xE2\x96\x81";  // U+2581 "▁"

// Texts llama.cpp treats as end-of-turn / end-of-generation tokens.
constexpr std::string_view kEotTexts[] = {"<|eot_id|>", "<|im_end|>",          "<|end|>", "<end_of_turn>",
                                          "<|endoftext|>", "<EOT>",            "_<EOT>",
                                          "<\xEF\xBD\x9C" "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>"};
constexpr std::string_view kEogTexts[] = {"<|eot_id|>",    "<|im_end|>", "<|end|>", "<|return|>",     "<|call|>",
                                          "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
                                          "<|end_of_text|>", "<end_of_utterance>"};

std::string Quote(std::string_view s) {
  std::string out = "'";
  for (char c : s.substr(0, 40)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  if (s.size() > 40) out += "...";
  return out + "'";
}

// "<0xAB>" -> 0xAB, or -1.
int ParseByteToken(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return (hi < 0 || lo < 0) ? -1 : hi * 16 + lo;
}

std::string ReplaceAll(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

// gpt2 byte-level text back to bytes; code points outside the byte map are kept as they are.
std::string ByteLevelDecode(std::string_view text) {
  std::string out;
  for (const unicode::Unit& u : unicode::DecodeUtf8(text)) {
    const int b = unicode::UnicodeToByte(u.cp);
    if (b >= 0 && u.cp != unicode::kReplacementChar) {
      out.push_back(static_cast<char>(b));
    } else {
      out.append(text.substr(u.offset, u.len));
    }
  }
  return out;
}

}  // namespace

Result<Tokenizer> Tokenizer::FromVocab(Vocab v) {
  Tokenizer t;
  const size_t n = v.tokens.size();
  if (v.model != "llama" && v.model != "gpt2") {
    return Unsupported("tokenizer model " + Quote(v.model) +
                       " is not supported (tabfit handles 'llama' SentencePiece and 'gpt2' byte-level BPE vocabs)");
  }
  if (n == 0) return CorruptData("vocab has no tokens (tokenizer.ggml.tokens is empty)");
  if (n > 0x7FFFFFFF) return CorruptData("vocab has too many tokens");
  if (!v.scores.empty() && v.scores.size() != n) {
    return CorruptData("tokenizer.ggml.scores has " + std::to_string(v.scores.size()) + " entries but there are " +
                       std::to_string(n) + " tokens; the vocab metadata is inconsistent");
  }
  if (!v.types.empty() && v.types.size() != n) {
    return CorruptData("tokenizer.ggml.token_type has " + std::to_string(v.types.size()) +
                       " entries but there are " + std::to_string(n) + " tokens; the vocab metadata is inconsistent");
  }
  struct NamedId {
    const char* name;
    int32_t* id;
  };
  const NamedId ids[] = {{"bos", &v.bos_id}, {"eos", &v.eos_id}, {"unknown", &v.unk_id},
                         {"eot", &v.eot_id}, {"eom", &v.eom_id}, {"padding", &v.pad_id}};
  for (const NamedId& x : ids) {
    if (*x.id < -1 || *x.id >= static_cast<int64_t>(n)) {
      return CorruptData(std::string(x.name) + " token id " + std::to_string(*x.id) + " is out of range (vocab has " +
                         std::to_string(n) + " tokens; tokenizer.ggml." + x.name + "_token_id is wrong)");
    }
  }
  t.is_spm_ = v.model == "llama";
  if (!t.is_spm_) {
    if (!PreTokenizerFromName(v.pre, &t.pre_)) {
      return Unsupported("pre-tokenizer " + Quote(v.pre) +
                         " (tokenizer.ggml.pre) is not supported; tabfit knows default, gpt2, llama-bpe, qwen2");
    }
    t.ignore_merges_ = t.pre_ == PreTokenizer::kLlama3;
  }

  t.tokens_ = std::move(v.tokens);
  const std::vector<std::string>& tokens = t.tokens_;
  auto token_of = [&tokens](int32_t id) { return std::string_view(tokens[id]); };
  t.types_.resize(n, TokenType::kNormal);
  for (size_t i = 0; i < v.types.size(); ++i) {
    if (v.types[i] < 0 || v.types[i] > 6) {
      return CorruptData("token " + std::to_string(i) + " " + Quote(tokens[i]) + " has type " +
                         std::to_string(v.types[i]) + " (tokenizer.ggml.token_type must be 0..6)");
    }
    t.types_[i] = static_cast<TokenType>(v.types[i]);
  }
  t.scores_ = v.scores.empty() ? std::vector<float>(n, 0.0f) : std::move(v.scores);

  // Lookup maps.
  for (size_t i = 0; i < n; ++i) {
    const std::string& s = tokens[i];
    t.any_.Insert(s, static_cast<int32_t>(i), /*overwrite=*/true, token_of);
    if (t.types_[i] == TokenType::kByte && t.is_spm_ && ParseByteToken(s) < 0) {
      return CorruptData("token " + std::to_string(i) + " " + Quote(s) +
                         " has type byte but is not spelled <0xXX>; the vocab metadata is malformed");
    }
  }

  // End-of-generation tokens, forced to control type as llama.cpp does.
  t.eog_.assign(n, false);
  if (v.eot_id < 0) {
    for (std::string_view s : kEotTexts) {
      const int32_t id = t.FindAny(s);
      if (id >= 0) {
        v.eot_id = id;
        break;
      }
    }
  }
  for (int32_t id : {v.eos_id, v.eot_id, v.eom_id}) {
    if (id >= 0) t.eog_[id] = true;
  }
  for (std::string_view s : kEogTexts) {
    const int32_t id = t.FindAny(s);
    if (id >= 0) {
      t.eog_[id] = true;
      t.types_[id] = TokenType::kControl;
    }
  }

  if (t.is_spm_) {
    // Only these pieces take part in merging; words can be encoded one at a
    // time if none of them has a "▁" after another character.
    t.spm_split_words_ = true;
    for (size_t i = 0; i < n; ++i) {
      const TokenType ty = t.types_[i];
      if (ty != TokenType::kNormal && ty != TokenType::kUserDefined && ty != TokenType::kUndefined) continue;
      const std::string& piece = tokens[i];
      t.mergeable_.Insert(piece, static_cast<int32_t>(i), /*overwrite=*/true, token_of);
      t.max_mergeable_len_ = std::max(t.max_mergeable_len_, piece.size());
      size_t lead = 0;
      while (piece.compare(lead, kSpmSpace.size(), kSpmSpace) == 0) lead += kSpmSpace.size();
      if (piece.find(kSpmSpace, lead) != std::string::npos) t.spm_split_words_ = false;
    }
    for (int b = 0; b < 256; ++b) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "<0x%02X>", b);
      int32_t id = t.FindAny(buf);
      if (id < 0) id = t.FindAny(std::string(1, static_cast<char>(b)));
      t.byte_tokens_[b] = id;
    }
  } else {
    std::fill(std::begin(t.byte_tokens_), std::end(t.byte_tokens_), -1);
    if (v.merges.size() > 0x7FFFFFFF) return CorruptData("too many merges (tokenizer.ggml.merges)");
    t.merge_offsets_.reserve(v.merges.size() + 1);
    t.merge_offsets_.push_back(0);
    for (size_t r = 0; r < v.merges.size(); ++r) {
      const std::string& m = v.merges[r];
      const size_t sp = m.size() > 1 ? m.find(' ', 1) : std::string::npos;
      if (sp == std::string::npos || sp + 1 >= m.size()) {
        return CorruptData("merge #" + std::to_string(r) + " " + Quote(m) +
                           " is not of the form 'left right' (tokenizer.ggml.merges is malformed)");
      }
      if (t.merges_text_.size() + m.size() > 0xFFFFFFFFu) return CorruptData("tokenizer.ggml.merges is too large");
      t.merges_text_ += m;
      t.merge_offsets_.push_back(static_cast<uint32_t>(t.merges_text_.size()));
    }
    auto merge_of = [&t](int32_t r) { return t.MergeText(r); };
    for (size_t r = 0; r < v.merges.size(); ++r) {
      t.merge_ranks_.Insert(t.MergeText(static_cast<int32_t>(r)), static_cast<int32_t>(r), /*overwrite=*/false,
                            merge_of);  // lowest rank wins
    }
  }

  // Special tokens for partitioning, longest text first (ties: lower id first).
  for (size_t i = 0; i < n; ++i) {
    const TokenType ty = t.types_[i];
    if ((ty == TokenType::kControl || ty == TokenType::kUserDefined || ty == TokenType::kUnknown) &&
        !tokens[i].empty()) {
      t.specials_.push_back(static_cast<int32_t>(i));
    }
  }
  std::stable_sort(t.specials_.begin(), t.specials_.end(),
                   [&](int32_t a, int32_t b) { return tokens[a].size() > tokens[b].size(); });

  // Decoded pieces.
  t.pieces_.resize(n);
  for (size_t i = 0; i < n; ++i) {
    const std::string& s = tokens[i];
    switch (t.types_[i]) {
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        t.pieces_[i] = s;
        break;
      case TokenType::kUnused:
        break;
      case TokenType::kByte:
        if (t.is_spm_) {
          t.pieces_[i] = std::string(1, static_cast<char>(ParseByteToken(s)));
          break;
        }
        [[fallthrough]];
      case TokenType::kNormal:
      case TokenType::kUndefined:
        t.pieces_[i] = t.is_spm_ ? ReplaceAll(s, kSpmSpace, " ") : ByteLevelDecode(s);
        break;
    }
  }

  t.model_ = v.model;
  t.bos_ = v.bos_id;
  t.eos_ = v.eos_id;
  t.unk_ = v.unk_id;
  t.eot_ = v.eot_id;
  t.pad_ = v.pad_id;
  t.add_bos_ = v.add_bos && v.bos_id >= 0;
  t.add_eos_ = v.add_eos && v.eos_id >= 0;
  t.add_space_prefix_ = v.add_space_prefix;
  return t;
}

int32_t Tokenizer::FindAny(std::string_view piece) const {
  return any_.Find(piece, [this](int32_t id) { return std::string_view(tokens_[id]); });
}

int32_t Tokenizer::FindMergeable(std::string_view piece) const {
  return mergeable_.Find(piece, [this](int32_t id) { return std::string_view(tokens_[id]); });
}

int32_t Tokenizer::PieceToId(std::string_view text) const { return FindAny(text); }

int32_t Tokenizer::MergeRank(std::string_view left, std::string_view right, std::string* scratch) const {
  scratch->assign(left);
  scratch->push_back(' ');
  scratch->append(right);
  return merge_ranks_.Find(*scratch, [this](int32_t r) { return MergeText(r); });
}

std::vector<Tokenizer::Fragment> Tokenizer::Partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, text});
  std::vector<Fragment> next;
  for (int32_t id : specials_) {
    const TokenType ty = types_[id];
    if (!parse_special && (ty == TokenType::kControl || ty == TokenType::kUnknown)) continue;
    const std::string& st = tokens_[id];
    bool any = false;
    for (const Fragment& f : frags) {
      if (f.token < 0 && f.text.find(st) != std::string_view::npos) {
        any = true;
        break;
      }
    }
    if (!any) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      while (!rest.empty()) {
        const size_t hit = rest.find(st);
        if (hit == std::string_view::npos) break;
        if (hit > 0) next.push_back({-1, rest.substr(0, hit)});
        next.push_back({id, {}});
        rest.remove_prefix(hit + st.size());
      }
      if (!rest.empty()) next.push_back({-1, rest});
    }
    frags.swap(next);
  }
  return frags;
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text, bool add_bos, bool parse_special) const {
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && bos_ >= 0) out.push_back(bos_);
  const std::vector<Fragment> frags = Partition(text, parse_special);
  bool prev_special = true;  // the first text fragment gets the dummy prefix
  for (const Fragment& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    if (is_spm_) {
      std::string s;
      if (add_space_prefix_ && prev_special) s = " ";
      s.append(f.text);
      EncodeSpm(ReplaceAll(s, " ", kSpmSpace), &out);
    } else {
      EncodeBpe(f.text, &out);
    }
    prev_special = false;
  }
  return out;
}

namespace {

struct Symbol {
  int32_t prev, next;
  uint32_t off, n;
};

// Splits `text` into UTF-8 character symbols. Unlike llama.cpp (which trusts
// the lead byte's length), an invalid byte is a symbol of its own, so a broken
// sequence never swallows the valid characters after it.
void SplitSymbols(std::string_view text, std::vector<Symbol>* syms) {
  syms->clear();
  const std::vector<unicode::Unit> units = unicode::DecodeUtf8(text);
  const int32_t n = static_cast<int32_t>(units.size());
  for (int32_t i = 0; i < n; ++i) {
    syms->push_back(Symbol{i - 1, i + 1 == n ? -1 : i + 1, units[i].offset, units[i].len});
  }
}

struct SpmBigram {
  float score;
  int32_t left, right;
  uint32_t size;
};
struct SpmCmp {  // highest score first; ties: leftmost first
  bool operator()(const SpmBigram& l, const SpmBigram& r) const {
    return l.score < r.score || (l.score == r.score && l.left > r.left);
  }
};
struct BpeBigram {
  int32_t rank;
  int32_t left, right;
  uint32_t size;
};
struct BpeCmp {  // lowest rank first; ties: leftmost first
  bool operator()(const BpeBigram& l, const BpeBigram& r) const {
    return l.rank > r.rank || (l.rank == r.rank && l.left > r.left);
  }
};

// A binary heap (std::priority_queue order) whose storage can be reused.
template <typename T, typename Cmp>
class Heap {
 public:
  bool empty() const { return v_.empty(); }
  void clear() { v_.clear(); }
  void push(const T& x) {
    v_.push_back(x);
    std::push_heap(v_.begin(), v_.end(), Cmp{});
  }
  const T& top() const { return v_.front(); }
  void pop() {
    std::pop_heap(v_.begin(), v_.end(), Cmp{});
    v_.pop_back();
  }

 private:
  std::vector<T> v_;
};

// Merges the best queued pair until none is left (SentencePiece / BPE main loop).
template <typename Queue, typename AddPair>
void MergeLoop(std::vector<Symbol>& syms, Queue& queue, AddPair add_pair) {
  while (!queue.empty()) {
    const auto bg = queue.top();
    queue.pop();
    Symbol& l = syms[bg.left];
    Symbol& r = syms[bg.right];
    // Stale entry: one side was merged away or grew since it was queued.
    if (l.n == 0 || r.n == 0 || l.n + r.n != bg.size) continue;
    l.n += r.n;
    r.n = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = bg.left;
    add_pair(l.prev, bg.left);
    add_pair(bg.left, l.next);
  }
}

}  // namespace

struct Tokenizer::SpmScratch {
  std::vector<Symbol> syms;
  Heap<SpmBigram, SpmCmp> heap;
  bool last_unk = false;  // the last id written was a fallback <unk>
};

void Tokenizer::EncodeSpm(std::string_view text, std::vector<int32_t>* out) const {
  SpmScratch scratch;
  if (!spm_split_words_) {
    EncodeSpmChunk(text, &scratch, out);
    return;
  }
  // No mergeable piece has a "▁" after another character, so no merge crosses
  // the start of a run of "▁": encode such words one at a time (same result,
  // small heaps). "\xE2\x96\x81" always starts a UTF-8 unit, even in invalid text.
  size_t start = 0;
  size_t pos = 0;
  while (true) {
    const size_t hit = text.find(kSpmSpace, pos);
    if (hit == std::string_view::npos) break;
    if (hit > start && !(hit >= 3 && text.substr(hit - 3, 3) == kSpmSpace)) {
      EncodeSpmChunk(text.substr(start, hit - start), &scratch, out);
      start = hit;
    }
    pos = hit + kSpmSpace.size();
  }
  EncodeSpmChunk(text.substr(start), &scratch, out);
}

void Tokenizer::EncodeSpmChunk(std::string_view text, SpmScratch* scratch, std::vector<int32_t>* out) const {
  if (text.empty()) return;
  std::vector<Symbol>& syms = scratch->syms;
  SplitSymbols(text, &syms);
  auto& queue = scratch->heap;
  queue.clear();
  auto add_pair = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    const uint32_t size = syms[left].n + syms[right].n;
    if (size > max_mergeable_len_) return;
    const int32_t id = FindMergeable(text.substr(syms[left].off, size));
    if (id < 0) return;
    queue.push({scores_[id], left, right, size});
  };
  for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) add_pair(i - 1, i);
  MergeLoop(syms, queue, add_pair);

  bool& last_unk = scratch->last_unk;
  for (int32_t i = 0; i != -1; i = syms[i].next) {
    const std::string_view piece = text.substr(syms[i].off, syms[i].n);
    const int32_t id = FindMergeable(piece);
    if (id >= 0) {
      out->push_back(id);
      last_unk = false;
      continue;
    }
    for (char c : piece) {  // byte fallback, else <unk> (one per run, as SentencePiece)
      const int32_t b = byte_tokens_[static_cast<uint8_t>(c)];
      if (b >= 0) {
        out->push_back(b);
        last_unk = false;
      } else if (unk_ >= 0 && !last_unk) {
        out->push_back(unk_);
        last_unk = true;
      }
    }
  }
}

void Tokenizer::EncodeBpe(std::string_view text, std::vector<int32_t>* out) const {
  std::vector<Symbol> syms;
  std::string word;
  std::string scratch;
  Heap<BpeBigram, BpeCmp> queue;

  auto encode_word = [&](std::string_view raw) {
    word.clear();
    for (char c : raw) word += unicode::ByteToUnicode(static_cast<uint8_t>(c));
    if (ignore_merges_) {
      const int32_t id = FindAny(word);
      if (id >= 0) {
        out->push_back(id);
        return;
      }
    }
    SplitSymbols(word, &syms);
    const std::string_view w(word);
    auto add_pair = [&](int32_t left, int32_t right) {
      if (left < 0 || right < 0) return;
      const int32_t rank =
          MergeRank(w.substr(syms[left].off, syms[left].n), w.substr(syms[right].off, syms[right].n), &scratch);
      if (rank < 0) return;
      queue.push({rank, left, right, syms[left].n + syms[right].n});
    };
    queue.clear();
    for (int32_t i = 1; i < static_cast<int32_t>(syms.size()); ++i) add_pair(i - 1, i);
    MergeLoop(syms, queue, add_pair);
    for (int32_t i = 0; !syms.empty() && i != -1; i = syms[i].next) {
      const std::string_view piece = w.substr(syms[i].off, syms[i].n);
      const int32_t id = FindAny(piece);
      if (id >= 0) {
        out->push_back(id);
        continue;
      }
      // llama.cpp: look the piece up byte by byte; tabfit adds <unk> for bytes that are not tokens.
      for (char c : piece) {
        const int32_t b = FindAny(std::string_view(&c, 1));
        if (b >= 0) {
          out->push_back(b);
        } else if (unk_ >= 0) {
          out->push_back(unk_);
        }
      }
    }
  };

  // Words repeat (Zipf): remember where a short word's ids were first written
  // to *out during this call and copy them when it comes again.
  constexpr size_t kMaxCachedWord = 64;
  std::unordered_map<std::string_view, std::pair<size_t, size_t>> seen;
  for (std::string_view raw : PreTokenize(pre_, text)) {
    const bool cacheable = raw.size() <= kMaxCachedWord;
    if (cacheable) {
      auto hit = seen.find(raw);
      if (hit != seen.end()) {
        for (size_t k = 0; k < hit->second.second; ++k) {
          const int32_t id = (*out)[hit->second.first + k];
          out->push_back(id);
        }
        continue;
      }
    }
    const size_t first = out->size();
    encode_word(raw);
    if (cacheable) seen.emplace(raw, std::make_pair(first, out->size() - first));
  }
}

std::string Tokenizer::TokenToPiece(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) return {};
  if (!render_special && (types_[id] == TokenType::kControl || types_[id] == TokenType::kUnknown)) return {};
  return pieces_[id];
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    if (id >= 0 && id < n_vocab()) out += pieces_[id];
  }
  return out;
}

std::string Tokenizer::Detokenize(const std::vector<int32_t>& ids, bool remove_special, bool unparse_special) const {
  bool remove_space = add_space_prefix_;
  size_t b = 0, e = ids.size();
  if (remove_special && add_bos_ && e > 0 && ids[0] == bos_) {
    remove_space = false;
    b = 1;
  }
  if (remove_special && add_eos_ && e > b && ids[e - 1] == eos_) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) {
    std::string piece = TokenToPiece(ids[i], unparse_special);
    if (remove_space && !piece.empty() && piece[0] == ' ') piece.erase(0, 1);
    remove_space = false;
    out += piece;
  }
  return out;
}

bool Tokenizer::IsEog(int32_t id) const { return id >= 0 && id < n_vocab() && eog_[id]; }

bool Tokenizer::IsControl(int32_t id) const {
  return id >= 0 && id < n_vocab() && types_[id] == TokenType::kControl;
}

const std::string& Tokenizer::TokenText(int32_t id) const {
  static const std::string kEmpty;
  return id >= 0 && id < n_vocab() ? tokens_[id] : kEmpty;
}

TokenType Tokenizer::token_type(int32_t id) const {
  return id >= 0 && id < n_vocab() ? types_[id] : TokenType::kUndefined;
}

size_t Tokenizer::MemoryBytes() const {
  size_t n = sizeof(*this);
  for (const std::string& s : tokens_) n += sizeof(s) + (s.size() > 15 ? s.capacity() : 0);
  for (const std::string& s : pieces_) n += sizeof(s) + (s.size() > 15 ? s.capacity() : 0);
  n += scores_.capacity() * sizeof(float) + types_.capacity() * sizeof(TokenType);
  n += specials_.capacity() * sizeof(int32_t) + eog_.capacity() / 8;
  n += any_.MemoryBytes() + mergeable_.MemoryBytes() + merge_ranks_.MemoryBytes();
  n += merges_text_.capacity() + merge_offsets_.capacity() * sizeof(uint32_t);
  return n;
}

float Tokenizer::score(int32_t id) const { return id >= 0 && id < n_vocab() ? scores_[id] : 0.0f; }

// ---- StreamDecoder ----

std::string StreamDecoder::Push(int32_t id) {
  pending_ += tok_->TokenToPiece(id);
  return Take(false);
}

std::string StreamDecoder::Flush() { return Take(true); }

std::string StreamDecoder::Take(bool final) {
  const auto* p = reinterpret_cast<const uint8_t*>(pending_.data());
  const size_t n = pending_.size();
  std::string out;
  out.reserve(n);
  size_t i = 0;
  auto invalid = [&](size_t at) {
    if (replace_invalid_) {
      out += "\xEF\xBF\xBD";
    } else {
      out.push_back(static_cast<char>(p[at]));
    }
  };
  while (i < n) {
    const uint8_t b = p[i];
    const size_t len = unicode::Utf8SeqLen(b);
    if (b < 0x80) {
      out.push_back(static_cast<char>(b));
      ++i;
      continue;
    }
    if (len == 1 || (b & 0xF8) == 0xF8) {  // stray continuation byte or invalid lead
      invalid(i++);
      continue;
    }
    size_t k = 1;
    while (k < len && i + k < n && (p[i + k] & 0xC0) == 0x80) ++k;
    if (k == len) {
      out.append(pending_, i, len);
      i += len;
    } else if (i + k == n && !final) {
      break;  // incomplete character at the end: hold it back
    } else {
      invalid(i++);  // broken sequence: the lead byte is invalid, rescan after it
    }
  }
  pending_.erase(0, i);
  return out;
}

}  // namespace tabfit
