#include "eval/importance.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "eval/perplexity.h"
#include "model/llama/llama_model.h"

namespace tabfit {

namespace {

constexpr char kMagic[4] = {'T', 'F', 'I', 'M'};
constexpr uint32_t kVersion = 1;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

template <typename T>
void Put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}

}  // namespace

uint64_t HashBytes(const void* data, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const uint8_t* b = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

const float* ImportanceMap::For(const std::string& name) const {
  auto it = entries_.find(name);
  return it == entries_.end() || it->second.values.empty() ? nullptr : it->second.values.data();
}

const float* ImportanceMap::For(const std::string& name, int64_t cols) const {
  auto it = entries_.find(name);
  if (it == entries_.end() || static_cast<int64_t>(it->second.values.size()) != cols) return nullptr;
  return it->second.values.data();
}

Status ImportanceMap::Save(const std::string& path) const {
  std::string out;
  if (EndsWith(path, ".json")) {
    nlohmann::ordered_json j;
    j["format"] = "tabfit-importance";
    j["version"] = kVersion;
    j["tokens"] = tokens_;
    j["text_hash"] = text_hash_;
    nlohmann::ordered_json t = nlohmann::ordered_json::object();
    for (const auto& [name, e] : entries_) {
      t[name] = {{"samples", e.samples}, {"values", e.values}};
    }
    j["tensors"] = t;
    out = j.dump() + "\n";
  } else {
    out.append(kMagic, 4);
    Put<uint32_t>(out, kVersion);
    Put<uint32_t>(out, static_cast<uint32_t>(entries_.size()));
    Put<uint64_t>(out, tokens_);
    Put<uint64_t>(out, text_hash_);
    for (const auto& [name, e] : entries_) {
      Put<uint32_t>(out, static_cast<uint32_t>(name.size()));
      out += name;
      Put<uint64_t>(out, e.values.size());
      Put<uint64_t>(out, e.samples);
      out.append(reinterpret_cast<const char*>(e.values.data()), e.values.size() * sizeof(float));
    }
  }
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return IoError("cannot create '" + tmp + "' (check the directory exists and is writable)");
    f.write(out.data(), static_cast<std::streamsize>(out.size()));
    if (!f) return IoError("writing '" + tmp + "' failed (disk full?)");
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) return IoError("cannot rename '" + tmp + "' to '" + path + "'");
  return Status::Ok();
}

Result<ImportanceMap> ImportanceMap::ParseBinary(const uint8_t* data, size_t size, const std::string& name) {
  size_t off = 0;
  auto need = [&](size_t n, const char* what) -> Status {
    if (size - off < n) {
      return CorruptData(name + ": truncated importance file at offset " + std::to_string(off) + " (reading " + what +
                         ", need " + std::to_string(n) + " bytes, " + std::to_string(size - off) +
                         " remain); recreate it with `tabfit calibrate`");
    }
    return Status::Ok();
  };
  auto get = [&](auto* v, const char* what) -> Status {
    TF_RETURN_IF_ERROR(need(sizeof(*v), what));
    std::memcpy(v, data + off, sizeof(*v));
    off += sizeof(*v);
    return Status::Ok();
  };
  TF_RETURN_IF_ERROR(need(4, "magic"));
  if (std::memcmp(data, kMagic, 4) != 0) {
    return CorruptData(name + ": not a tabfit importance file (magic is not TFIM); create one with `tabfit calibrate`");
  }
  off = 4;
  uint32_t version = 0, count = 0;
  uint64_t tokens = 0;
  TF_RETURN_IF_ERROR(get(&version, "version"));
  if (version != kVersion) {
    return Unsupported(name + ": importance file version " + std::to_string(version) + " (this build reads 1)");
  }
  TF_RETURN_IF_ERROR(get(&count, "tensor count"));
  TF_RETURN_IF_ERROR(get(&tokens, "token count"));
  ImportanceMap m;
  m.tokens_ = tokens;
  TF_RETURN_IF_ERROR(get(&m.text_hash_, "text hash"));
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t len = 0;
    TF_RETURN_IF_ERROR(get(&len, "name length"));
    TF_RETURN_IF_ERROR(need(len, "tensor name"));
    std::string tname(reinterpret_cast<const char*>(data + off), len);
    off += len;
    uint64_t cols = 0;
    Entry e;
    TF_RETURN_IF_ERROR(get(&cols, "column count"));
    TF_RETURN_IF_ERROR(get(&e.samples, "sample count"));
    if (cols > (size - off) / sizeof(float)) {
      return CorruptData(name + ": tensor '" + tname + "' claims " + std::to_string(cols) + " columns at offset " +
                         std::to_string(off) + " but only " + std::to_string(size - off) + " bytes remain");
    }
    e.values.resize(cols);
    std::memcpy(e.values.data(), data + off, cols * sizeof(float));
    off += cols * sizeof(float);
    for (float v : e.values) {
      if (!(v >= 0.f) || !std::isfinite(v)) {
        return CorruptData(name + ": tensor '" + tname + "' has a negative or non-finite importance value");
      }
    }
    if (m.entries_.count(tname)) return CorruptData(name + ": tensor '" + tname + "' appears twice");
    m.entries_[tname] = std::move(e);
  }
  if (off != size) {
    return CorruptData(name + ": " + std::to_string(size - off) + " unexpected trailing bytes at offset " +
                       std::to_string(off));
  }
  return m;
}

Result<ImportanceMap> ImportanceMap::ParseJson(const std::string& text, const std::string& name) {
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(text);
  } catch (const std::exception& e) {
    return CorruptData(name + ": not valid JSON: " + e.what());
  }
  if (!j.is_object() || j.value("format", "") != "tabfit-importance") {
    return CorruptData(name + ": not a tabfit importance JSON (\"format\" must be \"tabfit-importance\")");
  }
  if (j.value("version", 0) != static_cast<int>(kVersion)) {
    return Unsupported(name + ": importance JSON version " + j.value("version", nlohmann::json()).dump() +
                       " (this build reads 1)");
  }
  ImportanceMap m;
  try {
    m.tokens_ = j.value("tokens", uint64_t{0});
    m.text_hash_ = j.value("text_hash", uint64_t{0});
    const auto& t = j.at("tensors");
    if (!t.is_object()) return CorruptData(name + ": \"tensors\" must be an object");
    for (auto it = t.begin(); it != t.end(); ++it) {
      Entry e;
      e.samples = it.value().value("samples", uint64_t{0});
      e.values = it.value().at("values").get<std::vector<float>>();
      for (float v : e.values) {
        if (!(v >= 0.f) || !std::isfinite(v)) {
          return CorruptData(name + ": tensor '" + it.key() + "' has a negative or non-finite importance value");
        }
      }
      m.entries_[it.key()] = std::move(e);
    }
  } catch (const std::exception& e) {
    return CorruptData(name + ": malformed importance JSON: " + e.what());
  }
  return m;
}

Result<ImportanceMap> ImportanceMap::Load(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return NotFound("cannot open importance file '" + path + "'; create it with `tabfit calibrate`");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string s = ss.str();
  if (s.size() >= 4 && std::memcmp(s.data(), kMagic, 4) == 0) {
    return ParseBinary(reinterpret_cast<const uint8_t*>(s.data()), s.size(), path);
  }
  return ParseJson(s, path);
}

void ImportanceCollector::Attach(ForwardScratch& scratch) {
  scratch.observe_input = [this](const WeightMatrix& w, const float* x, int n) { Observe(w, x, n); };
}

void ImportanceCollector::Observe(const WeightMatrix& w, const float* x, int n) {
  Acc& a = acc_[w.name];
  if (a.sum.size() != static_cast<size_t>(w.cols)) a.sum.assign(w.cols, 0.0);
  for (int t = 0; t < n; ++t) {
    const float* row = x + static_cast<size_t>(t) * w.cols;
    for (int64_t c = 0; c < w.cols; ++c) a.sum[c] += static_cast<double>(row[c]) * row[c];
  }
  a.samples += n;
}

ImportanceMap ImportanceCollector::Finish() const {
  ImportanceMap m;
  m.set_tokens(tokens_);
  for (const auto& [name, a] : acc_) {
    ImportanceMap::Entry e;
    e.samples = a.samples;
    e.values.resize(a.sum.size());
    for (size_t c = 0; c < a.sum.size(); ++c) e.values[c] = a.samples ? static_cast<float>(a.sum[c] / a.samples) : 0.f;
    m.Set(name, std::move(e));
  }
  return m;
}

Result<ImportanceMap> CollectImportance(const LlamaModel& model, int32_t bos, const std::vector<int32_t>& tokens,
                                        int n_ctx, int chunks, int threads,
                                        const std::function<void(int, int)>& progress) {
  PerplexityOptions po;
  po.n_ctx = std::min(n_ctx, model.hparams().n_ctx_train);
  po.n_chunks = chunks;
  po.threads = threads;
  TF_ASSIGN_OR_RETURN(auto r, PerplexityRunner::Create(model, po));
  const int n_chunks = r->ChunksFor(tokens.size());
  if (n_chunks < 1) {
    return InvalidArgument("the calibration text has " + std::to_string(tokens.size()) +
                           " tokens, fewer than one chunk of " + std::to_string(po.n_ctx) + "; give more text");
  }
  ImportanceCollector col;
  col.Attach(r->scratch());
  std::vector<int32_t> chunk(po.n_ctx);
  for (int ci = 0; ci < n_chunks; ++ci) {
    std::copy(tokens.begin() + static_cast<size_t>(ci) * po.n_ctx,
              tokens.begin() + static_cast<size_t>(ci + 1) * po.n_ctx, chunk.begin());
    chunk[0] = bos;
    TF_RETURN_IF_ERROR(r->ChunkLogProbs(chunk.data()).status());
    col.AddTokens(po.n_ctx);
    if (progress) progress(ci + 1, n_chunks);
  }
  r->scratch().observe_input = nullptr;
  return col.Finish();
}

}  // namespace tabfit
