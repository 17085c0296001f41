#include "cli/serve.h"

#include <httplib.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;

namespace tabfit {

namespace {

constexpr size_t kChunk = 1 << 20;  // bytes per read when streaming a file

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Result<std::string> CanonicalDir(const std::string& dir, const char* what) {
  std::error_code ec;
  fs::path p = fs::canonical(dir, ec);
  if (ec) return NotFound(std::string(what) + " '" + dir + "' does not exist (" + ec.message() + ")");
  if (!fs::is_directory(p, ec)) return InvalidArgument(std::string(what) + " '" + dir + "' is not a directory");
  return p.string();
}

bool IsUnder(const std::string& canonical_root, const std::string& canonical_path) {
  if (canonical_path == canonical_root) return true;
  std::string prefix = canonical_root;
  if (prefix.empty() || prefix.back() != '/') prefix += '/';
  return canonical_path.compare(0, prefix.size(), prefix) == 0;
}

void SetText(httplib::Response& res, int status, const std::string& text) {
  res.status = status;
  res.set_content(text + "\n", "text/plain; charset=utf-8");
}

// Streams [file] from disk; httplib slices it for Range requests (206).
void ServeFile(const std::string& path, uint64_t size, httplib::Response& res) {
  auto file = std::make_shared<std::ifstream>(path, std::ios::binary);
  if (!*file) {
    SetText(res, 500, "cannot open file");
    return;
  }
  res.set_header("Accept-Ranges", "bytes");
  res.set_content_provider(
      static_cast<size_t>(size), MimeTypeFor(path),
      [file, size](size_t offset, size_t length, httplib::DataSink& sink) {
        if (offset >= size) return false;
        length = std::min<size_t>(length, size - offset);
        std::vector<char> buf(std::min(length, kChunk));
        file->clear();
        file->seekg(static_cast<std::streamoff>(offset));
        file->read(buf.data(), static_cast<std::streamsize>(buf.size()));
        std::streamsize got = file->gcount();
        if (got <= 0) return false;  // file shrank underneath us: abort the response
        return sink.write(buf.data(), static_cast<size_t>(got));
      });
}

// Parses "bytes=a-b" (single range) against `size`. Returns false if the header
// is not satisfiable (416); multi-range and unparsable headers are left to httplib.
bool RangeSatisfiable(const std::string& header, uint64_t size) {
  if (header.rfind("bytes=", 0) != 0) return true;
  std::string spec = header.substr(6);
  if (spec.find(',') != std::string::npos) return true;
  auto dash = spec.find('-');
  if (dash == std::string::npos) return true;
  std::string a = spec.substr(0, dash), b = spec.substr(dash + 1);
  try {
    if (a.empty()) {  // suffix range "-N": the last N bytes; N == 0 is unsatisfiable
      return !b.empty() && std::stoull(b) > 0 && size > 0;
    }
    uint64_t first = std::stoull(a);
    if (first >= size) return false;
    if (!b.empty() && std::stoull(b) < first) return false;
  } catch (...) {
    return true;  // let httplib answer malformed ranges
  }
  return true;
}

nlohmann::json ListModels(const std::string& root) {
  nlohmann::json out = nlohmann::json::array();
  if (root.empty()) return out;
  std::error_code ec;
  std::vector<fs::directory_entry> entries;
  for (auto it = fs::directory_iterator(root, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
    entries.push_back(*it);
  std::sort(entries.begin(), entries.end(),
            [](const auto& x, const auto& y) { return x.path().filename() < y.path().filename(); });
  for (const auto& e : entries) {
    std::string name = e.path().filename().string();
    if (name.empty() || name[0] == '.') continue;
    std::error_code ec2;
    fs::path real = fs::canonical(e.path(), ec2);
    if (ec2 || !IsUnder(root, real.string())) continue;
    if (fs::is_regular_file(real, ec2) && Lower(real.extension().string()) == ".gguf") {
      out.push_back({{"name", name}, {"kind", "gguf"}, {"size", fs::file_size(real, ec2)}, {"url", "/models/" + name}});
    } else if (fs::is_directory(real, ec2)) {
      // A tabfit package: a folder with a manifest.json.
      fs::path manifest = real / "manifest.json";
      if (fs::is_regular_file(manifest, ec2)) {
        uint64_t total = 0;
        for (auto it = fs::recursive_directory_iterator(real, ec2); !ec2 && it != fs::recursive_directory_iterator();
             it.increment(ec2))
          if (it->is_regular_file(ec2)) total += it->file_size(ec2);
        out.push_back({{"name", name},
                       {"kind", "package"},
                       {"size", total},
                       {"url", "/models/" + name + "/"},
                       {"manifest", "/models/" + name + "/manifest.json"}});
      }
    }
  }
  return out;
}

}  // namespace

std::string MimeTypeFor(const std::string& path) {
  std::string ext = Lower(fs::path(path).extension().string());
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".htm", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".cjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".wasm", "application/wasm"},
      {".gguf", "application/octet-stream"},
      {".bin", "application/octet-stream"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".jpg", "image/jpeg"},
      {".jpeg", "image/jpeg"},
      {".ico", "image/x-icon"},
      {".txt", "text/plain; charset=utf-8"},
      {".md", "text/markdown; charset=utf-8"},
  };
  for (const auto& [e, mime] : kTypes)
    if (ext == e) return mime;
  return "application/octet-stream";
}

Result<std::string> ResolveUnderRoot(const std::string& canonical_root, const std::string& url_path) {
  if (url_path.find('\0') != std::string::npos || url_path.find('\\') != std::string::npos)
    return NotFound("path contains a NUL byte or backslash");
  fs::path rel;
  size_t i = 0;
  while (i <= url_path.size()) {
    size_t j = url_path.find('/', i);
    if (j == std::string::npos) j = url_path.size();
    std::string seg = url_path.substr(i, j - i);
    i = j + 1;
    if (seg.empty() || seg == ".") continue;
    if (seg == "..") return NotFound("'..' is not allowed in paths");
    if (seg[0] == '.') return NotFound("dot-files are not served");
    rel /= seg;
  }
  fs::path full = fs::path(canonical_root) / rel;
  std::error_code ec;
  fs::path real = fs::canonical(full, ec);  // resolves every symlink; fails if absent
  if (ec) return NotFound("no such file");
  if (!IsUnder(canonical_root, real.string())) return NotFound("resolves outside the served folder");
  return real.string();
}

HttpServer::HttpServer(const ServeOptions& options) : options_(options), server_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { Stop(); }

Result<std::unique_ptr<HttpServer>> HttpServer::Create(const ServeOptions& options) {
  if (options.port < 0 || options.port > 65535)
    return InvalidArgument("port " + std::to_string(options.port) + " is out of range (0..65535; 0 = any free port)");
  std::unique_ptr<HttpServer> s(new HttpServer(options));
  TF_ASSIGN_OR_RETURN(s->web_root_, CanonicalDir(options.web_root, "web root"));
  if (!options.models_dir.empty()) {
    TF_ASSIGN_OR_RETURN(s->models_root_, CanonicalDir(options.models_dir, "models folder"));
  }
  if (!s->server_->is_valid()) return Internal("httplib server could not be created");
  // Range requests are many small exchanges: without TCP_NODELAY each one waits
  // for Nagle + delayed ACK (~28-40 ms on Linux loopback).
  s->server_->set_tcp_nodelay(true);
  s->Install();
  return s;
}

void HttpServer::Install() {
  httplib::Server& svr = *server_;
  // httplib's default sets SO_REUSEPORT, which lets a second `tabfit serve`
  // silently share the port with the first; SO_REUSEADDR alone only allows a
  // quick restart after TIME_WAIT.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, reinterpret_cast<const void*>(&yes), sizeof(yes));
  });
  svr.set_default_headers({
      {"Cross-Origin-Opener-Policy", "same-origin"},
      {"Cross-Origin-Embedder-Policy", "require-corp"},
      {"Cross-Origin-Resource-Policy", "same-origin"},
      {"X-Content-Type-Options", "nosniff"},
      {"Cache-Control", "no-cache"},
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.body.empty()) {
      const char* what = res.status == 404 ? "not found" : res.status == 416 ? "range not satisfiable" : "error";
      res.set_content(std::to_string(res.status) + " " + what + "\n", "text/plain; charset=utf-8");
    }
  });
  if (options_.log_requests) {
    svr.set_logger([](const httplib::Request& req, const httplib::Response& res) {
      std::fprintf(stderr, "%s %s %d\n", req.method.c_str(), req.path.c_str(), res.status);
    });
  }

  svr.Get("/api/models", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(ListModels(models_root_).dump(2), "application/json");
  });

  auto serve_from = [](const std::string& root, const std::string& rel, const httplib::Request& req,
                       httplib::Response& res) {
    auto resolved = ResolveUnderRoot(root, rel);
    if (!resolved.ok()) {
      SetText(res, 404, "404 not found");
      return;
    }
    std::string path = *resolved;
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      if (req.path.empty() || req.path.back() != '/') {
        res.set_redirect(req.path + "/", 301);
        return;
      }
      auto index = ResolveUnderRoot(root, rel + "/index.html");
      if (!index.ok()) {
        SetText(res, 404, "404 not found (folder without index.html)");
        return;
      }
      path = *index;
    }
    if (!fs::is_regular_file(path, ec)) {
      SetText(res, 404, "404 not found");
      return;
    }
    uint64_t size = fs::file_size(path, ec);
    if (ec) {
      SetText(res, 500, "cannot stat file");
      return;
    }
    if (req.has_header("Range") && !RangeSatisfiable(req.get_header_value("Range"), size)) {
      res.status = 416;
      res.set_header("Content-Range", "bytes */" + std::to_string(size));
      return;
    }
    ServeFile(path, size, res);
  };

  svr.Get(R"(/models/(.*))", [this, serve_from](const httplib::Request& req, httplib::Response& res) {
    if (models_root_.empty()) {
      SetText(res, 404, "404 not found (no models folder configured)");
      return;
    }
    serve_from(models_root_, req.matches[1].str(), req, res);
  });

  svr.Get(R"(/(.*))", [this, serve_from](const httplib::Request& req, httplib::Response& res) {
    std::string rel = req.matches[1].str();
    if (rel.empty() && !fs::exists(fs::path(web_root_) / "index.html")) {
      res.set_redirect("/demo/", 302);
      return;
    }
    serve_from(web_root_, rel, req, res);
  });
}

Status HttpServer::Bind() {
  if (options_.port == 0) {
    int p = server_->bind_to_any_port(options_.host);
    if (p <= 0) return IoError("cannot bind " + options_.host + " on any port (is the host address valid?)");
    port_ = p;
  } else {
    if (!server_->bind_to_port(options_.host, options_.port))
      return IoError("cannot bind " + options_.host + ":" + std::to_string(options_.port) +
                     " (in use, or not allowed); pick another with --port, or --port 0 for any free port");
    port_ = options_.port;
  }
  return Status::Ok();
}

Status HttpServer::Listen() {
  if (port_ == 0) return Internal("HttpServer::Listen called before a successful Bind");
  if (stop_requested_) return Status::Ok();
  if (!server_->listen_after_bind())
    return IoError("serving on " + options_.host + ":" + std::to_string(port_) + " stopped with an error");
  return Status::Ok();
}

bool HttpServer::running() const { return server_ && server_->is_running(); }

void HttpServer::Stop() {
  stop_requested_ = true;
  if (server_) server_->stop();
}

Status RunServe(const ServeOptions& options, const std::function<void(int port)>& on_ready) {
  TF_ASSIGN_OR_RETURN(auto server, HttpServer::Create(options));
  TF_RETURN_IF_ERROR(server->Bind());
  if (on_ready) on_ready(server->port());
  return server->Listen();
}

}  // namespace tabfit
