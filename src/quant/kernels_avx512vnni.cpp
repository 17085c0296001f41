// AVX-512 VNNI decode kernels for Q8_0 / Q4_0 / TF_Q8 / TF_Q4 / TF_Q2 (TF_Q2R).
// Compiled with -mavx2 -mfma -mf16c -mavx512f -mavx512vl -mavx512bw -mavx512vnni;
// only called after CPUID says the CPU has all of them (Isa::kAvx512Vnni).
//
// The one-token mat-vec: Q8_0 uses q8_0_rows_x86.h with vpdpbusd on 256-bit
// vectors (a 512-bit two-block version measured ~12% slower end to end); Q4_0,
// TF_Q4 and TF_Q2 use 512-bit vectors (measured 1-thread TinyLlama-shape decode
// +12%, +49%, +26% over the 256-bit / AVX2 kernels on an AVX-512 EPYC).
// Block headers (scales, mins, offsets) are fetched with whole-vector loads and
// permutes and decoded for 4 rows per instruction: one TinyLlama layer, 1 thread,
// out of cache, against the previous version of this file built with the same
// flags (2026-11-26, AMD EPYC Zen 5): Q4_0 31.4 -> 40.9 GB/s (the plain read
// speed), TF_Q4 32.9 -> 37.4, TF_Q2 22.6 -> 25.6.
// TF_Q2 again (2026-11-27): header decode and the sum reductions moved from per
// row to 4 / 8 rows per instruction (see TF_Q2 below): bench_kernels 1-token
// 2048x2048 and 5632x2048, in cache, 24.8 -> 30.5 GiB/s; TinyLlama TF_Q2 1-thread
// decode 74.2 / 74.9 -> 85.5 / 91.4 tok/s (interleaved A/B, same build flags).
// With AVX512_VBMI (run-time check) the z offsets come from vpmultishiftqb: TinyLlama
// TF_Q2 1-thread 85.1 / 87.2 / 87.9 -> 88.3 / 89.8 / 89.9 tok/s (interleaved A/B).
// Prefill (4 or more tokens) and the rows % 8 tail use the AVX2 kernels.
// Where the loader gives a matrix a run-time layout (kernels.h WeightLayout; by
// default for TF_Q2/TF_Q2R/TF_Q4/TF_Q8/Q8_0/Q4_0 on CPUs with these instructions),
// the layout's kernel (tf_q2x16_avx512.cpp, tf_q4x16_avx512.cpp, qx16_avx512.cpp)
// runs instead: these row-major kernels then serve --no-repack, matrices whose rows
// are not a multiple of 16, and callers with their own buffers (the KV caches).
#include <immintrin.h>

#include <cstring>

#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/q8_0_rows_x86.h"
#include "quant/tf_rows8_x86.h"

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

// ---------------------------------------------------------------- block headers
// The TF_Q4 and TF_Q2 decode kernels load the 16-byte block headers of 8 rows
// once per superblock (4 rows per zmm, one per 128-bit lane) and decode their
// packed sub-scales for 4 rows per instruction with these helpers.

// 16-byte headers at p + r*rb for r = R0..R0+3 -> one zmm, row R0+j in lane j.
template <int R0>
static inline __m512i Headers4(const uint8_t* p, size_t rb) {
  auto h = [&](int r) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + r * rb)); };
  return _mm512_inserti32x4(
      _mm512_inserti32x4(_mm512_inserti32x4(_mm512_castsi128_si512(h(R0)), h(R0 + 1), 1), h(R0 + 2), 2), h(R0 + 3),
      3);
}

// Per lane: the bytes picked by `pick`, low nibble where `hi_mask` is clear, high nibble where set.
static inline __m512i Nibbles(__m512i h, __m128i pick, __mmask64 hi_mask) {
  const __m512i m15 = _mm512_set1_epi8(15);
  const __m512i a = _mm512_shuffle_epi8(h, _mm512_broadcast_i32x4(pick));
  return _mm512_mask_mov_epi8(_mm512_and_si512(a, m15), hi_mask, _mm512_and_si512(_mm512_srli_epi16(a, 4), m15));
}

// Per lane: byte g (0..15) = bits 2g..2g+1 of the little-endian uint32 at lane
// bytes O..O+3. Word k of a copy of the uint16 holding field 2k (k%4 < 4: the low
// half, else the high) is shifted right so that its low byte gets field 2k and
// (a second shift) its high byte field 2k+1.
template <int O>
static inline __m512i TwoBitFields(__m512i h) {
  const __m512i hw = _mm512_shuffle_epi8(
      h, _mm512_broadcast_i32x4(_mm_setr_epi8(O, O + 1, O, O + 1, O, O + 1, O, O + 1, O + 2, O + 3, O + 2, O + 3,
                                              O + 2, O + 3, O + 2, O + 3)));
  const __m512i t_even = _mm512_srlv_epi16(hw, _mm512_broadcast_i32x4(_mm_setr_epi16(0, 4, 8, 12, 0, 4, 8, 12)));
  const __m512i t_odd = _mm512_slli_epi16(
      _mm512_srlv_epi16(hw, _mm512_broadcast_i32x4(_mm_setr_epi16(2, 6, 10, 14, 2, 6, 10, 14))), 8);
  // (even & 0x00FF) | (odd & 0xFF00), then & 0x0303.
  return _mm512_and_si512(_mm512_ternarylogic_epi32(t_even, t_odd, _mm512_set1_epi16(0x00FF), 0xE4),
                          _mm512_set1_epi16(0x0303));
}

template <int J>
static inline __m128i Lane(__m512i v) {
  if constexpr (J == 0) {
    return _mm512_castsi512_si128(v);
  } else {
    return _mm512_extracti32x4_epi32(v, J);
  }
}
template <int J>
static inline __m256i Half(__m512i v) {
  if constexpr (J == 0) {
    return _mm512_castsi512_si256(v);
  } else {
    return _mm512_extracti64x4_epi64(v, 1);
  }
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
// the two vectors side by side) take one vpdpbusd.
// The kernel is instruction-throughput bound (in cache it runs at ~3 vector
// instructions per cycle), so the per-row work is kept to the table and the 4
// chunk lookups; everything else is done for 4 or 8 rows at once:
//  - the 8 rows' 16-byte headers (d, scz[14]) are loaded once per superblock and
//    decoded 4 rows per vector (TfQ2Headers4): the sub-scales in table order go
//    through a stack buffer into each row's table (one vpmovzxbd from memory), and
//    summ (sum_g sc*z*bsum) comes out as 4 partial dwords per row and lane;
//  - sumi of the 8 rows (one zmm each) and summ are reduced by one unpack/shuffle
//    tree into [sumi rows 0..7 | summ rows 0..7] (TfQ2Reduce8), then the oracle's
//    SuperTerm for the 8 rows at once.
// sumi and summ are the scalar oracle's integers and the float part is its
// SuperTerm in its order (no contraction): bit-identical.

// Per lane (row): byte g = the offset z[g] in 2..9. The 3-bit offsets, split over two
// bit planes, cost 10-12 % of the kernel's time with AVX512BW alone (TwoBitFields +
// a mask test, 10 instructions per 4 rows); with AVX512_VBMI one vpmultishiftqb per
// plane extracts them (6 instructions).
template <bool kVbmi>
static inline __m512i TfQ2Offsets4(__m512i h);
template <>
inline __m512i TfQ2Offsets4<false>(__m512i h) {
  // z[g] - 2: bits 2g..2g+1 of the uint32 at bytes 10..13, plus 4 * bit g of the uint16 at 14..15.
  const __m512i lo2 = TwoBitFields<10>(h);
  const __m512i hb = _mm512_shuffle_epi8(
      h, _mm512_broadcast_i32x4(_mm_setr_epi8(14, 14, 14, 14, 14, 14, 14, 14, 15, 15, 15, 15, 15, 15, 15, 15)));
  const __mmask64 bit2 = _mm512_test_epi8_mask(
      hb, _mm512_broadcast_i32x4(_mm_setr_epi8(1, 2, 4, 8, 16, 32, 64, -128, 1, 2, 4, 8, 16, 32, 64, -128)));
  const __m512i z2 = _mm512_add_epi8(lo2, _mm512_set1_epi8(2));
  return _mm512_mask_add_epi8(z2, bit2, z2, _mm512_set1_epi8(4));
}
template <>
__attribute__((target("avx512vbmi"))) inline __m512i TfQ2Offsets4<true>(__m512i h) {
  // Both qwords of each lane = lane bytes 8..15: the uint32 of low bits at qword bits
  // 16..47 (field g at 16 + 2g), the uint16 of high bits at 48..63 (bit g at 48 + g).
  const __m512i hq = _mm512_unpackhi_epi64(h, h);
  const __m512i lo_ctl = _mm512_broadcast_i32x4(
      _mm_setr_epi8(16, 18, 20, 22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46));
  const __m512i hb_ctl = _mm512_broadcast_i32x4(
      _mm_setr_epi8(46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61));  // bit 48+g -> bit 2
  const __m512i lo = _mm512_multishift_epi64_epi8(lo_ctl, hq);
  const __m512i hb4 = _mm512_and_si512(_mm512_multishift_epi64_epi8(hb_ctl, hq), _mm512_set1_epi8(4));
  // (lo & 3) | hb4, + 2
  return _mm512_add_epi8(_mm512_ternarylogic_epi32(lo, hb4, _mm512_set1_epi8(3), 0xEC), _mm512_set1_epi8(2));
}

// 4 rows' headers (lane j = row j) -> *lut_sc: per lane the 16 sub-scales in table
// order (groups 0,2,4,6,1,3,5,7,8,10,12,14,9,11,13,15); *msum: per lane 4 int32
// whose sum is the row's summ = sum_g sc[g]*z[g]*bsum[g]. bse / bso: the activation
// sums of the even / odd groups as 8 int16 in every lane.
template <bool kVbmi>
static inline void TfQ2Headers4(__m512i h, __m512i bse, __m512i bso, __m512i* lut_sc, __m512i* msum) {
  *lut_sc = Nibbles(h, _mm_setr_epi8(2, 3, 4, 5, 2, 3, 4, 5, 6, 7, 8, 9, 6, 7, 8, 9), 0xF0F0F0F0F0F0F0F0ull);
  // Natural order (byte g = sc[g]) from the table order: one in-lane byte permute.
  const __m512i sc = _mm512_shuffle_epi8(
      *lut_sc, _mm512_broadcast_i32x4(_mm_setr_epi8(0, 4, 1, 5, 2, 6, 3, 7, 8, 12, 9, 13, 10, 14, 11, 15)));
  const __m512i z = TfQ2Offsets4<kVbmi>(h);
  // sc*z of the even groups (word k = group 2k) and of the odd ones (group 2k+1):
  // unsigned sc times z <= 9 with the other byte of each pair zeroed, <= 135.
  const __m512i pe = _mm512_maddubs_epi16(sc, _mm512_and_si512(z, _mm512_set1_epi16(0x00FF)));
  const __m512i po = _mm512_maddubs_epi16(sc, _mm512_and_si512(z, _mm512_set1_epi16(static_cast<short>(0xFF00))));
  *msum = _mm512_dpwssd_epi32(_mm512_madd_epi16(pe, bse), po, bso);
}

// sumi of one row and superblock: 16 int32 partial sums (yv: the activation
// chunks, zmm c = chunks c | c + 4; lut_sc: the row's 16 sub-scales in table order).
static inline __m512i TfQ2Row(const BlockTfQ2* blk, const uint8_t* lut_sc, const __m512i* yv) {
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m512i lut = _mm512_mullo_epi32(
      _mm512_cvtepu8_epi32(_mm_load_si128(reinterpret_cast<const __m128i*>(lut_sc))), _mm512_set1_epi32(0x03020100));
  const __m512i q = _mm512_loadu_si512(blk->qs);
  __m512i acc = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_shuffle_epi8(lut, _mm512_and_si512(q, m3)), yv[0]);
  for (int c = 1; c < 4; ++c) {
    // (q >> 2c & 3) | 4c
    const __m512i idx = _mm512_ternarylogic_epi32(_mm512_srli_epi16(q, 2 * c), m3,
                                                  _mm512_set1_epi8(static_cast<char>(4 * c)), 0xEA);
    acc = _mm512_dpbusd_epi32(acc, _mm512_shuffle_epi8(lut, idx), yv[c]);
  }
  return acc;
}

// a[r] (16 int32 each, rows 0..7) and m0 / m1 (rows 0..3 / 4..7, lane j = row j,
// 4 int32 each) -> [sum of a[r], r = 0..7 | sum of row r's m, r = 0..7].
static inline __m512i TfQ2Reduce8(const __m512i* a, __m512i m0, __m512i m1) {
  auto pair32 = [](__m512i x, __m512i y) {
    return _mm512_add_epi32(_mm512_unpacklo_epi32(x, y), _mm512_unpackhi_epi32(x, y));
  };
  auto pair64 = [](__m512i x, __m512i y) {
    return _mm512_add_epi32(_mm512_unpacklo_epi64(x, y), _mm512_unpackhi_epi64(x, y));
  };
  // Per 128-bit lane L: dword j = row j's (c0) / row j+4's (c4) sum over lane L.
  const __m512i c0 = pair64(pair32(a[0], a[1]), pair32(a[2], a[3]));
  const __m512i c4 = pair64(pair32(a[4], a[5]), pair32(a[6], a[7]));
  // Lanes [c0 L0+L2, c0 L1+L3, c4 L0+L2, c4 L1+L3], then lanes 0+1 and 2+3 summed.
  const __m512i z = _mm512_add_epi32(_mm512_shuffle_i64x2(c0, c4, 0x44), _mm512_shuffle_i64x2(c0, c4, 0xEE));
  const __m512i w = _mm512_add_epi32(z, _mm512_shuffle_i64x2(z, z, 0xB1));  // lanes: c0, c0, c4, c4
  // Lane j: [row j, row j+4, row j, row j+4] sums of m.
  const __m512i p = pair32(m0, m1);
  const __m512i q = _mm512_add_epi32(p, _mm512_shuffle_epi32(p, _MM_PERM_BADC));
  const __m512i idx = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 20, 24, 28, 17, 21, 25, 29);
  return _mm512_permutex2var_epi32(w, idx, q);
}

template <bool kVbmi>
static inline void TfQ2Rows8Impl(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(BlockTfQ2));
  // d words of rows 0..7 (lane j of h0 / h1 holds row j / j + 4), twice.
  const __m512i d_idx =
      _mm512_castsi256_si512(_mm256_setr_epi16(0, 8, 16, 24, 32, 40, 48, 56, 0, 8, 16, 24, 32, 40, 48, 56));
  // [d | dmin = d * 0.25f, as the oracle] of rows 0..7.
  const __m512 dmin_f = _mm512_castpd_ps(_mm512_insertf64x4(
      _mm512_castpd256_pd512(_mm256_castps_pd(_mm256_set1_ps(1.0f))), _mm256_castps_pd(_mm256_set1_ps(0.25f)), 1));
  const __m512i even_idx = _mm512_broadcast_i32x4(_mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14));
  const __m512i odd_idx = _mm512_broadcast_i32x4(_mm_setr_epi16(1, 3, 5, 7, 9, 11, 13, 15));
  alignas(64) uint8_t lut_sc[128];
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    // zmm k: chunks k (low 256 bits) and k + 4 (high), both indexed with shift 2k.
    __m512i yv[4];
    for (int c = 0; c < 4; ++c)
      yv[c] = _mm512_inserti64x4(
          _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * c))),
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * (c + 4))), 1);
    const __m512i bs = _mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums)));
    const __m512i bse = _mm512_permutexvar_epi16(even_idx, bs), bso = _mm512_permutexvar_epi16(odd_idx, bs);
    const uint8_t* wb = w + b * sizeof(BlockTfQ2);
    const __m512i h0 = Headers4<0>(wb, rb), h1 = Headers4<4>(wb, rb);
    __m512i ls0, ls1, m0, m1;
    TfQ2Headers4<kVbmi>(h0, bse, bso, &ls0, &m0);
    TfQ2Headers4<kVbmi>(h1, bse, bso, &ls1, &m1);
    _mm512_store_si512(lut_sc, ls0);
    _mm512_store_si512(lut_sc + 64, ls1);
    __m512i a[8];
    for (int r = 0; r < 8; ++r) a[r] = TfQ2Row(reinterpret_cast<const BlockTfQ2*>(wb + r * rb), lut_sc + 16 * r, yv);
    // [sumi | summ] of rows 0..7 -> dy * (d*sumi - dmin*summ), term for term as the oracle.
    const __m512 s = _mm512_cvtepi32_ps(TfQ2Reduce8(a, m0, m1));
    const __m512 d =
        _mm512_mul_ps(_mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(h0, d_idx, h1))), dmin_f);
    const __m512 am = _mm512_mul_ps(d, s);
    const __m256 t =
        _mm256_sub_ps(_mm512_castps512_ps256(am), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(am), 1)));
    sumf = _mm256_add_ps(sumf, _mm256_mul_ps(_mm256_set1_ps(xb->d), t));
  }
  _mm256_storeu_ps(y, sumf);
}


static void TfQ2Rows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  TfQ2Rows8Impl<false>(nsb, w, rb, x, y);
}
__attribute__((target("avx512vbmi"))) static void TfQ2Rows8Vbmi(int64_t nsb, const uint8_t* w, size_t rb,
                                                                const BlockQ8_KA* x, float* y) {
  TfQ2Rows8Impl<true>(nsb, w, rb, x, y);
}

// ---------------------------------------------------------------- Q4_0, 512-bit
// Q4_0 decode, 8 rows x 2 blocks per step on zmm. Row k (k < 4) and row k+4
// share one zmm with four 128-bit lanes L: (row k, b), (row k, b+1),
// (row k+4, b), (row k+4, b+1), so one vpdpbusd covers 4 (row, block) pairs.
// The -8 offset of the codes is folded in before the dot products: every
// accumulator starts at -8*sum(y) spread over the same lanes, so after the
// unpack-add reduction dword 4L+k is the exact integer block dot of (row, block)
// of lane L of p[k].
// Each row's two blocks (36 bytes) arrive in ONE load; word permutes (vpermt2w)
// place the code bytes of rows k and k+4 into the four 128-bit lanes and collect the 16
// fp16 scales, instead of 16 narrow loads + inserts and 16 scalar scale loads
// per step (the loads and inserts were a third of the kernel's instructions).
// The last block pair of a row uses a masked load, so nothing past the matrix's
// last byte is read.
static inline void Q4_0Rows8Z(const uint8_t* w, size_t rb, const BlockQ8_0A* x, int64_t nb, float* y) {
  if (nb % 2) {
    Q4_0Rows8<DotVnni>(w, rb, x, nb, y);
    return;
  }
  constexpr int kB = sizeof(BlockQ4_0);
  __m512 acc = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i eights = _mm512_set1_epi8(8);
  // Words of the two 36-byte rows (a = row k, b = row k+4; b's words at 32+):
  // block b codes are words 1..8, block b+1 codes 10..17, scales words 0 and 9.
  const __m512i code_idx = _mm512_setr_epi32(0x00020001, 0x00040003, 0x00060005, 0x00080007,  // a: 1..8
                                             0x000B000A, 0x000D000C, 0x000F000E, 0x00110010,  // a: 10..17
                                             0x00220021, 0x00240023, 0x00260025, 0x00280027,  // b: 1..8
                                             0x002B002A, 0x002D002C, 0x002F002E, 0x00310030);  // b: 10..17
  // Scale word of lane 4L + k: L = 0: a word 0, 1: a word 9, 2: b word 0, 3: b word 9.
  const __m512i sc_idx = _mm512_setr_epi32(0, 0, 0x00090009, 0x00090009, 0x00200020, 0x00200020, 0x00290029,
                                           0x00290029, 0, 0, 0, 0, 0, 0, 0, 0);
  constexpr __mmask64 kAll = ~0ull, kTail = (1ull << (2 * kB)) - 1;
  NextRowsPrefetch pf(w, rb, nb / 2, 2 * kB);  // one step per block pair
  for (int64_t b = 0; b < nb; b += 2) {
    pf.Step();
    const uint8_t* blk = w + b * kB;
    const __mmask64 lm = b + 2 < nb ? kAll : kTail;
    const __m256i y0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const __m256i y1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b + 1].qs));
    const __m256i ylo2 = _mm256_permute2x128_si256(y0, y1, 0x20);  // y0[0..15] | y1[0..15]
    const __m256i yhi2 = _mm256_permute2x128_si256(y0, y1, 0x31);  // y0[16..31] | y1[16..31]
    const __m512i ylo = _mm512_inserti64x4(_mm512_castsi256_si512(ylo2), ylo2, 1);
    const __m512i yhi = _mm512_inserti64x4(_mm512_castsi256_si512(yhi2), yhi2, 1);
    const __m512i e = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, ylo), eights, yhi);
    const __m512i ne = _mm512_sub_epi32(_mm512_setzero_si512(), e);
    __m512i p[4];
    __m512i sc = _mm512_setzero_si512();
    for (int k = 0; k < 4; ++k) {
      const __m512i ra = _mm512_maskz_loadu_epi8(lm, blk + k * rb);
      const __m512i rc = _mm512_maskz_loadu_epi8(lm, blk + (k + 4) * rb);
      const __m512i v = _mm512_permutex2var_epi16(ra, code_idx, rc);
      sc = _mm512_or_si512(sc, _mm512_maskz_permutex2var_epi16(0x1111u << k, ra, sc_idx, rc));
      const __m512i lo = _mm512_and_si512(v, m4);
      const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
      p[k] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(ne, lo, ylo), hi, yhi);
    }
    const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[0], p[1]), _mm512_unpackhi_epi32(p[0], p[1]));
    const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(p[2], p[3]), _mm512_unpackhi_epi32(p[2], p[3]));
    const __m512i sums = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
    const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(sc));
    const __m256 dy2 = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_set1_ps(x[b].d)), _mm_set1_ps(x[b + 1].d), 1);
    const __m512 dy = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(dy2)),
                                                          _mm256_castps_pd(dy2), 1));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), _mm512_mul_ps(dw, dy), acc);
  }
  const __m128 r03 = _mm_add_ps(_mm512_castps512_ps128(acc), _mm512_extractf32x4_ps(acc, 1));
  const __m128 r47 = _mm_add_ps(_mm512_extractf32x4_ps(acc, 2), _mm512_extractf32x4_ps(acc, 3));
  _mm_storeu_ps(y, r03);
  _mm_storeu_ps(y + 4, r47);
}

// ---------------------------------------------------------------- TF_Q4
// The 16-byte headers (d, dmin, scales[12]) of one superblock of 4 rows, one
// row per 128-bit lane, decoded to [sc[0..7] | m[0..7]] bytes per lane
// (formats.h 6-bit layout: byte g = (sc&15) | (m&15)<<4; the uint32 at bytes
// 12..15 holds sc>>4 at bits 2g..2g+1 and m>>4 at bits 16+2g..16+2g+1). Four
// rows take 13 vector instructions; one row at a time took about 16 each.
static inline __m512i DecodeScales6x4(__m512i h) {
  // Low nibbles: bytes 4..11 twice; the first copy keeps the low, the second the high nibble.
  const __m512i lo = Nibbles(h, _mm_setr_epi8(4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11),
                             0xFF00FF00FF00FF00ull);
  // High 2 bits: fields 0..7 (sc) and 8..15 (m) of the uint32 at bytes 12..15.
  const __m512i hi = TwoBitFields<12>(h);
  return _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
}

// TF_Q4 decode, 8 rows per step, on zmm. Per row and superblock the 128 code
// bytes are two zmm; byte 32p + i holds group 2p (low nibble) and 2p+1 (high),
// so A0 = lo(qs[0..63]) meets [y g0 | y g2], A1 = hi(qs[0..63]) [y g1 | y g3],
// A2, A3 likewise groups 4,6 and 5,7: one vpdpbusd each, every 256-bit half
// one group. An unpack-add reduction leaves dword 4L + k = the sum of 128-bit
// lane L of A_k (a single group), which is multiplied by that group's sub-scale;
// the integers sumi and summ are the scalar oracle's, and the float part is the
// same SuperTerm per lane in the oracle's order as TfRows8: bit-identical.
// The 8 rows' 16-byte block headers are loaded once per superblock and decoded
// 4 rows per vector (DecodeScales6x4); their d and dmin come out of the same
// registers with one word permute.
template <int R>
static inline __m256i TfQ4Row(const BlockTfQ4* blk, __m512i dec, const __m512i* yq, __m256i m8) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  // Lane 4L + k -> group of (A_k, lane L): k = 0: g0 (L 0,1), g2 (L 2,3); k = 1: g1, g3; k = 2: g4, g6; k = 3: g5, g7.
  const __m512i sc_perm = _mm512_setr_epi32(0, 1, 4, 5, 0, 1, 4, 5, 2, 3, 6, 7, 2, 3, 6, 7);
  const __m128i d = Lane<R % 4>(dec);  // [sc[0..7] | m[0..7]]
  const __m512i q01 = _mm512_loadu_si512(blk->qs);
  const __m512i q23 = _mm512_loadu_si512(blk->qs + 64);
  const __m512i z = _mm512_setzero_si512();
  const __m512i a0 = _mm512_dpbusd_epi32(z, _mm512_and_si512(q01, m4), yq[0]);
  const __m512i a1 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q01, 4), m4), yq[1]);
  const __m512i a2 = _mm512_dpbusd_epi32(z, _mm512_and_si512(q23, m4), yq[2]);
  const __m512i a3 = _mm512_dpbusd_epi32(z, _mm512_and_si512(_mm512_srli_epi16(q23, 4), m4), yq[3]);
  const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a0, a1), _mm512_unpackhi_epi32(a0, a1));
  const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a2, a3), _mm512_unpackhi_epi32(a2, a3));
  const __m512i g = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
  const __m512i scv = _mm512_permutexvar_epi32(sc_perm, _mm512_cvtepu8_epi32(d));
  const __m512i s16 = _mm512_mullo_epi32(g, scv);
  const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s16), _mm512_extracti64x4_epi64(s16, 1));
  // per 128-bit half: [sumi pair sums (2) | summ pair sums (2)]
  return _mm256_hadd_epi32(s8, m8);
}

// Per row (lane) of 4 rows: the 8 bytes picked by `pick` (per-group factors, each
// picked twice: [f0, f0, f1, f1, ...]) as int16 against the 16 sums of 16
// activations (bs2: them in both 256-bit halves), pairs summed: 8 int32 per row
// = f[g] * (bsum[2g] + bsum[2g+1]). Rows of lanes 0,1 in the halves of *m01,
// lanes 2,3 in *m23.
static inline void GroupSums4(__m512i rows, __m128i pick, __m512i bs2, __m512i* m01, __m512i* m23) {
  const __m512i mm = _mm512_shuffle_epi8(rows, _mm512_broadcast_i32x4(pick));
  *m01 = _mm512_madd_epi16(_mm512_cvtepu8_epi16(_mm512_castsi512_si256(mm)), bs2);
  *m23 = _mm512_madd_epi16(_mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(mm, 1)), bs2);
}

static inline void TfQ4Rows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(BlockTfQ4));
  // d and dmin words of the headers of rows 0,1,4,5,2,3,6,7 (the lane order of the
  // reduction below): rows 0..3 in h0 lanes, 4..7 in h1 (word index 32 + ...).
  const __m512i dm_idx = _mm512_castsi256_si512(
      _mm256_setr_epi16(0, 8, 32, 40, 16, 24, 48, 56, 1, 9, 33, 41, 17, 25, 49, 57));
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    __m256i yc[8];
    for (int c = 0; c < 8; ++c) yc[c] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->qs + 32 * c));
    __m512i yq[4];
    yq[0] = _mm512_inserti64x4(_mm512_castsi256_si512(yc[0]), yc[2], 1);
    yq[1] = _mm512_inserti64x4(_mm512_castsi256_si512(yc[1]), yc[3], 1);
    yq[2] = _mm512_inserti64x4(_mm512_castsi256_si512(yc[4]), yc[6], 1);
    yq[3] = _mm512_inserti64x4(_mm512_castsi256_si512(yc[5]), yc[7], 1);
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
    const uint8_t* wb = w + b * sizeof(BlockTfQ4);
    const __m512i h0 = Headers4<0>(wb, rb), h1 = Headers4<4>(wb, rb);
    const __m512i dec0 = DecodeScales6x4(h0), dec1 = DecodeScales6x4(h1);
    auto row = [&](int r) { return reinterpret_cast<const BlockTfQ4*>(wb + r * rb); };
    __m256i v[8];
    const __m512i bs2 = _mm512_inserti64x4(_mm512_castsi256_si512(bs), bs, 1);
    __m512i m01, m23, m45, m67;
    // summ: m[g] (bytes 8..15 of the decoded lanes) against the activation sums.
    const __m128i pick_m = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    GroupSums4(dec0, pick_m, bs2, &m01, &m23);
    GroupSums4(dec1, pick_m, bs2, &m45, &m67);
    v[0] = TfQ4Row<0>(row(0), dec0, yq, Half<0>(m01));
    v[1] = TfQ4Row<1>(row(1), dec0, yq, Half<1>(m01));
    v[2] = TfQ4Row<2>(row(2), dec0, yq, Half<0>(m23));
    v[3] = TfQ4Row<3>(row(3), dec0, yq, Half<1>(m23));
    v[4] = TfQ4Row<0>(row(4), dec1, yq, Half<0>(m45));
    v[5] = TfQ4Row<1>(row(5), dec1, yq, Half<1>(m45));
    v[6] = TfQ4Row<2>(row(6), dec1, yq, Half<0>(m67));
    v[7] = TfQ4Row<3>(row(7), dec1, yq, Half<1>(m67));
    const __m512 dm = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutex2var_epi16(h0, dm_idx, h1)));
    const __m256 dv = _mm512_castps512_ps256(dm);
    const __m256 mv = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(dm), 1));
    sumf = _mm256_add_ps(sumf, SuperTerms8(v, dv, mv, xb->d));
  }
  StoreRows8(y, sumf);
}

// ---------------------------------------------------------------- TF_Q8
// TF_Q8 decode, 8 rows per step, on zmm. Codes are signed, vpdpbusd wants one
// unsigned operand: q ^ 0x80 = q + 128 as an unsigned byte, so
// sum (q+128)*y - 128 * sum y = sum q*y exactly, with sum y per group from the
// activation block's sums of 16. Per row the 256 code bytes are four zmm A_k,
// each two groups (2k | 2k+1 in its 256-bit halves); the TF_Q4 unpack-add
// reduction leaves dword 4L + k = the sum of 128-bit lane L of A_k (group
// 2k + L/2), multiplied by that group's sub-scale. The block headers
// (d, scales[8], first 6 codes) of the 8 rows are loaded once per superblock.
// sumi is the scalar oracle's integer and the float part its SuperTerm with
// dmin = 0 in its order: bit-identical.
template <int R>
static inline __m256i TfQ8Row(const BlockTfQ8* blk, __m512i hdr, const __m512i* yq, __m256i c8) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  // dword 4L + k -> group 2k + L/2 (sub-scale bytes 0..7 after the 2-byte d).
  const __m512i sc_perm = _mm512_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6, 1, 3, 5, 7, 1, 3, 5, 7);
  const __m512i z = _mm512_setzero_si512();
  __m512i a[4];
  for (int k = 0; k < 4; ++k)
    a[k] = _mm512_dpbusd_epi32(z, _mm512_xor_si512(_mm512_loadu_si512(blk->qs + 64 * k), flip), yq[k]);
  const __m512i a01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]), _mm512_unpackhi_epi32(a[0], a[1]));
  const __m512i a23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]), _mm512_unpackhi_epi32(a[2], a[3]));
  const __m512i g = _mm512_add_epi32(_mm512_unpacklo_epi64(a01, a23), _mm512_unpackhi_epi64(a01, a23));
  const __m512i scv = _mm512_permutexvar_epi32(sc_perm, _mm512_cvtepu8_epi32(_mm_srli_si128(Lane<R % 4>(hdr), 2)));
  const __m512i s16 = _mm512_mullo_epi32(g, scv);
  const __m256i s8 = _mm256_add_epi32(_mm512_castsi512_si256(s16), _mm512_extracti64x4_epi64(s16, 1));
  // - 128 * sc[g] * sum(y of group g); summ = 0.
  return _mm256_hadd_epi32(_mm256_sub_epi32(s8, _mm256_slli_epi32(c8, 7)), _mm256_setzero_si256());
}

static inline void TfQ8Rows8(int64_t nsb, const uint8_t* w, size_t rb, const BlockQ8_KA* x, float* y) {
  __m256 sumf = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nsb, sizeof(BlockTfQ8));
  const __m512i d_idx = _mm512_castsi256_si512(_mm256_setr_epi16(0, 8, 32, 40, 16, 24, 48, 56, 0, 0, 0, 0, 0, 0, 0, 0));
  const __m128i pick_sc = _mm_setr_epi8(2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9);
  for (int64_t b = 0; b < nsb; ++b) {
    pf.Step();
    const BlockQ8_KA* xb = x + b;
    __m512i yq[4];
    for (int k = 0; k < 4; ++k) yq[k] = _mm512_loadu_si512(xb->qs + 64 * k);
    const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb->bsums));
    const __m512i bs2 = _mm512_inserti64x4(_mm512_castsi256_si512(bs), bs, 1);
    const uint8_t* wb = w + b * sizeof(BlockTfQ8);
    const __m512i h0 = Headers4<0>(wb, rb), h1 = Headers4<4>(wb, rb);
    __m512i c01, c23, c45, c67;
    GroupSums4(h0, pick_sc, bs2, &c01, &c23);
    GroupSums4(h1, pick_sc, bs2, &c45, &c67);
    auto row = [&](int r) { return reinterpret_cast<const BlockTfQ8*>(wb + r * rb); };
    __m256i v[8];
    v[0] = TfQ8Row<0>(row(0), h0, yq, Half<0>(c01));
    v[1] = TfQ8Row<1>(row(1), h0, yq, Half<1>(c01));
    v[2] = TfQ8Row<2>(row(2), h0, yq, Half<0>(c23));
    v[3] = TfQ8Row<3>(row(3), h0, yq, Half<1>(c23));
    v[4] = TfQ8Row<0>(row(4), h1, yq, Half<0>(c45));
    v[5] = TfQ8Row<1>(row(5), h1, yq, Half<1>(c45));
    v[6] = TfQ8Row<2>(row(6), h1, yq, Half<0>(c67));
    v[7] = TfQ8Row<3>(row(7), h1, yq, Half<1>(c67));
    const __m256 dv = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(h0, d_idx, h1)));
    sumf = _mm256_add_ps(sumf, SuperTerms8(v, dv, _mm256_setzero_ps(), xb->d));
  }
  StoreRows8(y, sumf);
}

// TF formats: decode (1..3 tokens) in 8-row steps, the rows % 8 tail and prefill
// (4 or more tokens) with the AVX2 kernel.
template <class Rows8, class Fallback>
void MatMulTfDecodeVnni(Rows8 rows8, Fallback fallback, TF_MATMUL_ARGS) {
  if (n_tokens >= 4) {
    fallback(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const int64_t nsb = cols / kQKSuper;
  const size_t xrb = nsb * sizeof(BlockQ8_KA);
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xp = static_cast<const uint8_t*>(xpacked);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* xt = reinterpret_cast<const BlockQ8_KA*>(xp + t * xrb);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) rows8(nsb, wb + r * row_bytes, row_bytes, xt, y + t * ldy + r);
    if (r < r1) fallback(w, row_bytes, r, r1, cols, xp + t * xrb, 1, y + t * ldy, ldy);
  }
}

}  // namespace

// TF_Q2 picks the AVX512_VBMI header decode where CPUID has it (AMD Zen 4+, Intel
// Ice Lake+; not Cascade / Cooper Lake, which have VNNI without VBMI).
void MatMulTfQ2Avx512Vnni(TF_MATMUL_ARGS) {
  static const bool vbmi = __builtin_cpu_supports("avx512vbmi");
  if (vbmi) {
    MatMulTfDecodeVnni(TfQ2Rows8Vbmi, MatMulTfQ2Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
  } else {
    MatMulTfQ2Avx512VnniNoVbmi(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
  }
}
void MatMulTfQ2Avx512VnniNoVbmi(TF_MATMUL_ARGS) {
  MatMulTfDecodeVnni(TfQ2Rows8, MatMulTfQ2Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulTfQ8Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulTfDecodeVnni(TfQ8Rows8, MatMulTfQ8Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulTfQ4Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulTfDecodeVnni(TfQ4Rows8, MatMulTfQ4Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulQ8_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q8_0Rows8<DotVnni>, MatMulQ8_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulQ4_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q4_0Rows8Z, MatMulQ4_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

// ---------------------------------------------------------------- activation packing
// BlockQ8_KA per 256 values, bit-identical to PackQ8_KAScalar: the same float
// products x * (1 / d) and round-half-away-from-zero. 16 values per vector: the
// absolute maximum in four chains, each group of 16 is one bsum (reduced in a
// 16 x 16 transpose-add instead of 16 horizontal sums), int8 by saturating
// narrowing (the values are within +-127 already). The forward pass packs every
// mat-mul's input on one thread while the others wait: AVX2 took ~0.5 us per
// 2048 values (1 core cycle per value), ~1.5 % of a 2-thread TF_Q2 TinyLlama token.
void PackQ8_KAAvx512(TF_PACK_ARGS) {
  auto* yb = static_cast<BlockQ8_KA*>(out);
  const int64_t nb = n_tokens * (cols / kQKSuper);
  // (AVX512F only: the float and/or/andnot forms are AVX512DQ, which this file does not assume.)
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u)), one = _mm512_set1_epi32(0x3f800000);
  const __m512 half = _mm512_set1_ps(0.5f);
  for (int64_t i = 0; i < nb; ++i) {
    const float* xb = x + i * kQKSuper;
    __m512 v[16];
    __m512 m[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
    for (int k = 0; k < 16; ++k) {
      v[k] = _mm512_loadu_ps(xb + 16 * k);
      m[k % 4] = _mm512_max_ps(m[k % 4], _mm512_abs_ps(v[k]));
    }
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(m[0], m[1]), _mm512_max_ps(m[2], m[3])));
    const float d = amax / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    yb[i].d = d;
    const __m512 idv = _mm512_set1_ps(id);
    __m512i q[16];
    for (int k = 0; k < 16; ++k) {
      const __m512 s = _mm512_mul_ps(v[k], idv);
      const __m512 t = _mm512_roundscale_ps(s, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
      const __mmask16 up = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_sub_ps(s, t)), half, _CMP_GE_OQ);
      const __m512 away = _mm512_castsi512_ps(_mm512_or_epi32(_mm512_and_epi32(_mm512_castps_si512(s), sign), one));
      const __m512 r = _mm512_mask_add_ps(t, up, t, away);
      q[k] = _mm512_cvttps_epi32(r);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(yb[i].qs + 16 * k), _mm512_cvtsepi32_epi8(q[k]));
    }
    // bsums[k] = sum of q[k]'s 16 lanes: pairwise transpose-adds halve the vector
    // count and the lanes per sum each step; lane j of the last holds bsums[j]
    // (as int32, stored narrowed to int16: |sum| <= 16 * 127).
    __m512i a[8], b[4], c[2];
    for (int k = 0; k < 8; ++k) {
      const __m512i lo = _mm512_unpacklo_epi32(q[2 * k], q[2 * k + 1]);
      const __m512i hi = _mm512_unpackhi_epi32(q[2 * k], q[2 * k + 1]);
      a[k] = _mm512_add_epi32(lo, hi);  // per 128-bit lane: [k0 k1 k0 k1] partial sums
    }
    for (int k = 0; k < 4; ++k) {
      const __m512i lo = _mm512_unpacklo_epi64(a[2 * k], a[2 * k + 1]);
      const __m512i hi = _mm512_unpackhi_epi64(a[2 * k], a[2 * k + 1]);
      b[k] = _mm512_add_epi32(lo, hi);  // per 128-bit lane: sums of q[4k..4k+3] over that lane
    }
    for (int k = 0; k < 2; ++k) {
      // 128-bit lanes: [b0.l0 b0.l1 b0.l2 b0.l3] x [b1...] -> add lanes (0,1) and (2,3) crosswise.
      const __m512i lo = _mm512_shuffle_i32x4(b[2 * k], b[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0));
      const __m512i hi = _mm512_shuffle_i32x4(b[2 * k], b[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1));
      c[k] = _mm512_add_epi32(lo, hi);  // lanes: [b0 (l0+l1), b0 (l2+l3), b1 (l0+l1), b1 (l2+l3)]
    }
    const __m512i lo = _mm512_shuffle_i32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512i hi = _mm512_shuffle_i32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512i sums = _mm512_add_epi32(lo, hi);  // lane 4L + j: group 4L + j
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(yb[i].bsums), _mm512_cvtepi32_epi16(sums));
  }
}

}  // namespace tabfit::qk
