// tabfit model/gguf: random-access byte sources (a file, an in-memory buffer;
// later a browser Blob or streamed chunks).
//
// Contract:
//  - ReadAt(offset, dst, n) copies exactly n bytes or returns an error; it is an
//    error (OutOfRange) if offset + n > size(), checked without overflow.
//  - name() is a file path or label and appears in every error message.
//  - data() is a zero-copy view of all size() bytes when they are in memory,
//    nullptr otherwise.
//  - All implementations here are thread-safe for concurrent ReadAt calls
//    (files use pread, no shared file position).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"

namespace tabfit {

class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual uint64_t size() const = 0;
  virtual Status ReadAt(uint64_t offset, void* dst, size_t n) const = 0;
  virtual const std::string& name() const = 0;
  virtual const uint8_t* data() const { return nullptr; }
  // A read-only mapping of [offset, offset + n) where the source can give one
  // (a file: mmap of the page cache, its pages faulted in now); the mapping
  // lives while the returned pointer (or a copy) does. Unsupported elsewhere.
  // Caveat (as for any mmap): a file truncated while a mapping of it is in use
  // raises SIGBUS on access; ReadAt fails cleanly instead.
  virtual Result<std::shared_ptr<const uint8_t>> MapRange(uint64_t offset, size_t n) const;
};

// Opens `path` read-only. NotFound if absent, IoError if it cannot be opened.
Result<std::unique_ptr<ByteSource>> OpenFileSource(const std::string& path);

// Owns `bytes`.
std::unique_ptr<ByteSource> MakeMemorySource(std::vector<uint8_t> bytes, std::string name);

// Non-owning view: `data` must outlive the source.
std::unique_ptr<ByteSource> MakeMemoryViewSource(const uint8_t* data, size_t size, std::string name);

// Shared range check used by implementations: ok iff offset + n <= size (overflow-safe).
Status CheckReadRange(const std::string& name, uint64_t size, uint64_t offset, uint64_t n);

}  // namespace tabfit
