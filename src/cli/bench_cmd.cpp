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
#include <string>
#include <vector>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#endif

#include "cli/commands.h"
#include "core/rss.h"
#include "model/llama/llama_model.h"
#include "loader/http_source.h"
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

// How one thread reads its slice: `streams` interleaved sequential streams (the
// slice cut into that many parts, read side by side, as a mat-vec's row tiles
// read), optionally with software prefetch `prefetch` bytes ahead in each.
struct ReadPattern {
  int streams;
  int prefetch;  // bytes; 0 = hardware prefetchers only
  bool wide;     // 256-bit loads (x86 AVX2); else portable 64-bit words
  const char* name;
};

// Portable: 64-bit words (the compiler vectorizes with the baseline ISA).
uint64_t SumWords(const uint8_t* p, size_t bytes, int streams) {
  const size_t per = bytes / streams / 64 * 64;
  uint64_t a[16] = {};
  for (size_t i = 0; i < per; i += 64) {
    for (int s = 0; s < streams; ++s) {
      uint64_t q[8];
      std::memcpy(q, p + s * per + i, 64);
      a[s] += (q[0] + q[1]) + (q[2] + q[3]) + (q[4] + q[5]) + (q[6] + q[7]);
    }
  }
  uint64_t sum = 0;
  for (uint64_t x : a) sum += x;
  return sum;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TABFIT_BENCH_WIDE_READS 1
// 256-bit loads, two cache lines per stream per step, one accumulator per stream.
template <int S>
__attribute__((target("avx2"))) uint64_t SumWide(const uint8_t* p, size_t bytes, int prefetch) {
  const size_t per = bytes / S / 128 * 128;
  __m256i acc[S];
  for (int s = 0; s < S; ++s) acc[s] = _mm256_setzero_si256();
  for (size_t i = 0; i < per; i += 128) {
    for (int s = 0; s < S; ++s) {
      const uint8_t* q = p + s * per + i;
      if (prefetch) {
        _mm_prefetch(reinterpret_cast<const char*>(q + prefetch), _MM_HINT_T0);
        _mm_prefetch(reinterpret_cast<const char*>(q + prefetch + 64), _MM_HINT_T0);
      }
      const __m256i* v = reinterpret_cast<const __m256i*>(q);
      const __m256i x = _mm256_xor_si256(_mm256_loadu_si256(v), _mm256_loadu_si256(v + 1));
      const __m256i y = _mm256_xor_si256(_mm256_loadu_si256(v + 2), _mm256_loadu_si256(v + 3));
      acc[s] = _mm256_add_epi64(acc[s], _mm256_add_epi64(x, y));
    }
  }
  __m256i t = acc[0];
  for (int s = 1; s < S; ++s) t = _mm256_add_epi64(t, acc[s]);
  uint64_t o[4];
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), t);
  return o[0] + o[1] + o[2] + o[3];
}
__attribute__((target("avx2"))) uint64_t SumWideDispatch(const uint8_t* p, size_t bytes, int streams, int prefetch) {
  switch (streams) {
    case 1: return SumWide<1>(p, bytes, prefetch);
    case 2: return SumWide<2>(p, bytes, prefetch);
    case 4: return SumWide<4>(p, bytes, prefetch);
    default: return SumWide<8>(p, bytes, prefetch);
  }
}
#endif

uint64_t SumSlice(const ReadPattern& rp, const uint8_t* p, size_t bytes) {
#if defined(TABFIT_BENCH_WIDE_READS)
  if (rp.wide) return SumWideDispatch(p, bytes, rp.streams, rp.prefetch);
#endif
  return SumWords(p, bytes, rp.streams);
}

// Bytes SumSlice reads of a slice of `bytes` (whole steps of every stream).
size_t BytesRead(const ReadPattern& rp, size_t bytes) {
  const size_t step = rp.wide ? 128 : 64;
  return bytes / rp.streams / step * step * rp.streams;
}

volatile uint64_t g_bandwidth_sink = 0;

// Best-of-`passes` read bandwidth in bytes/s with `threads` threads each
// reading its own slice of `buf` with pattern `rp` (all threads start together;
// the time is from the start signal to the last thread's end).
double ReadBandwidth(const ReadPattern& rp, const uint8_t* buf, size_t bytes, int threads, int passes) {
  double best = 0;
  std::atomic<uint64_t> sink{0};
  const size_t per = bytes / threads / 4096 * 4096;
  for (int pass = 0; pass < passes; ++pass) {
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> ts;
    for (int t = 0; t < threads; ++t) {
      ts.emplace_back([&, t] {
        ready.fetch_add(1);
        while (!go.load(std::memory_order_acquire)) {
        }
        sink.fetch_add(SumSlice(rp, buf + t * per, per), std::memory_order_relaxed);
      });
    }
    while (ready.load() < threads) {
    }
    double t0 = Now();
    go.store(true, std::memory_order_release);
    for (auto& th : ts) th.join();
    double dt = Now() - t0;
    if (dt > 0) best = std::max(best, static_cast<double>(BytesRead(rp, per) * threads) / dt);
  }
  g_bandwidth_sink = sink.load();  // keeps the sums observable
  return best;
}

struct Bandwidth {
  uint64_t buffer_bytes = 0;
  double one_thread = 0;
  double n_threads = 0;
  int threads = 0;
  std::string one_thread_pattern, n_threads_pattern;
};

// The machine's streaming-read ceiling: the best rate of several read patterns
// (1-8 interleaved streams per thread, 256-bit loads where the CPU has AVX2,
// with and without software prefetch -- the kernels use both), each the best of
// a few passes over a buffer of 16x the last-level cache (256 MiB..1 GiB).
// n_threads_only: skip the 1-thread figure (the probes between tg runs).
Bandwidth MeasureBandwidth(int threads, bool n_threads_only = false) {
  Bandwidth b;
  const uint64_t llc = LastLevelCacheBytes();
  b.buffer_bytes = std::clamp<uint64_t>(llc * 16, 256ull << 20, 1ull << 30);
  b.threads = threads;
  std::unique_ptr<uint64_t[]> words(new uint64_t[b.buffer_bytes / 8]);
  for (size_t i = 0; i < b.buffer_bytes / 8; ++i) words[i] = i * 0x9E3779B97F4A7C15ull;  // touch every page
  const auto* buf = reinterpret_cast<const uint8_t*>(words.get());
  std::vector<ReadPattern> patterns = {{8, 0, false, "8 streams, 64-bit words"}};
#if defined(TABFIT_BENCH_WIDE_READS)
  if (__builtin_cpu_supports("avx2")) {
    patterns = {{1, 4096, true, "1 stream, 256-bit loads, prefetch 4 KiB ahead"},
                {2, 2048, true, "2 streams, 256-bit loads, prefetch 2 KiB ahead"},
                {4, 1024, true, "4 streams, 256-bit loads, prefetch 1 KiB ahead"},
                {4, 0, true, "4 streams, 256-bit loads"},
                {8, 0, true, "8 streams, 256-bit loads"},
                {8, 0, false, "8 streams, 64-bit words"}};
  }
#endif
  auto best_of = [&](int n, int passes, std::string* which) {
    double best = 0;
    for (const ReadPattern& rp : patterns) {
      const double v = ReadBandwidth(rp, buf, b.buffer_bytes, n, passes);
      if (v > best) {
        best = v;
        *which = rp.name;
      }
    }
    return best;
  };
  if (n_threads_only) {
    b.n_threads = best_of(threads, 3, &b.n_threads_pattern);
    return b;
  }
  b.one_thread = best_of(1, 3, &b.one_thread_pattern);
  if (threads > 1) {
    b.n_threads = best_of(threads, 3, &b.n_threads_pattern);
  } else {
    b.n_threads = b.one_thread;
    b.n_threads_pattern = b.one_thread_pattern;
  }
  return b;
}

std::string Gbs(double bytes_per_s) {
  char s[32];
  std::snprintf(s, sizeof s, "%.2f GB/s", bytes_per_s / 1e9);
  return s;
}

struct StorageRead {
  uint64_t bytes = 0;
  double bytes_per_second = 0;
};

// Reads `bytes` (at most the tensor data) from the model's source in 4 MiB
// reads, three times from the start of the tensor data; the best rate.
StorageRead MeasureStorageRead(const std::string& model, uint64_t bytes) {
  StorageRead out;
  auto src = OpenAnySource(model);
  if (!src.ok() || bytes == 0) return out;
  const uint64_t size = (*src)->size();
  const uint64_t start = size > bytes ? size - bytes : 0;  // the last bytes: layers and the head
  out.bytes = size - start;
  std::vector<uint8_t> buf(4u << 20);
  for (int rep = 0; rep < 3; ++rep) {
    const double t0 = Now();
    for (uint64_t off = start; off < size; off += buf.size()) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size - off));
      if (!(*src)->ReadAt(off, buf.data(), n).ok()) return StorageRead{};
    }
    const double dt = Now() - t0;
    if (dt > 0) out.bytes_per_second = std::max(out.bytes_per_second, out.bytes / dt);
  }
  return out;
}

Command MakeBenchCommand() {
  struct State {
    EngineFlags flags;
    int n_prompt = 64;
    int n_gen = 64;
    int depth = 0;  // tokens already in the context when tg starts
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
    sub->add_option("-d,--depth", st->depth,
                    "tg runs with this many (random, untimed) tokens already in the context, e.g. 1024 to time "
                    "decoding at a long context")
        ->default_val(0);
    sub->add_option("-r,--repetitions", st->reps, "runs of each test (after one warm-up)")->default_val(3);
    sub->add_option("--seed", st->seed, "seed of the random token ids")->default_val(1234);
    sub->add_flag("--json", st->json, "print one JSON object instead of the table");
    sub->add_flag("--no-bandwidth", st->no_bandwidth, "skip measuring the machine's read bandwidth");
    return sub;
  };
  c.run = [st]() -> int {
    if (st->n_prompt < 0 || st->n_gen < 0 || st->depth < 0) {
      return Fail(InvalidArgument("-p, -n and -d must be >= 0"));
    }
    if (st->reps < 1) return Fail(InvalidArgument("-r must be >= 1"));
    const bool ctx_given = st->flags.n_ctx > 0;
    auto opts = st->flags.ToOptions();
    if (!opts.ok()) return Fail(opts.status());
    if (!ctx_given) opts->n_ctx = std::max(st->n_prompt, st->depth + st->n_gen) + 1;
    if (st->flags.n_batch == 64 && st->n_prompt > 64) opts->n_batch = st->n_prompt;  // one batch, as llama-bench's -b 2048
    const std::string& model = st->flags.model;

    // The read ceiling is measured before the model loads and again after the
    // runs: on a shared host it moves (this project's VMs: 45 <-> 80 GB/s within
    // minutes), and one measurement can land in a different state than the runs.
    // The peak resident size is restarted after the first so it stays the model's.
    Bandwidth bw_before;
    if (!st->no_bandwidth && ResetPeakResident()) {
      bw_before = MeasureBandwidth(opts->threads > 0 ? opts->threads
                                                     : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
      ResetPeakResident();
    }

    auto src = OpenAnySource(model);
    if (!src.ok()) return Fail(src.status());
    const double t_load_start = Now();
    double t_load = t_load_start;
    // When the last pinned component arrived (the loader thread's events).
    auto last_arrival = std::make_shared<std::atomic<double>>(t_load_start);
    auto user_event = opts->on_load_event;
    opts->on_load_event = [last_arrival, user_event](const LoadEvent& ev) {
      if (ev.state == ComponentState::kResident || ev.state == ComponentState::kStreamed) last_arrival->store(Now());
      return user_event ? user_event(ev) : true;
    };
    auto eng = Engine::Load(std::move(*src), *opts);
    if (!eng.ok()) return Fail(eng.status());
    t_load = Now() - t_load;
    Engine& e = **eng;
    if (std::max(st->n_prompt, st->depth + st->n_gen) > e.context_size() && !e.context_can_grow()) {
      return Fail(InvalidArgument("-p/-d+n exceed the context size " + std::to_string(e.context_size()) + "; raise -c"));
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
    std::map<std::string, int> by_layout;  // run-time layouts the loader chose (same bytes)
    for (const auto& [name, layout] : lm.LayoutTable()) ++by_layout[WeightLayoutName(layout)];
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
      if (st->depth > 0) {
        std::vector<int32_t> toks(st->depth);
        for (auto& t : toks) t = random_token();
        TF_RETURN_IF_ERROR(e.Eval(toks));
      }
      double t0 = Now();
      for (int i = 0; i < n; ++i) TF_RETURN_IF_ERROR(e.Eval({random_token()}));
      return Now() - t0;
    };

    // Warm-up (as llama-bench): a short prompt and one generated token. The
    // first one starts as soon as Load returned, while the other components may
    // still be arriving: load + it is the time to the first token (TTFT).
    double ttft = t_load;
    if (st->n_prompt > 0) {
      auto w = run_pp();
      if (!w.ok()) return Fail(w.status());
      ttft += *w;
    }
    if (auto w = run_tg(1); !w.ok()) return Fail(w.status());
    if (st->n_prompt == 0) ttft = Now() - t_load_start;
    if (Status s = e.WaitUntilLoaded(); !s.ok()) return Fail(s);
    const double t_loaded = last_arrival->load() - t_load_start;
    const bool streaming = e.residency().streaming();
    const std::string residency_summary = e.residency().Summary();
    const uint64_t streamed_per_pass = e.residency().streamed_bytes_per_pass();

    Stat pp, tg;
    for (int r = 0; r < st->reps && st->n_prompt > 0; ++r) {
      auto dt = run_pp();
      if (!dt.ok()) return Fail(dt.status());
      pp.samples.push_back(st->n_prompt / *dt);
    }
    // A short ceiling probe after every tg run pairs each run with the ceilings
    // measured just before and just after it (the first run's "before" is the
    // probe before the model loaded): the ratio per run then compares like with
    // like when the host changes state during the runs. The probe's buffer is
    // freed and the peak resident size read before each probe and restarted
    // after it, so the reported peak stays the model's.
    const bool paired = !st->no_bandwidth && bw_before.threads == e.threads() && bw_before.n_threads > 0;
    std::vector<double> probes;  // n-thread ceilings: before the model loaded, then after each tg run
    std::vector<std::string> probe_patterns;
    if (paired) {
      probes.push_back(bw_before.n_threads);
      probe_patterns.push_back(bw_before.n_threads_pattern);
    }
    uint64_t rss_peak = 0;
    const uint64_t streamed_before_tg = e.residency().streamed_bytes_read();
    for (int r = 0; r < st->reps && st->n_gen > 0; ++r) {
      auto dt = run_tg(st->n_gen);
      if (!dt.ok()) return Fail(dt.status());
      tg.samples.push_back(st->n_gen / *dt);
      if (paired) {
        rss_peak = std::max(rss_peak, ProcessPeakResidentBytes());
        const Bandwidth p = MeasureBandwidth(e.threads(), /*n_threads_only=*/true);
        probes.push_back(p.n_threads);
        probe_patterns.push_back(p.n_threads_pattern);
        ResetPeakResident();
      }
    }
    const int tg_tokens = st->n_gen * static_cast<int>(tg.samples.size());
    const double streamed_per_token =
        tg_tokens ? static_cast<double>(e.residency().streamed_bytes_read() - streamed_before_tg) / tg_tokens : 0;
    const LedgerSnapshot snap = e.ledger().Snapshot();
    const uint64_t rss_now = ProcessResidentBytes();
    rss_peak = std::max(rss_peak, ProcessPeakResidentBytes());
    const int threads = e.threads();
    const int n_ctx = e.context_size();
    eng->reset();  // free the model before the bandwidth buffer

    // The storage read ceiling for streaming: the best rate of reading the bytes
    // one pass streams from the same source, in the loader's 4 MiB reads.
    const StorageRead storage = streaming ? MeasureStorageRead(model, streamed_per_pass) : StorageRead{};
    const double stream_bound = storage.bytes_per_second > 0 && streamed_per_token > 0
                                    ? storage.bytes_per_second / streamed_per_token : 0;

    Bandwidth bw_after, bw;
    if (!st->no_bandwidth) bw = bw_after = MeasureBandwidth(threads);
    // The ratio is against the higher ceiling (never flattered by a dip), per thread count.
    if (bw_before.threads == threads) {
      if (bw_before.one_thread > bw.one_thread) {
        bw.one_thread = bw_before.one_thread;
        bw.one_thread_pattern = bw_before.one_thread_pattern;
      }
      if (bw_before.n_threads > bw.n_threads) {
        bw.n_threads = bw_before.n_threads;
        bw.n_threads_pattern = bw_before.n_threads_pattern;
      }
    }
    const bool have_before = bw_before.threads == threads && bw_before.n_threads > 0;
    const double eff = bytes_per_token * tg.mean();
    // Every probe counts toward the ceiling of the overall ratio (the strict figure).
    for (size_t i = 0; i < probes.size(); ++i) {
      if (probes[i] > bw.n_threads) {
        bw.n_threads = probes[i];
        bw.n_threads_pattern = probe_patterns[i];
      }
    }
    if (threads == 1 && bw.n_threads > bw.one_thread) {  // the probes measured the 1-thread ceiling
      bw.one_thread = bw.n_threads;
      bw.one_thread_pattern = bw.n_threads_pattern;
    }
    const double ratio = bw.n_threads > 0 ? eff / bw.n_threads : 0;
    // Per tg run: its bytes/s against the higher of the probes just before and after it.
    // How far the ceiling moved over the whole run (before, between and after the runs).
    std::vector<double> all = probes;
    if (have_before) all.push_back(bw_before.n_threads);
    if (bw_after.n_threads > 0) all.push_back(bw_after.n_threads);
    const double moved = all.size() < 2 ? 0
                         : 1 - *std::min_element(all.begin(), all.end()) / *std::max_element(all.begin(), all.end());
    std::vector<double> run_ratios;
    for (size_t r = 0; r + 1 < probes.size() && r < tg.samples.size(); ++r) {
      run_ratios.push_back(bytes_per_token * tg.samples[r] / std::max(probes[r], probes[r + 1]));
    }
    std::vector<double> sorted = run_ratios;
    std::sort(sorted.begin(), sorted.end());
    const double run_ratio_median = sorted.empty() ? 0
                                    : sorted.size() % 2 ? sorted[sorted.size() / 2]
                                                        : (sorted[sorted.size() / 2 - 1] + sorted[sorted.size() / 2]) / 2;

    if (st->json) {
      nlohmann::json j;
      j["model"] = model;
      j["arch"] = hp.arch;
      j["weight_bytes"] = weight_bytes;
      j["weight_type"] = st->flags.weight_type.empty() ? "file" : st->flags.weight_type;
      j["weight_bytes_by_type"] = by_type;
      j["matrices_by_runtime_layout"] = by_layout;
      j["threads"] = threads;
      j["n_ctx"] = n_ctx;
      j["n_prompt"] = st->n_prompt;
      j["n_gen"] = st->n_gen;
      j["depth"] = st->depth;
      j["repetitions"] = st->reps;
      j["load_seconds"] = t_load;
      j["loaded_seconds"] = t_loaded;
      j["ttft_seconds"] = ttft;
      j["residency"] = residency_summary;
      if (streaming) {
        j["streaming"] = {{"bytes_per_pass", streamed_per_pass},
                          {"bytes_per_tg_token", streamed_per_token},
                          {"storage_read_bytes_per_second", storage.bytes_per_second},
                          {"storage_read_bytes", storage.bytes},
                          {"tokens_per_second_bound", stream_bound},
                          {"ratio_to_bound", stream_bound > 0 ? tg.mean() / stream_bound : 0}};
      }
      j["pp"] = {{"tokens_per_second", pp.mean()}, {"sd", pp.sd()}, {"samples", pp.samples}};
      j["tg"] = {{"tokens_per_second", tg.mean()}, {"sd", tg.sd()}, {"samples", tg.samples}};
      j["weight_bytes_per_token"] = bytes_per_token;
      j["effective_bandwidth_bytes_per_second"] = eff;
      if (!st->no_bandwidth) {
        j["machine_read_bandwidth"] = {{"buffer_bytes", bw.buffer_bytes},
                                       {"one_thread_bytes_per_second", bw.one_thread},
                                       {"threads", bw.threads},
                                       {"n_threads_bytes_per_second", bw.n_threads},
                                       {"one_thread_pattern", bw.one_thread_pattern},
                                       {"n_threads_pattern", bw.n_threads_pattern}};
        if (have_before) {
          j["machine_read_bandwidth_before_runs"] = {{"one_thread_bytes_per_second", bw_before.one_thread},
                                                    {"n_threads_bytes_per_second", bw_before.n_threads}};
        }
        j["machine_read_bandwidth_after_runs"] = {{"one_thread_bytes_per_second", bw_after.one_thread},
                                                 {"n_threads_bytes_per_second", bw_after.n_threads}};
        j["bandwidth_ratio"] = ratio;
        if (!run_ratios.empty()) {
          j["n_threads_ceiling_probes_bytes_per_second"] = probes;
          j["bandwidth_ratio_per_tg_run"] = run_ratios;
          j["bandwidth_ratio_per_tg_run_median"] = run_ratio_median;
        }
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
    for (const auto& [l, n] : by_layout) std::printf("  (%d matrices in the %s run-time layout)", n, l.c_str());
    std::printf("\nthreads %d, context %d, %d repetitions after a warm-up; Load returned after %.2f s, the last "
                "pinned component arrived after %.2f s, time to first token %.2f s (load + the first %d-token prompt)\n",
                threads, n_ctx, st->reps, t_load, t_loaded, ttft, st->n_prompt);
    std::printf("residency: %s\n\n", residency_summary.c_str());
    std::printf("| %-8s | %16s |\n", "test", "tokens/s");
    std::printf("|----------|------------------|\n");
    if (st->n_prompt > 0) std::printf("| pp%-6d | %8.2f ± %5.2f |\n", st->n_prompt, pp.mean(), pp.sd());
    if (st->n_gen > 0) {
      std::printf("| tg%-6d | %8.2f ± %5.2f |%s\n", st->n_gen, tg.mean(), tg.sd(),
                  st->depth > 0 ? (" (after " + std::to_string(st->depth) + " tokens)").c_str() : "");
    }
    std::printf("\nweight bytes read per generated token: %s\n", FormatBytes(bytes_per_token).c_str());
    std::printf("effective bandwidth (bytes/token x tg tokens/s): %s\n", Gbs(eff).c_str());
    if (!st->no_bandwidth) {
      std::printf("machine read bandwidth (best streaming read of %s): 1 thread %s (%s)",
                  FormatBytes(bw.buffer_bytes).c_str(), Gbs(bw.one_thread).c_str(), bw.one_thread_pattern.c_str());
      if (bw.threads > 1) std::printf(", %d threads %s (%s)", bw.threads, Gbs(bw.n_threads).c_str(), bw.n_threads_pattern.c_str());
      std::printf("\n");
      if (have_before) {
        std::printf("  %d thread%s: before the runs %s, after %s; the ratio is against the highest ceiling measured "
                    "(these and the probes between tg runs)\n",
                    bw.threads, bw.threads == 1 ? "" : "s", Gbs(bw_before.n_threads).c_str(),
                    Gbs(bw_after.n_threads).c_str());
      }
      std::printf("ratio effective / machine (%d thread%s): %.0f%%\n", bw.threads, bw.threads == 1 ? "" : "s",
                  ratio * 100);
      if (!run_ratios.empty()) {
        std::printf("  per tg run, against the higher of the %d-thread ceilings probed just before and after it:",
                    bw.threads);
        for (size_t r = 0; r < run_ratios.size(); ++r) {
          std::printf("%s %.0f%% (%s | %s)", r ? "," : "", run_ratios[r] * 100, Gbs(probes[r]).c_str(),
                      Gbs(probes[r + 1]).c_str());
        }
        std::printf("; median %.0f%%\n", run_ratio_median * 100);
      }
      if (moved > 0.10) {
        std::printf("note: the machine's read bandwidth moved %.0f%% during this benchmark (a shared host?): the "
                    "runs may have seen either state; the per-run ratios pair each run with its own ceilings\n",
                    moved * 100);
      }
    }
    if (streaming) {
      std::printf("streamed per tg token: %s (%s per pass); storage read ceiling %s (best of 3 reads of %s from %s); "
                  "bound %.2f tokens/s, tg at %.0f%% of it\n",
                  FormatBytes(static_cast<uint64_t>(streamed_per_token)).c_str(), FormatBytes(streamed_per_pass).c_str(),
                  Gbs(storage.bytes_per_second).c_str(), FormatBytes(storage.bytes).c_str(), model.c_str(), stream_bound,
                  stream_bound > 0 ? 100 * tg.mean() / stream_bound : 0);
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
