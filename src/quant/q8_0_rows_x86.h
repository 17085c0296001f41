// tabfit quant (private): decode (one token) mat-vec for Q8_0 / Q4_0 weights
// against Q8_0A activations, eight weight rows per step. Included by the x86
// translation units (kernels_avx2.cpp: maddubs+madd; kernels_avx512vnni.cpp:
// vpdpbusd). Everything here has internal linkage, so the copies compiled with
// different -m flags never meet at link time.
//
// Why eight rows: Q8_0/Q4_0 carry one fp16 scale per 32 weights, so a kernel
// that scales and accumulates in float per (row, block) spends most of its time
// on that float work. Here, per block b, the integer dot products of 8 rows
// (8 vectors of 8 int32) are reduced by an hadd tree into ONE vector of 8
// row-sums, converted once and combined with the 8 rows' scales in one
// multiply and one fused multiply-add:
//   acc[r] += float(sum_i q[r][i] * y[i]) * (d_w[r] * d_y)
// The integer sum of a block is exact, so the result differs from the scalar
// oracle only by float summation order (and is at least as accurate).
//
// Q4_0 codes stay unsigned (0..15): dot = sum(q*y) - 8*sum(y); 8*sum(y) is the
// same for every row and is subtracted once per block after the reduction.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "quant/formats.h"

namespace tabfit::qk {
namespace {

// The 8 fp16 scales at byte offset `off` of 8 rows (row stride `rb`) -> 8 floats.
static inline int Ld16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}
// The fp16 scales at p + k*rb for k = O0..O7 (in that lane order) -> 8 floats.
template <int O0, int O1, int O2, int O3, int O4, int O5, int O6, int O7>
static inline __m256 Scales8(const uint8_t* p, size_t rb) {
  __m128i h = _mm_cvtsi32_si128(Ld16(p + O0 * rb));
  h = _mm_insert_epi16(h, Ld16(p + O1 * rb), 1);
  h = _mm_insert_epi16(h, Ld16(p + O2 * rb), 2);
  h = _mm_insert_epi16(h, Ld16(p + O3 * rb), 3);
  h = _mm_insert_epi16(h, Ld16(p + O4 * rb), 4);
  h = _mm_insert_epi16(h, Ld16(p + O5 * rb), 5);
  h = _mm_insert_epi16(h, Ld16(p + O6 * rb), 6);
  h = _mm_insert_epi16(h, Ld16(p + O7 * rb), 7);
  return _mm256_cvtph_ps(h);
}

// 8 vectors of 8 int32 -> one vector whose lane r is the sum of all lanes of v[r].
static inline __m256i Reduce8(const __m256i* v) {
  const __m256i h01 = _mm256_hadd_epi32(v[0], v[1]);
  const __m256i h23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i h45 = _mm256_hadd_epi32(v[4], v[5]);
  const __m256i h67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256i h0123 = _mm256_hadd_epi32(h01, h23);  // [s0..s3 of low 128 | s0..s3 of high 128]
  const __m256i h4567 = _mm256_hadd_epi32(h45, h67);
  return _mm256_add_epi32(_mm256_permute2x128_si256(h0123, h4567, 0x20),
                          _mm256_permute2x128_si256(h0123, h4567, 0x31));
}

// Sum of the 8 int32 lanes of v, broadcast to all lanes.
static inline __m256i HsumBroadcast(__m256i v) {
  v = _mm256_add_epi32(v, _mm256_permute2x128_si256(v, v, 0x01));
  v = _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0x4E));
  return _mm256_add_epi32(v, _mm256_shuffle_epi32(v, 0xB1));
}

// Software prefetch of the next 8-row step while this one runs: the step's rows
// are contiguous, so the next step is the byte range [w + 8*rb, w + 16*rb); it is
// swept in `lines` cache lines per block. (The hardware prefetchers, handed 8
// short streams that each end after one row, otherwise leave most of the memory
// latency exposed.)
// Only for densely packed rows (rb == nb * block bytes, as in weight matrices):
// with strided rows (e.g. one head's slice of a KV-cache row) most of the swept
// range would be other data, so it prefetches nothing.
struct NextRowsPrefetch {
  const uint8_t* p;
  int lines;
  NextRowsPrefetch(const uint8_t* w, size_t rb, int64_t nb, size_t block_bytes)
      : p(w + 8 * rb),
        lines(nb > 0 && rb == static_cast<size_t>(nb) * block_bytes ? static_cast<int>((8 * rb / 64 + nb) / nb) : 0) {}
  void Step() {
    for (int i = 0; i < lines; ++i) _mm_prefetch(reinterpret_cast<const char*>(p + 64 * i), _MM_HINT_T0);
    p += 64 * lines;
  }
};

// Dot: static __m256i Dot(__m256i u8, __m256i s8) -> 8 int32, lane k = sum of the
// 4 products u8[4k..4k+3] * s8[4k..4k+3] (unsigned x signed bytes, no saturation
// for |u8| <= 128 paired with |s8| <= 127).
//
// y[r] = dot(row w + r*rb, x) for r in [0, 8), one token; nb blocks per row.
template <class Dot>
static inline void Q8_0Rows8(const uint8_t* w, size_t rb, const BlockQ8_0A* x, int64_t nb, float* y) {
  __m256 acc = _mm256_setzero_ps();
  NextRowsPrefetch pf(w, rb, nb, sizeof(BlockQ8_0));
  for (int64_t b = 0; b < nb; ++b) {
    pf.Step();
    const uint8_t* blk = w + b * sizeof(BlockQ8_0);
    const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    __m256i p[8];
    for (int r = 0; r < 8; ++r) {
      const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk + r * rb + 2));
      p[r] = Dot::Run(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(yv, wv));
    }
    const __m256 s = _mm256_cvtepi32_ps(Reduce8(p));
    const __m256 d = _mm256_mul_ps(Scales8<0, 1, 2, 3, 4, 5, 6, 7>(blk, rb), _mm256_broadcast_ss(&x[b].d));
    acc = _mm256_fmadd_ps(s, d, acc);
  }
  _mm256_storeu_ps(y, acc);
}

// Rows are taken in pairs (k, k+4): one 256-bit register holds the 16 code bytes
// of row k in its low half and of row k+4 in its high half; the low nibbles
// (elements 0..15) meet y[0..15] in both halves, the high nibbles y[16..31]. The
// hadd tree of the 4 pair vectors then yields rows in lane order 0..7 directly.
template <class Dot>
static inline void Q4_0Rows8(const uint8_t* w, size_t rb, const BlockQ8_0A* x, int64_t nb, float* y) {
  __m256 acc = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i eights = _mm256_set1_epi8(8);
  NextRowsPrefetch pf(w, rb, nb, sizeof(BlockQ4_0));
  for (int64_t b = 0; b < nb; ++b) {
    pf.Step();
    const uint8_t* blk = w + b * sizeof(BlockQ4_0);
    const __m256i yv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x[b].qs));
    const __m256i ylo = _mm256_permute2x128_si256(yv, yv, 0x00);  // y[0..15] in both halves
    const __m256i yhi = _mm256_permute2x128_si256(yv, yv, 0x11);  // y[16..31] in both halves
    __m256i p[4];
    for (int k = 0; k < 4; ++k) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + k * rb + 2));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk + (k + 4) * rb + 2));
      const __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(a), c, 1);
      const __m256i lo = _mm256_and_si256(v, m4);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
      p[k] = _mm256_add_epi32(Dot::Run(lo, ylo), Dot::Run(hi, yhi));
    }
    // hadd(hadd(p0, p1), hadd(p2, p3)): low half rows 0..3, high half rows 4..7.
    const __m256i sums = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i s8 = HsumBroadcast(Dot::Run(eights, yv));  // 8 * sum(y), every lane
    const __m256 s = _mm256_cvtepi32_ps(_mm256_sub_epi32(sums, s8));
    const __m256 d = _mm256_mul_ps(Scales8<0, 1, 2, 3, 4, 5, 6, 7>(blk, rb), _mm256_broadcast_ss(&x[b].d));
    acc = _mm256_fmadd_ps(s, d, acc);
  }
  _mm256_storeu_ps(y, acc);
}

// Decode driver: for each token, rows [r0, r1) in steps of 8 with Rows8; the
// remaining (< 8) rows go to `tail(r_begin, r_end, token)`.
template <class Rows8, class Tail>
static inline void DriveRows8(Rows8 rows8, Tail tail, const void* wv, size_t rb, int64_t r0, int64_t r1,
                              const void* xp, size_t x_row_bytes, int64_t n_tokens, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wv);
  const auto* xb = static_cast<const uint8_t*>(xp);
  for (int64_t t = 0; t < n_tokens; ++t) {
    const auto* xt = reinterpret_cast<const BlockQ8_0A*>(xb + t * x_row_bytes);
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) rows8(w + r * rb, rb, xt, y + t * ldy + r);
    if (r < r1) tail(r, r1, t);
  }
}

}  // namespace
}  // namespace tabfit::qk
