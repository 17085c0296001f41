// tabfit memory: PressureMonitor — frees memory when the ledger nears its budget.
//
// Thresholds are fractions of the ledger's budget (warning < critical <
// emergency <= 1, e.g. 0.7 / 0.85 / 0.95 from a BrowserProfile). Actions are
// registered per level; an action frees what it can (drops a KV-cache tail,
// unloads an idle component...) and returns the bytes it freed.
//
// When an allocation takes the ledger total up into a higher level, the
// actions of every level from warning up to that level run (in registration
// order) until usage is back below the warning threshold. When the ledger
// refuses an allocation, actions run until the refused bytes would fit; the
// caller may then retry. Relieve(bytes) does the same on demand. The level
// only rises again after usage has fallen below a threshold, so a level's
// actions do not rerun on every allocation above it.
//
// Actions run synchronously on the allocating thread, inside the ledger's
// listener (outside its lock). They may free ledger buffers; they must NOT
// allocate from the same ledger. Frees made by actions do not re-trigger
// actions (re-entrancy is guarded). A budget of 0 (unlimited) never triggers
// anything.
//
// Ownership: keeps a reference to the ledger, which must outlive it.
// Thread-safety: all methods are thread-safe; actions of one monitor never run
// concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"

namespace tabfit {

namespace detail {
struct PressureState;
}

enum class PressureLevel { kNone = 0, kWarning = 1, kCritical = 2, kEmergency = 3 };
const char* PressureLevelName(PressureLevel level);

struct PressureThresholds {
  double warning = 0.7;
  double critical = 0.85;
  double emergency = 0.95;
};

// Called with the level that triggered it and the bytes still wanted; returns
// the bytes it freed (0 if it could not help).
using PressureAction = std::function<uint64_t(PressureLevel level, uint64_t bytes_wanted)>;

// One action run, for logs and tests.
struct PressureEvent {
  PressureLevel level;
  std::string action;
  uint64_t bytes_wanted;
  uint64_t bytes_reported;  // what the action returned
  uint64_t bytes_freed;     // ledger total before - after (what really left the ledger)
  uint64_t total_after;
};

class PressureMonitor {
 public:
  // Fails with InvalidArgument when thresholds are outside (0, 1] or out of order.
  static Result<std::unique_ptr<PressureMonitor>> Create(MemoryLedger& ledger, PressureThresholds thresholds);
  ~PressureMonitor();
  PressureMonitor(const PressureMonitor&) = delete;
  PressureMonitor& operator=(const PressureMonitor&) = delete;

  // Registers an action for `level` (kWarning..kEmergency); returns its id.
  int AddAction(PressureLevel level, std::string name, PressureAction action);
  void RemoveAction(int id);

  // Level of the ledger's current usage.
  PressureLevel level() const;
  // Runs actions (warning level first) until `bytes` more would fit the
  // budget; returns the bytes the ledger lost meanwhile (0 with no budget or
  // when `bytes` already fits).
  uint64_t Relieve(uint64_t bytes);
  std::vector<PressureEvent> history() const;
  const PressureThresholds& thresholds() const { return thresholds_; }

 private:
  PressureMonitor(MemoryLedger& ledger, PressureThresholds thresholds);
  MemoryLedger& ledger_;
  PressureThresholds thresholds_;
  std::shared_ptr<detail::PressureState> state_;
  int listener_id_ = 0;
};

}  // namespace tabfit
