// Malformed GGUF input: every validation rule, plus truncation at every length
// and random byte corruption. Each error must carry the file name and a byte offset.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <limits>
#include <random>

#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"

namespace tabfit {
namespace {

constexpr char kName[] = "bad-model.gguf";

// Little-endian byte builder for hand-made GGUF files.
struct Raw {
  std::vector<uint8_t> b;
  Raw& bytes(const void* p, size_t n) {
    const auto* c = static_cast<const uint8_t*>(p);
    b.insert(b.end(), c, c + n);
    return *this;
  }
  Raw& u8(uint8_t v) { return bytes(&v, 1); }
  Raw& u32(uint32_t v) { return bytes(&v, 4); }
  Raw& u64(uint64_t v) { return bytes(&v, 8); }
  Raw& i64(int64_t v) { return bytes(&v, 8); }
  Raw& str(const std::string& s) { return u64(s.size()).bytes(s.data(), s.size()); }
  Raw& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    return bytes("GGUF", 4).u32(version).u64(n_tensors).u64(n_kv);
  }
  Raw& kv_u32(const std::string& k, uint32_t v) { return str(k).u32(4).u32(v); }
  Raw& kv_str(const std::string& k, const std::string& v) { return str(k).u32(8).str(v); }
  Raw& tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(ne.size()));
    for (int64_t d : ne) i64(d);
    return u32(type).u64(offset);
  }
  Raw& pad(size_t alignment = 32) {
    while (b.size() % alignment) b.push_back(0);
    return *this;
  }
  Raw& zeros(size_t n) {
    b.resize(b.size() + n, 0);
    return *this;
  }
};

Status ParseBytes(std::vector<uint8_t> bytes) {
  auto f = GgufFile::Parse(MakeMemorySource(std::move(bytes), kName));
  return f.status();
}

// Asserts the code, and that the message names the file, a byte offset and `what`.
void ExpectError(const Status& s, StatusCode code, const std::string& what) {
  EXPECT_EQ(s.code(), code) << s.ToString();
  EXPECT_NE(s.message().find(kName), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("at byte offset "), std::string::npos) << s.message();
  EXPECT_NE(s.message().find(what), std::string::npos) << "expected '" << what << "' in: " << s.message();
}

// A valid one-tensor file body builder: header, given kvs, one F32 [4] tensor.
std::vector<uint8_t> OneTensor(uint32_t type, std::vector<int64_t> ne, uint64_t offset, size_t data_bytes) {
  Raw r;
  r.header(1, 1).kv_str("general.architecture", "llama").tensor("w", std::move(ne), type, offset).pad();
  r.zeros(data_bytes);
  return r.b;
}

TEST(GgufMalformed, ValidBaselines) {
  EXPECT_TRUE(ParseBytes(OneTensor(0, {4}, 0, 16)).ok());
  Raw empty;
  empty.header(0, 0);
  EXPECT_TRUE(ParseBytes(empty.b).ok());
}

TEST(GgufMalformed, Magic) {
  Raw r;
  r.bytes("GGML", 4).u32(3).u64(0).u64(0);
  ExpectError(ParseBytes(r.b), StatusCode::kCorruptData, "magic is 'GGML'");
  ExpectError(ParseBytes({}), StatusCode::kCorruptData, "too small");
  ExpectError(ParseBytes({'G', 'G'}), StatusCode::kCorruptData, "too small");
  Raw bin;
  bin.u32(0x00000040).u32(0x01).u64(0);
  ExpectError(ParseBytes(bin.b), StatusCode::kCorruptData, "magic is '@\\x00\\x00\\x00'");
}

TEST(GgufMalformed, Version) {
  Raw v1;
  v1.header(0, 0, 1);
  ExpectError(ParseBytes(v1.b), StatusCode::kUnsupported, "obsolete");
  EXPECT_NE(ParseBytes(v1.b).message().find("reconvert"), std::string::npos);
  Raw v4;
  v4.header(0, 0, 4);
  ExpectError(ParseBytes(v4.b), StatusCode::kUnsupported, "version 4");
  Raw v0;
  v0.header(0, 0, 0);
  ExpectError(ParseBytes(v0.b), StatusCode::kCorruptData, "version 0");
  Raw be;
  be.header(0, 0, 0x03000000u);
  ExpectError(ParseBytes(be.b), StatusCode::kUnsupported, "big-endian");
  // v2 (same layout as v3) reads.
  Raw v2;
  v2.header(1, 1, 2).kv_u32("a.b", 5).tensor("w", {8}, 1, 0).pad().zeros(16);
  auto f = GgufFile::Parse(MakeMemorySource(v2.b, kName));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->version(), 2u);
  EXPECT_EQ(*f->GetU64("a.b"), 5u);
  // Byte surgery on a writer-made file: patch the version field.
  GgufWriter w;
  w.SetU32("x", 1);
  auto bytes = *w.WriteToMemory();
  bytes[4] = 1;
  ExpectError(ParseBytes(bytes), StatusCode::kUnsupported, "obsolete");
}

TEST(GgufMalformed, AbsurdCounts) {
  Raw kv;
  kv.header(0, 1000000000000ull).zeros(100);
  ExpectError(ParseBytes(kv.b), StatusCode::kCorruptData, "metadata count 1000000000000 is absurd");
  Raw kvmax;
  kvmax.header(0, std::numeric_limits<uint64_t>::max());
  ExpectError(ParseBytes(kvmax.b), StatusCode::kCorruptData, "absurd");
  Raw t;
  t.header(std::numeric_limits<uint64_t>::max() / 2, 0).zeros(100);
  ExpectError(ParseBytes(t.b), StatusCode::kCorruptData, "tensor count");
  // Counts that fit individually but not together.
  Raw both;
  both.header(3, 4).zeros(4 * 12 + 2 * 24);
  ExpectError(ParseBytes(both.b), StatusCode::kCorruptData, "tensor count 3 is absurd");
  // Truncated header.
  Raw h;
  h.bytes("GGUF", 4).u32(3).u64(0);
  ExpectError(ParseBytes(h.b), StatusCode::kCorruptData, "truncated");
}

TEST(GgufMalformed, StringLengths) {
  Raw key;
  key.header(0, 1).u64(1ull << 40).zeros(20);
  ExpectError(ParseBytes(key.b), StatusCode::kCorruptData, "metadata key length 1099511627776 exceeds the GGUF limit");
  Raw longkey;
  longkey.header(0, 1).u64(70000).zeros(70100);
  ExpectError(ParseBytes(longkey.b), StatusCode::kCorruptData, "metadata key length 70000 exceeds");
  Raw keypast;
  keypast.header(0, 1).u64(200).zeros(20);
  ExpectError(ParseBytes(keypast.b), StatusCode::kCorruptData, "metadata key length 200 runs past");
  Raw keymax;
  keymax.header(0, 1).u64(std::numeric_limits<uint64_t>::max()).zeros(20);
  ExpectError(ParseBytes(keymax.b), StatusCode::kCorruptData, "exceeds");
  Raw tmax;  // a tensor name length of 2^64-1 (no overflow in the range check)
  tmax.header(1, 0).u64(std::numeric_limits<uint64_t>::max()).zeros(30);
  ExpectError(ParseBytes(tmax.b), StatusCode::kCorruptData, "tensor name length 18446744073709551615 runs past");
  Raw val;
  val.header(0, 1).str("k").u32(8).u64(50).bytes("abc", 3);
  ExpectError(ParseBytes(val.b), StatusCode::kCorruptData, "string value length 50");
  Raw tname;
  tname.header(1, 0).u64(1000).zeros(30);
  ExpectError(ParseBytes(tname.b), StatusCode::kCorruptData, "tensor name length 1000");
}

TEST(GgufMalformed, Arrays) {
  Raw numeric;
  numeric.header(0, 1).str("a").u32(9).u32(6).u64(1000).zeros(40);
  ExpectError(ParseBytes(numeric.b), StatusCode::kCorruptData, "array of 1000 float32 for key 'a' runs past");
  Raw huge;
  huge.header(0, 1).str("a").u32(9).u32(12).u64(std::numeric_limits<uint64_t>::max() / 4).zeros(40);
  ExpectError(ParseBytes(huge.b), StatusCode::kCorruptData, "runs past");
  Raw strings;
  strings.header(0, 1).str("a").u32(9).u32(8).u64(1ull << 60).zeros(40);
  ExpectError(ParseBytes(strings.b), StatusCode::kCorruptData, "strings for key 'a' cannot fit");
  Raw inner;  // count fits but an element's length does not
  inner.header(0, 1).str("a").u32(9).u32(8).u64(2).str("ok").u64(99).zeros(4);
  ExpectError(ParseBytes(inner.b), StatusCode::kCorruptData, "array string length 99");
  Raw bad_elem;
  bad_elem.header(0, 1).str("a").u32(9).u32(13).u64(1).zeros(20);
  ExpectError(ParseBytes(bad_elem.b), StatusCode::kCorruptData, "invalid element type 13");
  Raw nested;
  nested.header(0, 1).str("a").u32(9).u32(9).u64(1).u32(4).u64(1).u32(7);
  ExpectError(ParseBytes(nested.b), StatusCode::kUnsupported, "nested array");
}

TEST(GgufMalformed, ValueType) {
  Raw r;
  r.header(0, 1).str("k").u32(13).u32(0);
  ExpectError(ParseBytes(r.b), StatusCode::kCorruptData, "key 'k' has unknown value type 13");
  Raw big;
  big.header(0, 1).str("k").u32(0xFFFFFFFFu).u32(0);
  ExpectError(ParseBytes(big.b), StatusCode::kCorruptData, "unknown value type 4294967295");
}

TEST(GgufMalformed, Dimensions) {
  ExpectError(ParseBytes(OneTensor(0, {}, 0, 16)), StatusCode::kCorruptData, "has 0 dimensions");
  ExpectError(ParseBytes(OneTensor(0, {1, 1, 1, 1, 4}, 0, 16)), StatusCode::kCorruptData, "has 5 dimensions");
  ExpectError(ParseBytes(OneTensor(0, {4, 0}, 0, 16)), StatusCode::kCorruptData, "dimension 1 is 0");
  ExpectError(ParseBytes(OneTensor(0, {-4}, 0, 16)), StatusCode::kCorruptData, "dimension 0 is -4");
  ExpectError(ParseBytes(OneTensor(0, {int64_t{1} << 32, int64_t{1} << 32}, 0, 16)), StatusCode::kCorruptData,
              "element count overflows");
  // Element count fits int64 but the byte size would not fit 64 bits (or the file).
  ExpectError(ParseBytes(OneTensor(28, {int64_t{1} << 61, 2}, 0, 16)), StatusCode::kCorruptData,
              "overflows 64 bits");
  ExpectError(ParseBytes(OneTensor(0, {int64_t{1} << 40}, 0, 16)), StatusCode::kCorruptData, "runs past the end");
  ExpectError(ParseBytes(OneTensor(24, {int64_t{1} << 61, 2}, 0, 16)), StatusCode::kCorruptData, "runs past the end");
  EXPECT_TRUE(ParseBytes(OneTensor(24, {5, 3}, 0, 15)).ok());  // I8: 1-byte elements
  // n_dims past the end of a truncated file.
  Raw r;
  r.header(1, 0).str("w").u32(4).i64(4).i64(4);
  ExpectError(ParseBytes(r.b), StatusCode::kCorruptData, "truncated while reading a tensor dimension");
}

TEST(GgufMalformed, TensorTypes) {
  ExpectError(ParseBytes(OneTensor(99, {4}, 0, 16)), StatusCode::kCorruptData, "unknown tensor type id 99");
  ExpectError(ParseBytes(OneTensor(5000, {4}, 0, 16)), StatusCode::kCorruptData, "unknown tensor type id 5000");
  ExpectError(ParseBytes(OneTensor(16, {256}, 0, 66)), StatusCode::kUnsupported, "IQ2_XXS");
  ExpectError(ParseBytes(OneTensor(8, {33}, 0, 68)), StatusCode::kCorruptData,
              "row length 33 is not a multiple of the Q8_0 block size 32");
  ExpectError(ParseBytes(OneTensor(12, {64, 2}, 0, 1000)), StatusCode::kCorruptData, "Q4_K block size 256");
  EXPECT_TRUE(ParseBytes(OneTensor(8, {64, 2}, 0, 136)).ok());
  EXPECT_TRUE(ParseBytes(OneTensor(14, {256}, 0, 210)).ok());
}

TEST(GgufMalformed, Duplicates) {
  Raw keys;
  keys.header(0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2);
  ExpectError(ParseBytes(keys.b), StatusCode::kCorruptData, "duplicate metadata key 'a.b'");
  Raw tensors;
  tensors.header(2, 0).tensor("w", {4}, 0, 0).tensor("w", {4}, 0, 32).pad().zeros(48);
  ExpectError(ParseBytes(tensors.b), StatusCode::kCorruptData, "duplicate tensor 'w'");
  // Byte surgery on writer output: rename tensor "w2" to "w1" and key "k2" to "k1".
  GgufWriter w;
  w.SetU32("k1", 1);
  w.SetU32("k2", 2);
  ASSERT_TRUE(w.AddTensor("w1", TensorType::kF32, {4}, std::vector<uint8_t>(16)).ok());
  ASSERT_TRUE(w.AddTensor("w2", TensorType::kF32, {4}, std::vector<uint8_t>(16)).ok());
  auto bytes = *w.WriteToMemory();
  ASSERT_TRUE(ParseBytes(bytes).ok());
  auto patch = [](std::vector<uint8_t> b, const std::string& from, const std::string& to) {
    auto it = std::search(b.begin(), b.end(), from.begin(), from.end());
    EXPECT_NE(it, b.end());
    std::copy(to.begin(), to.end(), it);
    return b;
  };
  ExpectError(ParseBytes(patch(bytes, "w2", "w1")), StatusCode::kCorruptData, "duplicate tensor 'w1'");
  ExpectError(ParseBytes(patch(bytes, "k2", "k1")), StatusCode::kCorruptData, "duplicate metadata key 'k1'");
}

TEST(GgufMalformed, Alignment) {
  for (uint32_t a : {0u, 3u, 48u}) {
    Raw r;
    r.header(0, 1).kv_u32("general.alignment", a);
    ExpectError(ParseBytes(r.b), StatusCode::kCorruptData, "general.alignment is " + std::to_string(a));
  }
  Raw neg;
  neg.header(0, 1).str("general.alignment").u32(5).u32(static_cast<uint32_t>(-8));
  ExpectError(ParseBytes(neg.b), StatusCode::kCorruptData, "general.alignment is -8");
  Raw s;
  s.header(0, 1).kv_str("general.alignment", "32");
  ExpectError(ParseBytes(s.b), StatusCode::kCorruptData, "general.alignment has type string");
  // A valid non-default alignment is honoured.
  Raw ok;
  ok.header(1, 1).kv_u32("general.alignment", 64).tensor("w", {4}, 0, 0).pad(64).zeros(16);
  auto f = GgufFile::Parse(MakeMemorySource(ok.b, kName));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->alignment(), 64u);
  EXPECT_EQ(f->data_offset() % 64, 0u);
  // A huge power of two: the data offset cannot be aligned within the file.
  Raw huge;
  huge.header(1, 1).str("general.alignment").u32(10).u64(1ull << 63).tensor("w", {4}, 0, 0).zeros(64);
  ExpectError(ParseBytes(huge.b), StatusCode::kCorruptData, "past the end of the file");
}

TEST(GgufMalformed, TensorOffsets) {
  ExpectError(ParseBytes(OneTensor(0, {4}, 8, 64)), StatusCode::kCorruptData,
              "data offset 8 is not a multiple of the alignment 32");
  ExpectError(ParseBytes(OneTensor(0, {4}, 0, 15)), StatusCode::kCorruptData,
              "tensor 'w' data (16 bytes at data offset 0, absolute");
  ExpectError(ParseBytes(OneTensor(0, {4}, 64, 16)), StatusCode::kCorruptData, "runs past the end of the file");
  // offset + nbytes overflows uint64.
  ExpectError(ParseBytes(OneTensor(0, {4}, 0xFFFFFFFFFFFFFFE0ull, 16)), StatusCode::kCorruptData, "overflowing");
  // The tensor data section itself lies past the end (file cut right after the infos).
  Raw r;
  r.header(1, 0).tensor("w", {4}, 0, 0);
  ExpectError(ParseBytes(r.b), StatusCode::kCorruptData, "tensor data section would start");
  // Byte surgery: a writer-made file missing its last byte.
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("last", TensorType::kQ4_0, {32, 2}, std::vector<uint8_t>(36, 7)).ok());
  auto bytes = *w.WriteToMemory();
  bytes.pop_back();
  ExpectError(ParseBytes(bytes), StatusCode::kCorruptData, "tensor 'last'");
}

TEST(GgufMalformed, FileSourceErrorsNameThePath) {
  const std::string path =
      (std::filesystem::temp_directory_path() / ("tabfit_gguf_bad_" + std::to_string(::getpid()) + ".gguf")).string();
  GgufWriter w;
  ASSERT_TRUE(w.AddTensor("w", TensorType::kF32, {8}, std::vector<uint8_t>(32)).ok());
  ASSERT_TRUE(w.WriteFile(path).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 4);
  auto f = GgufFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kCorruptData);
  EXPECT_NE(f.status().message().find(path), std::string::npos);
  EXPECT_NE(f.status().message().find("offset"), std::string::npos);
  std::filesystem::remove(path);
  EXPECT_EQ(GgufFile::Open(path).status().code(), StatusCode::kNotFound);
}

// A small file exercising every value kind and several tensors.
std::vector<uint8_t> SmallValidFile() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetU32("llama.block_count", 2);
  w.SetF32("eps", 1e-5f);
  w.SetBool("flag", true);
  w.SetI64("neg", -9);
  w.SetStringArray("tokens", {"<unk>", "<s>", "hello"});
  w.SetF32Array("scores", {0.f, -1.f, -2.f});
  w.SetI32Array("types", {2, 3, 1});
  w.SetAlignment(32);
  EXPECT_TRUE(w.AddTensor("a", TensorType::kF32, {4, 2}, std::vector<uint8_t>(32, 1)).ok());
  EXPECT_TRUE(w.AddTensor("b", TensorType::kQ8_0, {32}, std::vector<uint8_t>(34, 2)).ok());
  EXPECT_TRUE(w.AddTensor("c", TensorType::kF16, {3}, std::vector<uint8_t>(6, 3)).ok());
  return *w.WriteToMemory();
}

// Parses from an owning copy and from a view; both must agree. If ok, every tensor reads.
Status ParseConsistently(const std::vector<uint8_t>& bytes) {
  auto a = GgufFile::Parse(MakeMemorySource(bytes, kName));
  auto b = GgufFile::Parse(MakeMemoryViewSource(bytes.data(), bytes.size(), kName));
  EXPECT_EQ(a.ok(), b.ok());
  EXPECT_EQ(a.status().message(), b.status().message());
  if (!a.ok()) {
    EXPECT_NE(a.status().message().find(kName), std::string::npos) << a.status().message();
    EXPECT_NE(a.status().message().find("offset"), std::string::npos) << a.status().message();
    return a.status();
  }
  std::vector<uint8_t> buf;
  for (const auto& t : a->tensors()) {
    EXPECT_LE(t.nbytes, bytes.size());
    buf.resize(t.nbytes);
    EXPECT_TRUE(a->ReadTensor(t, buf.data()).ok()) << t.name;
  }
  for (const auto& kv : a->metadata()) (void)a->DescribeValue(kv.second);
  return Status::Ok();
}

TEST(GgufFuzz, TruncateAtEveryLength) {
  const std::vector<uint8_t> full = SmallValidFile();
  ASSERT_TRUE(ParseConsistently(full).ok());
  ASSERT_GT(full.size(), 300u);
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    Status s = ParseConsistently(cut);
    // The file ends with tensor data, so every proper prefix is incomplete.
    EXPECT_FALSE(s.ok()) << "prefix of " << n << " bytes parsed";
    EXPECT_EQ(s.code(), StatusCode::kCorruptData) << n << ": " << s.ToString();
  }
}

TEST(GgufFuzz, RandomByteCorruption) {
  const std::vector<uint8_t> full = SmallValidFile();
  std::mt19937 rng(20261126);
  int ok = 0, bad = 0;
  for (int iter = 0; iter < 20000; ++iter) {
    std::vector<uint8_t> b = full;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) {
      const size_t at = rng() % b.size();
      switch (rng() % 4) {
        case 0: b[at] ^= static_cast<uint8_t>(1u << (rng() % 8)); break;
        case 1: b[at] = static_cast<uint8_t>(rng()); break;
        case 2: b[at] = 0xff; break;
        default: b[at] = 0; break;
      }
    }
    if (rng() % 8 == 0) b.resize(rng() % b.size());
    Status s = ParseConsistently(b);
    (s.ok() ? ok : bad)++;
  }
  // Both outcomes occur: flips inside tensor data are harmless, header flips are caught.
  EXPECT_GT(ok, 100);
  EXPECT_GT(bad, 100);
}

// Structured fuzz: random headers built from plausible and hostile fields.
TEST(GgufFuzz, RandomHeaders) {
  std::mt19937_64 rng(42);
  auto pick = [&](std::initializer_list<uint64_t> v) { return *(v.begin() + rng() % v.size()); };
  for (int iter = 0; iter < 3000; ++iter) {
    Raw r;
    const uint64_t nt = pick({0, 1, 2, 3, 1ull << 40, ~0ull});
    const uint64_t nkv = pick({0, 1, 2, 1ull << 33});
    r.header(nt, nkv, static_cast<uint32_t>(pick({2, 3, 3, 3})));
    for (int k = 0; k < 3; ++k) {
      r.str("k" + std::to_string(k)).u32(static_cast<uint32_t>(rng() % 15));
      r.u32(static_cast<uint32_t>(pick({0, 6, 8, 13})));
      r.u64(pick({0, 1, 3, 1ull << 62}));
      r.zeros(rng() % 24);
    }
    for (int k = 0; k < 3; ++k) {
      r.str(rng() % 2 ? "w" : "w" + std::to_string(k));
      const uint32_t nd = static_cast<uint32_t>(pick({1, 2, 4, 5}));
      r.u32(nd);
      for (uint32_t d = 0; d < nd && d < 4; ++d) r.i64(static_cast<int64_t>(pick({1, 32, 64, 0, ~0ull, 1ull << 62})));
      r.u32(static_cast<uint32_t>(pick({0, 1, 2, 8, 12, 99})));
      r.u64(pick({0, 32, 64, 7, ~0ull - 31}));
    }
    r.pad().zeros(rng() % 512);
    (void)ParseConsistently(r.b);
  }
}

}  // namespace
}  // namespace tabfit
