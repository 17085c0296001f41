// kernel_bench: times the decode (1 token) mat-vec kernels of the kernel list on
// the matrices of one TinyLlama-1.1B layer, for every ISA compiled in (scalar and,
// in a -msimd128 build, wasm_simd128). Built for Node with
// -DTABFIT_WASM_KERNEL_BENCH=ON (see CMakeLists.txt); also builds natively.
// Not a test: prints one line per (format, isa) with ms per layer and GB/s of weights.
//   node build-.../web/wasm/kernel_bench.js [reps] [n_tokens]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "quant/kernel_list.h"
#include "quant/kernels.h"

#if defined(__wasm_simd128__)
#include <wasm_simd128.h>
#endif

using namespace tabfit;

#if defined(TABFIT_KERNEL_BENCH_BASELINE)
namespace tabfit::qk_base {
#define TF_BASE_DECL(n) void n(const void*, size_t, int64_t, int64_t, int64_t, const void*, int64_t, float*, int64_t);
TF_BASE_DECL(MatMulQ4_0Wasm)
TF_BASE_DECL(MatMulQ8_0Wasm)
TF_BASE_DECL(MatMulTfQ4Wasm)
TF_BASE_DECL(MatMulTfQ8Wasm)
TF_BASE_DECL(MatMulTfQ3Wasm)
TF_BASE_DECL(MatMulTfQ2Wasm)
}  // namespace tabfit::qk_base
static MatMulFn BaseKernel(TensorType t) {
  switch (t) {
    case TensorType::kQ4_0: return qk_base::MatMulQ4_0Wasm;
    case TensorType::kQ8_0: return qk_base::MatMulQ8_0Wasm;
    case TensorType::kTF_Q4: return qk_base::MatMulTfQ4Wasm;
    case TensorType::kTF_Q8: return qk_base::MatMulTfQ8Wasm;
    case TensorType::kTF_Q3: return qk_base::MatMulTfQ3Wasm;
    case TensorType::kTF_Q2: return qk_base::MatMulTfQ2Wasm;
    default: return nullptr;
  }
}
#else
static MatMulFn BaseKernel(TensorType) { return nullptr; }
#endif

namespace {
struct Shape {
  int64_t rows, cols;
};
// q, k, v, o, gate, up, down of TinyLlama-1.1B (hidden 2048, kv 256, ffn 5632).
constexpr Shape kLayer[] = {{2048, 2048}, {256, 2048}, {256, 2048}, {2048, 2048},
                            {5632, 2048}, {5632, 2048}, {2048, 5632}};
}  // namespace

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 5;
  const int64_t nt = argc > 2 ? std::atoll(argv[2]) : 1;
  // Optional filters (for `perf stat -e cycles:u`, which is immune to other processes' load):
  // argv[3] = format name (e.g. Q4_0), argv[4] = candidate (scalar, wasm_simd128, base_wasm,
  // read_only, or none = setup only, to subtract).
  const std::string only_format = argc > 3 && std::string(argv[3]) != "all" ? argv[3] : "", only_cand = argc > 4 && std::string(argv[4]) != "all" ? argv[4] : "";
  // argv[5] = copies of the layer's matrices (distinct memory; e.g. 8 = ~200 MB of Q4_0,
  // beyond any cache: the DRAM-bound regime of a real model). Times are per layer.
  const int copies = argc > 5 ? std::atoi(argv[5]) : 1;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (TensorType type : {TensorType::kQ4_0, TensorType::kQ8_0, TensorType::kTF_Q4, TensorType::kTF_Q8, TensorType::kTF_Q3,
                          TensorType::kTF_Q2}) {
    const FormatTraits* f = FindFormat(type);
    if (!f || !f->from_float) continue;
    if (!only_format.empty() && only_format != f->name) continue;
    struct Mat {
      std::vector<uint8_t> w, x;
      std::vector<float> y;
      size_t rb;
      Shape s;
    };
    std::vector<Mat> mats;
    size_t bytes = 0;
    for (int copy = 0; copy < copies; ++copy)
    for (const Shape& s : kLayer) {
      Mat m;
      m.s = s;
      m.rb = RowBytes(type, s.cols);
      m.w.resize(m.rb * s.rows);
      std::vector<float> row(s.cols);
      // 8 distinct quantized rows, repeated (setup stays cheap next to the timed passes).
      for (int64_t r = 0; r < s.rows; ++r) {
        if (r < 8) {
          for (auto& v : row) v = 0.02f * nd(rng);
          f->from_float(row.data(), m.w.data() + r * m.rb, s.cols, nullptr);
        } else {
          std::memcpy(m.w.data() + r * m.rb, m.w.data() + (r % 8) * m.rb, m.rb);
        }
      }
      std::vector<float> x(s.cols * nt);
      for (auto& v : x) v = nd(rng);
      m.x.resize(PackedActivationRowBytes(type, s.cols) * nt);
      PackTraitsFor(f->pack).pack[0](x.data(), nt, s.cols, m.x.data());
      m.y.resize(s.rows * nt);
      bytes += m.w.size();
      mats.push_back(std::move(m));
    }
    // Candidates: every ISA's kernel, plus the baseline copy (if built in); timed
    // interleaved (one pass of each per rep), best of reps.
    std::vector<std::pair<std::string, MatMulFn>> cands;
    for (int isa = 0; isa < kIsaCount; ++isa)
      if (f->matmul[isa] && IsaAvailable(static_cast<Isa>(isa)))
        cands.emplace_back(IsaName(static_cast<Isa>(isa)), f->matmul[isa]);
    if (MatMulFn base = BaseKernel(type)) cands.emplace_back("base_wasm", base);
    // Memory-read reference: the same weight bytes summed 16 bytes at a time.
    cands.emplace_back("read_only", [](const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t, const void*,
                                       int64_t, float* y, int64_t) {
      const size_t n = row_bytes * (r1 - r0) / 16;
      const auto* p = static_cast<const uint8_t*>(w);
#if defined(__wasm_simd128__)
      v128_t a = wasm_i32x4_splat(0), b = a;
      size_t i = 0;
      for (; i + 2 <= n; i += 2) {
        a = wasm_i32x4_add(a, wasm_v128_load(p + 16 * i));
        b = wasm_i32x4_add(b, wasm_v128_load(p + 16 * i + 16));
      }
      y[0] = static_cast<float>(wasm_i32x4_extract_lane(wasm_i32x4_add(a, b), 0));
#else
      uint64_t a = 0;
      for (size_t i = 0; i < n * 2; ++i) a += reinterpret_cast<const uint64_t*>(p)[i];
      y[0] = static_cast<float>(a);
#endif
    });
    if (!only_cand.empty()) {
      std::erase_if(cands, [&](const auto& c) { return c.first != only_cand; });
    }
    std::vector<double> best(cands.size(), 1e30);
    for (int rep = 0; rep < reps; ++rep) {
      for (size_t c = 0; c < cands.size(); ++c) {
        if (cands[c].first == "scalar" && rep > 1) continue;  // scalar: 2 reps are enough
        const auto t0 = std::chrono::steady_clock::now();
        for (Mat& m : mats) cands[c].second(m.w.data(), m.rb, 0, m.s.rows, m.s.cols, m.x.data(), nt, m.y.data(), m.s.rows);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s < best[c]) best[c] = s;
      }
    }
    for (size_t c = 0; c < cands.size(); ++c)
      std::printf("%-6s %-13s n_tokens=%lld  %8.3f ms/layer  %6.2f GB/s  (x22 layers: %6.1f ms)\n", f->name,
                  cands[c].first.c_str(), static_cast<long long>(nt), best[c] * 1e3 / copies, bytes / best[c] / 1e9,
                  best[c] * 22e3 / copies);
  }
  return 0;
}
