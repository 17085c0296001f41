// quant_test: tabfit's own formats (TF_Q8/Q4/Q3/Q2): code placement, error bounds
// derived from each group's stored scale/min, search quality and importance weighting.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernel_list.h"
#include "quant/kernels.h"
#include "quant/test_weights.h"
#include "test_util.h"

namespace tabfit {
namespace {

constexpr TensorType kAffine[] = {TensorType::kTF_Q4, TensorType::kTF_Q3};

int Nmax(TensorType t) { return t == TensorType::kTF_Q4 ? 15 : t == TensorType::kTF_Q3 ? 7 : 3; }

std::vector<float> Gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

struct Quantized {
  std::vector<uint8_t> bytes;
  std::vector<float> deq;
};
Quantized RoundTrip(TensorType t, const std::vector<float>& x, const float* imp = nullptr) {
  const int64_t n = static_cast<int64_t>(x.size());
  Quantized q{std::vector<uint8_t>(RowBytes(t, n)), std::vector<float>(n)};
  QuantizeRow(t, x.data(), q.bytes.data(), n, imp);
  DequantizeRow(t, q.bytes.data(), q.deq.data(), n);
  return q;
}

// Stored (S, M) of group g of superblock b (affine formats share the header layout).
void GroupScaleMin(TensorType t, const uint8_t* bytes, int64_t b, int g, float* S, float* M) {
  const size_t bb = RowBytes(t, 256);
  const uint8_t* blk = bytes + b * bb;
  uint16_t d, dmin;
  std::memcpy(&d, blk, 2);
  std::memcpy(&dmin, blk + 2, 2);
  uint8_t sc[8], m[8];
  UnpackScales6(blk + 4, sc, m);
  *S = F16ToF32(d) * sc[g];
  *M = F16ToF32(dmin) * m[g];
}

// Every element dequantizes to the grid point S*k - M (k in [0, nmax]) nearest to it:
// |x - deq| <= S/2 inside the grid, distance to the grid end outside it.
TEST(TfFormats, AffineCodesAreNearestGridPoint) {
  auto x = Gaussian(256 * 64, 3, 0.7f);
  for (int i = 0; i < 200; ++i) x[i * 37] *= 4.0f;  // outliers
  for (TensorType t : kAffine) {
    const Quantized q = RoundTrip(t, x);
    const int nmax = Nmax(t);
    for (int64_t b = 0; b < 64; ++b) {
      for (int g = 0; g < 8; ++g) {
        float S, M;
        GroupScaleMin(t, q.bytes.data(), b, g, &S, &M);
        for (int i = 0; i < 32; ++i) {
          const int64_t k = b * 256 + g * 32 + i;
          float best = INFINITY;
          for (int c = 0; c <= nmax; ++c) best = std::min(best, std::fabs(x[k] - (S * c - M)));
          const float err = std::fabs(x[k] - q.deq[k]);
          ASSERT_LE(err, best + 1e-6f * (std::fabs(x[k]) + M + S)) << TensorTypeName(t) << " elem " << k;
          const bool inside = x[k] >= -M && x[k] <= S * nmax - M;
          if (inside) ASSERT_LE(err, S * 0.5f * (1 + 1e-5f) + 1e-7f) << TensorTypeName(t) << " elem " << k;
        }
      }
    }
  }
}

// TF_Q2: each element is the nearest of its group's 4 grid points S*(k - z/4), and the
// stored offset z is the best of the 8 for the stored scale (squared error).
TEST(TfFormats, Q2CodesNearestAndOffsetBest) {
  auto x = Gaussian(256 * 64, 13, 0.7f);
  for (int i = 0; i < 200; ++i) x[i * 37] *= 4.0f;
  const Quantized q = RoundTrip(TensorType::kTF_Q2, x);
  for (int64_t b = 0; b < 64; ++b) {
    BlockTfQ2 blk;
    std::memcpy(&blk, q.bytes.data() + b * sizeof(blk), sizeof(blk));
    uint8_t sc[16], z[16];
    UnpackScz(blk.scz, sc, z);
    for (int g = 0; g < 16; ++g) {
      ASSERT_GE(z[g], 2);
      ASSERT_LE(z[g], 9);
      const float S = F16ToF32(blk.d) * sc[g];
      double err_stored = 0, err_best_other = INFINITY;
      for (int zz = 2; zz <= 9; ++zz) {
        double e = 0;
        for (int i = 0; i < 16; ++i) {
          const float v = x[b * 256 + g * 16 + i];
          float best = INFINITY;
          for (int c = 0; c <= 3; ++c) best = std::min(best, std::fabs(v - S * (c - zz * 0.25f)));
          e += double(best) * best;
          if (zz == z[g]) {
            const float err = std::fabs(v - q.deq[b * 256 + g * 16 + i]);
            ASSERT_LE(err, best + 1e-6f * (std::fabs(v) + 3 * S)) << "superblock " << b << " group " << g;
          }
        }
        if (zz == z[g]) err_stored = e; else err_best_other = std::min(err_best_other, e);
      }
      EXPECT_LE(err_stored, err_best_other * (1 + 1e-5) + 1e-12) << "superblock " << b << " group " << g;
    }
  }
}

TEST(TfFormats, Q8ErrorWithinHalfStep) {
  auto x = Gaussian(256 * 32, 4, 2.0f);
  const Quantized q = RoundTrip(TensorType::kTF_Q8, x);
  for (int64_t b = 0; b < 32; ++b) {
    BlockTfQ8 blk;
    std::memcpy(&blk, q.bytes.data() + b * sizeof(blk), sizeof(blk));
    for (int g = 0; g < 8; ++g) {
      const float S = F16ToF32(blk.d) * blk.scales[g];
      for (int i = 0; i < 32; ++i) {
        const int64_t k = b * 256 + g * 32 + i;
        ASSERT_LE(std::fabs(x[k] - q.deq[k]), S * 0.5f * (1 + 1e-5f)) << k;  // the sub-scale never clips
      }
    }
  }
}

TEST(TfFormats, ZerosRoundTripExactly) {
  std::vector<float> z(512, 0.0f);
  for (const FormatTraits& f : Formats()) {
    if (!f.from_float || f.block_elems != 256) continue;
    EXPECT_EQ(RoundTrip(f.type, z).deq, z) << f.name;
  }
}

double Sse(const std::vector<float>& a, const std::vector<float>& b, const float* w = nullptr, int64_t period = 0) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    const double d = a[i] - b[i];
    s += (w ? w[i % period] : 1.0) * d * d;
  }
  return s;
}

// Plain min-max round-to-nearest with exact float scale/min per group (the format's
// group size): the
// searched, 6-bit-scaled quantizer must beat it.
double MinMaxRtnSse(const std::vector<float>& x, int nmax, int gs) {
  double s = 0;
  for (size_t g = 0; g < x.size() / gs; ++g) {
    float lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < gs; ++i) {
      lo = std::min(lo, x[g * gs + i]);
      hi = std::max(hi, x[g * gs + i]);
    }
    const float S = (hi - lo) / nmax;
    for (int i = 0; i < gs; ++i) {
      const float v = x[g * gs + i];
      const float d = S > 0 ? lo + S * std::round((v - lo) / S) - v : 0.0f;
      s += d * d;
    }
  }
  return s;
}

TEST(TfFormats, SearchBeatsMinMaxRoundToNearest) {
  auto x = Gaussian(256 * 64, 5);
  for (TensorType t : {TensorType::kTF_Q4, TensorType::kTF_Q3, TensorType::kTF_Q2}) {
    const double ours = Sse(x, RoundTrip(t, x).deq);
    const double rtn = MinMaxRtnSse(x, Nmax(t), t == TensorType::kTF_Q2 ? 16 : 32);
    EXPECT_LT(ours, rtn) << TensorTypeName(t);
    // Uniform-step bound: rmse^2 <= step^2/12 with step = 2*2.5 sigma/nmax is loose for
    // any sane grid on N(0,1) groups of 32 (range ~ +-2 sigma).
    const double step = 5.0 / Nmax(t);
    EXPECT_LT(ours / x.size(), step * step / 12) << TensorTypeName(t);
  }
}

TEST(TfFormats, ImportanceLowersWeightedError) {
  auto x = Gaussian(256 * 16, 6);
  std::vector<float> imp(256 * 16);
  for (size_t i = 0; i < imp.size(); ++i) imp[i] = (i % 7 == 0) ? 50.0f : 1.0f;
  for (TensorType t : {TensorType::kTF_Q8, TensorType::kTF_Q4, TensorType::kTF_Q3, TensorType::kTF_Q2}) {
    const double with = Sse(x, RoundTrip(t, x, imp.data()).deq, imp.data(), static_cast<int64_t>(imp.size()));
    const double without = Sse(x, RoundTrip(t, x).deq, imp.data(), static_cast<int64_t>(imp.size()));
    EXPECT_LT(with, without) << TensorTypeName(t);
  }
}

TEST(TfFormats, BitsPerWeightAsDocumented) {
  EXPECT_DOUBLE_EQ(BitsPerWeight(TensorType::kTF_Q8), 8.3125);
  EXPECT_DOUBLE_EQ(BitsPerWeight(TensorType::kTF_Q4), 4.5);
  EXPECT_DOUBLE_EQ(BitsPerWeight(TensorType::kTF_Q3), 3.5);
  EXPECT_DOUBLE_EQ(BitsPerWeight(TensorType::kTF_Q2), 2.5);
  EXPECT_EQ(RowBytes(TensorType::kTF_Q2, 2048), 2048u / 256 * 80);
  EXPECT_EQ(RowBytes(TensorType::kTF_Q3, 100), 0u);
}

// Relative RMS error of every writable format on real weights (printed for the
// report); each must stay under its format-derived uniform-grid bound.
TEST(TfFormats, RealWeightsErrorReport) {
  const std::string path = testing::SharedModel("tabfit-demo-8m-f16.gguf");
  TABFIT_REQUIRE_FILE(path);
  testing::RealMatrix m;
  ASSERT_TRUE(testing::ReadFirstMatrixF32(path, 256, &m));
  const std::vector<float>& w = m.w;
  const int64_t rows = m.rows, cols = m.cols;
  const std::string& name = m.name;
  double ms = 0;
  for (float v : w) ms += double(v) * v;
  ms /= w.size();
  for (const FormatTraits& f : Formats()) {
    if (!f.from_float || cols % f.block_elems != 0) continue;
    const Quantized q = RoundTrip(f.type, w);
    const double rel = std::sqrt(Sse(w, q.deq) / w.size() / ms);
    std::printf("  %-6s %7.4f bpw  rel-rmse %.5f  (%s, %lldx%lld)\n", f.name, f.bits_per_weight, rel, name.c_str(),
                static_cast<long long>(rows), static_cast<long long>(cols));
    if (f.block_elems == 1) {
      // Float formats: relative rounding error <= 2^-(mantissa bits + 1) per element.
      const int mant = f.type == TensorType::kF32 ? 23 : f.type == TensorType::kF16 ? 10 : 7;
      EXPECT_LE(rel, std::ldexp(1.0, -(mant + 1))) << f.name;
      continue;
    }
    // A b-bit grid over a range of ~6 rms (+-3 sigma) has rmse <= 6/(2^b-1)/sqrt(12) rms.
    const double bits = std::floor(f.bits_per_weight);
    EXPECT_LT(rel, 6.0 / (std::pow(2.0, bits) - 1) / std::sqrt(12.0)) << f.name;
  }
}

}  // namespace
}  // namespace tabfit
