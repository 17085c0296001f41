// quant_test: TF_Q2S / TF_Q2SR (quant/tf_q2s.h): block layout and symmetric grid,
// search quality, importance, rotation. (Kernels vs the scalar oracle: the table-driven
// MatMul tests in kernels_test.cpp cover every Formats() entry, these included.)
#include "quant/tf_q2s.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/f16.h"
#include "quant/kernel_list.h"
#include "quant/kernels.h"
#include "quant/tf_q2r.h"

namespace tabfit {
namespace {

std::vector<float> Normal(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

double WSse(const std::vector<float>& a, const std::vector<float>& b, const float* w = nullptr) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (w ? w[i] : 1.0) * (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

TEST(TfQ2S, ValuesLieOnEachGroupsSymmetricGrid) {
  const int64_t n = 256 * 8;
  auto x = Normal(n, 1, 0.03f);
  std::vector<uint8_t> q(RowBytes(TensorType::kTF_Q2S, n));
  ASSERT_EQ(q.size(), n / 256 * 74u);
  QuantizeRow(TensorType::kTF_Q2S, x.data(), q.data(), n, nullptr);
  std::vector<float> d(n);
  DequantizeRow(TensorType::kTF_Q2S, q.data(), d.data(), n);
  for (int64_t b = 0; b < n / 256; ++b) {
    BlockTfQ2S blk;
    std::memcpy(&blk, q.data() + b * sizeof(blk), sizeof(blk));
    const float D = F16ToF32(blk.d);
    for (int g = 0; g < 16; ++g) {
      const float S = D * ((blk.sc[g / 2] >> (4 * (g % 2))) & 15);
      for (int i = 0; i < 16; ++i) {
        const float v = d[b * 256 + g * 16 + i];
        const float k = S > 0 ? v / S + 1.5f : 0.0f;  // must be an integer code 0..3
        ASSERT_NEAR(k, std::round(k), 1e-3f);
        ASSERT_GE(std::round(k), 0.0f);
        ASSERT_LE(std::round(k), 3.0f);
        // Nearest grid point: never further than half a step inside the grid.
        if (S > 0 && std::fabs(x[b * 256 + g * 16 + i]) <= 1.5f * S) ASSERT_LE(std::fabs(v - x[b * 256 + g * 16 + i]), 0.5f * S * 1.001f);
      }
    }
  }
  // Quality: Gaussian data at 4 symmetric levels per 16 values: relative MSE ~0.12.
  double ref = 0;
  for (float v : x) ref += double(v) * v;
  EXPECT_LT(WSse(d, x), 0.14 * ref);
  EXPECT_GT(WSse(d, x), 0.05 * ref);
}

TEST(TfQ2S, ImportanceLowersTheWeightedError) {
  const int64_t n = 256 * 16;
  auto x = Normal(n, 2, 0.03f);
  std::vector<float> imp(n);
  std::mt19937 rng(3);
  for (auto& v : imp) v = (rng() % 6 == 0) ? 30.0f : 0.5f;
  std::vector<uint8_t> q(RowBytes(TensorType::kTF_Q2S, n));
  std::vector<float> plain(n), weighted(n);
  QuantizeRow(TensorType::kTF_Q2S, x.data(), q.data(), n, nullptr);
  DequantizeRow(TensorType::kTF_Q2S, q.data(), plain.data(), n);
  QuantizeRow(TensorType::kTF_Q2S, x.data(), q.data(), n, imp.data());
  DequantizeRow(TensorType::kTF_Q2S, q.data(), weighted.data(), n);
  EXPECT_LT(WSse(weighted, x, imp.data()), 0.9 * WSse(plain, x, imp.data()));
}

TEST(TfQ2S, RotatedVariantStoresTfQ2SOfRotatedWeights) {
  const int64_t n = 512;
  auto x = Normal(n, 4, 0.03f);
  std::vector<uint8_t> a(RowBytes(TensorType::kTF_Q2SR, n)), b(a.size());
  QuantizeRow(TensorType::kTF_Q2SR, x.data(), a.data(), n, nullptr);
  auto xr = x;
  TfRotate256(xr.data(), n);
  QuantizeRow(TensorType::kTF_Q2S, xr.data(), b.data(), n, nullptr);
  EXPECT_EQ(a, b);
  std::vector<float> da(n), db(n);
  DequantizeRow(TensorType::kTF_Q2SR, a.data(), da.data(), n);
  DequantizeRow(TensorType::kTF_Q2S, b.data(), db.data(), n);
  TfUnrotate256(db.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(da[i], db[i], 1e-6f);
  const FormatTraits* f = FindFormat(TensorType::kTF_Q2SR);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->pack, PackType::kQ8_KAR);
  EXPECT_DOUBLE_EQ(BitsPerWeight(TensorType::kTF_Q2S), 2.3125);
  EXPECT_EQ(TensorTypeName(TensorType::kTF_Q2SR), "TF_Q2SR");
}

}  // namespace
}  // namespace tabfit
