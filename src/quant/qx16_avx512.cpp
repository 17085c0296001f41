// Q8_0x16, Q4_0x16 and TF_Q8x16 mat-muls (layouts in q8_0x16.h, q4_0x16.h,
// tf_q8x16.h; TF_Q8x16 below) with AVX-512
// F/BW/VL/VNNI. Compiled with those flags; called only after CPUID says the CPU
// has them (Isa::kAvx512Vnni).
//
// Per 16-row tile and block of 32 columns (544 / 288 bytes, one sequential stream
// per thread): 8 vpdpbusd of unsigned codes (Q8_0: code + 128; Q4_0: the nibbles,
// cut out with vpand / vpsrlw) with the broadcast activation dwords give
// sum(u * y) for 16 rows at once; minus 128 (Q8_0) or 8 (Q4_0) times sum(y) (per
// token and block, computed once per call for a chunk of tokens) that is the
// oracle's exact int sum, and the float step is sumf = fma(sumi, dw * dy, sumf) lane by lane: the
// row-major x86 Q8_0 decode kernels' exact expression (q8_0_rows_x86.h), which is
// the scalar oracle's with the multiply-add fused (one rounding, not two).
#include <immintrin.h>

#include <algorithm>

#include "quant/q4_0x16.h"
#include "quant/q8_0x16.h"
#include "quant/tf_q8x16.h"
#include "quant/x16_driver.h"

namespace tabfit::qk {
namespace {

// See tf_q2x16_avx512.cpp: a single stream per thread needs a far software
// prefetch to reach the read ceiling: 10 KiB ahead there and here.
constexpr int kPrefetchAhead = 10240;
// kOffset * sum(y) per (token, block) of the tokens in flight: the stack buffer's size
// (64 KiB) bounds tokens per pass as kSumSlots / blocks, at least 4, so rows of up to
// 131072 columns (4096 blocks) take the fast path; longer rows fall back to the scalar kernel.
constexpr int kSumSlots = 16384;

inline __m512i Bcast32(const int8_t* p) {
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// sum of a block's 32 activation codes.
inline int32_t SumCodes(const BlockQ8_0A& q) {
  // codes ^ 0x80 are code + 128 as unsigned bytes; vpsadbw sums them per 8.
  const __m256i u = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(q.qs)), _mm256_set1_epi8(-128));
  const __m256i s = _mm256_sad_epu8(u, _mm256_setzero_si256());
  const __m128i h = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
  return static_cast<int32_t>(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1) - 32 * 128);
}

// F::Dot<NT>: acc[t] += sum over the block's 32 columns of u * y_t for the 16 rows
// (u: the stored unsigned codes), the codes loaded and cut out once for NT tokens.
struct Q8 {
  static constexpr int kBlockBytes = kQ8x16BlockBytes;
  static constexpr int kOffset = 128;  // stored code = code + 128
  template <int NT>
  static inline void Dot(const uint8_t* bp, const int8_t* const* yq, __m512i* acc) {
    for (int k = 0; k < 8; ++k) {
      const __m512i u = _mm512_loadu_si512(bp + 32 + 64 * k);
      for (int t = 0; t < NT; ++t) acc[t] = _mm512_dpbusd_epi32(acc[t], u, Bcast32(yq[t] + 4 * k));
    }
  }
};
struct Q4 {
  static constexpr int kBlockBytes = kQ4x16BlockBytes;
  static constexpr int kOffset = 8;  // value = code - 8
  template <int NT>
  static inline void Dot(const uint8_t* bp, const int8_t* const* yq, __m512i* acc) {
    const __m512i m4 = _mm512_set1_epi8(15);
    for (int k = 0; k < 4; ++k) {
      const __m512i q = _mm512_loadu_si512(bp + 32 + 64 * k);
      const __m512i lo = _mm512_and_si512(q, m4), hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      for (int t = 0; t < NT; ++t) {
        acc[t] = _mm512_dpbusd_epi32(acc[t], lo, Bcast32(yq[t] + 4 * k));
        acc[t] = _mm512_dpbusd_epi32(acc[t], hi, Bcast32(yq[t] + 16 + 4 * k));
      }
    }
  }
};

// NT tokens (1..4) x one tile, every block. off[t][b]: kOffset * sum(y) of token t.
template <class F, int NT>
void Tile(const uint8_t* tile, int64_t nb, const BlockQ8_0A* const* xt, const int32_t* const* off, float* y,
          int64_t ldy) {
  __m512 sumf[NT];
  for (int t = 0; t < NT; ++t) sumf[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* bp = tile + b * F::kBlockBytes;
    for (int l = 0; l < F::kBlockBytes; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(bp + kPrefetchAhead + l), kX16PrefetchHint);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp)));
    const int8_t* yq[NT];
    __m512i acc[NT];
    for (int t = 0; t < NT; ++t) {
      yq[t] = xt[t][b].qs;
      acc[t] = _mm512_setzero_si512();
    }
    F::template Dot<NT>(bp, yq, acc);
    for (int t = 0; t < NT; ++t) {
      const __m512i sumi = _mm512_sub_epi32(acc[t], _mm512_set1_epi32(off[t][b]));
      const __m512 prod = _mm512_mul_ps(d, _mm512_set1_ps(xt[t][b].d));
      sumf[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sumi), prod, sumf[t]);
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(y + t * ldy, sumf[t]);
}

template <class F>
void MatMulX16(void (*scalar)(const void*, size_t, int64_t, int64_t, int64_t, const void*, int64_t, float*, int64_t),
               const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
               int64_t n_tokens, float* y, int64_t ldy) {
  constexpr int kRows = 16;
  const int64_t nb = cols / kQK8_0;
  const int64_t a = (r0 + kRows - 1) / kRows * kRows, e = r1 / kRows * kRows;
  if (a >= e || nb * 4 > kSumSlots) {
    scalar(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  if (r0 < a) scalar(w, row_bytes, r0, a, cols, xpacked, n_tokens, y, ldy);
  if (e < r1) scalar(w, row_bytes, e, r1, cols, xpacked, n_tokens, y, ldy);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* x = static_cast<const BlockQ8_0A*>(xpacked);
  alignas(64) int32_t sums[kSumSlots];
  const int64_t chunk = std::max<int64_t>(4, kSumSlots / nb / 4 * 4);  // tokens per pass over the weights
  for (int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const int64_t nt_chunk = std::min(chunk, n_tokens - t0);
    for (int64_t t = 0; t < nt_chunk; ++t)
      for (int64_t b = 0; b < nb; ++b) sums[t * nb + b] = F::kOffset * SumCodes(x[(t0 + t) * nb + b]);
    for (int64_t r = a; r < e; r += kRows) {
      const uint8_t* tile = wb + r * row_bytes;
      for (int64_t t = 0; t < nt_chunk; t += 4) {
        const BlockQ8_0A* xt[4];
        const int32_t* st[4];
        const int nt = static_cast<int>(std::min<int64_t>(4, nt_chunk - t));
        for (int i = 0; i < nt; ++i) {
          xt[i] = x + (t0 + t + i) * nb;
          st[i] = sums + (t + i) * nb;
        }
        float* yt = y + (t0 + t) * ldy + r;
        switch (nt) {
          case 1: Tile<F, 1>(tile, nb, xt, st, yt, ldy); break;
          case 2: Tile<F, 2>(tile, nb, xt, st, yt, ldy); break;
          case 3: Tile<F, 3>(tile, nb, xt, st, yt, ldy); break;
          default: Tile<F, 4>(tile, nb, xt, st, yt, ldy); break;
        }
      }
    }
  }
}

// ---------------------------------------------------------------- TF_Q8x16
// Per tile and superblock (4256 bytes): per group, 8 vpdpbusd of (code + 128) give
// sum((q + 128) * y) for 16 rows; minus 128 * (bsum[2g] + bsum[2g+1]) that is the
// oracle's isum, times sc (vpmulld) into sumi; then the oracle's SuperTerm with
// dmin = 0 and summ = 0, i.e. dy * (d * sumi - 0 * 0): bit-identical.
template <int NT>
void TfQ8Tile(const uint8_t* tile, int64_t nsb, const BlockQ8_KA* const* xt, float* y, int64_t ldy) {
  alignas(64) static constexpr uint8_t kPick[4][64] = {
#define TF_PICK(j)                                                                                                  \
  {j, 0x80, 0x80, 0x80, 4 + j, 0x80, 0x80, 0x80, 8 + j, 0x80, 0x80, 0x80, 12 + j, 0x80, 0x80, 0x80,              \
   j, 0x80, 0x80, 0x80, 4 + j, 0x80, 0x80, 0x80, 8 + j, 0x80, 0x80, 0x80, 12 + j, 0x80, 0x80, 0x80,              \
   j, 0x80, 0x80, 0x80, 4 + j, 0x80, 0x80, 0x80, 8 + j, 0x80, 0x80, 0x80, 12 + j, 0x80, 0x80, 0x80,              \
   j, 0x80, 0x80, 0x80, 4 + j, 0x80, 0x80, 0x80, 8 + j, 0x80, 0x80, 0x80, 12 + j, 0x80, 0x80, 0x80}
      TF_PICK(0), TF_PICK(1), TF_PICK(2), TF_PICK(3)
#undef TF_PICK
  };
  __m512 sumf[NT];
  for (int t = 0; t < NT; ++t) sumf[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* sb = tile + b * kQ8sSuperBytes;
    for (int l = 0; l < kQ8sSuperBytes; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(sb + kPrefetchAhead + l), kX16PrefetchHint);
    const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
    const __m512i sc4[2] = {_mm512_loadu_si512(sb + 32), _mm512_loadu_si512(sb + 96)};
    alignas(32) int32_t corr[NT][8];  // 128 * group sums of each token
    for (int t = 0; t < NT; ++t) {
      const __m256i gs = _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xt[t][b].bsums)),
                                           _mm256_set1_epi16(1));
      _mm256_store_si256(reinterpret_cast<__m256i*>(corr[t]), _mm256_slli_epi32(gs, 7));
    }
    __m512i sumi[NT];
    for (int t = 0; t < NT; ++t) sumi[t] = _mm512_setzero_si512();
    for (int g = 0; g < 8; ++g) {
      __m512i acc[NT];
      for (int t = 0; t < NT; ++t) acc[t] = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        const __m512i u = _mm512_loadu_si512(sb + kQ8sCodesOffset + 512 * g + 64 * k);
        for (int t = 0; t < NT; ++t) acc[t] = _mm512_dpbusd_epi32(acc[t], u, Bcast32(xt[t][b].qs + 32 * g + 4 * k));
      }
      const __m512i scg = _mm512_shuffle_epi8(sc4[g / 4], _mm512_load_si512(kPick[g % 4]));
      for (int t = 0; t < NT; ++t) {
        const __m512i isum = _mm512_sub_epi32(acc[t], _mm512_set1_epi32(corr[t][g]));
        sumi[t] = _mm512_add_epi32(sumi[t], _mm512_mullo_epi32(isum, scg));
      }
    }
    for (int t = 0; t < NT; ++t) {
      // SuperTerm(dy, d, 0, sumi, 0) = dy * (d*sumi - 0*0).
      const __m512 a = _mm512_mul_ps(d, _mm512_cvtepi32_ps(sumi[t]));
      const __m512 bm = _mm512_mul_ps(_mm512_setzero_ps(), _mm512_setzero_ps());
      sumf[t] = _mm512_add_ps(sumf[t], _mm512_mul_ps(_mm512_set1_ps(xt[t][b].d), _mm512_sub_ps(a, bm)));
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(y + t * ldy, sumf[t]);
}

}  // namespace

void MatMulQ8_0x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  MatMulX16<Q8>(MatMulQ8_0x16Scalar, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

void MatMulQ4_0x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  MatMulX16<Q4>(MatMulQ4_0x16Scalar, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

void MatMulTfQ8x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  const int64_t nsb = cols / kQKSuper;
  DriveTfX16(MatMulTfQ8x16Scalar, [&](auto nt, const uint8_t* tile, const BlockQ8_KA* const* xt, float* yt) {
    TfQ8Tile<decltype(nt)::value>(tile, nsb, xt, yt, ldy);
  }, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
