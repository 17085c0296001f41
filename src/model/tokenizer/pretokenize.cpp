#include "model/tokenizer/pretokenize.h"

#include <cstdint>
#include <string>

#include "model/tokenizer/unicode.h"

namespace tabfit {
namespace {

using unicode::Unit;

constexpr uint32_t kOutOfRange = 0xFFFFFFFF;

// A fragment of the unit array: [begin, end).
struct Span {
  size_t begin, end;
};

// Flags for a position inside [lo, hi); 0 outside (like llama.cpp's empty flags).
// `kValid` marks an in-range position so "not \s\p{L}\p{N}" can require it.
constexpr uint8_t kValid = 0x80;

class Cursor {
 public:
  Cursor(const std::vector<Unit>& units, const std::vector<uint8_t>& flags, Span s)
      : units_(units), flags_(flags), lo_(s.begin), hi_(s.end) {}
  uint32_t cpt(size_t pos) const { return pos >= lo_ && pos < hi_ ? units_[pos].cp : kOutOfRange; }
  uint8_t flags(size_t pos) const { return pos >= lo_ && pos < hi_ ? flags_[pos] : 0; }

 private:
  const std::vector<Unit>& units_;
  const std::vector<uint8_t>& flags_;
  size_t lo_, hi_;
};

bool IsLetter(uint8_t f) { return f & unicode::kLetter; }
bool IsNumber(uint8_t f) { return f & unicode::kNumber; }
bool IsSpace(uint8_t f) { return f & unicode::kWhitespace; }
// [^\s\p{L}\p{N}] at an in-range position.
bool IsOther(uint8_t f) {
  return (f & kValid) && !(f & (unicode::kWhitespace | unicode::kLetter | unicode::kNumber));
}
uint32_t AsciiLower(uint32_t c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

// Appends the words of one span split by the GPT-2 regex (llama.cpp's
// unicode_regex_split_custom_gpt2).
void SplitGpt2(const std::vector<Unit>& units, const std::vector<uint8_t>& fl, Span s, std::vector<Span>* out) {
  Cursor c(units, fl, s);
  size_t prev = s.begin;
  auto add = [&](size_t end) {
    if (end > prev) out->push_back({prev, end});
    prev = end;
  };
  for (size_t pos = s.begin; pos < s.end;) {
    const uint32_t cpt = c.cpt(pos);
    const uint8_t flags = c.flags(pos);
    if (cpt == '\'' && pos + 1 < s.end) {
      const uint32_t n1 = c.cpt(pos + 1);
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        add(pos += 2);
        continue;
      }
      if (pos + 2 < s.end) {
        const uint32_t n2 = c.cpt(pos + 2);
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          add(pos += 3);
          continue;
        }
      }
    }
    uint8_t f2 = cpt == ' ' ? c.flags(pos + 1) : flags;
    if (IsLetter(f2) || IsNumber(f2) || IsOther(f2)) {  // <space>?(\p{L}+ | \p{N}+ | [^\s\p{L}\p{N}]+)
      const auto same = IsLetter(f2) ? IsLetter : IsNumber(f2) ? IsNumber : IsOther;
      pos += (cpt == ' ');
      while (same(f2)) f2 = c.flags(++pos);
      add(pos);
      continue;
    }
    size_t nws = 0;
    while (IsSpace(c.flags(pos + nws))) ++nws;
    if (nws > 1 && c.cpt(pos + nws) != kOutOfRange) {  // \s+(?!\S)
      add(pos += nws - 1);
      continue;
    }
    if (nws > 0) {  // \s+
      add(pos += nws);
      continue;
    }
    add(++pos);  // no match
  }
}

// llama.cpp's unicode_regex_split_custom_llama3, with the digit group length
// as a parameter (3 for llama-3, 1 for qwen2).
void SplitLlama3(const std::vector<Unit>& units, const std::vector<uint8_t>& fl, Span s, size_t max_digits,
                 std::vector<Span>* out) {
  Cursor c(units, fl, s);
  size_t prev = s.begin;
  auto add = [&](size_t end) {
    if (end > prev) out->push_back({prev, end});
    prev = end;
  };
  for (size_t pos = s.begin; pos < s.end;) {
    const uint32_t cpt = c.cpt(pos);
    const uint8_t flags = c.flags(pos);
    // (?i:'s|'t|'re|'ve|'m|'ll|'d)
    if (cpt == '\'' && pos + 1 < s.end) {
      const uint32_t n1 = AsciiLower(c.cpt(pos + 1));
      if (n1 == 's' || n1 == 't' || n1 == 'm' || n1 == 'd') {
        add(pos += 2);
        continue;
      }
      if (pos + 2 < s.end) {
        const uint32_t n2 = AsciiLower(c.cpt(pos + 2));
        if ((n1 == 'r' && n2 == 'e') || (n1 == 'v' && n2 == 'e') || (n1 == 'l' && n2 == 'l')) {
          add(pos += 3);
          continue;
        }
      }
    }
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (!(cpt == '\r' || cpt == '\n' || IsNumber(flags))) {
      if (IsLetter(flags) || IsLetter(c.flags(pos + 1))) {
        ++pos;
        while (IsLetter(c.flags(pos))) ++pos;
        add(pos);
        continue;
      }
    }
    // \p{N}{1,max_digits}
    if (IsNumber(flags)) {
      size_t ini = pos;
      while (IsNumber(c.flags(pos))) {
        if (++pos - ini >= max_digits) {
          add(pos);
          ini = pos;
        }
      }
      add(pos);
      continue;
    }
    // <space>?[^\s\p{L}\p{N}]+[\r\n]*
    uint8_t f2 = cpt == ' ' ? c.flags(pos + 1) : flags;
    if (IsOther(f2)) {
      pos += (cpt == ' ');
      while (IsOther(f2)) f2 = c.flags(++pos);
      uint32_t c2 = c.cpt(pos);
      while (c2 == '\r' || c2 == '\n') c2 = c.cpt(++pos);
      add(pos);
      continue;
    }
    size_t nws = 0;
    size_t last_rn_end = 0;
    while (IsSpace(c.flags(pos + nws))) {
      const uint32_t c2 = c.cpt(pos + nws);
      if (c2 == '\r' || c2 == '\n') last_rn_end = pos + nws + 1;
      ++nws;
    }
    if (last_rn_end > 0) {  // \s*[\r\n]+
      add(pos = last_rn_end);
      continue;
    }
    if (nws > 1 && c.cpt(pos + nws) != kOutOfRange) {  // \s+(?!\S)
      add(pos += nws - 1);
      continue;
    }
    if (nws > 0) {  // \s+
      add(pos += nws);
      continue;
    }
    add(++pos);  // no match
  }
}

// Splits a span into maximal runs where `pred(unit index)` holds, keeping the
// text between runs as words (a single-class regex like [class]+).
template <typename Pred>
void SplitRuns(Span s, Pred pred, std::vector<Span>* out) {
  size_t pos = s.begin;
  while (pos < s.end) {
    const bool in = pred(pos);
    size_t end = pos + 1;
    while (end < s.end && pred(end) == in) ++end;
    out->push_back({pos, end});
    pos = end;
  }
}

// [0-9][0-9][0-9]: non-overlapping left-to-right matches; the rest kept.
void SplitDigitTriples(const std::vector<Unit>& units, Span s, std::vector<Span>* out) {
  auto digit = [&](size_t i) { return units[i].cp >= '0' && units[i].cp <= '9'; };
  size_t prev = s.begin;
  size_t pos = s.begin;
  while (pos + 3 <= s.end) {
    if (digit(pos) && digit(pos + 1) && digit(pos + 2)) {
      if (pos > prev) out->push_back({prev, pos});
      out->push_back({pos, pos + 3});
      pos += 3;
      prev = pos;
    } else {
      ++pos;
    }
  }
  if (s.end > prev) out->push_back({prev, s.end});
}

}  // namespace

bool PreTokenizerFromName(std::string_view name, PreTokenizer* out) {
  static constexpr std::string_view kLlama3[] = {"llama3", "llama-v3", "llama-bpe", "falcon3", "pixtral"};
  static constexpr std::string_view kQwen2[] = {"qwen2", "deepseek-r1-qwen", "megrez"};
  static constexpr std::string_view kGpt2[] = {"gpt2", "gpt-2", "phi-2", "jina-es", "jina-de"};
  for (auto n : kLlama3) if (name == n) return *out = PreTokenizer::kLlama3, true;
  for (auto n : kQwen2) if (name == n) return *out = PreTokenizer::kQwen2, true;
  for (auto n : kGpt2) if (name == n) return *out = PreTokenizer::kGpt2, true;
  if (name.empty() || name == "default") return *out = PreTokenizer::kDefault, true;
  return false;
}

const char* PreTokenizerName(PreTokenizer p) {
  switch (p) {
    case PreTokenizer::kDefault: return "default";
    case PreTokenizer::kGpt2: return "gpt2";
    case PreTokenizer::kLlama3: return "llama-bpe";
    case PreTokenizer::kQwen2: return "qwen2";
  }
  return "?";
}

std::vector<std::string_view> PreTokenize(PreTokenizer kind, std::string_view text) {
  const std::vector<Unit> units = unicode::DecodeUtf8(text);
  std::vector<uint8_t> flags(units.size());
  for (size_t i = 0; i < units.size(); ++i) flags[i] = unicode::Flags(units[i].cp) | kValid;

  std::vector<Span> spans;
  std::vector<Span> next;
  const Span all{0, units.size()};
  switch (kind) {
    case PreTokenizer::kGpt2:
      SplitGpt2(units, flags, all, &spans);
      break;
    case PreTokenizer::kLlama3:
    case PreTokenizer::kQwen2:
      SplitLlama3(units, flags, all, kind == PreTokenizer::kLlama3 ? 3 : 1, &spans);
      break;
    case PreTokenizer::kDefault: {
      auto punct = [&](size_t i) {
        const uint32_t c = units[i].cp;
        return (flags[i] & unicode::kPunct) || c == '$' || c == '+' || c == '<' || c == '=' || c == '>' ||
               c == '^' || c == '~' || c == '|';
      };
      if (!units.empty()) SplitRuns(all, punct, &spans);
      for (const Span& s : spans) SplitGpt2(units, flags, s, &next);
      spans.swap(next);
      next.clear();
      for (const Span& s : spans) SplitRuns(s, [&](size_t i) { return IsNumber(flags[i]); }, &next);
      spans.swap(next);
      next.clear();
      for (const Span& s : spans) SplitDigitTriples(units, s, &next);
      spans.swap(next);
      break;
    }
  }

  std::vector<std::string_view> words;
  words.reserve(spans.size());
  for (const Span& s : spans) {
    if (s.end <= s.begin) continue;
    const size_t b = units[s.begin].offset;
    const size_t e = units[s.end - 1].offset + units[s.end - 1].len;
    words.push_back(text.substr(b, e - b));
  }
  return words;
}

}  // namespace tabfit
