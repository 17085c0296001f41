// `tabfit serve`: the demo page, the JS package and models over HTTP with the
// cross-origin-isolation headers wasm threads need (see serve.h).
#include <cstdio>
#include <filesystem>

#include "cli/commands.h"
#include "cli/serve.h"

namespace tabfit::cli {

namespace {

// web/ next to the source tree, or in a parent of the binary's folder.
std::string DefaultWebRoot() {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (fs::path dir = exe.parent_path(); !dir.empty() && dir != dir.root_path(); dir = dir.parent_path())
      if (fs::is_directory(dir / "web" / "demo", ec)) return (dir / "web").string();
  }
#ifdef TABFIT_SOURCE_DIR
  return std::string(TABFIT_SOURCE_DIR) + "/web";
#else
  return "web";
#endif
}

Command MakeServeCommand() {
  auto opts = std::make_shared<ServeOptions>();
  opts->web_root.clear();    // resolved in run(): the source tree's web/
  opts->models_dir.clear();  // resolved in run(): the bundled model's folder
  auto quiet = std::make_shared<bool>(false);
  Command c;
  c.setup = [opts, quiet](CLI::App& app) {
    CLI::App* sub = app.add_subcommand(
        "serve", "serve the demo page, the JS package and models over HTTP (COOP/COEP set, Range supported)");
    sub->add_option("--host", opts->host, "address to listen on")->default_val("127.0.0.1");
    sub->add_option("--port", opts->port, "port (0 = any free port)")->default_val(8080);
    sub->add_option("--web-root", opts->web_root, "folder served at / (default: the source tree's web/)");
    sub->add_option("--models", opts->models_dir, "folder served at /models/ and listed at /api/models "
                                                 "(default: the folder of the bundled demo model)");
    sub->add_flag("-q,--quiet", *quiet, "do not log requests");
    return sub;
  };
  c.run = [opts, quiet]() -> int {
    ServeOptions o = *opts;
    o.log_requests = !*quiet;
    if (o.web_root.empty()) o.web_root = DefaultWebRoot();
    if (o.models_dir.empty()) o.models_dir = std::filesystem::path(DefaultModelPath()).parent_path().string();
    Status s = RunServe(o, [&o](int port) {
      std::printf("tabfit serve: http://%s:%d/demo/  (web root %s, models %s; Ctrl-C stops)\n", o.host.c_str(), port,
                  o.web_root.c_str(), o.models_dir.c_str());
      std::fflush(stdout);
    });
    return s.ok() ? 0 : Fail(s);
  };
  return c;
}

const bool kRegistered = RegisterCommand(MakeServeCommand, 40);

}  // namespace

}  // namespace tabfit::cli
