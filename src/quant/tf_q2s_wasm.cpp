// WebAssembly SIMD128 mat-mul kernel for TF_Q2S / TF_Q2SR (tf_q2s.h) against Q8_KA
// activations (built only with -msimd128). Exact int sums per superblock and the
// scalar oracle's SuperTerm(), so results equal MatMulTfQ2SScalar bit for bit.
#if defined(__wasm_simd128__)

#include <wasm_simd128.h>

#include "core/f16.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tf_q2s.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {

inline int32_t HsumI(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
         wasm_i32x4_extract_lane(v, 3);
}

// Codes (0..3, valid as int8) x int8 activations, 16 lanes -> 4 int32 partial sums.
inline v128_t DotU2I8x16(v128_t q, v128_t y) {
  const v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(q), wasm_i16x8_extend_low_i8x16(y));
  const v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(q), wasm_i16x8_extend_high_i8x16(y));
  return wasm_i32x4_add(lo, hi);
}

struct Q2SKernel {
  int64_t nsb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    const v128_t three = wasm_i8x16_splat(3);
    for (int64_t b = 0; b < nsb; ++b) {
      const BlockTfQ2S* blk[R];
      int32_t sc[R][16];
      float d[R], dmin[R];
      for (int r = 0; r < R; ++r) {
        blk[r] = reinterpret_cast<const BlockTfQ2S*>(w[r]) + b;
        for (int g = 0; g < 16; ++g) sc[r][g] = (blk[r]->sc[g / 2] >> (4 * (g % 2))) & 15;
        d[r] = F16ToF32(blk[r]->d);
        dmin[r] = d[r] * 0.25f;
      }
      const BlockQ8_KA* xb[T];
      for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
      v128_t acc[R][T];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = wasm_i32x4_splat(0);
      for (int c = 0; c < 8; ++c) {
        v128_t q0[R], q1[R];
        for (int r = 0; r < R; ++r) {
          const uint8_t* p = blk[r]->qs + 32 * (c / 4);
          const int sh = 2 * (c % 4);
          q0[r] = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(p), sh), three);
          q1[r] = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(p + 16), sh), three);
        }
        for (int t = 0; t < T; ++t) {
          const v128_t y0 = wasm_v128_load(xb[t]->qs + 32 * c), y1 = wasm_v128_load(xb[t]->qs + 32 * c + 16);
          for (int r = 0; r < R; ++r) {
            acc[r][t] = wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(DotU2I8x16(q0[r], y0), wasm_i32x4_splat(sc[r][2 * c])));
            acc[r][t] =
                wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(DotU2I8x16(q1[r], y1), wasm_i32x4_splat(sc[r][2 * c + 1])));
          }
        }
      }
      for (int t = 0; t < T; ++t) {
        for (int r = 0; r < R; ++r) {
          int32_t summ = 0;
          for (int g = 0; g < 16; ++g) summ += sc[r][g] * kQ2SOffset4 * xb[t]->bsums[g];
          sumf[r][t] += SuperTerm(xb[t]->d, d[r], dmin[r], HsumI(acc[r][t]), summ);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

}  // namespace

void MatMulTfQ2SWasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(Q2SKernel{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens, y, ldy);
}

}  // namespace tabfit::qk

#endif  // __wasm_simd128__
