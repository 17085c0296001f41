// ARM NEON (AArch64) kernels: F32 mat-mul, Q8_0/Q4_0 x Q8_0A, F32 dot/axpy.
// Kept deliberately simple (no dotprod extension); guarded so other targets compile
// an empty translation unit. Not run in CI here (no ARM machine); compile-checked
// with clang --target=aarch64-linux-gnu.
#if defined(__ARM_NEON) && defined(__aarch64__)

#include <arm_neon.h>

#include <cstring>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {

inline int32x4_t DotI8x16(int8x16_t a, int8x16_t b) {
  const int16x8_t lo = vmull_s8(vget_low_s8(a), vget_low_s8(b));
  const int16x8_t hi = vmull_s8(vget_high_s8(a), vget_high_s8(b));
  return vaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi));
}

struct F32Kernel {
  int64_t cols;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float32x4_t acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= cols; i += 4) {
      float32x4_t wv[R];
      for (int r = 0; r < R; ++r) wv[r] = vld1q_f32(reinterpret_cast<const float*>(w[r]) + i);
      for (int t = 0; t < T; ++t) {
        const float32x4_t xv = vld1q_f32(reinterpret_cast<const float*>(x[t]) + i);
        for (int r = 0; r < R; ++r) acc[r][t] = vfmaq_f32(acc[r][t], wv[r], xv);
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        float s = vaddvq_f32(acc[r][t]);
        const float* wr = reinterpret_cast<const float*>(w[r]);
        const float* xt = reinterpret_cast<const float*>(x[t]);
        for (int64_t j = i; j < cols; ++j) s += wr[j] * xt[j];
        out[r][t] = s;
      }
  }
};

template <bool kQ4>
struct Q8Kernel {
  int64_t nb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float32x4_t acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < nb; ++b) {
      int8x16_t q0[R], q1[R];
      float dw[R];
      for (int r = 0; r < R; ++r) {
        if constexpr (kQ4) {
          const auto* blk = reinterpret_cast<const BlockQ4_0*>(w[r]) + b;
          const uint8x16_t bytes = vld1q_u8(blk->qs);
          const int8x16_t eight = vdupq_n_s8(8);
          q0[r] = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(bytes, vdupq_n_u8(0x0F))), eight);
          q1[r] = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(bytes, 4)), eight);
          dw[r] = F16ToF32(blk->d);
        } else {
          const auto* blk = reinterpret_cast<const BlockQ8_0*>(w[r]) + b;
          q0[r] = vld1q_s8(blk->qs);
          q1[r] = vld1q_s8(blk->qs + 16);
          dw[r] = F16ToF32(blk->d);
        }
      }
      for (int t = 0; t < T; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8_0A*>(x[t]) + b;
        const int8x16_t y0 = vld1q_s8(xb->qs), y1 = vld1q_s8(xb->qs + 16);
        for (int r = 0; r < R; ++r) {
          const int32x4_t p = vaddq_s32(DotI8x16(q0[r], y0), DotI8x16(q1[r], y1));
          acc[r][t] = vfmaq_n_f32(acc[r][t], vcvtq_f32_s32(p), dw[r] * xb->d);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = vaddvq_f32(acc[r][t]);
  }
};

}  // namespace

void MatMulF32Neon(TF_MATMUL_ARGS) {
  DriveTiles<4, 2>(F32Kernel{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulQ8_0Neon(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK8_0;
  DriveTiles<4, 2>(Q8Kernel<false>{nb}, w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy);
}
void MatMulQ4_0Neon(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK4_0;
  DriveTiles<4, 2>(Q8Kernel<true>{nb}, w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy);
}

float DotF32Neon(const float* a, const float* b, int64_t n) {
  float32x4_t s0 = vdupq_n_f32(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = vfmaq_f32(s0, vld1q_f32(a + i), vld1q_f32(b + i));
    s1 = vfmaq_f32(s1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
  }
  float s = vaddvq_f32(vaddq_f32(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}

void AxpyF32Neon(float a, const float* x, float* y, int64_t n) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vld1q_f32(x + i), a));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace tabfit::qk

#endif  // __ARM_NEON && __aarch64__
