// AVX-512 VNNI decode kernels for Q8_0 / Q4_0 / TF_Q4 / TF_Q2 (TF_Q2R).
// Compiled with -mavx2 -mfma -mf16c -mavx512f -mavx512vl -mavx512bw -mavx512vnni;
// only called after CPUID says the CPU has all of them (Isa::kAvx512Vnni).
//
// The one-token mat-vec: Q8_0 uses q8_0_rows_x86.h with vpdpbusd on 256-bit
// vectors (a 512-bit two-block version measured ~12% slower end to end); Q4_0,
// TF_Q4 and TF_Q2 use 512-bit vectors (measured 1-thread TinyLlama-shape decode
// +12%, +49%, +26% over the 256-bit / AVX2 kernels on an AVX-512 EPYC).
// Prefill (4 or more tokens) and the rows % 8 tail use the AVX2 kernels.
#include <immintrin.h>

#include <cstring>

#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/q8_0_rows_x86.h"

namespace tabfit::qk {
namespace {

struct DotVnni {
  static __m256i Run(__m256i u8, __m256i s8) { return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u8, s8); }
};

template <class Rows8, class Fallback>
void MatMulDecodeVnni(Rows8 rows8, Fallback fallback, TF_MATMUL_ARGS) {
  if (n_tokens >= 4) {
    fallback(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const int64_t nb = cols / kQK8_0;
  const size_t xrb = nb * sizeof(BlockQ8_0A);
  const auto* xp = static_cast<const uint8_t*>(xpacked);
  DriveRows8([&](const uint8_t* wr, size_t rb, const BlockQ8_0A* xt, float* yr) { rows8(wr, rb, xt, nb, yr); },
             [&](int64_t ra, int64_t re, int64_t t) {
               fallback(w, row_bytes, ra, re, cols, xp + t * xrb, 1, y + t * ldy, ldy);
             },
             w, row_bytes, r0, r1, xpacked, xrb, n_tokens, y, ldy);
}

// ---------------------------------------------------------------- TF_Q2
// TF_Q2 decode, 8 rows per step. The group sub-scale is applied to the codes
// before the dot product: w*y summed with sc = sum (sc*q) * y, and sc*q <= 45
// fits an unsigned byte, so each 32-element chunk is ONE vpdpbusd of
// pshufb(table, code) with the activation, all chunks into one accumulator.
// The tables: the uint32 sc * 0x03020100 holds the bytes 0, sc, 2sc, 3sc; the
// sub-scales' nibble layout puts groups 0,2,4,6 | 1,3,5,7 (and 8.. | 9..) in the
// dword lanes of two vectors, so chunk c (groups 2c, 2c+1 in its low / high 16
// bytes) indexes dword c%4 of its vector with code + 4*(c%4) (one vpternlogd:
// (shifted & 3) | 4*(c%4)). On zmm, chunks c and c + 4 (same shift, tables of
// the two vectors side by side) take one vpdpbusd. sumi, summ are the scalar
// oracle's integers; the float part is SuperTerm per lane in the oracle's order:
// bit-identical.
static inline void TfQ2Rows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(BlockTfQ2));
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m128i m15 = _mm_set1_epi8(15);
  const __m512i lut_mul = _mm512_set1_epi32(0x03020100);
  const __m256i lo_sel = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                                          2, 3, 2, 3, 2, 3);
  const __m256i lo_mul = _mm256_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1, 1 << 14,
                                           1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1);
  const __m256i hi_mul = _mm256_setr_epi16(short(0x8000), 1 << 14, 1 << 13, 1 << 12, 1 << 11, 1 << 10, 1 << 9, 1 << 8,
                                           1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1);
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    // zmm k: chunks k (low 256 bits) and k + 4 (high), both indexed with shift 2k.
    __m512i yv[4];
    for (int c = 0; c < 4; ++c)
      yv[c] = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * c))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * (c + 4))), 1);
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
    __m256i v[8];
    for (int r = 0; r < 8; ++r) {
      const auto* blk = reinterpret_cast<const BlockTfQ2*>(w + r * rb) + b;
      // Sub-scales: byte j of scz = sc[2j] | sc[2j+1] << 4.
      const __m128i s8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk->scz));
      const __m128i lo = _mm_and_si128(s8, m15), hi = _mm_and_si128(_mm_srli_epi16(s8, 4), m15);
      const __m128i t = _mm_unpacklo_epi32(lo, hi);  // sc of groups 0,2,4,6,1,3,5,7,8,10,..,9,11,..
      const __m512i lut = _mm512_mullo_epi32(_mm512_cvtepu8_epi32(t), lut_mul);  // [lut of chunks 0..3 | 4..7]
      const __m512i q = _mm512_loadu_si512(blk->qs);
      __m512i acc0 = _mm512_setzero_si512(), acc1 = _mm512_setzero_si512();
      for (int c = 0; c < 4; ++c) {
        const __m512i sh = c ? _mm512_srli_epi16(q, 2 * c) : q;
        // (sh & 3) | 4*c
        const __m512i idx = _mm512_ternarylogic_epi32(sh, m3, _mm512_set1_epi8(static_cast<char>(4 * c)), 0xEA);
        const __m512i sq = _mm512_shuffle_epi8(lut, idx);
        if (c % 2) {
          acc1 = _mm512_dpbusd_epi32(acc1, sq, yv[c]);
        } else {
          acc0 = _mm512_dpbusd_epi32(acc0, sq, yv[c]);
        }
      }
      const __m512i acc = _mm512_add_epi32(acc0, acc1);
      const __m256i acc8 = _mm256_add_epi32(_mm512_castsi512_si256(acc), _mm512_extracti64x4_epi64(acc, 1));
      // summ = sum_g sc[g] * z[g] * bsum[g] with int16 lanes in group order.
      uint32_t zlo;
      uint16_t zhi;
      std::memcpy(&zlo, blk->scz + 8, 4);
      std::memcpy(&zhi, blk->scz + 12, 2);
      const __m256i l2 = _mm256_srli_epi16(
          _mm256_mullo_epi16(_mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(zlo)), lo_sel), lo_mul), 14);
      const __m256i h1 = _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_set1_epi16(static_cast<short>(zhi)), hi_mul), 15);
      const __m256i z16 = _mm256_add_epi16(_mm256_or_si256(l2, _mm256_slli_epi16(h1, 2)), _mm256_set1_epi16(2));
      const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(lo, hi));
      const __m256i m8 = _mm256_madd_epi16(_mm256_mullo_epi16(sc16, z16), bs);
      v[r] = _mm256_hadd_epi32(acc8, m8);  // per half: [sumi (2) | summ (2)]
    }
    const __m256i w01 = _mm256_hadd_epi32(v[0], v[1]), w23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i w45 = _mm256_hadd_epi32(v[4], v[5]), w67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256 xs = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permute2x128_si256(w01, w23, 0x20),
                                                           _mm256_permute2x128_si256(w01, w23, 0x31)));
    const __m256 ys = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permute2x128_si256(w45, w67, 0x20),
                                                           _mm256_permute2x128_si256(w45, w67, 0x31)));
    // Lanes hold rows 0,1,4,5,2,3,6,7.
    const __m256i isum = _mm256_castps_si256(_mm256_shuffle_ps(xs, ys, _MM_SHUFFLE(2, 0, 2, 0)));
    const __m256i msum = _mm256_castps_si256(_mm256_shuffle_ps(xs, ys, _MM_SHUFFLE(3, 1, 3, 1)));
    const __m256 dv = Scales8<0, 1, 4, 5, 2, 3, 6, 7>(w + b * sizeof(BlockTfQ2), rb);  // d is the block's first field
    const __m256 mv = _mm256_mul_ps(dv, _mm256_set1_ps(0.25f));  // dmin = d * 0.25f, as the oracle
    // SuperTerm: dy * (d*sumi - dmin*summ), no contraction (-ffp-contract=off).
    const __m256 a = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(isum));
    const __m256 m = _mm256_mul_ps(mv, _mm256_cvtepi32_ps(msum));
    sumf = _mm256_add_ps(sumf, _mm256_mul_ps(_mm256_set1_ps(xb->d), _mm256_sub_ps(a, m)));
  }
  _mm256_storeu_ps(y, _mm256_permutevar8x32_ps(sumf, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)));
}


// ---------------------------------------------------------------- Q4_0, 512-bit
// Q4_0 decode, 8 rows x 2 blocks per step on zmm. Row k (k < 4) and row k+4
// share one zmm with four 128-bit lanes L: (row k, b), (row k, b+1),
// (row k+4, b), (row k+4, b+1), so one vpdpbusd covers 4 (row, block) pairs.
// The -8 offset of the codes is folded in before the dot products: every
// accumulator starts at -8*sum(y) spread over the same lanes, so after the
// unpack-add reduction dword 4L+k is the exact integer block dot of (row, block)
// of lane L of p[k].
// Odd block counts use the 256-bit kernel (no 8-row x 2-block step exists).
// The fp16 d of blocks b (at p) and b+1 of rows 0..3 (stride rb), in the word
// order r0b, r1b, r2b, r3b, r0b1, r1b1, r2b1, r3b1.
static inline __m128i Scales4x2(const uint8_t* p, size_t rb) {
  constexpr int kB = sizeof(BlockQ4_0);
  __m128i h = _mm_cvtsi32_si128(Ld16(p));
  h = _mm_insert_epi16(h, Ld16(p + rb), 1);
  h = _mm_insert_epi16(h, Ld16(p + 2 * rb), 2);
  h = _mm_insert_epi16(h, Ld16(p + 3 * rb), 3);
  h = _mm_insert_epi16(h, Ld16(p + kB), 4);
  h = _mm_insert_epi16(h, Ld16(p + rb + kB), 5);
  h = _mm_insert_epi16(h, Ld16(p + 2 * rb + kB), 6);
  h = _mm_insert_epi16(h, Ld16(p + 3 * rb + kB), 7);
  return h;
}

static inline void Q4_0Rows8Z(const uint8_t* w, size_t rb, const BlockQ8_0A* x, int64_t nb, float* y) {
  if (nb % 2) {
    Q4_0Rows8<DotVnni>(w, rb, x, nb, y);
    return;
  }
  constexpr int kB = sizeof(BlockQ4_0);
  __m512 acc = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i eights = _mm512_set1_epi8(8);
  NextRowsPrefetch pf(w, rb, nb / 2, 2 * sizeof(BlockQ4_0));  // one step per block pair
  for (int64_t b = 0; b < nb; b += 2) {
    pf.Step();
    const uint8_t* blk = w + b * kB;
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b + 1].qs));
    const __m256i ylo2 = _mm256_permute2x128_si256(y0, y1, 0x20);  // y0[0..15] | y1[0..15]
    const __m256i yhi2 = _mm256_permute2x128_si256(y0, y1, 0x31);  // y0[16..31] | y1[16..31]
    const __m512i ylo = _mm512_inserti64x4(_mm512_castsi256_si512(ylo2), ylo2, 1);
    const __m512i yhi = _mm512_inserti64x4(_mm512_castsi256_si512(yhi2), yhi2, 1);
    const __m512i e = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, ylo), eights, yhi);
    const __m512i ne = _mm512_sub_epi32(_mm512_setzero_si512(), e);
    __m512i p[4];
    for (int k = 0; k < 4; ++k) {
      const uint8_t* a = blk + k * rb + 2;
      const uint8_t* c = blk + (k + 4) * rb + 2;
      const __m256i va = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + kB)), 1);
      const __m256i vc = _mm256_inserti128_si256(
          _mm256_castsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(c))),
          _mm_loadu_si128(reinterpret_cast<const __m128i*>(c + kB)), 1);
      const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(va), vc, 1);
      const __m512i lo = _mm512_and_si512(v, m4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      p[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ne, lo, ylo), hi, yhi);
    }
    const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
    const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
    const __m512i sums = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
    const __m512 dw = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(Scales4x2(blk, rb)),
                                                              Scales4x2(blk + 4 * rb, rb), 1));
    const __m256 dy2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(x[b].d)), _mm_set1_ps(x[b + 1].d), 1);
    const __m512 dy = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(dy2)),
                                                          _mm256_castps_pd(dy2), 1));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dw, dy), acc);
  }
  // Lanes 4L + k: rows 0..3 in L = 0, 1; rows 4..7 in L = 2, 3.
  const __m128 r03 = _mm_add_ps(_mm512_castps512_ps128(acc), _mm512_extractf32x4_ps(acc, 1));
  const __m128 r47 = _mm_add_ps(_mm512_extractf32x4_ps(acc, 2), _mm512_extractf32x4_ps(acc, 3));
  _mm_storeu_ps(y, r03);
  _mm_storeu_ps(y + 4, r47);
}

// ---------------------------------------------------------------- TF_Q4
// 6-bit sub-scales and mins of a superblock (formats.h layout) as two int16x8
// (the same decode as kernels_tf_avx2.cpp).
static inline void DecodeScales6(const uint8_t* s, __m128i* sc16, __m128i* m16) {
  const __m128i lo16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
  uint32_t hi;
  std::memcpy(&hi, s + 8, 4);
  const __m256i h = _mm256_set1_epi32(static_cast<int>(hi));
  const __m256i three = _mm256_set1_epi32(3);
  const __m256i hs = _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), three);
  const __m256i hm = _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30)), three);
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(hs, hm), 0xD8);
  *sc16 = _mm_or_si128(_mm_and_si128(lo16, _mm_set1_epi16(15)), _mm_slli_epi16(_mm256_castsi256_si128(p), 4));
  *m16 = _mm_or_si128(_mm_srli_epi16(lo16, 4), _mm_slli_epi16(_mm256_extracti128_si256(p, 1), 4));
}

// TF_Q4 decode, 8 rows per step, on zmm. Per row and superblock the 128 code
// bytes are two zmm; byte 32p + i holds group 2p (low nibble) and 2p+1 (high),
// so A0 = lo(qs[0..63]) meets [y g0 | y g2], A1 = hi(qs[0..63]) [y g1 | y g3],
// A2, A3 likewise groups 4,6 and 5,7: one vpdpbusd each, every 256-bit half
// one group. An unpack-add reduction leaves dword 4L + k = the sum of 128-bit
// lane L of A_k (a single group), which is multiplied by that group's sub-scale;
// the integers sumi and summ are the scalar oracle's, and the float part is the
// same SuperTerm per lane in the oracle's order as TfRows8: bit-identical.
static inline void TfQ4Rows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(BlockTfQ4));
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  // Lane 4L + k -> group of (A_k, lane L): k = 0: g0 (L 0,1), g2 (L 2,3); k = 1: g1, g3; k = 2: g4, g6; k = 3: g5, g7.
  const __m512i sc_perm = _mm512_setr_epi32(0, 1, 4, 5, 0, 1, 4, 5, 2, 3, 6, 7, 2, 3, 6, 7);
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    __m256i yc[8];
    for (int c = 0; c < 8; ++c) yc[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * c));
    const __m512i y0 = _mm512_inserti64x4(_mm512_castsi256_si512(yc[0]), yc[2], 1);
    const __m512i y1 = _mm512_inserti64x4(_mm512_castsi256_si512(yc[1]), yc[3], 1);
    const __m512i y2 = _mm512_inserti64x4(_mm512_castsi256_si512(yc[4]), yc[6], 1);
    const __m512i y3 = _mm512_inserti64x4(_mm512_castsi256_si512(yc[5]), yc[7], 1);
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
    __m256i v[8];
    for (int r = 0; r < 8; ++r) {
      const auto* blk = reinterpret_cast<const BlockTfQ4*>(w + r * rb) + b;
      __m128i sc16, m16;
      DecodeScales6(blk->scales, &sc16, &m16);
      const __m512i q01 = _mm512_loadu_si512(blk->qs);
      const __m512i q23 = _mm512_loadu_si512(blk->qs + 64);
      const __m512i z = _mm512_setzero_si512();
      const __m512i a0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(q01, m4), y0);
      const __m512i a1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q01, 4), m4), y1);
      const __m512i a2 = _mm512_dpbusd_epi32(z, _mm512_and_si512(q23, m4), y2);
      const __m512i a3 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q23, 4), m4), y3);
      const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
      const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
      const __m512i g = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
      const __m512i scv = _mm512_permutexvar_epi32(sc_perm, _mm512_castsi256_si512(_mm256_cvtepu16_epi32(sc16)));
      const __m512i s16 = _mm512_mullo_epi32(g, scv);
      const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s16), _mm512_extracti64x4_epi64(s16, 1));
      const __m256i corr = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
      // per 128-bit half: [sumi pair sums (2) | summ pair sums (2)]
      v[r] = _mm256_hadd_epi32(s8, _mm256_madd_epi16(corr, bs));
    }
    const __m256i w01 = _mm256_hadd_epi32(v[0], v[1]), w23 = _mm256_hadd_epi32(v[2], v[3]);
    const __m256i w45 = _mm256_hadd_epi32(v[4], v[5]), w67 = _mm256_hadd_epi32(v[6], v[7]);
    const __m256 xs = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permute2x128_si256(w01, w23, 0x20),
                                                           _mm256_permute2x128_si256(w01, w23, 0x31)));
    const __m256 ys = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permute2x128_si256(w45, w67, 0x20),
                                                           _mm256_permute2x128_si256(w45, w67, 0x31)));
    // Lanes hold rows 0,1,4,5,2,3,6,7.
    const __m256i isum = _mm256_castps_si256(_mm256_shuffle_ps(xs, ys, _MM_SHUFFLE(2, 0, 2, 0)));
    const __m256i msum = _mm256_castps_si256(_mm256_shuffle_ps(xs, ys, _MM_SHUFFLE(3, 1, 3, 1)));
    const uint8_t* wb = w + b * sizeof(BlockTfQ4);  // d, dmin: the block's first fields
    const __m256 dv = Scales8<0, 1, 4, 5, 2, 3, 6, 7>(wb, rb);
    const __m256 mv = Scales8<0, 1, 4, 5, 2, 3, 6, 7>(wb + 2, rb);
    // SuperTerm: dy * (d*sumi - dmin*summ), no contraction (-ffp-contract=off).
    const __m256 a = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(isum));
    const __m256 m = _mm256_mul_ps(mv, _mm256_cvtepi32_ps(msum));
    sumf = _mm256_add_ps(sumf, _mm256_mul_ps(_mm256_set1_ps(xb->d), _mm256_sub_ps(a, m)));
  }
  _mm256_storeu_ps(y, _mm256_permutevar8x32_ps(sumf, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)));
}

}  // namespace

void MatMulTfQ2Avx512Vnni(TF_MATMUL_ARGS) {
  if (n_tokens >= 4) {
    MatMulTfQ2Avx2(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const int64_t nsb = cols / kQKSuper;
  const size_t xrb = nsb * sizeof(BlockQ8_KA);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(xpacked);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* xt = reinterpret_cast<const BlockQ8_KA*>(xp + t * xrb);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) TfQ2Rows8(nsb, wb + r * row_bytes, row_bytes, xt, y + t * ldy + r);
    if (r < r1) MatMulTfQ2Avx2(w, row_bytes, r, r1, cols, xp + t * xrb, 1, y + t * ldy, ldy);
  }
}

void MatMulTfQ4Avx512Vnni(TF_MATMUL_ARGS) {
  if (n_tokens >= 4) {
    MatMulTfQ4Avx2(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const int64_t nsb = cols / kQKSuper;
  const size_t xrb = nsb * sizeof(BlockQ8_KA);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(xpacked);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* xt = reinterpret_cast<const BlockQ8_KA*>(xp + t * xrb);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) TfQ4Rows8(nsb, wb + r * row_bytes, row_bytes, xt, y + t * ldy + r);
    if (r < r1) MatMulTfQ4Avx2(w, row_bytes, r, r1, cols, xp + t * xrb, 1, y + t * ldy, ldy);
  }
}

void MatMulQ8_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q8_0Rows8<DotVnni>, MatMulQ8_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulQ4_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q4_0Rows8Z, MatMulQ4_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
