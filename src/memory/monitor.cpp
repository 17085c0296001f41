#include "memory/monitor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>

#include "core/rss.h"

namespace tabfit {

namespace detail {

struct MonitorState {
  MemoryMonitor::Options options;
  std::mutex mu;
  std::condition_variable cv;
  bool running = false;
  std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now();
  MemoryTimeline timeline;
  std::vector<uint64_t> current;  // latest bytes per component

  double Now() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }

  size_t ComponentIndex(const std::string& name) {
    auto& names = timeline.components;
    for (size_t i = names.size(); i-- > 0;)
      if (names[i] == name) return i;
    names.push_back(name);
    current.push_back(0);
    timeline.peak_component_bytes.push_back(0);
    return names.size() - 1;
  }

  // Records one sample of `current` (caller holds mu).
  void Push(std::string event, uint64_t total) {
    MemorySample s;
    s.t = Now();
    s.event = std::move(event);
    s.total_bytes = total;
    s.rss_bytes = options.sample_rss ? ProcessResidentBytes() : 0;
    timeline.peak_total_bytes = std::max(timeline.peak_total_bytes, total);
    timeline.peak_rss_bytes = std::max(timeline.peak_rss_bytes, s.rss_bytes);
    for (size_t i = 0; i < current.size(); ++i)
      timeline.peak_component_bytes[i] = std::max(timeline.peak_component_bytes[i], current[i]);
    if (timeline.samples.size() >= options.max_samples) {
      ++timeline.dropped_samples;
      return;
    }
    // Trailing zero components are implicit.
    size_t n = current.size();
    while (n > 0 && current[n - 1] == 0) --n;
    s.component_bytes.assign(current.begin(), current.begin() + n);
    timeline.samples.push_back(std::move(s));
  }

  // Samples the whole ledger (caller holds mu).
  void PushSnapshot(const MemoryLedger& ledger, std::string label) {
    LedgerSnapshot snap = ledger.Snapshot();
    timeline.budget_bytes = snap.budget_bytes;
    for (const auto& c : snap.components) current[ComponentIndex(c.name)] = c.current_bytes;
    Push(std::move(label), snap.total_current);
  }

  void OnEvent(const LedgerEvent& ev) {
    std::lock_guard<std::mutex> lock(mu);
    if (!running) return;  // an event already in flight when Stop() unsubscribed
    timeline.budget_bytes = ev.budget_bytes;
    size_t i = ComponentIndex(ev.component);
    std::string label;
    switch (ev.kind) {
      case LedgerEvent::Kind::kAllocate:
        current[i] = ev.component_bytes;
        label = "alloc " + ev.component + " +" + FormatBytes(static_cast<uint64_t>(ev.delta_bytes));
        break;
      case LedgerEvent::Kind::kFree:
        current[i] = ev.component_bytes;
        label = "free " + ev.component + " -" + FormatBytes(static_cast<uint64_t>(-ev.delta_bytes));
        break;
      case LedgerEvent::Kind::kRefused:
        label = "refused " + ev.component + " " + FormatBytes(static_cast<uint64_t>(std::max<int64_t>(0, ev.delta_bytes)));
        break;
    }
    if (options.sample_on_events) {
      Push(std::move(label), ev.total_bytes);
    } else {
      // Peaks stay exact even when events are not stored as samples.
      timeline.peak_total_bytes = std::max(timeline.peak_total_bytes, ev.total_bytes);
      timeline.peak_component_bytes[i] = std::max(timeline.peak_component_bytes[i], current[i]);
    }
  }
};

}  // namespace detail

MemoryMonitor::MemoryMonitor(MemoryLedger& ledger) : MemoryMonitor(ledger, Options()) {}

MemoryMonitor::MemoryMonitor(MemoryLedger& ledger, Options options)
    : ledger_(ledger), state_(std::make_shared<detail::MonitorState>()) {
  state_->options = options;
  if (state_->options.max_samples == 0) state_->options.max_samples = 1;
}

MemoryMonitor::~MemoryMonitor() { Stop(); }

void MemoryMonitor::Start() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (state_->running) return;
    state_->running = true;
    state_->PushSnapshot(ledger_, "start");
  }
  std::shared_ptr<detail::MonitorState> st = state_;
  listener_id_ = ledger_.Subscribe([st](const LedgerEvent& ev) { st->OnEvent(ev); });
  if (state_->options.interval_ms > 0) {
    thread_ = std::thread([this, st] {
      std::unique_lock<std::mutex> lock(st->mu);
      const auto period = std::chrono::milliseconds(st->options.interval_ms);
      while (st->running) {
        if (st->cv.wait_for(lock, period, [&] { return !st->running; })) break;
        st->PushSnapshot(ledger_, "interval");
      }
    });
  }
}

void MemoryMonitor::Stop() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    if (!state_->running) return;
    state_->PushSnapshot(ledger_, "stop");
    state_->running = false;
  }
  state_->cv.notify_all();
  ledger_.Unsubscribe(listener_id_);
  listener_id_ = 0;
  if (thread_.joinable()) thread_.join();
}

bool MemoryMonitor::running() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->running;
}

void MemoryMonitor::Mark(std::string_view label) {
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->PushSnapshot(ledger_, std::string(label));
}

MemoryTimeline MemoryMonitor::Timeline() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->timeline;
}

size_t MemoryMonitor::sample_count() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->timeline.samples.size();
}

}  // namespace tabfit
