// tabfit kv (private): storage that follows the tokens.
//
// ChunkedArray holds fixed-size units (a KV cell, a quantized token group) in
// chunks of `per_chunk` units, each chunk one MemoryLedger allocation under the
// cache's component, allocated only when a unit in it is first needed and
// freed when the array shrinks below it. A cache of 100 tokens in a 4k context
// therefore holds about 100 tokens' bytes, and pruning or truncation returns
// whole chunks to the ledger.
//
// Ownership: the array owns its chunks (they free themselves through the
// ledger on destruction). Thread-safety: Reserve/ShrinkTo from one thread;
// at() is a pure lookup and may be called concurrently with other at() calls.
#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"

namespace tabfit::kvchunks {

// Units per chunk: as many as fit in `target` bytes (at least one). Fails when
// one unit is larger than the ledger's largest allowed buffer.
inline Result<int> UnitsPerChunk(const MemoryLedger& ledger, size_t unit_bytes, size_t target, const std::string& what) {
  const uint64_t max_buffer = ledger.max_buffer_bytes();
  if (max_buffer && unit_bytes > max_buffer) {
    return BufferLimit("KV cache: one " + what + " is " + std::to_string(unit_bytes) +
                             " bytes, more than the largest buffer allowed (" + std::to_string(max_buffer) +
                             " bytes); raise --max-buffer or use a smaller KV group / cell");
  }
  if (max_buffer) target = std::min<uint64_t>(target, max_buffer);
  return static_cast<int>(std::max<size_t>(1, target / std::max<size_t>(1, unit_bytes)));
}

class ChunkedArray {
 public:
  ChunkedArray() = default;
  ChunkedArray(size_t unit_bytes, int per_chunk) : unit_(unit_bytes), per_(std::max(1, per_chunk)) {}
  ChunkedArray(ChunkedArray&&) noexcept = default;
  ChunkedArray& operator=(ChunkedArray&&) noexcept = default;

  // Makes units [0, n) addressable (allocating the chunks that hold them).
  Status Reserve(MemoryLedger& ledger, const std::string& component, int n) {
    const int need = (n + per_ - 1) / per_;
    while (static_cast<int>(chunks_.size()) < need) {
      TF_ASSIGN_OR_RETURN(Buffer b, ledger.Allocate(component, unit_ * static_cast<size_t>(per_)));
      bytes_ += b.size();
      chunks_.push_back(std::move(b));
    }
    return Status::Ok();
  }
  // Frees the chunks that hold only units >= n.
  void ShrinkTo(int n) {
    const size_t need = static_cast<size_t>((std::max(0, n) + per_ - 1) / per_);
    while (chunks_.size() > need) {
      bytes_ -= chunks_.back().size();
      chunks_.pop_back();
    }
  }
  uint8_t* at(int i) { return chunks_[i / per_].as<uint8_t>() + static_cast<size_t>(i % per_) * unit_; }
  const uint8_t* at(int i) const { return chunks_[i / per_].as<uint8_t>() + static_cast<size_t>(i % per_) * unit_; }
  // Units i..i+n stay in one chunk when n <= run(i).
  int run(int i) const { return per_ - i % per_; }
  int allocated_units() const { return static_cast<int>(chunks_.size()) * per_; }
  int per_chunk() const { return per_; }
  size_t unit_bytes() const { return unit_; }
  uint64_t bytes() const { return bytes_; }
  size_t chunks() const { return chunks_.size(); }

 private:
  size_t unit_ = 0;
  int per_ = 1;
  std::vector<Buffer> chunks_;
  uint64_t bytes_ = 0;
};

}  // namespace tabfit::kvchunks
