// AVX2+FMA+F16C kernels of the low-bit KV formats (lowbit_kernels.h). This
// file alone is compiled with -mavx2 -mfma -mf16c; Best() picks it by CPUID.
#include <immintrin.h>

#include <algorithm>
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

// The header's f16 scale and minimum, converted by F16C (exact, as F16ToF32).
inline void ReadRange(const uint8_t* in, float* s, float* m) {
  uint32_t w;
  std::memcpy(&w, in, 4);
  const __m128 f = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(w)));
  *s = _mm_cvtss_f32(f);
  *m = _mm_cvtss_f32(_mm_shuffle_ps(f, f, 1));
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

void KeyTileAvx2(const uint8_t* recs, size_t rec_bytes, int hd, int bits, int sub, float* kt) {
  for (int c = 0; c < hd; ++c) {
    const uint8_t* r = recs + c * rec_bytes;
    float s, m;
    ReadRange(r, &s, &m);
    __m256 x[4];
    Unpack(r + kHeader + sub * SubBytes(bits), bits, x);
    const __m256 vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(m);
    for (int k = 0; k < 4; ++k) _mm256_storeu_ps(kt + c * kSub + 8 * k, _mm256_fmadd_ps(vs, x[k], vm));
  }
}

// Two heads at a time: 8 accumulators, the tile's rows loaded once per pair.
void TileScoresAvx2(const float* kt, int hd, const float* q, int n_q, int len, float* scores, size_t ld) {
  int h = 0;
  alignas(32) float tmp[2 * kSub];
  for (; h + 2 <= n_q; h += 2) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
    const float* qa = q + h * hd;
    const float* qb = qa + hd;
    for (int c = 0; c < hd; ++c) {
      const float* row = kt + c * kSub;
      const __m256 x0 = _mm256_loadu_ps(row), x1 = _mm256_loadu_ps(row + 8), x2 = _mm256_loadu_ps(row + 16),
                   x3 = _mm256_loadu_ps(row + 24);
      const __m256 wa = _mm256_set1_ps(qa[c]), wb = _mm256_set1_ps(qb[c]);
      a0 = _mm256_fmadd_ps(wa, x0, a0);
      a1 = _mm256_fmadd_ps(wa, x1, a1);
      a2 = _mm256_fmadd_ps(wa, x2, a2);
      a3 = _mm256_fmadd_ps(wa, x3, a3);
      b0 = _mm256_fmadd_ps(wb, x0, b0);
      b1 = _mm256_fmadd_ps(wb, x1, b1);
      b2 = _mm256_fmadd_ps(wb, x2, b2);
      b3 = _mm256_fmadd_ps(wb, x3, b3);
    }
    _mm256_store_ps(tmp, a0);
    _mm256_store_ps(tmp + 8, a1);
    _mm256_store_ps(tmp + 16, a2);
    _mm256_store_ps(tmp + 24, a3);
    _mm256_store_ps(tmp + 32, b0);
    _mm256_store_ps(tmp + 40, b1);
    _mm256_store_ps(tmp + 48, b2);
    _mm256_store_ps(tmp + 56, b3);
    std::memcpy(scores + h * ld, tmp, sizeof(float) * len);
    std::memcpy(scores + (h + 1) * ld, tmp + kSub, sizeof(float) * len);
  }
  for (; h < n_q; ++h) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int c = 0; c < hd; ++c) {
      const float* row = kt + c * kSub;
      const __m256 w = _mm256_set1_ps(q[h * hd + c]);
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row), a0);
      a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8), a1);
      a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 16), a2);
      a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 24), a3);
    }
    _mm256_store_ps(tmp, a0);
    _mm256_store_ps(tmp + 8, a1);
    _mm256_store_ps(tmp + 16, a2);
    _mm256_store_ps(tmp + 24, a3);
    std::memcpy(scores + h * ld, tmp, sizeof(float) * len);
  }
}

void ValueRowAvx2(const uint8_t* recs, int hd, int Gv, int bits, float* v);
void ValueTileAvx2(const uint8_t* recs, size_t stride, int len, int hd, int Gv, int bits, float* vt) {
  for (int t = 0; t < len; ++t) ValueRowAvx2(recs + t * stride, hd, Gv, bits, vt + t * hd);
}

inline void ValueRowAvx2(const uint8_t* recs, int hd, int Gv, int bits, float* v) {
  const size_t gb = GroupBytes(Gv, bits), sb = SubBytes(bits);
  for (int g = 0; g < hd / Gv; ++g) {
    float s, m;
    ReadRange(recs + g * gb, &s, &m);
    const __m256 vs = _mm256_set1_ps(s), vm = _mm256_set1_ps(m);
    for (int sub = 0; sub < Gv / kSub; ++sub) {
      __m256 x[4];
      Unpack(recs + g * gb + kHeader + sub * sb, bits, x);
      float* o = v + g * Gv + sub * kSub;
      for (int k = 0; k < 4; ++k) _mm256_storeu_ps(o + 8 * k, _mm256_fmadd_ps(vs, x[k], vm));
    }
  }
}

// 8x8 blocks transposed in registers (rows past len read as zeros).
void RowsToTileAvx2(const float* rows, int len, int hd, float* kt) {
  for (int t0 = 0; t0 < kSub; t0 += 8) {
    for (int c0 = 0; c0 < hd; c0 += 8) {
      __m256 r[8];
      for (int i = 0; i < 8; ++i) {
        r[i] = t0 + i < len ? _mm256_loadu_ps(rows + (t0 + i) * hd + c0) : _mm256_setzero_ps();
      }
      const __m256 a0 = _mm256_unpacklo_ps(r[0], r[1]), a1 = _mm256_unpackhi_ps(r[0], r[1]);
      const __m256 a2 = _mm256_unpacklo_ps(r[2], r[3]), a3 = _mm256_unpackhi_ps(r[2], r[3]);
      const __m256 a4 = _mm256_unpacklo_ps(r[4], r[5]), a5 = _mm256_unpackhi_ps(r[4], r[5]);
      const __m256 a6 = _mm256_unpacklo_ps(r[6], r[7]), a7 = _mm256_unpackhi_ps(r[6], r[7]);
      const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
      const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
      const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
      const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
      const __m256 c[8] = {_mm256_permute2f128_ps(b0, b4, 0x20), _mm256_permute2f128_ps(b1, b5, 0x20),
                           _mm256_permute2f128_ps(b2, b6, 0x20), _mm256_permute2f128_ps(b3, b7, 0x20),
                           _mm256_permute2f128_ps(b0, b4, 0x31), _mm256_permute2f128_ps(b1, b5, 0x31),
                           _mm256_permute2f128_ps(b2, b6, 0x31), _mm256_permute2f128_ps(b3, b7, 0x31)};
      for (int j = 0; j < 8; ++j) _mm256_storeu_ps(kt + (c0 + j) * kSub + t0, c[j]);
    }
  }
}

// Two heads x 32 channels (8 accumulators) at a time over the tile's tokens:
// each row chunk is loaded once per pair of heads.
void TileAccumulateAvx2(const float* vt, int hd, int len, const float* p, size_t ld, int n_q, float* out) {
  for (int c0 = 0; c0 < hd; c0 += 32) {
    int h = 0;
    for (; h + 2 <= n_q; h += 2) {
      const float* pa = p + h * ld;
      const float* pb = pa + ld;
      float* oa = out + h * hd + c0;
      float* ob = oa + hd;
      __m256 a0 = _mm256_loadu_ps(oa), a1 = _mm256_loadu_ps(oa + 8), a2 = _mm256_loadu_ps(oa + 16),
             a3 = _mm256_loadu_ps(oa + 24);
      __m256 b0 = _mm256_loadu_ps(ob), b1 = _mm256_loadu_ps(ob + 8), b2 = _mm256_loadu_ps(ob + 16),
             b3 = _mm256_loadu_ps(ob + 24);
      for (int t = 0; t < len; ++t) {
        const float* row = vt + t * hd + c0;
        const __m256 x0 = _mm256_loadu_ps(row), x1 = _mm256_loadu_ps(row + 8), x2 = _mm256_loadu_ps(row + 16),
                     x3 = _mm256_loadu_ps(row + 24);
        const __m256 wa = _mm256_set1_ps(pa[t]), wb = _mm256_set1_ps(pb[t]);
        a0 = _mm256_fmadd_ps(wa, x0, a0);
        a1 = _mm256_fmadd_ps(wa, x1, a1);
        a2 = _mm256_fmadd_ps(wa, x2, a2);
        a3 = _mm256_fmadd_ps(wa, x3, a3);
        b0 = _mm256_fmadd_ps(wb, x0, b0);
        b1 = _mm256_fmadd_ps(wb, x1, b1);
        b2 = _mm256_fmadd_ps(wb, x2, b2);
        b3 = _mm256_fmadd_ps(wb, x3, b3);
      }
      _mm256_storeu_ps(oa, a0);
      _mm256_storeu_ps(oa + 8, a1);
      _mm256_storeu_ps(oa + 16, a2);
      _mm256_storeu_ps(oa + 24, a3);
      _mm256_storeu_ps(ob, b0);
      _mm256_storeu_ps(ob + 8, b1);
      _mm256_storeu_ps(ob + 16, b2);
      _mm256_storeu_ps(ob + 24, b3);
    }
    for (; h < n_q; ++h) {
      const float* ph = p + h * ld;
      float* o = out + h * hd + c0;
      __m256 a[4];
      for (int k = 0; k < 4; ++k) a[k] = _mm256_loadu_ps(o + 8 * k);
      for (int t = 0; t < len; ++t) {
        const __m256 w = _mm256_set1_ps(ph[t]);
        const float* row = vt + t * hd + c0;
        for (int k = 0; k < 4; ++k) a[k] = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + 8 * k), a[k]);
      }
      for (int k = 0; k < 4; ++k) _mm256_storeu_ps(o + 8 * k, a[k]);
    }
  }
}

}  // namespace

bool HasAvx2() {
  static const bool ok =
      __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return ok;
}

const Kernels& Avx2() {
  static const Kernels k{"avx2",         KeyScoresAvx2, ValueAxpyAvx2, DotQ8Avx2,          AxpyQ8Avx2,
                         DotF16Avx2,     AxpyF16Avx2,   KeyTileAvx2,   TileScoresAvx2,     ValueTileAvx2,
                         RowsToTileAvx2, TileAccumulateAvx2};
  return k;
}

}  // namespace tabfit::kvlow
