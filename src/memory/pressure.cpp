#include "memory/pressure.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <thread>

namespace tabfit {

namespace detail {

struct PressureState {
  struct Action {
    int id;
    PressureLevel level;
    std::string name;
    std::shared_ptr<PressureAction> fn;
  };
  MemoryLedger* ledger = nullptr;  // valid while the monitor lives (it unsubscribes first)
  PressureThresholds th;
  std::mutex mu;           // actions, history, last_level, alive
  std::mutex run_mu;       // one action run at a time
  std::atomic<std::thread::id> runner{};
  bool alive = true;
  int next_id = 1;
  std::vector<Action> actions;
  std::vector<PressureEvent> history;
  PressureLevel last_level = PressureLevel::kNone;

  PressureLevel LevelOf(uint64_t total, uint64_t budget) const {
    if (budget == 0) return PressureLevel::kNone;
    double f = double(total) / double(budget);
    if (f >= th.emergency) return PressureLevel::kEmergency;
    if (f >= th.critical) return PressureLevel::kCritical;
    if (f >= th.warning) return PressureLevel::kWarning;
    return PressureLevel::kNone;
  }

  // Runs actions of levels warning..max_level until `wanted` bytes have left
  // the ledger. Caller holds run_mu and has set runner.
  uint64_t Run(PressureLevel max_level, uint64_t wanted) {
    std::vector<Action> todo;
    {
      std::lock_guard<std::mutex> lock(mu);
      if (!alive) return 0;
      for (int l = 1; l <= static_cast<int>(max_level); ++l)
        for (const auto& a : actions)
          if (static_cast<int>(a.level) == l) todo.push_back(a);
    }
    uint64_t freed = 0;
    for (const auto& a : todo) {
      if (freed >= wanted) break;
      uint64_t before = ledger->current_bytes();
      uint64_t reported = (*a.fn)(a.level, wanted - freed);
      uint64_t after = ledger->current_bytes();
      uint64_t real = before > after ? before - after : 0;
      freed += real;
      std::lock_guard<std::mutex> lock(mu);
      history.push_back({a.level, a.name, wanted, reported, real, after});
    }
    return freed;
  }

  // RAII: marks this thread as the one running actions.
  struct Running {
    PressureState* s;
    std::unique_lock<std::mutex> lock;
    bool owns = false;
    Running(PressureState* st, bool block) : s(st), lock(st->run_mu, std::defer_lock) {
      owns = block ? (lock.lock(), true) : lock.try_lock();
      if (owns) s->runner = std::this_thread::get_id();
    }
    ~Running() {
      if (owns) s->runner = std::thread::id();
    }
  };

  void OnEvent(const LedgerEvent& ev) {
    if (ev.budget_bytes == 0) return;
    if (runner.load() == std::this_thread::get_id()) return;  // frees made by our own actions
    const uint64_t budget = ev.budget_bytes;
    if (ev.kind == LedgerEvent::Kind::kFree) {
      std::lock_guard<std::mutex> lock(mu);
      last_level = std::min(last_level, LevelOf(ev.total_bytes, budget));
      return;
    }
    if (ev.kind == LedgerEvent::Kind::kAllocate) {
      PressureLevel lvl = LevelOf(ev.total_bytes, budget);
      {
        std::lock_guard<std::mutex> lock(mu);
        if (!alive || lvl <= last_level) return;
      }
      Running r(this, /*block=*/false);
      if (!r.owns) return;  // another thread is already relieving pressure
      uint64_t below_warning = static_cast<uint64_t>(th.warning * double(budget));
      uint64_t wanted = ev.total_bytes >= below_warning ? ev.total_bytes - below_warning + 1 : 0;
      Run(lvl, wanted);
      std::lock_guard<std::mutex> lock(mu);
      last_level = LevelOf(ledger->current_bytes(), budget);
      return;
    }
    // kRefused: free what the refused request needs.
    uint64_t asked = ev.delta_bytes > 0 ? static_cast<uint64_t>(ev.delta_bytes) : 0;
    uint64_t room = budget > ev.total_bytes ? budget - ev.total_bytes : 0;
    if (asked <= room) return;  // refused for another reason (buffer limit, allocator)
    Running r(this, /*block=*/false);
    if (!r.owns) return;
    Run(PressureLevel::kEmergency, asked - room);
    std::lock_guard<std::mutex> lock(mu);
    last_level = LevelOf(ledger->current_bytes(), budget);
  }
};

}  // namespace detail

const char* PressureLevelName(PressureLevel level) {
  switch (level) {
    case PressureLevel::kNone: return "none";
    case PressureLevel::kWarning: return "warning";
    case PressureLevel::kCritical: return "critical";
    case PressureLevel::kEmergency: return "emergency";
  }
  return "?";
}

PressureMonitor::PressureMonitor(MemoryLedger& ledger, PressureThresholds thresholds)
    : ledger_(ledger), thresholds_(thresholds), state_(std::make_shared<detail::PressureState>()) {
  state_->ledger = &ledger_;
  state_->th = thresholds;
}

Result<std::unique_ptr<PressureMonitor>> PressureMonitor::Create(MemoryLedger& ledger, PressureThresholds th) {
  auto in_range = [](double v) { return v > 0.0 && v <= 1.0; };
  if (!in_range(th.warning) || !in_range(th.critical) || !in_range(th.emergency))
    return InvalidArgument("pressure thresholds must be fractions of the budget in (0, 1]; got warning " +
                           std::to_string(th.warning) + ", critical " + std::to_string(th.critical) +
                           ", emergency " + std::to_string(th.emergency));
  if (!(th.warning < th.critical && th.critical < th.emergency))
    return InvalidArgument("pressure thresholds out of order: need warning < critical < emergency; got " +
                           std::to_string(th.warning) + ", " + std::to_string(th.critical) + ", " +
                           std::to_string(th.emergency));
  std::unique_ptr<PressureMonitor> m(new PressureMonitor(ledger, th));
  {
    auto snap_total = ledger.current_bytes();
    m->state_->last_level = m->state_->LevelOf(snap_total, ledger.budget());
  }
  std::shared_ptr<detail::PressureState> st = m->state_;
  m->listener_id_ = ledger.Subscribe([st](const LedgerEvent& ev) { st->OnEvent(ev); });
  return m;
}

PressureMonitor::~PressureMonitor() {
  ledger_.Unsubscribe(listener_id_);
  // An event already in flight on another thread may still be running
  // actions: wait for it, then make later stragglers no-ops.
  std::lock_guard<std::mutex> run(state_->run_mu);
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->alive = false;
}

int PressureMonitor::AddAction(PressureLevel level, std::string name, PressureAction action) {
  if (level == PressureLevel::kNone) level = PressureLevel::kWarning;
  std::lock_guard<std::mutex> lock(state_->mu);
  int id = state_->next_id++;
  state_->actions.push_back({id, level, std::move(name), std::make_shared<PressureAction>(std::move(action))});
  return id;
}

void PressureMonitor::RemoveAction(int id) {
  std::lock_guard<std::mutex> lock(state_->mu);
  auto& v = state_->actions;
  v.erase(std::remove_if(v.begin(), v.end(), [id](const auto& a) { return a.id == id; }), v.end());
}

PressureLevel PressureMonitor::level() const {
  return state_->LevelOf(ledger_.current_bytes(), ledger_.budget());
}

uint64_t PressureMonitor::Relieve(uint64_t bytes) {
  uint64_t budget = ledger_.budget();
  if (budget == 0) return 0;
  uint64_t total = ledger_.current_bytes();
  if (total + bytes <= budget) return 0;
  detail::PressureState::Running r(state_.get(), /*block=*/true);
  uint64_t freed = state_->Run(PressureLevel::kEmergency, total + bytes - budget);
  std::lock_guard<std::mutex> lock(state_->mu);
  state_->last_level = state_->LevelOf(ledger_.current_bytes(), budget);
  return freed;
}

std::vector<PressureEvent> PressureMonitor::history() const {
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->history;
}

}  // namespace tabfit
