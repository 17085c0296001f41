// tabfit model/gguf: GGUF v3 writer (tests of malformed files, `tabfit synth`,
// `tabfit convert`).
//
// Usage: set metadata (file order = first Set order; setting a key again
// replaces its value in place), add tensors (in file order), then WriteFile or
// WriteToMemory. Tensor data comes either as bytes (owned or a non-owning view
// that must outlive the writer's Write calls) or from a RowFiller callback that
// fills rows on demand, so a large model can be written without holding it in
// RAM (WriteFile streams in chunks of about 4 MiB of rows).
//
// Output layout: header, KVs, tensor infos, zero padding to the alignment,
// each tensor's data at an aligned offset (zero padding between tensors).
// Thread-compatible: no concurrent mutation; Write* are const and may run in
// parallel only if the RowFillers are thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "model/gguf/gguf.h"
#include "quant/types.h"

namespace tabfit {

class GgufWriter {
 public:
  // Fills rows [row0, row0 + nrows) of the tensor: nrows * row_bytes bytes into dst.
  using RowFiller = std::function<Status(int64_t row0, int64_t nrows, void* dst)>;

  GgufWriter() = default;

  // Metadata.
  void Set(const std::string& key, GgufValue value);
  void SetU8(const std::string& key, uint8_t v) { Set(key, GgufValue::U8(v)); }
  void SetI8(const std::string& key, int8_t v) { Set(key, GgufValue::I8(v)); }
  void SetU16(const std::string& key, uint16_t v) { Set(key, GgufValue::U16(v)); }
  void SetI16(const std::string& key, int16_t v) { Set(key, GgufValue::I16(v)); }
  void SetU32(const std::string& key, uint32_t v) { Set(key, GgufValue::U32(v)); }
  void SetI32(const std::string& key, int32_t v) { Set(key, GgufValue::I32(v)); }
  void SetU64(const std::string& key, uint64_t v) { Set(key, GgufValue::U64(v)); }
  void SetI64(const std::string& key, int64_t v) { Set(key, GgufValue::I64(v)); }
  void SetF32(const std::string& key, float v) { Set(key, GgufValue::F32(v)); }
  void SetF64(const std::string& key, double v) { Set(key, GgufValue::F64(v)); }
  void SetBool(const std::string& key, bool v) { Set(key, GgufValue::Bool(v)); }
  void SetString(const std::string& key, std::string v) { Set(key, GgufValue::String(std::move(v))); }
  void SetStringArray(const std::string& key, std::vector<std::string> v) {
    Set(key, GgufValue::StringArray(std::move(v)));
  }
  void SetF32Array(const std::string& key, const std::vector<float>& v) { Set(key, GgufValue::F32Array(v)); }
  void SetI32Array(const std::string& key, const std::vector<int32_t>& v) { Set(key, GgufValue::I32Array(v)); }
  void SetU32Array(const std::string& key, const std::vector<uint32_t>& v) { Set(key, GgufValue::U32Array(v)); }
  // Writes general.alignment (uint32). Default alignment 32 without the key.
  // An invalid value (0 / not a power of two) makes Write* fail.
  void SetAlignment(uint64_t alignment);
  // 3 by default; 2 writes the (layout-identical) GGUF v2 for compatibility tests.
  void SetVersion(uint32_t version) { version_ = version; }

  // Tensors. ne[0] is the row length (innermost). Checked: non-empty unique
  // name, 1..4 dims each >= 1, known type, ne[0] a multiple of the block size,
  // data size == RowBytes(type, ne[0]) * rows.
  Status AddTensor(std::string name, TensorType type, std::vector<int64_t> ne, std::vector<uint8_t> data);
  Status AddTensorView(std::string name, TensorType type, std::vector<int64_t> ne, const void* data, size_t size);
  Status AddTensor(std::string name, TensorType type, std::vector<int64_t> ne, RowFiller filler);

  size_t num_tensors() const { return tensors_.size(); }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return metadata_; }

  // Total bytes the file will have.
  Result<uint64_t> FileSize() const;
  // Streams to `path` + ".tmp" and renames it over `path` on success.
  Status WriteFile(const std::string& path) const;
  Result<std::vector<uint8_t>> WriteToMemory() const;

  class Sink {
   public:
    virtual ~Sink() = default;
    virtual Status Write(const void* data, size_t n) = 0;
  };
  // Writes the whole file to any sink (used by WriteFile / WriteToMemory).
  Status WriteTo(Sink& sink) const;

 private:
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> ne;
    uint64_t row_bytes = 0;
    int64_t rows = 0;
    uint64_t nbytes = 0;
    std::vector<uint8_t> owned;
    const uint8_t* view = nullptr;  // owned.data() or external
    RowFiller filler;
  };
  Status CheckTensor(const std::string& name, TensorType type, const std::vector<int64_t>& ne, Tensor* t) const;
  Status CheckAlignment() const;
  std::vector<uint8_t> SerializeHeader(std::vector<uint64_t>* rel_offsets, uint64_t* data_offset) const;

  uint32_t version_ = 3;
  uint64_t alignment_ = 32;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
};

}  // namespace tabfit
