// tabfit model/gguf: GGUF (v2, v3) reader.
//
// GgufFile::Parse reads and validates the header, the metadata key/values and
// the tensor infos of a GGUF file; tensor data stays in the ByteSource and is
// read on demand (ReadTensor / ReadTensorRows). Every count, length and offset
// is checked against the bytes that remain, so malformed input yields a
// CorruptData / Unsupported status naming the file, the byte offset and the
// problem; it never crashes. Allocations are bounded by what the file holds:
// vectors are pre-sized only after the count was checked against the remaining
// bytes (and at most 64K entries up front), parsed metadata takes at most a small
// constant multiple of the metadata bytes, and tensor data is never loaded by Parse.
//
// Layout (little-endian): "GGUF" u32 version, u64 n_tensors, u64 n_kv,
//   n_kv x (string key, u32 type, value), n_tensors x (string name, u32 n_dims,
//   n_dims x i64 ne, u32 type, u64 offset), pad to alignment, tensor data.
//   string = u64 length + bytes; array = u32 elem type + u64 count + elements.
//
// Thread-safety: a parsed GgufFile is immutable; concurrent const calls are
// safe (ReadTensor goes through the thread-safe ByteSource).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "model/gguf/byte_source.h"
#include "quant/types.h"

namespace tabfit {

enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// "uint8", "string", "array", ... ("?" for an invalid id).
const char* GgufTypeName(GgufType t);
// Bytes of one element of a fixed-size type (0 for string/array/invalid).
size_t GgufScalarSize(GgufType t);
bool GgufTypeIsValid(uint32_t id);
bool GgufTypeIsUnsigned(GgufType t);  // uint8/16/32/64
bool GgufTypeIsSigned(GgufType t);    // int8/16/32/64
bool GgufTypeIsFloat(GgufType t);     // float32/64

// One metadata value: a scalar, a string, or a one-level array of any non-array
// element type. Numeric array elements are kept packed little-endian in `raw`
// (count * GgufScalarSize(elem_type) bytes); string arrays in `strings`.
struct GgufValue {
  GgufType type = GgufType::kUint8;
  uint64_t u = 0;    // unsigned ints, bool (0/1)
  int64_t i = 0;     // signed ints
  double f = 0;      // float32 / float64
  std::string str;   // kString
  // kArray:
  GgufType elem_type = GgufType::kUint8;
  uint64_t count = 0;
  std::vector<uint8_t> raw;
  std::vector<std::string> strings;

  static GgufValue U8(uint8_t v);
  static GgufValue I8(int8_t v);
  static GgufValue U16(uint16_t v);
  static GgufValue I16(int16_t v);
  static GgufValue U32(uint32_t v);
  static GgufValue I32(int32_t v);
  static GgufValue U64(uint64_t v);
  static GgufValue I64(int64_t v);
  static GgufValue F32(float v);
  static GgufValue F64(double v);
  static GgufValue Bool(bool v);
  static GgufValue String(std::string v);
  static GgufValue StringArray(std::vector<std::string> v);
  static GgufValue F32Array(const std::vector<float>& v);
  static GgufValue I32Array(const std::vector<int32_t>& v);
  static GgufValue U32Array(const std::vector<uint32_t>& v);
  // Numeric array from packed little-endian bytes (raw.size() must be count * elem size).
  static GgufValue NumericArray(GgufType elem_type, std::vector<uint8_t> raw);

  bool is_array() const { return type == GgufType::kArray; }
  // Numeric array element `k` converted to double / int64 / uint64; 0 when k >= count
  // or the elements are not numeric.
  double ArrayF64(uint64_t k) const;
  int64_t ArrayI64(uint64_t k) const;  // unsigned 64-bit values > INT64_MAX wrap
  uint64_t ArrayU64(uint64_t k) const;
};

struct GgufTensorInfo {
  std::string name;
  TensorType type = TensorType::kF32;
  std::vector<int64_t> ne;  // ne[0] = innermost (row length), as GGUF stores it
  uint64_t offset = 0;      // ABSOLUTE byte offset in the source
  uint64_t nbytes = 0;      // total bytes
  int64_t n_elements() const;
  int64_t rows() const;  // product of ne[1..]
  size_t row_bytes() const;
};

class GgufFile {
 public:
  static Result<GgufFile> Parse(std::unique_ptr<ByteSource> source);
  static Result<GgufFile> Open(const std::string& path);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  uint32_t version() const { return version_; }
  // Start of the tensor data section (end of the tensor infos rounded up to the
  // alignment). For a file without tensors this may exceed source().size() when
  // the writer omitted the final padding (llama.cpp's vocab-only files do).
  uint64_t data_offset() const { return data_offset_; }
  uint64_t alignment() const { return alignment_; }
  const std::string& name() const { return source_->name(); }

  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;

  // NotFound if absent; CorruptData (naming key, its offset, actual and expected type) if the type is wrong.
  Result<std::string> GetString(std::string_view key) const;
  Result<uint64_t> GetU64(std::string_view key) const;  // any int type with value >= 0
  Result<int64_t> GetI64(std::string_view key) const;   // any int type with value <= INT64_MAX
  Result<double> GetF64(std::string_view key) const;    // float32/64 and ints
  Result<bool> GetBool(std::string_view key) const;
  Result<std::vector<std::string>> GetStringArray(std::string_view key) const;
  Result<std::vector<float>> GetF32Array(std::string_view key) const;    // float32/64 arrays
  Result<std::vector<int32_t>> GetI32Array(std::string_view key) const;  // int arrays whose values fit int32
  // Defaults when absent; still an error if present with a wrong type.
  Result<uint64_t> GetU64Or(std::string_view key, uint64_t def) const;
  Result<int64_t> GetI64Or(std::string_view key, int64_t def) const;
  Result<double> GetF64Or(std::string_view key, double def) const;
  Result<bool> GetBoolOr(std::string_view key, bool def) const;
  Result<std::string> GetStringOr(std::string_view key, std::string def) const;

  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
  const GgufTensorInfo* FindTensor(std::string_view name) const;
  // Copies t.nbytes raw bytes into dst.
  Status ReadTensor(const GgufTensorInfo& t, void* dst) const;
  // Copies rows [row0, row0 + nrows) (nrows * t.row_bytes() bytes) into dst.
  Status ReadTensorRows(const GgufTensorInfo& t, int64_t row0, int64_t nrows, void* dst) const;
  // Zero-copy pointer to the tensor's bytes when the source is in memory, else nullptr.
  const uint8_t* TensorData(const GgufTensorInfo& t) const;

  const ByteSource& source() const { return *source_; }
  // Human-readable value: 42, 1e-05, "llama", [string x 32000: "<unk>", "<s>", ...].
  std::string DescribeValue(const GgufValue& v, size_t max_array_items = 8) const;

 private:
  GgufFile() = default;
  Status TypeError(std::string_view key, size_t index, const char* expected) const;
  Result<const GgufValue*> Lookup(std::string_view key, size_t* index) const;

  std::unique_ptr<ByteSource> source_;
  uint32_t version_ = 0;
  uint64_t data_offset_ = 0;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<uint64_t> kv_offsets_;  // byte offset of each KV (its key), for messages
  std::map<std::string, size_t, std::less<>> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t, std::less<>> tensor_index_;

  friend class GgufParser;
};

}  // namespace tabfit
