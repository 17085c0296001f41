#include "model/package/synth.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "core/f16.h"
#include "engine/engine.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "model/package/package.h"
#include "model/package/sha256.h"
#include "model/tokenizer/tokenizer.h"
#include "quant/kernels.h"

namespace tabfit {
namespace {

namespace fs = std::filesystem;

std::string TempPath(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("tabfit-synth-test-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  return (dir / name).string();
}

std::string FileSha(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> buf(1 << 16);
  Sha256 h;
  while (in) {
    in.read(buf.data(), buf.size());
    h.Update(buf.data(), static_cast<size_t>(in.gcount()));
  }
  return h.FinalHex();
}

TEST(SynthTest, Shapes) {
  auto t = FindSynthShape("tinyllama-1.1b");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->n_layer, 22);
  EXPECT_EQ(t->n_head_kv, 4);
  EXPECT_NEAR(t->ParameterCount() / 1e9, 1.1, 0.01);
  auto l7 = FindSynthShape("llama2-7b");
  ASSERT_TRUE(l7.ok());
  EXPECT_NEAR(l7->ParameterCount() / 1e9, 6.74, 0.01);
  auto l13 = FindSynthShape("llama2-13b");
  ASSERT_TRUE(l13.ok());
  EXPECT_NEAR(l13->ParameterCount() / 1e9, 13.0, 0.05);
  auto c = FindSynthShape("layers=3,embd=512,ff=1024,heads=8,kv_heads=2,vocab=1000");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->n_layer, 3);
  EXPECT_EQ(c->n_head_kv, 2);
  EXPECT_EQ(FindSynthShape("gpt5").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(FindSynthShape("layers=2,embd=100,ff=8,heads=3,vocab=300").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(*ParseTensorTypeName("Q4_0"), TensorType::kQ4_0);
  EXPECT_EQ(*ParseTensorTypeName("tf_q2"), TensorType::kTF_Q2);
  EXPECT_FALSE(ParseTensorTypeName("q9").ok());
}

TEST(SynthTest, VocabIsValidAndRoundTrips) {
  auto v = MakeSynthVocab(32000);
  ASSERT_TRUE(v.ok());
  ASSERT_EQ(v->tokens.size(), 32000u);
  std::set<std::string> uniq(v->tokens.begin(), v->tokens.end());
  EXPECT_EQ(uniq.size(), v->tokens.size());
  EXPECT_EQ(v->tokens[3], "<0x00>");
  EXPECT_EQ(v->tokens[258], "<0xFF>");
  Vocab voc;
  voc.tokens = v->tokens;
  voc.scores = v->scores;
  voc.types = v->types;
  voc.unk_id = 0;
  voc.bos_id = 1;
  voc.eos_id = 2;
  auto tok = Tokenizer::FromVocab(voc);
  ASSERT_TRUE(tok.ok()) << tok.status().ToString();
  const std::string text = "Hello world, the quick brown fox!\n\xC3\xA9t\xC3\xA9 \xE2\x9C\x85";
  auto ids = tok->Encode(text, false);
  EXPECT_LT(ids.size(), text.size());  // pieces longer than one byte are used
  EXPECT_EQ(tok->Detokenize(ids, false, false), text);
  EXPECT_FALSE(MakeSynthVocab(100).ok());
}

class SynthModelTest : public ::testing::TestWithParam<TensorType> {};

TEST_P(SynthModelTest, TinyShapeLoadsAndGenerates) {
  const TensorType type = GetParam();
  if (!CanQuantize(type) || !IsSupported(type)) GTEST_SKIP() << "type not in this build";
  auto shape = FindSynthShape("tiny");
  ASSERT_TRUE(shape.ok());
  SynthOptions so;
  so.type = type;
  so.seed = 42;
  so.threads = 2;
  const std::string path = TempPath("tiny-" + std::string(TensorTypeName(type)) + ".gguf");
  auto r = WriteSyntheticModel(*shape, so, path);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(fs::file_size(path), r->file_bytes);

  auto g = GgufFile::Open(path);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const GgufTensorInfo* q = g->FindTensor("blk.1.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, type);
  EXPECT_EQ(g->FindTensor("blk.1.attn_k.weight")->ne, (std::vector<int64_t>{256, 128}));
  EXPECT_EQ(g->FindTensor("output_norm.weight")->type, TensorType::kF32);
  // Weights look like N(0, 0.02^2).
  std::vector<uint8_t> raw(q->nbytes);
  ASSERT_TRUE(g->ReadTensor(*q, raw.data()).ok());
  std::vector<float> row(256);
  double s = 0, s2 = 0;
  for (int64_t r0 = 0; r0 < q->rows(); ++r0) {
    DequantizeRow(type, raw.data() + r0 * q->row_bytes(), row.data(), 256);
    for (float x : row) {
      s += x;
      s2 += double(x) * x;
    }
  }
  const double n = 256.0 * q->rows();
  EXPECT_NEAR(s / n, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(s2 / n), 0.02, 0.003);

  EngineOptions o;
  o.threads = 2;
  auto e = Engine::LoadFile(path, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  GenerateOptions go;
  go.max_tokens = 8;
  go.sampler.temperature = 0;
  go.stop_at_eos = false;
  GenerateStats stats;
  Status st = (*e)->Generate("Hello world", go, [](const std::string&, int32_t) { return true; }, &stats);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(stats.generated_tokens, 8);
}

INSTANTIATE_TEST_SUITE_P(Types, SynthModelTest,
                         ::testing::Values(TensorType::kF16, TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kTF_Q8,
                                           TensorType::kTF_Q4, TensorType::kTF_Q3, TensorType::kTF_Q2),
                         [](const auto& info) { return std::string(TensorTypeName(info.param)); });

TEST(SynthTest, DeterministicWhateverTheThreadCount) {
  auto shape = FindSynthShape("tiny");
  ASSERT_TRUE(shape.ok());
  SynthOptions so;
  so.type = TensorType::kQ4_0;
  so.seed = 7;
  so.threads = 1;
  const std::string a = TempPath("det-a.gguf"), b = TempPath("det-b.gguf"), c = TempPath("det-c.gguf");
  ASSERT_TRUE(WriteSyntheticModel(*shape, so, a).ok());
  so.threads = 2;
  ASSERT_TRUE(WriteSyntheticModel(*shape, so, b).ok());
  so.seed = 8;
  ASSERT_TRUE(WriteSyntheticModel(*shape, so, c).ok());
  EXPECT_EQ(FileSha(a), FileSha(b));
  EXPECT_NE(FileSha(a), FileSha(c));
  // A type whose blocks do not divide the rows is refused up front.
  auto odd = FindSynthShape("layers=1,embd=96,ff=192,heads=2,vocab=300");
  ASSERT_TRUE(odd.ok());
  so.type = TensorType::kTF_Q4;
  if (CanQuantize(so.type)) {
    EXPECT_EQ(WriteSyntheticModel(*odd, so, TempPath("odd.gguf")).status().code(), StatusCode::kInvalidArgument);
  }
}

// The quantize path (Gaussian rows through QuantizeRow) still works and differs
// from the direct random blocks; GGML Q2_K (read by llama.cpp only) is written
// directly, with valid scales: finite fp16 d/dmin and 4-bit sub-scales whose
// dequantized weights have mean 0 and RMS 0.02 (ggml's Q2_K formula).
TEST(SynthTest, QuantizeModeAndQ2K) {
  auto shape = FindSynthShape("tiny");
  ASSERT_TRUE(shape.ok());
  SynthOptions so;
  so.type = TensorType::kQ4_0;
  so.threads = 2;
  const std::string a = TempPath("direct.gguf"), b = TempPath("quantized.gguf"), k = TempPath("q2k.gguf");
  ASSERT_TRUE(WriteSyntheticModel(*shape, so, a).ok());
  so.quantize = true;
  ASSERT_TRUE(WriteSyntheticModel(*shape, so, b).ok());
  EXPECT_NE(FileSha(a), FileSha(b));
  EXPECT_EQ(fs::file_size(a), fs::file_size(b));
  so.type = TensorType::kQ2_K;
  EXPECT_EQ(WriteSyntheticModel(*shape, so, k).status().code(), StatusCode::kUnsupported);  // cannot quantize
  so.quantize = false;
  auto r = WriteSyntheticModel(*shape, so, k);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto g = GgufFile::Open(k);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const GgufTensorInfo* q = g->FindTensor("blk.0.ffn_down.weight");
  ASSERT_NE(q, nullptr);
  ASSERT_EQ(q->type, TensorType::kQ2_K);
  std::vector<uint8_t> raw(q->nbytes);
  ASSERT_TRUE(g->ReadTensor(*q, raw.data()).ok());
  ASSERT_EQ(raw.size() % 84, 0u);
  double s = 0, s2 = 0, n = 0;
  for (size_t off = 0; off < raw.size(); off += 84) {
    const uint8_t* blk = raw.data() + off;
    uint16_t dh, mh;
    std::memcpy(&dh, blk + 80, 2);
    std::memcpy(&mh, blk + 82, 2);
    const float d = F16ToF32(dh), dmin = F16ToF32(mh);
    ASSERT_TRUE(std::isfinite(d) && std::isfinite(dmin) && d > 0 && dmin > 0);
    // ggml dequantize_row_q2_K: 2 halves of 128; in each, 4 shifts x 2 groups of 16.
    const uint8_t* qs = blk + 16;
    int is = 0;
    for (int half = 0; half < 2; ++half, qs += 32) {
      for (int shift = 0; shift < 8; shift += 2) {
        for (int l0 = 0; l0 < 32; l0 += 16) {
          const uint8_t sc = blk[is++];
          for (int l = 0; l < 16; ++l) {
            const double w = d * (sc & 15) * ((qs[l0 + l] >> shift) & 3) - dmin * (sc >> 4);
            s += w;
            s2 += w * w;
            n += 1;
          }
        }
      }
    }
  }
  EXPECT_NEAR(s / n, 0.0, 0.002);
  EXPECT_NEAR(std::sqrt(s2 / n), 0.02, 0.003);
}

TEST(SynthTest, SynthThenPackage) {
  auto shape = FindSynthShape("tiny");
  SynthOptions so;
  so.type = TensorType::kF16;
  const std::string path = TempPath("pkg-src.gguf");
  ASSERT_TRUE(WriteSyntheticModel(*shape, so, path).ok());
  auto g = GgufFile::Open(path);
  ASSERT_TRUE(g.ok());
  const std::string dir = TempPath("pkg-q4");
  fs::remove_all(dir);
  PackageOptions po;
  po.max_chunk_bytes = 64 << 10;
  po.target_type = UniformWeightType(TensorType::kQ4_0);
  auto sum = WritePackageWithSummary(*g, dir, po);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  for (const auto& c : sum->chunks) EXPECT_LE(c.size, 64u << 10);
  EngineOptions o;
  o.threads = 1;
  auto src = OpenModelSource(dir);
  ASSERT_TRUE(src.ok());
  auto e = Engine::Load(std::move(*src), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ((*e)->model().hparams().n_layer, 2);
}

}  // namespace
}  // namespace tabfit
