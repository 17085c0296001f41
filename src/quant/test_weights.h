// Test-only: a tiny GGUF reader that pulls real F16/F32 weight rows out of a model
// file (quant sits below the model layer, so it cannot use tabfit_gguf).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "core/f16.h"

namespace tabfit::testing {

namespace gguf_detail {
struct Reader {
  std::ifstream f;
  bool ok = true;
  template <typename T>
  T Get() {
    T v{};
    if (!f.read(reinterpret_cast<char*>(&v), sizeof(T))) ok = false;
    return v;
  }
  std::string Str() {
    const uint64_t n = Get<uint64_t>();
    if (!ok || n > (1u << 20)) {
      ok = false;
      return {};
    }
    std::string s(n, '\0');
    if (!f.read(s.data(), static_cast<std::streamsize>(n))) ok = false;
    return s;
  }
  void Skip(uint32_t type, uint64_t* alignment_out, const std::string& key) {
    static const int kSize[] = {1, 1, 2, 2, 4, 4, 4, 1, -1, -2, 8, 8, 8};
    if (type == 8) {
      Str();
    } else if (type == 9) {
      const uint32_t et = Get<uint32_t>();
      const uint64_t n = Get<uint64_t>();
      if (!ok || n > (1u << 26)) {
        ok = false;
        return;
      }
      for (uint64_t i = 0; i < n && ok; ++i) Skip(et, nullptr, "");
    } else if (type < 13) {
      if (key == "general.alignment" && type == 4) {
        *alignment_out = Get<uint32_t>();
        return;
      }
      f.seekg(kSize[type], std::ios::cur);
    } else {
      ok = false;
    }
  }
};
}  // namespace gguf_detail

// Rows [0, rows) of a model's weight matrix as f32, row-major.
struct RealMatrix {
  std::vector<float> w;
  int64_t rows = 0, cols = 0;
  std::string name;
};

// Reads up to max_rows rows of the first 2-D F32/F16 tensor whose row length is a
// multiple of 256, as f32. Returns false if the file is unreadable or has none.
inline bool ReadFirstMatrixF32(const std::string& path, int64_t max_rows, RealMatrix* m) {
  gguf_detail::Reader r{std::ifstream(path, std::ios::binary)};
  if (!r.f || r.Get<uint32_t>() != 0x46554747u) return false;  // "GGUF"
  r.Get<uint32_t>();
  const uint64_t n_tensors = r.Get<uint64_t>();
  const uint64_t n_kv = r.Get<uint64_t>();
  uint64_t alignment = 32;
  for (uint64_t i = 0; i < n_kv && r.ok; ++i) {
    const std::string key = r.Str();
    r.Skip(r.Get<uint32_t>(), &alignment, key);
  }
  struct Info {
    std::string name;
    uint64_t ne0 = 0, ne1 = 0;
    uint32_t type = 0, n_dims = 0;
    uint64_t offset = 0;
  };
  std::vector<Info> infos;
  for (uint64_t i = 0; i < n_tensors && r.ok; ++i) {
    Info in;
    in.name = r.Str();
    in.n_dims = r.Get<uint32_t>();
    if (in.n_dims > 4) return false;
    uint64_t ne[4] = {1, 1, 1, 1};
    for (uint32_t d = 0; d < in.n_dims; ++d) ne[d] = r.Get<uint64_t>();
    in.ne0 = ne[0];
    in.ne1 = ne[1];
    in.type = r.Get<uint32_t>();
    in.offset = r.Get<uint64_t>();
    infos.push_back(in);
  }
  if (!r.ok) return false;
  const uint64_t pos = static_cast<uint64_t>(r.f.tellg());
  const uint64_t data = (pos + alignment - 1) / alignment * alignment;
  for (const Info& in : infos) {
    if (in.n_dims != 2 || (in.type != 0 && in.type != 1) || in.ne0 % 256 != 0 || in.ne1 < 4) continue;
    m->cols = static_cast<int64_t>(in.ne0);
    m->rows = std::min<int64_t>(max_rows, static_cast<int64_t>(in.ne1));
    m->name = in.name;
    const size_t es = in.type == 0 ? 4 : 2;
    std::vector<uint8_t> raw(static_cast<size_t>(m->rows * m->cols) * es);
    r.f.clear();
    r.f.seekg(static_cast<std::streamoff>(data + in.offset));
    if (!r.f.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(raw.size()))) return false;
    m->w.resize(static_cast<size_t>(m->rows * m->cols));
    for (size_t i = 0; i < m->w.size(); ++i) {
      if (es == 4) {
        std::memcpy(&m->w[i], raw.data() + 4 * i, 4);
      } else {
        uint16_t h;
        std::memcpy(&h, raw.data() + 2 * i, 2);
        m->w[i] = F16ToF32(h);
      }
    }
    return true;
  }
  return false;
}

}  // namespace tabfit::testing
