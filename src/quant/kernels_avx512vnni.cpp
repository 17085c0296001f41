// AVX-512 VNNI (with VL, on 256-bit vectors) decode kernels for Q8_0 / Q4_0 / TF_Q2.
// Compiled with -mavx2 -mfma -mf16c -mavx512f -mavx512vl -mavx512bw -mavx512vnni;
// only called after CPUID says the CPU has all of them (Isa::kAvx512Vnni).
//
// The one-token mat-vec uses q8_0_rows_x86.h with vpdpbusd (one instruction for
// maddubs + madd). Prefill (4 or more tokens) and the rows % 8 tail use the AVX2
// kernels, which are compute-bound on other work than the byte dot product.
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
// (shifted & 3) | 4*(c%4)). sumi, summ are the scalar oracle's integers; the float
// part is SuperTerm per lane in the oracle's order: bit-identical.
static inline void TfQ2Rows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(BlockTfQ2));
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m128i m15 = _mm_set1_epi8(15);
  const __m256i lut_mul = _mm256_set1_epi32(0x03020100);
  const __m256i lo_sel = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3,
                                          2, 3, 2, 3, 2, 3);
  const __m256i lo_mul = _mm256_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1, 1 << 14,
                                           1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1);
  const __m256i hi_mul = _mm256_setr_epi16(short(0x8000), 1 << 14, 1 << 13, 1 << 12, 1 << 11, 1 << 10, 1 << 9, 1 << 8,
                                           1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1);
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    __m256i yv[8];
    for (int c = 0; c < 8; ++c) yv[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * c));
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
    __m256i v[8];
    float d[8];
    for (int r = 0; r < 8; ++r) {
      const auto* blk = reinterpret_cast<const BlockTfQ2*>(w + r * rb) + b;
      // Sub-scales: byte j of scz = sc[2j] | sc[2j+1] << 4.
      const __m128i s8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk->scz));
      const __m128i lo = _mm_and_si128(s8, m15), hi = _mm_and_si128(_mm_srli_epi16(s8, 4), m15);
      const __m128i t = _mm_unpacklo_epi32(lo, hi);  // sc of groups 0,2,4,6,1,3,5,7,8,10,..,9,11,..
      const __m256i lut0 = _mm256_mullo_epi32(_mm256_cvtepu8_epi32(t), lut_mul);
      const __m256i lut1 = _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_srli_si128(t, 8)), lut_mul);
      const __m256i q0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs));
      const __m256i q1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk->qs + 32));
      __m256i acc0 = _mm256_setzero_si256(), acc1 = _mm256_setzero_si256();
      for (int c = 0; c < 8; ++c) {
        const __m256i q = c < 4 ? q0 : q1;
        const __m256i sh = (c % 4) ? _mm256_srli_epi16(q, 2 * (c % 4)) : q;
        // (sh & 3) | 4*(c%4)
        const __m256i idx = _mm256_ternarylogic_epi32(sh, m3, _mm256_set1_epi8(static_cast<char>(4 * (c % 4))), 0xEA);
        const __m256i sq = _mm256_shuffle_epi8(c < 4 ? lut0 : lut1, idx);
        if (c % 2) {
          acc1 = _mm256_dpbusd_epi32(acc1, sq, yv[c]);
        } else {
          acc0 = _mm256_dpbusd_epi32(acc0, sq, yv[c]);
        }
      }
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
      v[r] = _mm256_hadd_epi32(_mm256_add_epi32(acc0, acc1), m8);  // per half: [sumi (2) | summ (2)]
      d[r] = _cvtsh_ss(blk->d);
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
    const __m256 dv = _mm256_setr_ps(d[0], d[1], d[4], d[5], d[2], d[3], d[6], d[7]);
    const __m256 mv = _mm256_mul_ps(dv, _mm256_set1_ps(0.25f));  // dmin = d * 0.25f, as the oracle
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

void MatMulQ8_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q8_0Rows8<DotVnni>, MatMulQ8_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulQ4_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q4_0Rows8<DotVnni>, MatMulQ4_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
