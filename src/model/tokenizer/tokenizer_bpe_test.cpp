// Byte-level BPE ("gpt2") tokenizer on a small hand-built vocab, and
// malformed vocab metadata (FromVocab and FromGguf).
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/tokenizer/tokenizer.h"
#include "model/tokenizer/unicode.h"

namespace tabfit {
namespace {

// 256 byte tokens (id = byte), the merged pieces of `kMerges`, then a few extra
// pieces and special tokens.
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"h", "e"},   {"\xC4\xA0", "t"}, {"\xC4\xA0t", "he"}, {"t", "he"},       {"l", "l"},      {"he", "ll"},
    {"hell", "o"}, {"\xC4\xA0", "hello"}, {"\xC4\xA0", "w"}, {"o", "r"}, {"\xC4\xA0w", "or"}};

Vocab MakeBpeVocab(const std::string& pre) {
  Vocab v;
  v.model = "gpt2";
  v.pre = pre;
  v.add_bos = false;
  v.add_space_prefix = false;
  for (int b = 0; b < 256; ++b) v.tokens.push_back(unicode::ByteToUnicode(static_cast<uint8_t>(b)));
  for (const auto& [l, r] : kMerges) {
    v.merges.push_back(l + " " + r);
    v.tokens.push_back(l + r);
  }
  v.tokens.push_back("\xC4\xA0world");  // reachable only through ignore_merges (llama-bpe)
  v.types.assign(v.tokens.size(), 1);
  for (const char* s : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}) {
    v.tokens.push_back(s);
    v.types.push_back(3);  // control
  }
  v.tokens.push_back("<tool>");
  v.types.push_back(4);  // user-defined
  v.bos_id = v.eos_id = static_cast<int32_t>(v.tokens.size()) - 4;  // <|endoftext|>
  return v;
}

class BpeTest : public ::testing::Test {
 protected:
  Tokenizer Make(const std::string& pre) {
    Result<Tokenizer> t = Tokenizer::FromVocab(MakeBpeVocab(pre));
    EXPECT_TRUE(t.ok()) << t.status().ToString();
    return std::move(t).value();
  }
  // Token texts of an encoding.
  static std::vector<std::string> Texts(const Tokenizer& t, const std::vector<int32_t>& ids) {
    std::vector<std::string> out;
    for (int32_t id : ids) out.push_back(t.TokenText(id));
    return out;
  }
  using S = std::vector<std::string>;
};

TEST_F(BpeTest, MergesByRank) {
  const Tokenizer t = Make("gpt2");
  EXPECT_EQ(t.model_kind(), "gpt2");
  EXPECT_EQ(t.pre_tokenizer(), PreTokenizer::kGpt2);
  EXPECT_EQ(Texts(t, t.Encode("the hello", false)), (S{"the", "\xC4\xA0hello"}));
  // "he" (rank 0) merges before "Ġt" (rank 1); then Ġt + he (rank 2).
  EXPECT_EQ(Texts(t, t.Encode(" the", false)), (S{"\xC4\xA0the"}));
  EXPECT_EQ(Texts(t, t.Encode(" world", false)), (S{"\xC4\xA0wor", "l", "d"}));
  EXPECT_EQ(Texts(t, t.Encode("hello\n", false)), (S{"hello", "\xC4\x8A"}));
  EXPECT_EQ(t.Decode(t.Encode("the hello world", false)), "the hello world");
  EXPECT_EQ(t.TokenToPiece(t.PieceToId("\xC4\xA0hello")), " hello");
  // No dummy prefix, no BOS unless asked.
  EXPECT_FALSE(t.add_bos());
  EXPECT_EQ(t.Encode("the", true).front(), t.bos());
}

TEST_F(BpeTest, Llama3IgnoresMergesForWholeWords) {
  const Tokenizer t = Make("llama-bpe");
  EXPECT_EQ(Texts(t, t.Encode(" world", false)), (S{"\xC4\xA0world"}));
  EXPECT_EQ(Texts(t, t.Encode(" worlds", false)), (S{"\xC4\xA0wor", "l", "d", "s"}));
  // Digits in groups of three.
  EXPECT_EQ(Texts(t, t.Encode("12345", false)), (S{"1", "2", "3", "4", "5"}));
  const Tokenizer q = Make("qwen2");
  EXPECT_EQ(q.Encode("12345", false).size(), 5u);
}

TEST_F(BpeTest, RoundTripsAnyBytes) {
  for (const char* pre : {"default", "gpt2", "llama-bpe", "qwen2"}) {
    const Tokenizer t = Make(pre);
    for (const std::string s : {"Hello, y'all! How are you \xF0\x9F\x98\x81 ?\xE6\x88\x91\xE6\x83\xB3 1314151",
                                "bad \xFF\xFE utf8 \x80 trunc \xE2\x96", "  \n\n\t  x  ", "'RE 've 3.14"}) {
      EXPECT_EQ(t.Decode(t.Encode(s, false)), s) << pre;
      EXPECT_EQ(t.Detokenize(t.Encode(s, false), false, false), s) << pre;
    }
  }
}

TEST_F(BpeTest, SpecialTokens) {
  const Tokenizer t = Make("llama-bpe");
  const int32_t start = t.PieceToId("<|im_start|>"), end = t.PieceToId("<|im_end|>");
  const int32_t tool = t.PieceToId("<tool>"), eot = t.PieceToId("<|endoftext|>");
  ASSERT_GE(start, 0);
  const std::string chat = "<|im_start|>user\nhi<tool><|im_end|>";
  EXPECT_EQ(t.Encode(chat, false, true),
            (std::vector<int32_t>{start, 'u', 's', 'e', 'r', t.PieceToId("\xC4\x8A"), 'h', 'i', tool, end}));
  // Without parse_special, control tokens are plain text; user-defined ones still match.
  const auto plain = t.Encode(chat, false, false);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), start), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), end), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), tool), 1);
  EXPECT_EQ(t.Decode(plain), chat);
  EXPECT_TRUE(t.IsEog(end));
  EXPECT_TRUE(t.IsEog(eot));
  EXPECT_FALSE(t.IsEog(start));
  EXPECT_EQ(t.eot(), end);
  EXPECT_EQ(t.TokenToPiece(start), "<|im_start|>");
  EXPECT_EQ(t.TokenToPiece(start, false), "");
  EXPECT_EQ(t.TokenToPiece(tool, false), "<tool>");
}

// ------------------------------------------------------------ malformed vocabs

Vocab TinySpm() {
  Vocab v;
  v.tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81", "a", "b", "\xE2\x96\x81" "a"};
  v.scores = {0, 0, 0, -1, -2, -3, -0.5f};
  v.types = {2, 3, 3, 1, 1, 1, 1};
  v.unk_id = 0;
  v.bos_id = 1;
  v.eos_id = 2;
  return v;
}

void ExpectError(Vocab v, StatusCode code, const std::string& needle) {
  Result<Tokenizer> t = Tokenizer::FromVocab(std::move(v));
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), code) << t.status().ToString();
  EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status().ToString();
}

TEST(MalformedVocab, FromVocabChecks) {
  {
    Result<Tokenizer> t = Tokenizer::FromVocab(TinySpm());
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->Encode("ab a", true), (std::vector<int32_t>{1, 6, 5, 6}));
    // No byte tokens: an unknown character becomes <unk>.
    EXPECT_EQ(t->Encode("a\xC3\xA9\xC3\xA9", false), (std::vector<int32_t>{6, 0}));
  }
  Vocab v = TinySpm();
  v.tokens.clear();
  v.scores.clear();
  v.types.clear();
  ExpectError(v, StatusCode::kCorruptData, "no tokens");
  v = TinySpm();
  v.scores.pop_back();
  ExpectError(v, StatusCode::kCorruptData, "scores has 6 entries");
  v = TinySpm();
  v.types.push_back(1);
  ExpectError(v, StatusCode::kCorruptData, "token_type has 8 entries");
  v = TinySpm();
  v.types[4] = 9;
  ExpectError(v, StatusCode::kCorruptData, "type 9");
  v = TinySpm();
  v.bos_id = 7;
  ExpectError(v, StatusCode::kCorruptData, "bos token id 7 is out of range");
  v = TinySpm();
  v.unk_id = -3;
  ExpectError(v, StatusCode::kCorruptData, "unknown token id -3");
  v = TinySpm();
  v.types[5] = 6;  // byte type but "b"
  ExpectError(v, StatusCode::kCorruptData, "not spelled <0xXX>");
  v = TinySpm();
  v.model = "bert";
  ExpectError(v, StatusCode::kUnsupported, "'bert'");
  v = MakeBpeVocab("chatglm-bpe");
  ExpectError(v, StatusCode::kUnsupported, "chatglm-bpe");
  v = MakeBpeVocab("gpt2");
  v.merges[3] = "nospace";
  ExpectError(v, StatusCode::kCorruptData, "merge #3");
  v = MakeBpeVocab("gpt2");
  v.merges[2] = "x ";
  ExpectError(v, StatusCode::kCorruptData, "merge #2");
}

// Builds an in-memory GGUF from `w` and loads its tokenizer.
Result<Tokenizer> FromWriter(const GgufWriter& w) {
  Result<std::vector<uint8_t>> bytes = w.WriteToMemory();
  if (!bytes.ok()) return bytes.status();
  Result<GgufFile> g = GgufFile::Parse(MakeMemorySource(std::move(bytes).value(), "mem.gguf"));
  if (!g.ok()) return g.status();
  return Tokenizer::FromGguf(*g);
}

GgufWriter SpmWriter() {
  const Vocab v = TinySpm();
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", v.tokens);
  w.SetF32Array("tokenizer.ggml.scores", v.scores);
  w.SetI32Array("tokenizer.ggml.token_type", v.types);
  w.SetU32("tokenizer.ggml.bos_token_id", 1);
  w.SetU32("tokenizer.ggml.eos_token_id", 2);
  w.SetU32("tokenizer.ggml.seperator_token_id", 0xFFFFFFFFu);  // the converters' "none"
  w.SetU32("tokenizer.ggml.padding_token_id", 0xFFFFFFFFu);
  return w;
}

void ExpectGgufError(const GgufWriter& w, StatusCode code, const std::string& needle) {
  Result<Tokenizer> t = FromWriter(w);
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), code) << t.status().ToString();
  EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status().ToString();
  EXPECT_NE(t.status().message().find("mem.gguf"), std::string::npos) << t.status().ToString();
}

TEST(MalformedVocab, FromGgufChecks) {
  {
    Result<Tokenizer> t = FromWriter(SpmWriter());
    ASSERT_TRUE(t.ok()) << t.status().ToString();
    EXPECT_EQ(t->unk(), 0);  // default when the key is absent
    EXPECT_EQ(t->pad(), -1);
    EXPECT_TRUE(t->add_bos());
    EXPECT_EQ(t->Encode("ab", true), (std::vector<int32_t>{1, 6, 5}));
  }
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  ExpectGgufError(w, StatusCode::kNotFound, "tokenizer.ggml.model");

  w = SpmWriter();
  w.SetString("tokenizer.ggml.model", "t5");
  ExpectGgufError(w, StatusCode::kUnsupported, "'t5'");

  GgufWriter no_tokens;
  no_tokens.SetString("tokenizer.ggml.model", "llama");
  no_tokens.SetF32Array("tokenizer.ggml.scores", {0.0f});
  ExpectGgufError(no_tokens, StatusCode::kCorruptData, "tokenizer.ggml.tokens");

  w = SpmWriter();
  w.SetString("tokenizer.ggml.tokens", "not an array");
  ExpectGgufError(w, StatusCode::kCorruptData, "tokenizer.ggml.tokens");

  w = SpmWriter();
  w.SetF32Array("tokenizer.ggml.scores", {0, 0, 0});
  ExpectGgufError(w, StatusCode::kCorruptData, "scores has 3 entries");

  w = SpmWriter();
  w.SetU32("tokenizer.ggml.bos_token_id", 99);
  ExpectGgufError(w, StatusCode::kCorruptData, "bos token id 99");

  w = SpmWriter();
  w.SetString("tokenizer.ggml.eos_token_id", "2");
  ExpectGgufError(w, StatusCode::kCorruptData, "tokenizer.ggml.eos_token_id");

  const Vocab bv = MakeBpeVocab("llama-bpe");
  GgufWriter b;
  b.SetString("tokenizer.ggml.model", "gpt2");
  b.SetString("tokenizer.ggml.pre", "llama-bpe");
  b.SetStringArray("tokenizer.ggml.tokens", bv.tokens);
  b.SetI32Array("tokenizer.ggml.token_type", bv.types);
  ExpectGgufError(b, StatusCode::kCorruptData, "tokenizer.ggml.merges");
  b.SetStringArray("tokenizer.ggml.merges", {"h e", "bad"});
  ExpectGgufError(b, StatusCode::kCorruptData, "merge #1 'bad'");
  b.SetStringArray("tokenizer.ggml.merges", bv.merges);
  b.SetU32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(bv.bos_id));
  Result<Tokenizer> t = FromWriter(b);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->model_kind(), "gpt2");
  EXPECT_TRUE(t->add_bos());  // llama-bpe default
  EXPECT_EQ(t->Decode(t->Encode(" the hello", false)), " the hello");
  EXPECT_EQ(t->Encode(" the hello", false).size(), 2u);
}

}  // namespace
}  // namespace tabfit
