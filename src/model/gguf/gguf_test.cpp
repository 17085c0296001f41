// Tests of the GGUF reader on real files, the typed getters, byte sources and
// the writer round trip. Malformed input: gguf_malformed_test.cpp.
#include "model/gguf/gguf.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "core/f16.h"
#include "model/gguf/gguf_writer.h"
#include "test_util.h"

namespace tabfit {
namespace {

std::string TempPath(const std::string& leaf) {
  return (std::filesystem::temp_directory_path() / ("tabfit_gguf_test_" + std::to_string(::getpid()) + "_" + leaf))
      .string();
}

// ---------------------------------------------------------------- real files

TEST(GgufReal, Stories260K) {
  const std::string path = testing::SharedModel("stories260K.gguf");
  TABFIT_REQUIRE_FILE(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->data_offset(), 14176u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(*f->GetU64("llama.block_count"), 5u);
  EXPECT_EQ(*f->GetU64("llama.embedding_length"), 64u);
  EXPECT_EQ(*f->GetU64("llama.attention.head_count_kv"), 4u);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_NEAR(*f->GetF64("llama.attention.layer_norm_rms_epsilon"), 1e-5, 1e-10);
  auto tokens = f->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  ASSERT_EQ(tokens->size(), 512u);
  EXPECT_EQ((*tokens)[3], "<0x00>");
  EXPECT_EQ((*tokens)[258], "<0xFF>");
  EXPECT_EQ(f->GetF32Array("tokenizer.ggml.scores")->size(), 512u);
  EXPECT_EQ(f->GetI32Array("tokenizer.ggml.token_type")->size(), 512u);

  const GgufTensorInfo* t = f->FindTensor("token_embd.weight");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->ne, (std::vector<int64_t>{64, 512}));
  EXPECT_EQ(t->type, TensorType::kF32);
  EXPECT_EQ(t->nbytes, 64u * 512u * 4u);
  EXPECT_EQ(t->rows(), 512);
  EXPECT_EQ(t->row_bytes(), 256u);
  EXPECT_EQ(t->offset % 32, 0u);
  EXPECT_EQ(f->FindTensor("nope"), nullptr);
  const GgufTensorInfo* down = f->FindTensor("blk.4.ffn_down.weight");
  ASSERT_NE(down, nullptr);
  EXPECT_EQ(down->ne, (std::vector<int64_t>{172, 64}));

  // The token embedding equals the llama2.c .bin weights (7 int32 header, then the table).
  const std::string bin = testing::SharedModel("stories260K.bin");
  TABFIT_REQUIRE_FILE(bin);
  auto b = OpenFileSource(bin);
  ASSERT_TRUE(b.ok());
  std::vector<float> want(64 * 512), got(64 * 512);
  ASSERT_TRUE((*b)->ReadAt(28, want.data(), want.size() * 4).ok());
  ASSERT_TRUE(f->ReadTensor(*t, got.data()).ok());
  EXPECT_EQ(0, std::memcmp(want.data(), got.data(), got.size() * 4));
  // Row reads agree with the whole-tensor read.
  std::vector<float> rows(64 * 3);
  ASSERT_TRUE(f->ReadTensorRows(*t, 100, 3, rows.data()).ok());
  EXPECT_EQ(0, std::memcmp(rows.data(), got.data() + 100 * 64, rows.size() * 4));
  EXPECT_EQ(f->TensorData(*t), nullptr);  // file source: no zero-copy view
}

TEST(GgufReal, BabyLlama) {
  const std::string path = testing::SharedModel("babyllama-tok105-1M.gguf");
  TABFIT_REQUIRE_FILE(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors().size(), 48u);
  EXPECT_EQ(f->metadata().size(), 19u);
  EXPECT_EQ(f->data_offset(), 5504u);
  EXPECT_EQ(*f->GetString("general.name"), "BabyLlama-tok105");
  EXPECT_EQ(*f->GetU64("tokenizer.ggml.padding_token_id"), 4294967295u);
}

void CheckDemo(const std::string& path) {
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(*f->GetString("general.architecture"), "llama");
  EXPECT_EQ(*f->GetU64("llama.embedding_length"), 256u);
  EXPECT_EQ(*f->GetU64("llama.block_count"), 8u);
  EXPECT_EQ(f->GetStringArray("tokenizer.ggml.tokens")->size(), 4096u);
  EXPECT_TRUE(*f->GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_EQ(f->tensors().size(), 2u + 8u * 9u + 1u);
  const GgufTensorInfo* emb = f->FindTensor("token_embd.weight");
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->type, TensorType::kF16);
  EXPECT_EQ(emb->ne, (std::vector<int64_t>{256, 4096}));
  for (const auto& t : f->tensors()) {
    if (t.ne.size() == 2) {
      EXPECT_EQ(t.type, TensorType::kF16) << t.name;
    } else {
      EXPECT_EQ(t.type, TensorType::kF32) << t.name;
    }
  }
  // Norm weights are trained values: finite, not all equal.
  const GgufTensorInfo* norm = f->FindTensor("blk.0.attn_norm.weight");
  ASSERT_NE(norm, nullptr);
  std::vector<float> w(256);
  ASSERT_TRUE(f->ReadTensor(*norm, w.data()).ok());
  bool varied = false;
  for (float x : w) {
    EXPECT_TRUE(std::isfinite(x));
    varied |= x != w[0];
  }
  EXPECT_TRUE(varied);
  std::vector<uint16_t> row(256);
  ASSERT_TRUE(f->ReadTensorRows(*emb, 4095, 1, row.data()).ok());
  for (uint16_t h : row) EXPECT_TRUE(std::isfinite(F16ToF32(h)));
}

TEST(GgufReal, DemoModelShared) {
  const std::string path = testing::SharedModel("tabfit-demo-8m-f16.gguf");
  TABFIT_REQUIRE_FILE(path);
  CheckDemo(path);
}

TEST(GgufReal, DemoModelBundled) {
  const std::string path = testing::DemoModel();
  TABFIT_REQUIRE_FILE(path);
  CheckDemo(path);
}

TEST(GgufReal, VocabOnly) {
  const std::string path = testing::SharedModel("tokenizer-tests/ggml-vocab-llama-spm.gguf");
  TABFIT_REQUIRE_FILE(path);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->tensors().size(), 0u);
  EXPECT_EQ(f->metadata().size(), 22u);
  auto tokens = f->GetStringArray("tokenizer.ggml.tokens");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 32000u);
  EXPECT_EQ((*tokens)[1], "<s>");
  EXPECT_EQ(f->GetF32Array("tokenizer.ggml.scores")->size(), 32000u);
  EXPECT_EQ(f->GetI32Array("tokenizer.ggml.token_type")->size(), 32000u);
  EXPECT_EQ(*f->GetString("tokenizer.ggml.pre"), "default");
  EXPECT_EQ(*f->GetU64("llama.block_count"), 32u);
}

// Every *.gguf under shared/models parses, and every tensor's first and last rows read,
// from a file source and from an in-memory copy alike.
TEST(GgufReal, ParseEverySharedGguf) {
  const std::string dir = testing::SharedDir() + "/models";
  TABFIT_REQUIRE_FILE(dir);
  int count = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file() || e.path().extension() != ".gguf") continue;
    ++count;
    const std::string path = e.path().string();
    auto f = GgufFile::Open(path);
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    EXPECT_GE(f->metadata().size(), 1u) << path;
    uint64_t total = 0;
    std::vector<uint8_t> buf;
    for (const auto& t : f->tensors()) {
      EXPECT_EQ(t.offset % f->alignment(), 0u) << t.name;
      EXPECT_LE(t.offset + t.nbytes, f->source().size()) << t.name;
      EXPECT_EQ(t.nbytes, t.row_bytes() * static_cast<uint64_t>(t.rows())) << t.name;
      buf.resize(t.row_bytes());
      EXPECT_TRUE(f->ReadTensorRows(t, 0, 1, buf.data()).ok()) << t.name;
      EXPECT_TRUE(f->ReadTensorRows(t, t.rows() - 1, 1, buf.data()).ok()) << t.name;
      total += t.nbytes;
    }
    EXPECT_LE(total, f->source().size()) << path;
    if (f->source().size() < (8u << 20)) {
      std::vector<uint8_t> bytes(f->source().size());
      ASSERT_TRUE(f->source().ReadAt(0, bytes.data(), bytes.size()).ok());
      auto m = GgufFile::Parse(MakeMemorySource(std::move(bytes), path + " (memory)"));
      ASSERT_TRUE(m.ok()) << m.status().ToString();
      EXPECT_EQ(m->tensors().size(), f->tensors().size());
      EXPECT_EQ(m->data_offset(), f->data_offset());
      for (const auto& t : m->tensors()) EXPECT_NE(m->TensorData(t), nullptr);
    }
  }
  EXPECT_GE(count, 5);
}

// ---------------------------------------------------------------- byte sources

TEST(ByteSource, MemoryRangeChecks) {
  auto s = MakeMemorySource({1, 2, 3, 4, 5}, "mem.bin");
  EXPECT_EQ(s->size(), 5u);
  EXPECT_EQ(s->name(), "mem.bin");
  ASSERT_NE(s->data(), nullptr);
  uint8_t b[8] = {};
  EXPECT_TRUE(s->ReadAt(1, b, 4).ok());
  EXPECT_EQ(b[0], 2);
  EXPECT_EQ(b[3], 5);
  EXPECT_TRUE(s->ReadAt(5, b, 0).ok());
  Status st = s->ReadAt(2, b, 4);
  EXPECT_EQ(st.code(), StatusCode::kOutOfRange);
  EXPECT_NE(st.message().find("mem.bin"), std::string::npos);
  EXPECT_EQ(s->ReadAt(std::numeric_limits<uint64_t>::max(), b, 2).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(s->ReadAt(2, b, std::numeric_limits<size_t>::max()).code(), StatusCode::kOutOfRange);

  const uint8_t raw[3] = {7, 8, 9};
  auto v = MakeMemoryViewSource(raw, 3, "view");
  EXPECT_EQ(v->data(), raw);
  EXPECT_TRUE(v->ReadAt(2, b, 1).ok());
  EXPECT_EQ(b[0], 9);
  EXPECT_EQ(v->ReadAt(3, b, 1).code(), StatusCode::kOutOfRange);
}

TEST(ByteSource, File) {
  auto missing = OpenFileSource("/nonexistent/dir/x.gguf");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kNotFound);
  EXPECT_NE(missing.status().message().find("/nonexistent/dir/x.gguf"), std::string::npos);
  auto dir = OpenFileSource(std::filesystem::temp_directory_path().string());
  EXPECT_FALSE(dir.ok());

  const std::string path = TempPath("bytes.bin");
  {
    std::ofstream o(path, std::ios::binary);
    for (int k = 0; k < 1000; ++k) o.put(static_cast<char>(k & 0xff));
  }
  auto s = OpenFileSource(path);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ((*s)->size(), 1000u);
  EXPECT_EQ((*s)->data(), nullptr);
  uint8_t b[4];
  ASSERT_TRUE((*s)->ReadAt(998, b, 2).ok());
  EXPECT_EQ(b[0], 998 & 0xff);
  EXPECT_EQ((*s)->ReadAt(999, b, 2).code(), StatusCode::kOutOfRange);
  EXPECT_EQ((*s)->ReadAt(std::numeric_limits<uint64_t>::max() - 1, b, 4).code(), StatusCode::kOutOfRange);
  // Concurrent reads (pread, no shared position) each see their own range.
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      uint8_t buf[100];
      for (int rep = 0; rep < 200; ++rep) {
        const uint64_t off = static_cast<uint64_t>((t * 211 + rep * 7) % 900);
        if (!(*s)->ReadAt(off, buf, sizeof buf).ok()) ++mismatches;
        for (int k = 0; k < 100; ++k) {
          if (buf[k] != static_cast<uint8_t>((off + k) & 0xff)) ++mismatches;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
  std::filesystem::remove(path);
}

// ---------------------------------------------------------------- writer round trip

std::vector<uint8_t> Pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t k = 0; k < n; ++k) v[k] = static_cast<uint8_t>(k * 31 + seed);
  return v;
}

GgufWriter MakeRichWriter() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU8("t.u8", 200);
  w.SetI8("t.i8", -100);
  w.SetU16("t.u16", 60000);
  w.SetI16("t.i16", -30000);
  w.SetU32("t.u32", 4000000000u);
  w.SetI32("t.i32", -2000000000);
  w.SetU64("t.u64", 0xFFFFFFFFFFFFFFF0ull);
  w.SetI64("t.i64", -5000000000ll);
  w.SetF32("t.f32", 1e-5f);
  w.SetF64("t.f64", 3.141592653589793);
  w.SetBool("t.bool", true);
  w.SetString("t.str", std::string("a\0b \"q\"\n", 8));
  w.SetString("t.empty", "");
  w.SetStringArray("t.strs", {"<unk>", "", "▁hello"});
  w.SetF32Array("t.f32s", {1.5f, -2.0f, 0.0f});
  w.SetI32Array("t.i32s", {-1, 0, 2147483647});
  w.SetU32Array("t.u32s", {1, 2, 3});
  w.Set("t.u8s", GgufValue::NumericArray(GgufType::kUint8, {9, 8, 7}));
  w.Set("t.i64s", GgufValue::NumericArray(GgufType::kInt64, std::vector<uint8_t>(16, 0xff)));
  w.Set("t.bools", GgufValue::NumericArray(GgufType::kBool, {1, 0}));
  w.Set("t.f64s", GgufValue::NumericArray(GgufType::kFloat64, std::vector<uint8_t>(8, 0)));
  w.SetStringArray("t.nostrs", {});
  w.SetString("t.str", std::string("a\0b \"q\"\n", 8));  // set again: replaces in place
  EXPECT_TRUE(w.AddTensor("f32", TensorType::kF32, {4, 3}, Pattern(48, 1)).ok());
  EXPECT_TRUE(w.AddTensor("f16", TensorType::kF16, {5}, Pattern(10, 2)).ok());
  EXPECT_TRUE(w.AddTensor("q8", TensorType::kQ8_0, {64, 2}, Pattern(2 * 2 * 34, 3)).ok());
  EXPECT_TRUE(w.AddTensor("q4", TensorType::kQ4_0, {32, 3}, Pattern(3 * 18, 4)).ok());
  EXPECT_TRUE(w.AddTensor("q4k", TensorType::kQ4_K, {256, 1}, Pattern(144, 5)).ok());
  EXPECT_TRUE(w.AddTensor("i32", TensorType::kI32, {2, 2, 2, 2}, Pattern(64, 6)).ok());
  EXPECT_TRUE(w.AddTensor("i8", TensorType::kI8, {7, 1, 1}, Pattern(7, 7)).ok());
  return w;
}

void CheckRich(const GgufFile& f) {
  EXPECT_EQ(f.metadata().size(), 23u);
  EXPECT_EQ(f.metadata()[0].first, "general.architecture");
  EXPECT_EQ(f.metadata()[12].first, "t.str");
  EXPECT_EQ(*f.GetU64("t.u8"), 200u);
  EXPECT_EQ(*f.GetI64("t.i8"), -100);
  EXPECT_EQ(*f.GetU64("t.u16"), 60000u);
  EXPECT_EQ(*f.GetI64("t.i16"), -30000);
  EXPECT_EQ(*f.GetU64("t.u32"), 4000000000u);
  EXPECT_EQ(*f.GetI64("t.i32"), -2000000000);
  EXPECT_EQ(*f.GetU64("t.u64"), 0xFFFFFFFFFFFFFFF0ull);
  EXPECT_EQ(*f.GetI64("t.i64"), -5000000000ll);
  EXPECT_EQ(*f.GetF64("t.f32"), static_cast<double>(1e-5f));
  EXPECT_EQ(*f.GetF64("t.f64"), 3.141592653589793);
  EXPECT_TRUE(*f.GetBool("t.bool"));
  EXPECT_EQ(*f.GetString("t.str"), std::string("a\0b \"q\"\n", 8));
  EXPECT_EQ(*f.GetString("t.empty"), "");
  EXPECT_EQ(*f.GetStringArray("t.strs"), (std::vector<std::string>{"<unk>", "", "▁hello"}));
  EXPECT_EQ(*f.GetF32Array("t.f32s"), (std::vector<float>{1.5f, -2.0f, 0.0f}));
  EXPECT_EQ(*f.GetI32Array("t.i32s"), (std::vector<int32_t>{-1, 0, 2147483647}));
  EXPECT_EQ(*f.GetI32Array("t.u32s"), (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(*f.GetI32Array("t.u8s"), (std::vector<int32_t>{9, 8, 7}));
  EXPECT_EQ(*f.GetI32Array("t.i64s"), (std::vector<int32_t>{-1, -1}));
  EXPECT_EQ(*f.GetF32Array("t.f64s"), (std::vector<float>{0.0f}));
  EXPECT_TRUE(f.GetStringArray("t.nostrs")->empty());
  const GgufValue* bools = f.Find("t.bools");
  ASSERT_NE(bools, nullptr);
  EXPECT_EQ(bools->elem_type, GgufType::kBool);
  EXPECT_EQ(bools->count, 2u);
  EXPECT_EQ(bools->ArrayU64(0), 1u);
  EXPECT_EQ(bools->ArrayU64(2), 0u);  // out of range
  const GgufValue* strs = f.Find("t.strs");
  EXPECT_EQ(strs->ArrayI64(0), 0);     // not numeric
  EXPECT_EQ(strs->ArrayF64(1), 0.0);
  EXPECT_EQ(f.Find("t.i64s")->ArrayU64(1), ~0ull);
  EXPECT_EQ(f.Find("t.f32s")->ArrayI64(0), 1);
  EXPECT_EQ(f.Find("t.f32s")->ArrayF64(1), -2.0);

  ASSERT_EQ(f.tensors().size(), 7u);
  const std::pair<const char*, size_t> want[] = {{"f32", 48}, {"f16", 10}, {"q8", 136}, {"q4", 54},
                                                 {"q4k", 144}, {"i32", 64}, {"i8", 7}};
  uint8_t seed = 1;
  for (const auto& [name, n] : want) {
    const GgufTensorInfo* t = f.FindTensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->nbytes, n) << name;
    EXPECT_EQ(t->offset % f.alignment(), 0u) << name;
    std::vector<uint8_t> got(t->nbytes);
    ASSERT_TRUE(f.ReadTensor(*t, got.data()).ok());
    EXPECT_EQ(got, Pattern(n, seed)) << name;
    ++seed;
  }
  const GgufTensorInfo* q8 = f.FindTensor("q8");
  EXPECT_EQ(q8->type, TensorType::kQ8_0);
  EXPECT_EQ(q8->row_bytes(), 68u);
  EXPECT_EQ(q8->rows(), 2);
  EXPECT_EQ(q8->n_elements(), 128);
  std::vector<uint8_t> row(68);
  ASSERT_TRUE(f.ReadTensorRows(*q8, 1, 1, row.data()).ok());
  EXPECT_EQ(0, std::memcmp(row.data(), Pattern(136, 3).data() + 68, 68));
  EXPECT_EQ(f.FindTensor("i32")->ne, (std::vector<int64_t>{2, 2, 2, 2}));
  EXPECT_EQ(f.FindTensor("i32")->rows(), 8);
}

TEST(GgufWriter, RoundTripMemory) {
  GgufWriter w = MakeRichWriter();
  auto bytes = w.WriteToMemory();
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  EXPECT_EQ(bytes->size(), *w.FileSize());
  auto f = GgufFile::Parse(MakeMemorySource(std::move(*bytes), "rich.gguf"));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->alignment(), 32u);
  EXPECT_EQ(f->Find("general.alignment"), nullptr);
  CheckRich(*f);
}

TEST(GgufWriter, RoundTripFileAlignedV2) {
  GgufWriter w = MakeRichWriter();
  w.SetAlignment(64);
  w.SetVersion(2);
  const std::string path = TempPath("rich.gguf");
  ASSERT_TRUE(w.WriteFile(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  EXPECT_EQ(std::filesystem::file_size(path), *w.FileSize());
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  EXPECT_EQ(*f->GetU64("general.alignment"), 64u);
  // general.alignment was appended as the 24th key.
  EXPECT_EQ(f->metadata().size(), 24u);
  for (const auto& t : f->tensors()) EXPECT_EQ(t.offset % 64, 0u) << t.name;
  std::filesystem::remove(path);
}

TEST(GgufWriter, RowFillerStreamsLazily) {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  // 2000 rows of 4096 F32 = 32 MiB: written in chunks, never held whole by the writer.
  const int64_t n = 4096, rows = 2000;
  int calls = 0;
  ASSERT_TRUE(w.AddTensor("big", TensorType::kF32, {n, rows},
                          [&](int64_t r0, int64_t nr, void* dst) {
                            ++calls;
                            auto* p = static_cast<float*>(dst);
                            for (int64_t r = 0; r < nr; ++r) {
                              for (int64_t c = 0; c < n; c += 1024) p[r * n + c] = static_cast<float>(r0 + r);
                            }
                            return Status::Ok();
                          })
                  .ok());
  const std::string path = TempPath("big.gguf");
  ASSERT_TRUE(w.WriteFile(path).ok());
  EXPECT_GT(calls, 1);
  auto f = GgufFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  const GgufTensorInfo* t = f->FindTensor("big");
  ASSERT_NE(t, nullptr);
  std::vector<float> row(n);
  for (int64_t r : {int64_t{0}, int64_t{1}, int64_t{777}, rows - 1}) {
    ASSERT_TRUE(f->ReadTensorRows(*t, r, 1, row.data()).ok());
    EXPECT_EQ(row[0], static_cast<float>(r));
    EXPECT_EQ(row[1024], static_cast<float>(r));
    EXPECT_EQ(row[1], 0.0f);
  }
  std::filesystem::remove(path);

  // A failing filler fails the write, names the tensor, and leaves no file behind.
  GgufWriter bad;
  ASSERT_TRUE(bad.AddTensor("broken", TensorType::kF32, {4}, [](int64_t, int64_t, void*) {
                   return IoError("source went away");
                 }).ok());
  Status s = bad.WriteFile(path);
  EXPECT_EQ(s.code(), StatusCode::kIoError);
  EXPECT_NE(s.message().find("broken"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
}

TEST(GgufWriter, RejectsBadInput) {
  GgufWriter w;
  EXPECT_EQ(w.AddTensor("", TensorType::kF32, {4}, Pattern(16, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", TensorType::kF32, {}, Pattern(0, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", TensorType::kF32, {1, 1, 1, 1, 1}, Pattern(4, 0)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", TensorType::kF32, {0}, Pattern(0, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", TensorType::kF32, {4}, Pattern(15, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", TensorType::kQ8_0, {33}, Pattern(34, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", static_cast<TensorType>(77), {4}, Pattern(4, 0)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(w.AddTensor("a", TensorType::kF32, {int64_t{1} << 40, int64_t{1} << 40}, Pattern(0, 0)).code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(w.AddTensor("a", TensorType::kF32, {4}, Pattern(16, 0)).ok());
  EXPECT_EQ(w.AddTensor("a", TensorType::kF32, {4}, Pattern(16, 0)).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(w.num_tensors(), 1u);
  w.SetAlignment(48);
  EXPECT_EQ(w.WriteToMemory().status().code(), StatusCode::kInvalidArgument);
  w.SetAlignment(16);
  EXPECT_TRUE(w.WriteToMemory().ok());
  EXPECT_EQ(w.WriteFile("/nonexistent/dir/out.gguf").code(), StatusCode::kIoError);
}

// ---------------------------------------------------------------- getters

TEST(GgufGetters, TypesDefaultsAndErrors) {
  GgufWriter w = MakeRichWriter();
  w.SetI32("t.neg", -3);
  auto f = GgufFile::Parse(MakeMemorySource(*w.WriteToMemory(), "get.gguf"));
  ASSERT_TRUE(f.ok());
  // Absent keys.
  EXPECT_EQ(f->GetU64("nope").status().code(), StatusCode::kNotFound);
  EXPECT_NE(f->GetU64("nope").status().message().find("nope"), std::string::npos);
  EXPECT_EQ(*f->GetU64Or("nope", 7), 7u);
  EXPECT_EQ(*f->GetI64Or("nope", -7), -7);
  EXPECT_EQ(*f->GetF64Or("nope", 0.5), 0.5);
  EXPECT_EQ(*f->GetBoolOr("nope", true), true);
  EXPECT_EQ(*f->GetStringOr("nope", "dflt"), "dflt");
  // Present keys win over defaults.
  EXPECT_EQ(*f->GetU64Or("t.u16", 7), 60000u);
  EXPECT_EQ(*f->GetStringOr("general.architecture", "x"), "llama");
  // Wrong types are errors even with a default, naming the key, its offset and both types.
  Status s = f->GetU64Or("t.str", 1).status();
  EXPECT_EQ(s.code(), StatusCode::kCorruptData);
  EXPECT_NE(s.message().find("get.gguf"), std::string::npos);
  EXPECT_NE(s.message().find("offset"), std::string::npos);
  EXPECT_NE(s.message().find("t.str"), std::string::npos);
  EXPECT_NE(s.message().find("string"), std::string::npos);
  EXPECT_EQ(f->GetBoolOr("t.u8", false).status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetStringOr("t.u8", "").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetF64Or("t.str", 0).status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetU64("t.neg").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(*f->GetI64("t.neg"), -3);
  EXPECT_EQ(*f->GetF64("t.neg"), -3.0);
  EXPECT_EQ(*f->GetF64("t.u32"), 4e9);
  EXPECT_EQ(f->GetI64("t.u64").status().code(), StatusCode::kCorruptData);  // > INT64_MAX
  EXPECT_EQ(f->GetI32Array("t.f32s").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetF32Array("t.strs").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetStringArray("t.i32s").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetStringArray("t.str").status().code(), StatusCode::kCorruptData);
  EXPECT_EQ(f->GetString("t.strs").status().code(), StatusCode::kCorruptData);
  // u64 elements too large for int32.
  GgufWriter w2;
  w2.Set("big", GgufValue::NumericArray(GgufType::kUint32, {0xff, 0xff, 0xff, 0xff}));
  auto f2 = GgufFile::Parse(MakeMemorySource(*w2.WriteToMemory(), "big.gguf"));
  ASSERT_TRUE(f2.ok());
  EXPECT_EQ(f2->GetI32Array("big").status().code(), StatusCode::kCorruptData);
  // Row-range checks.
  const GgufTensorInfo* t = f->FindTensor("f32");
  std::vector<uint8_t> buf(64);
  EXPECT_TRUE(f->ReadTensorRows(*t, 3, 0, buf.data()).ok());
  EXPECT_EQ(f->ReadTensorRows(*t, 2, 2, buf.data()).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(f->ReadTensorRows(*t, -1, 1, buf.data()).code(), StatusCode::kOutOfRange);
  EXPECT_EQ(f->ReadTensorRows(*t, 0, std::numeric_limits<int64_t>::max(), buf.data()).code(),
            StatusCode::kOutOfRange);
  ASSERT_NE(f->TensorData(*t), nullptr);
  EXPECT_EQ(0, std::memcmp(f->TensorData(*t), Pattern(48, 1).data(), 48));
}

TEST(GgufGetters, DescribeValue) {
  auto f = GgufFile::Parse(MakeMemorySource(*MakeRichWriter().WriteToMemory(), "d.gguf"));
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->DescribeValue(*f->Find("t.u8")), "200");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.i64")), "-5000000000");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.f32")), "1e-05");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.bool")), "true");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.str")), "\"a\\x00b \\\"q\\\"\\n\"");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.strs"), 2), "[\"<unk>\", \"\", ...] (3 x string)");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.i32s")), "[-1, 0, 2147483647] (3 x int32)");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.f32s"), 0), "[...] (3 x float32)");
  EXPECT_EQ(f->DescribeValue(*f->Find("t.nostrs")), "[] (0 x string)");
}

TEST(GgufFile, Movable) {
  auto f = GgufFile::Parse(MakeMemorySource(*MakeRichWriter().WriteToMemory(), "m.gguf"));
  ASSERT_TRUE(f.ok());
  GgufFile a = std::move(*f);
  GgufFile b = std::move(a);
  EXPECT_EQ(b.tensors().size(), 7u);
  EXPECT_NE(b.FindTensor("q4"), nullptr);
  EXPECT_EQ(b.name(), "m.gguf");
}

}  // namespace
}  // namespace tabfit
