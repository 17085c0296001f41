#include "loader/http_source.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstring>
#include <exception>
#include <mutex>
#include <thread>

#if TABFIT_HAVE_PACKAGE
#include "model/package/package.h"
#endif

#if TABFIT_HAVE_HTTPLIB
#include <httplib.h>
#endif

namespace tabfit {

namespace {

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

bool StartsWithNoCase(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i) {
    if (Lower(s[i]) != Lower(prefix[i])) return false;
  }
  return true;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Non-empty decimal digits only, no sign, no overflow.
bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

}  // namespace

bool IsHttpUrl(std::string_view s) { return StartsWithNoCase(s, "http://") || StartsWithNoCase(s, "https://"); }

namespace http_internal {

bool ParseContentRange(std::string_view v, uint64_t* first, uint64_t* last, uint64_t* total, bool* unsatisfied) {
  *unsatisfied = false;
  v = Trim(v);
  if (!StartsWithNoCase(v, "bytes")) return false;
  v.remove_prefix(5);
  if (v.empty() || (v.front() != ' ' && v.front() != '\t')) return false;
  v = Trim(v);
  size_t slash = v.find('/');
  if (slash == std::string_view::npos) return false;
  std::string_view range = Trim(v.substr(0, slash));
  if (!ParseU64(Trim(v.substr(slash + 1)), total)) return false;  // "/*" (unknown total) is refused
  if (range == "*") {
    *unsatisfied = true;
    return true;
  }
  size_t dash = range.find('-');
  if (dash == std::string_view::npos) return false;
  if (!ParseU64(Trim(range.substr(0, dash)), first) || !ParseU64(Trim(range.substr(dash + 1)), last)) return false;
  return *first <= *last && *last < *total;
}

}  // namespace http_internal

#if TABFIT_HAVE_HTTPLIB
namespace {

struct ParsedUrl {
  bool https = false;
  std::string host;  // without IPv6 brackets
  int port = 0;
  std::string path;  // starts with '/', may carry "?query"; no fragment
};

Status ParseUrl(const std::string& url, ParsedUrl* out) {
  auto bad = [&](const std::string& why) { return InvalidArgument(url + ": not a usable URL: " + why); };
  for (char c : url) {
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      return bad("it contains a space or control character; percent-encode it");
    }
  }
  std::string_view rest(url);
  if (StartsWithNoCase(rest, "https://")) {
    out->https = true;
    rest.remove_prefix(8);
  } else if (StartsWithNoCase(rest, "http://")) {
    rest.remove_prefix(7);
  } else {
    return bad("expected http:// or https://");
  }
  size_t end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, end);
  std::string_view tail = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  if (authority.find('@') != std::string_view::npos) {
    return bad("credentials in the URL are not supported; pass an Authorization header in HttpSourceOptions::headers");
  }
  std::string_view host = authority, port;
  if (!authority.empty() && authority.front() == '[') {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    host = authority.substr(1, close - 1);
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected characters after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return bad("empty port");
    }
  } else if (size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return bad("empty port");
  }
  if (host.empty()) return bad("no host name");
  out->host = std::string(host);
  out->port = out->https ? 443 : 80;
  if (!port.empty()) {
    uint64_t p = 0;
    if (!ParseU64(port, &p) || p == 0 || p > 65535) return bad("port '" + std::string(port) + "' is not 1-65535");
    out->port = static_cast<int>(p);
  }
  tail = tail.substr(0, tail.find('#'));
  if (tail.empty()) {
    out->path = "/";
  } else if (tail.front() == '?') {
    out->path = "/" + std::string(tail);
  } else {
    out->path = std::string(tail);
  }
  return Status::Ok();
}

std::string RangeText(uint64_t first, uint64_t last) {
  return "bytes " + std::to_string(first) + "-" + std::to_string(last);
}

std::string StatusText(int status, const std::string& reason) {
  std::string s = "HTTP " + std::to_string(status);
  if (!reason.empty()) s += " " + reason;
  return s;
}

bool TransientStatus(int status) { return status == 429 || (status >= 500 && status <= 599); }

bool TransientError(httplib::Error e) {
  switch (e) {
    case httplib::Error::Unknown:
    case httplib::Error::Connection:
    case httplib::Error::Read:
    case httplib::Error::Write:
    case httplib::Error::ConnectionTimeout:
      return true;
    default:
      return false;
  }
}

// httplib 0.11's to_string(Error) is the enum's name; say what it means too.
std::string ErrorText(httplib::Error e) {
  const char* what = "the request failed";
  switch (e) {
    case httplib::Error::Connection: what = "could not connect to the server"; break;
    case httplib::Error::ConnectionTimeout: what = "timed out connecting to the server"; break;
    case httplib::Error::Read: what = "reading the answer failed (connection dropped or read timeout)"; break;
    case httplib::Error::Write: what = "sending the request failed (connection dropped or write timeout)"; break;
    case httplib::Error::ExceedRedirectCount: what = "too many redirects"; break;
    case httplib::Error::SSLConnection: what = "the TLS handshake failed"; break;
    case httplib::Error::SSLLoadingCerts: what = "could not load the CA certificates (see ca_cert_path)"; break;
    case httplib::Error::SSLServerVerification: what = "the server's TLS certificate could not be verified"; break;
    case httplib::Error::Compression: what = "decoding a compressed answer failed"; break;
    default: break;
  }
  return std::string(what) + " (httplib error " + httplib::to_string(e) + ")";
}

constexpr size_t kMaxIdleClients = 16;

class HttpSource final : public ByteSource {
 public:
  HttpSource(std::string url, ParsedUrl parsed, const HttpSourceOptions& opts)
      : url_(std::move(url)), parsed_(std::move(parsed)), opts_(opts) {
    headers_.emplace("Accept-Encoding", "identity");
    for (const auto& [k, v] : opts_.headers) headers_.emplace(k, v);
    if (opts_.max_request_bytes == 0) opts_.max_request_bytes = 1;
    if (opts_.max_retries < 0) opts_.max_retries = 0;
    if (opts_.timeout_seconds <= 0) opts_.timeout_seconds = 1;
  }

  // The bytes=0-0 probe: learns size_ and that ranges are answered.
  Status Probe() {
    uint8_t byte = 0;
    uint64_t total = 0;
    TF_RETURN_IF_ERROR(Fetch(0, 0, &byte, /*probe=*/true, &total));
    size_ = total;
    return Status::Ok();
  }

  uint64_t size() const override { return size_; }
  const std::string& name() const override { return url_; }

  Status ReadAt(uint64_t offset, void* dst, size_t n) const override {
    TF_RETURN_IF_ERROR(CheckReadRange(url_, size_, offset, n));
    auto* out = static_cast<uint8_t*>(dst);
    uint64_t done = 0;
    while (done < n) {
      uint64_t len = std::min<uint64_t>(n - done, opts_.max_request_bytes);
      uint64_t first = offset + done;
      TF_RETURN_IF_ERROR(Fetch(first, first + len - 1, out + done, /*probe=*/false, nullptr));
      done += len;
    }
    return Status::Ok();
  }

 private:
  enum class Verdict { kContinue, kEmptyFile, kReject };

  struct Exchange {
    bool probe = false;
    uint64_t first = 0, last = 0;
    uint64_t total = 0;  // from Content-Range
    uint64_t received = 0;
    bool overflow = false;
    bool empty_file = false;
    bool transient = false;
    Status error;
  };

  Result<std::unique_ptr<httplib::ClientImpl>> Acquire() const {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!idle_.empty()) {
        auto c = std::move(idle_.back());
        idle_.pop_back();
        return c;
      }
    }
    std::unique_ptr<httplib::ClientImpl> c;
    if (parsed_.https) {
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      auto ssl = std::make_unique<httplib::SSLClient>(parsed_.host, parsed_.port);
      if (!opts_.ca_cert_path.empty()) ssl->set_ca_cert_path(opts_.ca_cert_path);
      ssl->enable_server_certificate_verification(true);
      c = std::move(ssl);
#else
      return Unsupported(url_ + ": https:// needs TLS, and this build's HTTP library has none");
#endif
    } else {
      c = std::make_unique<httplib::ClientImpl>(parsed_.host, parsed_.port);
    }
    if (!c->is_valid()) return IoError(url_ + ": could not set up an HTTP client (TLS context failed?)");
    c->set_connection_timeout(opts_.timeout_seconds);
    c->set_read_timeout(opts_.timeout_seconds);
    c->set_write_timeout(opts_.timeout_seconds);
    c->set_keep_alive(true);
    c->set_tcp_nodelay(true);
    c->set_follow_location(true);
    c->set_url_encode(false);  // the URL is sent as given (signed query strings stay intact)
    c->set_compress(false);
    c->set_decompress(false);
    return c;
  }

  void Release(std::unique_ptr<httplib::ClientImpl> c) const {
    std::lock_guard<std::mutex> lock(mu_);
    if (idle_.size() < kMaxIdleClients) idle_.push_back(std::move(c));
  }

  std::string Where(const Exchange& ex) const { return url_ + ": " + RangeText(ex.first, ex.last); }

  // Judges the status line and headers (before the body is read).
  Verdict Judge(const httplib::Response& r, Exchange* ex) const {
    const std::string where = Where(*ex);
    const uint64_t want = ex->last - ex->first + 1;
    auto reject = [&](Status s, bool transient = false) {
      ex->error = std::move(s);
      ex->transient = transient;
      return Verdict::kReject;
    };
    const std::string cr = r.get_header_value("Content-Range");
    uint64_t first = 0, last = 0, total = 0;
    bool unsatisfied = false;
    const bool cr_ok = !cr.empty() && http_internal::ParseContentRange(cr, &first, &last, &total, &unsatisfied);
    switch (r.status) {
      case 206:
        break;
      case 200:
        return reject(Unsupported(where + ": the server answered " + StatusText(r.status, r.reason) +
                                  " (the whole file) instead of 206 Partial Content; the server must answer HTTP "
                                  "Range requests (Accept-Ranges: bytes) for the model to be read in place"));
      case 404:
      case 410:
        return reject(NotFound(where + ": not found on the server (" + std::to_string(r.status) + "); check the URL"));
      case 416: {
        if (ex->probe && cr_ok && unsatisfied && total == 0) {
          ex->empty_file = true;  // bytes=0-0 of an empty file
          return Verdict::kEmptyFile;
        }
        std::string now = cr_ok && unsatisfied ? ", the server now says " + std::to_string(total) : "";
        if (ex->probe) {
          return reject(OutOfRange(where + ": server says range not satisfiable (416) for the first byte" +
                                   (now.empty() ? "" : " (" + now.substr(2) + " bytes)") +
                                   "; the server does not answer Range requests usably"));
        }
        return reject(OutOfRange(where + ": server says range not satisfiable (416): the file on the server is shorter "
                                 "than " + std::to_string(ex->last + 1) + " bytes (it was " + std::to_string(size_) +
                                 " bytes when opened" + now + "; it may have changed since it was opened); reload "
                                 "the model"));
      }
      case 401:
      case 403:
        return reject(IoError(where + ": access denied (" + StatusText(r.status, r.reason) +
                              "); pass credentials in HttpSourceOptions::headers (e.g. Authorization)"));
      default:
        if (TransientStatus(r.status)) {
          return reject(IoError(where + ": the server answered " + StatusText(r.status, r.reason)), true);
        }
        return reject(IoError(where + ": unexpected " + StatusText(r.status, r.reason) +
                              ", expected 206 Partial Content"));
    }
    // 206 Partial Content.
    if (!cr_ok || unsatisfied) {
      return reject(CorruptData(where + ": the server answered 206 with Content-Range '" + cr + "', expected '" +
                                RangeText(ex->first, ex->last) + "/SIZE'"));
    }
    if (!ex->probe && total != size_) {
      return reject(CorruptData(where + ": the file on the server changed since it was opened (it was " +
                                std::to_string(size_) + " bytes, the server now says " + std::to_string(total) +
                                "); reload the model"));
    }
    if (first != ex->first || last != ex->last) {
      return reject(CorruptData(where + ": the server answered 206 with Content-Range '" + cr +
                                "', not the range asked for"));
    }
    const std::string enc = r.get_header_value("Content-Encoding");
    if (!enc.empty() && !StartsWithNoCase(Trim(enc), "identity")) {
      return reject(CorruptData(where + ": the server compressed the range (Content-Encoding: " + enc +
                                ") although identity was asked; its bytes are not the file's"));
    }
    const std::string cl = r.get_header_value("Content-Length");
    uint64_t cl_value = 0;
    if (!cl.empty() && (!ParseU64(Trim(cl), &cl_value) || cl_value != want)) {
      return reject(CorruptData(where + ": the server sent Content-Length " + cl + " for a " + std::to_string(want) +
                                "-byte range (HTTP 206); the answer has the wrong length"));
    }
    ex->total = total;
    return Verdict::kContinue;
  }

  // One request. On success dst holds last - first + 1 bytes.
  Status Attempt(Exchange* ex, uint8_t* dst) const {
    const std::string where = Where(*ex);
    const uint64_t want = ex->last - ex->first + 1;
    TF_ASSIGN_OR_RETURN(std::unique_ptr<httplib::ClientImpl> cli, Acquire());
    httplib::Headers headers = headers_;
    headers.emplace("Range", "bytes=" + std::to_string(ex->first) + "-" + std::to_string(ex->last));
    bool judged = false;
    auto on_response = [&](const httplib::Response& r) {
      judged = true;
      return Judge(r, ex) == Verdict::kContinue;
    };
    auto on_body = [&](const char* data, size_t len) {
      if (len > want - ex->received) {
        ex->overflow = true;
        return false;
      }
      std::memcpy(dst + ex->received, data, len);
      ex->received += len;
      return true;
    };
    httplib::Result res = cli->Get(parsed_.path, headers, on_response, on_body);
    if (ex->empty_file) return Status::Ok();
    if (!ex->error.ok()) return ex->error;
    if (ex->overflow) {
      return CorruptData(where + ": the server sent more than the " + std::to_string(want) +
                         " bytes asked for (HTTP 206); the answer has the wrong length");
    }
    if (!res) {
      ex->transient = TransientError(res.error());
      std::string detail;
#ifdef CPPHTTPLIB_OPENSSL_SUPPORT
      if (res.error() == httplib::Error::SSLServerVerification) {
        if (auto* ssl = dynamic_cast<httplib::SSLClient*>(cli.get())) {
          detail = std::string(": ") + X509_verify_cert_error_string(ssl->get_openssl_verify_result()) +
                   "; for a private CA pass its PEM file in HttpSourceOptions::ca_cert_path";
        }
      }
#endif
      return IoError(where + ": request failed: " + ErrorText(res.error()) + detail);
    }
    if (!judged && Judge(res.value(), ex) != Verdict::kContinue) {  // e.g. 204: no body phase
      return ex->empty_file ? Status::Ok() : ex->error;
    }
    if (ex->received != want) {
      return CorruptData(where + ": the server sent " + std::to_string(ex->received) + " of the " +
                         std::to_string(want) + " bytes asked for (HTTP 206); the answer is short");
    }
    Release(std::move(cli));
    return Status::Ok();
  }

  // [first, last] into dst, retrying transient failures. For the probe,
  // *total_out receives the size the server reports.
  Status Fetch(uint64_t first, uint64_t last, uint8_t* dst, bool probe, uint64_t* total_out) const {
    const int attempts = 1 + opts_.max_retries;
    int backoff_ms = std::max(0, opts_.retry_backoff_ms);
    Status last_error;
    for (int i = 0; i < attempts; ++i) {
      if (i > 0 && backoff_ms > 0) {
        std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
        backoff_ms = backoff_ms > (1 << 20) ? backoff_ms : backoff_ms * 2;
      }
      Exchange ex;
      ex.probe = probe;
      ex.first = first;
      ex.last = last;
      Status s;
      try {
        s = Attempt(&ex, dst);
      } catch (const std::exception& e) {
        s = IoError(Where(ex) + ": the HTTP library failed: " + e.what());
        ex.transient = false;
      } catch (...) {
        s = IoError(Where(ex) + ": the HTTP library failed with an unknown exception");
        ex.transient = false;
      }
      if (s.ok()) {
        if (total_out) *total_out = ex.empty_file ? 0 : ex.total;
        return s;
      }
      if (!ex.transient) return s;
      last_error = std::move(s);
    }
    if (attempts > 1) {
      return Status(last_error.code(), last_error.message() + " (after " + std::to_string(attempts) + " attempts)");
    }
    return last_error;
  }

  std::string url_;
  ParsedUrl parsed_;
  HttpSourceOptions opts_;
  httplib::Headers headers_;
  uint64_t size_ = 0;
  mutable std::mutex mu_;
  mutable std::vector<std::unique_ptr<httplib::ClientImpl>> idle_;
};

}  // namespace

Result<std::unique_ptr<ByteSource>> OpenHttpSource(const std::string& url, const HttpSourceOptions& opts) {
  try {
    ParsedUrl parsed;
    TF_RETURN_IF_ERROR(ParseUrl(url, &parsed));
#ifndef CPPHTTPLIB_OPENSSL_SUPPORT
    if (parsed.https) return Unsupported(url + ": https:// needs TLS, and this build's HTTP library has none");
#endif
    for (const auto& [k, v] : opts.headers) {
      if (k.empty() || (k + v).find_first_of("\r\n") != std::string::npos || k.find(':') != std::string::npos) {
        return InvalidArgument(url + ": HTTP header '" + k + "' is malformed (empty name, ':' in the name, or a line "
                               "break)");
      }
      if (k.size() == 5 && StartsWithNoCase(k, "range")) {
        return InvalidArgument(url + ": HttpSourceOptions::headers must not set Range; each read sets its own");
      }
    }
    auto src = std::make_unique<HttpSource>(url, std::move(parsed), opts);
    TF_RETURN_IF_ERROR(src->Probe());
    return std::unique_ptr<ByteSource>(std::move(src));
  } catch (const std::exception& e) {
    return IoError(url + ": cannot open: " + e.what());
  } catch (...) {
    return IoError(url + ": cannot open: unknown exception");
  }
}

#else  // !TABFIT_HAVE_HTTPLIB

Result<std::unique_ptr<ByteSource>> OpenHttpSource(const std::string& url, const HttpSourceOptions&) {
  return Unsupported(url + ": this build reads no HTTP(S) URLs (built without cpp-httplib); download the file and "
                     "pass its path");
}

#endif  // TABFIT_HAVE_HTTPLIB

Result<std::unique_ptr<ByteSource>> OpenAnySource(const std::string& path_or_url) {
  if (IsHttpUrl(path_or_url)) return OpenHttpSource(path_or_url);
#if TABFIT_HAVE_PACKAGE
  return OpenModelSource(path_or_url);
#else
  return OpenFileSource(path_or_url);  // built without model/package: GGUF files only
#endif
}

}  // namespace tabfit
