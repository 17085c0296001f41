// tabfit core: the memory ledger — every byte tabfit holds is charged here.
//
// Weights, KV cache, activations and scratch are allocated through a
// MemoryLedger under a component name ("embeddings", "layers.12", "lm_head",
// "kv_cache", "activations", "scratch", ...). The ledger knows current and
// peak bytes per component and in total, enforces an optional budget, caps the
// size of any single buffer (browsers cap ArrayBuffers / GPU buffers), and
// tells listeners about every change (the pressure handler subscribes).
//
// Ownership: Allocate() returns a Buffer that owns its memory; destroying (or
// Reset()ing) it returns the bytes to the ledger. Buffers keep the ledger's
// shared state alive, so a Buffer may outlive the MemoryLedger object.
//
// Thread-safety: all MemoryLedger methods are thread-safe. Listeners are called
// synchronously on the allocating thread, outside the ledger's lock; they must
// not allocate from the same ledger (that would recurse).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"

namespace tabfit {

namespace detail {
struct LedgerState;
}

// Usage of one component.
struct ComponentUsage {
  std::string name;
  uint64_t current_bytes = 0;
  uint64_t peak_bytes = 0;
  uint64_t live_buffers = 0;
  uint64_t total_allocations = 0;  // lifetime count
};

struct LedgerSnapshot {
  uint64_t total_current = 0;
  uint64_t total_peak = 0;
  uint64_t budget_bytes = 0;  // 0 = unlimited
  uint64_t max_buffer_bytes = 0;
  std::vector<ComponentUsage> components;  // in first-use order
};

// One allocation or free, delivered to listeners.
struct LedgerEvent {
  enum class Kind { kAllocate, kFree, kRefused };
  Kind kind;
  std::string component;
  int64_t delta_bytes;        // + on allocate, - on free, requested size on refusal
  uint64_t component_bytes;   // component's current bytes after the event
  uint64_t total_bytes;       // ledger total after the event
  uint64_t budget_bytes;      // 0 = unlimited
};

// An owned, aligned block of memory charged to a component.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& other) noexcept;
  Buffer& operator=(Buffer&& other) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { Reset(); }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <typename T> T* as() { return static_cast<T*>(data_); }
  template <typename T> const T* as() const { return static_cast<const T*>(data_); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::string& component() const;
  // Frees the memory and returns its bytes to the ledger.
  void Reset();

 private:
  friend class MemoryLedger;
  void* data_ = nullptr;
  size_t size_ = 0;
  bool owns_memory_ = true;  // false for ChargeExternal
  int component_id_ = -1;
  std::shared_ptr<void> block_;  // AllocateGroup: the shared block data_ points into
  std::shared_ptr<detail::LedgerState> state_;
};

// A logical byte range split into chunks, none larger than the ledger's
// max_buffer_bytes; chunk boundaries fall on multiples of `unit` (e.g. one
// row of a weight matrix) so kernels can work chunk by chunk.
struct ChunkedBuffer {
  std::vector<Buffer> chunks;
  size_t unit = 1;           // bytes per indivisible unit (row)
  size_t units_per_chunk = 0;
  size_t total_bytes = 0;
  // Address of byte `offset` of the logical range (offset < total_bytes).
  uint8_t* at(size_t offset) {
    size_t per = units_per_chunk * unit;
    return chunks[offset / per].as<uint8_t>() + offset % per;
  }
  const uint8_t* at(size_t offset) const { return const_cast<ChunkedBuffer*>(this)->at(offset); }
};

class MemoryLedger {
 public:
  struct Options {
    uint64_t budget_bytes = 0;                  // 0 = unlimited
    uint64_t max_buffer_bytes = 1ull << 30;     // 1 GiB: safe for every browser
  };
  using Listener = std::function<void(const LedgerEvent&)>;

  MemoryLedger();
  explicit MemoryLedger(Options options);
  ~MemoryLedger();
  MemoryLedger(const MemoryLedger&) = delete;
  MemoryLedger& operator=(const MemoryLedger&) = delete;

  // Allocates `bytes` (alignment a power of two, >= 16) charged to
  // `component`. Fails with kOutOfMemory (budget would be exceeded, or the
  // system allocator refused) or kBufferLimit (bytes > max_buffer_bytes); the
  // message names the component, the bytes asked, the budget and a remedy.
  // Zero bytes gives an empty Buffer. On Linux, buffers of 2 MiB or more start
  // on a 2 MiB boundary and their whole 2 MiB regions are advised for
  // transparent huge pages (MADV_HUGEPAGE; the OS may still decline).
  Result<Buffer> Allocate(std::string_view component, size_t bytes, size_t alignment = 64);

  // Accounts for `bytes` that live outside the ledger's allocator (e.g. a
  // tokenizer's tables in std containers) under `component`, against the
  // budget like an allocation. The returned Buffer has no data (data() is
  // null, size() is `bytes`); destroying it releases the charge.
  Result<Buffer> ChargeExternal(std::string_view component, size_t bytes);
  // Memory someone else mapped (e.g. a file range mapped read-only): charged to
  // `component` like an allocation, data() is `data` (never written through),
  // and `mapping` is kept alive until the last Buffer made over it is reset
  // (its deleter unmaps). MapChunked splits `bytes` into chunks as
  // AllocateChunked would, each a Buffer over the mapping.
  Result<Buffer> ChargeMapped(std::string_view component, const void* data, size_t bytes,
                              std::shared_ptr<void> mapping);
  Result<ChunkedBuffer> MapChunked(std::string_view component, const uint8_t* data, size_t bytes, size_t unit,
                                   std::shared_ptr<void> mapping);

  // Allocates `bytes` as chunks of whole `unit`s, each <= max_buffer_bytes.
  Result<ChunkedBuffer> AllocateChunked(std::string_view component, size_t bytes, size_t unit);

  // Several buffers charged to `component`, laid out in order in one contiguous
  // block (each on a 64-byte boundary; the gaps, under 64 bytes each, are not
  // charged), as Allocate would give them one by one: the same budget (checked
  // for the sum, all or nothing), buffer-size and error rules, and each Buffer
  // returns its own bytes when reset. The block is freed with its last buffer.
  // Why: a block of 2 MiB or more gets Allocate's huge-page treatment as a whole,
  // so buffers that are each smaller than a huge page, or that end partway into
  // one (a layer's attention matrices, the tail of every feed-forward matrix),
  // share huge pages instead of keeping 4 KiB ones. Where huge pages are not
  // possible (WebAssembly, non-Linux) the buffers are allocated separately.
  Result<std::vector<Buffer>> AllocateGroup(std::string_view component, const std::vector<size_t>& sizes);

  // AllocateChunked for several ranges at once, all chunks in one AllocateGroup:
  // ranges[i] = {bytes, unit} gives result[i].
  Result<std::vector<ChunkedBuffer>> AllocateChunkedGroup(std::string_view component,
                                                          const std::vector<std::pair<size_t, size_t>>& ranges);

  // Would an allocation of `bytes` fit in the budget right now?
  bool Fits(uint64_t bytes) const;

  void set_budget(uint64_t budget_bytes);
  uint64_t budget() const;
  void set_max_buffer_bytes(uint64_t bytes);
  uint64_t max_buffer_bytes() const;

  uint64_t current_bytes() const;
  uint64_t peak_bytes() const;
  uint64_t component_bytes(std::string_view component) const;
  // Components whose name starts with `prefix` (e.g. "layers."), summed.
  uint64_t bytes_with_prefix(std::string_view prefix) const;
  LedgerSnapshot Snapshot() const;
  // Resets peak counters to current values (e.g. between benchmark phases).
  void ResetPeaks();

  // Returns an id for Unsubscribe.
  int Subscribe(Listener listener);
  void Unsubscribe(int id);

 private:
  Result<Buffer> AllocateImpl(std::string_view component, size_t bytes, size_t alignment, bool external);
  // Checks the buffer limit of each size (unless external) and the budget for their
  // sum; on success charges them all to the component under one lock.
  Result<int> Admit(std::string_view component, const std::vector<size_t>& sizes, bool external);
  Buffer MakeBuffer(int component_id, void* data, size_t bytes, bool owns_memory, std::shared_ptr<void> block);
  std::shared_ptr<detail::LedgerState> state_;
};

// Formats bytes as "12.3 MiB".
std::string FormatBytes(uint64_t bytes);
// Parses "1.5GB", "800MiB", "2g", "123456" into bytes (GB = 1e9, GiB = 2^30).
Result<uint64_t> ParseBytes(std::string_view text);

}  // namespace tabfit
