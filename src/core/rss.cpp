#include "core/rss.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

#if defined(__EMSCRIPTEN__)
#include <emscripten/heap.h>
#elif defined(__linux__)
#include <unistd.h>
#endif

namespace tabfit {

uint64_t ProcessResidentBytes() {
#if defined(__EMSCRIPTEN__)
  return emscripten_get_heap_size();
#elif defined(__linux__)
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long long size = 0, resident = 0;
  int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  return resident * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
#else
  return 0;
#endif
}

uint64_t ProcessPeakResidentBytes() {
#if defined(__EMSCRIPTEN__)
  return emscripten_get_heap_size();
#elif defined(__linux__)
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return 0;
  char line[256];
  uint64_t kb = 0;
  while (std::fgets(line, sizeof line, f)) {
    if (std::strncmp(line, "VmHWM:", 6) == 0) {
      unsigned long long v = 0;
      if (std::sscanf(line + 6, "%llu", &v) == 1) kb = v;
      break;
    }
  }
  std::fclose(f);
  // VmHWM is updated lazily (per-thread RSS counters are folded in from time to
  // time), so it can trail the current size by a few pages: a peak is never less.
  return std::max<uint64_t>(kb * 1024, ProcessResidentBytes());
#else
  return 0;
#endif
}

bool ResetPeakResident() {
#if defined(__linux__) && !defined(__EMSCRIPTEN__)
  FILE* f = std::fopen("/proc/self/clear_refs", "w");
  if (!f) return false;
  const bool ok = std::fputs("5", f) >= 0;
  return std::fclose(f) == 0 && ok;
#else
  return false;
#endif
}

uint64_t PhysicalMemoryBytes() {
#if defined(__EMSCRIPTEN__)
  return emscripten_get_heap_max();
#elif defined(__linux__)
  long pages = sysconf(_SC_PHYS_PAGES);
  long page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * page : 0;
#else
  return 0;
#endif
}

}  // namespace tabfit
