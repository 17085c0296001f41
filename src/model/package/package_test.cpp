#include "model/package/package.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "engine/engine.h"
#include "model/gguf/gguf.h"
#include "model/package/sha256.h"
#include "quant/kernels.h"
#include "test_util.h"

namespace tabfit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string TempDir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("tabfit-package-test-" + std::to_string(::getpid())) / name;
  std::error_code ec;
  fs::remove_all(p, ec);
  fs::create_directories(p.parent_path(), ec);
  return p.string();
}

json ReadManifest(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "manifest.json");
  return json::parse(in);
}

std::vector<uint8_t> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::vector<uint8_t>(std::istreambuf_iterator<char>(in), {});
}

std::string Greedy(std::unique_ptr<ByteSource> src, const std::string& weight_type = "") {
  EngineOptions o;
  o.threads = 2;
  o.n_ctx = 128;
  o.weight_type = weight_type;
  auto e = Engine::Load(std::move(src), o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  if (!e.ok()) return "";
  GenerateOptions go;
  go.max_tokens = 24;
  go.sampler.temperature = 0;
  go.stop_at_eos = false;
  std::string out;
  Status s = (*e)->Generate("The king said", go, [&](const std::string& piece, int32_t) {
    out += piece;
    return true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

TEST(Sha256Test, KnownVectorsAndBackendsAgree) {
  Sha256 h;
  h.Update("abc", 3);
  EXPECT_EQ(h.FinalHex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 e;
  EXPECT_EQ(e.FinalHex(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  PortableSha256 p;
  p.Update("abc", 3);
  EXPECT_EQ(Sha256::DigestHex(p.Final()), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // Odd-sized pieces across block boundaries: both implementations agree.
  std::vector<uint8_t> data(100003);
  std::mt19937 rng(7);
  for (auto& b : data) b = static_cast<uint8_t>(rng());
  Sha256 a;
  PortableSha256 b;
  for (size_t off = 0, step = 1; off < data.size(); off += step, step = step * 3 % 997 + 1) {
    size_t n = std::min(step, data.size() - off);
    a.Update(data.data() + off, n);
    b.Update(data.data() + off, n);
  }
  EXPECT_EQ(a.FinalHex(), Sha256::DigestHex(b.Final()));
}

TEST(PackageTest, ComponentsAndPriority) {
  EXPECT_EQ(TensorComponent("token_embd.weight"), "embeddings");
  EXPECT_EQ(TensorComponent("blk.12.ffn_up.weight"), "layers.12");
  EXPECT_EQ(TensorComponent("output.weight"), "lm_head");
  EXPECT_EQ(TensorComponent("output_norm.weight"), "output_norm");
  EXPECT_EQ(TensorComponent("rope_freqs.weight"), "other");
  EXPECT_LT(ComponentPriority("embeddings"), ComponentPriority("layers.0"));
  EXPECT_LT(ComponentPriority("layers.0"), ComponentPriority("output_norm"));
  EXPECT_LT(ComponentPriority("output_norm"), ComponentPriority("lm_head"));
  EXPECT_LT(ComponentPriority("lm_head"), ComponentPriority("layers.1"));
  EXPECT_LT(ComponentPriority("layers.9"), ComponentPriority("layers.10"));
}

class DemoPackageTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kMaxChunk = 1 << 20;  // 1 MiB: the 2 MiB embedding and lm_head split
  void SetUp() override {
    model_ = testing::DemoModel();
    TABFIT_REQUIRE_FILE(model_);
  }
  std::string model_;
};

TEST_F(DemoPackageTest, F16PackageIsTheSameModel) {
  auto g = GgufFile::Open(model_);
  ASSERT_TRUE(g.ok()) << g.status().ToString();
  const std::string dir = TempDir("f16");
  PackageOptions po;
  po.max_chunk_bytes = kMaxChunk;
  auto sum = WritePackageWithSummary(*g, dir, po);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  ASSERT_TRUE(IsPackageDir(dir));
  ASSERT_TRUE(VerifyPackage(dir).ok());

  // Chunks: none over the limit; files on disk match the manifest.
  json m = ReadManifest(dir);
  EXPECT_EQ(m["format"], "tabfit-package");
  EXPECT_EQ(m["version"], 1);
  EXPECT_EQ(m["model"]["n_layer"], 8);
  EXPECT_EQ(m["tokenizer"]["n_tokens"], 4096);
  EXPECT_EQ(m["chunks"][0]["file"], "header.gguf");
  uint64_t pos = 0;
  for (const auto& c : m["chunks"]) {
    EXPECT_LE(c["size"].get<uint64_t>(), kMaxChunk) << c["file"];
    EXPECT_EQ(c["offset"].get<uint64_t>(), pos);
    EXPECT_EQ(fs::file_size(fs::path(dir) / c["file"].get<std::string>()), c["size"].get<uint64_t>());
    pos += c["size"].get<uint64_t>();
  }
  EXPECT_GT(m["chunks"].size(), 10u);

  // Manifest order is priority order: embeddings, layers.0, output_norm, lm_head, layers.1..7.
  std::vector<std::string> order;
  for (const auto& c : m["load_order"]) order.push_back(c);
  std::vector<std::string> want = {"embeddings", "layers.0", "output_norm", "lm_head"};
  for (int i = 1; i < 8; ++i) want.push_back("layers." + std::to_string(i));
  EXPECT_EQ(order, want);
  int64_t last = -1;
  for (const auto& t : m["tensors"]) {
    int64_t p = ComponentPriority(t["component"]);
    EXPECT_GE(p, last) << t["name"];
    last = p;
  }

  // Each tensor's parts, read from the chunk files, are the original bytes and
  // hash to the manifest's sha256; large tensors are split at rows.
  bool any_split = false;
  for (const auto& t : m["tensors"]) {
    const GgufTensorInfo* info = g->FindTensor(t["name"].get<std::string>());
    ASSERT_NE(info, nullptr);
    std::vector<uint8_t> want_bytes(info->nbytes);
    ASSERT_TRUE(g->ReadTensor(*info, want_bytes.data()).ok());
    std::vector<uint8_t> got;
    int64_t next_row = 0;
    for (const auto& part : t["parts"]) {
      auto f = ReadFile((fs::path(dir) / part["file"].get<std::string>()).string());
      uint64_t off = part["offset"], len = part["length"];
      ASSERT_LE(off + len, f.size());
      got.insert(got.end(), f.begin() + off, f.begin() + off + len);
      EXPECT_EQ(part["rows"][0].get<int64_t>(), next_row);
      next_row = part["rows"][1];
      EXPECT_EQ(len, (part["rows"][1].get<uint64_t>() - part["rows"][0].get<uint64_t>()) * info->row_bytes());
    }
    EXPECT_EQ(next_row, info->rows());
    EXPECT_TRUE(got == want_bytes) << t["name"];
    Sha256 h;
    h.Update(got.data(), got.size());
    EXPECT_EQ(h.FinalHex(), t["sha256"]) << t["name"];
    any_split |= t["split"].get<bool>();
    if (t["name"] == "token_embd.weight") EXPECT_TRUE(t["split"].get<bool>());
  }
  EXPECT_TRUE(any_split);

  // The virtual concatenation parses as a GGUF with the same metadata and tensors.
  auto src = OpenPackage(dir);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  auto pg = GgufFile::Parse(std::move(*src));
  ASSERT_TRUE(pg.ok()) << pg.status().ToString();
  EXPECT_EQ(pg->metadata().size(), g->metadata().size());
  EXPECT_EQ(pg->tensors().size(), g->tensors().size());
  EXPECT_EQ(pg->tensors()[0].name, "token_embd.weight");

  // Engine: greedy text from the package equals greedy text from the GGUF.
  auto a = OpenModelSource(model_);
  auto b = OpenModelSource(dir);
  ASSERT_TRUE(a.ok() && b.ok());
  std::string from_file = Greedy(std::move(*a));
  std::string from_pkg = Greedy(std::move(*b));
  EXPECT_FALSE(from_file.empty());
  EXPECT_EQ(from_file, from_pkg);
}

TEST_F(DemoPackageTest, Q8_0ConversionSizesAndOutput) {
  auto g = GgufFile::Open(model_);
  ASSERT_TRUE(g.ok());
  const std::string dir = TempDir("q8");
  PackageOptions po;
  po.max_chunk_bytes = kMaxChunk;
  po.target_type = UniformWeightType(TensorType::kQ8_0);
  auto sum = WritePackageWithSummary(*g, dir, po);
  ASSERT_TRUE(sum.ok()) << sum.status().ToString();
  json m = ReadManifest(dir);
  int n_q8 = 0;
  for (const auto& t : m["tensors"]) {
    std::vector<int64_t> ne = t["shape"];
    if (ne.size() == 2) {
      EXPECT_EQ(t["format"], "Q8_0") << t["name"];
      EXPECT_EQ(t["length"].get<uint64_t>(), RowBytes(TensorType::kQ8_0, ne[0]) * ne[1]) << t["name"];
      ++n_q8;
    } else {
      EXPECT_EQ(t["format"], "F32") << t["name"];
    }
  }
  EXPECT_EQ(n_q8, 8 * 7 + 2);
  for (const auto& c : m["chunks"]) EXPECT_LE(c["size"].get<uint64_t>(), kMaxChunk);
  auto pg = GgufFile::Parse(std::move(OpenPackage(dir).value()));
  ASSERT_TRUE(pg.ok());
  EXPECT_EQ(pg->FindTensor("blk.3.ffn_down.weight")->type, TensorType::kQ8_0);
  EXPECT_EQ(*pg->GetU64("general.file_type"), 7u);
  // Converting ahead of time = converting at load time (same quantizer).
  std::string at_load = Greedy(std::move(OpenModelSource(model_).value()), "q8_0");
  std::string ahead = Greedy(std::move(OpenModelSource(dir).value()));
  EXPECT_FALSE(ahead.empty());
  EXPECT_EQ(at_load, ahead);
}

// PackageOptions::importance reaches the quantizer: a TF_Q2 package converted with
// (synthetic, strongly non-uniform) importance differs from one without, has the lower
// importance-weighted error, and both load and generate.
TEST_F(DemoPackageTest, ImportanceChangesTfConversionAndBothGenerate) {
  auto g = GgufFile::Open(model_);
  ASSERT_TRUE(g.ok());
  std::map<std::string, std::vector<float>> imps;
  std::mt19937 rng(7);
  for (const auto& t : g->tensors()) {
    if (t.ne.size() != 2) continue;
    std::vector<float> v(static_cast<size_t>(t.ne[0]));
    for (auto& x : v) x = (rng() % 8 == 0) ? 50.0f : 0.1f + (rng() % 100) / 100.0f;
    imps[t.name] = std::move(v);
  }
  const std::string plain = TempDir("q2-plain"), weighted = TempDir("q2-imp");
  PackageOptions po;
  po.max_chunk_bytes = kMaxChunk;
  // Layer 2's seven matrices only (keeps the test quick); the rest stays F16.
  const TensorTypeFn q2 = UniformWeightType(TensorType::kTF_Q2);
  po.target_type = [q2](const GgufTensorInfo& t) -> std::optional<TensorType> {
    return t.name.rfind("blk.2.", 0) == 0 ? q2(t) : std::nullopt;
  };
  auto s0 = WritePackageWithSummary(*g, plain, po);
  ASSERT_TRUE(s0.ok()) << s0.status().ToString();
  int asked = 0;
  po.importance = [&](const GgufTensorInfo& t) -> const float* {
    ++asked;
    auto it = imps.find(t.name);
    return it == imps.end() ? nullptr : it->second.data();
  };
  auto s1 = WritePackageWithSummary(*g, weighted, po);
  ASSERT_TRUE(s1.ok()) << s1.status().ToString();
  EXPECT_EQ(asked, 7);  // every converted tensor, once
  ASSERT_EQ(s0->tensors.size(), s1->tensors.size());
  int differ = 0, with_imp = 0;
  for (size_t i = 0; i < s0->tensors.size(); ++i) {
    EXPECT_FALSE(s0->tensors[i].used_importance);
    with_imp += s1->tensors[i].used_importance;
    EXPECT_EQ(s0->tensors[i].type, s1->tensors[i].type);
    differ += s0->tensors[i].sha256 != s1->tensors[i].sha256;
  }
  EXPECT_EQ(with_imp, 7);
  EXPECT_EQ(differ, 7);
  // The weighted package has the lower importance-weighted error on a real matrix.
  const std::string name = "blk.2.ffn_down.weight";
  const GgufTensorInfo* src_t = g->FindTensor(name);
  ASSERT_NE(src_t, nullptr);
  const int64_t cols = src_t->ne[0], rows = src_t->rows();
  std::vector<uint8_t> raw(src_t->row_bytes() * rows);
  ASSERT_TRUE(g->ReadTensorRows(*src_t, 0, rows, raw.data()).ok());
  std::vector<float> ref(cols * rows);
  for (int64_t r = 0; r < rows; ++r) DequantizeRow(src_t->type, raw.data() + r * src_t->row_bytes(), ref.data() + r * cols, cols);
  auto weighted_err = [&](const std::string& dir) {
    auto pg = GgufFile::Parse(std::move(OpenPackage(dir).value()));
    EXPECT_TRUE(pg.ok());
    const GgufTensorInfo* t = pg->FindTensor(name);
    EXPECT_EQ(t->type, TensorType::kTF_Q2);
    std::vector<uint8_t> q(t->row_bytes() * rows);
    EXPECT_TRUE(pg->ReadTensorRows(*t, 0, rows, q.data()).ok());
    std::vector<float> row(cols);
    const float* imp = imps[name].data();
    double e = 0;
    for (int64_t r = 0; r < rows; ++r) {
      DequantizeRow(t->type, q.data() + r * t->row_bytes(), row.data(), cols);
      for (int64_t c = 0; c < cols; ++c) e += imp[c] * (row[c] - ref[r * cols + c]) * (row[c] - ref[r * cols + c]);
    }
    return e;
  };
  EXPECT_LT(weighted_err(weighted), 0.9 * weighted_err(plain));
  const std::string a = Greedy(std::move(OpenModelSource(plain).value()));
  const std::string b = Greedy(std::move(OpenModelSource(weighted).value()));
  EXPECT_FALSE(a.empty());
  EXPECT_FALSE(b.empty());
}

TEST_F(DemoPackageTest, CorruptByteNamesTheChunk) {
  auto g = GgufFile::Open(model_);
  ASSERT_TRUE(g.ok());
  const std::string dir = TempDir("corrupt");
  PackageOptions po;
  po.max_chunk_bytes = kMaxChunk;
  ASSERT_TRUE(WritePackage(*g, dir, po).ok());
  json m = ReadManifest(dir);
  const std::string victim = m["chunks"][3]["file"];
  const std::string path = (fs::path(dir) / victim).string();
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(100);
    char c;
    f.read(&c, 1);
    c ^= 0x5A;
    f.seekp(100);
    f.write(&c, 1);
  }
  // Opening still works (sizes are right); the first read of the chunk fails.
  auto src = OpenModelSource(dir);
  ASSERT_TRUE(src.ok()) << src.status().ToString();
  EngineOptions o;
  o.threads = 1;
  auto e = Engine::Load(std::move(*src), o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(e.status().message().find(victim), std::string::npos) << e.status().message();
  EXPECT_NE(e.status().message().find(m["chunks"][3]["sha256"].get<std::string>()), std::string::npos);
  EXPECT_NE(e.status().message().find("re-download"), std::string::npos);
  Status v = VerifyPackage(dir);
  EXPECT_EQ(v.code(), StatusCode::kCorruptData);
  EXPECT_NE(v.message().find(victim), std::string::npos);
  // Every later read of the bad chunk keeps failing (the verdict is cached, not retried into success).
  auto src2 = OpenPackage(dir);
  ASSERT_TRUE(src2.ok());
  std::vector<uint8_t> buf(16);
  uint64_t off = m["chunks"][3]["offset"];
  EXPECT_FALSE((*src2)->ReadAt(off, buf.data(), buf.size()).ok());
  EXPECT_FALSE((*src2)->ReadAt(off + 8, buf.data(), buf.size()).ok());
  // Chunks before it still read fine.
  EXPECT_TRUE((*src2)->ReadAt(0, buf.data(), buf.size()).ok());
}

TEST_F(DemoPackageTest, TruncatedOrMissingChunk) {
  auto g = GgufFile::Open(model_);
  ASSERT_TRUE(g.ok());
  const std::string dir = TempDir("trunc");
  PackageOptions po;
  po.max_chunk_bytes = kMaxChunk;
  ASSERT_TRUE(WritePackage(*g, dir, po).ok());
  json m = ReadManifest(dir);
  const std::string victim = m["chunks"].back()["file"];
  fs::resize_file(fs::path(dir) / victim, m["chunks"].back()["size"].get<uint64_t>() - 10);
  auto src = OpenModelSource(dir);
  ASSERT_FALSE(src.ok());
  EXPECT_EQ(src.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(src.status().message().find(victim), std::string::npos) << src.status().message();
  EXPECT_NE(src.status().message().find("truncated"), std::string::npos);
  fs::remove(fs::path(dir) / victim);
  auto src2 = OpenModelSource(dir);
  ASSERT_FALSE(src2.ok());
  EXPECT_EQ(src2.status().code(), StatusCode::kNotFound);
  EXPECT_NE(src2.status().message().find(victim), std::string::npos);
}

TEST_F(DemoPackageTest, ManifestValidationAndDirectories) {
  auto g = GgufFile::Open(model_);
  ASSERT_TRUE(g.ok());
  const std::string dir = TempDir("manifest");
  PackageOptions po;
  po.max_chunk_bytes = 8 << 20;
  ASSERT_TRUE(WritePackage(*g, dir, po).ok());
  // Rewriting into an existing package replaces it.
  po.max_chunk_bytes = 4 << 20;
  ASSERT_TRUE(WritePackage(*g, dir, po).ok());
  ASSERT_TRUE(VerifyPackage(dir).ok());
  json m = ReadManifest(dir);
  size_t files = 0;
  for (auto& e : fs::directory_iterator(dir)) files += e.is_regular_file();
  EXPECT_EQ(files, m["chunks"].size() + 1);  // chunks + manifest, no leftovers

  auto write_manifest = [&](const json& j) {
    std::ofstream(fs::path(dir) / "manifest.json") << j.dump();
  };
  json newer = m;
  newer["version"] = 99;
  write_manifest(newer);
  EXPECT_EQ(OpenPackage(dir).status().code(), StatusCode::kUnsupported);
  json escape = m;
  escape["chunks"][1]["file"] = "../etc/passwd";
  write_manifest(escape);
  EXPECT_EQ(OpenPackage(dir).status().code(), StatusCode::kCorruptData);
  json gap = m;
  gap["chunks"][1]["offset"] = gap["chunks"][1]["offset"].get<uint64_t>() + 1;
  write_manifest(gap);
  EXPECT_EQ(OpenPackage(dir).status().code(), StatusCode::kCorruptData);
  std::ofstream(fs::path(dir) / "manifest.json") << "{not json";
  EXPECT_EQ(OpenPackage(dir).status().code(), StatusCode::kCorruptData);

  // A directory that is not a package.
  const std::string other = TempDir("not-a-package");
  fs::create_directories(other);
  std::ofstream(fs::path(other) / "notes.txt") << "hello";
  auto s = OpenModelSource(other);
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_NE(s.status().message().find("manifest.json"), std::string::npos);
  EXPECT_EQ(WritePackage(*g, other, po).code(), StatusCode::kInvalidArgument);  // not empty, not a package
  // Bad options.
  po.max_chunk_bytes = 100;
  EXPECT_EQ(WritePackage(*g, TempDir("tiny-chunk"), po).code(), StatusCode::kInvalidArgument);
  po.max_chunk_bytes = 16 << 10;  // smaller than the header (vocabulary)
  Status hs = WritePackage(*g, TempDir("small-header"), po);
  EXPECT_EQ(hs.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(hs.message().find("--max-chunk"), std::string::npos);
}

}  // namespace
}  // namespace tabfit
