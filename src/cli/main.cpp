// tabfit: the command-line program.
//
//   tabfit run [-m MODEL] [-p PROMPT] [-n N] [--temp T] [-t THREADS] ...
//   tabfit inspect [MODEL]
//
// Errors print one line "error: ..." (what, where, why, what to do) and exit
// non-zero; the exit code tells the kind of failure (see ExitCodeFor).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"

namespace tabfit::cli {

int ExitCodeFor(const Status& s) {
  switch (s.code()) {
    case StatusCode::kOk: return 0;
    case StatusCode::kInvalidArgument: return 2;
    case StatusCode::kNotFound:
    case StatusCode::kIoError: return 3;
    case StatusCode::kCorruptData: return 4;
    case StatusCode::kUnsupported: return 5;
    case StatusCode::kOutOfMemory:
    case StatusCode::kBufferLimit: return 6;
    case StatusCode::kOutOfRange: return 7;
    case StatusCode::kCancelled: return 130;
    default: return 1;
  }
}

int Fail(const Status& s) {
  std::fflush(stdout);
  std::fprintf(stderr, "\nerror: %s\n", s.message().c_str());
  return ExitCodeFor(s);
}

std::string DefaultModelPath() {
  // The bundled demo model: next to the source tree, or ../models beside the binary.
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
      fs::path cand = dir / "models" / "tabfit-demo-8m-f16.gguf";
      if (fs::exists(cand)) return cand.string();
    }
  }
#ifdef TABFIT_SOURCE_DIR
  return std::string(TABFIT_SOURCE_DIR) + "/models/tabfit-demo-8m-f16.gguf";
#else
  return "models/tabfit-demo-8m-f16.gguf";
#endif
}

namespace {
std::vector<std::pair<int, Command (*)()>>& Registry() {
  static std::vector<std::pair<int, Command (*)()>> r;
  return r;
}
}  // namespace

bool RegisterCommand(Command (*factory)(), int order) {
  Registry().emplace_back(order, factory);
  return true;
}

std::vector<Command> AllCommands() {
  auto r = Registry();
  std::stable_sort(r.begin(), r.end(), [](auto& a, auto& b) { return a.first < b.first; });
  std::vector<Command> v;
  for (auto& [order, f] : r) v.push_back(f());
  return v;
}

}  // namespace tabfit::cli

int main(int argc, char** argv) {
  using namespace tabfit::cli;
  CLI::App app{"tabfit — run large language models inside a browser tab's memory, and natively"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "tabfit 0.1.0");
  std::vector<Command> commands = AllCommands();
  std::vector<CLI::App*> subs;
  for (auto& c : commands) subs.push_back(c.setup(app));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  for (size_t i = 0; i < commands.size(); ++i) {
    if (subs[i]->parsed()) return commands[i].run();
  }
  return 2;
}
