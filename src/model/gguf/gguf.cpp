#include "model/gguf/gguf.h"

#include <bit>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <set>

namespace tabfit {

static_assert(std::endian::native == std::endian::little, "tabfit's GGUF reader assumes a little-endian host");

// ---------------------------------------------------------------- parser

namespace {

constexpr uint64_t kMinKvBytes = 12;      // 8-byte key length + 4-byte type (+ value)
constexpr uint64_t kMinTensorBytes = 24;  // 8 name length + 4 n_dims + 8 dim + 4 type (+ 8 offset)
constexpr size_t kWindow = 1 << 16;
constexpr uint64_t kMaxKeyBytes = 65535;  // the GGUF spec's limit on key length
// Vectors are pre-sized to at most this many entries; beyond it they grow with the
// entries actually parsed, so a hostile count never causes a large up-front allocation.
constexpr uint64_t kMaxReserve = 1 << 16;

size_t CappedReserve(uint64_t n) { return static_cast<size_t>(std::min<uint64_t>(n, kMaxReserve)); }

// Sequential reader over a ByteSource with a small read-ahead window.
class Cursor {
 public:
  explicit Cursor(const ByteSource& src) : src_(src), size_(src.size()), mem_(src.data()) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  Status Error(StatusCode code, uint64_t offset, const std::string& msg) const {
    return Status(code, src_.name() + ": at byte offset " + std::to_string(offset) + ": " + msg);
  }

  Status Read(void* dst, size_t n, const char* what) {
    if (n > remaining()) {
      return Error(StatusCode::kCorruptData, pos_,
                   std::string("file truncated while reading ") + what + " (need " + std::to_string(n) +
                       " bytes, " + std::to_string(remaining()) + " remain of " + std::to_string(size_) +
                       "); the file is incomplete, download or convert it again");
    }
    if (n == 0) return Status::Ok();
    if (mem_) {
      std::memcpy(dst, mem_ + pos_, n);
    } else if (n >= kWindow) {
      TF_RETURN_IF_ERROR(src_.ReadAt(pos_, dst, n));
    } else {
      if (pos_ < win_start_ || pos_ + n > win_start_ + win_.size()) {
        size_t len = static_cast<size_t>(std::min<uint64_t>(kWindow, remaining()));
        win_.resize(len);
        win_start_ = pos_;
        TF_RETURN_IF_ERROR(src_.ReadAt(pos_, win_.data(), len));
      }
      std::memcpy(dst, win_.data() + (pos_ - win_start_), n);
    }
    pos_ += n;
    return Status::Ok();
  }

  template <typename T>
  Status Get(T* v, const char* what) {
    return Read(v, sizeof(T), what);
  }

  Status GetString(std::string* s, const char* what, uint64_t max_len = std::numeric_limits<uint64_t>::max()) {
    uint64_t at = pos_;
    uint64_t len;
    TF_RETURN_IF_ERROR(Get(&len, what));
    if (len > max_len) {
      return Error(StatusCode::kCorruptData, at,
                   std::string(what) + " length " + std::to_string(len) + " exceeds the GGUF limit of " +
                       std::to_string(max_len) + " bytes; the file is corrupt");
    }
    if (len > remaining()) {
      return Error(StatusCode::kCorruptData, at,
                   std::string(what) + " length " + std::to_string(len) + " runs past the end of the file (" +
                       std::to_string(remaining()) + " bytes remain); the file is truncated or corrupt");
    }
    s->resize(static_cast<size_t>(len));
    return Read(s->data(), static_cast<size_t>(len), what);
  }

 private:
  const ByteSource& src_;
  uint64_t size_;
  const uint8_t* mem_;
  uint64_t pos_ = 0;
  std::vector<uint8_t> win_;
  uint64_t win_start_ = 0;
};

std::string Quote(std::string_view s, size_t max_len = 120) {
  std::string out = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ >= max_len) {
      out += "...";
      break;
    }
    unsigned char uc = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (uc < 0x20 || uc == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", uc);
      out += buf;
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

// Names of GGML tensor types that exist but that tabfit does not implement.
const char* KnownUnsupportedGgmlType(uint32_t id) {
  switch (id) {
    case 4: return "Q4_2 (removed from GGML)";
    case 5: return "Q4_3 (removed from GGML)";
    case 16: return "IQ2_XXS";
    case 17: return "IQ2_XS";
    case 18: return "IQ3_XXS";
    case 19: return "IQ1_S";
    case 20: return "IQ4_NL";
    case 21: return "IQ3_S";
    case 22: return "IQ2_S";
    case 23: return "IQ4_XS";
    case 29: return "IQ1_M";
    case 34: return "TQ1_0";
    case 35: return "TQ2_0";
    case 39: return "MXFP4";
    default: return nullptr;
  }
}

}  // namespace

class GgufParser {
 public:
  static Result<GgufFile> Parse(std::unique_ptr<ByteSource> source);

 private:
  static Status ReadValue(Cursor& c, GgufType type, GgufValue* v, const std::string& key);
};

Status GgufParser::ReadValue(Cursor& c, GgufType type, GgufValue* v, const std::string& key) {
  v->type = type;
  const uint64_t at = c.pos();
  switch (type) {
    case GgufType::kUint8: { uint8_t x; TF_RETURN_IF_ERROR(c.Get(&x, "a uint8 value")); v->u = x; break; }
    case GgufType::kInt8: { int8_t x; TF_RETURN_IF_ERROR(c.Get(&x, "an int8 value")); v->i = x; break; }
    case GgufType::kUint16: { uint16_t x; TF_RETURN_IF_ERROR(c.Get(&x, "a uint16 value")); v->u = x; break; }
    case GgufType::kInt16: { int16_t x; TF_RETURN_IF_ERROR(c.Get(&x, "an int16 value")); v->i = x; break; }
    case GgufType::kUint32: { uint32_t x; TF_RETURN_IF_ERROR(c.Get(&x, "a uint32 value")); v->u = x; break; }
    case GgufType::kInt32: { int32_t x; TF_RETURN_IF_ERROR(c.Get(&x, "an int32 value")); v->i = x; break; }
    case GgufType::kUint64: { uint64_t x; TF_RETURN_IF_ERROR(c.Get(&x, "a uint64 value")); v->u = x; break; }
    case GgufType::kInt64: { int64_t x; TF_RETURN_IF_ERROR(c.Get(&x, "an int64 value")); v->i = x; break; }
    case GgufType::kFloat32: { float x; TF_RETURN_IF_ERROR(c.Get(&x, "a float32 value")); v->f = x; break; }
    case GgufType::kFloat64: { double x; TF_RETURN_IF_ERROR(c.Get(&x, "a float64 value")); v->f = x; break; }
    case GgufType::kBool: { uint8_t x; TF_RETURN_IF_ERROR(c.Get(&x, "a bool value")); v->u = x ? 1 : 0; break; }
    case GgufType::kString: TF_RETURN_IF_ERROR(c.GetString(&v->str, "string value")); break;
    case GgufType::kArray: {
      uint32_t et;
      TF_RETURN_IF_ERROR(c.Get(&et, "an array element type"));
      if (!GgufTypeIsValid(et)) {
        return c.Error(StatusCode::kCorruptData, at,
                       "array value of key '" + key + "' has invalid element type " + std::to_string(et) +
                           " (valid: 0..12); the file is corrupt");
      }
      if (static_cast<GgufType>(et) == GgufType::kArray) {
        return c.Error(StatusCode::kUnsupported, at,
                       "key '" + key + "' holds a nested array (array of arrays), which tabfit does not support");
      }
      v->elem_type = static_cast<GgufType>(et);
      uint64_t count;
      TF_RETURN_IF_ERROR(c.Get(&count, "an array length"));
      const uint64_t count_at = c.pos() - 8;
      if (v->elem_type == GgufType::kString) {
        if (count > c.remaining() / 8) {
          return c.Error(StatusCode::kCorruptData, count_at,
                         "array of " + std::to_string(count) + " strings for key '" + key +
                             "' cannot fit in the " + std::to_string(c.remaining()) +
                             " bytes that remain; the file is truncated or corrupt");
        }
        v->count = count;
        v->strings.reserve(CappedReserve(count));
        for (uint64_t k = 0; k < count; ++k) {
          v->strings.emplace_back();
          TF_RETURN_IF_ERROR(c.GetString(&v->strings.back(), "array string"));
        }
      } else {
        const size_t es = GgufScalarSize(v->elem_type);
        if (count > c.remaining() / es) {
          return c.Error(StatusCode::kCorruptData, count_at,
                         "array of " + std::to_string(count) + " " + GgufTypeName(v->elem_type) + " for key '" +
                             key + "' runs past the end of the file (" + std::to_string(c.remaining()) +
                             " bytes remain); the file is truncated or corrupt");
        }
        v->count = count;
        v->raw.resize(static_cast<size_t>(count * es));
        TF_RETURN_IF_ERROR(c.Read(v->raw.data(), v->raw.size(), "array elements"));
        if (v->elem_type == GgufType::kBool) {
          for (auto& b : v->raw) b = b ? 1 : 0;
        }
      }
      break;
    }
  }
  return Status::Ok();
}

Result<GgufFile> GgufParser::Parse(std::unique_ptr<ByteSource> source) {
  if (!source) return InvalidArgument("GgufFile::Parse: null byte source");
  GgufFile file;
  file.source_ = std::move(source);
  const ByteSource& src = *file.source_;
  const uint64_t size = src.size();
  Cursor c(src);

  // Header.
  if (size < 4) {
    return c.Error(StatusCode::kCorruptData, 0,
                   "file is only " + std::to_string(size) + " bytes, too small to be a GGUF file");
  }
  char magic[4];
  TF_RETURN_IF_ERROR(c.Read(magic, 4, "the magic"));
  if (std::memcmp(magic, "GGUF", 4) != 0) {
    std::string shown;
    for (char ch : magic) {
      unsigned char u = static_cast<unsigned char>(ch);
      char buf[8];
      std::snprintf(buf, sizeof buf, (u >= 0x20 && u < 0x7f) ? "%c" : "\\x%02x", u);
      shown += buf;
    }
    return c.Error(StatusCode::kCorruptData, 0,
                   "not a GGUF file: magic is '" + shown + "', expected 'GGUF'; pass a .gguf model file");
  }
  uint32_t version;
  TF_RETURN_IF_ERROR(c.Get(&version, "the version"));
  if (version == 1) {
    return c.Error(StatusCode::kUnsupported, 4,
                   "GGUF version 1 is obsolete (32-bit counts) and not supported; reconvert the model with a "
                   "current llama.cpp convert script to get GGUF v3");
  }
  if (version == 0x02000000u || version == 0x03000000u) {
    return c.Error(StatusCode::kUnsupported, 4,
                   "this is a big-endian GGUF file, which tabfit does not support; use the little-endian file");
  }
  if (version != 2 && version != 3) {
    return c.Error(version == 0 ? StatusCode::kCorruptData : StatusCode::kUnsupported, 4,
                   "GGUF version " + std::to_string(version) + " is not supported (tabfit reads versions 2 and 3)");
  }
  file.version_ = version;
  uint64_t n_tensors, n_kv;
  TF_RETURN_IF_ERROR(c.Get(&n_tensors, "the tensor count"));
  TF_RETURN_IF_ERROR(c.Get(&n_kv, "the metadata count"));
  {
    const uint64_t rem = c.remaining();
    if (n_kv > rem / kMinKvBytes) {
      return c.Error(StatusCode::kCorruptData, 16,
                     "metadata count " + std::to_string(n_kv) + " is absurd: " + std::to_string(rem) +
                         " bytes remain and each key/value needs at least " + std::to_string(kMinKvBytes) +
                         "; the header is corrupt");
    }
    if (n_tensors > rem / kMinTensorBytes || n_tensors * kMinTensorBytes > rem - n_kv * kMinKvBytes) {
      return c.Error(StatusCode::kCorruptData, 8,
                     "tensor count " + std::to_string(n_tensors) + " is absurd: " + std::to_string(rem) +
                         " bytes remain and each tensor info needs at least " + std::to_string(kMinTensorBytes) +
                         "; the header is corrupt");
    }
  }

  // Metadata.
  file.metadata_.reserve(CappedReserve(n_kv));
  file.kv_offsets_.reserve(CappedReserve(n_kv));
  for (uint64_t k = 0; k < n_kv; ++k) {
    const uint64_t at = c.pos();
    std::string key;
    TF_RETURN_IF_ERROR(c.GetString(&key, "metadata key", kMaxKeyBytes));
    if (file.kv_index_.count(key)) {
      return c.Error(StatusCode::kCorruptData, at,
                     "duplicate metadata key '" + key + "' (key/value #" + std::to_string(k) +
                         "); the file is corrupt");
    }
    uint32_t type;
    TF_RETURN_IF_ERROR(c.Get(&type, "a metadata value type"));
    if (!GgufTypeIsValid(type)) {
      return c.Error(StatusCode::kCorruptData, c.pos() - 4,
                     "metadata key '" + key + "' has unknown value type " + std::to_string(type) +
                         " (valid: 0..12); the file is corrupt");
    }
    GgufValue v;
    TF_RETURN_IF_ERROR(ReadValue(c, static_cast<GgufType>(type), &v, key));
    file.kv_index_.emplace(key, file.metadata_.size());
    file.kv_offsets_.push_back(at);
    file.metadata_.emplace_back(std::move(key), std::move(v));
  }

  // Alignment.
  if (auto it = file.kv_index_.find("general.alignment"); it != file.kv_index_.end()) {
    const GgufValue& v = file.metadata_[it->second].second;
    const uint64_t at = file.kv_offsets_[it->second];
    uint64_t a = 0;
    if (GgufTypeIsUnsigned(v.type)) {
      a = v.u;
    } else if (GgufTypeIsSigned(v.type) && v.i > 0) {
      a = static_cast<uint64_t>(v.i);
    } else if (!GgufTypeIsSigned(v.type)) {
      return c.Error(StatusCode::kCorruptData, at,
                     std::string("general.alignment has type ") + GgufTypeName(v.type) + ", expected uint32");
    }
    if (a == 0 || (a & (a - 1)) != 0) {
      return c.Error(StatusCode::kCorruptData, at,
                     "general.alignment is " + (GgufTypeIsSigned(v.type) ? std::to_string(v.i) : std::to_string(a)) +
                         ", which is not a positive power of two; the file is corrupt");
    }
    file.alignment_ = a;
  }

  // Tensor infos.
  struct Pending {
    uint64_t info_at;
    uint64_t rel;
  };
  std::vector<Pending> pending;
  pending.reserve(CappedReserve(n_tensors));
  file.tensors_.reserve(CappedReserve(n_tensors));
  for (uint64_t k = 0; k < n_tensors; ++k) {
    const uint64_t at = c.pos();
    GgufTensorInfo t;
    TF_RETURN_IF_ERROR(c.GetString(&t.name, "tensor name"));
    const std::string tn = "tensor '" + t.name + "'";
    if (file.tensor_index_.count(t.name)) {
      return c.Error(StatusCode::kCorruptData, at, "duplicate " + tn + " (tensor info #" + std::to_string(k) +
                                                       "); the file is corrupt");
    }
    uint32_t n_dims;
    TF_RETURN_IF_ERROR(c.Get(&n_dims, "a tensor's dimension count"));
    if (n_dims == 0 || n_dims > 4) {
      return c.Error(StatusCode::kCorruptData, c.pos() - 4,
                     tn + " has " + std::to_string(n_dims) + " dimensions (allowed: 1..4); the file is corrupt");
    }
    t.ne.resize(n_dims);
    int64_t count = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      TF_RETURN_IF_ERROR(c.Get(&t.ne[d], "a tensor dimension"));
      if (t.ne[d] <= 0) {
        return c.Error(StatusCode::kCorruptData, c.pos() - 8,
                       tn + " dimension " + std::to_string(d) + " is " + std::to_string(t.ne[d]) +
                           " (must be >= 1); the file is corrupt");
      }
      if (count > std::numeric_limits<int64_t>::max() / t.ne[d]) {
        return c.Error(StatusCode::kCorruptData, c.pos() - 8,
                       tn + " element count overflows int64 (dimension " + std::to_string(d) + " = " +
                           std::to_string(t.ne[d]) + "); the file is corrupt");
      }
      count *= t.ne[d];
    }
    uint32_t type_id;
    TF_RETURN_IF_ERROR(c.Get(&type_id, "a tensor type"));
    int64_t be = 0, bb = 0;
    if (!TensorTypeGeometry(type_id, &be, &bb)) {
      if (const char* known = KnownUnsupportedGgmlType(type_id)) {
        return c.Error(StatusCode::kUnsupported, c.pos() - 4,
                       tn + " uses GGML type " + std::to_string(type_id) + " = " + known +
                           ", which tabfit does not implement; use a model quantized to F16, Q8_0, Q4_0 or a "
                           "K-quant, or convert it with `tabfit convert`");
      }
      return c.Error(StatusCode::kCorruptData, c.pos() - 4,
                     tn + " has unknown tensor type id " + std::to_string(type_id) + "; the file is corrupt or "
                                                                                      "from a newer format");
    }
    t.type = static_cast<TensorType>(type_id);
    if (t.ne[0] % be != 0) {
      return c.Error(StatusCode::kCorruptData, c.pos() - 4,
                     tn + " row length " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                         std::string(TensorTypeName(t.type)) + " block size " + std::to_string(be) +
                         "; the file is corrupt");
    }
    uint64_t rel;
    TF_RETURN_IF_ERROR(c.Get(&rel, "a tensor data offset"));
    const uint64_t row_bytes = static_cast<uint64_t>(t.ne[0] / be) * static_cast<uint64_t>(bb);
    const uint64_t rows = static_cast<uint64_t>(count / t.ne[0]);
    if (static_cast<uint64_t>(t.ne[0] / be) > std::numeric_limits<uint64_t>::max() / static_cast<uint64_t>(bb) ||
        (row_bytes != 0 && rows > std::numeric_limits<uint64_t>::max() / row_bytes)) {
      return c.Error(StatusCode::kCorruptData, at, tn + " byte size overflows 64 bits; the file is corrupt");
    }
    t.nbytes = row_bytes * rows;
    if (rel % file.alignment_ != 0) {
      return c.Error(StatusCode::kCorruptData, c.pos() - 8,
                     tn + " data offset " + std::to_string(rel) + " is not a multiple of the alignment " +
                         std::to_string(file.alignment_) + "; the file is corrupt");
    }
    file.tensor_index_.emplace(t.name, file.tensors_.size());
    pending.push_back({at, rel});
    file.tensors_.push_back(std::move(t));
  }

  // Data section.
  const uint64_t end_infos = c.pos();
  const uint64_t pad = (file.alignment_ - end_infos % file.alignment_) % file.alignment_;
  if (pad > std::numeric_limits<uint64_t>::max() - end_infos) {
    return c.Error(StatusCode::kCorruptData, end_infos, "data offset overflows with alignment " +
                                                            std::to_string(file.alignment_));
  }
  file.data_offset_ = end_infos + pad;
  if (!file.tensors_.empty() && file.data_offset_ > size) {
    return c.Error(StatusCode::kCorruptData, end_infos,
                   "tensor data section would start at " + std::to_string(file.data_offset_) +
                       ", past the end of the file (size " + std::to_string(size) + "); the file is truncated");
  }
  for (size_t k = 0; k < file.tensors_.size(); ++k) {
    GgufTensorInfo& t = file.tensors_[k];
    const uint64_t rel = pending[k].rel;
    const uint64_t avail = size - file.data_offset_;
    if (rel > avail || t.nbytes > avail - rel) {
      return c.Error(StatusCode::kCorruptData, pending[k].info_at,
                     "tensor '" + t.name + "' data (" + std::to_string(t.nbytes) + " bytes at data offset " +
                         std::to_string(rel) + ", absolute " +
                         (rel > std::numeric_limits<uint64_t>::max() - file.data_offset_
                              ? std::string("overflowing")
                              : std::to_string(file.data_offset_ + rel)) +
                         ") runs past the end of the file (size " + std::to_string(size) +
                         "); the file is truncated, download it again");
    }
    t.offset = file.data_offset_ + rel;
  }
  return file;
}

// ---------------------------------------------------------------- GgufFile

Result<GgufFile> GgufFile::Parse(std::unique_ptr<ByteSource> source) { return GgufParser::Parse(std::move(source)); }

Result<GgufFile> GgufFile::Open(const std::string& path) {
  TF_ASSIGN_OR_RETURN(auto src, OpenFileSource(path));
  return Parse(std::move(src));
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &metadata_[it->second].second;
}

const GgufTensorInfo* GgufFile::FindTensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<const GgufValue*> GgufFile::Lookup(std::string_view key, size_t* index) const {
  auto it = kv_index_.find(key);
  if (it == kv_index_.end()) {
    return NotFound(name() + ": metadata key '" + std::string(key) + "' not found");
  }
  *index = it->second;
  return &metadata_[it->second].second;
}

Status GgufFile::TypeError(std::string_view key, size_t index, const char* expected) const {
  const GgufValue& v = metadata_[index].second;
  std::string actual = GgufTypeName(v.type);
  if (v.is_array()) actual += std::string(" of ") + GgufTypeName(v.elem_type);
  return CorruptData(name() + ": at byte offset " + std::to_string(kv_offsets_[index]) + ": metadata key '" +
                     std::string(key) + "' has type " + actual + ", expected " + expected);
}

Result<std::string> GgufFile::GetString(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (v->type != GgufType::kString) return TypeError(key, idx, "string");
  return v->str;
}

Result<uint64_t> GgufFile::GetU64(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (GgufTypeIsUnsigned(v->type)) return v->u;
  if (GgufTypeIsSigned(v->type)) {
    if (v->i < 0) {
      return CorruptData(name() + ": at byte offset " + std::to_string(kv_offsets_[idx]) + ": metadata key '" +
                         std::string(key) + "' is " + std::to_string(v->i) + ", expected a value >= 0");
    }
    return static_cast<uint64_t>(v->i);
  }
  return TypeError(key, idx, "an integer");
}

Result<int64_t> GgufFile::GetI64(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (GgufTypeIsSigned(v->type)) return v->i;
  if (GgufTypeIsUnsigned(v->type)) {
    if (v->u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return CorruptData(name() + ": at byte offset " + std::to_string(kv_offsets_[idx]) + ": metadata key '" +
                         std::string(key) + "' is " + std::to_string(v->u) + ", too large for int64");
    }
    return static_cast<int64_t>(v->u);
  }
  return TypeError(key, idx, "an integer");
}

Result<double> GgufFile::GetF64(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (GgufTypeIsFloat(v->type)) return v->f;
  if (GgufTypeIsUnsigned(v->type)) return static_cast<double>(v->u);
  if (GgufTypeIsSigned(v->type)) return static_cast<double>(v->i);
  return TypeError(key, idx, "a number");
}

Result<bool> GgufFile::GetBool(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (v->type != GgufType::kBool) return TypeError(key, idx, "bool");
  return v->u != 0;
}

Result<std::vector<std::string>> GgufFile::GetStringArray(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (!v->is_array() || v->elem_type != GgufType::kString) return TypeError(key, idx, "array of string");
  return v->strings;
}

Result<std::vector<float>> GgufFile::GetF32Array(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  if (!v->is_array() || !GgufTypeIsFloat(v->elem_type)) return TypeError(key, idx, "array of float32");
  std::vector<float> out(static_cast<size_t>(v->count));
  if (v->elem_type == GgufType::kFloat32) {
    if (!out.empty()) std::memcpy(out.data(), v->raw.data(), out.size() * sizeof(float));
  } else {
    for (size_t k = 0; k < out.size(); ++k) out[k] = static_cast<float>(v->ArrayF64(k));
  }
  return out;
}

Result<std::vector<int32_t>> GgufFile::GetI32Array(std::string_view key) const {
  size_t idx;
  TF_ASSIGN_OR_RETURN(const GgufValue* v, Lookup(key, &idx));
  const bool is_unsigned = GgufTypeIsUnsigned(v->elem_type);
  if (!v->is_array() || !(is_unsigned || GgufTypeIsSigned(v->elem_type))) {
    return TypeError(key, idx, "array of int32");
  }
  std::vector<int32_t> out(static_cast<size_t>(v->count));
  for (size_t k = 0; k < out.size(); ++k) {
    bool fits;
    if (is_unsigned) {
      uint64_t x = v->ArrayU64(k);
      fits = x <= static_cast<uint64_t>(std::numeric_limits<int32_t>::max());
      out[k] = static_cast<int32_t>(x);
    } else {
      int64_t x = v->ArrayI64(k);
      fits = x >= std::numeric_limits<int32_t>::min() && x <= std::numeric_limits<int32_t>::max();
      out[k] = static_cast<int32_t>(x);
    }
    if (!fits) {
      return CorruptData(name() + ": at byte offset " + std::to_string(kv_offsets_[idx]) + ": metadata key '" +
                         std::string(key) + "' element " + std::to_string(k) + " does not fit in int32");
    }
  }
  return out;
}

Result<uint64_t> GgufFile::GetU64Or(std::string_view key, uint64_t def) const {
  return Find(key) ? GetU64(key) : Result<uint64_t>(def);
}
Result<int64_t> GgufFile::GetI64Or(std::string_view key, int64_t def) const {
  return Find(key) ? GetI64(key) : Result<int64_t>(def);
}
Result<double> GgufFile::GetF64Or(std::string_view key, double def) const {
  return Find(key) ? GetF64(key) : Result<double>(def);
}
Result<bool> GgufFile::GetBoolOr(std::string_view key, bool def) const {
  return Find(key) ? GetBool(key) : Result<bool>(def);
}
Result<std::string> GgufFile::GetStringOr(std::string_view key, std::string def) const {
  return Find(key) ? GetString(key) : Result<std::string>(std::move(def));
}

Status GgufFile::ReadTensor(const GgufTensorInfo& t, void* dst) const {
  if (t.nbytes > std::numeric_limits<size_t>::max()) {
    return BufferLimit(name() + ": tensor '" + t.name + "' (" + std::to_string(t.nbytes) +
                       " bytes) is too large for this platform's address space");
  }
  Status s = source_->ReadAt(t.offset, dst, static_cast<size_t>(t.nbytes));
  return s.ok() ? s : s.WithContext("tensor '" + t.name + "'");
}

Status GgufFile::ReadTensorRows(const GgufTensorInfo& t, int64_t row0, int64_t nrows, void* dst) const {
  const int64_t rows = t.rows();
  if (row0 < 0 || nrows < 0 || row0 > rows || nrows > rows - row0) {
    return OutOfRange(name() + ": tensor '" + t.name + "' has " + std::to_string(rows) + " rows; requested rows [" +
                      std::to_string(row0) + ", " + std::to_string(row0) + "+" + std::to_string(nrows) + ")");
  }
  const uint64_t rb = t.row_bytes();
  const uint64_t n = rb * static_cast<uint64_t>(nrows);
  if (n > std::numeric_limits<size_t>::max()) {
    return BufferLimit(name() + ": tensor '" + t.name + "' row range too large for this platform");
  }
  Status s = source_->ReadAt(t.offset + rb * static_cast<uint64_t>(row0), dst, static_cast<size_t>(n));
  return s.ok() ? s : s.WithContext("tensor '" + t.name + "'");
}

const uint8_t* GgufFile::TensorData(const GgufTensorInfo& t) const {
  const uint8_t* d = source_->data();
  return d ? d + t.offset : nullptr;
}

namespace {
std::string FormatFloat(double v, bool is_f32) {
  char buf[64];
#if defined(__cpp_lib_to_chars)
  std::to_chars_result r = is_f32 ? std::to_chars(buf, buf + sizeof buf, static_cast<float>(v))
                                  : std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, r.ptr);
#else
  // libc++ 14 (Emscripten 3.1.6) has no floating-point to_chars: shortest %g that round-trips.
  for (int p = 1; p <= 17; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, v);
    if (is_f32 ? std::strtof(buf, nullptr) == static_cast<float>(v) : std::strtod(buf, nullptr) == v) break;
  }
  return buf;
#endif
}

std::string FormatScalar(const GgufValue& v) {
  if (GgufTypeIsUnsigned(v.type)) return std::to_string(v.u);
  if (GgufTypeIsSigned(v.type)) return std::to_string(v.i);
  if (GgufTypeIsFloat(v.type)) return FormatFloat(v.f, v.type == GgufType::kFloat32);
  if (v.type == GgufType::kBool) return v.u ? "true" : "false";
  if (v.type == GgufType::kString) return Quote(v.str);
  return "?";
}
}  // namespace

std::string GgufFile::DescribeValue(const GgufValue& v, size_t max_array_items) const {
  if (!v.is_array()) return FormatScalar(v);
  std::string out = "[";
  const uint64_t shown = std::min<uint64_t>(v.count, max_array_items);
  for (uint64_t k = 0; k < shown; ++k) {
    if (k) out += ", ";
    if (v.elem_type == GgufType::kString) {
      out += Quote(v.strings[k], 40);
    } else if (GgufTypeIsFloat(v.elem_type)) {
      out += FormatFloat(v.ArrayF64(k), v.elem_type == GgufType::kFloat32);
    } else if (v.elem_type == GgufType::kBool) {
      out += v.ArrayU64(k) ? "true" : "false";
    } else if (GgufTypeIsUnsigned(v.elem_type)) {
      out += std::to_string(v.ArrayU64(k));
    } else {
      out += std::to_string(v.ArrayI64(k));
    }
  }
  if (shown < v.count) out += shown ? ", ..." : "...";
  out += "] (" + std::to_string(v.count) + " x " + GgufTypeName(v.elem_type) + ")";
  return out;
}

}  // namespace tabfit
