// `tabfit memory-report`: renders a memory_log.json (written by the memory
// monitor, or downloaded from the demo page) as a self-contained HTML report.
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "memory/report.h"

namespace tabfit::cli {

namespace {

Command MakeMemoryReportCommand() {
  struct State {
    std::string log;
    std::string out;
    std::string title;
    bool no_group = false;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand("memory-report", "render a memory_log.json as an HTML report "
                                                        "(stacked bytes by component over time, peak table)");
    sub->add_option("log", st->log, "memory_log.json (from the memory monitor or the demo page)")->required();
    sub->add_option("-o,--output", st->out, "HTML file to write (default: LOG with .html)");
    sub->add_option("--title", st->title, "report title (default: the log's file name)");
    sub->add_flag("--no-group", st->no_group, "chart every layer separately instead of one 'layers' band");
    return sub;
  };
  c.run = [st]() -> int {
    std::ifstream in(st->log, std::ios::binary);
    if (!in) return Fail(NotFound(st->log + ": cannot open the memory log"));
    std::stringstream ss;
    ss << in.rdbuf();
    auto timeline = ParseMemoryLog(ss.str());
    if (!timeline.ok()) return Fail(timeline.status().WithContext(st->log));
    std::string out = st->out;
    if (out.empty()) {
      out = st->log;
      auto dot = out.rfind('.');
      auto slash = out.rfind('/');
      if (dot != std::string::npos && (slash == std::string::npos || dot > slash)) out.resize(dot);
      out += ".html";
    }
    MemoryReportOptions o;
    o.title = st->title.empty() ? "tabfit memory report: " + st->log : st->title;
    o.group_layers = !st->no_group;
    Status s = WriteMemoryReport(*timeline, out, o);
    if (!s.ok()) return Fail(s);
    std::printf("%s: %zu samples, peak %s -> %s\n", st->log.c_str(), timeline->samples.size(),
                FormatBytes(timeline->peak_total_bytes).c_str(), out.c_str());
    return 0;
  };
  return c;
}

const bool kRegistered = RegisterCommand(MakeMemoryReportCommand, 45);

}  // namespace

}  // namespace tabfit::cli
