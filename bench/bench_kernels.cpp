// Mat-mul / vec kernel benchmarks, one entry per (format, ISA, shape, tokens) from
// the kernel list in quant/kernel_list.h. Reports weight GB/s ("bytes_per_second"
// counts weight bytes read once per call; activation packing is included in the
// timed call) and tokens*rows*cols MAC/s, both per CPU second.
//
//   bench_kernels --benchmark_filter='Q4_0/avx2'   # one family
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "quant/kernel_list.h"
#include "quant/kernels.h"
#include "quant/vec.h"

namespace tabfit {
namespace {

std::vector<float> Random(int64_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

void BM_MatMul(benchmark::State& state, const FormatTraits* f, Isa isa, int64_t rows, int64_t cols, int64_t n_tokens) {
  const size_t rb = RowBytes(f->type, cols);
  std::vector<uint8_t> w(rb * rows);
  {
    std::vector<float> wf = Random(cols, 1, 0.02f);
    for (int64_t r = 0; r < rows; ++r) {
      wf[r % cols] += 0.01f;  // rows differ
      f->from_float(wf.data(), w.data() + r * rb, cols, nullptr);
    }
  }
  const std::vector<float> x = Random(n_tokens * cols, 2, 1.0f);
  const size_t prb = PackedActivationRowBytes(f->type, cols);
  std::vector<uint8_t> packed(prb * n_tokens);
  const PackTraits& p = PackTraitsFor(f->pack);
  // The ISA's packer, else its fallback's (kAvx512Vnni packs with AVX2), else scalar.
  PackFn pack = p.pack[0];
  for (Isa i = isa; i != Isa::kScalar; i = FallbackIsa(i)) {
    if (p.pack[static_cast<int>(i)]) {
      pack = p.pack[static_cast<int>(i)];
      break;
    }
  }
  std::vector<float> y(rows * n_tokens);
  const MatMulFn mm = f->matmul[static_cast<int>(isa)];
  for (auto _ : state) {
    pack(x.data(), n_tokens, cols, packed.data());
    mm(w.data(), rb, 0, rows, cols, packed.data(), n_tokens, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(n_tokens) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(rows * cols * n_tokens) * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

// A run-time layout's kernel (kernel_list.h Layouts()) on TF_Q2-family weights
// rearranged with the layout, against the same shapes as BM_MatMul.
void BM_MatMulLayout(benchmark::State& state, const LayoutTraits* lt, bool fast, int64_t rows, int64_t cols,
                     int64_t n_tokens) {
  const FormatTraits* f = FindFormat(lt->base[0]);
  const size_t rb = RowBytes(f->type, cols);
  std::vector<uint8_t> w(rb * rows);
  {
    std::vector<float> wf = Random(cols, 1, 0.02f);
    for (int64_t r = 0; r < rows; ++r) {
      wf[r % cols] += 0.01f;
      f->from_float(wf.data(), w.data() + r * rb, cols, nullptr);
    }
    std::vector<uint8_t> scratch(LayoutScratchBytes(lt->layout, f->type, cols));
    ToLayout(lt->layout, f->type, w.data(), rows, cols, scratch.data());
  }
  const std::vector<float> x = Random(n_tokens * cols, 2, 1.0f);
  std::vector<uint8_t> packed(PackedActivationRowBytes(f->type, cols) * n_tokens);
  std::vector<float> y(rows * n_tokens);
  const MatMulFn mm = fast ? lt->fast : lt->reference;
  for (auto _ : state) {
    PackActivations(f->type, x.data(), n_tokens, cols, packed.data());
    mm(w.data(), rb, 0, rows, cols, packed.data(), n_tokens, y.data(), rows);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * static_cast<int64_t>(w.size()));
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(n_tokens) * state.iterations(), benchmark::Counter::kIsRate);
  state.counters["GMAC/s"] = benchmark::Counter(static_cast<double>(rows * cols * n_tokens) * state.iterations() / 1e9,
                                                benchmark::Counter::kIsRate);
}

void BM_Vec(benchmark::State& state, const VecKernels* v, int which, int64_t n) {
  const std::vector<float> a = Random(n, 3, 1.0f), b = Random(n, 4, 1.0f);
  std::vector<uint16_t> h(n);
  v->f32_to_f16(a.data(), h.data(), n);
  std::vector<float> y(n, 0.0f);
  for (auto _ : state) {
    switch (which) {
      case 0: benchmark::DoNotOptimize(v->dot_f32(a.data(), b.data(), n)); break;
      case 1: benchmark::DoNotOptimize(v->dot_f16_f32(h.data(), b.data(), n)); break;
      case 2: v->axpy_f32(1e-3f, a.data(), y.data(), n); break;
      case 3: v->axpy_f16(1e-3f, h.data(), y.data(), n); break;
    }
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()) * n);
}

int Register() {
  for (const FormatTraits& f : Formats()) {
    for (int i = 0; i < kIsaCount; ++i) {
      const Isa isa = static_cast<Isa>(i);
      if (!f.matmul[i] || !IsaAvailable(isa)) continue;
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2048, 2048}, {5632, 2048}}) {
        for (int64_t nt : {1, 64, 512}) {
          if (isa == Isa::kScalar && nt > 1) continue;  // the oracle is slow; 1 token shows it
          if (nt == 512 && rows != 2048) continue;       // long prefill: one shape is enough
          const std::string name = std::string("MatMul/") + f.name + "/" + IsaName(isa) + "/" + std::to_string(rows) +
                                   "x" + std::to_string(cols) + "/tokens:" + std::to_string(nt);
          benchmark::RegisterBenchmark(name.c_str(), BM_MatMul, &f, isa, rows, cols, nt)
              ->Unit(benchmark::kMillisecond);  // rates use CPU time: the kernels are
                                                 // single-threaded and the machine is shared
        }
      }
    }
  }
  for (const LayoutTraits& lt : Layouts()) {
    for (bool fast : {false, true}) {
      if (fast && !(lt.fast && lt.fast_available())) continue;
      for (auto [rows, cols] : {std::pair<int64_t, int64_t>{2048, 2048}, {5632, 2048}}) {
        for (int64_t nt : {1, 64, 512}) {
          if (!fast && nt > 1) continue;
          if (nt == 512 && rows != 2048) continue;
          const std::string name = std::string("MatMulLayout/") + lt.name + "/" + (fast ? "fast" : "reference") + "/" +
                                   std::to_string(rows) + "x" + std::to_string(cols) + "/tokens:" + std::to_string(nt);
          benchmark::RegisterBenchmark(name.c_str(), BM_MatMulLayout, &lt, fast, rows, cols, nt)
              ->Unit(benchmark::kMillisecond);
        }
      }
    }
  }
  const char* kVecNames[] = {"DotF32", "DotF16F32", "AxpyF32", "AxpyF16"};
  for (const VecKernels& v : AllVecKernels()) {
    if (!IsaAvailable(v.isa)) continue;
    for (int which = 0; which < 4; ++which) {
      const std::string name = std::string("Vec/") + kVecNames[which] + "/" + IsaName(v.isa) + "/4096";
      benchmark::RegisterBenchmark(name.c_str(), BM_Vec, &v, which, int64_t{4096});
    }
  }
  return 0;
}
const int kRegistered = Register();

}  // namespace
}  // namespace tabfit

BENCHMARK_MAIN();
