// TF_Q4x16 mat-mul (layout in tf_q4x16.h) with AVX-512 F/BW/VL/VNNI + VBMI.
// Compiled with those flags (and GFNI, unused here); called only after CPUID says
// the CPU has VNNI and VBMI.
//
// Per 16-row tile and superblock (2304 bytes, one sequential stream per thread):
//  - header, once for 16 rows: the 32 six-byte chunks are spread to qwords (vpermb)
//    and cut into 6-bit fields (vpmultishiftqb); even/odd dwords give, per row lane,
//    the sub-scales (sc) and mins (m) of groups 4k..4k+3;
//  - per group g: 4 zmm of nibbles (low: columns 0..15, high: 16..31 of the group,
//    4 per row lane), 8 vpdpbusd with the broadcast activation dwords give sum(q*y)
//    of 16 rows, times sc (vpmulld) into sumi;
//  - summ = sum_g m * (bsum[2g] + bsum[2g+1]): those sums split into 128*hi + lo
//    (both int8), 2 x 2 vpdpbusd of the m bytes for 16 rows;
//  - the oracle's SuperTerm for 16 rows at once, same operations in the same order:
//    bit-identical with MatMulTfQ4Scalar.
#include <immintrin.h>

#include <algorithm>

#include "quant/tf_q4x16.h"
#include "quant/x16_driver.h"

namespace tabfit::qk {
namespace {

constexpr int kPrefetchAhead = 10240;  // as tf_q2x16_avx512.cpp: one stream per thread

struct Consts {
  __m512i spread;   // qword q <- bytes 6q..6q+7 of a 48-byte run
  __m512i fields;   // per qword: bit offsets 0, 6, ..., 42
  __m512i even, odd;
  __m512i pick[4];  // dword i <- its byte j, zero-extended
  Consts() {
    alignas(64) uint8_t sp[64], fl[64];
    for (int q = 0; q < 8; ++q)
      for (int i = 0; i < 8; ++i) {
        sp[8 * q + i] = static_cast<uint8_t>(std::min(63, 6 * q + i));
        fl[8 * q + i] = static_cast<uint8_t>(6 * i);
      }
    spread = _mm512_load_si512(sp);
    fields = _mm512_load_si512(fl);
    even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int j = 0; j < 4; ++j) {
      alignas(64) uint8_t pk[64];
      for (int i = 0; i < 64; ++i) pk[i] = (i % 4 == 0) ? static_cast<uint8_t>((i % 16) + j) : 0x80;
      pick[j] = _mm512_load_si512(pk);
    }
  }
};

inline __m512i Bcast32(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

template <int NT>
void Tile(const uint8_t* tile, int64_t nsb, const BlockQ8_KA* const* xt, float* y, int64_t ldy, const Consts& c) {
  __m512 sumf[NT];
  for (int t = 0; t < NT; ++t) sumf[t] = _mm512_setzero_ps();
  const __m512i m63 = _mm512_set1_epi8(63), m15 = _mm512_set1_epi8(15);
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* sb = tile + b * kQ4sSuperBytes;
    for (int l = 0; l < kQ4sSuperBytes; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(sb + kPrefetchAhead + l), kX16PrefetchHint);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
    const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb + 32)));
    __m512i f[4];
    for (int i = 0; i < 4; ++i)
      f[i] = _mm512_multishift_epi64_epi8(
          c.fields, _mm512_permutexvar_epi8(c.spread, _mm512_loadu_si512(sb + kQ4sScalesOffset + 48 * i)));
    // f[0] / f[1]: sc of rows 0..7 / 8..15 (qword r: groups 0..7); f[2], f[3]: m.
    const __m512i sc[2] = {_mm512_and_si512(_mm512_permutex2var_epi32(f[0], c.even, f[1]), m63),
                           _mm512_and_si512(_mm512_permutex2var_epi32(f[0], c.odd, f[1]), m63)};
    const __m512i mb[2] = {_mm512_and_si512(_mm512_permutex2var_epi32(f[2], c.even, f[3]), m63),
                           _mm512_and_si512(_mm512_permutex2var_epi32(f[2], c.odd, f[3]), m63)};
    __m512i sumi[NT];
    for (int t = 0; t < NT; ++t) sumi[t] = _mm512_setzero_si512();
    for (int g = 0; g < 8; ++g) {
      __m512i acc[NT];
      for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        const __m512i q = _mm512_loadu_si512(sb + kQ4sCodesOffset + 256 * g + 64 * k);
        const __m512i lo = _mm512_and_si512(q, m15), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m15);
        for (int t = 0; t < NT; ++t) {
          const int8_t* yq = xt[t][b].qs + 32 * g;
          acc[t] = _mm512_dpbusd_epi32(acc[t], lo, Bcast32(yq + 4 * k));
          acc[t] = _mm512_dpbusd_epi32(acc[t], hi, Bcast32(yq + 16 + 4 * k));
        }
      }
      const __m512i scg = _mm512_shuffle_epi8(sc[g / 4], c.pick[g % 4]);
      for (int t = 0; t < NT; ++t) sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(acc[t], scg));
    }
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_KA& xb = xt[t][b];
      // Group sums bsum[2g] + bsum[2g+1] (|.| <= 32*127) = 128*hi + lo, lo in 0..127.
      const __m256i gs = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums)),
                                           _mm256_set1_epi16(1));
      alignas(16) int8_t lohi[16];
      _mm_storel_epi64(reinterpret_cast<__m128i*>(lohi), _mm256_cvtepi32_epi8(_mm256_and_si256(gs, _mm256_set1_epi32(127))));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(lohi + 8), _mm256_cvtepi32_epi8(_mm256_srai_epi32(gs, 7)));
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      for (int k = 0; k < 2; ++k) {
        lo = _mm512_dpbusd_epi32(lo, mb[k], Bcast32(lohi + 4 * k));
        hi = _mm512_dpbusd_epi32(hi, mb[k], Bcast32(lohi + 8 + 4 * k));
      }
      const __m512i summ = _mm512_add_epi32(_mm512_slli_epi32(hi, 7), lo);
      // SuperTerm: dy * (d*sumi - dmin*summ), as the oracle evaluates it.
      const __m512 a = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sumi[t]));
      const __m512 bm = _mm512_mul_ps(dmin, _mm512_cvtepi32_ps(summ));
      sumf[t] = _mm512_add_ps(sumf[t], _mm512_mul_ps(_mm512_set1_ps(xb.d), _mm512_sub_ps(a, bm)));
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(y + t * ldy, sumf[t]);
}

}  // namespace

void MatMulTfQ4x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  static const Consts c;
  const int64_t nsb = cols / kQKSuper;
  DriveTfX16(MatMulTfQ4x16Scalar, [&](auto nt, const uint8_t* tile, const BlockQ8_KA* const* xt, float* yt) {
    Tile<decltype(nt)::value>(tile, nsb, xt, yt, ldy, c);
  }, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
