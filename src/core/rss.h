// tabfit core: what the operating system says about this process's memory.
// Used to cross-check the ledger (ledger total vs resident growth) and by the
// memory monitor. Returns 0 where the platform cannot tell (e.g. wasm has no
// RSS; there the wasm heap size is reported instead).
#pragma once

#include <cstdint>

namespace tabfit {

// Current resident set size of this process in bytes (Linux: /proc/self/statm).
uint64_t ProcessResidentBytes();
// Peak resident set size (Linux: VmHWM from /proc/self/status, at least the current size).
uint64_t ProcessPeakResidentBytes();
// Restarts the peak (Linux: writes 5 to /proc/self/clear_refs, which sets VmHWM
// to the current resident size), so a peak read later covers only what follows.
// Returns false where the platform cannot (the peak then keeps its history).
bool ResetPeakResident();
// Total physical memory of the machine (0 if unknown).
uint64_t PhysicalMemoryBytes();

}  // namespace tabfit
