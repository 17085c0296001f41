// quant_test: TF_Q2R (quant/tf_q2r.h): the rotation is orthonormal, the stored blocks are
// TF_Q2 of the rotated weights, mat-mul equals the dot in the original basis, and the
// rotation lowers the error on rows with outliers.
#include "quant/tf_q2r.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "quant/kernel_list.h"
#include "quant/kernels.h"

namespace tabfit {
namespace {

std::vector<float> Normal(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

double Sse(const std::vector<float>& a, const std::vector<float>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
  return s;
}

TEST(TfQ2R, RotationIsOrthonormalAndSpreadsAUnitVector) {
  auto x = Normal(512, 1);
  auto y = x;
  TfRotate256(y.data(), 512);
  double nx = 0, ny = 0;
  for (int i = 0; i < 512; ++i) nx += double(x[i]) * x[i], ny += double(y[i]) * y[i];
  EXPECT_NEAR(ny, nx, 1e-4 * nx);
  EXPECT_GT(Sse(x, y), 0.1 * nx);  // it does rotate
  TfUnrotate256(y.data(), 512);
  for (int i = 0; i < 512; ++i) ASSERT_NEAR(y[i], x[i], 1e-5f) << i;
  // A unit vector becomes ±1/16 everywhere, with both signs present (random signs).
  std::vector<float> e(256, 0.0f);
  e[37] = 1.0f;
  TfRotate256(e.data(), 256);
  int neg = 0;
  for (float v : e) {
    ASSERT_EQ(std::fabs(v), 0.0625f);
    neg += v < 0;
  }
  EXPECT_GT(neg, 64);
  EXPECT_LT(neg, 192);
}

TEST(TfQ2R, BlocksAreTfQ2OfRotatedWeightsAndImportanceIsIgnored) {
  const int64_t n = 1024;
  auto w = Normal(n, 2, 0.05f);
  std::vector<uint8_t> a(RowBytes(TensorType::kTF_Q2R, n)), b(RowBytes(TensorType::kTF_Q2, n)), c(a.size());
  ASSERT_EQ(a.size(), b.size());
  QuantizeRow(TensorType::kTF_Q2R, w.data(), a.data(), n, nullptr);
  auto wr = w;
  TfRotate256(wr.data(), n);
  QuantizeRow(TensorType::kTF_Q2, wr.data(), b.data(), n, nullptr);
  EXPECT_EQ(a, b);
  std::vector<float> imp(n);
  for (int64_t i = 0; i < n; ++i) imp[i] = 1.0f + (i % 7);
  QuantizeRow(TensorType::kTF_Q2R, w.data(), c.data(), n, imp.data());
  EXPECT_EQ(a, c);
  // Dequantization returns to the original basis: R^T of the TF_Q2 values.
  std::vector<float> da(n), db(n);
  DequantizeRow(TensorType::kTF_Q2R, a.data(), da.data(), n);
  DequantizeRow(TensorType::kTF_Q2, b.data(), db.data(), n);
  TfUnrotate256(db.data(), n);
  for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(da[i], db[i], 1e-6f);
  EXPECT_LT(Sse(da, w), 0.2 * Sse(w, std::vector<float>(n, 0.0f)));
}

TEST(TfQ2R, MatMulEqualsDotOfDequantizedWeightsWithX) {
  const int64_t rows = 6, cols = 768, nt = 3;
  auto wf = Normal(rows * cols, 3, 0.05f);
  auto x = Normal(nt * cols, 4);
  const size_t rb = RowBytes(TensorType::kTF_Q2R, cols);
  std::vector<uint8_t> w(rows * rb);
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(TensorType::kTF_Q2R, wf.data() + r * cols, w.data() + r * rb, cols, nullptr);
  std::vector<uint8_t> packed(nt * PackedActivationRowBytes(TensorType::kTF_Q2R, cols));
  ASSERT_FALSE(packed.empty());
  PackActivations(TensorType::kTF_Q2R, x.data(), nt, cols, packed.data());
  std::vector<float> y(nt * rows);
  MatMulRows(TensorType::kTF_Q2R, w.data(), rb, 0, rows, cols, packed.data(), nt, y.data(), rows);
  std::vector<float> wd(cols);
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(TensorType::kTF_Q2R, w.data() + r * rb, wd.data(), cols);
    for (int64_t t = 0; t < nt; ++t) {
      double s = 0, wn = 0, xn = 0;
      for (int64_t i = 0; i < cols; ++i) {
        s += double(wd[i]) * x[t * cols + i];
        wn += double(wd[i]) * wd[i];
        xn += double(x[t * cols + i]) * x[t * cols + i];
      }
      // Only the int8 activation rounding separates the two: |err| << |w||x|.
      EXPECT_NEAR(y[t * rows + r], s, 0.01 * std::sqrt(wn * xn)) << r << " " << t;
    }
  }
}

TEST(TfQ2R, RotationLowersErrorOnRowsWithOutliers) {
  // Gaussian weights plus a few large outliers per superblock (like real matrices' heavy tails).
  const int64_t n = 256 * 32;
  auto w = Normal(n, 5, 0.02f);
  std::mt19937 rng(6);
  for (int64_t b = 0; b < n / 256; ++b)
    for (int k = 0; k < 3; ++k) w[b * 256 + rng() % 256] = (rng() % 2 ? 1 : -1) * 0.25f;
  std::vector<uint8_t> q(RowBytes(TensorType::kTF_Q2, n));
  std::vector<float> d2(n), dr(n);
  QuantizeRow(TensorType::kTF_Q2, w.data(), q.data(), n, nullptr);
  DequantizeRow(TensorType::kTF_Q2, q.data(), d2.data(), n);
  QuantizeRow(TensorType::kTF_Q2R, w.data(), q.data(), n, nullptr);
  DequantizeRow(TensorType::kTF_Q2R, q.data(), dr.data(), n);
  EXPECT_LT(Sse(dr, w), 0.8 * Sse(d2, w));
}

TEST(TfQ2R, TraitsShareTfQ2Geometry) {
  const FormatTraits* f = FindFormat(TensorType::kTF_Q2R);
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->pack, PackType::kQ8_KAR);
  EXPECT_EQ(f->block_bytes, 80);
  EXPECT_DOUBLE_EQ(BitsPerWeight(TensorType::kTF_Q2R), 2.5);
  EXPECT_EQ(TensorTypeName(TensorType::kTF_Q2R), "TF_Q2R");
  EXPECT_EQ(RowBytes(TensorType::kTF_Q2R, 512), 160u);
}

}  // namespace
}  // namespace tabfit
