#include "memory/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

namespace tabfit {

namespace {

using nlohmann::json;

const char* const kPalette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948",
                                "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#1f77b4", "#8c564b"};

std::string Escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) return IoError(path + ": cannot open for writing (does the folder exist and is it writable?)");
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) return IoError(path + ": write failed (disk full?)");
  return Status::Ok();
}

uint64_t NiceStep(double raw) {
  if (raw <= 1) return 1;
  double unit = 1;
  while (unit * 1024 <= raw) unit *= 1024;
  double m = raw / unit;
  for (double nice : {1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1024.0})
    if (nice >= m) return static_cast<uint64_t>(nice * unit);
  return static_cast<uint64_t>(1024 * unit);
}

bool IsMarkEvent(const std::string& e) {
  return !(e.rfind("alloc ", 0) == 0 || e.rfind("free ", 0) == 0 || e == "interval" || e == "start" || e == "stop");
}

}  // namespace

std::string ComponentGroup(const std::string& component) {
  size_t start = 0;
  while (start <= component.size()) {
    size_t dot = component.find('.', start);
    size_t end = dot == std::string::npos ? component.size() : dot;
    bool digits = end > start && std::all_of(component.begin() + start, component.begin() + end,
                                             [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
    if (digits && start > 0) return component.substr(0, start - 1);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return component;
}

std::string MemoryLogJson(const MemoryTimeline& t) {
  json j;
  j["version"] = 1;
  j["budget_bytes"] = t.budget_bytes;
  j["peak_total_bytes"] = t.peak_total_bytes;
  j["peak_rss_bytes"] = t.peak_rss_bytes;
  j["dropped_samples"] = t.dropped_samples;
  json comps = json::array();
  for (size_t i = 0; i < t.components.size(); ++i)
    comps.push_back({{"name", t.components[i]},
                     {"peak_bytes", i < t.peak_component_bytes.size() ? t.peak_component_bytes[i] : 0}});
  j["components"] = std::move(comps);
  json samples = json::array();
  for (const auto& s : t.samples) {
    json c = json::object();
    for (size_t i = 0; i < s.component_bytes.size() && i < t.components.size(); ++i)
      if (s.component_bytes[i]) c[t.components[i]] = s.component_bytes[i];
    samples.push_back({{"t", std::round(s.t * 1e6) / 1e6},
                       {"event", s.event},
                       {"total_bytes", s.total_bytes},
                       {"rss_bytes", s.rss_bytes},
                       {"components", std::move(c)}});
  }
  j["samples"] = std::move(samples);
  return j.dump(1);
}

namespace {
Result<MemoryTimeline> ParseMemoryLogImpl(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    return InvalidArgument(std::string("memory log: not valid JSON at byte ") + std::to_string(e.byte) + ": " +
                           e.what());
  }
  auto bad = [](const std::string& what) {
    return InvalidArgument("memory log: " + what + " (expected the format written by MemoryLogJson)");
  };
  if (!j.is_object()) return bad("top level is not an object");
  if (!j.contains("version") || !j["version"].is_number_integer() || j["version"].get<int>() != 1)
    return bad("missing or unsupported 'version' (this reader knows 1)");
  auto u64 = [&](const json& o, const char* key, uint64_t* out) -> Status {
    if (!o.contains(key)) return Status::Ok();
    if (!o[key].is_number_unsigned() && !(o[key].is_number_integer() && o[key].get<int64_t>() >= 0))
      return bad(std::string("'") + key + "' is not a non-negative integer");
    *out = o[key].get<uint64_t>();
    return Status::Ok();
  };
  MemoryTimeline t;
  TF_RETURN_IF_ERROR(u64(j, "budget_bytes", &t.budget_bytes));
  TF_RETURN_IF_ERROR(u64(j, "peak_total_bytes", &t.peak_total_bytes));
  TF_RETURN_IF_ERROR(u64(j, "peak_rss_bytes", &t.peak_rss_bytes));
  TF_RETURN_IF_ERROR(u64(j, "dropped_samples", &t.dropped_samples));
  std::map<std::string, size_t> index;
  if (!j.contains("components") || !j["components"].is_array()) return bad("'components' is not an array");
  for (size_t i = 0; i < j["components"].size(); ++i) {
    const json& c = j["components"][i];
    if (!c.is_object() || !c.contains("name") || !c["name"].is_string())
      return bad("components[" + std::to_string(i) + "] has no string 'name'");
    uint64_t peak = 0;
    TF_RETURN_IF_ERROR(u64(c, "peak_bytes", &peak));
    index[c["name"].get<std::string>()] = t.components.size();
    t.components.push_back(c["name"].get<std::string>());
    t.peak_component_bytes.push_back(peak);
  }
  if (!j.contains("samples") || !j["samples"].is_array()) return bad("'samples' is not an array");
  for (size_t i = 0; i < j["samples"].size(); ++i) {
    const json& s = j["samples"][i];
    std::string where = "samples[" + std::to_string(i) + "]";
    if (!s.is_object()) return bad(where + " is not an object");
    MemorySample m;
    if (!s.contains("t") || !s["t"].is_number()) return bad(where + " has no numeric 't'");
    m.t = s["t"].get<double>();
    if (s.contains("event")) {
      if (!s["event"].is_string()) return bad(where + ".event is not a string");
      m.event = s["event"].get<std::string>();
    }
    TF_RETURN_IF_ERROR(u64(s, "total_bytes", &m.total_bytes));
    TF_RETURN_IF_ERROR(u64(s, "rss_bytes", &m.rss_bytes));
    if (s.contains("components")) {
      if (!s["components"].is_object()) return bad(where + ".components is not an object");
      for (auto it = s["components"].begin(); it != s["components"].end(); ++it) {
        auto f = index.find(it.key());
        if (f == index.end()) return bad(where + ".components names '" + it.key() + "', absent from 'components'");
        uint64_t v = 0;
        TF_RETURN_IF_ERROR(u64(s["components"], it.key().c_str(), &v));
        if (m.component_bytes.size() <= f->second) m.component_bytes.resize(f->second + 1, 0);
        m.component_bytes[f->second] = v;
      }
    }
    t.samples.push_back(std::move(m));
  }
  return t;
}
}  // namespace

Result<MemoryTimeline> ParseMemoryLog(const std::string& text) {
  try {
    return ParseMemoryLogImpl(text);
  } catch (const std::exception& e) {  // a value nlohmann cannot convert (e.g. out of range)
    return InvalidArgument(std::string("memory log: ") + e.what());
  }
}

std::string MemoryReportHtml(const MemoryTimeline& t, const MemoryReportOptions& options) {
  // ---- groups ----
  std::vector<std::string> groups;
  std::vector<size_t> group_of(t.components.size());
  for (size_t i = 0; i < t.components.size(); ++i) {
    std::string g = options.group_layers ? ComponentGroup(t.components[i]) : t.components[i];
    auto it = std::find(groups.begin(), groups.end(), g);
    group_of[i] = static_cast<size_t>(it - groups.begin());
    if (it == groups.end()) groups.push_back(g);
  }
  const size_t ng = groups.size();

  // ---- chart points: at most max_points, each bucket keeps its highest total ----
  const size_t n = t.samples.size();
  const double tmax = n ? t.samples.back().t : 0;
  const bool by_time = tmax > 0;
  std::vector<size_t> sel;
  const size_t cols = static_cast<size_t>(std::max(2, options.max_points));
  if (n <= cols) {
    for (size_t i = 0; i < n; ++i) sel.push_back(i);
  } else {
    std::vector<long> best(cols, -1);
    for (size_t i = 0; i < n; ++i) {
      size_t b = by_time ? static_cast<size_t>(t.samples[i].t / tmax * (cols - 1)) : i * (cols - 1) / (n - 1);
      b = std::min(b, cols - 1);
      if (best[b] < 0 || t.samples[i].total_bytes > t.samples[best[b]].total_bytes) best[b] = static_cast<long>(i);
    }
    for (long b : best)
      if (b >= 0) sel.push_back(static_cast<size_t>(b));
    if (sel.back() != n - 1) sel.push_back(n - 1);
  }
  std::vector<std::vector<uint64_t>> gv(sel.size(), std::vector<uint64_t>(ng, 0));
  std::vector<uint64_t> group_peak(ng, 0);
  for (size_t k = 0; k < sel.size(); ++k) {
    for (size_t c = 0; c < t.components.size(); ++c) gv[k][group_of[c]] += t.component_at(sel[k], c);
  }
  for (size_t i = 0; i < n; ++i) {  // group peaks over every sample, not only the charted ones
    std::vector<uint64_t> sum(ng, 0);
    for (size_t c = 0; c < t.components.size(); ++c) sum[group_of[c]] += t.component_at(i, c);
    for (size_t g = 0; g < ng; ++g) group_peak[g] = std::max(group_peak[g], sum[g]);
  }

  // ---- scales ----
  const double W = 960, H = 380, L = 86, R = 16, T = 16, B = 44;
  const double pw = W - L - R, ph = H - T - B;
  uint64_t ymax_bytes = std::max<uint64_t>(t.peak_total_bytes, 1);
  bool have_rss = t.peak_rss_bytes > 0;
  for (size_t k : sel) {
    ymax_bytes = std::max(ymax_bytes, t.samples[k].total_bytes);
    ymax_bytes = std::max(ymax_bytes, t.samples[k].rss_bytes);
  }
  bool budget_on_chart = t.budget_bytes > 0 && t.budget_bytes <= 2 * ymax_bytes;
  if (budget_on_chart) ymax_bytes = std::max(ymax_bytes, t.budget_bytes);
  uint64_t step = NiceStep(ymax_bytes * 1.05 / 5);
  uint64_t ytop = (ymax_bytes + step - 1) / step * step;
  if (ytop == 0) ytop = step;
  auto X = [&](size_t k) {
    if (sel.size() < 2) return L;
    double v = by_time ? t.samples[sel[k]].t / tmax : double(k) / (sel.size() - 1);
    return L + v * pw;
  };
  auto Y = [&](double bytes) { return T + ph - bytes / double(ytop) * ph; };

  std::string svg;
  svg += "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " + Fmt("%.0f", W) + " " + Fmt("%.0f", H) +
         "\" role=\"img\" aria-label=\"memory by component over time\">\n";
  // grid + y labels
  for (uint64_t v = 0; v <= ytop; v += step) {
    double y = Y(double(v));
    svg += "<line class=\"grid\" x1=\"" + Fmt("%.1f", L) + "\" x2=\"" + Fmt("%.1f", L + pw) + "\" y1=\"" +
           Fmt("%.1f", y) + "\" y2=\"" + Fmt("%.1f", y) + "\"/>";
    svg += "<text class=\"ylab\" x=\"" + Fmt("%.1f", L - 6) + "\" y=\"" + Fmt("%.1f", y + 4) + "\">" +
           Escape(FormatBytes(v)) + "</text>\n";
  }
  // x labels
  for (int i = 0; i <= 5; ++i) {
    double f = i / 5.0;
    double x = L + f * pw;
    std::string label = by_time ? Fmt("%.3g s", f * tmax) : "#" + std::to_string(size_t(f * (n ? n - 1 : 0)));
    const char* anchor = i == 0 ? " style=\"text-anchor:start\"" : i == 5 ? " style=\"text-anchor:end\"" : "";
    svg += "<text class=\"xlab\"" + std::string(anchor) + " x=\"" + Fmt("%.1f", x) + "\" y=\"" + Fmt("%.1f", T + ph + 18) + "\">" +
           Escape(label) + "</text>";
  }
  svg += "<text class=\"xlab\" x=\"" + Fmt("%.1f", L + pw / 2) + "\" y=\"" + Fmt("%.1f", H - 6) + "\">" +
         (by_time ? "time since monitoring started" : "sample") + "</text>\n";
  // stacked step areas
  if (sel.size() >= 1) {
    std::vector<uint64_t> below(sel.size(), 0);
    for (size_t g = 0; g < ng; ++g) {
      std::string pts;
      auto add = [&](double x, double y) { pts += Fmt("%.1f", x) + "," + Fmt("%.1f", y) + " "; };
      for (size_t k = 0; k < sel.size(); ++k) {
        double top = Y(double(below[k] + gv[k][g]));
        add(X(k), top);
        add(k + 1 < sel.size() ? X(k + 1) : X(k), top);
      }
      for (size_t k = sel.size(); k-- > 0;) {
        double bot = Y(double(below[k]));
        add(k + 1 < sel.size() ? X(k + 1) : X(k), bot);
        add(X(k), bot);
      }
      svg += "<polygon fill=\"" + std::string(kPalette[g % std::size(kPalette)]) + "\" points=\"" + pts + "\"><title>" +
             Escape(groups[g]) + ": peak " + Escape(FormatBytes(group_peak[g])) + "</title></polygon>\n";
      for (size_t k = 0; k < sel.size(); ++k) below[k] += gv[k][g];
    }
  }
  // RSS line
  if (have_rss && !sel.empty()) {
    std::string pts;
    for (size_t k = 0; k < sel.size(); ++k) {
      double y = Y(double(t.samples[sel[k]].rss_bytes));
      pts += Fmt("%.1f", X(k)) + "," + Fmt("%.1f", y) + " ";
      if (k + 1 < sel.size()) pts += Fmt("%.1f", X(k + 1)) + "," + Fmt("%.1f", y) + " ";
    }
    svg += "<polyline class=\"rss\" points=\"" + pts + "\"><title>process RSS: peak " +
           Escape(FormatBytes(t.peak_rss_bytes)) + "</title></polyline>\n";
  }
  if (budget_on_chart) {
    double y = Y(double(t.budget_bytes));
    svg += "<line class=\"budget\" x1=\"" + Fmt("%.1f", L) + "\" x2=\"" + Fmt("%.1f", L + pw) + "\" y1=\"" +
           Fmt("%.1f", y) + "\" y2=\"" + Fmt("%.1f", y) + "\"><title>budget " + Escape(FormatBytes(t.budget_bytes)) +
           "</title></line>\n";
  }
  // labelled marks (Mark() calls, refusals), at most 40
  int marks = 0;
  for (size_t i = 0; i < n && marks < 40 && by_time; ++i) {
    const auto& e = t.samples[i].event;
    if (!IsMarkEvent(e)) continue;
    double x = L + t.samples[i].t / tmax * pw;
    bool refused = e.rfind("refused ", 0) == 0;
    svg += "<line class=\"" + std::string(refused ? "refused" : "mark") + "\" x1=\"" + Fmt("%.1f", x) + "\" x2=\"" +
           Fmt("%.1f", x) + "\" y1=\"" + Fmt("%.1f", T) + "\" y2=\"" + Fmt("%.1f", T + ph) + "\"><title>" +
           Escape(e) + Fmt(" at %.4g s", t.samples[i].t) + "</title></line>\n";
    ++marks;
  }
  svg += "<rect class=\"frame\" x=\"" + Fmt("%.1f", L) + "\" y=\"" + Fmt("%.1f", T) + "\" width=\"" +
         Fmt("%.1f", pw) + "\" height=\"" + Fmt("%.1f", ph) + "\"/>\n</svg>\n";

  // ---- legend ----
  std::string legend = "<ul class=\"legend\">";
  for (size_t g = 0; g < ng; ++g)
    legend += "<li><span class=\"sw\" style=\"background:" + std::string(kPalette[g % std::size(kPalette)]) +
              "\"></span>" + Escape(groups[g]) + " <small>(peak " + Escape(FormatBytes(group_peak[g])) +
              ")</small></li>";
  if (have_rss) legend += "<li><span class=\"sw line\"></span>process RSS</li>";
  if (budget_on_chart) legend += "<li><span class=\"sw dash\"></span>budget</li>";
  legend += "</ul>\n";

  // ---- peak table ----
  std::vector<size_t> order(t.components.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto peak_of = [&](size_t i) { return i < t.peak_component_bytes.size() ? t.peak_component_bytes[i] : 0; };
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return peak_of(a) > peak_of(b); });
  std::string table =
      "<table><thead><tr><th>component</th><th>group</th><th>peak</th><th>final</th><th>peak / peak total</th>"
      "</tr></thead><tbody>\n";
  for (size_t i : order) {
    uint64_t final_bytes = n ? t.component_at(n - 1, i) : 0;
    double share = t.peak_total_bytes ? 100.0 * peak_of(i) / t.peak_total_bytes : 0;
    table += "<tr><td>" + Escape(t.components[i]) + "</td><td>" + Escape(groups[group_of[i]]) + "</td><td>" +
             Escape(FormatBytes(peak_of(i))) + "</td><td>" + Escape(FormatBytes(final_bytes)) + "</td><td>" +
             Fmt("%.1f%%", share) + "</td></tr>\n";
  }
  table += "</tbody></table>\n";

  // ---- summary ----
  std::string summary = "<dl>";
  auto item = [&](const std::string& k, const std::string& v) {
    summary += "<dt>" + Escape(k) + "</dt><dd>" + Escape(v) + "</dd>";
  };
  item("samples", std::to_string(n) + (t.dropped_samples ? " (" + std::to_string(t.dropped_samples) + " not stored)" : ""));
  item("duration", Fmt("%.4g s", tmax));
  item("peak ledger total", FormatBytes(t.peak_total_bytes));
  item("peak process RSS", have_rss ? FormatBytes(t.peak_rss_bytes) : "not sampled");
  item("budget", t.budget_bytes ? FormatBytes(t.budget_bytes) +
                                      Fmt(" (peak %.1f%%)", 100.0 * t.peak_total_bytes / t.budget_bytes)
                                : "unlimited");
  summary += "</dl>\n";

  std::string html =
      "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<title>" + Escape(options.title) +
      "</title>\n<style>\n"
      "body{font:14px system-ui,sans-serif;margin:24px;color:#222;max-width:1000px}\n"
      "h1{font-size:20px}h2{font-size:16px;margin-top:28px}\n"
      "dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px}dt{color:#666}dd{margin:0}\n"
      "svg{width:100%;height:auto;border:1px solid #ddd;background:#fff}\n"
      ".grid{stroke:#eee}.frame{fill:none;stroke:#999}.ylab{font-size:11px;text-anchor:end;fill:#555}\n"
      ".xlab{font-size:11px;text-anchor:middle;fill:#555}\n"
      ".rss{fill:none;stroke:#222;stroke-width:1.5}.budget{stroke:#d62728;stroke-width:1.5;stroke-dasharray:6 4}\n"
      ".mark{stroke:#555;stroke-dasharray:2 3}.refused{stroke:#d62728;stroke-width:2}\n"
      ".legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:4px 16px}\n"
      ".sw{display:inline-block;width:12px;height:12px;margin-right:6px;vertical-align:-1px}\n"
      ".sw.line{height:2px;background:#222;vertical-align:3px}\n"
      ".sw.dash{height:0;border-top:2px dashed #d62728;vertical-align:3px}\n"
      "table{border-collapse:collapse}th,td{padding:3px 10px;border-bottom:1px solid #eee;text-align:right}\n"
      "th:first-child,td:first-child,th:nth-child(2),td:nth-child(2){text-align:left}\n"
      "</style></head><body>\n<h1>" +
      Escape(options.title) + "</h1>\n" + summary + "<h2>Bytes by component over time</h2>\n" + svg + legend +
      "<h2>Peak by component</h2>\n" + table + "</body></html>\n";
  return html;
}

Status WriteMemoryLog(const MemoryTimeline& timeline, const std::string& path) {
  return WriteText(path, MemoryLogJson(timeline));
}

Status WriteMemoryReport(const MemoryTimeline& timeline, const std::string& path, const MemoryReportOptions& options) {
  return WriteText(path, MemoryReportHtml(timeline, options));
}

}  // namespace tabfit
