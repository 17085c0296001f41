// `tabfit bench`: prompt-processing (pp) and generation (tg) speed the way
// llama-bench measures them (separate runs on random tokens, repetitions,
// mean ± sd), weight bytes read per generated token, the effective bandwidth
// that implies, this machine's measured streaming-read bandwidth, and memory.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "cli/commands.h"
#include "core/rss.h"
#include "model/llama/llama_model.h"
#include "model/package/package.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit::cli {

namespace {

double Now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

struct Stat {
  std::vector<double> samples;
  double mean() const {
    double s = 0;
    for (double x : samples) s += x;
    return samples.empty() ? 0 : s / samples.size();
  }
  double sd() const {
    if (samples.size() < 2) return 0;
    double m = mean(), s = 0;
    for (double x : samples) s += (x - m) * (x - m);
    return std::sqrt(s / (samples.size() - 1));
  }
};

// Last-level cache size from sysfs (0 if unknown).
uint64_t LastLevelCacheBytes() {
  uint64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    std::ifstream in("/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i) + "/size");
    std::string s;
    if (!(in >> s) || s.empty()) continue;
    uint64_t mult = 1;
    if (s.back() == 'K') mult = 1024, s.pop_back();
    else if (s.back() == 'M') mult = 1024 * 1024, s.pop_back();
    best = std::max<uint64_t>(best, std::strtoull(s.c_str(), nullptr, 10) * mult);
  }
  return best;
}

// Streaming read of `words` words at p: the range is cut into 8 streams read
// side by side, one 64-byte line of each per step (several concurrent streams
// per core, as a mat-vec's row tiles read, keep more lines in flight than one).
uint64_t SumRange(const uint64_t* p, size_t words) {
  constexpr int kStreams = 8;
  const size_t per = words / kStreams / 8 * 8;
  uint64_t a[kStreams] = {};
  for (size_t i = 0; i < per; i += 8) {
    for (int s = 0; s < kStreams; ++s) {
      const uint64_t* q = p + s * per + i;
      a[s] += (q[0] + q[1]) + (q[2] + q[3]) + (q[4] + q[5]) + (q[6] + q[7]);
    }
  }
  uint64_t sum = 0;
  for (uint64_t x : a) sum += x;
  return sum;
}

// Words SumRange reads of a range of `words`.
size_t WordsRead(size_t words) { return words / 8 / 8 * 8 * 8; }

volatile uint64_t g_bandwidth_sink = 0;

// Best-of-`passes` read bandwidth in bytes/s with `threads` threads each
// summing its own slice of `buf` (all threads start together).
double ReadBandwidth(const uint64_t* buf, size_t words, int threads, int passes) {
  double best = 0;
  std::atomic<uint64_t> sink{0};
  for (int pass = 0; pass < passes; ++pass) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> ts;
    const size_t per = words / threads / 8 * 8;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        sink.fetch_add(SumRange(buf + t * per, per), std::memory_order_relaxed);
      });
    }
    while (ready.load() < threads) {
    }
    double t0 = Now();
    go.store(true, std::memory_order_release);
    for (auto& th : ts) th.join();
    double dt = Now() - t0;
    if (dt > 0) best = std::max(best, static_cast<double>(WordsRead(per) * threads * 8) / dt);
  }
  g_bandwidth_sink = sink.load();  // keeps the sums observable
  return best;
}

struct Bandwidth {
  uint64_t buffer_bytes = 0;
  double one_thread = 0;
  double n_threads = 0;
  int threads = 0;
};

Bandwidth MeasureBandwidth(int threads) {
  Bandwidth b;
  const uint64_t llc = LastLevelCacheBytes();
  b.buffer_bytes = std::clamp<uint64_t>(llc * 16, 256ull << 20, 1ull << 30);
  b.threads = threads;
  const size_t words = b.buffer_bytes / 8;
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  for (size_t i = 0; i < words; ++i) buf[i] = i * 0x9E3779B97F4A7C15ull;  // touch every page
  b.one_thread = ReadBandwidth(buf.get(), words, 1, 3);
  b.n_threads = threads > 1 ? ReadBandwidth(buf.get(), words, threads, 5) : b.one_thread;
  return b;
}

std::string Gbs(double bytes_per_s) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GB/s", bytes_per_s / 1e9);
  return s;
}

Command MakeBenchCommand() {
  struct State {
    EngineFlags flags;
    int n_prompt = 64;
    int n_gen = 64;
    int reps = 3;
    uint64_t seed = 1234;
    bool json = false;
    bool no_bandwidth = false;
  };
  auto st = std::make_shared<State>();
  Command c;
  c.setup = [st](CLI::App& app) {
    CLI::App* sub = app.add_subcommand(
        "bench", "measure prompt (pp) and generation (tg) tokens/s, bytes per token, bandwidth and memory");
    st->flags.Add(sub);
    sub->add_option("-p,--n-prompt", st->n_prompt, "prompt tokens per pp run (0: skip pp)")->default_val(64);
    sub->add_option("-n,--n-gen", st->n_gen, "generated tokens per tg run (0: skip tg)")->default_val(64);
    sub->add_option("-r,--repetitions", st->reps, "runs of each test (after one warm-up)")->default_val(3);
    sub->add_option("--seed", st->seed, "seed of the random token ids")->default_val(1234);
    sub->add_flag("--json", st->json, "print one JSON object instead of the table");
    sub->add_flag("--no-bandwidth", st->no_bandwidth, "skip measuring the machine's read bandwidth");
    return sub;
  };
  c.run = [st]() -> int {
    if (st->n_prompt < 0 || st->n_gen < 0) return Fail(InvalidArgument("-p and -n must be >= 0"));
    if (st->reps < 1) return Fail(InvalidArgument("-r must be >= 1"));
    const bool ctx_given = st->flags.n_ctx > 0;
    auto opts = st->flags.ToOptions();
    if (!opts.ok()) return Fail(opts.status());
    if (!ctx_given) opts->n_ctx = std::max(st->n_prompt, st->n_gen) + 1;
    if (st->flags.n_batch == 64 && st->n_prompt > 64) opts->n_batch = st->n_prompt;  // one batch, as llama-bench's -b 2048
    const std::string& model = st->flags.model;

    auto src = OpenModelSource(model);
    if (!src.ok()) return Fail(src.status());
    double t_load = Now();
    auto eng = Engine::Load(std::move(*src), *opts);
    if (!eng.ok()) return Fail(eng.status());
    t_load = Now() - t_load;
    Engine& e = **eng;
    if (std::max(st->n_prompt, st->n_gen) > e.context_size()) {
      return Fail(InvalidArgument("-p/-n exceed the context size " + std::to_string(e.context_size()) + "; raise -c"));
    }
    const LlamaModel& lm = e.model();
    const LlamaHParams hp = lm.hparams();  // copies: the engine is freed before printing
    const uint64_t weight_bytes = lm.weight_bytes();

    // Bytes of weights one decode step reads: every matrix once, one embedding
    // row, the norms; a tied lm_head reads the whole embedding table.
    uint64_t table = 0, tok_embd = 0;
    bool has_output = false;
    std::map<std::string, uint64_t> by_type;
    for (const auto& [name, type, bytes] : lm.WeightTable()) {
      table += bytes;
      by_type[std::string(TensorTypeName(type))] += bytes;
      if (name.rfind("token_embd", 0) == 0) tok_embd = bytes;
      if (name.rfind("output.", 0) == 0) has_output = true;
    }
    const uint64_t norms = weight_bytes > table ? weight_bytes - table : 0;
    const uint64_t bytes_per_token =
        table - tok_embd + tok_embd / std::max(1, hp.n_vocab) + (has_output ? 0 : tok_embd) + norms;

    std::mt19937_64 rng(st->seed);
    auto random_token = [&]() { return static_cast<int32_t>(rng() % static_cast<uint64_t>(hp.n_vocab)); };
    auto run_pp = [&]() -> Result<double> {
      std::vector<int32_t> toks(st->n_prompt);
      for (auto& t : toks) t = random_token();
      e.ResetContext();
      double t0 = Now();
      TF_RETURN_IF_ERROR(e.Eval(toks));
      return Now() - t0;
    };
    auto run_tg = [&](int n) -> Result<double> {
      e.ResetContext();
      double t0 = Now();
      for (int i = 0; i < n; ++i) TF_RETURN_IF_ERROR(e.Eval({random_token()}));
      return Now() - t0;
    };

    // Warm-up (as llama-bench): a short prompt and one generated token.
    if (st->n_prompt > 0) {
      auto w = run_pp();
      if (!w.ok()) return Fail(w.status());
    }
    if (auto w = run_tg(1); !w.ok()) return Fail(w.status());

    Stat pp, tg;
    for (int r = 0; r < st->reps && st->n_prompt > 0; ++r) {
      auto dt = run_pp();
      if (!dt.ok()) return Fail(dt.status());
      pp.samples.push_back(st->n_prompt / *dt);
    }
    for (int r = 0; r < st->reps && st->n_gen > 0; ++r) {
      auto dt = run_tg(st->n_gen);
      if (!dt.ok()) return Fail(dt.status());
      tg.samples.push_back(st->n_gen / *dt);
    }
    const LedgerSnapshot snap = e.ledger().Snapshot();
    const uint64_t rss_peak = ProcessPeakResidentBytes();
    const uint64_t rss_now = ProcessResidentBytes();
    const int threads = e.threads();
    const int n_ctx = e.context_size();
    eng->reset();  // free the model before the bandwidth buffer

    Bandwidth bw;
    if (!st->no_bandwidth) bw = MeasureBandwidth(threads);
    const double eff = bytes_per_token * tg.mean();
    const double ratio = bw.n_threads > 0 ? eff / bw.n_threads : 0;

    if (st->json) {
      nlohmann::json j;
      j["model"] = model;
      j["arch"] = hp.arch;
      j["weight_bytes"] = weight_bytes;
      j["weight_type"] = st->flags.weight_type.empty() ? "file" : st->flags.weight_type;
      j["weight_bytes_by_type"] = by_type;
      j["threads"] = threads;
      j["n_ctx"] = n_ctx;
      j["n_prompt"] = st->n_prompt;
      j["n_gen"] = st->n_gen;
      j["repetitions"] = st->reps;
      j["load_seconds"] = t_load;
      j["pp"] = {{"tokens_per_second", pp.mean()}, {"sd", pp.sd()}, {"samples", pp.samples}};
      j["tg"] = {{"tokens_per_second", tg.mean()}, {"sd", tg.sd()}, {"samples", tg.samples}};
      j["weight_bytes_per_token"] = bytes_per_token;
      j["effective_bandwidth_bytes_per_second"] = eff;
      if (!st->no_bandwidth) {
        j["machine_read_bandwidth"] = {{"buffer_bytes", bw.buffer_bytes},
                                       {"one_thread_bytes_per_second", bw.one_thread},
                                       {"threads", bw.threads},
                                       {"n_threads_bytes_per_second", bw.n_threads}};
        j["bandwidth_ratio"] = ratio;
      }
      j["memory"] = {{"ledger_peak_bytes", snap.total_peak},
                     {"ledger_current_bytes", snap.total_current},
                     {"rss_bytes", rss_now},
                     {"rss_peak_bytes", rss_peak}};
      std::printf("%s\n", j.dump(2).c_str());
      return 0;
    }
    std::printf("model: %s (%s, %d layers, embd %d, vocab %d)\n", model.c_str(), hp.arch.c_str(), hp.n_layer, hp.n_embd,
                hp.n_vocab);
    std::printf("weights: %s", FormatBytes(weight_bytes).c_str());
    for (const auto& [t, b] : by_type) std::printf("  %s %s", t.c_str(), FormatBytes(b).c_str());
    std::printf("\nthreads %d, context %d, %d repetitions after a warm-up, load %.2f s\n\n", threads, n_ctx, st->reps,
                t_load);
    std::printf("| %-8s | %16s |\n", "test", "tokens/s");
    std::printf("|----------|------------------|\n");
    if (st->n_prompt > 0) std::printf("| pp%-6d | %8.2f ± %5.2f |\n", st->n_prompt, pp.mean(), pp.sd());
    if (st->n_gen > 0) std::printf("| tg%-6d | %8.2f ± %5.2f |\n", st->n_gen, tg.mean(), tg.sd());
    std::printf("\nweight bytes read per generated token: %s\n", FormatBytes(bytes_per_token).c_str());
    std::printf("effective bandwidth (bytes/token x tg tokens/s): %s\n", Gbs(eff).c_str());
    if (!st->no_bandwidth) {
      std::printf("machine read bandwidth (streaming %s): 1 thread %s, %d threads %s\n",
                  FormatBytes(bw.buffer_bytes).c_str(), Gbs(bw.one_thread).c_str(), bw.threads,
                  Gbs(bw.n_threads).c_str());
      std::printf("ratio effective / machine (%d threads): %.0f%%\n", bw.threads, ratio * 100);
    }
    std::printf("memory: ledger peak %s, process resident %s, peak resident %s\n", FormatBytes(snap.total_peak).c_str(),
                FormatBytes(rss_now).c_str(), FormatBytes(rss_peak).c_str());
    return 0;
  };
  return c;
}

}  // namespace

static const bool kRegistered = RegisterCommand(MakeBenchCommand, 30);

}  // namespace tabfit::cli
