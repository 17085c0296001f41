// decode_bench: loads a GGUF file through the C API and times greedy decoding under
// Node (the same engine code as the browser build, without the browser). For
// profiling: node --cpu-prof decode_bench.js MODEL [tokens] [n_ctx].
// Built with -DTABFIT_WASM_KERNEL_BENCH=ON (see CMakeLists.txt). Not a test.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "c_api/tabfit_c.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: decode_bench MODEL.gguf [tokens=32] [n_ctx=4096]\n");
    return 2;
  }
  const int tokens = argc > 2 ? std::atoi(argv[2]) : 32;
  const int n_ctx = argc > 3 ? std::atoi(argv[3]) : 4096;
  tabfit_engine* e = nullptr;
  const std::string opts = "{\"n_ctx\":" + std::to_string(n_ctx) + "}";
  if (tabfit_engine_create(opts.c_str(), &e) != TABFIT_OK) {
    std::fprintf(stderr, "create: %s\n", e ? tabfit_last_error(e) : "out of memory");
    return 1;
  }
  auto t0 = std::chrono::steady_clock::now();
  if (tabfit_engine_load_file(e, argv[1], nullptr, nullptr) != TABFIT_OK) {
    std::fprintf(stderr, "load: %s\n", tabfit_last_error(e));
    return 1;
  }
  const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string gen = "{\"max_tokens\":" + std::to_string(tokens) + ",\"temperature\":0,\"stop_at_eos\":false}";
  if (tabfit_generate_begin(e, "The king said", gen.c_str()) != TABFIT_OK) {
    std::fprintf(stderr, "generate: %s\n", tabfit_last_error(e));
    return 1;
  }
  int done = 0, n = 0;
  std::chrono::steady_clock::time_point first, last;
  while (!done) {
    const char* piece = nullptr;
    int32_t tok = -1;
    if (tabfit_generate_next(e, &piece, &tok, &done) != TABFIT_OK) {
      std::fprintf(stderr, "next: %s\n", tabfit_last_error(e));
      return 1;
    }
    if (tok >= 0) {
      last = std::chrono::steady_clock::now();
      if (n++ == 0) first = last;
    }
  }
  const char* stats = nullptr;
  tabfit_generate_end(e, &stats);
  const double span = std::chrono::duration<double>(last - first).count();
  std::printf("load %.2f s; %d tokens; decode %.2f tok/s (first..last); stats %s\n", load_s, n,
              n > 1 ? (n - 1) / span : 0.0, stats ? stats : "");
  tabfit_engine_destroy(e);
  return 0;
}
