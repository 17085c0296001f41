// Pre-tokenizer word splits, checked by hand against the regexes (the
// published GPT-2 / llama-3 / qwen2 pre-tokenizer behaviour).
#include "model/tokenizer/pretokenize.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "model/tokenizer/unicode.h"
#include "test_util.h"

namespace tabfit {
namespace {

using Words = std::vector<std::string>;

Words Split(PreTokenizer p, std::string_view text) {
  Words w;
  std::string joined;
  for (std::string_view s : PreTokenize(p, text)) {
    EXPECT_FALSE(s.empty());
    w.emplace_back(s);
    joined += s;
  }
  EXPECT_EQ(joined, text) << "words must cover the input";
  return w;
}

TEST(UnicodeTables, Classes) {
  using namespace unicode;
  EXPECT_EQ(Flags('a'), kLetter);
  EXPECT_EQ(Flags('Z'), kLetter);
  EXPECT_EQ(Flags('7'), kNumber);
  EXPECT_EQ(Flags(' '), kWhitespace);
  EXPECT_EQ(Flags('\n'), kWhitespace);
  EXPECT_EQ(Flags(0x3000), kWhitespace);  // ideographic space
  EXPECT_EQ(Flags(0xA0), kWhitespace);
  EXPECT_EQ(Flags('!'), kPunct);
  EXPECT_EQ(Flags('$'), 0);  // symbol, not punctuation
  EXPECT_EQ(Flags(0x4E16), kLetter);   // 世
  EXPECT_EQ(Flags(0x00BD), kNumber);   // ½ (No)
  EXPECT_EQ(Flags(0x0663), kNumber);   // Arabic-Indic three
  EXPECT_EQ(Flags(0x0301), 0);         // combining acute: a mark
  EXPECT_EQ(Flags(0x1F600), 0);        // emoji: a symbol
  EXPECT_EQ(Flags(0x10FFFF), 0);
  EXPECT_EQ(Flags(0x110000), 0);
}

TEST(UnicodeTables, Utf8DecodeCoversEveryByte) {
  using namespace unicode;
  const std::string s = "a\xC3\xA9\xE2\x9C\x85\xF0\x9F\x98\x81\xFF\xE2\x9C";
  const auto u = DecodeUtf8(s);
  ASSERT_EQ(u.size(), 7u);
  EXPECT_EQ(u[1].cp, 0xE9u);
  EXPECT_EQ(u[2].cp, 0x2705u);
  EXPECT_EQ(u[3].cp, 0x1F601u);
  EXPECT_EQ(u[4].cp, kReplacementChar);  // 0xFF
  EXPECT_EQ(u[5].cp, kReplacementChar);  // truncated E2 9C: two one-byte units
  EXPECT_EQ(u[5].len, 1u);
  EXPECT_EQ(u[6].offset, 12u);
}

TEST(UnicodeTables, Gpt2ByteMap) {
  using namespace unicode;
  EXPECT_EQ(ByteToUnicode(' '), "\xC4\xA0");   // Ġ U+0120
  EXPECT_EQ(ByteToUnicode('\n'), "\xC4\x8A");  // Ċ U+010A
  EXPECT_EQ(ByteToUnicode('a'), "a");
  EXPECT_EQ(ByteToUnicode(0xFF), "\xC3\xBF");  // ÿ itself
  EXPECT_EQ(ByteToUnicode(0xAD), "\xC5\x83");  // soft hyphen -> U+0143
  for (int b = 0; b < 256; ++b) {
    const auto u = DecodeUtf8(ByteToUnicode(static_cast<uint8_t>(b)));
    ASSERT_EQ(u.size(), 1u);
    EXPECT_EQ(UnicodeToByte(u[0].cp), b);
  }
  EXPECT_EQ(UnicodeToByte(0x4E16), -1);
}

TEST(PreTokenize, Llama3) {
  const auto p = PreTokenizer::kLlama3;
  EXPECT_EQ(Split(p, "Hello world"), (Words{"Hello", " world"}));
  EXPECT_EQ(Split(p, "Hello, y'all! How are you?"),
            (Words{"Hello", ",", " y", "'all", "!", " How", " are", " you", "?"}));
  EXPECT_EQ(Split(p, "I've been 'told he's there, 'RE you sure? I'M"),
            (Words{"I", "'ve", " been", " '", "told", " he", "'s", " there", ",", " '", "RE", " you", " sure", "?",
                   " I", "'M"}));
  EXPECT_EQ(Split(p, "1234567 3.14"), (Words{"123", "456", "7", " ", "3", ".", "14"}));
  EXPECT_EQ(Split(p, "hello   world  "), (Words{"hello", "  ", " world", "  "}));
  EXPECT_EQ(Split(p, "a\n\nb \n c"), (Words{"a", "\n\n", "b", " \n", " c"}));
  EXPECT_EQ(Split(p, "hi!!!\n\n ok"), (Words{"hi", "!!!\n\n", " ok"}));
  EXPECT_EQ(Split(p, " ?foo"), (Words{" ?", "foo"}));
  EXPECT_EQ(Split(p, "\tx"), (Words{"\tx"}));  // [^\r\n\p{L}\p{N}]?\p{L}+ takes the tab
  EXPECT_EQ(Split(p, "\xCE\x9A\xCE\xB1\xCE\xBB\xCE\xB7 \xE4\xB8\x96\xE7\x95\x8C"),
            (Words{"\xCE\x9A\xCE\xB1\xCE\xBB\xCE\xB7", " \xE4\xB8\x96\xE7\x95\x8C"}));  // "Καλη 世界"
  EXPECT_EQ(Split(p, "apple\xE5\xB7\xA5\xE4\xBD\x9C" "1314151\xE5\xA4\xA9"),
            (Words{"apple\xE5\xB7\xA5\xE4\xBD\x9C", "131", "415", "1", "\xE5\xA4\xA9"}));
  EXPECT_EQ(Split(p, "you \xF0\x9F\x98\x81 ?"), (Words{"you", " \xF0\x9F\x98\x81", " ?"}));
  EXPECT_EQ(Split(p, "x\r\ny"), (Words{"x", "\r\n", "y"}));
  EXPECT_EQ(Split(p, ""), (Words{}));
  EXPECT_EQ(Split(p, "bad\xFF\xFEutf"), (Words{"bad", "\xFF\xFE", "utf"}));
}

TEST(PreTokenize, Qwen2SplitsDigitsOneByOne) {
  const auto p = PreTokenizer::kQwen2;
  EXPECT_EQ(Split(p, "in 2024, I'M"), (Words{"in", " ", "2", "0", "2", "4", ",", " I", "'M"}));
  EXPECT_EQ(Split(p, "Hello world"), (Words{"Hello", " world"}));
}

TEST(PreTokenize, Gpt2) {
  const auto p = PreTokenizer::kGpt2;
  EXPECT_EQ(Split(p, "Hello world"), (Words{"Hello", " world"}));
  // Contractions are lower-case only; no \r\n special-casing.
  EXPECT_EQ(Split(p, "I'M he's"), (Words{"I", "'", "M", " he", "'s"}));
  EXPECT_EQ(Split(p, "x123y 45 !!"), (Words{"x", "123", "y", " 45", " !!"}));
  EXPECT_EQ(Split(p, "a  b"), (Words{"a", " ", " b"}));
  // \s+(?!\S) leaves one whitespace before "b"; it becomes a word of its own.
  EXPECT_EQ(Split(p, "a \n\nb"), (Words{"a", " \n", "\n", "b"}));
  EXPECT_EQ(Split(p, "end   "), (Words{"end", "   "}));
}

TEST(PreTokenize, DefaultSequence) {
  const auto p = PreTokenizer::kDefault;
  EXPECT_EQ(Split(p, "Hello, world!"), (Words{"Hello", ",", " world", "!"}));
  // Punctuation runs are cut first; then numbers split from their space and into groups of three.
  EXPECT_EQ(Split(p, "a 1234567"), (Words{"a", " ", "123", "456", "7"}));
  EXPECT_EQ(Split(p, "x<=y"), (Words{"x", "<=", "y"}));
}

std::string Unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

// Reference splits from a real backtracking regex engine (Python `re` with the
// Unicode classes spelled out), made by gen_pretokenize_cases.py.
TEST(PreTokenize, MatchesRegexEngineReference) {
  const std::string path = testing::SourceDir() + "/src/model/tokenizer/testdata/pretokenize_cases.txt";
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << "missing " << path;
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    std::string name, input_hex, words_hex;
    std::getline(ls, name, '\t');
    std::getline(ls, input_hex, '\t');
    std::getline(ls, words_hex);
    PreTokenizer p;
    ASSERT_TRUE(PreTokenizerFromName(name, &p)) << name;
    Words expected;
    std::istringstream ws(words_hex);
    std::string w;
    while (std::getline(ws, w, '|')) expected.push_back(Unhex(w));
    const std::string input = Unhex(input_hex);
    EXPECT_EQ(Split(p, input), expected) << name << " on '" << input << "'";
    ++n;
  }
  EXPECT_EQ(n, 600);
}

TEST(PreTokenize, Names) {
  PreTokenizer p;
  ASSERT_TRUE(PreTokenizerFromName("llama-bpe", &p));
  EXPECT_EQ(p, PreTokenizer::kLlama3);
  ASSERT_TRUE(PreTokenizerFromName("qwen2", &p));
  EXPECT_EQ(p, PreTokenizer::kQwen2);
  ASSERT_TRUE(PreTokenizerFromName("gpt-2", &p));
  EXPECT_EQ(p, PreTokenizer::kGpt2);
  ASSERT_TRUE(PreTokenizerFromName("default", &p));
  EXPECT_EQ(p, PreTokenizer::kDefault);
  EXPECT_FALSE(PreTokenizerFromName("chatglm-bpe", &p));
}

}  // namespace
}  // namespace tabfit
