// quant_selfcheck: a dependency-free (no GoogleTest) check that every available
// SIMD kernel in the kernel list equals the scalar oracle, for targets where the
// GoogleTest binary cannot run (WebAssembly under Node). Exit status 0 = all passed.
//   em++ build: see src/quant/CMakeLists.txt (target quant_selfcheck when EMSCRIPTEN).
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/f16.h"
#include "quant/kernel_list.h"
#include "quant/kernels.h"
#include "quant/vec.h"

using namespace tabfit;

namespace {
int failures = 0;
void Check(bool ok, const char* what, const char* name, const char* isa, int64_t nt) {
  if (!ok) {
    ++failures;
    std::printf("FAIL %s %s %s n_tokens=%lld\n", what, name, isa, static_cast<long long>(nt));
  }
}
std::vector<float> Gaussian(int64_t n, uint32_t seed, float sigma) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}
}  // namespace

int main() {
  int checked = 0;
  for (const FormatTraits& f : Formats()) {
    if (!f.matmul[0]) continue;
    // 480 = 15 blocks of 32 and 96 = 3: tails of kernels that step several blocks at a time.
    for (int64_t cols : {512, 480, 96, 768}) {
    if (cols % f.block_elems != 0) continue;
    const int64_t rows = 7;
    const size_t rb = RowBytes(f.type, cols);
    std::vector<uint8_t> w(rb * rows);
    auto wf = Gaussian(rows * cols, 1, 0.05f);
    for (int64_t r = 0; r < rows; ++r) f.from_float(wf.data() + r * cols, w.data() + r * rb, cols, nullptr);
    std::vector<float> wd(rows * cols);
    for (int64_t r = 0; r < rows; ++r) f.to_float(w.data() + r * rb, wd.data() + r * cols, cols);
    for (int64_t nt : {1, 3, 5}) {
      auto x = Gaussian(nt * cols, 2, 1.0f);
      const size_t prb = PackedActivationRowBytes(f.type, cols);
      std::vector<uint8_t> packed(prb * nt);
      PackTraitsFor(f.pack).pack[0](x.data(), nt, cols, packed.data());
      std::vector<float> want(rows * nt);
      f.matmul[0](w.data(), rb, 0, rows, cols, packed.data(), nt, want.data(), rows);
      for (int isa = 1; isa < kIsaCount; ++isa) {
        if (!f.matmul[isa] || !IsaAvailable(static_cast<Isa>(isa))) continue;
        std::vector<float> got(rows * nt);
        f.matmul[isa](w.data(), rb, 0, rows, cols, packed.data(), nt, got.data(), rows);
        bool ok = true;
        for (int64_t t = 0; t < nt; ++t)
          for (int64_t r = 0; r < rows; ++r) {
            double abs_sum = 0;
            for (int64_t i = 0; i < cols; ++i) abs_sum += std::fabs(wd[r * cols + i] * x[t * cols + i]);
            const double tol = cols * 1.2e-7 * abs_sum * 1.05 + 1e-30;
            if (std::fabs(got[t * rows + r] - want[t * rows + r]) > tol) ok = false;
            // TF kernels: exact int sums + the scalar float expression -> bit-identical.
            if (f.pack == PackType::kQ8_KA && got[t * rows + r] != want[t * rows + r]) ok = false;
          }
        Check(ok, "matmul", f.name, IsaName(static_cast<Isa>(isa)), nt);
        ++checked;
      }
    }
    }
  }
  for (const VecKernels& v : AllVecKernels()) {
    if (v.isa == Isa::kScalar || !IsaAvailable(v.isa)) continue;
    const VecKernels& s = AllVecKernels()[0];
    for (int64_t n : {1, 9, 100}) {
      auto a = Gaussian(n, 3, 1.0f), b = Gaussian(n, 4, 1.0f);
      std::vector<uint16_t> h(n);
      for (int64_t i = 0; i < n; ++i) h[i] = F32ToF16(a[i]);
      double abs_sum = 0;
      for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(a[i] * b[i]);
      const double tol = n * 1.2e-7 * abs_sum * 1.05 + 1e-30;
      Check(std::fabs(v.dot_f32(a.data(), b.data(), n) - s.dot_f32(a.data(), b.data(), n)) <= tol, "dot_f32", "",
            IsaName(v.isa), n);
      Check(std::fabs(v.dot_f16_f32(h.data(), b.data(), n) - s.dot_f16_f32(h.data(), b.data(), n)) <= tol,
            "dot_f16_f32", "", IsaName(v.isa), n);
      std::vector<float> y1 = b, y2 = b;
      v.axpy_f16(0.5f, h.data(), y1.data(), n);
      s.axpy_f16(0.5f, h.data(), y2.data(), n);
      bool ok = true;
      for (int64_t i = 0; i < n; ++i) ok &= std::fabs(y1[i] - y2[i]) <= 1e-6f * (std::fabs(y2[i]) + 1);
      Check(ok, "axpy_f16", "", IsaName(v.isa), n);
      const double ss = s.sum_squares(a.data(), n);
      Check(std::fabs(v.sum_squares(a.data(), n) - ss) <= (n + 1) * 0x1p-52 * ss, "sum_squares", "", IsaName(v.isa), n);
      std::vector<float> g1(n), g2(n);
      for (int64_t i = 0; i < n; ++i) g1[i] = g2[i] = 8.0f * a[i];
      v.silu_mul(g1.data(), b.data(), n);
      s.silu_mul(g2.data(), b.data(), n);
      ok = true;
      for (int64_t i = 0; i < n; ++i) ok &= std::fabs(g1[i] - g2[i]) <= 6 * 1.2e-7f * std::fabs(g2[i]) + 1e-35f;
      Check(ok, "silu_mul", "", IsaName(v.isa), n);
      std::vector<float> e1(n), e2(n);
      for (int64_t i = 0; i < n; ++i) e1[i] = e2[i] = 10.0f * a[i];
      const double es1 = v.exp_shift_sum(e1.data(), 30.0f, n), es2 = s.exp_shift_sum(e2.data(), 30.0f, n);
      ok = std::fabs(es1 - es2) <= 1e-6 * es2;
      for (int64_t i = 0; i < n; ++i) ok &= std::fabs(e1[i] - e2[i]) <= 2.5e-7f * e2[i];
      Check(ok, "exp_shift_sum", "", IsaName(v.isa), n);
      checked += 6;
    }
  }
  // Subnormal / inf / nan halves through the SIMD f16 paths.
  const uint16_t special[8] = {0x0001, 0x03ff, 0x8200, 0x7c00, 0xfc00, 0x3c00, 0x0400, 0xc000};
  for (const VecKernels& v : AllVecKernels()) {
    if (!IsaAvailable(v.isa)) continue;
    std::vector<float> y(8, 0.0f);
    v.axpy_f16(1.0f, special, y.data(), 8);
    bool ok = true;
    for (int i = 0; i < 8; ++i) ok &= (y[i] == F16ToF32(special[i]));
    Check(ok, "f16 specials", "", IsaName(v.isa), 8);
    ++checked;
  }
  // Every half value through each ISA's f16 path (axpy into zeros): same float as the
  // scalar conversion (NaN stays NaN).
  {
    std::vector<uint16_t> all(65536);
    for (int i = 0; i < 65536; ++i) all[i] = static_cast<uint16_t>(i);
    for (const VecKernels& v : AllVecKernels()) {
      if (!IsaAvailable(v.isa)) continue;
      std::vector<float> y(65536, 0.0f);
      v.axpy_f16(1.0f, all.data(), y.data(), 65536);
      bool ok = true;
      for (int i = 0; i < 65536; ++i) {
        const float want = F16ToF32(all[i]);
        ok &= std::isnan(want) ? std::isnan(y[i]) : y[i] == want;
      }
      Check(ok, "all 65536 halves", "", IsaName(v.isa), 65536);
      ++checked;
    }
  }
  std::printf("quant_selfcheck: best ISA %s, %d comparisons, %d failures\n", IsaName(BestIsa()), checked, failures);
  return failures == 0 ? 0 : 1;
}
