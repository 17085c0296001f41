// AVX2+FMA+F16C kernels of the low-bit KV formats (lowbit_kernels.h). This
// file alone is compiled with -mavx2 -mfma -mf16c; Best() picks it by CPUID.
#include <immintrin.h>

#include <cstring>

#include "core/f16.h"
#include "kv/lowbit_kernels.h"

namespace tabfit::kvlow {

namespace {

inline float Hsum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

inline void ReadRange(const uint8_t* in, float* s, float* m) {
  uint16_t h[2];
  std::memcpy(h, in, 4);
  *s = F16ToF32(h[0]);
  *m = F16ToF32(h[1]);
}

// The 32 codes of a sub-block as 4 vectors of 8 floats: x[k] = codes 8k..8k+7.
inline void Unpack(const uint8_t* p, int bits, __m256 x[4]) {
  if (bits == 4) {
    const __m256i m = _mm256_set1_epi32(15);
    const __m256i a = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));      // codes 0-7 | 16-23
    const __m256i b = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8)));  // 8-15 | 24-31
    x[0] = _mm256_cvtepi32_ps(_mm256_and_si256(a, m));
    x[1] = _mm256_cvtepi32_ps(_mm256_and_si256(b, m));
    x[2] = _mm256_cvtepi32_ps(_mm256_srli_epi32(a, 4));
    x[3] = _mm256_cvtepi32_ps(_mm256_srli_epi32(b, 4));
    return;
  }
  const __m256i m = _mm256_set1_epi32(3);
  const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  __m256i c[4] = {_mm256_and_si256(v, m), _mm256_and_si256(_mm256_srli_epi32(v, 2), m),
                  _mm256_and_si256(_mm256_srli_epi32(v, 4), m), _mm256_and_si256(_mm256_srli_epi32(v, 6), m)};
  if (bits == 3) {
    uint32_t w;
    std::memcpy(&w, p + 8, 4);
    const __m256i wv = _mm256_set1_epi32(static_cast<int32_t>(w));
    const __m256i one = _mm256_set1_epi32(1);
    for (int k = 0; k < 4; ++k) {
      const __m256i sh = _mm256_setr_epi32(8 * k, 8 * k + 1, 8 * k + 2, 8 * k + 3, 8 * k + 4, 8 * k + 5, 8 * k + 6,
                                           8 * k + 7);
      const __m256i bit = _mm256_and_si256(_mm256_srlv_epi32(wv, sh), one);
      c[k] = _mm256_or_si256(c[k], _mm256_slli_epi32(bit, 2));
    }
  }
  for (int k = 0; k < 4; ++k) x[k] = _mm256_cvtepi32_ps(c[k]);
}

void KeyScoresAvx2(const uint8_t* recs, size_t rec_bytes, int hd, int G, int bits, const float* q, float* scores) {
  alignas(32) float qs[kMaxHeadDim];
  float base = 0.f;
  for (int c = 0; c < hd; ++c) {
    float s, m;
    ReadRange(recs + c * rec_bytes, &s, &m);
    qs[c] = q[c] * s;
    base += q[c] * m;
  }
  const size_t sb = SubBytes(bits);
  const __m256 b = _mm256_set1_ps(base);
  for (int sub = 0; sub < G / kSub; ++sub) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    const uint8_t* p = recs + kHeader + sub * sb;
    for (int c = 0; c < hd; ++c, p += rec_bytes) {
      __m256 x[4];
      Unpack(p, bits, x);
      const __m256 w = _mm256_set1_ps(qs[c]);
      a0 = _mm256_fmadd_ps(w, x[0], a0);
      a1 = _mm256_fmadd_ps(w, x[1], a1);
      a2 = _mm256_fmadd_ps(w, x[2], a2);
      a3 = _mm256_fmadd_ps(w, x[3], a3);
    }
    float* o = scores + sub * kSub;
    _mm256_storeu_ps(o, _mm256_add_ps(a0, b));
    _mm256_storeu_ps(o + 8, _mm256_add_ps(a1, b));
    _mm256_storeu_ps(o + 16, _mm256_add_ps(a2, b));
    _mm256_storeu_ps(o + 24, _mm256_add_ps(a3, b));
  }
}

void ValueAxpyAvx2(const uint8_t* recs, int hd, int Gv, int bits, float p, float* out) {
  const size_t gb = GroupBytes(Gv, bits), sb = SubBytes(bits);
  for (int g = 0; g < hd / Gv; ++g) {
    float s, m;
    ReadRange(recs + g * gb, &s, &m);
    const __m256 ps = _mm256_set1_ps(p * s), pm = _mm256_set1_ps(p * m);
    for (int sub = 0; sub < Gv / kSub; ++sub) {
      __m256 x[4];
      Unpack(recs + g * gb + kHeader + sub * sb, bits, x);
      float* o = out + g * Gv + sub * kSub;
      for (int k = 0; k < 4; ++k) {
        _mm256_storeu_ps(o + 8 * k, _mm256_fmadd_ps(ps, x[k], _mm256_add_ps(_mm256_loadu_ps(o + 8 * k), pm)));
      }
    }
  }
}

float DotQ8Avx2(const BlockQ8_0* b, int nb, const float* q) {
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < nb; ++i, q += kSub) {
    __m256 blk = _mm256_setzero_ps();
    for (int j = 0; j < kSub; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + j));
      blk = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8)), _mm256_loadu_ps(q + j), blk);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(F16ToF32(b[i].d)), blk, acc);
  }
  return Hsum(acc);
}

void AxpyQ8Avx2(float p, const BlockQ8_0* b, int nb, float* out) {
  for (int i = 0; i < nb; ++i, out += kSub) {
    const __m256 c = _mm256_set1_ps(p * F16ToF32(b[i].d));
    for (int j = 0; j < kSub; j += 8) {
      const __m128i q8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b[i].qs + j));
      const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q8));
      _mm256_storeu_ps(out + j, _mm256_fmadd_ps(c, x, _mm256_loadu_ps(out + j)));
    }
  }
}

float DotF16Avx2(const uint16_t* k, int n, const float* q) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k + i)));
    acc = _mm256_fmadd_ps(x, _mm256_loadu_ps(q + i), acc);
  }
  float sum = Hsum(acc);
  for (; i < n; ++i) sum += q[i] * F16ToF32(k[i]);
  return sum;
}

void AxpyF16Avx2(float p, const uint16_t* v, int n, float* out) {
  const __m256 c = _mm256_set1_ps(p);
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 x = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v + i)));
    _mm256_storeu_ps(out + i, _mm256_fmadd_ps(c, x, _mm256_loadu_ps(out + i)));
  }
  for (; i < n; ++i) out[i] += p * F16ToF32(v[i]);
}

}  // namespace

bool HasAvx2() {
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
}

const Kernels& Avx2() {
  static const Kernels k{"avx2", KeyScoresAvx2, ValueAxpyAvx2, DotQ8Avx2, AxpyQ8Avx2, DotF16Avx2, AxpyF16Avx2};
  return k;
}

}  // namespace tabfit::kvlow
