// Scalar reference kernels for the GGML formats (the oracle every SIMD kernel is
// tested against), activation packing, and scalar vec ops.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"

namespace tabfit::qk {

// ---------------------------------------------------------------- conversions

void ToFloatF32(const void* src, float* dst, int64_t n) { std::memcpy(dst, src, n * sizeof(float)); }
void ToFloatF16(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = F16ToF32(s[i]);
}
void ToFloatBF16(const void* src, float* dst, int64_t n) {
  const auto* s = static_cast<const uint16_t*>(src);
  for (int64_t i = 0; i < n; ++i) dst[i] = Bf16ToF32(s[i]);
}
void FromFloatF32(const float* src, void* dst, int64_t n, const float*) { std::memcpy(dst, src, n * sizeof(float)); }
void FromFloatF16(const float* src, void* dst, int64_t n, const float*) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = F32ToF16(src[i]);
}
void FromFloatBF16(const float* src, void* dst, int64_t n, const float*) {
  auto* d = static_cast<uint16_t*>(dst);
  for (int64_t i = 0; i < n; ++i) d[i] = F32ToBf16(src[i]);
}

// ggml quantize_row_q8_0_ref.
void FromFloatQ8_0(const float* x, void* dst, int64_t n, const float*) {
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(x[i * kQK8_0 + j]));
    const float d = amax / ((1 << 7) - 1);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = F32ToF16(d);
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(RoundAway(x[i * kQK8_0 + j] * id));
  }
}

// ggml quantize_row_q4_0_ref.
void FromFloatQ4_0(const float* x, void* dst, int64_t n, const float*) {
  constexpr int qk = kQK4_0;
  auto* y = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / qk; ++i) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < qk; ++j) {
      const float v = x[i * qk + j];
      if (amax < std::fabs(v)) {
        amax = std::fabs(v);
        max = v;
      }
    }
    const float d = max / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = F32ToF16(d);
    for (int j = 0; j < qk / 2; ++j) {
      const float x0 = x[i * qk + j] * id;
      const float x1 = x[i * qk + qk / 2 + j] * id;
      const uint8_t xi0 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x0 + 8.5f)));
      const uint8_t xi1 = static_cast<uint8_t>(std::min<int>(15, static_cast<int8_t>(x1 + 8.5f)));
      y[i].qs[j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
    }
  }
}

void ToFloatQ8_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / kQK8_0; ++i) {
    const float d = F16ToF32(x[i].d);
    for (int j = 0; j < kQK8_0; ++j) dst[i * kQK8_0 + j] = x[i].qs[j] * d;
  }
}

void ToFloatQ4_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / kQK4_0; ++i) {
    const float d = F16ToF32(x[i].d);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = ((x[i].qs[j] & 0x0F) - 8) * d;
      dst[i * 32 + j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
    }
  }
}

void ToFloatQ4_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = F16ToF32(x[i].d), m = F16ToF32(x[i].m);
    for (int j = 0; j < 16; ++j) {
      dst[i * 32 + j] = (x[i].qs[j] & 0x0F) * d + m;
      dst[i * 32 + j + 16] = (x[i].qs[j] >> 4) * d + m;
    }
  }
}

void ToFloatQ5_0(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = F16ToF32(x[i].d);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int xh0 = ((qh >> j) << 4) & 0x10;
      const int xh1 = (qh >> (j + 12)) & 0x10;
      dst[i * 32 + j] = (((x[i].qs[j] & 0x0F) | xh0) - 16) * d;
      dst[i * 32 + j + 16] = (((x[i].qs[j] >> 4) | xh1) - 16) * d;
    }
  }
}

void ToFloatQ5_1(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / 32; ++i) {
    const float d = F16ToF32(x[i].d), m = F16ToF32(x[i].m);
    uint32_t qh;
    std::memcpy(&qh, x[i].qh, 4);
    for (int j = 0; j < 16; ++j) {
      const int xh0 = ((qh >> j) << 4) & 0x10;
      const int xh1 = (qh >> (j + 12)) & 0x10;
      dst[i * 32 + j] = ((x[i].qs[j] & 0x0F) | xh0) * d + m;
      dst[i * 32 + j + 16] = ((x[i].qs[j] >> 4) | xh1) * d + m;
    }
  }
}

namespace {
// ggml get_scale_min_k4 (Q4_K/Q5_K scale packing).
inline void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
    *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
  }
}
}  // namespace

void ToFloatQ4_K(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / 256; ++i) {
    const uint8_t* q = x[i].qs;
    const float d = F16ToF32(x[i].d), min = F16ToF32(x[i].dmin);
    int is = 0;
    float* out = dst + i * 256;
    for (int j = 0; j < 256; j += 64) {
      uint8_t sc, m;
      ScaleMinK4(is + 0, x[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = min * m;
      ScaleMinK4(is + 1, x[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = min * m;
      for (int l = 0; l < 32; ++l) *out++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; ++l) *out++ = d2 * (q[l] >> 4) - m2;
      q += 32;
      is += 2;
    }
  }
}

void ToFloatQ6_K(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / 256; ++i) {
    const float d = F16ToF32(x[i].d);
    const uint8_t* ql = x[i].ql;
    const uint8_t* qh = x[i].qh;
    const int8_t* sc = x[i].scales;
    float* out = dst + i * 256;
    for (int nn = 0; nn < 256; nn += 128) {
      for (int l = 0; l < 32; ++l) {
        const int is = l / 16;
        const int q1 = static_cast<int8_t>((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
        const int q2 = static_cast<int8_t>((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
        const int q3 = static_cast<int8_t>((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
        const int q4 = static_cast<int8_t>((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
        out[l + 0] = d * sc[is + 0] * q1;
        out[l + 32] = d * sc[is + 2] * q2;
        out[l + 64] = d * sc[is + 4] * q3;
        out[l + 96] = d * sc[is + 6] * q4;
      }
      out += 128;
      ql += 64;
      qh += 32;
      sc += 8;
    }
  }
}

// ---------------------------------------------------------------- packing

void PackF32Scalar(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  std::memcpy(out, x, static_cast<size_t>(n_tokens * cols) * sizeof(float));
}

// Same arithmetic as FromFloatQ8_0 (ggml's q8_0 activations), f32 scale field.
void PackQ8_0AScalar(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  auto* y = static_cast<BlockQ8_0A*>(out);
  const int64_t nb = n_tokens * (cols / kQK8_0);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQK8_0;
    float amax = 0.0f;
    for (int j = 0; j < kQK8_0; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = F16ToF32(F32ToF16(d));
    for (int j = 0; j < kQK8_0; ++j) y[i].qs[j] = static_cast<int8_t>(RoundAway(xb[j] * id));
  }
}

void PackQ8_KAScalar(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  auto* y = static_cast<BlockQ8_KA*>(out);
  const int64_t nb = n_tokens * (cols / kQKSuper);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQKSuper;
    float amax = 0.0f;
    for (int j = 0; j < kQKSuper; ++j) amax = std::max(amax, std::fabs(xb[j]));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[i].d = d;
    for (int g = 0; g < kQKSuper / 16; ++g) {
      int sum = 0;
      for (int j = g * 16; j < (g + 1) * 16; ++j) {
        const int q = RoundAway(xb[j] * id);
        y[i].qs[j] = static_cast<int8_t>(q);
        sum += q;
      }
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
  }
}

// ---------------------------------------------------------------- mat-mul

namespace {
template <typename RowDot>
inline void ForEachRowToken(const void* w, size_t row_bytes, int64_t r0, int64_t r1, const void* xpacked,
                            size_t x_row_bytes, int64_t n_tokens, float* y, int64_t ldy, RowDot dot) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const uint8_t*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    for (int64_t t = 0; t < n_tokens; ++t) {
      y[t * ldy + r] = dot(wb + r * row_bytes, xb + t * x_row_bytes);
    }
  }
}
}  // namespace

void MatMulF32Scalar(TF_MATMUL_ARGS) {
  ForEachRowToken(w, row_bytes, r0, r1, xpacked, cols * sizeof(float), n_tokens, y, ldy,
                  [cols](const uint8_t* a, const uint8_t* b) {
                    return DotF32Scalar(reinterpret_cast<const float*>(a), reinterpret_cast<const float*>(b), cols);
                  });
}

void MatMulF16Scalar(TF_MATMUL_ARGS) {
  ForEachRowToken(w, row_bytes, r0, r1, xpacked, cols * sizeof(float), n_tokens, y, ldy,
                  [cols](const uint8_t* a, const uint8_t* b) {
                    return DotF16F32Scalar(reinterpret_cast<const uint16_t*>(a), reinterpret_cast<const float*>(b),
                                           cols);
                  });
}

void MatMulBF16Scalar(TF_MATMUL_ARGS) {
  ForEachRowToken(w, row_bytes, r0, r1, xpacked, cols * sizeof(float), n_tokens, y, ldy,
                  [cols](const uint8_t* a, const uint8_t* b) {
                    const auto* wa = reinterpret_cast<const uint16_t*>(a);
                    const auto* xb = reinterpret_cast<const float*>(b);
                    float s = 0.0f;
                    for (int64_t i = 0; i < cols; ++i) s += Bf16ToF32(wa[i]) * xb[i];
                    return s;
                  });
}

// ggml_vec_dot_q8_0_q8_0 (scalar path).
void MatMulQ8_0Scalar(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK8_0;
  ForEachRowToken(w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy,
                  [nb](const uint8_t* a, const uint8_t* b) {
                    const auto* x = reinterpret_cast<const BlockQ8_0*>(a);
                    const auto* q = reinterpret_cast<const BlockQ8_0A*>(b);
                    float sumf = 0.0f;
                    for (int64_t i = 0; i < nb; ++i) {
                      int sumi = 0;
                      for (int j = 0; j < kQK8_0; ++j) sumi += x[i].qs[j] * q[i].qs[j];
                      sumf += sumi * (F16ToF32(x[i].d) * q[i].d);
                    }
                    return sumf;
                  });
}

// ggml_vec_dot_q4_0_q8_0 (scalar path).
void MatMulQ4_0Scalar(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK4_0;
  ForEachRowToken(w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy,
                  [nb](const uint8_t* a, const uint8_t* b) {
                    const auto* x = reinterpret_cast<const BlockQ4_0*>(a);
                    const auto* q = reinterpret_cast<const BlockQ8_0A*>(b);
                    float sumf = 0.0f;
                    for (int64_t i = 0; i < nb; ++i) {
                      int sumi0 = 0, sumi1 = 0;
                      for (int j = 0; j < 16; ++j) {
                        const int v0 = (x[i].qs[j] & 0x0F) - 8;
                        const int v1 = (x[i].qs[j] >> 4) - 8;
                        sumi0 += v0 * q[i].qs[j];
                        sumi1 += v1 * q[i].qs[j + 16];
                      }
                      sumf += (sumi0 + sumi1) * (F16ToF32(x[i].d) * q[i].d);
                    }
                    return sumf;
                  });
}

// ---------------------------------------------------------------- vec ops

float DotF32Scalar(const float* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}
float DotF16F32Scalar(const uint16_t* a, const float* b, int64_t n) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += F16ToF32(a[i]) * b[i];
  return s;
}
void AxpyF32Scalar(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}
void AxpyF16Scalar(float a, const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * F16ToF32(x[i]);
}
void F32ToF16Scalar(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F32ToF16(x[i]);
}
void F16ToF32Scalar(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = F16ToF32(x[i]);
}

double ExpShiftSumScalar(float* x, float shift, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    x[i] = std::exp(x[i] - shift);
    sum += x[i];
  }
  return sum;
}

void SiluMulScalar(float* g, const float* u, int64_t n) {
  for (int64_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

double SumSquaresScalar(const float* x, int64_t n) {
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}

}  // namespace tabfit::qk
