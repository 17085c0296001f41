// tabfit core: Status and Result<T>, the error currency of the whole library.
//
// Contract:
//  - Library code never aborts, exits or throws across a module boundary on bad
//    input; recoverable failures return Status / Result<T>.
//  - A message says what failed, where, why, and what the user can do, e.g.
//    "model.gguf: tensor 'blk.3.attn_q.weight' at offset 123 runs past end of
//     file (size 100): the file is truncated; download it again".
//  - Status is a cheap value type (empty string when ok). Thread-compatible.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace tabfit {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,  // the caller passed something unusable (flag, prompt, config)
  kCorruptData,      // a file / chunk / message does not parse or fails its checksum
  kNotFound,         // file, tensor, key, component absent
  kUnsupported,      // valid but not handled (architecture, tensor type, feature)
  kOutOfMemory,      // ledger budget or allocator refused an allocation
  kBufferLimit,      // a single buffer would exceed the configured maximum
  kIoError,          // read/write/network failure
  kCancelled,        // a progress callback or AbortSignal asked to stop
  kOutOfRange,       // e.g. prompt longer than the context
  kInternal,         // a bug in tabfit; please report
};

const char* StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }
  // "CorruptData: <message>" or "OK".
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context + ": "`.
  Status WithContext(const std::string& context) const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Convenience constructors.
inline Status InvalidArgument(std::string m) { return {StatusCode::kInvalidArgument, std::move(m)}; }
inline Status CorruptData(std::string m) { return {StatusCode::kCorruptData, std::move(m)}; }
inline Status NotFound(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status Unsupported(std::string m) { return {StatusCode::kUnsupported, std::move(m)}; }
inline Status OutOfMemory(std::string m) { return {StatusCode::kOutOfMemory, std::move(m)}; }
inline Status BufferLimit(std::string m) { return {StatusCode::kBufferLimit, std::move(m)}; }
inline Status IoError(std::string m) { return {StatusCode::kIoError, std::move(m)}; }
inline Status Cancelled(std::string m) { return {StatusCode::kCancelled, std::move(m)}; }
inline Status OutOfRange(std::string m) { return {StatusCode::kOutOfRange, std::move(m)}; }
inline Status Internal(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Result<T>: either a value or a non-ok Status (std::expected is C++23).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT(implicit)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(implicit)
    assert(!std::get<Status>(v_).ok() && "Result constructed from an ok Status");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace tabfit

#define TABFIT_CONCAT_INNER_(a, b) a##b
#define TABFIT_CONCAT_(a, b) TABFIT_CONCAT_INNER_(a, b)

// Returns the Status from the enclosing function if `expr` is not ok.
#define TF_RETURN_IF_ERROR(expr)                 \
  do {                                           \
    ::tabfit::Status tf_status_ = (expr);        \
    if (!tf_status_.ok()) return tf_status_;     \
  } while (0)

// `TF_ASSIGN_OR_RETURN(auto x, MakeX());` — unwraps a Result or returns its Status.
#define TF_ASSIGN_OR_RETURN(lhs, rexpr) \
  TF_ASSIGN_OR_RETURN_IMPL_(TABFIT_CONCAT_(tf_result_, __LINE__), lhs, rexpr)
#define TF_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, rexpr) \
  auto tmp = (rexpr);                              \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()
