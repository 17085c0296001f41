// AVX2 mat-mul kernels for the tabfit formats TF_Q8/Q4/Q3/Q2 against BlockQ8_KA
// activations. Compiled with -mavx2 -mfma -mf16c -ffp-contract=off.
//
// Per superblock, integer sums are exact (maddubs of codes x int8 activations, then
// madd by the group's sub-scale accumulates sc[g]*dot in int32), and the float
// combination SuperTerm() is the same expression as the scalar oracle, accumulated in
// the same order, so results equal the scalar kernel bit for bit.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "quant/avx2_util.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {
using namespace avx2;

// Group decoders: Codes(block, g, ctx) -> 32 codes (unsigned, except TF_Q8).
struct DecQ4 {
  using Block = BlockTfQ4;
  static constexpr bool kSigned = false;
  static constexpr bool kAffine = true;
  struct Ctx {};
  static Ctx Prepare(const Block&) { return {}; }
  static __m256i Codes(const Block& b, int g, const Ctx&) {
    const __m256i v = LoadU(b.qs + 32 * (g / 2));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    return (g & 1) ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
  }
};

inline __m256i Low2(const uint8_t* q64, int g) {
  const __m256i v = LoadU(q64 + 32 * (g / 4));
  return _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * (g % 4))), _mm256_set1_epi8(3));
}

struct DecQ2 {
  using Block = BlockTfQ2;
  static constexpr bool kSigned = false;
  static constexpr bool kAffine = true;
  struct Ctx {};
  static Ctx Prepare(const Block&) { return {}; }
  static __m256i Codes(const Block& b, int g, const Ctx&) { return Low2(b.qs, g); }
};

struct DecQ3 {
  using Block = BlockTfQ3;
  static constexpr bool kSigned = false;
  static constexpr bool kAffine = true;
  struct Ctx {
    __m256i qh;
  };
  static Ctx Prepare(const Block& b) { return {LoadU(b.qh)}; }
  // Bit g of each qh byte moved to bit 2 (16-bit shifts are safe: for |shift| <= 5 the
  // masked bit 2 of each byte comes from the same byte).
  static __m256i Codes(const Block& b, int g, const Ctx& c) {
    const __m256i moved = g >= 2 ? _mm256_srli_epi16(c.qh, g - 2) : _mm256_slli_epi16(c.qh, 2 - g);
    return _mm256_or_si256(Low2(b.ql, g), _mm256_and_si256(moved, _mm256_set1_epi8(4)));
  }
};

struct DecQ8 {
  using Block = BlockTfQ8;
  static constexpr bool kSigned = true;
  static constexpr bool kAffine = false;
  struct Ctx {};
  static Ctx Prepare(const Block&) { return {}; }
  static __m256i Codes(const Block& b, int g, const Ctx&) { return LoadU(b.qs + 32 * g); }
};

// 6-bit sub-scales and mins of a superblock (formats.h layout) as two int16x8.
inline void DecodeScales6(const uint8_t* s, __m128i* sc16, __m128i* m16) {
  const __m128i lo16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(s)));
  uint32_t hi;
  std::memcpy(&hi, s + 8, 4);
  const __m256i h = _mm256_set1_epi32(static_cast<int>(hi));
  const __m256i three = _mm256_set1_epi32(3);
  const __m256i hs = _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)), three);
  const __m256i hm = _mm256_and_si256(_mm256_srlv_epi32(h, _mm256_setr_epi32(16, 18, 20, 22, 24, 26, 28, 30)), three);
  // packus: [s0-3 m0-3 | s4-7 m4-7] -> permute -> [s0-7 | m0-7]
  const __m256i p = _mm256_permute4x64_epi64(_mm256_packus_epi32(hs, hm), 0xD8);
  *sc16 = _mm_or_si128(_mm_and_si128(lo16, _mm_set1_epi16(15)), _mm_slli_epi16(_mm256_castsi256_si128(p), 4));
  *m16 = _mm_or_si128(_mm_srli_epi16(lo16, 4), _mm_slli_epi16(_mm256_extracti128_si256(p, 1), 4));
}

template <class Dec>
struct TfKernel {
  using Block = typename Dec::Block;
  int64_t nsb;

  template <int G, int R, int T>
  static void Group(const Block* const* blk, const typename Dec::Ctx* ctx, const __m256i* sc2,
                    const BlockQ8_KA* const* xb, __m256i (*acc)[T]) {
    __m256i q[R], scv[R];
    for (int r = 0; r < R; ++r) {
      q[r] = Dec::Codes(*blk[r], G, ctx[r]);
      scv[r] = _mm256_shuffle_epi8(sc2[r], _mm256_set1_epi16(static_cast<short>((2 * G) | ((2 * G + 1) << 8))));
    }
    for (int t = 0; t < T; ++t) {
      const __m256i yv = LoadU(xb[t]->qs + 32 * G);
      for (int r = 0; r < R; ++r) {
        __m256i p;
        if constexpr (Dec::kSigned) {
          p = _mm256_maddubs_epi16(_mm256_sign_epi8(q[r], q[r]), _mm256_sign_epi8(yv, q[r]));
        } else {
          p = _mm256_maddubs_epi16(q[r], yv);
        }
        acc[r][t] = _mm256_add_epi32(acc[r][t], _mm256_madd_epi16(p, scv[r]));
      }
    }
  }

  template <int R, int T, int... G>
  static void Groups(std::integer_sequence<int, G...>, const Block* const* blk, const typename Dec::Ctx* ctx,
                     const __m256i* sc2, const BlockQ8_KA* const* xb, __m256i (*acc)[T]) {
    (Group<G, R, T>(blk, ctx, sc2, xb, acc), ...);
  }

  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const Block* blk[R];
      typename Dec::Ctx ctx[R];
      __m256i sc2[R];  // int16 sub-scales in both 128-bit lanes
      __m128i m16[R];
      float d[R], dmin[R];
      for (int r = 0; r < R; ++r) {
        blk[r] = reinterpret_cast<const Block*>(w[r]) + b;
        ctx[r] = Dec::Prepare(*blk[r]);
        d[r] = _cvtsh_ss(blk[r]->d);
        __m128i sc16;
        if constexpr (Dec::kAffine) {
          DecodeScales6(blk[r]->scales, &sc16, &m16[r]);
          dmin[r] = _cvtsh_ss(blk[r]->dmin);
        } else {
          sc16 = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk[r]->scales)));
          m16[r] = _mm_setzero_si128();
          dmin[r] = 0.0f;
        }
        sc2[r] = _mm256_broadcastsi128_si256(sc16);
      }
      const BlockQ8_KA* xb[T];
      for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
      __m256i acc[R][T];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = _mm256_setzero_si256();
      Groups<R, T>(std::make_integer_sequence<int, 8>{}, blk, ctx, sc2, xb, acc);
      for (int r = 0; r < R; ++r) {
        for (int t = 0; t < T; ++t) {
          // [sumi partials (4) | summ partials (4)] -> two hadds -> sumi, summ.
          const __m128i a4 = _mm_add_epi32(_mm256_castsi256_si128(acc[r][t]), _mm256_extracti128_si256(acc[r][t], 1));
          const __m128i m4 = _mm_madd_epi16(m16[r], _mm_loadu_si128(reinterpret_cast<const __m128i*>(xb[t]->bsums)));
          const __m128i h = _mm_hadd_epi32(_mm_hadd_epi32(a4, m4), _mm_setzero_si128());
          const int32_t sumi = _mm_cvtsi128_si32(h);
          const int32_t summ = _mm_extract_epi32(h, 1);
          sumf[r][t] += SuperTerm(xb[t]->d, d[r], dmin[r], sumi, summ);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

template <class Dec>
void MatMulTf(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  // Measured: 4-row decode tiles (per-superblock scale decode dominates), 3x4 prefill.
  DriveAvx2<4, 3, 4>(TfKernel<Dec>{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens, y, ldy);
}

}  // namespace

void MatMulTfQ8Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ8>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }
void MatMulTfQ4Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ4>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }
void MatMulTfQ3Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ3>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }
void MatMulTfQ2Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ2>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }

}  // namespace tabfit::qk
