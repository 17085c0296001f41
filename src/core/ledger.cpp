#include "core/ledger.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>

#if defined(__linux__) && !defined(__EMSCRIPTEN__)
#include <sys/mman.h>
#endif

namespace tabfit {

namespace {
#if defined(__linux__) && !defined(__EMSCRIPTEN__) && defined(MADV_HUGEPAGE)
constexpr bool kHugePagesPossible = true;
void AdviseHugePages(void* p, size_t bytes) { madvise(p, bytes, MADV_HUGEPAGE); }  // advice: failure is harmless
#else
constexpr bool kHugePagesPossible = false;
void AdviseHugePages(void*, size_t) {}
#endif
void FreeMemory(void* p, size_t bytes);
}  // namespace
namespace detail {

struct ComponentRecord {
  ComponentUsage usage;
};

struct LedgerState {
  mutable std::mutex mu;
  MemoryLedger::Options options;
  std::vector<ComponentRecord> components;
  std::map<std::string, int, std::less<>> index;
  uint64_t total = 0;
  uint64_t peak = 0;
  int next_listener = 1;
  std::vector<std::pair<int, std::shared_ptr<MemoryLedger::Listener>>> listeners;

  int ComponentId(std::string_view name) {
    auto it = index.find(name);
    if (it != index.end()) return it->second;
    int id = static_cast<int>(components.size());
    components.push_back({ComponentUsage{std::string(name)}});
    index.emplace(std::string(name), id);
    return id;
  }

  std::vector<std::shared_ptr<MemoryLedger::Listener>> ListenersLocked() const {
    std::vector<std::shared_ptr<MemoryLedger::Listener>> out;
    out.reserve(listeners.size());
    for (auto& l : listeners) out.push_back(l.second);
    return out;
  }
};

}  // namespace detail

namespace {

void Notify(const std::vector<std::shared_ptr<MemoryLedger::Listener>>& ls, const LedgerEvent& ev) {
  for (auto& l : ls) (*l)(ev);
}

void Release(const std::shared_ptr<detail::LedgerState>& s, int component_id, size_t bytes) {
  LedgerEvent ev;
  std::vector<std::shared_ptr<MemoryLedger::Listener>> ls;
  {
    std::lock_guard<std::mutex> lock(s->mu);
    auto& u = s->components[component_id].usage;
    u.current_bytes -= bytes;
    u.live_buffers -= 1;
    s->total -= bytes;
    ev = {LedgerEvent::Kind::kFree, u.name, -static_cast<int64_t>(bytes), u.current_bytes, s->total,
          s->options.budget_bytes};
    ls = s->ListenersLocked();
  }
  Notify(ls, ev);
}

}  // namespace

// ---- Buffer ----

Buffer::Buffer(Buffer&& o) noexcept
    : data_(o.data_), size_(o.size_), owns_memory_(o.owns_memory_), component_id_(o.component_id_),
      block_(std::move(o.block_)), state_(std::move(o.state_)) {
  o.data_ = nullptr;
  o.size_ = 0;
  o.component_id_ = -1;
}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    Reset();
    data_ = o.data_;
    size_ = o.size_;
    owns_memory_ = o.owns_memory_;
    component_id_ = o.component_id_;
    block_ = std::move(o.block_);
    state_ = std::move(o.state_);
    o.data_ = nullptr;
    o.size_ = 0;
    o.component_id_ = -1;
  }
  return *this;
}

const std::string& Buffer::component() const {
  static const std::string kNone;
  if (!state_ || component_id_ < 0) return kNone;
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->components[component_id_].usage.name;
}

void Buffer::Reset() {
  if (size_ > 0 && (data_ || !owns_memory_)) {
    if (owns_memory_ && !block_) FreeMemory(data_, size_);
    if (state_) Release(state_, component_id_, size_);
  }
  block_.reset();  // the last buffer of an AllocateGroup block frees it
  data_ = nullptr;
  size_ = 0;
  owns_memory_ = true;
  component_id_ = -1;
  state_.reset();
}

// ---- MemoryLedger ----

MemoryLedger::MemoryLedger() : MemoryLedger(Options{}) {}

MemoryLedger::MemoryLedger(Options options) : state_(std::make_shared<detail::LedgerState>()) {
  state_->options = options;
}

MemoryLedger::~MemoryLedger() = default;

Result<Buffer> MemoryLedger::ChargeExternal(std::string_view component, size_t bytes) {
  return AllocateImpl(component, bytes, 64, /*external=*/true);
}

Result<Buffer> MemoryLedger::ChargeMapped(std::string_view component, const void* data, size_t bytes,
                                          std::shared_ptr<void> mapping) {
  TF_ASSIGN_OR_RETURN(Buffer b, ChargeExternal(component, bytes));
  b.data_ = const_cast<void*>(data);
  b.block_ = std::move(mapping);
  return b;
}

Result<Buffer> MemoryLedger::Allocate(std::string_view component, size_t bytes, size_t alignment) {
  return AllocateImpl(component, bytes, alignment, /*external=*/false);
}

// Large buffers (weights, KV caches) start on a 2 MiB boundary and ask for
// transparent huge pages over their whole 2 MiB regions (Linux leaves THP to
// madvise by default): a decode step streams every weight byte, and 4 KiB pages
// cost a TLB miss each 4 KiB (TinyLlama, 1 thread: +2 % to +5 % tokens/s with
// huge pages, docs/measurements.md run G). Only regions entirely inside the
// buffer are advised, so no page is made resident beyond it; the tail keeps
// 4 KiB pages. (The rounded-up size below costs address space, not memory.)
constexpr size_t kHugePage = size_t{2} << 20;

namespace {
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
// Buffers this large are mapped from the OS directly and unmapped when freed, so
// freeing one really lowers the process's resident size. (glibc's malloc raises
// its mmap threshold each time a mapped chunk is freed, up to 32 MiB, after which
// layer-sized buffers come from the heap and a freed one stays resident: evicting
// a layer would then free ledger bytes but not process bytes.)
constexpr size_t kMapThreshold = size_t{256} << 10;
constexpr size_t kPage = 4096;
size_t MappedBytes(size_t bytes) { return (bytes + kPage - 1) / kPage * kPage; }
void* MapMemory(size_t bytes, size_t alignment) {
  alignment = std::max(alignment, kPage);
  const size_t len = MappedBytes(bytes);
  const size_t span = len + alignment - kPage;  // room to place an aligned start
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t start = (base + alignment - 1) / alignment * alignment;
  if (start > base) munmap(raw, start - base);
  const uintptr_t end = start + len;
  if (base + span > end) munmap(reinterpret_cast<void*>(end), base + span - end);
  return reinterpret_cast<void*>(start);
}
#else
constexpr size_t kMapThreshold = SIZE_MAX;
#endif

void* AllocateMemory(size_t bytes, size_t alignment) {
  const bool huge = kHugePagesPossible && bytes >= kHugePage;
  if (huge) alignment = std::max(alignment, kHugePage);
  void* p;
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
  if (bytes >= kMapThreshold) {
    p = MapMemory(bytes, alignment);
  } else
#endif
  {
    p = std::aligned_alloc(alignment, (bytes + alignment - 1) / alignment * alignment);
  }
  if (huge && p) AdviseHugePages(p, bytes / kHugePage * kHugePage);
  return p;
}

// Frees what AllocateMemory(bytes, ...) returned.
void FreeMemory(void* p, size_t bytes) {
  if (!p) return;
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
  if (bytes >= kMapThreshold) {
    munmap(p, MappedBytes(bytes));
    return;
  }
#endif
  std::free(p);
}

}  // namespace

Result<int> MemoryLedger::Admit(std::string_view component, const std::vector<size_t>& sizes, bool external) {
  uint64_t bytes = 0;
  for (size_t b : sizes) bytes += b;
  LedgerEvent ev;
  std::vector<std::shared_ptr<Listener>> ls;
  Status refusal;
  int id;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    id = state_->ComponentId(component);
    const auto& opt = state_->options;
    for (size_t b : sizes) {
      if (!external && opt.max_buffer_bytes && b > opt.max_buffer_bytes) {
        return BufferLimit("component '" + std::string(component) + "' asked for one buffer of " + FormatBytes(b) +
                           ", over the maximum buffer size " + FormatBytes(opt.max_buffer_bytes) +
                           " (browsers cap ArrayBuffer/GPU buffer sizes); split the tensor into "
                           "chunks (AllocateChunked) or raise --max-buffer");
      }
    }
    if (opt.budget_bytes && state_->total + bytes > opt.budget_bytes) {
      auto& u = state_->components[id].usage;
      ev = {LedgerEvent::Kind::kRefused, u.name, static_cast<int64_t>(bytes), u.current_bytes, state_->total,
            opt.budget_bytes};
      ls = state_->ListenersLocked();
      refusal = OutOfMemory(
          "component '" + std::string(component) + "' asked for " + FormatBytes(bytes) + " but " +
          FormatBytes(state_->total) + " of the " + FormatBytes(opt.budget_bytes) + " memory budget is in use (" +
          FormatBytes(opt.budget_bytes - std::min(opt.budget_bytes, state_->total)) +
          " free); lower the weight precision (e.g. --weight-type q4_0), shorten the context (-c), "
          "quantize the KV cache (--kv-type), let layers stream (on unless --no-stream; --keep-layers N caps "
          "the layers held), or raise the budget (--budget)");
    }
  }
  if (!refusal.ok()) {
    // Listeners (e.g. the pressure handler) learn of the refusal; the caller may retry.
    Notify(ls, ev);
    return refusal;
  }
  return id;
}

Buffer MemoryLedger::MakeBuffer(int component_id, void* data, size_t bytes, bool owns_memory,
                                std::shared_ptr<void> block) {
  Buffer b;
  b.data_ = data;
  b.size_ = bytes;
  b.owns_memory_ = owns_memory;
  b.component_id_ = component_id;
  b.block_ = std::move(block);
  b.state_ = state_;
  LedgerEvent ev;
  std::vector<std::shared_ptr<Listener>> ls;
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    auto& u = state_->components[component_id].usage;
    u.current_bytes += bytes;
    u.peak_bytes = std::max(u.peak_bytes, u.current_bytes);
    u.live_buffers += 1;
    u.total_allocations += 1;
    state_->total += bytes;
    state_->peak = std::max(state_->peak, state_->total);
    ev = {LedgerEvent::Kind::kAllocate, u.name, static_cast<int64_t>(bytes), u.current_bytes, state_->total,
          state_->options.budget_bytes};
    ls = state_->ListenersLocked();
  }
  Notify(ls, ev);
  return b;
}

Result<Buffer> MemoryLedger::AllocateImpl(std::string_view component, size_t bytes, size_t alignment, bool external) {
  if (bytes == 0) return Buffer();
  if (alignment < 16 || (alignment & (alignment - 1)) != 0) {
    return InvalidArgument("alignment " + std::to_string(alignment) + " is not a power of two >= 16");
  }
  TF_ASSIGN_OR_RETURN(const int id, Admit(component, {bytes}, external));
  void* p = external ? nullptr : AllocateMemory(bytes, alignment);
  if (!external && !p) {
    return OutOfMemory("the system refused " + FormatBytes(bytes) + " for component '" + std::string(component) +
                       "'; close other programs or lower the precision");
  }
  return MakeBuffer(id, p, bytes, !external, nullptr);
}

Result<std::vector<Buffer>> MemoryLedger::AllocateGroup(std::string_view component, const std::vector<size_t>& sizes) {
  constexpr size_t kAlign = 64;
  std::vector<size_t> offsets;
  size_t block_bytes = 0;
  for (size_t b : sizes) {
    offsets.push_back(block_bytes);
    block_bytes += (b + kAlign - 1) / kAlign * kAlign;
  }
  TF_ASSIGN_OR_RETURN(const int id, Admit(component, sizes, /*external=*/false));  // all or nothing
  auto refused = [&](size_t bytes) {
    return OutOfMemory("the system refused " + FormatBytes(bytes) + " for component '" + std::string(component) +
                       "'; close other programs or lower the precision");
  };
  std::vector<Buffer> out;
  if (!kHugePagesPossible || block_bytes < kHugePage) {
    // No huge page to share: separate buffers.
    for (size_t b : sizes) {
      void* p = b ? AllocateMemory(b, kAlign) : nullptr;
      if (b && !p) return refused(b);
      out.push_back(b ? MakeBuffer(id, p, b, true, nullptr) : Buffer());
    }
    return out;
  }
  void* p = AllocateMemory(block_bytes, kAlign);
  if (!p) return refused(block_bytes);
  std::shared_ptr<void> block(p, [block_bytes](void* q) { FreeMemory(q, block_bytes); });
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (sizes[i] == 0) {
      out.emplace_back();
      continue;
    }
    out.push_back(MakeBuffer(id, static_cast<uint8_t*>(p) + offsets[i], sizes[i], true, block));
  }
  return out;
}

namespace {
// The chunk sizes AllocateChunked gives `bytes` of `unit`s under a max buffer size.
Result<std::vector<size_t>> PlanChunks(std::string_view component, size_t bytes, size_t unit, uint64_t max,
                                       ChunkedBuffer* out) {
  if (unit == 0) return InvalidArgument("AllocateChunked: unit is 0");
  if (bytes % unit != 0) {
    return InvalidArgument("AllocateChunked: " + std::to_string(bytes) + " bytes is not a multiple of the unit " +
                           std::to_string(unit));
  }
  if (max && unit > max) {
    return BufferLimit("component '" + std::string(component) + "': one row of " + FormatBytes(unit) +
                       " is larger than the maximum buffer size " + FormatBytes(max) + "; raise --max-buffer");
  }
  out->unit = unit;
  out->total_bytes = bytes;
  const size_t units = bytes / unit;
  out->units_per_chunk = max ? std::max<size_t>(1, std::min<size_t>(units, max / unit)) : units;
  if (out->units_per_chunk == 0) out->units_per_chunk = 1;
  std::vector<size_t> sizes;
  for (size_t done = 0; done < units; done += out->units_per_chunk) {
    sizes.push_back(std::min(out->units_per_chunk, units - done) * unit);
  }
  return sizes;
}
}  // namespace

Result<ChunkedBuffer> MemoryLedger::AllocateChunked(std::string_view component, size_t bytes, size_t unit) {
  ChunkedBuffer out;
  TF_ASSIGN_OR_RETURN(const std::vector<size_t> sizes, PlanChunks(component, bytes, unit, max_buffer_bytes(), &out));
  for (size_t b : sizes) {
    TF_ASSIGN_OR_RETURN(Buffer buf, Allocate(component, b));
    out.chunks.push_back(std::move(buf));
  }
  return out;
}

Result<ChunkedBuffer> MemoryLedger::MapChunked(std::string_view component, const uint8_t* data, size_t bytes,
                                               size_t unit, std::shared_ptr<void> mapping) {
  ChunkedBuffer out;
  TF_ASSIGN_OR_RETURN(const std::vector<size_t> sizes, PlanChunks(component, bytes, unit, max_buffer_bytes(), &out));
  size_t at = 0;
  for (size_t b : sizes) {
    TF_ASSIGN_OR_RETURN(Buffer buf, ChargeMapped(component, data + at, b, mapping));
    out.chunks.push_back(std::move(buf));
    at += b;
  }
  return out;
}

Result<std::vector<ChunkedBuffer>> MemoryLedger::AllocateChunkedGroup(
    std::string_view component, const std::vector<std::pair<size_t, size_t>>& ranges) {
  std::vector<ChunkedBuffer> out(ranges.size());
  std::vector<size_t> all, count;
  for (size_t i = 0; i < ranges.size(); ++i) {
    TF_ASSIGN_OR_RETURN(const std::vector<size_t> sizes,
                        PlanChunks(component, ranges[i].first, ranges[i].second, max_buffer_bytes(), &out[i]));
    all.insert(all.end(), sizes.begin(), sizes.end());
    count.push_back(sizes.size());
  }
  TF_ASSIGN_OR_RETURN(std::vector<Buffer> buffers, AllocateGroup(component, all));
  size_t k = 0;
  for (size_t i = 0; i < ranges.size(); ++i) {
    for (size_t c = 0; c < count[i]; ++c) out[i].chunks.push_back(std::move(buffers[k++]));
  }
  return out;
}

bool MemoryLedger::Fits(uint64_t bytes) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return !state_->options.budget_bytes || state_->total + bytes <= state_->options.budget_bytes;
}

void MemoryLedger::set_budget(uint64_t b) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->options.budget_bytes = b;
}
uint64_t MemoryLedger::budget() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->options.budget_bytes;
}
void MemoryLedger::set_max_buffer_bytes(uint64_t b) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->options.max_buffer_bytes = b;
}
uint64_t MemoryLedger::max_buffer_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->options.max_buffer_bytes;
}
uint64_t MemoryLedger::current_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->total;
}
uint64_t MemoryLedger::peak_bytes() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->peak;
}
uint64_t MemoryLedger::component_bytes(std::string_view c) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto it = state_->index.find(c);
  return it == state_->index.end() ? 0 : state_->components[it->second].usage.current_bytes;
}
uint64_t MemoryLedger::bytes_with_prefix(std::string_view prefix) const {
  std::lock_guard<std::mutex> lock(state_->mu);
  uint64_t sum = 0;
  for (auto& c : state_->components) {
    if (std::string_view(c.usage.name).substr(0, prefix.size()) == prefix) sum += c.usage.current_bytes;
  }
  return sum;
}

LedgerSnapshot MemoryLedger::Snapshot() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  LedgerSnapshot s;
  s.total_current = state_->total;
  s.total_peak = state_->peak;
  s.budget_bytes = state_->options.budget_bytes;
  s.max_buffer_bytes = state_->options.max_buffer_bytes;
  for (auto& c : state_->components) s.components.push_back(c.usage);
  return s;
}

void MemoryLedger::ResetPeaks() {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->peak = state_->total;
  for (auto& c : state_->components) c.usage.peak_bytes = c.usage.current_bytes;
}

int MemoryLedger::Subscribe(Listener l) {
  std::lock_guard<std::mutex> lock(state_->mu);
  int id = state_->next_listener++;
  state_->listeners.emplace_back(id, std::make_shared<Listener>(std::move(l)));
  return id;
}

void MemoryLedger::Unsubscribe(int id) {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto& v = state_->listeners;
  v.erase(std::remove_if(v.begin(), v.end(), [id](auto& p) { return p.first == id; }), v.end());
}

std::string FormatBytes(uint64_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

Result<uint64_t> ParseBytes(std::string_view text) {
  std::string s(text);
  size_t i = 0;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
  if (i == 0) return InvalidArgument("'" + s + "' is not a byte size (try 1.5GB, 800MiB or 123456)");
  double v = std::strtod(s.substr(0, i).c_str(), nullptr);
  std::string unit;
  for (size_t j = i; j < s.size(); ++j) {
    if (!std::isspace(static_cast<unsigned char>(s[j]))) unit += static_cast<char>(std::tolower(s[j]));
  }
  double mult;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb") mult = 1e3;
  else if (unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mb") mult = 1e6;
  else if (unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb") mult = 1e9;
  else if (unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb") mult = 1e12;
  else if (unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else return InvalidArgument("'" + s + "': unknown unit '" + unit + "' (use B, KB, MB, GB, KiB, MiB, GiB)");
  double r = v * mult;
  if (!(r >= 0) || r > 1.8e19) return InvalidArgument("'" + s + "' is out of range");
  return static_cast<uint64_t>(std::llround(r));
}

}  // namespace tabfit
