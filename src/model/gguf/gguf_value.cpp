// GgufValue, GGUF value-type helpers and GgufTensorInfo geometry.
#include <cstring>

#include "model/gguf/gguf.h"

namespace tabfit {

// ---------------------------------------------------------------- types

const char* GgufTypeName(GgufType t) {
  switch (t) {
    case GgufType::kUint8: return "uint8";
    case GgufType::kInt8: return "int8";
    case GgufType::kUint16: return "uint16";
    case GgufType::kInt16: return "int16";
    case GgufType::kUint32: return "uint32";
    case GgufType::kInt32: return "int32";
    case GgufType::kFloat32: return "float32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "array";
    case GgufType::kUint64: return "uint64";
    case GgufType::kInt64: return "int64";
    case GgufType::kFloat64: return "float64";
  }
  return "?";
}

size_t GgufScalarSize(GgufType t) {
  switch (t) {
    case GgufType::kUint8: case GgufType::kInt8: case GgufType::kBool: return 1;
    case GgufType::kUint16: case GgufType::kInt16: return 2;
    case GgufType::kUint32: case GgufType::kInt32: case GgufType::kFloat32: return 4;
    case GgufType::kUint64: case GgufType::kInt64: case GgufType::kFloat64: return 8;
    case GgufType::kString: case GgufType::kArray: return 0;
  }
  return 0;
}

bool GgufTypeIsValid(uint32_t id) { return id <= static_cast<uint32_t>(GgufType::kFloat64); }

bool GgufTypeIsUnsigned(GgufType t) {
  return t == GgufType::kUint8 || t == GgufType::kUint16 || t == GgufType::kUint32 || t == GgufType::kUint64;
}
bool GgufTypeIsSigned(GgufType t) {
  return t == GgufType::kInt8 || t == GgufType::kInt16 || t == GgufType::kInt32 || t == GgufType::kInt64;
}
bool GgufTypeIsFloat(GgufType t) { return t == GgufType::kFloat32 || t == GgufType::kFloat64; }

// ---------------------------------------------------------------- GgufValue

namespace {
GgufValue MakeUnsigned(GgufType t, uint64_t v) {
  GgufValue g;
  g.type = t;
  g.u = v;
  return g;
}
GgufValue MakeSigned(GgufType t, int64_t v) {
  GgufValue g;
  g.type = t;
  g.i = v;
  return g;
}
template <typename T>
GgufValue MakeNumericArray(GgufType elem, const std::vector<T>& v) {
  std::vector<uint8_t> raw(v.size() * sizeof(T));
  if (!raw.empty()) std::memcpy(raw.data(), v.data(), raw.size());
  return GgufValue::NumericArray(elem, std::move(raw));
}
}  // namespace

GgufValue GgufValue::U8(uint8_t v) { return MakeUnsigned(GgufType::kUint8, v); }
GgufValue GgufValue::I8(int8_t v) { return MakeSigned(GgufType::kInt8, v); }
GgufValue GgufValue::U16(uint16_t v) { return MakeUnsigned(GgufType::kUint16, v); }
GgufValue GgufValue::I16(int16_t v) { return MakeSigned(GgufType::kInt16, v); }
GgufValue GgufValue::U32(uint32_t v) { return MakeUnsigned(GgufType::kUint32, v); }
GgufValue GgufValue::I32(int32_t v) { return MakeSigned(GgufType::kInt32, v); }
GgufValue GgufValue::U64(uint64_t v) { return MakeUnsigned(GgufType::kUint64, v); }
GgufValue GgufValue::I64(int64_t v) { return MakeSigned(GgufType::kInt64, v); }
GgufValue GgufValue::Bool(bool v) { return MakeUnsigned(GgufType::kBool, v ? 1 : 0); }
GgufValue GgufValue::F32(float v) {
  GgufValue g;
  g.type = GgufType::kFloat32;
  g.f = v;
  return g;
}
GgufValue GgufValue::F64(double v) {
  GgufValue g;
  g.type = GgufType::kFloat64;
  g.f = v;
  return g;
}
GgufValue GgufValue::String(std::string v) {
  GgufValue g;
  g.type = GgufType::kString;
  g.str = std::move(v);
  return g;
}
GgufValue GgufValue::StringArray(std::vector<std::string> v) {
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem_type = GgufType::kString;
  g.count = v.size();
  g.strings = std::move(v);
  return g;
}
GgufValue GgufValue::F32Array(const std::vector<float>& v) { return MakeNumericArray(GgufType::kFloat32, v); }
GgufValue GgufValue::I32Array(const std::vector<int32_t>& v) { return MakeNumericArray(GgufType::kInt32, v); }
GgufValue GgufValue::U32Array(const std::vector<uint32_t>& v) { return MakeNumericArray(GgufType::kUint32, v); }
GgufValue GgufValue::NumericArray(GgufType elem_type, std::vector<uint8_t> raw) {
  GgufValue g;
  g.type = GgufType::kArray;
  g.elem_type = elem_type;
  size_t es = GgufScalarSize(elem_type);
  g.count = es ? raw.size() / es : 0;
  g.raw = std::move(raw);
  return g;
}

namespace {
template <typename T>
T LoadAt(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}
}  // namespace

double GgufValue::ArrayF64(uint64_t k) const {
  if (GgufScalarSize(elem_type) == 0 || k >= count) return 0;
  const uint8_t* p = raw.data() + k * GgufScalarSize(elem_type);
  switch (elem_type) {
    case GgufType::kFloat32: return LoadAt<float>(p);
    case GgufType::kFloat64: return LoadAt<double>(p);
    default:
      return GgufTypeIsUnsigned(elem_type) || elem_type == GgufType::kBool ? static_cast<double>(ArrayU64(k))
                                                                           : static_cast<double>(ArrayI64(k));
  }
}

int64_t GgufValue::ArrayI64(uint64_t k) const {
  if (GgufScalarSize(elem_type) == 0 || k >= count) return 0;
  const uint8_t* p = raw.data() + k * GgufScalarSize(elem_type);
  switch (elem_type) {
    case GgufType::kInt8: return LoadAt<int8_t>(p);
    case GgufType::kInt16: return LoadAt<int16_t>(p);
    case GgufType::kInt32: return LoadAt<int32_t>(p);
    case GgufType::kInt64: return LoadAt<int64_t>(p);
    case GgufType::kFloat32: return static_cast<int64_t>(LoadAt<float>(p));
    case GgufType::kFloat64: return static_cast<int64_t>(LoadAt<double>(p));
    default: return static_cast<int64_t>(ArrayU64(k));
  }
}

uint64_t GgufValue::ArrayU64(uint64_t k) const {
  if (GgufScalarSize(elem_type) == 0 || k >= count) return 0;
  const uint8_t* p = raw.data() + k * GgufScalarSize(elem_type);
  switch (elem_type) {
    case GgufType::kUint8: case GgufType::kBool: return LoadAt<uint8_t>(p);
    case GgufType::kUint16: return LoadAt<uint16_t>(p);
    case GgufType::kUint32: return LoadAt<uint32_t>(p);
    case GgufType::kUint64: return LoadAt<uint64_t>(p);
    case GgufType::kInt8: case GgufType::kInt16: case GgufType::kInt32: case GgufType::kInt64:
    case GgufType::kFloat32: case GgufType::kFloat64:
      return static_cast<uint64_t>(ArrayI64(k));
    default: return 0;  // string / array elements are not numeric
  }
}

// ---------------------------------------------------------------- tensor info

int64_t GgufTensorInfo::n_elements() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;
  return n;
}

int64_t GgufTensorInfo::rows() const {
  int64_t n = 1;
  for (size_t k = 1; k < ne.size(); ++k) n *= ne[k];
  return n;
}

size_t GgufTensorInfo::row_bytes() const { return ne.empty() ? 0 : RowBytes(type, ne[0]); }

}  // namespace tabfit
