// tabfit quant: TF_Q2S and TF_Q2SR — 2.3125 bits/weight, symmetric 4-level groups.
//
// TF_Q2S superblock (256 weights, 74 bytes):
//   w = d * sc[g] * (q - 3/2),  q in [0, 3], g = 16 groups of 16, sc 4-bit (0..15),
//   d fp16. Codes use TF_Q2's qs layout (formats.h); sc[j] = sc[2j] | sc[2j+1] << 4.
//   It is TF_Q2 with every offset fixed at z = 6 quarter steps (the symmetric grid),
//   so the 3-bit offsets (0.1875 bits/weight) are not stored. The quantizer fits each
//   group's scale (weighted least squares over several starts), then searches the
//   superblock scale d over a small grid, re-picking every 4-bit sub-scale exactly.
// TF_Q2SR: TF_Q2S blocks of R w (R the randomized Hadamard rotation of tf_q2r.h);
//   activations packed as Q8_KA of R x (PackType::kQ8_KAR). Importance is ignored for
//   the same reason as TF_Q2R's (it is uniform in the rotated basis per superblock).
// Mat-mul: per superblock sumi = sum_g sc*sum(q*y), summ = sum_g 6*sc*bsum16,
//   term = dy*(d*sumi - (d/4)*summ) — TF_Q2's expression, so SIMD kernels are
//   bit-identical with the scalar oracle.
//
// Thread-safety: pure, reentrant functions; none allocates memory.
#pragma once

#include <cstdint>

#include "quant/formats.h"

namespace tabfit {

struct BlockTfQ2S {
  uint16_t d;                // fp16
  uint8_t sc[8];             // 4-bit sub-scales of 16 groups
  uint8_t qs[kQKSuper / 4];  // TF_Q2 code layout
};
static_assert(sizeof(BlockTfQ2S) == 74, "TF_Q2S: 2.3125 bits/weight");

constexpr int kQ2SOffset4 = 6;  // fixed offset z in quarter steps (q - 1.5)

namespace qk {
void FromFloatTfQ2S(const float* src, void* dst, int64_t n, const float* imp);
void ToFloatTfQ2S(const void* src, float* dst, int64_t n);
void MatMulTfQ2SScalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                       int64_t n_tokens, float* y, int64_t ldy);
void FromFloatTfQ2SR(const float* src, void* dst, int64_t n, const float* imp);
void ToFloatTfQ2SR(const void* src, float* dst, int64_t n);
#if defined(TABFIT_HAVE_AVX2_KERNELS)
void MatMulTfQ2SAvx2(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                     int64_t n_tokens, float* y, int64_t ldy);
#endif
#if defined(__wasm_simd128__)
void MatMulTfQ2SWasm(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                     int64_t n_tokens, float* y, int64_t ldy);
#endif
}  // namespace qk

}  // namespace tabfit
