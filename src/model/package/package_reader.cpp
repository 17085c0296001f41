// Opening tabfit packages: manifest validation and the chunked ByteSource.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "model/package/package.h"
#include "model/package/sha256.h"

namespace tabfit {

std::string TensorComponent(const std::string& tensor) {
  if (tensor.rfind("token_embd", 0) == 0) return "embeddings";
  if (tensor.rfind("output_norm", 0) == 0) return "output_norm";
  if (tensor.rfind("output.", 0) == 0 || tensor == "output") return "lm_head";
  if (tensor.rfind("blk.", 0) == 0) {
    size_t dot = tensor.find('.', 4);
    std::string idx = tensor.substr(4, dot == std::string::npos ? std::string::npos : dot - 4);
    if (!idx.empty() && idx.size() < 9 && std::all_of(idx.begin(), idx.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return "layers." + idx;
    }
  }
  return "other";
}

int64_t ComponentPriority(const std::string& c) {
  if (c == "embeddings") return 0;
  if (c == "other") return 1;
  if (c == "layers.0") return 2;
  if (c == "output_norm") return 3;
  if (c == "lm_head") return 4;
  if (c.rfind("layers.", 0) == 0 && c.size() > 7 && c.size() < 16) {
    int64_t n = 0;
    for (size_t i = 7; i < c.size(); ++i) {
      if (c[i] < '0' || c[i] > '9') return INT64_MAX;
      n = n * 10 + (c[i] - '0');
    }
    return 4 + n;  // layers.1 -> 5, ...
  }
  return INT64_MAX;
}

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const char* kRemedy = "re-download the package, or re-create it with `tabfit convert MODEL.gguf DIR`";

struct Chunk {
  std::string file;  // as in the manifest
  std::string path;  // dir/file
  uint64_t offset = 0;
  uint64_t size = 0;
  std::string sha256;
  std::mutex mu;
  std::atomic<int> state{0};  // 0 unverified, 1 verified, 2 bad
  Status error;
  int fd = -1;
};

Status PreadAll(int fd, uint64_t offset, void* dst, size_t n, const std::string& path, uint64_t expected_size) {
  uint8_t* p = static_cast<uint8_t*>(dst);
  while (n > 0) {
    ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return IoError(path + ": read of " + std::to_string(n) + " bytes at offset " + std::to_string(offset) +
                     " failed: " + std::strerror(errno));
    }
    if (r == 0) {
      return CorruptData(path + ": chunk ends at byte " + std::to_string(offset) + " but the manifest says it has " +
                         std::to_string(expected_size) + " bytes (truncated); " + kRemedy);
    }
    p += r;
    n -= static_cast<size_t>(r);
    offset += static_cast<uint64_t>(r);
  }
  return Status::Ok();
}

class PackageSource final : public ByteSource {
 public:
  PackageSource(std::string dir, std::vector<std::unique_ptr<Chunk>> chunks, uint64_t size)
      : dir_(std::move(dir)), chunks_(std::move(chunks)), size_(size) {}
  ~PackageSource() override {
    for (auto& c : chunks_) {
      if (c->fd >= 0) ::close(c->fd);
    }
  }
  uint64_t size() const override { return size_; }
  const std::string& name() const override { return dir_; }

  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(dir_, size_, offset, n));
    if (n == 0) return Status::Ok();
    // Last chunk whose offset <= `offset`.
    auto it = std::upper_bound(chunks_.begin(), chunks_.end(), offset,
                               [](uint64_t off, const std::unique_ptr<Chunk>& c) { return off < c->offset; });
    size_t k = static_cast<size_t>(it - chunks_.begin()) - 1;
    uint8_t* out = static_cast<uint8_t*>(dst);
    while (n > 0) {
      Chunk& c = *chunks_[k];
      const uint64_t in = offset - c.offset;
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, c.size - in));
      if (take > 0) {
        TF_RETURN_IF_ERROR(Verify(c));
        TF_RETURN_IF_ERROR(PreadAll(c.fd, in, out, take, c.path, c.size));
      }
      out += take;
      offset += take;
      n -= take;
      ++k;
    }
    return Status::Ok();
  }

  // Hashes chunk `c` once; afterwards returns the cached verdict.
  Status Verify(Chunk& c) const {
    int s = c.state.load(std::memory_order_acquire);
    if (s == 1) return Status::Ok();
    std::lock_guard<std::mutex> lock(c.mu);
    s = c.state.load(std::memory_order_relaxed);
    if (s == 1) return Status::Ok();
    if (s == 2) return c.error;
    Status st = HashChunk(c);
    if (!st.ok()) {
      c.error = st;
      c.state.store(2, std::memory_order_release);
      return st;
    }
    c.state.store(1, std::memory_order_release);
    return Status::Ok();
  }

  Status VerifyAll() const {
    for (auto& c : chunks_) TF_RETURN_IF_ERROR(Verify(*c));
    return Status::Ok();
  }

 private:
  Status HashChunk(Chunk& c) const {
    if (c.fd < 0) {
      c.fd = ::open(c.path.c_str(), O_RDONLY | O_CLOEXEC);
      if (c.fd < 0) {
        return errno == ENOENT ? NotFound(c.path + ": chunk file is missing; " + kRemedy)
                               : IoError(c.path + ": cannot open chunk: " + std::strerror(errno));
      }
    }
    struct stat stbuf;
    if (::fstat(c.fd, &stbuf) != 0) return IoError(c.path + ": fstat failed: " + std::strerror(errno));
    if (static_cast<uint64_t>(stbuf.st_size) != c.size) {
      return CorruptData(c.path + ": chunk is " + std::to_string(stbuf.st_size) + " bytes but the manifest says " +
                         std::to_string(c.size) + (static_cast<uint64_t>(stbuf.st_size) < c.size ? " (truncated)" : "") +
                         "; " + kRemedy);
    }
    Sha256 h;
    std::vector<uint8_t> buf(1 << 20);
    for (uint64_t off = 0; off < c.size;) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), c.size - off));
      TF_RETURN_IF_ERROR(PreadAll(c.fd, off, buf.data(), n, c.path, c.size));
      h.Update(buf.data(), n);
      off += n;
    }
    std::string actual = h.FinalHex();
    if (actual != c.sha256) {
      return CorruptData(c.path + ": chunk checksum mismatch: manifest sha256 " + c.sha256 + ", actual " + actual +
                         " (the file is corrupt or from another conversion); " + kRemedy);
    }
    return Status::Ok();
  }

  std::string dir_;
  std::vector<std::unique_ptr<Chunk>> chunks_;
  uint64_t size_;
};

bool IsHex64(const std::string& s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

bool IsPlainFileName(const std::string& s) {
  return !s.empty() && s.size() < 256 && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

Result<std::unique_ptr<PackageSource>> OpenPackageSource(const std::string& dir) {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(mpath, std::ios::binary);
  if (!in) {
    return NotFound(mpath + ": cannot open the package manifest; a tabfit package is a directory with manifest.json "
                    "(create one with `tabfit convert MODEL.gguf DIR`)");
  }
  std::stringstream ss;
  ss << in.rdbuf();
  json m = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) {
    return CorruptData(mpath + ": not valid JSON; " + kRemedy);
  }
  auto bad = [&](const std::string& what) { return CorruptData(mpath + ": " + what + "; " + kRemedy); };
  if (!m.contains("format") || !m["format"].is_string() || m["format"].get<std::string>() != kPackageFormatName) {
    return bad(std::string("\"format\" must be \"") + kPackageFormatName + "\"");
  }
  if (!m.contains("version") || !m["version"].is_number_integer()) return bad("\"version\" is missing or not an integer");
  int64_t version = m["version"].get<int64_t>();
  if (version < 1) return bad("\"version\" " + std::to_string(version) + " is invalid");
  if (version > kPackageFormatVersion) {
    return Unsupported(mpath + ": package format version " + std::to_string(version) + " is newer than this tabfit (" +
                       std::to_string(kPackageFormatVersion) + "); update tabfit or re-convert the model");
  }
  if (!m.contains("chunks") || !m["chunks"].is_array() || m["chunks"].empty()) return bad("\"chunks\" must be a non-empty array");
  std::vector<std::unique_ptr<Chunk>> chunks;
  uint64_t pos = 0;
  for (size_t i = 0; i < m["chunks"].size(); ++i) {
    const json& j = m["chunks"][i];
    const std::string where = "chunks[" + std::to_string(i) + "]";
    if (!j.is_object()) return bad(where + " is not an object");
    if (!j.contains("file") || !j["file"].is_string() || !IsPlainFileName(j["file"].get<std::string>())) {
      return bad(where + ".file must be a plain file name inside the package directory");
    }
    if (!j.contains("size") || !j["size"].is_number_unsigned()) return bad(where + ".size must be a non-negative integer");
    if (!j.contains("offset") || !j["offset"].is_number_unsigned()) return bad(where + ".offset must be a non-negative integer");
    if (!j.contains("sha256") || !j["sha256"].is_string() || !IsHex64(j["sha256"].get<std::string>())) {
      return bad(where + ".sha256 must be 64 lowercase hex digits");
    }
    auto c = std::make_unique<Chunk>();
    c->file = j["file"].get<std::string>();
    c->path = (fs::path(dir) / c->file).string();
    c->offset = j["offset"].get<uint64_t>();
    c->size = j["size"].get<uint64_t>();
    c->sha256 = j["sha256"].get<std::string>();
    if (c->offset != pos) {
      return bad(where + " (" + c->file + ") starts at " + std::to_string(c->offset) + " but the chunks before it end at " +
                 std::to_string(pos) + " (chunks must be contiguous)");
    }
    if (c->size == 0) return bad(where + " (" + c->file + ") is empty");
    if (c->size > kMaxChunkLimit) return bad(where + " (" + c->file + ") is larger than 2 GiB");
    if (pos + c->size < pos) return bad("chunk sizes overflow");
    pos += c->size;
    std::error_code ec;
    auto st = fs::status(c->path, ec);
    if (ec || !fs::exists(st)) return NotFound(c->path + ": chunk file is missing; " + kRemedy);
    if (!fs::is_regular_file(st)) return CorruptData(c->path + ": chunk is not a regular file; " + kRemedy);
    uint64_t actual = fs::file_size(c->path, ec);
    if (ec) return IoError(c->path + ": cannot stat chunk: " + ec.message());
    if (actual != c->size) {
      return CorruptData(c->path + ": chunk is " + std::to_string(actual) + " bytes but the manifest says " +
                         std::to_string(c->size) + (actual < c->size ? " (truncated)" : "") + "; " + kRemedy);
    }
    chunks.push_back(std::move(c));
  }
  if (m.contains("gguf") && m["gguf"].is_object() && m["gguf"].contains("size") && m["gguf"]["size"].is_number_unsigned() &&
      m["gguf"]["size"].get<uint64_t>() != pos) {
    return bad("gguf.size " + std::to_string(m["gguf"]["size"].get<uint64_t>()) + " differs from the sum of the chunk sizes " +
               std::to_string(pos));
  }
  return std::make_unique<PackageSource>(dir, std::move(chunks), pos);
}

}  // namespace

bool IsPackageDir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::is_regular_file(fs::path(path) / "manifest.json", ec);
}

Result<std::unique_ptr<ByteSource>> OpenPackage(const std::string& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return NotFound(dir + ": not a directory; a tabfit package is a directory with manifest.json");
  TF_ASSIGN_OR_RETURN(std::unique_ptr<PackageSource> src, OpenPackageSource(dir));
  return std::unique_ptr<ByteSource>(std::move(src));
}

Result<std::unique_ptr<ByteSource>> OpenModelSource(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!IsPackageDir(path)) {
      return NotFound(path + ": is a directory without manifest.json; pass a GGUF file or a tabfit package directory "
                      "(made by `tabfit convert MODEL.gguf DIR`)");
    }
    return OpenPackage(path);
  }
  return OpenFileSource(path);
}

Result<PackageGroups> ReadPackageGroups(const std::string& dir) {
  const std::string mpath = (fs::path(dir) / "manifest.json").string();
  std::ifstream in(mpath, std::ios::binary);
  if (!in) return NotFound(mpath + ": cannot open the package manifest");
  std::stringstream ss;
  ss << in.rdbuf();
  json m = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || !m.is_object()) return CorruptData(mpath + ": not valid JSON; " + kRemedy);
  PackageGroups out;
  if (!m.contains("groups")) return out;
  const json& g = m["groups"];
  auto bad = [&](const std::string& what) { return CorruptData(mpath + ": groups: " + what + "; " + kRemedy); };
  if (!g.is_object()) return bad("must be an object of group name -> array of component names");
  for (auto it = g.begin(); it != g.end(); ++it) {
    if (it.key().empty()) return bad("a group has an empty name");
    if (!it.value().is_array() || it.value().empty()) return bad("\"" + it.key() + "\" must be a non-empty array");
    std::vector<std::string> members;
    for (const json& c : it.value()) {
      if (!c.is_string() || c.get<std::string>().empty()) return bad("\"" + it.key() + "\" holds a non-string entry");
      members.push_back(c.get<std::string>());
    }
    out[it.key()] = std::move(members);
  }
  return out;
}

Status VerifyPackage(const std::string& dir) {
  TF_ASSIGN_OR_RETURN(std::unique_ptr<PackageSource> src, OpenPackageSource(dir));
  return src->VerifyAll();
}

}  // namespace tabfit
