// Run-time layouts (TF_Q2x16, TF_Q4x16, TF_Q8x16, Q8_0x16, Q4_0x16): packing round trips, and every layout kernel
// against the base format's scalar oracle (bit-identical), on random, adversarial
// and real weights, over whole and partial tiles.
#include "quant/q4_0x16.h"
#include "quant/q8_0x16.h"
#include "quant/tf_q2x16.h"
#include "quant/tf_q4x16.h"
#include "quant/tf_q8x16.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "quant/kernel_list.h"
#include "quant/kernels.h"
#include "quant/test_weights.h"
#include "test_util.h"

namespace tabfit {
namespace {

std::vector<float> Gaussian(int64_t n, uint32_t seed, float sigma = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<uint8_t> QuantizeRows(TensorType t, const std::vector<float>& wf, int64_t rows, int64_t cols) {
  const size_t rb = RowBytes(t, cols);
  std::vector<uint8_t> w(rb * rows);
  for (int64_t r = 0; r < rows; ++r) QuantizeRow(t, wf.data() + r * cols, w.data() + r * rb, cols, nullptr);
  return w;
}

// Every layout kernel on w (row-major rows of t) against the base format's scalar
// kernel, over whole and partial tiles: the reference kernels bit for bit, the fast
// ones too for the TF formats and within the FMA rounding bound for Q8_0 / Q4_0.
void CheckLayoutKernels(TensorType t, const std::vector<uint8_t>& w, int64_t rows, int64_t cols,
                        const std::string& what) {
  const FormatTraits* f = FindFormat(t);
  ASSERT_NE(f, nullptr);
  const size_t rb = RowBytes(t, cols);
  for (const LayoutTraits& lt : Layouts()) {
    if (lt.base[0] != t && lt.base[1] != t) continue;
    std::vector<uint8_t> tiled = w, scratch(LayoutScratchBytes(lt.layout, t, cols));
    ToLayout(lt.layout, t, tiled.data(), rows, cols, scratch.data());
    ASSERT_NE(tiled, w) << lt.name << ": the layout rearranged nothing";
    for (int64_t nt : {1, 2, 3, 4, 5, 9}) {
      auto x = Gaussian(nt * cols, 100 + static_cast<uint32_t>(nt), 1.5f);
      const size_t prb = PackedActivationRowBytes(t, cols);
      std::vector<uint8_t> packed(prb * nt);
      PackTraitsFor(f->pack).pack[0](x.data(), nt, cols, packed.data());
      std::vector<float> want(rows * nt);
      f->matmul[0](w.data(), rb, 0, rows, cols, packed.data(), nt, want.data(), rows);
      // TF formats' fast kernels reproduce the oracle's float expression; Q8_0x16 fuses
      // its multiply-add (as the row-major x86 Q8_0 kernels do).
      const bool exact_fast = f->pack == PackType::kQ8_KA || f->pack == PackType::kQ8_KAR;
      std::vector<double> abs_sum(rows * nt, 0.0);
      {
        std::vector<float> wd(cols);
        for (int64_t r = 0; r < rows; ++r) {
          DequantizeRow(t, w.data() + r * rb, wd.data(), cols);
          for (int64_t tt = 0; tt < nt; ++tt)
            for (int64_t i = 0; i < cols; ++i) abs_sum[tt * rows + r] += std::fabs(wd[i] * x[tt * cols + i]);
        }
      }
      struct Range {
        int64_t r0, r1;
      };
      for (Range rg : {Range{0, rows}, Range{16, rows}, Range{5, rows - 3}, Range{3, 9}}) {
        std::vector<MatMulFn> kernels = {lt.reference};
        if (lt.fast && lt.fast_available()) kernels.push_back(lt.fast);
        for (size_t k = 0; k < kernels.size(); ++k) {
          std::vector<float> got(rows * nt, -7.0f);
          kernels[k](tiled.data(), rb, rg.r0, rg.r1, cols, packed.data(), nt, got.data(), rows);
          for (int64_t tt = 0; tt < nt; ++tt)
            for (int64_t r = 0; r < rows; ++r) {
              const float g = got[tt * rows + r];
              if (r < rg.r0 || r >= rg.r1) {
                ASSERT_EQ(g, -7.0f) << "wrote outside [r0, r1): row " << r;
              } else if (k == 0 || exact_fast) {
                ASSERT_EQ(g, want[tt * rows + r])
                    << what << " " << lt.name << (k ? " fast" : " reference") << " rows [" << rg.r0 << ", " << rg.r1
                    << ") n_tokens " << nt << " token " << tt << " row " << r;
              } else {
                // Same integer sums, FMA in the float accumulation: n * eps * sum |w x|.
                ASSERT_NEAR(g, want[tt * rows + r], cols * 1.2e-7 * abs_sum[tt * rows + r] * 1.05 + 1e-30)
                    << what << " " << lt.name << " fast rows [" << rg.r0 << ", " << rg.r1 << ") n_tokens " << nt
                    << " token " << tt << " row " << r;
              }
            }
        }
      }
    }
  }
}

// The demo model's first matrix (whole tiles of it), quantized to t.
void CheckOnRealWeights(TensorType t) {
  const std::string path = testing::SharedModel("tabfit-demo-8m-f16.gguf");
  TABFIT_REQUIRE_FILE(path);
  testing::RealMatrix m;
  ASSERT_TRUE(testing::ReadFirstMatrixF32(path, 64, &m)) << path;
  const int64_t rows = m.rows / 16 * 16;
  ASSERT_GE(rows, 16);
  ASSERT_EQ(m.cols % 256, 0);
  CheckLayoutKernels(t, QuantizeRows(t, m.w, rows, m.cols), rows, m.cols, m.name);
}

TEST(TfQ2x16, PackingRoundTripsByteForByte) {
  for (TensorType t : {TensorType::kTF_Q2, TensorType::kTF_Q2R}) {
    const int64_t rows = 32, cols = 768;
    const auto w = QuantizeRows(t, Gaussian(rows * cols, 3, 0.05f), rows, cols);
    std::vector<uint8_t> v = w, scratch(LayoutScratchBytes(WeightLayout::kTfQ2x16, t, cols));
    ASSERT_EQ(scratch.size(), 16 * RowBytes(t, cols));
    ToLayout(WeightLayout::kTfQ2x16, t, v.data(), rows, cols, scratch.data());
    EXPECT_NE(v, w);
    FromLayout(WeightLayout::kTfQ2x16, t, v.data(), rows, cols, scratch.data());
    EXPECT_EQ(v, w);
  }
}

TEST(TfQ2x16, KernelsMatchTfQ2ScalarOnRandomWeights) {
  for (TensorType t : {TensorType::kTF_Q2, TensorType::kTF_Q2R})
    for (int64_t cols : {256, 768, 2048}) {
      const int64_t rows = 48;
      CheckLayoutKernels(t, QuantizeRows(t, Gaussian(rows * cols, 7, 0.05f), rows, cols), rows, cols,
                         "random cols " + std::to_string(cols));
    }
}

// Codes all 3, sub-scales 15 and offsets 9 (and 2), against activations of +-127: the
// largest |sum(q*y)| and sc*z*bsum the kernel's int16 / int8 splits must hold.
TEST(TfQ2x16, KernelsMatchAtTheIntegerExtremes) {
  const int64_t rows = 32, cols = 512;
  const size_t rb = RowBytes(TensorType::kTF_Q2, cols);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 rng(9);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 256; ++b) {
      BlockTfQ2 blk;
      blk.d = 0x3C00;  // 1.0
      uint8_t sc[16], z[16];
      for (int g = 0; g < 16; ++g) {
        sc[g] = 15;
        z[g] = (r % 2) ? 9 : 2;
      }
      PackScz(sc, z, blk.scz);
      std::memset(blk.qs, (r % 4 < 2) ? 0xFF : static_cast<int>(rng() & 0xFF), sizeof(blk.qs));
      std::memcpy(w.data() + r * rb + b * sizeof(blk), &blk, sizeof(blk));
    }
  CheckLayoutKernels(TensorType::kTF_Q2, w, rows, cols, "extremes");
}

TEST(TfQ2x16, KernelsMatchTfQ2ScalarOnRealWeights) {
  CheckOnRealWeights(TensorType::kTF_Q2);
  CheckOnRealWeights(TensorType::kTF_Q2R);
}

TEST(Q8_0x16, PackingRoundTripsByteForByte) {
  const int64_t rows = 48, cols = 320;
  const auto w = QuantizeRows(TensorType::kQ8_0, Gaussian(rows * cols, 4, 0.05f), rows, cols);
  std::vector<uint8_t> v = w, scratch(LayoutScratchBytes(WeightLayout::kQ8_0x16, TensorType::kQ8_0, cols));
  ASSERT_EQ(scratch.size(), 16 * RowBytes(TensorType::kQ8_0, cols));
  ToLayout(WeightLayout::kQ8_0x16, TensorType::kQ8_0, v.data(), rows, cols, scratch.data());
  EXPECT_NE(v, w);
  FromLayout(WeightLayout::kQ8_0x16, TensorType::kQ8_0, v.data(), rows, cols, scratch.data());
  EXPECT_EQ(v, w);
}

TEST(Q8_0x16, KernelsMatchQ8_0ScalarOnRandomWeights) {
  for (int64_t cols : {32, 96, 2048}) {
    const int64_t rows = 48;
    CheckLayoutKernels(TensorType::kQ8_0, QuantizeRows(TensorType::kQ8_0, Gaussian(rows * cols, 8, 0.05f), rows, cols),
                       rows, cols, "random cols " + std::to_string(cols));
  }
}

// A row longer than the old 32768-column limit of the kernel's activation-sum buffer
// (now 131072): the fast path, several tokens, one tile.
TEST(Q8_0x16, KernelsMatchOnLongRows) {
  const int64_t rows = 16, cols = 40960;
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0}) {
    const auto w = QuantizeRows(t, Gaussian(rows * cols, 16, 0.05f), rows, cols);
    CheckLayoutKernels(t, w, rows, cols, "long rows");
  }
}

// Codes -128 and 127 (GGUF files may hold -128) against activations of +-127.
TEST(Q8_0x16, KernelsMatchAtTheIntegerExtremes) {
  const int64_t rows = 32, cols = 256;
  const size_t rb = RowBytes(TensorType::kQ8_0, cols);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 rng(5);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 32; ++b) {
      BlockQ8_0 blk;
      blk.d = 0x3C00;
      for (int j = 0; j < 32; ++j) blk.qs[j] = (r % 3 == 0) ? -128 : (r % 3 == 1) ? 127 : static_cast<int8_t>(rng());
      std::memcpy(w.data() + r * rb + b * sizeof(blk), &blk, sizeof(blk));
    }
  CheckLayoutKernels(TensorType::kQ8_0, w, rows, cols, "extremes");
}

TEST(Q8_0x16, KernelsMatchQ8_0ScalarOnRealWeights) {
  CheckOnRealWeights(TensorType::kQ8_0);
}

TEST(Q4_0x16, PackingRoundTripsAndKernelsMatchQ4_0Scalar) {
  for (int64_t cols : {32, 96, 2048}) {
    const int64_t rows = 48;
    const auto w = QuantizeRows(TensorType::kQ4_0, Gaussian(rows * cols, 12, 0.05f), rows, cols);
    std::vector<uint8_t> v = w, scratch(LayoutScratchBytes(WeightLayout::kQ4_0x16, TensorType::kQ4_0, cols));
    ToLayout(WeightLayout::kQ4_0x16, TensorType::kQ4_0, v.data(), rows, cols, scratch.data());
    EXPECT_NE(v, w);
    FromLayout(WeightLayout::kQ4_0x16, TensorType::kQ4_0, v.data(), rows, cols, scratch.data());
    EXPECT_EQ(v, w);
    CheckLayoutKernels(TensorType::kQ4_0, w, rows, cols, "random cols " + std::to_string(cols));
  }
}

// Every code 0 and 15 (values -8 and 7) against activations of +-127.
TEST(Q4_0x16, KernelsMatchAtTheIntegerExtremes) {
  const int64_t rows = 32, cols = 256;
  const size_t rb = RowBytes(TensorType::kQ4_0, cols);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 rng(6);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 32; ++b) {
      BlockQ4_0 blk;
      blk.d = 0x3C00;
      for (int j = 0; j < 16; ++j) blk.qs[j] = (r % 3 == 0) ? 0x00 : (r % 3 == 1) ? 0xFF : static_cast<uint8_t>(rng());
      std::memcpy(w.data() + r * rb + b * sizeof(blk), &blk, sizeof(blk));
    }
  CheckLayoutKernels(TensorType::kQ4_0, w, rows, cols, "extremes");
}

TEST(Q4_0x16, KernelsMatchQ4_0ScalarOnRealWeights) {
  CheckOnRealWeights(TensorType::kQ4_0);
}

TEST(TfQ4x16, PackingRoundTripsAndKernelsMatchTfQ4Scalar) {
  for (int64_t cols : {256, 768, 2048}) {
    const int64_t rows = 48;
    const auto w = QuantizeRows(TensorType::kTF_Q4, Gaussian(rows * cols, 13, 0.05f), rows, cols);
    std::vector<uint8_t> v = w, scratch(LayoutScratchBytes(WeightLayout::kTfQ4x16, TensorType::kTF_Q4, cols));
    ToLayout(WeightLayout::kTfQ4x16, TensorType::kTF_Q4, v.data(), rows, cols, scratch.data());
    EXPECT_NE(v, w);
    FromLayout(WeightLayout::kTfQ4x16, TensorType::kTF_Q4, v.data(), rows, cols, scratch.data());
    EXPECT_EQ(v, w);
    CheckLayoutKernels(TensorType::kTF_Q4, w, rows, cols, "random cols " + std::to_string(cols));
  }
}

// Codes 15, sub-scales and mins 63 against activations of +-127: the largest
// sum(q*y) * sc and m * group sums the kernel's int32 / int8 splits must hold.
TEST(TfQ4x16, KernelsMatchAtTheIntegerExtremes) {
  const int64_t rows = 32, cols = 512;
  const size_t rb = RowBytes(TensorType::kTF_Q4, cols);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 rng(10);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 256; ++b) {
      BlockTfQ4 blk;
      blk.d = 0x3C00;
      blk.dmin = 0x3800;
      uint8_t sc[8], m[8];
      for (int g = 0; g < 8; ++g) {
        sc[g] = (r % 2) ? 63 : static_cast<uint8_t>(rng() & 63);
        m[g] = (r % 2) ? 63 : static_cast<uint8_t>(rng() & 63);
      }
      PackScales6(sc, m, blk.scales);
      std::memset(blk.qs, (r % 4 < 2) ? 0xFF : static_cast<int>(rng() & 0xFF), sizeof(blk.qs));
      std::memcpy(w.data() + r * rb + b * sizeof(blk), &blk, sizeof(blk));
    }
  CheckLayoutKernels(TensorType::kTF_Q4, w, rows, cols, "extremes");
}

TEST(TfQ4x16, KernelsMatchTfQ4ScalarOnRealWeights) {
  CheckOnRealWeights(TensorType::kTF_Q4);
}

TEST(TfQ8x16, PackingRoundTripsAndKernelsMatchTfQ8Scalar) {
  for (int64_t cols : {256, 768, 2048}) {
    const int64_t rows = 48;
    const auto w = QuantizeRows(TensorType::kTF_Q8, Gaussian(rows * cols, 14, 0.05f), rows, cols);
    std::vector<uint8_t> v = w, scratch(LayoutScratchBytes(WeightLayout::kTfQ8x16, TensorType::kTF_Q8, cols));
    ToLayout(WeightLayout::kTfQ8x16, TensorType::kTF_Q8, v.data(), rows, cols, scratch.data());
    EXPECT_NE(v, w);
    FromLayout(WeightLayout::kTfQ8x16, TensorType::kTF_Q8, v.data(), rows, cols, scratch.data());
    EXPECT_EQ(v, w);
    CheckLayoutKernels(TensorType::kTF_Q8, w, rows, cols, "random cols " + std::to_string(cols));
  }
}

// Codes -127 / 127 with sub-scales 255 against activations of +-127.
TEST(TfQ8x16, KernelsMatchAtTheIntegerExtremes) {
  const int64_t rows = 32, cols = 512;
  const size_t rb = RowBytes(TensorType::kTF_Q8, cols);
  std::vector<uint8_t> w(rb * rows);
  std::mt19937 rng(15);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t b = 0; b < cols / 256; ++b) {
      BlockTfQ8 blk;
      blk.d = 0x0400;  // small: 255 * 127 * 127 * 256 stays finite and exact in int32
      for (int g = 0; g < 8; ++g) blk.scales[g] = (r % 2) ? 255 : static_cast<uint8_t>(rng());
      for (int k = 0; k < 256; ++k) blk.qs[k] = (r % 4 == 0) ? 127 : (r % 4 == 1) ? -127 : static_cast<int8_t>(rng() % 255 - 127);
      std::memcpy(w.data() + r * rb + b * sizeof(blk), &blk, sizeof(blk));
    }
  CheckLayoutKernels(TensorType::kTF_Q8, w, rows, cols, "extremes");
}

TEST(TfQ8x16, KernelsMatchTfQ8ScalarOnRealWeights) {
  CheckOnRealWeights(TensorType::kTF_Q8);
}

TEST(Layouts, PreferredLayoutFollowsTypeShapeAndCpu) {
  const WeightLayout tq8 = qk::TfQ8x16KernelAvailable() ? WeightLayout::kTfQ8x16 : WeightLayout::kRowMajor;
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q8, 64, 512), tq8);
  const WeightLayout tq4 = qk::TfQ4x16KernelAvailable() ? WeightLayout::kTfQ4x16 : WeightLayout::kRowMajor;
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q4, 64, 512), tq4);
  const WeightLayout q4 = qk::Q4_0x16KernelAvailable() ? WeightLayout::kQ4_0x16 : WeightLayout::kRowMajor;
  EXPECT_EQ(PreferredLayout(TensorType::kQ4_0, 64, 512), q4);
  const WeightLayout q8 = qk::Q8_0x16KernelAvailable() ? WeightLayout::kQ8_0x16 : WeightLayout::kRowMajor;
  EXPECT_EQ(PreferredLayout(TensorType::kQ8_0, 64, 512), q8);
  EXPECT_EQ(PreferredLayout(TensorType::kQ8_0, 40, 512), WeightLayout::kRowMajor);
#if defined(__x86_64__) && defined(TABFIT_TEST_EXPECT_AVX512VNNI_KERNELS)
  EXPECT_EQ(qk::Q8_0x16KernelAvailable(), IsaAvailable(Isa::kAvx512Vnni));
#endif
}

TEST(TfQ2x16, PreferredLayoutFollowsTypeShapeAndCpu) {
  const bool fast = qk::TfQ2x16KernelAvailable();
  const WeightLayout want = fast ? WeightLayout::kTfQ2x16 : WeightLayout::kRowMajor;
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q2, 64, 512), want);
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q2R, 64, 512), want);
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q2, 40, 512), WeightLayout::kRowMajor);  // not whole tiles
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q2, 64, 500), WeightLayout::kRowMajor);
  EXPECT_EQ(LayoutTileRows(WeightLayout::kRowMajor), 1);
  EXPECT_EQ(LayoutTileRows(WeightLayout::kTfQ2x16), 16);
  EXPECT_EQ(LayoutScratchBytes(WeightLayout::kTfQ2x16, TensorType::kTF_Q4, 512), 0u);  // not its type
  EXPECT_EQ(PreferredLayout(TensorType::kTF_Q3, 64, 512), WeightLayout::kRowMajor);   // no layout
#if defined(__x86_64__) && defined(TABFIT_TEST_EXPECT_X16_KERNEL)
  EXPECT_EQ(fast, __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") &&
                      __builtin_cpu_supports("gfni") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx2"));
#endif
}

}  // namespace
}  // namespace tabfit
