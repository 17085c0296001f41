#include "model/gguf/gguf_writer.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <limits>
#include <set>

namespace tabfit {

namespace {

constexpr uint64_t kChunkBytes = 4u << 20;

void Put(std::vector<uint8_t>& out, const void* p, size_t n) {
  if (n == 0) return;
  const size_t at = out.size();
  out.resize(at + n);
  std::memcpy(out.data() + at, p, n);
}
template <typename T>
void PutT(std::vector<uint8_t>& out, T v) {
  Put(out, &v, sizeof(T));
}
void PutString(std::vector<uint8_t>& out, const std::string& s) {
  PutT<uint64_t>(out, s.size());
  Put(out, s.data(), s.size());
}

void PutScalar(std::vector<uint8_t>& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::kUint8: PutT<uint8_t>(out, static_cast<uint8_t>(v.u)); break;
    case GgufType::kInt8: PutT<int8_t>(out, static_cast<int8_t>(v.i)); break;
    case GgufType::kUint16: PutT<uint16_t>(out, static_cast<uint16_t>(v.u)); break;
    case GgufType::kInt16: PutT<int16_t>(out, static_cast<int16_t>(v.i)); break;
    case GgufType::kUint32: PutT<uint32_t>(out, static_cast<uint32_t>(v.u)); break;
    case GgufType::kInt32: PutT<int32_t>(out, static_cast<int32_t>(v.i)); break;
    case GgufType::kUint64: PutT<uint64_t>(out, v.u); break;
    case GgufType::kInt64: PutT<int64_t>(out, v.i); break;
    case GgufType::kFloat32: PutT<float>(out, static_cast<float>(v.f)); break;
    case GgufType::kFloat64: PutT<double>(out, v.f); break;
    case GgufType::kBool: PutT<uint8_t>(out, v.u ? 1 : 0); break;
    case GgufType::kString: PutString(out, v.str); break;
    case GgufType::kArray: break;
  }
}

class VectorSink final : public GgufWriter::Sink {
 public:
  explicit VectorSink(std::vector<uint8_t>* out) : out_(out) {}
  Status Write(const void* data, size_t n) override {
    Put(*out_, data, n);
    return Status::Ok();
  }

 private:
  std::vector<uint8_t>* out_;
};

class FileSink final : public GgufWriter::Sink {
 public:
  FileSink(std::FILE* f, std::string path) : f_(f), path_(std::move(path)) {}
  Status Write(const void* data, size_t n) override {
    if (n && std::fwrite(data, 1, n, f_) != n) {
      return IoError(path_ + ": write failed at offset " + std::to_string(written_) + ": " + std::strerror(errno) +
                     " (disk full?)");
    }
    written_ += n;
    return Status::Ok();
  }

 private:
  std::FILE* f_;
  std::string path_;
  uint64_t written_ = 0;
};

}  // namespace

void GgufWriter::Set(const std::string& key, GgufValue value) {
  for (auto& kv : metadata_) {
    if (kv.first == key) {
      kv.second = std::move(value);
      return;
    }
  }
  metadata_.emplace_back(key, std::move(value));
}

void GgufWriter::SetAlignment(uint64_t alignment) {
  alignment_ = alignment;
  if (alignment <= std::numeric_limits<uint32_t>::max()) {
    SetU32("general.alignment", static_cast<uint32_t>(alignment));
  } else {
    SetU64("general.alignment", alignment);
  }
}

Status GgufWriter::CheckAlignment() const {
  if (alignment_ == 0 || (alignment_ & (alignment_ - 1)) != 0) {
    return InvalidArgument("GgufWriter: alignment " + std::to_string(alignment_) + " is not a power of two");
  }
  return Status::Ok();
}

Status GgufWriter::CheckTensor(const std::string& name, TensorType type, const std::vector<int64_t>& ne,
                               Tensor* t) const {
  const std::string tn = "GgufWriter: tensor '" + name + "'";
  if (name.empty()) return InvalidArgument("GgufWriter: tensor name is empty");
  for (const auto& other : tensors_) {
    if (other.name == name) return InvalidArgument(tn + " added twice");
  }
  if (ne.empty() || ne.size() > 4) {
    return InvalidArgument(tn + " has " + std::to_string(ne.size()) + " dimensions (allowed: 1..4)");
  }
  int64_t count = 1;
  for (int64_t d : ne) {
    if (d <= 0) return InvalidArgument(tn + " has a dimension " + std::to_string(d) + " (must be >= 1)");
    if (count > std::numeric_limits<int64_t>::max() / d) return InvalidArgument(tn + " element count overflows");
    count *= d;
  }
  int64_t be, bb;
  if (!TensorTypeGeometry(static_cast<uint32_t>(type), &be, &bb)) {
    return InvalidArgument(tn + " has unknown type id " + std::to_string(static_cast<uint32_t>(type)));
  }
  const size_t rb = RowBytes(type, ne[0]);
  if (rb == 0) {
    return InvalidArgument(tn + " row length " + std::to_string(ne[0]) + " is not a multiple of the " +
                           std::string(TensorTypeName(type)) + " block size " + std::to_string(be));
  }
  t->name = name;
  t->type = type;
  t->ne = ne;
  t->row_bytes = rb;
  t->rows = count / ne[0];
  if (static_cast<uint64_t>(t->rows) > std::numeric_limits<uint64_t>::max() / rb) {
    return InvalidArgument(tn + " byte size overflows");
  }
  t->nbytes = rb * static_cast<uint64_t>(t->rows);
  return Status::Ok();
}

Status GgufWriter::AddTensor(std::string name, TensorType type, std::vector<int64_t> ne, std::vector<uint8_t> data) {
  Tensor t;
  TF_RETURN_IF_ERROR(CheckTensor(name, type, ne, &t));
  if (data.size() != t.nbytes) {
    return InvalidArgument("GgufWriter: tensor '" + name + "' needs " + std::to_string(t.nbytes) +
                           " bytes of data, got " + std::to_string(data.size()));
  }
  t.owned = std::move(data);
  tensors_.push_back(std::move(t));
  return Status::Ok();
}

Status GgufWriter::AddTensorView(std::string name, TensorType type, std::vector<int64_t> ne, const void* data,
                                 size_t size) {
  Tensor t;
  TF_RETURN_IF_ERROR(CheckTensor(name, type, ne, &t));
  if (size != t.nbytes) {
    return InvalidArgument("GgufWriter: tensor '" + name + "' needs " + std::to_string(t.nbytes) +
                           " bytes of data, got " + std::to_string(size));
  }
  if (!data && size) return InvalidArgument("GgufWriter: tensor '" + name + "' data is null");
  t.view = static_cast<const uint8_t*>(data);
  tensors_.push_back(std::move(t));
  return Status::Ok();
}

Status GgufWriter::AddTensor(std::string name, TensorType type, std::vector<int64_t> ne, RowFiller filler) {
  Tensor t;
  TF_RETURN_IF_ERROR(CheckTensor(name, type, ne, &t));
  if (!filler) return InvalidArgument("GgufWriter: tensor '" + name + "' has an empty row filler");
  t.filler = std::move(filler);
  tensors_.push_back(std::move(t));
  return Status::Ok();
}

std::vector<uint8_t> GgufWriter::SerializeHeader(std::vector<uint64_t>* rel_offsets, uint64_t* data_offset) const {
  std::vector<uint8_t> out = {'G', 'G', 'U', 'F'};
  PutT<uint32_t>(out, version_);
  PutT<uint64_t>(out, tensors_.size());
  PutT<uint64_t>(out, metadata_.size());
  for (const auto& [key, v] : metadata_) {
    PutString(out, key);
    PutT<uint32_t>(out, static_cast<uint32_t>(v.type));
    if (v.type != GgufType::kArray) {
      PutScalar(out, v);
      continue;
    }
    PutT<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
    if (v.elem_type == GgufType::kString) {
      PutT<uint64_t>(out, v.strings.size());
      for (const auto& s : v.strings) PutString(out, s);
    } else {
      const size_t es = GgufScalarSize(v.elem_type);
      const uint64_t n = es ? v.raw.size() / es : 0;
      PutT<uint64_t>(out, n);
      Put(out, v.raw.data(), static_cast<size_t>(n * es));
    }
  }
  uint64_t rel = 0;
  rel_offsets->clear();
  for (const auto& t : tensors_) {
    PutString(out, t.name);
    PutT<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) PutT<int64_t>(out, d);
    PutT<uint32_t>(out, static_cast<uint32_t>(t.type));
    PutT<uint64_t>(out, rel);
    rel_offsets->push_back(rel);
    rel += t.nbytes;
    rel += (alignment_ - rel % alignment_) % alignment_;
  }
  const uint64_t pad = (alignment_ - out.size() % alignment_) % alignment_;
  out.resize(out.size() + pad, 0);
  *data_offset = out.size();
  return out;
}

Result<uint64_t> GgufWriter::FileSize() const {
  TF_RETURN_IF_ERROR(CheckAlignment());
  std::vector<uint64_t> rel;
  uint64_t data_offset;
  SerializeHeader(&rel, &data_offset);
  if (tensors_.empty()) return data_offset;
  return data_offset + rel.back() + tensors_.back().nbytes;
}

Status GgufWriter::WriteTo(Sink& sink) const {
  TF_RETURN_IF_ERROR(CheckAlignment());
  for (const auto& [key, v] : metadata_) {
    if (v.type == GgufType::kArray &&
        (v.elem_type == GgufType::kArray || !GgufTypeIsValid(static_cast<uint32_t>(v.elem_type)))) {
      return InvalidArgument("GgufWriter: key '" + key + "' has an unsupported array element type");
    }
    if (!GgufTypeIsValid(static_cast<uint32_t>(v.type))) {
      return InvalidArgument("GgufWriter: key '" + key + "' has an invalid type");
    }
  }
  std::vector<uint64_t> rel;
  uint64_t data_offset;
  const std::vector<uint8_t> header = SerializeHeader(&rel, &data_offset);
  TF_RETURN_IF_ERROR(sink.Write(header.data(), header.size()));
  static const uint8_t kZeros[256] = {};
  uint64_t pos = 0;  // relative to data_offset
  std::vector<uint8_t> chunk;
  for (size_t k = 0; k < tensors_.size(); ++k) {
    const Tensor& t = tensors_[k];
    while (pos < rel[k]) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(sizeof kZeros, rel[k] - pos));
      TF_RETURN_IF_ERROR(sink.Write(kZeros, n));
      pos += n;
    }
    if (!t.filler) {
      const uint8_t* data = t.owned.empty() ? t.view : t.owned.data();
      TF_RETURN_IF_ERROR(sink.Write(data, static_cast<size_t>(t.nbytes)));
    } else {
      const int64_t rows_per_chunk =
          std::max<int64_t>(1, static_cast<int64_t>(kChunkBytes / std::max<uint64_t>(1, t.row_bytes)));
      for (int64_t r = 0; r < t.rows; r += rows_per_chunk) {
        const int64_t n = std::min(rows_per_chunk, t.rows - r);
        chunk.assign(static_cast<size_t>(n * t.row_bytes), 0);
        Status s = t.filler(r, n, chunk.data());
        if (!s.ok()) return s.WithContext("GgufWriter: tensor '" + t.name + "' rows " + std::to_string(r));
        TF_RETURN_IF_ERROR(sink.Write(chunk.data(), chunk.size()));
      }
    }
    pos += t.nbytes;
  }
  return Status::Ok();
}

Result<std::vector<uint8_t>> GgufWriter::WriteToMemory() const {
  TF_ASSIGN_OR_RETURN(uint64_t total, FileSize());
  if (total > std::numeric_limits<size_t>::max()) {
    return BufferLimit("GgufWriter: file of " + std::to_string(total) + " bytes does not fit in memory");
  }
  std::vector<uint8_t> out;
  out.reserve(static_cast<size_t>(total));
  VectorSink sink(&out);
  TF_RETURN_IF_ERROR(WriteTo(sink));
  return out;
}

Status GgufWriter::WriteFile(const std::string& path) const {
  TF_RETURN_IF_ERROR(CheckAlignment());
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return IoError(tmp + ": cannot create: " + std::strerror(errno));
  std::setvbuf(f, nullptr, _IOFBF, 1 << 20);
  FileSink sink(f, tmp);
  Status s = WriteTo(sink);
  if (std::fflush(f) != 0 && s.ok()) s = IoError(tmp + ": flush failed: " + std::strerror(errno));
  if (std::fclose(f) != 0 && s.ok()) s = IoError(tmp + ": close failed: " + std::strerror(errno));
  if (s.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    s = IoError(path + ": cannot rename " + tmp + " into place: " + std::strerror(errno));
  }
  if (!s.ok()) std::remove(tmp.c_str());
  return s;
}

}  // namespace tabfit
