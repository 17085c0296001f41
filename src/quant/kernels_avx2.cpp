// AVX2+FMA+F16C mat-mul kernels for F32/F16/BF16/Q8_0/Q4_0 and activation packing.
// Compiled with -mavx2 -mfma -mf16c; only called after CPUID says the CPU has them.
//
// Blocking: register tiles of R weight rows x T tokens (4 x 2 by default). Each weight
// vector is loaded/decoded once per tile and used for T tokens; each activation vector
// once and used for R rows. Tails (rows % 4, tokens % 2) use smaller tiles.
#include <immintrin.h>

#include <cstring>

#include "quant/avx2_util.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/q8_0_rows_x86.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {
using namespace avx2;

// ---------------------------------------------------------------- float weights
// Load8(p, i) -> 8 f32 weights starting at element i; Scalar(p, i) -> one.
struct F32W {
  static __m256 Load8(const uint8_t* p, int64_t i) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p) + i); }
  static float Scalar(const uint8_t* p, int64_t i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
};
struct F16W {
  static __m256 Load8(const uint8_t* p, int64_t i) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return _cvtsh_ss(h);
  }
};
struct BF16W {
  static __m256 Load8(const uint8_t* p, int64_t i) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    const uint32_t u = uint32_t(h) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
};

template <class W>
struct FloatKernel {
  int64_t cols;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8) {
      __m256 wv[R];
      for (int r = 0; r < R; ++r) wv[r] = W::Load8(w[r], i);
      for (int t = 0; t < T; ++t) {
        const __m256 xv = _mm256_loadu_ps(reinterpret_cast<const float*>(x[t]) + i);
        for (int r = 0; r < R; ++r) acc[r][t] = _mm256_fmadd_ps(wv[r], xv, acc[r][t]);
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        float s = Hsum(acc[r][t]);
        const float* xt = reinterpret_cast<const float*>(x[t]);
        for (int64_t j = i; j < cols; ++j) s += W::Scalar(w[r], j) * xt[j];
        out[r][t] = s;
      }
    }
  }
};

// ---------------------------------------------------------------- Q8_0 x Q8_0A
struct Q8_0Kernel {
  int64_t nb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    for (int64_t b = 0; b < nb; ++b) {
      __m256i wv[R], aw[R];
      float dw[R];
      for (int r = 0; r < R; ++r) {
        const auto* blk = reinterpret_cast<const BlockQ8_0*>(w[r]) + b;
        wv[r] = LoadU(blk->qs);
        aw[r] = _mm256_sign_epi8(wv[r], wv[r]);
        dw[r] = _cvtsh_ss(blk->d);
      }
      for (int t = 0; t < T; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8_0A*>(x[t]) + b;
        const __m256i yv = LoadU(xb->qs);
        const float dy = xb->d;
        for (int r = 0; r < R; ++r) {
          const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(aw[r], _mm256_sign_epi8(yv, wv[r])), ones);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[r] * dy), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = Hsum(acc[r][t]);
  }
};

// ---------------------------------------------------------------- Q4_0 x Q8_0A
// Codes stay unsigned (0..15): dot = sum(q*y) - 8*sum(y), both exact in int32.
struct Q4_0Kernel {
  int64_t nb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    __m256 acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_ps();
    const __m256i ones = _mm256_set1_epi16(1);
    const __m256i eights = _mm256_set1_epi8(8);
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t b = 0; b < nb; ++b) {
      __m256i qv[R];
      float dw[R];
      for (int r = 0; r < R; ++r) {
        const auto* blk = reinterpret_cast<const BlockQ4_0*>(w[r]) + b;
        const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk->qs));
        const __m128i lo = _mm_and_si128(bytes, m4);
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(bytes, 4), m4);
        qv[r] = _mm256_set_m128i(hi, lo);
        dw[r] = _cvtsh_ss(blk->d);
      }
      for (int t = 0; t < T; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8_0A*>(x[t]) + b;
        const __m256i yv = LoadU(xb->qs);
        const __m256i s8 = _mm256_madd_epi16(_mm256_maddubs_epi16(eights, yv), ones);
        const float dy = xb->d;
        for (int r = 0; r < R; ++r) {
          __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(qv[r], yv), ones);
          p = _mm256_sub_epi32(p, s8);
          acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw[r] * dy), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = Hsum(acc[r][t]);
  }
};

}  // namespace

void MatMulF32Avx2(TF_MATMUL_ARGS) {
  DriveSplit(FloatKernel<F32W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulF16Avx2(TF_MATMUL_ARGS) {
  DriveSplit(FloatKernel<F16W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulBF16Avx2(TF_MATMUL_ARGS) {
  DriveSplit(FloatKernel<BF16W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}

namespace {

// maddubs + madd: 4 unsigned x signed byte products per int32 lane.
struct DotMaddubs {
  static __m256i Run(__m256i u8, __m256i s8) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u8, s8), _mm256_set1_epi16(1));
  }
};

// Decode (fewer than 4 tokens): 8-row steps (q8_0_rows_x86.h), the last rows % 8
// with the register-tiled kernel; prefill: register tiles.
template <class K, class Rows8>
void MatMulQ8_0Family(const K& k, Rows8 rows8, TF_MATMUL_ARGS) {
  (void)cols;
  const size_t xrb = k.nb * sizeof(BlockQ8_0A);
  if (n_tokens >= 4) {
    DriveSplit(k, w, row_bytes, r0, r1, xpacked, xrb, n_tokens, y, ldy);
    return;
  }
  const auto* xp = static_cast<const uint8_t*>(xpacked);
  DriveRows8(
      [&](const uint8_t* wr, size_t rb, const BlockQ8_0A* xt, float* yr) { rows8(wr, rb, xt, k.nb, yr); },
      [&](int64_t ra, int64_t rb_end, int64_t t) {
        DriveTiles<1, 1>(k, w, row_bytes, ra, rb_end, xp + t * xrb, xrb, 1, y + t * ldy, ldy);
      },
      w, row_bytes, r0, r1, xpacked, xrb, n_tokens, y, ldy);
}

}  // namespace

void MatMulQ8_0Avx2(TF_MATMUL_ARGS) {
  MatMulQ8_0Family(Q8_0Kernel{cols / kQK8_0}, Q8_0Rows8<DotMaddubs>, w, row_bytes, r0, r1, cols, xpacked, n_tokens,
                   y, ldy);
}
void MatMulQ4_0Avx2(TF_MATMUL_ARGS) {
  MatMulQ8_0Family(Q4_0Kernel{cols / kQK4_0}, Q4_0Rows8<DotMaddubs>, w, row_bytes, r0, r1, cols, xpacked, n_tokens,
                   y, ldy);
}

// ---------------------------------------------------------------- packing

void PackQ8_0AAvx2(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  auto* yb = static_cast<BlockQ8_0A*>(out);
  const int64_t nb = n_tokens * (cols / kQK8_0);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK8_0;
    __m256 v[4];
    for (int k = 0; k < 4; ++k) v[k] = _mm256_loadu_ps(xb + 8 * k);
    const __m256 m = _mm256_max_ps(_mm256_max_ps(Abs(v[0]), Abs(v[1])), _mm256_max_ps(Abs(v[2]), Abs(v[3])));
    const float amax = Hmax(m);
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    yb[i].d = _cvtsh_ss(_cvtss_sh(d, _MM_FROUND_TO_NEAREST_INT));
    const __m256 idv = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; ++k) q[k] = _mm256_cvttps_epi32(RoundAway(_mm256_mul_ps(v[k], idv)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(yb[i].qs), PackI32ToI8(q[0], q[1], q[2], q[3]));
  }
}

void PackQ8_KAAvx2(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  auto* yb = static_cast<BlockQ8_KA*>(out);
  const int64_t nb = n_tokens * (cols / kQKSuper);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQKSuper;
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < kQKSuper / 8; ++k) m = _mm256_max_ps(m, Abs(_mm256_loadu_ps(xb + 8 * k)));
    const float amax = Hmax(m);
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    yb[i].d = d;
    const __m256 idv = _mm256_set1_ps(id);
    for (int g = 0; g < kQKSuper / kQKGroup; ++g) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        q[k] = _mm256_cvttps_epi32(RoundAway(_mm256_mul_ps(_mm256_loadu_ps(xb + g * 32 + 8 * k), idv)));
      }
      yb[i].bsums[2 * g] = static_cast<int16_t>(HsumI32(_mm256_add_epi32(q[0], q[1])));
      yb[i].bsums[2 * g + 1] = static_cast<int16_t>(HsumI32(_mm256_add_epi32(q[2], q[3])));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(yb[i].qs + g * 32), PackI32ToI8(q[0], q[1], q[2], q[3]));
    }
  }
}

}  // namespace tabfit::qk
