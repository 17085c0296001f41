// AVX2 mat-mul kernel for TF_Q2S / TF_Q2SR (tf_q2s.h) against Q8_KA activations.
// Compiled with -mavx2 -mfma -mf16c -ffp-contract=off. Same scheme as TF_Q2's kernel
// (kernels_tf_avx2.cpp): exact int32 sums per superblock (maddubs of 2-bit codes x
// int8 activations, madd by the group's sub-scale), then the scalar oracle's
// SuperTerm() in the same order, so results equal MatMulTfQ2SScalar bit for bit.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "quant/avx2_util.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tf_q2s.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {
using namespace avx2;

struct RowState {
  __m256i sc_a, sc_b, corr;
  float d, dmin;
};

// int16 lane pair (2k, 2k+1) of a 128-bit lane -> broadcast to the 8 words of that lane.
inline __m256i ShuffleWord(__m256i v, int lo_word, int hi_word) {
  const __m128i ml = _mm_set1_epi16(static_cast<short>((2 * lo_word) | ((2 * lo_word + 1) << 8)));
  const __m128i mh = _mm_set1_epi16(static_cast<short>((2 * hi_word) | ((2 * hi_word + 1) << 8)));
  return _mm256_shuffle_epi8(v, _mm256_set_m128i(mh, ml));
}

inline void State(const BlockTfQ2S& b, RowState* st) {
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.sc));
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m128i sc8 = _mm_unpacklo_epi8(_mm_and_si128(bytes, m4), _mm_and_si128(_mm_srli_epi16(bytes, 4), m4));
  const __m128i sa = _mm_cvtepu8_epi16(sc8), sb = _mm_cvtepu8_epi16(_mm_srli_si128(sc8, 8));
  st->sc_a = _mm256_broadcastsi128_si256(sa);  // groups 0..7
  st->sc_b = _mm256_broadcastsi128_si256(sb);  // groups 8..15
  st->corr = _mm256_mullo_epi16(_mm256_set_m128i(sb, sa), _mm256_set1_epi16(kQ2SOffset4));
  st->d = _cvtsh_ss(b.d);
  st->dmin = st->d * 0.25f;
}

// Chunk c (32 values) = groups 2c (low 16 bytes) and 2c+1 (high 16 bytes).
inline __m256i Scale(const RowState& st, int c) { return ShuffleWord(c < 4 ? st.sc_a : st.sc_b, (2 * c) % 8, (2 * c + 1) % 8); }
inline __m256i Codes(const BlockTfQ2S& b, int c) {
  const __m256i v = LoadU(b.qs + 32 * (c / 4));
  return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), _mm256_set1_epi8(3));
}

struct Q2SKernel {
  int64_t nsb;

  template <int C, int R, int T>
  static void Chunk(const BlockTfQ2S* const* blk, const RowState* st, const BlockQ8_KA* const* xb, __m256i (*acc)[T]) {
    __m256i q[R], scv[R];
    for (int r = 0; r < R; ++r) {
      q[r] = Codes(*blk[r], C);
      scv[r] = Scale(st[r], C);
    }
    for (int t = 0; t < T; ++t) {
      const __m256i yv = LoadU(xb[t]->qs + 32 * C);
      for (int r = 0; r < R; ++r) {
        const __m256i p = _mm256_maddubs_epi16(q[r], yv);
        acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(p, scv[r]));
      }
    }
  }

  template <int R, int T, int... C>
  static void Chunks(std::integer_sequence<int, C...>, const BlockTfQ2S* const* blk, const RowState* st,
                     const BlockQ8_KA* const* xb, __m256i (*acc)[T]) {
    (Chunk<C, R, T>(blk, st, xb, acc), ...);
  }

  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const BlockTfQ2S* blk[R];
      RowState st[R];
      for (int r = 0; r < R; ++r) {
        blk[r] = reinterpret_cast<const BlockTfQ2S*>(w[r]) + b;
        State(*blk[r], &st[r]);
      }
      const BlockQ8_KA* xb[T];
      for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
      __m256i acc[R][T];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
      Chunks<R, T>(std::make_integer_sequence<int, 8>{}, blk, st, xb, acc);
      for (int t = 0; t < T; ++t) {
        const __m256i bs = LoadU(xb[t]->bsums);
        for (int r = 0; r < R; ++r) {
          const __m256i m8 = _mm256_madd_epi16(st[r].corr, bs);
          const __m128i a4 = _mm_add_epi32(_mm256_castsi256_si128(acc[r][t]), _mm256_extracti128_si256(acc[r][t], 1));
          const __m128i m4 = _mm_add_epi32(_mm256_castsi256_si128(m8), _mm256_extracti128_si256(m8, 1));
          const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(a4, m4), _mm_setzero_si128());
          sumf[r][t] += SuperTerm(xb[t]->d, st[r].d, st[r].dmin, _mm_cvtsi128_si32(h), _mm_extract_epi32(h, 1));
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

}  // namespace

void MatMulTfQ2SAvx2(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveSplit<4, 3, 4>(Q2SKernel{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens, y, ldy);
}

}  // namespace tabfit::qk
