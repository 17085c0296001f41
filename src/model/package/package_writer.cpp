// Writing tabfit packages: priority order, per-tensor conversion, chunking,
// checksums and the manifest.
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "core/thread_pool.h"
#include "model/gguf/gguf_writer.h"
#include "model/package/package.h"
#include "model/package/sha256.h"
#include "quant/kernels.h"

namespace tabfit {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::ordered_json;

uint64_t AlignUp(uint64_t x, uint64_t a) { return x + (a - x % a) % a; }

// llama.cpp's general.file_type (llama_ftype) for the types it knows.
std::optional<uint32_t> FileTypeFor(TensorType t) {
  switch (t) {
    case TensorType::kF32: return 0;
    case TensorType::kF16: return 1;
    case TensorType::kQ4_0: return 2;
    case TensorType::kQ8_0: return 7;
    case TensorType::kBF16: return 32;
    default: return std::nullopt;
  }
}

struct Planned {
  const GgufTensorInfo* src = nullptr;
  PackageTensor out;
  uint64_t row_bytes = 0;
  int64_t rows = 0;
  int64_t cols = 0;
};

// Writes the GGUF byte stream into consecutive chunk files, hashing each chunk
// and each tensor's bytes as they pass.
class ChunkSink final : public GgufWriter::Sink {
 public:
  ChunkSink(std::string dir, std::vector<PackageChunk>* chunks, std::vector<Planned>* tensors, uint64_t data_offset,
            uint64_t total_tensor_bytes, const PackageOptions& opt)
      : dir_(std::move(dir)), chunks_(chunks), tensors_(tensors), data_offset_(data_offset),
        total_tensor_bytes_(total_tensor_bytes), opt_(opt) {
    tensor_hash_.resize(tensors->size());
  }
  ~ChunkSink() override {
    if (f_) std::fclose(f_);
  }

  Status Write(const void* data, size_t n) override {
    const uint8_t* p = static_cast<const uint8_t*>(data);
    while (n > 0) {
      if (!f_ || pos_ == chunk_end_) TF_RETURN_IF_ERROR(NextChunk());
      size_t take = static_cast<size_t>(std::min<uint64_t>(n, chunk_end_ - pos_));
      if (std::fwrite(p, 1, take, f_) != take) {
        return IoError(path_ + ": write failed: " + std::strerror(errno) + " (disk full?)");
      }
      chunk_hash_.Update(p, take);
      HashTensors(p, pos_, take);
      pos_ += take;
      p += take;
      n -= take;
    }
    return Status::Ok();
  }

  Status Finish() {
    if (f_) TF_RETURN_IF_ERROR(CloseChunk());
    if (cur_ + 1 != chunks_->size() || pos_ != chunks_->back().offset + chunks_->back().size) {
      return Internal("package writer: wrote " + std::to_string(pos_) + " bytes but planned " +
                      std::to_string(chunks_->back().offset + chunks_->back().size));
    }
    for (size_t k = 0; k < tensors_->size(); ++k) {
      if ((*tensors_)[k].out.sha256.empty()) {
        (*tensors_)[k].out.sha256 = tensor_hash_[k].FinalHex();  // zero-length tensors only
      }
    }
    return Status::Ok();
  }

 private:
  Status NextChunk() {
    if (f_) {
      TF_RETURN_IF_ERROR(CloseChunk());
      ++cur_;
    }
    if (cur_ >= chunks_->size()) return Internal("package writer: more bytes than planned");
    PackageChunk& c = (*chunks_)[cur_];
    path_ = (fs::path(dir_) / c.file).string();
    f_ = std::fopen(path_.c_str(), "wb");
    if (!f_) return IoError(path_ + ": cannot create: " + std::strerror(errno));
    std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
    chunk_end_ = c.offset + c.size;
    chunk_hash_ = Sha256();
    return Status::Ok();
  }

  Status CloseChunk() {
    int e1 = std::fflush(f_);
    int e2 = std::fclose(f_);
    f_ = nullptr;
    if (e1 != 0 || e2 != 0) return IoError(path_ + ": closing failed: " + std::strerror(errno));
    (*chunks_)[cur_].sha256 = chunk_hash_.FinalHex();
    return Status::Ok();
  }

  void HashTensors(const uint8_t* p, uint64_t a, size_t n) {
    const uint64_t b = a + n;
    while (next_tensor_ < tensors_->size()) {
      Planned& t = (*tensors_)[next_tensor_];
      const uint64_t ts = data_offset_ + t.out.data_offset, te = ts + t.out.nbytes;
      if (ts >= b) break;
      const uint64_t lo = std::max(a, ts), hi = std::min(b, te);
      if (hi > lo) {
        tensor_hash_[next_tensor_].Update(p + (lo - a), static_cast<size_t>(hi - lo));
        done_ += hi - lo;
        if (opt_.progress) opt_.progress(done_, total_tensor_bytes_, t.out.name);
      }
      if (te <= b) {
        t.out.sha256 = tensor_hash_[next_tensor_].FinalHex();
        ++next_tensor_;
      } else {
        break;
      }
    }
  }

  std::string dir_;
  std::vector<PackageChunk>* chunks_;
  std::vector<Planned>* tensors_;
  uint64_t data_offset_;
  uint64_t total_tensor_bytes_;
  const PackageOptions& opt_;
  std::FILE* f_ = nullptr;
  std::string path_;
  size_t cur_ = 0;
  uint64_t pos_ = 0, chunk_end_ = 0;
  Sha256 chunk_hash_;
  std::vector<Sha256> tensor_hash_;
  size_t next_tensor_ = 0;
  uint64_t done_ = 0;
};

// Prepares `dir`: creates it, or clears a previous package's files.
Status PrepareDir(const std::string& dir, const GgufFile& src) {
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec)) return InvalidArgument(dir + ": exists and is not a directory; choose another output");
    if (fs::equivalent(dir, src.name(), ec)) {
      return InvalidArgument(dir + ": is the package being converted; write to another directory");
    }
    bool is_pkg = fs::exists(fs::path(dir) / "manifest.json", ec);
    bool empty = fs::is_empty(dir, ec);
    if (!empty && !is_pkg) {
      return InvalidArgument(dir + ": exists, is not empty and is not a tabfit package; choose a new directory");
    }
    if (is_pkg) {
      fs::remove(fs::path(dir) / "manifest.json", ec);
      for (const auto& e : fs::directory_iterator(dir, ec)) {
        std::string n = e.path().filename().string();
        if (n == "header.gguf" || (n.rfind("data-", 0) == 0 && n.size() > 9 && n.substr(n.size() - 4) == ".bin")) {
          fs::remove(e.path(), ec);
        }
      }
    }
    return Status::Ok();
  }
  fs::create_directories(dir, ec);
  if (ec) return IoError(dir + ": cannot create directory: " + ec.message());
  return Status::Ok();
}

json ModelConfig(const GgufFile& g) {
  json m = json::object();
  auto arch = g.GetString("general.architecture");
  if (!arch.ok()) return m;
  const std::string a = *arch;
  m["arch"] = a;
  if (auto n = g.GetString("general.name"); n.ok()) m["name"] = *n;
  static const std::pair<const char*, const char*> kInts[] = {
      {"n_ctx_train", ".context_length"},          {"n_embd", ".embedding_length"},
      {"n_layer", ".block_count"},                 {"n_ff", ".feed_forward_length"},
      {"n_head", ".attention.head_count"},         {"n_head_kv", ".attention.head_count_kv"},
      {"n_rot", ".rope.dimension_count"},          {"head_dim", ".attention.key_length"},
      {"n_vocab", ".vocab_size"},
  };
  for (auto& [k, suffix] : kInts) {
    if (auto v = g.GetU64(a + suffix); v.ok()) m[k] = *v;
  }
  if (!m.contains("n_vocab")) {
    if (const GgufValue* v = g.Find("tokenizer.ggml.tokens"); v && v->is_array()) m["n_vocab"] = v->count;
  }
  if (auto v = g.GetF64(a + ".attention.layer_norm_rms_epsilon"); v.ok()) m["rms_eps"] = *v;
  if (auto v = g.GetF64(a + ".rope.freq_base"); v.ok()) m["rope_freq_base"] = *v;
  return m;
}

json TokenizerSummary(const GgufFile& g) {
  json t = json::object();
  if (auto m = g.GetString("tokenizer.ggml.model"); m.ok()) t["model"] = *m;
  if (auto p = g.GetString("tokenizer.ggml.pre"); p.ok()) t["pre"] = *p;
  if (const GgufValue* v = g.Find("tokenizer.ggml.tokens"); v && v->is_array()) t["n_tokens"] = v->count;
  if (const GgufValue* v = g.Find("tokenizer.ggml.merges"); v && v->is_array()) t["n_merges"] = v->count;
  if (auto types = g.GetI32Array("tokenizer.ggml.token_type"); types.ok()) {
    t["n_byte_tokens"] = std::count(types->begin(), types->end(), 6);
    t["n_control_tokens"] = std::count(types->begin(), types->end(), 3);
  }
  for (const char* k : {"bos", "eos", "unknown", "padding", "eot"}) {
    if (auto v = g.GetI64(std::string("tokenizer.ggml.") + k + "_token_id"); v.ok()) t[std::string(k) + "_id"] = *v;
  }
  if (auto v = g.GetBool("tokenizer.ggml.add_bos_token"); v.ok()) t["add_bos"] = *v;
  return t;
}

}  // namespace

TensorTypeFn UniformWeightType(TensorType t) {
  return [t](const GgufTensorInfo& info) -> std::optional<TensorType> {
    if (info.ne.size() != 2) return std::nullopt;
    if (info.type == t) return std::nullopt;
    if (RowBytes(t, info.ne[0]) == 0 || !CanDequantize(info.type) || !CanQuantize(t)) return std::nullopt;
    return t;
  };
}

Result<PackageSummary> WritePackageWithSummary(const GgufFile& src, const std::string& dir,
                                               const PackageOptions& opt) {
  if (opt.max_chunk_bytes < kMinChunkBytes || opt.max_chunk_bytes > kMaxChunkLimit) {
    return InvalidArgument("max chunk size " + std::to_string(opt.max_chunk_bytes) + " bytes is outside [" +
                           std::to_string(kMinChunkBytes) + ", 2 GiB]");
  }
  const uint64_t align = src.alignment();
  if (opt.max_chunk_bytes < 2 * align) {
    return InvalidArgument("max chunk size must be at least twice the GGUF alignment (" + std::to_string(align) + ")");
  }

  // Groups name components of this model, under names that are not components.
  for (const auto& [name, members] : opt.groups) {
    if (name.empty() || name == "layers" || name == "all" || name == "draft" || name.rfind("layers.", 0) == 0 || name == "embeddings" || name == "output_norm" || name == "lm_head") {
      return InvalidArgument("group name '" + name + "' is empty or names a component; pick another (--group NAME=...)");
    }
    if (members.empty()) return InvalidArgument("group '" + name + "' has no components");
    for (const std::string& c : members) {
      bool found = false;
      for (const auto& t : src.tensors()) found |= TensorComponent(t.name) == c;
      if (!found) {
        return InvalidArgument("group '" + name + "': '" + c + "' is not a component of this model (components: "
                               "embeddings, layers.0 ... layers.N, output_norm, lm_head)");
      }
    }
  }

  // 1. Priority order (stable: a component's tensors keep the file's order).
  std::vector<Planned> plan;
  for (const auto& t : src.tensors()) {
    Planned p;
    p.src = &t;
    p.out.name = t.name;
    p.out.component = TensorComponent(t.name);
    p.out.ne = t.ne;
    p.out.source_type = t.type;
    p.out.type = t.type;
    p.cols = t.ne.empty() ? 1 : t.ne[0];
    p.rows = t.rows();
    plan.push_back(std::move(p));
  }
  std::stable_sort(plan.begin(), plan.end(), [](const Planned& a, const Planned& b) {
    return ComponentPriority(a.out.component) < ComponentPriority(b.out.component);
  });

  // 2. Target types.
  std::map<TensorType, uint64_t> weight_bytes_by_type;
  for (auto& p : plan) {
    if (opt.target_type) {
      if (std::optional<TensorType> want = opt.target_type(*p.src); want && *want != p.src->type) {
        const std::string tn(TensorTypeName(*want));
        if (RowBytes(*want, p.cols) == 0) {
          return InvalidArgument("tensor '" + p.out.name + "': rows of " + std::to_string(p.cols) +
                                 " elements do not fit type " + tn + "'s block size; keep its type for this tensor");
        }
        if (!CanQuantize(*want)) return Unsupported("tensor '" + p.out.name + "': this build cannot write type " + tn);
        if (!CanDequantize(p.src->type)) {
          return Unsupported("tensor '" + p.out.name + "': cannot convert from its type " +
                             std::string(TensorTypeName(p.src->type)));
        }
        p.out.type = *want;
      }
    }
    p.row_bytes = RowBytes(p.out.type, p.cols);
    if (p.row_bytes == 0) {
      return Unsupported("tensor '" + p.out.name + "': type " + std::string(TensorTypeName(p.out.type)) +
                         " with rows of " + std::to_string(p.cols) + " elements has no valid layout");
    }
    p.out.nbytes = p.row_bytes * static_cast<uint64_t>(p.rows);
    if (p.out.ne.size() == 2) weight_bytes_by_type[p.out.type] += p.out.nbytes;
  }

  // 3. The GGUF (metadata as in the source; tensors in priority order).
  const int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto pool = std::make_shared<ThreadPool>(threads);
  GgufWriter w;
  bool converted = false;
  for (const auto& p : plan) converted |= p.out.type != p.src->type;
  for (const auto& [key, value] : src.metadata()) {
    if (key == "general.alignment") continue;
    if (key == "general.file_type" && converted) continue;
    w.Set(key, value);
  }
  if (src.Find("general.alignment")) w.SetAlignment(align);  // else the default (32) without the key
  if (converted && !weight_bytes_by_type.empty()) {
    auto dominant = std::max_element(weight_bytes_by_type.begin(), weight_bytes_by_type.end(),
                                      [](auto& a, auto& b) { return a.second < b.second; });
    if (auto ft = FileTypeFor(dominant->first)) w.SetU32("general.file_type", *ft);
  }
  for (auto& p : plan) {
    const GgufTensorInfo* t = p.src;
    const TensorType to = p.out.type;
    const int64_t cols = p.cols;
    GgufWriter::RowFiller filler;
    if (to == t->type) {
      filler = [&src, t](int64_t r0, int64_t n, void* dst) { return src.ReadTensorRows(*t, r0, n, dst); };
    } else {
      const size_t out_rb = p.row_bytes;
      const float* imp = opt.importance ? opt.importance(*t) : nullptr;
      p.out.used_importance = imp != nullptr;
      filler = [&src, t, to, cols, out_rb, pool, imp](int64_t r0, int64_t n, void* dst) -> Status {
        std::vector<uint8_t> raw(static_cast<size_t>(n) * t->row_bytes());
        TF_RETURN_IF_ERROR(src.ReadTensorRows(*t, r0, n, raw.data()));
        const size_t in_rb = t->row_bytes();
        std::vector<std::vector<float>> tmp(pool->num_threads(), std::vector<float>(static_cast<size_t>(cols)));
        pool->ParallelFor(static_cast<size_t>(n), [&](size_t b, size_t e, int ti) {
          for (size_t i = b; i < e; ++i) {
            DequantizeRow(t->type, raw.data() + i * in_rb, tmp[ti].data(), cols);
            QuantizeRow(to, tmp[ti].data(), static_cast<uint8_t*>(dst) + i * out_rb, cols, imp);
          }
        });
        return Status::Ok();
      };
    }
    TF_RETURN_IF_ERROR(w.AddTensor(p.out.name, to, p.out.ne, std::move(filler))
                           .WithContext("package: tensor '" + p.out.name + "'"));
  }

  // 4. Layout (the writer's rule: every tensor at an aligned offset in the data section).
  uint64_t rel = 0, data_size = 0, tensor_bytes = 0, n_weights = 0;
  for (auto& p : plan) {
    p.out.data_offset = rel;
    data_size = rel + p.out.nbytes;
    rel = AlignUp(data_size, align);
    tensor_bytes += p.out.nbytes;
    n_weights += static_cast<uint64_t>(p.rows) * static_cast<uint64_t>(p.cols);
  }
  TF_ASSIGN_OR_RETURN(uint64_t file_size, w.FileSize());
  if (file_size < data_size) return Internal("package writer: GGUF size below its data size");
  const uint64_t data_offset = file_size - data_size;
  if (data_offset > opt.max_chunk_bytes) {
    return InvalidArgument("the GGUF header (metadata and tensor table, mostly the vocabulary) is " +
                           std::to_string(data_offset) + " bytes, more than the max chunk size " +
                           std::to_string(opt.max_chunk_bytes) + "; raise --max-chunk");
  }

  // 5. Chunk plan (data-relative boundaries): fill each chunk; a tensor that
  // fits a chunk of its own is never split; a larger one is split at rows.
  const uint64_t max = opt.max_chunk_bytes;
  std::vector<uint64_t> starts;
  if (data_size > 0) starts.push_back(0);
  uint64_t cs = 0, prev_end = 0;
  for (auto& p : plan) {
    const uint64_t start = p.out.data_offset, end = start + p.out.nbytes;
    const uint64_t prev = prev_end;
    prev_end = end;
    if (start - cs > max) {  // the padding would overflow the chunk: it opens the next one
      cs = prev;
      starts.push_back(cs);
    }
    if (end - cs <= max) continue;
    if (p.out.nbytes <= max && start > cs) {
      starts.push_back(start);
      cs = start;
      continue;
    }
    if (p.row_bytes > max) {
      return InvalidArgument("tensor '" + p.out.name + "' has rows of " + std::to_string(p.row_bytes) +
                             " bytes, more than the max chunk size " + std::to_string(max) + "; raise --max-chunk");
    }
    int64_t r = 0;
    while (r < p.rows) {
      const uint64_t here = start + static_cast<uint64_t>(r) * p.row_bytes;
      const uint64_t room = max - (here - cs);
      int64_t can = static_cast<int64_t>(room / p.row_bytes);
      if (can == 0) {
        starts.push_back(here);
        cs = here;
        continue;
      }
      r += std::min<int64_t>(can, p.rows - r);
      if (r < p.rows) {
        cs = start + static_cast<uint64_t>(r) * p.row_bytes;
        starts.push_back(cs);
      }
    }
  }
  std::vector<PackageChunk> chunks;
  chunks.push_back({"header.gguf", 0, data_offset, "", {"header"}});
  for (size_t i = 0; i < starts.size(); ++i) {
    char name[32];
    std::snprintf(name, sizeof name, "data-%03zu.bin", i);
    const uint64_t b = starts[i], e = i + 1 < starts.size() ? starts[i + 1] : data_size;
    chunks.push_back({name, data_offset + b, e - b, "", {}});
  }
  // Parts and components.
  for (auto& p : plan) {
    const uint64_t ts = data_offset + p.out.data_offset, te = ts + p.out.nbytes;
    for (auto& c : chunks) {
      const uint64_t lo = std::max(ts, c.offset), hi = std::min(te, c.offset + c.size);
      if (hi <= lo) continue;
      PackageTensorPart part;
      part.file = c.file;
      part.offset = lo - c.offset;
      part.length = hi - lo;
      part.row_begin = static_cast<int64_t>((lo - ts) / p.row_bytes);
      part.row_end = static_cast<int64_t>((hi - ts) / p.row_bytes);
      p.out.parts.push_back(part);
      if (std::find(c.components.begin(), c.components.end(), p.out.component) == c.components.end()) {
        c.components.push_back(p.out.component);
      }
    }
  }

  // 6. Write the chunks, then the manifest.
  TF_RETURN_IF_ERROR(PrepareDir(dir, src));
  {
    ChunkSink sink(dir, &chunks, &plan, data_offset, tensor_bytes, opt);
    TF_RETURN_IF_ERROR(w.WriteTo(sink));
    TF_RETURN_IF_ERROR(sink.Finish());
  }

  PackageSummary sum;
  sum.chunks = chunks;
  for (auto& p : plan) sum.tensors.push_back(p.out);
  for (auto& c : chunks) sum.total_bytes += c.size;
  sum.tensor_bytes = tensor_bytes;
  sum.n_weights = n_weights;

  json m;
  m["format"] = kPackageFormatName;
  m["version"] = kPackageFormatVersion;
  m["gguf"] = {{"version", 3}, {"alignment", align}, {"data_offset", data_offset}, {"size", file_size},
               {"tensor_count", plan.size()}};
  m["model"] = ModelConfig(src);
  m["tokenizer"] = TokenizerSummary(src);
  json types = json::object();
  for (auto& p : plan) {
    std::string tn(TensorTypeName(p.out.type));
    types[tn] = types.value(tn, uint64_t{0}) + p.out.nbytes;
  }
  m["weights"] = {{"tensor_bytes", tensor_bytes},
                  {"n_elements", n_weights},
                  {"bits_per_weight", n_weights ? 8.0 * tensor_bytes / n_weights : 0.0},
                  {"bytes_by_type", types}};
  m["max_chunk_bytes"] = max;
  json order = json::array();
  for (auto& p : plan) {
    if (order.empty() || order.back() != p.out.component) order.push_back(p.out.component);
  }
  m["load_order"] = order;
  if (!opt.groups.empty()) m["groups"] = opt.groups;
  json jc = json::array();
  for (auto& c : chunks) {
    jc.push_back({{"file", c.file}, {"offset", c.offset}, {"size", c.size}, {"sha256", c.sha256},
                  {"components", c.components}});
  }
  m["chunks"] = jc;
  json jt = json::array();
  for (auto& p : plan) {
    json parts = json::array();
    for (auto& part : p.out.parts) {
      parts.push_back({{"file", part.file}, {"offset", part.offset}, {"length", part.length},
                       {"rows", {part.row_begin, part.row_end}}});
    }
    json t = {{"name", p.out.name},
              {"component", p.out.component},
              {"shape", p.out.ne},
              {"format", std::string(TensorTypeName(p.out.type))},
              {"source_format", std::string(TensorTypeName(p.out.source_type))},
              {"file", p.out.parts.empty() ? "" : p.out.parts[0].file},
              {"offset", p.out.parts.empty() ? 0 : p.out.parts[0].offset},
              {"length", p.out.nbytes},
              {"data_offset", p.out.data_offset},
              {"row_bytes", p.row_bytes},
              {"sha256", p.out.sha256},
              {"split", p.out.parts.size() > 1},
              {"parts", parts}};
    jt.push_back(std::move(t));
  }
  m["tensors"] = jt;

  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  const std::string tmp = mpath + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return IoError(tmp + ": cannot create: " + std::strerror(errno));
  const std::string text = m.dump(1) + "\n";
  const bool ok = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  if (std::fclose(f) != 0 || !ok) {
    std::remove(tmp.c_str());
    return IoError(tmp + ": write failed: " + std::strerror(errno));
  }
  if (std::rename(tmp.c_str(), mpath.c_str()) != 0) {
    return IoError(mpath + ": cannot rename " + tmp + " into place: " + std::strerror(errno));
  }
  return sum;
}

Status WritePackage(const GgufFile& src, const std::string& dir, const PackageOptions& options) {
  auto r = WritePackageWithSummary(src, dir, options);
  return r.ok() ? Status::Ok() : r.status();
}

}  // namespace tabfit
