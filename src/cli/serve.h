// tabfit cli: `tabfit serve` — a static HTTP server for the demo page, the JS
// package and model files, with the headers a browser needs for tabfit:
//
//  - every response: Cross-Origin-Opener-Policy: same-origin,
//    Cross-Origin-Embedder-Policy: require-corp, Cross-Origin-Resource-Policy:
//    same-origin (so the page is crossOriginIsolated: SharedArrayBuffer and
//    wasm threads work);
//  - MIME types that browsers insist on (.wasm application/wasm, .js/.mjs
//    text/javascript, .json application/json, .gguf application/octet-stream);
//  - HTTP Range requests on every file (206 + Content-Range; 416 when the
//    range lies outside the file), so the loader can fetch a GGUF in pieces;
//  - no way out of the roots: ".." segments (also when sent as %2e%2e),
//    dot-files, NUL bytes and symlinks that resolve outside a root get 404/400.
//
// URL layout:
//   /                -> redirect to /demo/ (unless web_root has an index.html)
//   /api/models      -> JSON list of the models in models_dir
//   /models/<file>   -> models_dir/<file>
//   /<path>          -> web_root/<path> (demo/, src/, dist/ ...); a directory
//                       serves its index.html
//
// Thread-safety: HttpServer's Stop() may be called from any thread; the rest
// from the thread that created it. Files are streamed in 1 MiB pieces, never
// loaded whole.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "core/status.h"

namespace httplib {
class Server;
}

namespace tabfit {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;            // 0 = an ephemeral port (see HttpServer::port())
  std::string web_root = "web";       // demo page, JS package, dist
  std::string models_dir = "models";  // GGUF files / tabfit packages ("" = none)
  bool log_requests = true;   // one line per request on stderr
};

class HttpServer {
 public:
  // Checks that the roots exist and are directories; does not bind yet.
  static Result<std::unique_ptr<HttpServer>> Create(const ServeOptions& options);
  ~HttpServer();

  // Binds host:port (port 0 picks a free one). Fails with IoError naming the
  // address when it is taken or not allowed.
  Status Bind();
  // Port bound by Bind().
  int port() const { return port_; }
  // Serves until Stop(). Bind() must have succeeded.
  Status Listen();
  // True while Listen() is accepting connections.
  bool running() const;
  // Makes a running Listen() return; safe from any thread. A Stop() issued
  // before Listen() has begun makes that Listen() return at once, except in
  // the instant between its check and the start of accepting: wait for
  // running() when that matters.
  void Stop();

 private:
  explicit HttpServer(const ServeOptions& options);
  void Install();
  ServeOptions options_;
  std::string web_root_;     // canonical
  std::string models_root_;  // canonical, "" if none
  int port_ = 0;
  std::atomic<bool> stop_requested_{false};
  std::unique_ptr<httplib::Server> server_;
};

// Creates, binds and serves until the process is stopped; `on_ready(port)` is
// called once the socket is bound (before serving).
Status RunServe(const ServeOptions& options, const std::function<void(int port)>& on_ready = nullptr);

// MIME type for a file name by extension ("application/octet-stream" if unknown).
std::string MimeTypeFor(const std::string& path);

// Maps a decoded URL path under a root to a file system path, or fails:
// NotFound for ".." / dot-file segments, NUL or backslash, or a file whose real
// path (symlinks resolved) lies outside `canonical_root`. Exposed for tests.
Result<std::string> ResolveUnderRoot(const std::string& canonical_root, const std::string& url_path);

}  // namespace tabfit
