// quant_test: formats (bit-exactness, error bounds derived from each format's step size)
// and every kernel in the kernel list against the scalar oracle.
#include "quant/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <cstring>
#include <random>
#include <vector>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernel_list.h"
#include "quant/kernels_impl.h"  // private, same module: the no-VBMI TF_Q2 kernel
#include "quant/test_weights.h"
#include "quant/tf_q2r.h"
#include "quant/vec.h"
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

std::vector<uint8_t> Quantize(TensorType t, const std::vector<float>& x, const float* imp = nullptr) {
  std::vector<uint8_t> q(RowBytes(t, static_cast<int64_t>(x.size())));
  QuantizeRow(t, x.data(), q.data(), static_cast<int64_t>(x.size()), imp);
  return q;
}

std::vector<float> Dequantize(TensorType t, const std::vector<uint8_t>& q, int64_t n) {
  std::vector<float> y(n);
  DequantizeRow(t, q.data(), y.data(), n);
  return y;
}

// ------------------------------------------------------------ GGML bit-exactness

TEST(Q8_0, HandComputedBlockMatchesGgmlRef) {
  // amax = 127 -> d = 127/127 = 1 (fp16 0x3C00), id = 1, q = roundf(x): halves round away from zero.
  std::vector<float> x(32, 0.0f);
  const float in[] = {-127.0f, 2.5f, -2.5f, 0.4999f, 1.5f, -0.5f, 0.5f, 126.6f, 3.49f};
  const int8_t want[] = {-127, 3, -3, 0, 2, -1, 1, 127, 3};
  std::copy(std::begin(in), std::end(in), x.begin());
  auto q = Quantize(TensorType::kQ8_0, x);
  BlockQ8_0 b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(b.d, 0x3C00);
  for (int j = 0; j < 9; ++j) EXPECT_EQ(b.qs[j], want[j]) << j;
  for (int j = 9; j < 32; ++j) EXPECT_EQ(b.qs[j], 0);
  // All-zero block: d = 0, id = 0, all codes 0.
  auto z = Quantize(TensorType::kQ8_0, std::vector<float>(32, 0.0f));
  for (uint8_t byte : z) EXPECT_EQ(byte, 0);
}

TEST(Q4_0, HandComputedBlockMatchesGgmlRef) {
  // Signed max -8 -> d = -8/-8 = 1, id = 1; code = min(15, (int8)(x + 8.5)).
  std::vector<float> x(32, 0.0f);
  x[0] = -8.0f;   // 0
  x[1] = 7.0f;    // 15
  x[2] = 0.4f;    // trunc(8.9) = 8
  x[3] = 0.5f;    // 9
  x[4] = -0.5f;   // 8
  x[5] = 7.9f;    // trunc(16.4) = 16 -> 15
  x[16] = -7.6f;  // trunc(0.9) = 0
  x[17] = 3.2f;   // 11
  auto q = Quantize(TensorType::kQ4_0, x);
  BlockQ4_0 b;
  std::memcpy(&b, q.data(), sizeof(b));
  EXPECT_EQ(b.d, 0x3C00);
  const int lo[] = {0, 15, 8, 9, 8, 15};
  for (int j = 0; j < 6; ++j) EXPECT_EQ(b.qs[j] & 15, lo[j]) << j;
  for (int j = 6; j < 16; ++j) EXPECT_EQ(b.qs[j] & 15, 8) << j;
  EXPECT_EQ(b.qs[0] >> 4, 0);
  EXPECT_EQ(b.qs[1] >> 4, 11);
  for (int j = 2; j < 16; ++j) EXPECT_EQ(b.qs[j] >> 4, 8) << j;
  // Positive max 8 -> d = -1: the max itself maps to code 0 (dequantizes to +8).
  std::vector<float> p(32, 0.0f);
  p[7] = 8.0f;
  auto pq = Quantize(TensorType::kQ4_0, p);
  std::memcpy(&b, pq.data(), sizeof(b));
  EXPECT_EQ(b.d, 0xBC00);
  EXPECT_EQ(b.qs[7] & 15, 0);
  EXPECT_EQ(Dequantize(TensorType::kQ4_0, pq, 32)[7], 8.0f);
}

// ------------------------------------------------------------ round trips

TEST(Formats, FloatRoundTripsAreExactWhereRepresentable) {
  std::vector<float> x = {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 0.000061035156f, 0.5f, 1024.0f};
  EXPECT_EQ(Dequantize(TensorType::kF16, Quantize(TensorType::kF16, x), 8), x);
  EXPECT_EQ(Dequantize(TensorType::kBF16, Quantize(TensorType::kBF16, x), 8)[3], -2.5f);
  auto g = Gaussian(256, 1);
  EXPECT_EQ(Dequantize(TensorType::kF32, Quantize(TensorType::kF32, g), 256), g);
  // Values already on a Q8_0 grid (d exactly representable in fp16) survive exactly.
  std::vector<float> grid(64);
  for (int i = 0; i < 64; ++i) grid[i] = static_cast<float>((i * 37) % 255 - 127) * 0.25f;
  grid[0] = 127 * 0.25f;
  grid[32] = -127 * 0.25f;
  EXPECT_EQ(Dequantize(TensorType::kQ8_0, Quantize(TensorType::kQ8_0, grid), 64), grid);
}

// Per-element bound for the GGML grids: |x - deq| <= |d|/2 (plus fp16
// rounding of d, which scales every code: |q| * |d - d16| <= 127 * |d| * 2^-11).
TEST(Formats, GgmlQuantErrorWithinHalfStep) {
  auto x = Gaussian(32 * 512, 7, 2.0f);
  for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0}) {
    auto q = Quantize(t, x);
    auto y = Dequantize(t, q, static_cast<int64_t>(x.size()));
    const int bb = t == TensorType::kQ8_0 ? 34 : 18;
    const int qmax = t == TensorType::kQ8_0 ? 127 : 8;
    for (size_t b = 0; b < x.size() / 32; ++b) {
      uint16_t dh;
      std::memcpy(&dh, q.data() + b * bb, 2);
      const float ds = F16ToF32(dh), d = std::fabs(ds);
      for (int j = 0; j < 32; ++j) {
        const size_t i = b * 32 + j;
        // Q4_0's grid is asymmetric (-8..7 steps of the signed d): the side opposite to
        // the block's max clamps at 7 steps, so error there is (x/d - 7) steps <= 1 step.
        const float steps = t == TensorType::kQ4_0 ? std::max(0.5f, x[i] / ds - 7.0f) : 0.5f;
        ASSERT_LE(std::fabs(x[i] - y[i]), d * steps + qmax * d * 0x1p-11f + 1e-6f)
            << TensorTypeName(t) << " block " << b << " elem " << j;
      }
    }
  }
}

TEST(Formats, TraitsAgreeWithTypesGeometry) {
  for (const FormatTraits& f : Formats()) {
    int64_t be = 0, bb = 0;
    ASSERT_TRUE(TensorTypeGeometry(static_cast<uint32_t>(f.type), &be, &bb)) << f.name;
    EXPECT_EQ(be, f.block_elems) << f.name;
    EXPECT_EQ(bb, f.block_bytes) << f.name;
    EXPECT_EQ(TensorTypeName(f.type), std::string_view(f.name));
    EXPECT_DOUBLE_EQ(f.bits_per_weight, 8.0 * f.block_bytes / f.block_elems) << f.name;
  }
}

// ------------------------------------------------------------ kernels vs oracle

// Tolerance for comparing two float evaluations of the same dot product that
// differ only in summation order / FMA: n * eps * sum|a_i b_i| (+ a tiny absolute).
float DotTolerance(int64_t n, float abs_sum) { return n * 1.2e-7f * abs_sum + 1e-30f; }

struct MatMulCase {
  const FormatTraits* f;
  int64_t rows, cols;
  std::vector<uint8_t> w;    // rows * row_bytes
  std::vector<float> x;      // n_tokens * cols
  int64_t n_tokens;
};

// Exact dequantized-weight x packed-activation reference, with the |a||b| sum for tolerances.
void OracleDot(const MatMulCase& c, std::vector<float>* out, std::vector<float>* abs_sums) {
  const size_t rb = RowBytes(c.f->type, c.cols);
  const PackTraits& p = PackTraitsFor(c.f->pack);
  const size_t prb = PackedActivationRowBytes(c.f->type, c.cols);
  std::vector<uint8_t> packed(prb * c.n_tokens);
  p.pack[0](c.x.data(), c.n_tokens, c.cols, packed.data());
  out->assign(c.rows * c.n_tokens, 0.0f);
  abs_sums->assign(c.rows * c.n_tokens, 0.0f);
  // Scalar kernel is the oracle for values; abs sums from dequantized data.
  c.f->matmul[0](c.w.data(), rb, 0, c.rows, c.cols, packed.data(), c.n_tokens, out->data(), c.rows);
  std::vector<float> wrow(c.cols);
  for (int64_t r = 0; r < c.rows; ++r) {
    c.f->to_float(c.w.data() + r * rb, wrow.data(), c.cols);
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      double s = 0;
      for (int64_t i = 0; i < c.cols; ++i) s += std::fabs(wrow[i] * c.x[t * c.cols + i]);
      (*abs_sums)[t * c.rows + r] = static_cast<float>(s) * 1.01f;
    }
  }
}

MatMulCase MakeCase(const FormatTraits& f, int64_t rows, int64_t cols, int64_t n_tokens, uint32_t seed) {
  MatMulCase c{&f, rows, cols, {}, Gaussian(n_tokens * cols, seed + 1), n_tokens};
  auto wf = Gaussian(rows * cols, seed, 0.05f);
  const size_t rb = RowBytes(f.type, cols);
  c.w.resize(rb * rows);
  for (int64_t r = 0; r < rows; ++r) f.from_float(wf.data() + r * cols, c.w.data() + r * rb, cols, nullptr);
  return c;
}

// The scalar kernel itself equals a double-precision dot of dequantized weights with
// dequantized packed activations (checks the oracle against the formats' definitions).
TEST(MatMul, ScalarKernelEqualsDequantizedDot) {
  for (const FormatTraits& f : Formats()) {
    if (!f.matmul[0]) continue;
    const int64_t cols = std::max<int64_t>(256, f.block_elems) * 2;
    MatMulCase c = MakeCase(f, 5, cols, 2, 11);
    std::vector<float> got, abs_sums;
    OracleDot(c, &got, &abs_sums);
    const size_t rb = RowBytes(f.type, cols);
    // Dequantize packed activations by definition.
    const size_t prb = PackedActivationRowBytes(f.type, cols);
    std::vector<uint8_t> packed(prb * c.n_tokens);
    PackTraitsFor(f.pack).pack[0](c.x.data(), c.n_tokens, cols, packed.data());
    std::vector<float> xd(cols), wd(cols);
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      const uint8_t* pr = packed.data() + t * prb;
      if (f.pack == PackType::kF32) {
        std::memcpy(xd.data(), pr, cols * 4);
      } else if (f.pack == PackType::kQ8_0A) {
        for (int64_t b = 0; b < cols / 32; ++b) {
          BlockQ8_0A blk;
          std::memcpy(&blk, pr + b * sizeof(blk), sizeof(blk));
          for (int j = 0; j < 32; ++j) xd[b * 32 + j] = blk.d * blk.qs[j];
        }
      } else {
        for (int64_t b = 0; b < cols / 256; ++b) {
          BlockQ8_KA blk;
          std::memcpy(&blk, pr + b * sizeof(blk), sizeof(blk));
          for (int g = 0; g < 16; ++g) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += blk.qs[g * 16 + j];
            ASSERT_EQ(s, blk.bsums[g]);
          }
          for (int j = 0; j < 256; ++j) xd[b * 256 + j] = blk.d * blk.qs[j];
        }
      }
      for (int64_t r = 0; r < c.rows; ++r) {
        f.to_float(c.w.data() + r * rb, wd.data(), cols);
        if (f.pack == PackType::kQ8_KAR) TfRotate256(wd.data(), cols);  // packed x is R x
        double s = 0, a = 0;
        for (int64_t i = 0; i < cols; ++i) {
          s += static_cast<double>(wd[i]) * xd[i];
          a += std::fabs(static_cast<double>(wd[i]) * xd[i]);
        }
        EXPECT_NEAR(got[t * c.rows + r], s, DotTolerance(cols, static_cast<float>(a)) * 2)
            << f.name << " r=" << r << " t=" << t;
      }
    }
  }
}

// Every compiled-and-available kernel (matmul and pack) vs the scalar oracle, with
// n_tokens 1, 3, 17 and odd row ranges; also the public (dispatched) MatMulRows.
void CheckKernelsOn(const FormatTraits& f, const MatMulCase& c, const std::string& what) {
  std::vector<float> want, abs_sums;
  OracleDot(c, &want, &abs_sums);
  const size_t rb = RowBytes(f.type, c.cols);
  const size_t prb = PackedActivationRowBytes(f.type, c.cols);
  const PackTraits& p = PackTraitsFor(f.pack);
  std::vector<uint8_t> packed_ref(prb * c.n_tokens);
  p.pack[0](c.x.data(), c.n_tokens, c.cols, packed_ref.data());
  for (int isa = 0; isa < kIsaCount; ++isa) {
    if (!IsaAvailable(static_cast<Isa>(isa))) continue;
    if (p.pack[isa]) {
      std::vector<uint8_t> packed(prb * c.n_tokens);
      p.pack[isa](c.x.data(), c.n_tokens, c.cols, packed.data());
      EXPECT_EQ(packed, packed_ref) << "pack " << p.name << " " << IsaName(static_cast<Isa>(isa)) << " " << what;
    }
    if (!f.matmul[isa]) continue;
    // Odd sub-ranges: [1, rows-2) and [rows-1, rows) with y pre-filled to detect out-of-range writes.
    const int64_t ranges[][2] = {{0, c.rows}, {1, c.rows - 2}, {c.rows - 1, c.rows}};
    for (const auto& rr : ranges) {
      if (rr[1] <= rr[0]) continue;
      const int64_t ldy = c.rows + 3;
      std::vector<float> y(ldy * c.n_tokens, -12345.0f);
      f.matmul[isa](c.w.data(), rb, rr[0], rr[1], c.cols, packed_ref.data(), c.n_tokens, y.data(), ldy);
      for (int64_t t = 0; t < c.n_tokens; ++t) {
        for (int64_t r = 0; r < ldy; ++r) {
          const float got = y[t * ldy + r];
          if (r < rr[0] || r >= rr[1]) {
            ASSERT_EQ(got, -12345.0f) << "wrote outside rows " << f.name << " r=" << r;
            continue;
          }
          const float ref = want[t * c.rows + r];
          // TF kernels combine exact integer sums per superblock with the scalar
          // oracle's float expression in the same order: bit-identical by design.
          if (f.pack == PackType::kQ8_KA) ASSERT_EQ(got, ref) << f.name << " " << IsaName(static_cast<Isa>(isa));
          ASSERT_NEAR(got, ref, DotTolerance(c.cols, abs_sums[t * c.rows + r]))
              << f.name << " " << IsaName(static_cast<Isa>(isa)) << " " << what << " r=" << r << " t=" << t
              << " range [" << rr[0] << "," << rr[1] << ")";
        }
      }
    }
  }
  // Public API (dispatch).
  std::vector<uint8_t> packed(prb * c.n_tokens);
  PackActivations(f.type, c.x.data(), c.n_tokens, c.cols, packed.data());
  EXPECT_EQ(packed, packed_ref);
  std::vector<float> y(c.rows * c.n_tokens);
  MatMulRows(f.type, c.w.data(), rb, 0, c.rows, c.cols, packed.data(), c.n_tokens, y.data(), c.rows);
  for (size_t i = 0; i < y.size(); ++i) ASSERT_NEAR(y[i], want[i], DotTolerance(c.cols, abs_sums[i])) << f.name;
}

TEST(MatMul, AllKernelsMatchScalarOnRandomData) {
  for (const FormatTraits& f : Formats()) {
    if (!f.matmul[0]) continue;
    for (int64_t nt : {1, 3, 17}) {
      const int64_t cols = std::max<int64_t>(256, f.block_elems) * 3;
      MatMulCase c = MakeCase(f, 13, cols, nt, static_cast<uint32_t>(100 + nt));
      CheckKernelsOn(f, c, "random n_tokens=" + std::to_string(nt));
    }
  }
}

// Decode (one token) kernels step 8 rows at a time and, for Q4_0, two blocks per
// load: cover an even and an odd block count with rows a multiple of 8, so the
// last step reads the matrix's final bytes (ASan flags any read past them).
TEST(MatMul, DecodeKernelsCoverBlockParitiesAndTheMatrixEnd) {
  for (const FormatTraits& f : Formats()) {
    if (!f.matmul[0]) continue;
    const int64_t unit = std::max<int64_t>(256, f.block_elems);
    for (int64_t extra : {int64_t{0}, f.block_elems}) {  // an even, then an odd number of blocks
      const int64_t cols = 2 * unit + extra;
      MatMulCase c = MakeCase(f, 16, cols, 1, static_cast<uint32_t>(300 + extra));
      CheckKernelsOn(f, c, "decode cols=" + std::to_string(cols));
    }
  }
}

#if defined(TABFIT_TEST_EXPECT_AVX512VNNI_KERNELS)
// The TF_Q2 VNNI entry uses an AVX512_VBMI header decode where CPUID has it; the
// AVX512BW-only decode (CPUs with VNNI but no VBMI) must stay covered on those that do.
TEST(MatMul, TfQ2VnniWithoutVbmiMatchesScalar) {
  if (!IsaAvailable(Isa::kAvx512Vnni)) GTEST_SKIP() << "CPU lacks AVX-512 VNNI";
  for (TensorType t : {TensorType::kTF_Q2, TensorType::kTF_Q2R}) {
    FormatTraits f = *FindFormat(t);
    f.matmul[static_cast<int>(Isa::kAvx512Vnni)] = qk::MatMulTfQ2Avx512VnniNoVbmi;
    for (int64_t cols : {512, 768}) {
      for (int64_t nt : {1, 3}) {
        MatMulCase c = MakeCase(f, 16, cols, nt, static_cast<uint32_t>(500 + cols + nt));
        CheckKernelsOn(f, c, std::string(f.name) + " without VBMI cols=" + std::to_string(cols));
      }
    }
  }
}
#endif

// Enough tokens x columns that the packed activations exceed the driver's L2 chunk
// (192 KiB), so several token chunks with ragged tails are walked.
TEST(MatMul, LongPrefillAcrossTokenChunksMatchesScalar) {
  for (TensorType t : {TensorType::kF16, TensorType::kQ4_0, TensorType::kTF_Q4}) {
    const FormatTraits& f = *FindFormat(t);
    const int64_t cols = 8192, nt = 53;
    ASSERT_GT(PackedActivationRowBytes(t, cols) * nt, 2u * 192 * 1024) << f.name;
    MatMulCase c = MakeCase(f, 7, cols, nt, 77);
    CheckKernelsOn(f, c, "long prefill");
  }
}

TEST(MatMul, AllKernelsMatchScalarOnRealWeights) {
  const std::string path = testing::SharedModel("tabfit-demo-8m-f16.gguf");
  TABFIT_REQUIRE_FILE(path);
  testing::RealMatrix m;
  ASSERT_TRUE(testing::ReadFirstMatrixF32(path, 64, &m)) << path;
  const std::vector<float>& wf = m.w;
  const int64_t rows = m.rows, cols = m.cols;
  const std::string& name = m.name;
  ASSERT_GT(rows, 3);
  for (const FormatTraits& f : Formats()) {
    if (!f.matmul[0] || cols % f.block_elems != 0) continue;
    const size_t rb = RowBytes(f.type, cols);
    for (int64_t nt : {1, 3, 17}) {
      MatMulCase c{&f, rows, cols, std::vector<uint8_t>(rb * rows), Gaussian(nt * cols, 5), nt};
      for (int64_t r = 0; r < rows; ++r) f.from_float(wf.data() + r * cols, c.w.data() + r * rb, cols, nullptr);
      CheckKernelsOn(f, c, name + " n_tokens=" + std::to_string(nt));
    }
  }
}

// ------------------------------------------------------------ vec ops

// Softmax exponentials: every ISA within 2 ulp of std::exp (the scalar entry IS
// std::exp) from 1 down to the clamp at -87.3, and the double sum to match.
TEST(Vec, ExpShiftSumMatchesStdExp) {
  for (int64_t n : {1, 7, 8, 9, 100, 1001}) {
    std::vector<float> x(n);
    std::mt19937 rng(static_cast<uint32_t>(n));
    std::uniform_real_distribution<float> u(-95.0f, 0.0f);
    for (auto& v : x) v = u(rng) + 3.0f;
    x[0] = 3.0f;  // exp(0) exactly
    for (const VecKernels& v : AllVecKernels()) {
      if (!IsaAvailable(v.isa)) continue;
      std::vector<float> y = x;
      const double sum = v.exp_shift_sum(y.data(), 3.0f, n);
      double want_sum = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float want = std::exp(x[i] - 3.0f);
        want_sum += want;
        if (x[i] - 3.0f < -87.3f) {
          ASSERT_LE(y[i], 1.2e-38f) << IsaName(v.isa);
          continue;
        }
        const float ulp = std::nextafter(want, INFINITY) - want;
        ASSERT_LE(std::fabs(y[i] - want), 2 * ulp) << IsaName(v.isa) << " x=" << x[i] - 3.0f << " got " << y[i];
      }
      EXPECT_EQ(y[0], 1.0f) << IsaName(v.isa);
      EXPECT_NEAR(sum, want_sum, 1e-6 * want_sum) << IsaName(v.isa) << " n=" << n;
    }
  }
}

// SwiGLU's gate: every ISA within a few ulp of the scalar oracle (std::exp), over
// the range where exp(-g) neither underflows nor hits the clamp, and tiny (not
// inf/nan) past it.
TEST(Vec, SiluMulMatchesScalar) {
  for (int64_t n : {1, 3, 4, 7, 8, 9, 2048, 2817}) {
    auto g = Gaussian(n, 41), u = Gaussian(n, 42);
    for (int64_t i = 0; i < n; ++i) g[i] *= 8.0f;
    if (n > 3) {
      g[0] = 0.0f;
      g[1] = -120.0f;  // exp(120) is past the clamp: silu ~ 0
      g[2] = 95.0f;    // exp(-95) is past the clamp: silu = g
      g[3] = -87.0f;
    }
    std::vector<float> want = g;
    AllVecKernels()[0].silu_mul(want.data(), u.data(), n);
    for (const VecKernels& v : AllVecKernels()) {
      if (!IsaAvailable(v.isa)) continue;
      std::vector<float> got = g;
      v.silu_mul(got.data(), u.data(), n);
      for (int64_t i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isfinite(got[i])) << IsaName(v.isa) << " g=" << g[i];
        // exp within 2 ulp, then 1 + e, the division and the product: 6 ulp of the result.
        const float tol = 6 * std::numeric_limits<float>::epsilon() * std::fabs(want[i]) + 1e-35f;
        ASSERT_LE(std::fabs(got[i] - want[i]), tol) << IsaName(v.isa) << " g=" << g[i] << " u=" << u[i];
      }
      if (n > 3) EXPECT_EQ(got[0], 0.0f) << IsaName(v.isa);
    }
  }
}

// RMSNorm's sum of squares: every ISA's double sum within n ulp-sized steps of the
// scalar oracle's (same products, another summation order), including tails and
// values whose squares overflow float.
TEST(Vec, SumSquaresMatchesScalar) {
  for (int64_t n : {0, 1, 3, 15, 16, 17, 2048, 5633}) {
    auto x = Gaussian(n, 31);
    if (n > 2) x[2] = 3e30f;  // its square is past FLT_MAX: must not become inf
    const double want = AllVecKernels()[0].sum_squares(x.data(), n);
    for (const VecKernels& v : AllVecKernels()) {
      if (!IsaAvailable(v.isa)) continue;
      const double got = v.sum_squares(x.data(), n);
      EXPECT_TRUE(std::isfinite(got)) << IsaName(v.isa);
      EXPECT_NEAR(got, want, static_cast<double>(n + 1) * 0x1p-52 * want) << IsaName(v.isa) << " n=" << n;
    }
  }
}

TEST(Vec, AllIsasMatchScalar) {
  for (int64_t n : {1, 7, 8, 31, 64, 100, 1000}) {
    auto a = Gaussian(n, 21), b = Gaussian(n, 22);
    std::vector<uint16_t> ah(n);
    for (int64_t i = 0; i < n; ++i) ah[i] = F32ToF16(a[i]);
    float abs_sum = 0;
    for (int64_t i = 0; i < n; ++i) abs_sum += std::fabs(a[i] * b[i]) * 1.01f;
    const VecKernels& s = AllVecKernels()[0];
    ASSERT_EQ(s.isa, Isa::kScalar);
    for (const VecKernels& v : AllVecKernels()) {
      if (!IsaAvailable(v.isa)) continue;
      const char* isa = IsaName(v.isa);
      EXPECT_NEAR(v.dot_f32(a.data(), b.data(), n), s.dot_f32(a.data(), b.data(), n), DotTolerance(n, abs_sum))
          << isa << " n=" << n;
      EXPECT_NEAR(v.dot_f16_f32(ah.data(), b.data(), n), s.dot_f16_f32(ah.data(), b.data(), n),
                  DotTolerance(n, abs_sum))
          << isa << " n=" << n;
      std::vector<float> y1 = b, y2 = b;
      v.axpy_f32(0.7f, a.data(), y1.data(), n);
      s.axpy_f32(0.7f, a.data(), y2.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y1[i], y2[i], 1e-6f * (std::fabs(y2[i]) + 1)) << isa;
      y1 = b;
      y2 = b;
      v.axpy_f16(-1.3f, ah.data(), y1.data(), n);
      s.axpy_f16(-1.3f, ah.data(), y2.data(), n);
      for (int64_t i = 0; i < n; ++i) ASSERT_NEAR(y1[i], y2[i], 1e-6f * (std::fabs(y2[i]) + 1)) << isa;
      // Conversions are exact (round to nearest even both ways).
      std::vector<uint16_t> h1(n), h2(n);
      v.f32_to_f16(a.data(), h1.data(), n);
      s.f32_to_f16(a.data(), h2.data(), n);
      EXPECT_EQ(h1, h2) << isa;
      std::vector<float> f1(n), f2(n);
      v.f16_to_f32(ah.data(), f1.data(), n);
      s.f16_to_f32(ah.data(), f2.data(), n);
      EXPECT_EQ(f1, f2) << isa;
    }
  }
  // Public dispatch.
  std::vector<float> a = {1, 2, 3}, b = {4, 5, 6};
  EXPECT_EQ(DotF32(a.data(), b.data(), 3), 32.0f);
  std::vector<uint16_t> h(3);
  ConvertF32ToF16(a.data(), h.data(), 3);
  EXPECT_EQ(DotF16F32(h.data(), b.data(), 3), 32.0f);
  std::vector<float> back(3);
  ConvertF16ToF32(h.data(), back.data(), 3);
  EXPECT_EQ(back, a);
  AxpyF32(2.0f, a.data(), b.data(), 3);
  EXPECT_EQ(b, (std::vector<float>{6, 9, 12}));
  AxpyF16(-1.0f, h.data(), b.data(), 3);
  EXPECT_EQ(b, (std::vector<float>{5, 7, 9}));
}

TEST(Api, RejectsUnsupportedShapesWithoutWriting) {
  EXPECT_EQ(PackedActivationRowBytes(TensorType::kQ4_0, 33), 0u);
  EXPECT_EQ(PackedActivationRowBytes(TensorType::kQ2_K, 256), 0u);
  EXPECT_FALSE(IsSupported(TensorType::kQ2_K));
  EXPECT_TRUE(IsSupported(TensorType::kQ4_0));
  EXPECT_TRUE(CanDequantize(TensorType::kQ6_K));
  EXPECT_FALSE(CanQuantize(TensorType::kQ6_K));
  EXPECT_EQ(PackedActivationRowBytes(TensorType::kQ8_0, 64), 72u);
  EXPECT_EQ(PackedActivationRowBytes(TensorType::kF16, 10), 40u);
}

}  // namespace
}  // namespace tabfit

namespace tabfit {
namespace {
// On an x86 CPU with AVX2+FMA+F16C the AVX2 kernels must be compiled in and chosen,
// otherwise the SIMD comparisons above would silently test nothing.
TEST(KernelList, Avx2PresentAndSelectedWhenCpuSupportsIt) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  const bool cpu = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  EXPECT_EQ(IsaAvailable(Isa::kAvx2), cpu);
  if (!cpu) GTEST_SKIP() << "CPU lacks AVX2/FMA/F16C";
  const bool vnni = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                    __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
#if defined(TABFIT_TEST_EXPECT_AVX512VNNI_KERNELS)
  EXPECT_EQ(IsaAvailable(Isa::kAvx512Vnni), vnni);
#endif
  EXPECT_EQ(BestIsa(), IsaAvailable(Isa::kAvx512Vnni) ? Isa::kAvx512Vnni : Isa::kAvx2);
  EXPECT_EQ(FallbackIsa(Isa::kAvx512Vnni), Isa::kAvx2);
  if (IsaAvailable(Isa::kAvx512Vnni)) {
    EXPECT_TRUE(vnni);
    // The VNNI decode kernels are compiled in and listed, so the table-driven
    // comparisons above test them against the scalar oracle.
    for (TensorType t : {TensorType::kQ8_0, TensorType::kQ4_0, TensorType::kTF_Q2, TensorType::kTF_Q2R}) {
      EXPECT_NE(FindFormat(t)->matmul[static_cast<int>(Isa::kAvx512Vnni)], nullptr) << TensorTypeName(t);
    }
  }
  for (const FormatTraits& f : Formats()) {
    if (!f.matmul[0]) continue;
    const TensorType t = f.type;
    EXPECT_NE(FindFormat(t)->matmul[static_cast<int>(Isa::kAvx2)], nullptr) << TensorTypeName(t);
  }
  EXPECT_EQ(AllVecKernels().size(), 2u);
#else
  GTEST_SKIP() << "not x86-64";
#endif
}
}  // namespace
}  // namespace tabfit

namespace tabfit {
namespace {
// Read-only GGML formats: one hand-built block each, expected values worked out from
// ggml's dequantize_row_* definitions.
template <typename B>
std::vector<float> DequantBlock(TensorType t, const B& blk, int n) {
  std::vector<float> y(n);
  DequantizeRow(t, &blk, y.data(), n);
  return y;
}

TEST(ReadOnlyFormats, HandBuiltBlocksDequantize) {
  {
    BlockQ4_1 b{};
    b.d = 0x3C00;  // 1.0
    b.m = 0x3800;  // 0.5
    b.qs[0] = 0x21;
    auto y = DequantBlock(TensorType::kQ4_1, b, 32);
    EXPECT_EQ(y[0], 1.5f);
    EXPECT_EQ(y[16], 2.5f);
    EXPECT_EQ(y[1], 0.5f);
  }
  {
    BlockQ5_0 b{};
    b.d = 0x4000;  // 2.0
    b.qh[0] = 0x01;  // element 0 has its 5th bit
    b.qs[0] = 0x03;
    auto y = DequantBlock(TensorType::kQ5_0, b, 32);
    EXPECT_EQ(y[0], (19 - 16) * 2.0f);
    EXPECT_EQ(y[16], (0 - 16) * 2.0f);
    b.qh[2] = 0x01;  // bit 16 -> element 16
    y = DequantBlock(TensorType::kQ5_0, b, 32);
    EXPECT_EQ(y[16], 0.0f);
  }
  {
    BlockQ5_1 b{};
    b.d = 0x3C00;
    b.m = 0x3400;  // 0.25
    b.qh[0] = 0x01;
    b.qs[0] = 0x03;
    auto y = DequantBlock(TensorType::kQ5_1, b, 32);
    EXPECT_EQ(y[0], 19.25f);
    EXPECT_EQ(y[16], 0.25f);
  }
  {
    BlockQ4_K b{};
    b.d = 0x3C00;
    b.dmin = 0x3C00;
    b.scales[0] = 2;     // sub-block 0 scale
    b.scales[4] = 1;     // sub-block 0 min
    b.scales[8] = 0x35;  // sub-block 4: scale 5, min 3
    b.qs[0] = 0x03;      // element 0 (low nibble of the first 32 bytes)
    b.qs[64] = 0x07;     // element 128 (sub-block 4)
    auto y = DequantBlock(TensorType::kQ4_K, b, 256);
    EXPECT_EQ(y[0], 2 * 3 - 1);
    EXPECT_EQ(y[128], 5 * 7 - 3);
    EXPECT_EQ(y[32], 0.0f);  // sub-block 1: scale 0, min 0
  }
  {
    BlockQ6_K b{};
    b.d = 0x3C00;
    b.scales[0] = 2;
    b.scales[2] = 1;
    b.ql[0] = 0x05;
    b.qh[0] = 0x01;
    auto y = DequantBlock(TensorType::kQ6_K, b, 256);
    EXPECT_EQ(y[0], 2 * ((5 | 16) - 32));
    EXPECT_EQ(y[32], 1 * (0 - 32));
  }
}
}  // namespace
}  // namespace tabfit
