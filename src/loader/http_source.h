// tabfit loader: a ByteSource over HTTP(S) Range requests (native builds; the
// browser reads through JS fetch instead), and OpenAnySource, which picks it for
// http:// and https:// URLs and OpenModelSource (GGUF file / package dir) otherwise.
//
// Contract:
//  - OpenHttpSource(url) learns the size with one `Range: bytes=0-0` GET (the
//    answer must be 206 with `Content-Range: bytes 0-0/TOTAL`). A server that
//    ignores Range (answers 200) is refused (Unsupported): the server must answer
//    Range requests. An empty file (416 with `bytes */0`) opens with size 0.
//  - ReadAt(offset, dst, n) checks the range first (OutOfRange without a request),
//    returns Ok at once for n == 0, else GETs `Range: bytes=offset-(offset+n-1)`
//    (split into requests of at most max_request_bytes) and copies exactly n bytes.
//    Each answer must be 206 whose Content-Range start/end are the ones asked and
//    whose total equals the size learned at open, with a body of exactly the asked
//    length; anything else is an error and dst's contents are then unspecified.
//  - Errors name the URL, the byte range and the HTTP status or httplib's error:
//      404 -> NotFound, 416 -> OutOfRange, total changed / wrong Content-Range /
//      wrong body length / compressed body -> CorruptData, 200 to a Range request
//      -> Unsupported, connection failure, timeout, 5xx and other statuses ->
//      IoError, malformed URL -> InvalidArgument; https:// in a build without
//      TLS -> Unsupported.
//  - Transient failures (connection/read/write errors and timeouts, 5xx, 429) are
//    retried up to max_retries times with doubling backoff; 4xx never are.
//  - Redirects are followed (e.g. a model hub's CDN); the final answer is checked.
//  - Nothing throws out of these functions; httplib exceptions become statuses.
//  - Ownership: the caller owns the returned source; name() is the URL as given.
//    data() is nullptr (nothing is held in memory).
//  - Thread-safety: concurrent ReadAt calls are safe. Each request takes an idle
//    httplib::Client from a mutex-protected pool (or makes one), so requests run
//    in parallel; a client goes back to the pool only after a clean exchange.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/status.h"
#include "model/gguf/byte_source.h"

namespace tabfit {

struct HttpSourceOptions {
  int timeout_seconds = 30;        // connect, read and write timeouts, each
  int max_retries = 3;             // extra attempts for a transient failure (0: none)
  int retry_backoff_ms = 250;      // wait before the first retry; doubles after each
  uint64_t max_request_bytes = uint64_t{64} << 20;  // a larger ReadAt is split (min 1)
  // Sent with every request, e.g. {"Authorization", "Bearer ..."}.
  std::vector<std::pair<std::string, std::string>> headers;
  // PEM file of CA certificates for https:// (empty: the system's default store).
  std::string ca_cert_path;
};

// True iff `s` starts with http:// or https:// (case-insensitive scheme).
bool IsHttpUrl(std::string_view s);

// Opens `url` (http:// or https://). See the contract above.
Result<std::unique_ptr<ByteSource>> OpenHttpSource(const std::string& url, const HttpSourceOptions& opts = {});

// An http(s):// URL -> OpenHttpSource(url) with default options; anything else
// -> OpenModelSource (a GGUF file or a tabfit package directory).
Result<std::unique_ptr<ByteSource>> OpenAnySource(const std::string& path_or_url);

namespace http_internal {
// Parses a Content-Range value "bytes FIRST-LAST/TOTAL" (unit case-insensitive,
// optional spaces). False on any malformation, overflow, FIRST > LAST or
// LAST >= TOTAL; "bytes */TOTAL" (unsatisfied-range form) sets *unsatisfied and
// only *total. Never throws.
bool ParseContentRange(std::string_view v, uint64_t* first, uint64_t* last, uint64_t* total, bool* unsatisfied);
}  // namespace http_internal

}  // namespace tabfit
