// quant_test: the F32 / F16 / BF16 mat-mul kernels of every available ISA against
// a double-precision dot of the dequantized weights, over the shapes where the
// vector kernels have edge cases: columns that are not a multiple of the vector
// width (masked tails), row ranges that are not a multiple of the 8-row decode
// step (tail rows), 1..5 tokens (decode and prefill paths), strided rows (row
// bytes larger than the row, as for a KV-cache head slice) and rows that end
// exactly at the end of the allocation (ASan flags any read past it).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "quant/kernel_list.h"
#include "quant/kernels.h"

namespace tabfit {
namespace {

struct FloatCase {
  const FormatTraits* f;
  int64_t rows, cols, n_tokens;
  size_t rb;                   // row stride in bytes (>= RowBytes)
  std::vector<uint8_t> w;      // exactly rows * rb bytes
  std::vector<float> x;        // n_tokens * cols
  std::vector<double> want;    // [t][r]
  std::vector<double> abs_sum; // [t][r]: sum |w_i x_i|
};

FloatCase Make(TensorType type, int64_t rows, int64_t cols, int64_t n_tokens, size_t pad, uint32_t seed) {
  FloatCase c{FindFormat(type), rows, cols, n_tokens, 0, {}, {}, {}, {}};
  c.rb = RowBytes(type, cols) + pad;
  c.w.assign(c.rb * rows, 0xEE);  // padding: garbage that must not be read into the result
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> wf(cols), wd(cols);
  c.want.assign(n_tokens * rows, 0.0);
  c.abs_sum.assign(n_tokens * rows, 0.0);
  c.x.resize(n_tokens * cols);
  for (float& v : c.x) v = nd(rng);
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : wf) v = 0.05f * nd(rng);
    c.f->from_float(wf.data(), c.w.data() + r * c.rb, cols, nullptr);
    c.f->to_float(c.w.data() + r * c.rb, wd.data(), cols);
    for (int64_t t = 0; t < n_tokens; ++t) {
      double s = 0, a = 0;
      for (int64_t i = 0; i < cols; ++i) {
        const double p = static_cast<double>(wd[i]) * c.x[t * cols + i];
        s += p;
        a += std::fabs(p);
      }
      c.want[t * rows + r] = s;
      c.abs_sum[t * rows + r] = a;
    }
  }
  return c;
}

// Runs every available ISA's kernel of c's format over [ra, re) and checks each
// y in range against the reference and each y outside it untouched.
void CheckAllIsas(const FloatCase& c, int64_t ra, int64_t re, const std::string& what) {
  const size_t prb = PackedActivationRowBytes(c.f->type, c.cols);
  ASSERT_EQ(prb, static_cast<size_t>(c.cols) * 4);
  std::vector<uint8_t> packed(prb * c.n_tokens);
  PackTraitsFor(c.f->pack).pack[0](c.x.data(), c.n_tokens, c.cols, packed.data());
  for (int isa = 0; isa < kIsaCount; ++isa) {
    if (!IsaAvailable(static_cast<Isa>(isa)) || !c.f->matmul[isa]) continue;
    const int64_t ldy = c.rows + 2;
    std::vector<float> y(ldy * c.n_tokens, -12345.0f);
    c.f->matmul[isa](c.w.data(), c.rb, ra, re, c.cols, packed.data(), c.n_tokens, y.data(), ldy);
    for (int64_t t = 0; t < c.n_tokens; ++t) {
      for (int64_t r = 0; r < ldy; ++r) {
        const float got = y[t * ldy + r];
        if (r < ra || r >= re) {
          ASSERT_EQ(got, -12345.0f) << "wrote outside rows " << c.f->name << " " << IsaName(static_cast<Isa>(isa))
                                    << " " << what << " r=" << r;
          continue;
        }
        const double tol = c.cols * 1.2e-7 * c.abs_sum[t * c.rows + r] + 1e-30;
        ASSERT_NEAR(got, c.want[t * c.rows + r], tol)
            << c.f->name << " " << IsaName(static_cast<Isa>(isa)) << " " << what << " r=" << r << " t=" << t
            << " rows [" << ra << "," << re << ")";
      }
    }
  }
}

TEST(MatMulFloat, EveryIsaMatchesReferenceOnVectorTailsAndRowTails) {
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16}) {
    for (int64_t cols : {1, 7, 15, 16, 17, 31, 32, 33, 48, 63, 100, 257, 1031}) {
      for (int64_t nt : {1, 2, 3, 5}) {
        for (size_t pad : {size_t{0}, size_t{68}}) {
          const int64_t rows = 21;  // two 8-row steps + 5 tail rows
          FloatCase c = Make(type, rows, cols, nt, pad, static_cast<uint32_t>(cols * 31 + nt * 7 + pad));
          const std::string what = "cols=" + std::to_string(cols) + " n_tokens=" + std::to_string(nt) +
                                   " pad=" + std::to_string(pad);
          const int64_t ranges[][2] = {{0, rows}, {0, 16}, {5, rows}, {3, 11}, {rows - 8, rows}, {rows - 3, rows}};
          for (const auto& rr : ranges) CheckAllIsas(c, rr[0], rr[1], what);
          if (::testing::Test::HasFatalFailure()) return;
        }
      }
    }
  }
}

// A decode-sized matrix (several 8-row steps, long rows), so the software
// prefetch of the next step sweeps whole steps: results must not depend on it.
TEST(MatMulFloat, EveryIsaMatchesReferenceOnDecodeSizedMatrix) {
  for (TensorType type : {TensorType::kF32, TensorType::kF16, TensorType::kBF16}) {
    FloatCase c = Make(type, 40, 2048 + 24, 1, 0, 9);
    CheckAllIsas(c, 0, 40, "decode 40x2072");
    CheckAllIsas(c, 8, 40, "decode 40x2072 from row 8");
  }
}

}  // namespace
}  // namespace tabfit
