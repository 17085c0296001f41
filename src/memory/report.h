// tabfit memory: the memory timeline as memory_log.json and as an HTML report.
//
// memory_log.json (version 1):
//   {"version": 1, "budget_bytes": N, "peak_total_bytes": N, "peak_rss_bytes": N,
//    "dropped_samples": N,
//    "components": [{"name": "kv_cache", "peak_bytes": N}, ...],
//    "samples": [{"t": 0.0123, "event": "alloc kv_cache +1.0 MiB", "total_bytes": N,
//                 "rss_bytes": N, "components": {"kv_cache": N, ...}}, ...]}
//   (a sample's "components" lists its non-zero components).
//
// The HTML report is one self-contained file (inline CSS and SVG, no scripts):
// a stacked area chart of bytes by component over time (components "layers.N"
// are grouped as "layers"), the RSS and budget as lines, and a table of peak
// bytes per component.
//
// All functions are pure; thread-safe.
#pragma once

#include <string>

#include "core/status.h"
#include "memory/monitor.h"

namespace tabfit {

std::string MemoryLogJson(const MemoryTimeline& timeline);
// Parses what MemoryLogJson wrote (e.g. to render a report later). Errors name
// the field and the sample index.
Result<MemoryTimeline> ParseMemoryLog(const std::string& json_text);

struct MemoryReportOptions {
  std::string title = "tabfit memory report";
  bool group_layers = true;   // chart "layers.0".."layers.N" as one "layers" band
  int max_points = 1000;      // chart columns; each keeps its highest-total sample
};
std::string MemoryReportHtml(const MemoryTimeline& timeline, const MemoryReportOptions& options = {});

// Write the files; IoError names the path.
Status WriteMemoryLog(const MemoryTimeline& timeline, const std::string& path);
Status WriteMemoryReport(const MemoryTimeline& timeline, const std::string& path,
                         const MemoryReportOptions& options = {});

// "layers.12" -> "layers", "layers.3.attn" -> "layers", "kv_cache" -> "kv_cache".
std::string ComponentGroup(const std::string& component);

}  // namespace tabfit
