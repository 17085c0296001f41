// tokenizer_test: SentencePiece ("llama") and byte-level BPE ("gpt2") tokenizers
// against llama.cpp's published vocab test, the golden greedy outputs, the
// bundled models' vocabs, and hand-built vocabs.
#include "model/tokenizer/tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <sstream>
#include <thread>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "model/tokenizer/unicode.h"
#include "test_util.h"

namespace tabfit {
namespace {

std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::shared_ptr<const Tokenizer> LoadTokenizer(const std::string& path) {
  static std::map<std::string, std::shared_ptr<const Tokenizer>> cache;
  auto it = cache.find(path);
  if (it != cache.end()) return it->second;
  Result<GgufFile> g = GgufFile::Open(path);
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  if (!g.ok()) return nullptr;
  Result<Tokenizer> t = Tokenizer::FromGguf(*g);
  EXPECT_TRUE(t.ok()) << t.status().ToString();
  if (!t.ok()) return nullptr;
  auto p = std::make_shared<const Tokenizer>(std::move(t).value());
  cache[path] = p;
  return p;
}

std::string LlamaSpmPath() { return testing::SharedModel("tokenizer-tests/ggml-vocab-llama-spm.gguf"); }

std::vector<int32_t> Ids(std::initializer_list<int32_t> l) { return std::vector<int32_t>(l); }

// ---------------------------------------------------------------- llama (SPM)

TEST(SpmTokenizer, HelloWorldOnLlamaVocab) {
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->model_kind(), "llama");
  EXPECT_EQ(tok->n_vocab(), 32000);
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_EQ(tok->unk(), 0);
  EXPECT_TRUE(tok->add_bos());
  EXPECT_FALSE(tok->add_eos());
  EXPECT_EQ(tok->Encode("Hello world", false), Ids({15043, 3186}));
  EXPECT_EQ(tok->Encode(" Hello World!", false), Ids({29871, 15043, 2787, 29991}));
  EXPECT_EQ(tok->Encode("Hello world", true), Ids({1, 15043, 3186}));
  EXPECT_EQ(tok->Encode("", false), Ids({}));
  EXPECT_EQ(tok->Encode("", true), Ids({1}));
  EXPECT_GT(tok->MemoryBytes(), 32000u * 3 * 8);
  EXPECT_LT(tok->MemoryBytes(), 8u << 20);
  EXPECT_TRUE(tok->IsEog(2));
  EXPECT_FALSE(tok->IsEog(1));
  EXPECT_FALSE(tok->IsEog(15043));
  EXPECT_FALSE(tok->IsEog(-5));
  EXPECT_FALSE(tok->IsEog(1 << 20));
}

// llama.cpp's test-tokenizer-0 on the same files: inputs split at
// "\n__ggml_vocab_test__\n", tokenized without BOS and without special parsing.
TEST(SpmTokenizer, LlamaCppVocabTestFilesMatchExactly) {
  const std::string inp_path = LlamaSpmPath() + ".inp";
  const std::string out_path = LlamaSpmPath() + ".out";
  TABFIT_REQUIRE_FILE(inp_path);
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  const std::string inp = ReadFileOrEmpty(inp_path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  size_t last = 0, pos;
  while ((pos = inp.find(sep, last)) != std::string::npos) {
    inputs.push_back(inp.substr(last, pos - last));
    last = pos + sep.size();
  }
  std::ifstream outs(out_path);
  std::vector<std::vector<int32_t>> expected;
  std::string line;
  while (std::getline(outs, line)) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    int32_t id;
    while (ls >> id) ids.push_back(id);
    expected.push_back(ids);
  }
  ASSERT_EQ(inputs.size(), expected.size());
  ASSERT_GE(inputs.size(), 40u);
  for (size_t i = 0; i < inputs.size(); ++i) {
    EXPECT_EQ(tok->Encode(inputs[i], false), expected[i]) << "case " << i << ": '" << inputs[i] << "'";
    // Decoding gives the input back, after the dummy-prefix space.
    if (!inputs[i].empty()) EXPECT_EQ(tok->Decode(expected[i]), " " + inputs[i]) << "case " << i;
  }
}

TEST(SpmTokenizer, PiecesAndDetokenize) {
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->TokenToPiece(15043), " Hello");
  EXPECT_EQ(tok->TokenText(15043), "\xE2\x96\x81Hello");
  EXPECT_EQ(tok->TokenToPiece(13), "\n");  // <0x0A>
  EXPECT_EQ(tok->TokenText(13), "<0x0A>");
  EXPECT_EQ(tok->token_type(13), TokenType::kByte);
  EXPECT_EQ(tok->TokenToPiece(1), "<s>");
  EXPECT_EQ(tok->TokenToPiece(2), "</s>");
  EXPECT_EQ(tok->TokenToPiece(0), "<unk>");
  EXPECT_EQ(tok->TokenToPiece(1, /*render_special=*/false), "");
  EXPECT_EQ(tok->TokenToPiece(-1), "");
  EXPECT_EQ(tok->TokenToPiece(32000), "");
  EXPECT_EQ(tok->Decode({1, 15043, 3186}), "<s> Hello world");
  // llama_detokenize: leading space dropped; with remove_special a leading BOS is dropped and the space kept.
  EXPECT_EQ(tok->Detokenize({15043, 3186}, false, false), "Hello world");
  EXPECT_EQ(tok->Detokenize({1, 15043, 3186}, true, false), " Hello world");
  EXPECT_EQ(tok->Detokenize({1, 15043, 3186, 2}, false, true), "<s> Hello world</s>");
  EXPECT_EQ(tok->Detokenize({1, 15043, 3186, 2}, false, false), " Hello world");
  EXPECT_EQ(tok->PieceToId("\xE2\x96\x81Hello"), 15043);
  EXPECT_EQ(tok->PieceToId("no such piece at all"), -1);
}

TEST(SpmTokenizer, SpecialTokensParsedOnlyWhenAsked) {
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  // parse_special: "<s>" is BOS and the text after it gets the dummy prefix again.
  EXPECT_EQ(tok->Encode("<s>Hello world</s>", false, true), Ids({1, 15043, 3186, 2}));
  EXPECT_EQ(tok->Encode("Hello world</s>Hello world", false, true), Ids({15043, 3186, 2, 15043, 3186}));
  // Without it they are plain text and decode back to themselves, never to BOS/EOS or byte tokens.
  for (const char* s : {"<s>Hello world</s>", "a <0x0A> b", "<unk>"}) {
    const auto ids = tok->Encode(s, false, false);
    for (int32_t id : ids) {
      EXPECT_FALSE(tok->IsControl(id)) << s;
      EXPECT_NE(tok->token_type(id), TokenType::kUnknown) << s;
    }
    EXPECT_EQ(tok->Decode(ids), std::string(" ") + s);
  }
}

TEST(SpmTokenizer, GoldenGreedyPromptsRoundTrip) {
  const std::string path = testing::SharedModel("golden/greedy.jsonl");
  TABFIT_REQUIRE_FILE(path);
  std::ifstream f(path);
  std::string line;
  int n = 0;
  while (std::getline(f, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    const std::string model = testing::SharedModel(j.at("model").get<std::string>());
    if (!std::filesystem::exists(model)) continue;
    auto tok = LoadTokenizer(model);
    ASSERT_TRUE(tok);
    const std::string prompt = j.at("prompt").get<std::string>();
    const std::string output = j.at("output").get<std::string>();
    const auto ids = tok->Encode(prompt, j.at("add_bos").get<bool>());
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], tok->bos());
    const std::string decoded = tok->Decode(ids);
    EXPECT_EQ(decoded, "<s> " + prompt);
    EXPECT_EQ(output.compare(0, decoded.size(), decoded), 0) << output;
    // The generated text (after the prompt) must be encodable and decodable without loss.
    const std::string rest = output.substr(decoded.size());
    EXPECT_EQ(tok->Decode(tok->Encode(rest, false)), " " + rest);
    ++n;
  }
  EXPECT_GE(n, 4);
}

void ExpectRoundTrip(const Tokenizer& tok, const std::string& text, const std::string& what) {
  const auto ids = tok.Encode(text, false);
  const std::string back = tok.Decode(ids);
  ASSERT_EQ(back.size(), text.size() + 1) << what;
  EXPECT_TRUE(back == " " + text) << what;
  EXPECT_EQ(tok.Detokenize(ids, false, false), text) << what;
}

TEST(SpmTokenizer, DemoVocabRoundTripsEvalTextsExactly) {
  const std::string model = testing::SharedModel("tabfit-demo-8m-f16.gguf");
  TABFIT_REQUIRE_FILE(model);
  auto tok = LoadTokenizer(model);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->n_vocab(), 4096);
  for (const char* name : {"eval/wikitext2_test.txt", "eval/tinystories_valid_head794k.txt"}) {
    const std::string path = testing::SharedModel(name);
    TABFIT_REQUIRE_FILE(path);
    const std::string text = ReadFileOrEmpty(path).substr(0, 20000);
    ASSERT_EQ(text.size(), 20000u);
    ExpectRoundTrip(*tok, text, name);
    const auto ids = tok->Encode(text, false);
    EXPECT_LT(ids.size(), text.size() / 2) << "merges should compress text: " << name;
  }
  // Emoji, CJK, combining marks, control bytes, invalid UTF-8, lone continuation
  // bytes, truncated sequences: byte fallback keeps every byte.
  const std::string odd[] = {
      "\xF0\x9F\x98\x81 emoji \xF0\x9F\x9A\x80\xE2\x9C\x85",
      "\xE6\x88\x91\xE6\x83\xB3\xE5\x9C\xA8 apple",
      "e\xCC\x81t\xC3\xA9",
      std::string("nul\0byte\x01\x7F", 10),
      "bad \xFF\xFE utf8 \x80\xBF",
      "truncated \xE2\x96",
      "\xE2x\xF0\x9F",
      "  leading and trailing  \n\n\t",
  };
  for (const std::string& s : odd) ExpectRoundTrip(*tok, s, "odd input " + s);
}

// The perplexity runs tokenize the whole WikiText-2 test set (1.3 MB) at once.
TEST(SpmTokenizer, WholeWikitextRoundTripsOnLlamaVocab) {
  const std::string path = testing::SharedModel("eval/wikitext2_test.txt");
  TABFIT_REQUIRE_FILE(path);
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  const std::string text = ReadFileOrEmpty(path);
  ASSERT_GT(text.size(), 1000000u);
  const auto ids = tok->Encode(text, true);
  EXPECT_EQ(ids[0], 1);
  EXPECT_GT(ids.size(), text.size() / 6);
  EXPECT_LT(ids.size(), text.size() / 3);
  EXPECT_EQ(tok->Detokenize(ids, /*remove_special=*/true, false), " " + text);
}

TEST(SpmTokenizer, Stories260KEncoderMatchesReadme) {
  const std::string model = testing::SharedModel("stories260K.gguf");
  TABFIT_REQUIRE_FILE(model);
  auto tok = LoadTokenizer(model);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_TRUE(tok->add_bos());  // no add_bos_token key: SentencePiece default
  // README: the first 32 greedy ids decode to Karpathy's documented story start.
  const std::vector<int32_t> greedy = {403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426, 338,
                                       401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433, 426, 385};
  const std::string text = tok->Decode(greedy);
  EXPECT_EQ(text.rfind(" Once upon a time, there was a little girl named Lily. She loved to play outside", 0), 0u)
      << text;
  EXPECT_EQ(tok->TokenToPiece(403), " Once");
  EXPECT_EQ(tok->TokenToPiece(385), " One");
  // README perplexity protocol: the first 20000 characters of the TinyStories
  // text give 9602 tokens with the (equivalent) llama2.c encoder.
  const std::string path = testing::SharedModel("eval/tinystories_valid_head794k.txt");
  TABFIT_REQUIRE_FILE(path);
  const std::string all = ReadFileOrEmpty(path);
  size_t bytes = 0;
  for (int chars = 0; chars < 20000 && bytes < all.size(); ++chars) {
    bytes += unicode::Utf8SeqLen(static_cast<uint8_t>(all[bytes]));
  }
  const auto ids = tok->Encode(all.substr(0, bytes), false);
  EXPECT_EQ(ids.size(), 9602u);
  ExpectRoundTrip(*tok, all.substr(0, bytes), "tinystories 20000 chars");
}

TEST(SpmTokenizer, BabyLlamaVocabWithoutByteTokensUsesUnk) {
  const std::string model = testing::SharedModel("babyllama-tok105-1M.gguf");
  TABFIT_REQUIRE_FILE(model);
  auto tok = LoadTokenizer(model);
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->n_vocab(), 105);
  // README: greedy ids from BOS decode to " Once upon a time, ...".
  const std::vector<int32_t> greedy = {3, 34, 9, 22, 4, 3, 18, 20, 7, 9, 3, 5, 3, 6, 10, 16,
                                       4, 25, 3, 6, 8, 4, 13, 4, 3, 17, 5, 12, 3, 5, 3, 14};
  EXPECT_EQ(tok->Decode(greedy), " Once upon a time, there was a l");
  EXPECT_EQ(tok->Encode("Once upon a time, there was a l", false), greedy);
  // Newline is not in the vocab: one <unk> per run of unknown characters, no crash.
  const auto ids = tok->Encode("The end.\nThe\n\nend", false);
  int unks = 0;
  for (int32_t id : ids) unks += id == tok->unk();
  EXPECT_EQ(unks, 2);
  EXPECT_EQ(tok->Decode(ids), " The end.<unk>The<unk>end");
  const auto emoji = tok->Encode("hi \xF0\x9F\x98\x81\xE2\x9C\x85 \xFF there", false);
  EXPECT_EQ(tok->Decode(emoji), " hi <unk> <unk> there");
  EXPECT_EQ(tok->Encode("\n", false), Ids({3, 0}));
}

// Word-at-a-time merging (used when no piece has an inner "▁") must give the
// same ids as merging the whole text at once: add a never-matching piece with
// an inner "▁" to force the whole-text path and compare.
TEST(SpmTokenizer, WordSplitMergingEqualsWholeTextMerging) {
  const std::string path = testing::SharedModel("eval/wikitext2_test.txt");
  TABFIT_REQUIRE_FILE(path);
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  Result<GgufFile> g = GgufFile::Open(LlamaSpmPath());
  ASSERT_TRUE(g.ok());
  Result<Vocab> v = VocabFromGguf(*g);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  Result<Tokenizer> split = Tokenizer::FromVocab(*v);
  ASSERT_TRUE(split.ok());
  v->tokens.push_back("\x01\xE2\x96\x81\x01");
  v->scores.push_back(-1e9f);
  v->types.push_back(1);
  Result<Tokenizer> whole = Tokenizer::FromVocab(std::move(v).value());
  ASSERT_TRUE(whole.ok());
  const std::string text = ReadFileOrEmpty(path).substr(300000, 60000) + " \xF0\x9F\x98\x81  x\xE2\x96\x81y \xFF z";
  EXPECT_EQ(split->Encode(text, true), whole->Encode(text, true));
}

// Random byte strings (valid and invalid UTF-8, spaces, special-token text):
// never a crash, ids always in range, exact round trip without special parsing.
// (A literal U+2581 "▁" in the text is the one exception: as in SentencePiece
// and llama.cpp it is indistinguishable from an escaped space and decodes as " ".)
TEST(SpmTokenizer, RandomInputsRoundTrip) {
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  const std::string pieces[] = {"a", "the", " ", "  ", "\n", "\t", "\xC3\xA9", "\xE2\x9C\x85", "\xF0\x9F\x98\x81",
                                "\xE2", "\x80", "\xFF", "<s>", "</s>", "<unk>", "<0x0A>", "1234", "'s"};
  std::mt19937 rng(1234);
  for (int iter = 0; iter < 300; ++iter) {
    std::string s;
    const int n = rng() % 24;
    for (int k = 0; k < n; ++k) {
      if (rng() % 4 == 0) {
        s.push_back(static_cast<char>(rng() & 0xFF));
      } else {
        s += pieces[rng() % std::size(pieces)];
      }
    }
    const auto ids = tok->Encode(s, false);
    for (int32_t id : ids) ASSERT_TRUE(id >= 0 && id < tok->n_vocab());
    if (!s.empty()) EXPECT_EQ(tok->Decode(ids), " " + s) << iter;
    for (int32_t id : tok->Encode(s, true, /*parse_special=*/true)) ASSERT_TRUE(id >= 0 && id < tok->n_vocab());
  }
}

// A Tokenizer is immutable: concurrent Encode/Decode give the sequential results.
TEST(SpmTokenizer, ConcurrentUseGivesSameResults) {
  const std::string path = testing::SharedModel("eval/tinystories_valid_head794k.txt");
  TABFIT_REQUIRE_FILE(path);
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  const std::string text = ReadFileOrEmpty(path);
  constexpr int kThreads = 4;
  std::vector<std::string> parts;
  std::vector<std::vector<int32_t>> expected;
  for (int i = 0; i < kThreads; ++i) {
    parts.push_back(text.substr(i * 20000, 20000));
    expected.push_back(tok->Encode(parts.back(), true));
  }
  std::vector<std::vector<int32_t>> got(kThreads);
  std::vector<std::string> decoded(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int rep = 0; rep < 3; ++rep) got[i] = tok->Encode(parts[i], true);
      decoded[i] = tok->Decode(got[i]);
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(got[i], expected[i]);
    EXPECT_EQ(decoded[i], "<s> " + parts[i]);
  }
}

std::string Unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out.push_back(static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16)));
  return out;
}

// Ids from the real SentencePiece library for the models behind the shared
// GGUF files (gen_spm_cases.py), including BabyLlama's <unk> runs.
TEST(SpmTokenizer, MatchesSentencePieceLibrary) {
  const std::string path = testing::SourceDir() + "/src/model/tokenizer/testdata/spm_reference_cases.txt";
  std::ifstream f(path);
  ASSERT_TRUE(f.good()) << "missing " << path;
  std::string line;
  std::map<std::string, int> per_model;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    std::string model, text_hex, ids_text;
    std::getline(ls, model, '\t');
    std::getline(ls, text_hex, '\t');
    std::getline(ls, ids_text);
    const std::string gguf = testing::SharedModel(model);
    if (!std::filesystem::exists(gguf)) continue;
    auto tok = LoadTokenizer(gguf);
    ASSERT_TRUE(tok);
    std::vector<int32_t> expected;
    std::istringstream is(ids_text);
    int32_t id;
    while (is >> id) expected.push_back(id);
    const std::string text = Unhex(text_hex);
    EXPECT_EQ(tok->Encode(text, false), expected) << model << ": '" << text << "'";
    ++per_model[model];
  }
  if (per_model.empty()) GTEST_SKIP() << "no shared models present";
  for (const auto& [model, n] : per_model) EXPECT_EQ(n, 46) << model;
}

// ------------------------------------------------------------- StreamDecoder

TEST(StreamDecoder, HoldsSplitCharacterUntilComplete) {
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  // "✅" = E2 9C 85 -> byte tokens 0xE2+3, 0x9C+3, 0x85+3 in this vocab.
  const int32_t e2 = tok->PieceToId("<0xE2>"), x9c = tok->PieceToId("<0x9C>"), x85 = tok->PieceToId("<0x85>");
  ASSERT_GE(e2, 0);
  StreamDecoder sd(*tok);
  EXPECT_EQ(sd.Push(15043), " Hello");
  EXPECT_EQ(sd.Push(e2), "");
  EXPECT_EQ(sd.Push(x9c), "");
  EXPECT_EQ(sd.Push(x85), "\xE2\x9C\x85");
  EXPECT_EQ(sd.Flush(), "");
  // An incomplete character at the end comes out on Flush.
  EXPECT_EQ(sd.Push(e2), "");
  EXPECT_EQ(sd.Flush(), "\xE2");
  // A broken sequence is passed through, or replaced with U+FFFD.
  EXPECT_EQ(sd.Push(e2), "");
  EXPECT_EQ(sd.Push(3186), "\xE2 world");
  StreamDecoder rep(*tok, /*replace_invalid=*/true);
  EXPECT_EQ(rep.Push(e2), "");
  EXPECT_EQ(rep.Push(3186), "\xEF\xBF\xBD world");
  EXPECT_EQ(rep.Push(x85), "\xEF\xBF\xBD");
}

TEST(StreamDecoder, ConcatenationEqualsDecodeAndIsValidUtf8) {
  TABFIT_REQUIRE_FILE(LlamaSpmPath());
  auto tok = LoadTokenizer(LlamaSpmPath());
  ASSERT_TRUE(tok);
  const std::string text = "Emoji \xF0\x9F\x9A\x80 (normal) \xF0\x9F\x98\xB6\xE2\x80\x8D\xF0\x9F\x8C\xAB\xEF\xB8\x8F "
                           "\xE1\x9E\x80\xE1\x9E\xB6 \xE6\x88\x91 done";
  const auto ids = tok->Encode(text, true);
  StreamDecoder sd(*tok);
  std::string streamed;
  for (int32_t id : ids) {
    const std::string part = sd.Push(id);
    // Every chunk is complete UTF-8 on its own.
    for (const unicode::Unit& u : unicode::DecodeUtf8(part)) EXPECT_NE(u.cp, unicode::kReplacementChar);
    streamed += part;
  }
  streamed += sd.Flush();
  EXPECT_EQ(streamed, tok->Decode(ids));
  EXPECT_EQ(streamed, "<s> " + text);
}

}  // namespace
}  // namespace tabfit
