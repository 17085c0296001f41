// tabfit core: what the operating system says about this process's memory.
// Used to cross-check the ledger (ledger total vs resident growth) and by the
// memory monitor. Returns 0 where the platform cannot tell (e.g. wasm has no
// RSS; there the wasm heap size is reported instead).
#pragma once

#include <cstdint>

namespace tabfit {

// Current resident set size of this process in bytes (Linux: /proc/self/statm).
uint64_t ProcessResidentBytes();
// Peak resident set size (Linux: VmHWM from /proc/self/status).
uint64_t ProcessPeakResidentBytes();
// Total physical memory of the machine (0 if unknown).
uint64_t PhysicalMemoryBytes();

}  // namespace tabfit
