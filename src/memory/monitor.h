// tabfit memory: MemoryMonitor — a timeline of what a MemoryLedger holds.
//
// The monitor samples the ledger (bytes per component and in total) and the
// process's resident set size (core/rss.h) at every ledger event (allocate,
// free, refusal), at a fixed interval, and whenever Mark() is called. The
// timeline is written as memory_log.json and as a self-contained HTML report
// by memory/report.h.
//
// Ownership: the monitor keeps a reference to the ledger, which must outlive
// it (the destructor unsubscribes). Thread-safety: all methods are
// thread-safe; ledger events may arrive from any thread. Events from two
// threads at once are recorded in the order their listeners run, so a sample's
// per-component bytes are each exact for that component's latest event.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/ledger.h"

namespace tabfit {

namespace detail {
struct MonitorState;
}

struct MemorySample {
  double t = 0;                    // seconds since the MemoryMonitor was constructed
  std::string event;               // "alloc kv_cache +1.0 MiB", "free ...", "refused ...", "interval", a Mark label
  uint64_t total_bytes = 0;        // ledger total
  uint64_t rss_bytes = 0;          // process resident bytes (0: not sampled / unknown)
  std::vector<uint64_t> component_bytes;  // [i] = bytes of MemoryTimeline::components[i]; missing tail = 0
};

struct MemoryTimeline {
  std::vector<std::string> components;    // first-seen order
  std::vector<MemorySample> samples;      // in time order
  uint64_t budget_bytes = 0;              // ledger budget when the timeline was taken (0 = unlimited)
  std::vector<uint64_t> peak_component_bytes;  // per component, over the samples and events seen
  uint64_t peak_total_bytes = 0;
  uint64_t peak_rss_bytes = 0;
  uint64_t dropped_samples = 0;           // samples not stored because max_samples was reached

  uint64_t component_at(size_t sample, size_t component) const {
    const auto& v = samples[sample].component_bytes;
    return component < v.size() ? v[component] : 0;
  }
};

class MemoryMonitor {
 public:
  struct Options {
    bool sample_on_events = true;   // one sample per ledger event
    int interval_ms = 0;            // > 0: also sample on a background thread
    bool sample_rss = true;         // read the process RSS with each sample
    size_t max_samples = 200000;    // later samples are counted in dropped_samples (peaks stay exact)
  };

  explicit MemoryMonitor(MemoryLedger& ledger);
  MemoryMonitor(MemoryLedger& ledger, Options options);
  ~MemoryMonitor();
  MemoryMonitor(const MemoryMonitor&) = delete;
  MemoryMonitor& operator=(const MemoryMonitor&) = delete;

  // Subscribes to the ledger, takes a first sample ("start") and starts the
  // interval thread. Calling Start twice is a no-op.
  void Start();
  // Takes a last sample ("stop"), unsubscribes and joins the thread.
  void Stop();
  bool running() const;

  // Takes a sample now, labelled (e.g. "prompt done").
  void Mark(std::string_view label);

  MemoryTimeline Timeline() const;
  size_t sample_count() const;

 private:
  MemoryLedger& ledger_;
  std::shared_ptr<detail::MonitorState> state_;  // shared with the ledger listener
  int listener_id_ = 0;
  std::thread thread_;
};

}  // namespace tabfit
