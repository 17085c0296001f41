// AVX2 mat-mul kernels for the tabfit formats TF_Q8/Q4/Q3/Q2 against BlockQ8_KA
// activations. Compiled with -mavx2 -mfma -mf16c -ffp-contract=off.
//
// Per superblock, integer sums are exact (maddubs of codes x int8 activations, then
// madd by the group's sub-scale accumulates sc[g]*dot in int32), and the float
// combination SuperTerm() is the same expression as the scalar oracle, accumulated in
// the same order, so results equal the scalar kernel bit for bit.
#include <immintrin.h>

#include <cstring>
#include <type_traits>
#include <utility>

#include "quant/avx2_util.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/q8_0_rows_x86.h"  // NextRowsPrefetch
#include "quant/tf_decode.h"
#include "quant/tf_rows8_x86.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {
using namespace avx2;

inline __m256i Low2(const uint8_t* q64, int c) {
  const __m256i v = LoadU(q64 + 32 * (c / 4));
  return _mm256_and_si256(_mm256_srli_epi16(v, 2 * (c % 4)), _mm256_set1_epi8(3));
}

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

// Per-row, per-superblock state every decoder fills:
//   sc_a/sc_b: int16 sub-scales the chunk scale vectors are shuffled from,
//   corr: int16x16 multiplied (madd) with the activation's 16 bsums -> summ,
//   d, dmin: the SuperTerm factors.
struct RowState {
  __m256i sc_a, sc_b, corr, qh;
  float d, dmin;
};

// int16 lane pair (2k, 2k+1) of a 128-bit lane -> broadcast to the 8 words of that lane.
inline __m256i ShuffleWord(__m256i v, int lo_word, int hi_word) {
  const __m128i ml = _mm_set1_epi16(static_cast<short>((2 * lo_word) | ((2 * lo_word + 1) << 8)));
  const __m128i mh = _mm_set1_epi16(static_cast<short>((2 * hi_word) | ((2 * hi_word + 1) << 8)));
  return _mm256_shuffle_epi8(v, _mm256_set_m128i(mh, ml));
}

// Affine 6-bit-scale formats (TF_Q4, TF_Q3) and TF_Q8: chunk c == group c (32 values).
inline void AffineState(const uint16_t d, const uint16_t dmin, const uint8_t* scales, RowState* st) {
  __m128i sc16, m16;
  DecodeScales6(scales, &sc16, &m16);
  st->sc_a = _mm256_broadcastsi128_si256(sc16);
  st->corr = _mm256_set_m128i(_mm_unpackhi_epi16(m16, m16), _mm_unpacklo_epi16(m16, m16));
  st->d = _cvtsh_ss(d);
  st->dmin = _cvtsh_ss(dmin);
}

struct DecQ4 {
  using Block = BlockTfQ4;
  static constexpr bool kSigned = false;
  static void State(const Block& b, RowState* st) { AffineState(b.d, b.dmin, b.scales, st); }
  static __m256i Scale(const RowState& st, int c) { return ShuffleWord(st.sc_a, c, c); }
  static __m256i Codes(const Block& b, int c, const RowState&) {
    const __m256i v = LoadU(b.qs + 32 * (c / 2));
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    return (c & 1) ? _mm256_and_si256(_mm256_srli_epi16(v, 4), m4) : _mm256_and_si256(v, m4);
  }
};

struct DecQ3 {
  using Block = BlockTfQ3;
  static constexpr bool kSigned = false;
  static void State(const Block& b, RowState* st) {
    AffineState(b.d, b.dmin, b.scales, st);
    st->qh = LoadU(b.qh);
  }
  static __m256i Scale(const RowState& st, int c) { return ShuffleWord(st.sc_a, c, c); }
  // Bit c of each qh byte moved to bit 2 (16-bit shifts are safe: for |shift| <= 5 the
  // masked bit 2 of each byte comes from the same byte).
  static __m256i Codes(const Block& b, int c, const RowState& st) {
    const __m256i moved = c >= 2 ? _mm256_srli_epi16(st.qh, c - 2) : _mm256_slli_epi16(st.qh, 2 - c);
    return _mm256_or_si256(Low2(b.ql, c), _mm256_and_si256(moved, _mm256_set1_epi8(4)));
  }
};

struct DecQ8 {
  using Block = BlockTfQ8;
  static constexpr bool kSigned = true;
  static void State(const Block& b, RowState* st) {
    st->sc_a = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.scales))));
    st->corr = _mm256_setzero_si256();
    st->d = _cvtsh_ss(b.d);
    st->dmin = 0.0f;
  }
  static __m256i Scale(const RowState& st, int c) { return ShuffleWord(st.sc_a, c, c); }
  static __m256i Codes(const Block& b, int c, const RowState&) { return LoadU(b.qs + 32 * c); }
};

// TF_Q2: chunk c = groups 2c (low 16 bytes) and 2c+1 (high 16 bytes).
struct DecQ2 {
  using Block = BlockTfQ2;
  static constexpr bool kSigned = false;
  static void State(const Block& b, RowState* st) {
    const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(b.scz));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m128i sc8 = _mm_unpacklo_epi8(_mm_and_si128(bytes, m4), _mm_and_si128(_mm_srli_epi16(bytes, 4), m4));
    const __m128i sa = _mm_cvtepu8_epi16(sc8), sb = _mm_cvtepu8_epi16(_mm_srli_si128(sc8, 8));
    st->sc_a = _mm256_broadcastsi128_si256(sa);  // groups 0..7
    st->sc_b = _mm256_broadcastsi128_si256(sb);  // groups 8..15
    // z[g] = 2 + (bits 2g..2g+1 of the uint32 at 8) + 4 * (bit g of the uint16 at 12),
    // decoded straight into 16 int16 lanes: each lane's field is moved to the top
    // of its 16 bits by a multiply with a power of two, then shifted down.
    uint32_t lo;
    uint16_t hi;
    std::memcpy(&lo, b.scz + 8, 4);
    std::memcpy(&hi, b.scz + 12, 2);
    // lanes 0..7: low 16 bits of lo (groups 0..7); lanes 8..15: high 16 bits.
    const __m256i lo16 = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(lo)),
                                             _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2,
                                                              3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3));
    const __m256i l2 = _mm256_srli_epi16(
        _mm256_mullo_epi16(lo16, _mm256_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1, 1 << 14,
                                                    1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1)),
        14);
    const __m256i h1 = _mm256_srli_epi16(
        _mm256_mullo_epi16(_mm256_set1_epi16(static_cast<short>(hi)),
                           _mm256_setr_epi16(short(0x8000), 1 << 14, 1 << 13, 1 << 12, 1 << 11, 1 << 10, 1 << 9, 1 << 8,
                                             1 << 7, 1 << 6, 1 << 5, 1 << 4, 1 << 3, 1 << 2, 1 << 1, 1)),
        15);
    const __m256i z16 = _mm256_add_epi16(_mm256_or_si256(l2, _mm256_slli_epi16(h1, 2)), _mm256_set1_epi16(2));
    st->corr = _mm256_mullo_epi16(_mm256_cvtepu8_epi16(sc8), z16);
    st->d = _cvtsh_ss(b.d);
    st->dmin = st->d * 0.25f;
  }
  static __m256i Scale(const RowState& st, int c) {
    return ShuffleWord(c < 4 ? st.sc_a : st.sc_b, (2 * c) % 8, (2 * c + 1) % 8);
  }
  static __m256i Codes(const Block& b, int c, const RowState&) { return Low2(b.qs, c); }
};

template <class Dec>
struct TfKernel {
  using Block = typename Dec::Block;
  int64_t nsb;

  template <int C, int R, int T>
  static void Chunk(const Block* const* blk, const RowState* st, const BlockQ8_KA* const* xb, __m256i (*acc)[T]) {
    __m256i q[R], scv[R];
    for (int r = 0; r < R; ++r) {
      q[r] = Dec::Codes(*blk[r], C, st[r]);
      scv[r] = Dec::Scale(st[r], C);
    }
    for (int t = 0; t < T; ++t) {
      const __m256i yv = LoadU(xb[t]->qs + 32 * C);
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

  template <int R, int T, int... C>
  static void Chunks(std::integer_sequence<int, C...>, const Block* const* blk, const RowState* st,
                     const BlockQ8_KA* const* xb, __m256i (*acc)[T]) {
    (Chunk<C, R, T>(blk, st, xb, acc), ...);
  }

  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const Block* blk[R];
      RowState st[R];
      for (int r = 0; r < R; ++r) {
        blk[r] = reinterpret_cast<const Block*>(w[r]) + b;
        Dec::State(*blk[r], &st[r]);
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
          // [sumi partials (4) | summ partials (4)] -> two hadds -> sumi, summ.
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

// Decode, 8 rows per step: per superblock, each row's integer sums (sumi in
// 8 int32 lanes, summ = corr . bsums in 8 more) are folded pairwise by hadds and
// reduced across the 8 rows into two vectors, and SuperTerm is evaluated for all
// 8 rows in one set of vector float operations -- the same per-lane expression
// and accumulation order as the scalar oracle, so still bit-identical. Rows
// come out in lane order 0,1,4,5,2,3,6,7 (kLaneRow) and are permuted back once.
template <class Dec>
void TfRows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  using Block = typename Dec::Block;
  constexpr int kLaneRow[8] = {0, 1, 4, 5, 2, 3, 6, 7};
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(Block));  // 8 rows of one superblock each per step: memory
                                    // latency is otherwise exposed (2-4x slower from DRAM)
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    const __m256i bs = LoadU(xb->bsums);
    __m256i v[8];
    float d[8], dmin[8];
    for (int r = 0; r < 8; ++r) {
      const Block* blk = reinterpret_cast<const Block*>(w + r * rb) + b;
      RowState st;
      Dec::State(*blk, &st);
      __m256i acc[1][1] = {{_mm256_setzero_si256()}};
      TfKernel<Dec>::template Chunks<1, 1>(std::make_integer_sequence<int, 8>{}, &blk, &st, &xb, acc);
      // per 128-bit half: [sumi pair sums (2) | summ pair sums (2)]
      v[r] = _mm256_hadd_epi32(acc[0][0], _mm256_madd_epi16(st.corr, bs));
      d[r] = st.d;
      dmin[r] = st.dmin;
    }
    const __m256 dv = _mm256_setr_ps(d[kLaneRow[0]], d[kLaneRow[1]], d[kLaneRow[2]], d[kLaneRow[3]], d[kLaneRow[4]],
                                     d[kLaneRow[5]], d[kLaneRow[6]], d[kLaneRow[7]]);
    const __m256 mv = _mm256_setr_ps(dmin[kLaneRow[0]], dmin[kLaneRow[1]], dmin[kLaneRow[2]], dmin[kLaneRow[3]],
                                     dmin[kLaneRow[4]], dmin[kLaneRow[5]], dmin[kLaneRow[6]], dmin[kLaneRow[7]]);
    sumf = _mm256_add_ps(sumf, SuperTerms8(v, dv, mv, xb->d));
  }
  StoreRows8(y, sumf);  // kLaneRow is its own inverse: lane kLaneRow[j] holds row j
}

template <class Dec>
void MatMulTf(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  const size_t xrb = nsb * sizeof(BlockQ8_KA);
  const TfKernel<Dec> k{nsb};
  // Measured (1 token, 2048 cols): Rows8 +10-25% for TF_Q8/Q3/Q2; TF_Q4 about 2%
  // slower than its 4-row tiles, so it keeps them.
  if (n_tokens >= 4 || std::is_same_v<Dec, DecQ4>) {
    // Prefill: 3x4 register tiles (TF_Q4 decode: 4x1).
    DriveSplit<4, 3, 4>(k, w, row_bytes, r0, r1, xpacked, xrb, n_tokens, y, ldy);
    return;
  }
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(xpacked);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* xt = reinterpret_cast<const BlockQ8_KA*>(xp + t * xrb);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) TfRows8<Dec>(nsb, wb + r * row_bytes, row_bytes, xt, y + t * ldy + r);
    if (r < r1) DriveTiles<4, 1>(k, w, row_bytes, r, r1, xp + t * xrb, xrb, 1, y + t * ldy, ldy);
  }
}

}  // namespace

void MatMulTfQ8Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ8>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }
void MatMulTfQ4Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ4>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }
void MatMulTfQ3Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ3>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }
void MatMulTfQ2Avx2(TF_MATMUL_ARGS) { MatMulTf<DecQ2>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy); }

}  // namespace tabfit::qk
