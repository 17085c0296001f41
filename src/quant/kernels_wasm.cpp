// WebAssembly SIMD128 kernels (built when compiling with -msimd128; WASM has no
// run-time feature detection, so a SIMD build simply requires a SIMD-capable engine).
// F32/F16/BF16 mat-mul, Q8_0/Q4_0 x Q8_0A, TF_Q8/Q4/Q3/Q2 x Q8_KA, and vec ops.
#if defined(__wasm_simd128__)

#include <wasm_simd128.h>

#include <cstring>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {

inline float Hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}
inline int32_t HsumI(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
         wasm_i32x4_extract_lane(v, 3);
}
inline v128_t Fma(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(c, wasm_f32x4_mul(a, b)); }

// 4 halves (low 64 bits of h4) -> 4 floats, exact for normals, subnormals, signed
// zeros, inf and nan: sign-extend, move exponent+mantissa to float position, clear the
// sign copies, rescale by 2^112 (turns half's exponent bias into float's, and half
// subnormals into exact float normals); max-exponent halves become inf/nan.
inline v128_t HalfToFloat4(v128_t h4) {
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(h4), 13);
  const v128_t bits = wasm_v128_and(e, wasm_i32x4_splat(static_cast<int32_t>(0x8FFFFFFFu)));
  v128_t f = wasm_f32x4_mul(bits, wasm_f32x4_splat(0x1p112f));
  const v128_t infnan = wasm_f32x4_ge(wasm_f32x4_abs(f), wasm_f32x4_splat(65536.0f));
  return wasm_v128_or(f, wasm_v128_and(infnan, wasm_i32x4_splat(0x7f800000)));
}
inline void LoadHalf8(const uint16_t* p, v128_t* lo, v128_t* hi) {
  const v128_t v = wasm_v128_load(p);
  *lo = HalfToFloat4(v);
  *hi = HalfToFloat4(wasm_i64x2_shuffle(v, v, 1, 0));
}

struct F32W {
  static void Load8(const uint8_t* p, int64_t i, v128_t* a, v128_t* b) {
    *a = wasm_v128_load(p + 4 * i);
    *b = wasm_v128_load(p + 4 * i + 16);
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
};
struct F16W {
  static void Load8(const uint8_t* p, int64_t i, v128_t* a, v128_t* b) {
    LoadHalf8(reinterpret_cast<const uint16_t*>(p + 2 * i), a, b);
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return F16ToF32(h);
  }
};

struct BF16W {
  static void Load8(const uint8_t* p, int64_t i, v128_t* a, v128_t* b) {
    const v128_t v = wasm_v128_load(p + 2 * i);
    *a = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(v), 16);
    *b = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(v), 16);
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return Bf16ToF32(h);
  }
};

template <class W>
struct FloatKernel {
  int64_t cols;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    v128_t acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8) {
      v128_t wa[R], wb[R];
      for (int r = 0; r < R; ++r) W::Load8(w[r], i, &wa[r], &wb[r]);
      for (int t = 0; t < T; ++t) {
        const float* xt = reinterpret_cast<const float*>(x[t]) + i;
        const v128_t xa = wasm_v128_load(xt), xb = wasm_v128_load(xt + 4);
        for (int r = 0; r < R; ++r) acc[r][t] = Fma(wb[r], xb, Fma(wa[r], xa, acc[r][t]));
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        float s = Hsum(acc[r][t]);
        const float* xt = reinterpret_cast<const float*>(x[t]);
        for (int64_t j = i; j < cols; ++j) s += W::Scalar(w[r], j) * xt[j];
        out[r][t] = s;
      }
  }
};

// Signed 8-bit dot of 16 lanes -> i32x4 partial sums.
inline v128_t DotI8x16(v128_t a, v128_t b) {
  const v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a), wasm_i16x8_extend_low_i8x16(b));
  const v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a), wasm_i16x8_extend_high_i8x16(b));
  return wasm_i32x4_add(lo, hi);
}

// Q8_0 / Q4_0 weights as signed int8 (Q4_0 codes minus 8) x Q8_0A.
template <bool kQ4>
struct Q8Kernel {
  int64_t nb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    v128_t acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = wasm_f32x4_splat(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      v128_t q0[R], q1[R];
      float dw[R];
      for (int r = 0; r < R; ++r) {
        if constexpr (kQ4) {
          const auto* blk = reinterpret_cast<const BlockQ4_0*>(w[r]) + b;
          const v128_t bytes = wasm_v128_load(blk->qs);
          const v128_t eight = wasm_i8x16_splat(8);
          q0[r] = wasm_i8x16_sub(wasm_v128_and(bytes, wasm_i8x16_splat(0x0F)), eight);
          q1[r] = wasm_i8x16_sub(wasm_u8x16_shr(bytes, 4), eight);
          dw[r] = F16ToF32(blk->d);
        } else {
          const auto* blk = reinterpret_cast<const BlockQ8_0*>(w[r]) + b;
          q0[r] = wasm_v128_load(blk->qs);
          q1[r] = wasm_v128_load(blk->qs + 16);
          dw[r] = F16ToF32(blk->d);
        }
      }
      for (int t = 0; t < T; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8_0A*>(x[t]) + b;
        const v128_t y0 = wasm_v128_load(xb->qs), y1 = wasm_v128_load(xb->qs + 16);
        for (int r = 0; r < R; ++r) {
          const v128_t p = wasm_i32x4_add(DotI8x16(q0[r], y0), DotI8x16(q1[r], y1));
          acc[r][t] = Fma(wasm_f32x4_convert_i32x4(p), wasm_f32x4_splat(dw[r] * xb->d), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = Hsum(acc[r][t]);
  }
};

// TF_Q8: w = d*sc[g]*q, q int8.
struct TfQ8Kernel {
  int64_t nsb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const BlockTfQ8* blk[R];
      for (int r = 0; r < R; ++r) blk[r] = reinterpret_cast<const BlockTfQ8*>(w[r]) + b;
      for (int t = 0; t < T; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
        for (int r = 0; r < R; ++r) {
          v128_t acc = wasm_i32x4_splat(0);
          for (int g = 0; g < 8; ++g) {
            const v128_t p = wasm_i32x4_add(DotI8x16(wasm_v128_load(blk[r]->qs + 32 * g), wasm_v128_load(xb->qs + 32 * g)),
                                            DotI8x16(wasm_v128_load(blk[r]->qs + 32 * g + 16),
                                                     wasm_v128_load(xb->qs + 32 * g + 16)));
            acc = wasm_i32x4_add(acc, wasm_i32x4_mul(p, wasm_i32x4_splat(blk[r]->scales[g])));
          }
          sumf[r][t] += SuperTerm(xb->d, F16ToF32(blk[r]->d), 0.0f, HsumI(acc), 0);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

// TF formats with unsigned codes, decoded 32 at a time (chunk c = values 32c..32c+31)
// straight from the packed bytes. Exact int sums per superblock and the scalar
// oracle's SuperTerm, so results are bit-identical to the scalar kernels.
inline void Low2(const uint8_t* q64, int c, v128_t* v0, v128_t* v1) {
  const uint8_t* p = q64 + 32 * (c / 4);
  const int sh = 2 * (c % 4);
  const v128_t three = wasm_i8x16_splat(3);
  *v0 = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(p), sh), three);
  *v1 = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(p + 16), sh), three);
}

struct WDecQ4 {
  using Block = BlockTfQ4;
  static void Codes(const Block& b, int c, v128_t* v0, v128_t* v1) {
    const uint8_t* p = b.qs + 32 * (c / 2);
    const v128_t a = wasm_v128_load(p), bb = wasm_v128_load(p + 16);
    if (c & 1) {
      *v0 = wasm_u8x16_shr(a, 4);
      *v1 = wasm_u8x16_shr(bb, 4);
    } else {
      const v128_t m = wasm_i8x16_splat(0x0F);
      *v0 = wasm_v128_and(a, m);
      *v1 = wasm_v128_and(bb, m);
    }
  }
};
struct WDecQ3 {
  using Block = BlockTfQ3;
  static void Codes(const Block& b, int c, v128_t* v0, v128_t* v1) {
    Low2(b.ql, c, v0, v1);
    const v128_t one = wasm_i8x16_splat(1);
    const v128_t h0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(b.qh), c), one), 2);
    const v128_t h1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(b.qh + 16), c), one), 2);
    *v0 = wasm_v128_or(*v0, h0);
    *v1 = wasm_v128_or(*v1, h1);
  }
};
struct WDecQ2 {
  using Block = BlockTfQ2;
  static void Codes(const Block& b, int c, v128_t* v0, v128_t* v1) { Low2(b.qs, c, v0, v1); }
};

// kQ2: 16-groups with sc*(q - z/4); otherwise 32-groups with 6-bit sc and min.
template <class Dec, bool kQ2>
struct TfKernel {
  using Block = typename Dec::Block;
  int64_t nsb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const Block* blk[R];
      uint8_t sc[R][16], mz[R][16];
      float d[R], dmin[R];
      for (int r = 0; r < R; ++r) {
        blk[r] = reinterpret_cast<const Block*>(w[r]) + b;
        d[r] = F16ToF32(blk[r]->d);
        if constexpr (kQ2) {
          UnpackScz(blk[r]->scz, sc[r], mz[r]);
          dmin[r] = d[r] * 0.25f;
        } else {
          UnpackScales6(blk[r]->scales, sc[r], mz[r]);
          dmin[r] = F16ToF32(blk[r]->dmin);
        }
      }
      const BlockQ8_KA* xb[T];
      for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
      v128_t acc[R][T];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = wasm_i32x4_splat(0);
      for (int c = 0; c < 8; ++c) {
        v128_t q0[R], q1[R];
        for (int r = 0; r < R; ++r) Dec::Codes(*blk[r], c, &q0[r], &q1[r]);
        for (int t = 0; t < T; ++t) {
          const v128_t y0 = wasm_v128_load(xb[t]->qs + 32 * c), y1 = wasm_v128_load(xb[t]->qs + 32 * c + 16);
          for (int r = 0; r < R; ++r) {
            if constexpr (kQ2) {
              acc[r][t] = wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(DotI8x16(q0[r], y0), wasm_i32x4_splat(sc[r][2 * c])));
              acc[r][t] =
                  wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(DotI8x16(q1[r], y1), wasm_i32x4_splat(sc[r][2 * c + 1])));
            } else {
              const v128_t p = wasm_i32x4_add(DotI8x16(q0[r], y0), DotI8x16(q1[r], y1));
              acc[r][t] = wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(p, wasm_i32x4_splat(sc[r][c])));
            }
          }
        }
      }
      for (int t = 0; t < T; ++t) {
        for (int r = 0; r < R; ++r) {
          int32_t summ = 0;
          if constexpr (kQ2) {
            for (int g = 0; g < 16; ++g) summ += sc[r][g] * mz[r][g] * xb[t]->bsums[g];
          } else {
            for (int g = 0; g < 8; ++g) summ += mz[r][g] * (xb[t]->bsums[2 * g] + xb[t]->bsums[2 * g + 1]);
          }
          sumf[r][t] += SuperTerm(xb[t]->d, d[r], dmin[r], HsumI(acc[r][t]), summ);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

}  // namespace

void MatMulF32Wasm(TF_MATMUL_ARGS) {
  DriveTiles<4, 2>(FloatKernel<F32W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulF16Wasm(TF_MATMUL_ARGS) {
  // Measured under Node (V8): f16 decode costs dominate, so prefill reuses each
  // converted weight vector for 4 tokens.
  DriveSplit<4, 2, 4>(FloatKernel<F16W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulBF16Wasm(TF_MATMUL_ARGS) {
  DriveTiles<4, 2>(FloatKernel<BF16W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulTfQ8Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfQ8Kernel{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens, y, ldy);
}
void MatMulTfQ3Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfKernel<WDecQ3, false>{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens,
                   y, ldy);
}
void MatMulQ8_0Wasm(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK8_0;
  DriveTiles<2, 2>(Q8Kernel<false>{nb}, w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy);
}
void MatMulQ4_0Wasm(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK4_0;
  DriveTiles<2, 2>(Q8Kernel<true>{nb}, w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy);
}
void MatMulTfQ4Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfKernel<WDecQ4, false>{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens,
                   y, ldy);
}
void MatMulTfQ2Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfKernel<WDecQ2, true>{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens,
                   y, ldy);
}

float DotF32Wasm(const float* a, const float* b, int64_t n) {
  v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = Fma(wasm_v128_load(a + i), wasm_v128_load(b + i), s0);
    s1 = Fma(wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4), s1);
  }
  float s = Hsum(wasm_f32x4_add(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
float DotF16F32Wasm(const uint16_t* a, const float* b, int64_t n) {
  v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t lo, hi;
    LoadHalf8(a + i, &lo, &hi);
    s0 = Fma(lo, wasm_v128_load(b + i), s0);
    s1 = Fma(hi, wasm_v128_load(b + i + 4), s1);
  }
  float s = Hsum(wasm_f32x4_add(s0, s1));
  for (; i < n; ++i) s += F16ToF32(a[i]) * b[i];
  return s;
}
void AxpyF32Wasm(float a, const float* x, float* y, int64_t n) {
  const v128_t av = wasm_f32x4_splat(a);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, Fma(av, wasm_v128_load(x + i), wasm_v128_load(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}
void AxpyF16Wasm(float a, const uint16_t* x, float* y, int64_t n) {
  const v128_t av = wasm_f32x4_splat(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t lo, hi;
    LoadHalf8(x + i, &lo, &hi);
    wasm_v128_store(y + i, Fma(av, lo, wasm_v128_load(y + i)));
    wasm_v128_store(y + i + 4, Fma(av, hi, wasm_v128_load(y + i + 4)));
  }
  for (; i < n; ++i) y[i] += a * F16ToF32(x[i]);
}

}  // namespace tabfit::qk

#endif  // __wasm_simd128__
