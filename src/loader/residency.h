// tabfit loader: the residency manager — which of a model's weight components are
// in memory, when they arrive, and how a model larger than the budget runs.
//
// One Residency serves one LlamaModel (its plan) read from one GgufFile (any
// ByteSource: a file read with pread, memory, a tabfit package whose chunks are
// verified by sha256 as they are first read, an HTTP(S) server answering Range
// requests). It owns, per component (embeddings, layers.N, output_norm, lm_head),
// its state, its ledger charge and how often it was read from the source, and it
// is the WeightAccess the forward pass acquires each component through.
//
// Plan (made at Create from the ledger's room):
//  - Everything fits under the limit (memory_threshold, else the ledger budget,
//    else unlimited) and keep_n_layers_loaded does not ask otherwise: every
//    component is PINNED (loaded once, kept).
//  - Otherwise (and unload_unused_layers allows it): the embeddings, output_norm
//    and lm_head are pinned, as many layers as fit are pinned (spread evenly
//    across the depth, so reading overlaps the pinned layers' compute too), and
//    the other layers STREAM through a ring of `ring_slots` layer buffers charged
//    to "stream_buffers": while the forward pass computes one streamed layer, the
//    loader thread reads the next one into another slot (double buffering). Each
//    forward pass (a decode step, or a prefill batch) reads every streamed layer
//    once. A limit too small even for that fails at Create, saying the minimum.
//
// Progressive loading: Start() loads the priority components (default
// embeddings, layers.0, lm_head) and returns; with background_loading the rest
// arrives on the loader thread while the caller may already run the model: the
// forward pass waits (Acquire) only for the component it needs next, which the
// loader then fetches first. Without background_loading, Start() returns once
// every pinned component is in, and streamed layers are read on the caller's
// thread when needed (no prefetch).
//
// Threads: at most one loader thread, owned by the Residency, started by Start()
// and joined by Cancel() and the destructor. Progress callbacks run on the
// loader thread (or the caller's, without background loading). Acquire/Release
// come from one thread at a time (the forward pass's); Components(), Pin(),
// Evict(), Cancel() may be called from any thread. Destroying the Residency
// frees every buffer it holds (the ledger's "layers.N", "stream_buffers" and
// "loader" charges go to zero) after the loader thread has stopped.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"
#include "model/gguf/gguf.h"
#include "model/llama/llama_model.h"
#include "model/llama/weights.h"

namespace tabfit {

enum class ComponentState {
  kPending,   // not read yet (pinned: the loader will; streamed: read when needed)
  kLoading,   // being read
  kResident,  // in memory
  kEvicted,   // was resident, freed (Evict); now streams when needed, or Pin() reloads it
  kStreamed,  // not held; read into a ring slot each time it is needed
  kFailed,    // its last read failed (the error says why); a later Acquire retries
};
const char* ComponentStateName(ComponentState s);  // "pending", "loading", ...

struct ResidencyOptions {
  // Loaded before Start() returns, in this order (then the rest, in forward order).
  // Names are components ("embeddings", "layers.0", "output_norm", "lm_head") or
  // "all". Unknown names are an error at Create. "lm_head" of a tied model is the
  // embeddings.
  std::vector<std::string> priority_components = {"embeddings", "layers.0", "lm_head"};
  bool background_loading = true;
  // May layers stream (be read per forward pass) when the model does not fit?
  // false: a model that does not fit fails at Create with kOutOfMemory.
  bool unload_unused_layers = true;
  // Bytes the ledger's total may reach with the weights in; 0 = the ledger's budget.
  uint64_t memory_threshold = 0;
  // Bytes other components will still grow into (the engine passes the KV
  // cache's growth up to its full context): the plan counts them as taken.
  uint64_t reserved_bytes = 0;
  // > 0: at most this many layers in memory at once (pinned + ring slots), even
  // when more would fit.
  int keep_n_layers_loaded = 0;
  // Layer buffers streamed layers pass through (>= 1; 2 = double buffering).
  int ring_slots = 2;
  // The comparison mode for benchmarks: no pinned layers, one ring slot, no
  // prefetch (each layer is read when the forward pass reaches it).
  bool naive_streaming = false;
  // Prepended to every ledger name it charges ("draft." for a draft model's weights).
  std::string charge_prefix;
  // May the source be read again after Start()? false for a load from bytes the
  // caller only lends for the call (the C API's memory and reader loads): then
  // nothing streams and Evict() is refused, since an evicted layer could never
  // come back.
  bool source_rereadable = true;
  // Streamed layers that need no conversion are mapped from a file source's page
  // cache (mmap, faulted in on the loader thread) instead of copied into the
  // ring: half the memory traffic where the file is cached. Opt-in: a file
  // truncated while one of its layers is mapped and in use raises SIGBUS (a
  // read fails cleanly instead). Sources that cannot map (packages: their
  // chunks are verified as read) and converted layers are read as usual.
  bool map_streamed_layers = false;
};

// One progress event: bytes of pinned components read so far / their total, and
// the component whose state changed (or that is being read).
struct LoadEvent {
  uint64_t loaded = 0;
  uint64_t total = 0;
  std::string component;
  ComponentState state = ComponentState::kLoading;
};
// Return false to cancel loading (the pending components then fail with kCancelled).
using LoadEventFn = std::function<bool(const LoadEvent&)>;

struct ComponentInfo {
  std::string name;
  uint64_t bytes = 0;          // in memory when resident
  uint64_t source_bytes = 0;   // read from the source per load
  // A layer that streams reports streamed (or evicted, when unloaded on
  // request), or loading while it is read into a ring slot; never resident.
  ComponentState state = ComponentState::kPending;
  bool pinned = false;         // kept once loaded (false: streams)
  uint64_t loads = 0;          // times read from the source
  uint64_t bytes_read = 0;     // source bytes read (or mapped) for it in all
  uint64_t maps = 0;           // loads that mapped the source (map_streamed_layers) instead of copying
};

class Residency : public WeightAccess {
 public:
  // Plans residency for `model` (whose weights it will read from `gguf`, which
  // must outlive the Residency) under the room `ledger` has now. Reads nothing.
  static Result<std::unique_ptr<Residency>> Create(const LlamaModel& model, const GgufFile& gguf,
                                                   MemoryLedger& ledger, const ResidencyOptions& options,
                                                   LoadEventFn on_event = nullptr);
  ~Residency() override;
  Residency(const Residency&) = delete;
  Residency& operator=(const Residency&) = delete;

  // Loads the priority components (and, without background loading, every pinned
  // one); starts the loader thread. Fails with the first load error.
  Status Start();
  // Waits until every pinned component is resident (or one failed: its error).
  Status WaitUntilLoaded();
  // Stops the loader thread (a read in flight ends at its next block) and joins it.
  // The Residency is finished then: every later read fails with kCancelled
  // (components already resident stay usable until it is destroyed).
  void Cancel();

  // WeightAccess.
  Result<const ComponentWeights*> Acquire(int component) override;
  void Release(int component) override;

  // Pins components (loads them, and keeps them) / evicts them (frees their
  // buffers; evicted layers then stream when needed). Names as for
  // priority_components, plus "layers" (every layer). Idempotent. Pin of a
  // component that does not fit fails with kOutOfMemory and changes nothing else.
  // Evict of the embeddings, output_norm or lm_head is refused (they are read
  // every step) -- only layers stream. Returns the bytes that left the ledger.
  Status Pin(const std::vector<std::string>& names);
  Result<uint64_t> Evict(const std::vector<std::string>& names);
  // Evicts pinned layers (the latest in the forward order first) until the
  // ledger's total is at most `target_total` bytes; returns the bytes freed.
  uint64_t EvictDownTo(uint64_t target_total);

  std::vector<ComponentInfo> Components() const;
  bool streaming() const { return n_streamed_ > 0; }
  int pinned_layers() const;
  int streamed_layers() const;
  // Source bytes one forward pass reads (the streamed layers'), now.
  uint64_t streamed_bytes_per_pass() const;
  // Source bytes read so far for streamed layers (all passes).
  uint64_t streamed_bytes_read() const;
  // One line: what is pinned, what streams, through how many slots, bytes per pass.
  std::string Summary() const;

 private:
  struct Part;
  struct Slot;
  Residency(const LlamaModel& model, const GgufFile& gguf, MemoryLedger& ledger, const ResidencyOptions& options,
            LoadEventFn on_event);
  Result<std::vector<int>> Resolve(const std::vector<std::string>& names) const;
  void LoaderLoop();
  // Reads pinned component c (state -> loading -> resident/failed). Called without
  // mu_ held. A layer with no room streams instead, unless `strict` (Pin()).
  Status LoadPinned(int c, bool strict = false);
  // Reads streamed layer c into ring slot s. Called without mu_ held.
  Status LoadIntoSlot(int c, int s);
  // With mu_ held: the next job for the loader (pinned component, or streamed
  // layer + slot), or false when there is none.
  bool NextJob(int* component, int* slot);
  int FreeSlotLocked(int for_component) const;
  int SlotOfLocked(int c) const;
  bool StreamsLocked(int c) const;
  // With mu_ held: c (a layer) streams from now on, in `state`.
  void MakeStreamedLocked(int c, ComponentState state);
  bool Emit(const LoadEvent& e);

  const LlamaModel& model_;
  const GgufFile& gguf_;
  MemoryLedger& ledger_;
  ResidencyOptions options_;
  LoadEventFn on_event_;
  std::vector<int> priority_;      // components, priority order
  std::vector<int> stream_order_;  // streamed layers in forward order (for prefetch)
  int n_streamed_ = 0;
  std::atomic<uint64_t> pinned_total_{0};  // source bytes of pinned components (progress total)

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Part> parts_;
  std::vector<Slot> slots_;
  std::atomic<uint64_t> pinned_loaded_{0};
  int wanted_ = -1;         // a component Acquire waits for: the loader's first job
  int cursor_ = -1;         // index in stream_order_ of the streamed layer acquired last
  uint64_t streamed_read_ = 0;
  std::atomic<bool> stop_{false};
  bool started_ = false;
  std::thread loader_;
};

}  // namespace tabfit
