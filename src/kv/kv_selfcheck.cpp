// kv_selfcheck: a dependency-free (no GoogleTest) check that the low-bit KV
// kernels of kvlow::Best() equal the scalar oracle, for targets where the
// GoogleTest binary does not run (WebAssembly SIMD128 under Node; see
// scripts/build-wasm.sh). The bounds are lowbit_kv_cache_test.cpp's. Exit 0 = passed.
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "core/f16.h"
#include "kv/lowbit_kernels.h"
#include "quant/kernels.h"

using namespace tabfit;

namespace {
int failures = 0, checks = 0;
void Near(double a, double b, double tol, const char* what, int bits, int hd) {
  ++checks;
  if (!(std::fabs(a - b) <= tol)) {
    if (++failures < 20) std::printf("FAIL %s bits=%d hd=%d: %g vs %g (tol %g)\n", what, bits, hd, a, b, tol);
  }
}
std::vector<float> Gauss(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}
}  // namespace

int main() {
  const kvlow::Kernels& S = kvlow::Scalar();
  const kvlow::Kernels& B = kvlow::Best();
  for (int bits : {2, 3, 4}) {
    for (int hd : {64, 128}) {
      for (int G : {32, 64, 128}) {
        const size_t rec = kvlow::GroupBytes(G, bits);
        std::vector<uint8_t> recs(rec * hd);
        auto keys = Gauss(static_cast<size_t>(hd) * G, bits * 7 + G + hd);
        for (int c = 0; c < hd; ++c) kvlow::QuantizeGroup(keys.data() + c * G, 1, G, bits, recs.data() + c * rec);
        auto q = Gauss(static_cast<size_t>(8) * hd, 11 + hd);
        std::vector<float> a(G), b(G);
        S.key_scores(recs.data(), rec, hd, G, bits, q.data(), a.data());
        B.key_scores(recs.data(), rec, hd, G, bits, q.data(), b.data());
        for (int t = 0; t < G; ++t) {
          double mag = 0;
          for (int c = 0; c < hd; ++c) mag += std::fabs(q[c] * kvlow::DequantAt(recs.data() + c * rec, bits, t));
          Near(a[t], b[t], 4e-6 * mag + 1e-6, "key_scores", bits, hd);
        }
        std::vector<float> ka(hd * 32), kb(hd * 32);
        S.key_tile(recs.data(), rec, hd, bits, 0, ka.data());
        B.key_tile(recs.data(), rec, hd, bits, 0, kb.data());
        for (size_t i = 0; i < ka.size(); ++i) Near(ka[i], kb[i], 1e-6 * (1 + std::fabs(ka[i])), "key_tile", bits, hd);
        {
          std::vector<float> ra(hd * 32), rb(hd * 32);
          S.rows_to_tile(keys.data(), 13, hd, ra.data());
          B.rows_to_tile(keys.data(), 13, hd, rb.data());
          for (size_t i = 0; i < ra.size(); ++i) Near(ra[i], rb[i], 0.0, "rows_to_tile", bits, hd);
        }
        const size_t ld = 33;
        std::vector<float> sa(8 * ld), sb(8 * ld);
        S.tile_scores(ka.data(), hd, q.data(), 8, 32, sa.data(), ld);
        B.tile_scores(ka.data(), hd, q.data(), 8, 32, sb.data(), ld);
        for (int h = 0; h < 8; ++h) {
          for (int t = 0; t < 32; ++t) {
            double mag = 0;
            for (int c = 0; c < hd; ++c) mag += std::fabs(q[h * hd + c] * ka[c * 32 + t]);
            Near(sa[h * ld + t], sb[h * ld + t], 4e-6 * mag + 1e-6, "tile_scores", bits, hd);
          }
        }
        const int Gv = G < hd ? G : hd;
        const size_t vg = kvlow::GroupBytes(Gv, bits), vrec = vg * (hd / Gv);
        std::vector<uint8_t> vr(vrec * 32);
        auto vals = Gauss(static_cast<size_t>(32) * hd, 5 + bits + G);
        for (int t = 0; t < 32; ++t) {
          for (int g = 0; g < hd / Gv; ++g) {
            kvlow::QuantizeGroup(vals.data() + t * hd + g * Gv, 1, Gv, bits, vr.data() + t * vrec + g * vg);
          }
        }
        std::vector<float> oa(hd, 0.5f), ob(hd, 0.5f);
        S.value_axpy(vr.data(), hd, Gv, bits, 0.37f, oa.data());
        B.value_axpy(vr.data(), hd, Gv, bits, 0.37f, ob.data());
        for (int c = 0; c < hd; ++c) Near(oa[c], ob[c], 1e-5 * (0.5 + std::fabs(0.37 * vals[c])) + 1e-6, "value_axpy", bits, hd);
        std::vector<float> va(32 * hd), vb(32 * hd);
        S.value_tile(vr.data(), vrec, 32, hd, Gv, bits, va.data());
        B.value_tile(vr.data(), vrec, 32, hd, Gv, bits, vb.data());
        for (size_t i = 0; i < va.size(); ++i) Near(va[i], vb[i], 1e-6 * (1 + std::fabs(va[i])), "value_tile", bits, hd);
        std::vector<float> ta(8 * hd, 0.25f), tb(8 * hd, 0.25f);
        S.tile_accumulate(va.data(), hd, 32, sa.data(), ld, 8, ta.data());
        B.tile_accumulate(va.data(), hd, 32, sa.data(), ld, 8, tb.data());
        for (int h = 0; h < 8; ++h) {
          for (int c = 0; c < hd; ++c) {
            double mag = 0.25;
            for (int t = 0; t < 32; ++t) mag += std::fabs(sa[h * ld + t] * va[t * hd + c]);
            Near(ta[h * hd + c], tb[h * hd + c], 4e-6 * mag + 1e-6, "tile_accumulate", bits, hd);
          }
        }
      }
    }
  }
  for (int hd : {32, 64, 128}) {
    auto x = Gauss(hd, 21);
    std::vector<BlockQ8_0> blk(hd / 32);
    QuantizeRow(TensorType::kQ8_0, x.data(), blk.data(), hd, nullptr);
    auto q = Gauss(hd, 22);
    double mag = 0;
    for (int i = 0; i < hd; ++i) mag += std::fabs(q[i] * x[i]);
    Near(S.dot_q8(blk.data(), hd / 32, q.data()), B.dot_q8(blk.data(), hd / 32, q.data()), 4e-6 * mag + 1e-6, "dot_q8", 8, hd);
    std::vector<float> a(hd, 1.f), b(hd, 1.f);
    S.axpy_q8(0.7f, blk.data(), hd / 32, a.data());
    B.axpy_q8(0.7f, blk.data(), hd / 32, b.data());
    for (int i = 0; i < hd; ++i) Near(a[i], b[i], 1e-5 * (1 + std::fabs(x[i])), "axpy_q8", 8, hd);
  }
  std::printf("kv_selfcheck (%s vs scalar): %d checks, %d failures\n", B.name, checks, failures);
  return failures == 0 ? 0 : 1;
}
