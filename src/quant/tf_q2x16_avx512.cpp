// TF_Q2x16 mat-mul (layout in tf_q2x16.h) with AVX-512 F/BW/VL/VNNI + VBMI + GFNI.
// Compiled with those flags; called only after CPUID says the CPU has all of them.
//
// Per 16-row tile and superblock (1280 bytes):
//  - header, once for 16 rows: the 32 seven-byte chunks are spread to qwords
//    (vpermb) and cut into 7-bit fields (vpmultishiftqb); even/odd dwords give, per
//    row lane, the fields of groups 4k..4k+3 (sz[k]); sc = field & 15, and
//    sc*z comes from one 128-entry byte table lookup (vpermi2b on field bits 0..6);
//  - per group g: one zmm of codes, fields k = 0..3 cut out (vpand / gf2p8affineqb),
//    4 vpdpbusd with the broadcast activation dwords (16 rows x 4 columns each) give
//    sum(q*y) of every row (|.| <= 3*127*16 < 2^15), and one vpdpwssd adds sc * that
//    to the row's sumi;
//  - summ = sum_g sc*z*bsum: bsum = 128*hi + lo (lo 0..127, hi -16..15) so both parts
//    are int8 and 4 vpdpbusd each of the sc*z bytes give it for 16 rows;
//  - the oracle's SuperTerm, 16 rows at once, same operations in the same order.
// No horizontal reductions anywhere: the integers are the scalar oracle's, the float
// expression is its SuperTerm, so results are bit-identical with MatMulTfQ2Scalar.
#include <immintrin.h>

#include <algorithm>

#include "quant/kernel_list.h"
#include "quant/tf_q2x16.h"
#include "quant/x16_driver.h"

namespace tabfit::qk {
namespace {

// Software prefetch distance: the tile's stream is one sequential run of bytes, yet
// the hardware prefetcher alone gave 30-32 GB/s out of cache against a 40.8 GB/s
// read ceiling; prefetching every line 8 superblocks (10 KiB) ahead gave 41-42 GB/s
// (5632x2048 x 40 copies, 1 thread; 1.25 / 2.5 / 5 / 15 / 20 KiB ahead: 33 / 35 / 37 / 41 / 40).
// 2 threads, the host at ~78 GB/s: 10 KiB ahead 68-79 GB/s, 7.5 KiB 62-78, 5 KiB 39-53.
constexpr int kPrefetchAhead = 8 * kX16SuperBytes;
struct Header16 {
  __m512 d;         // f32 d of rows 0..15
  __m512i scb[4];   // dword r: sc of groups 4k..4k+3 of row r (bytes)
  __m512i scz[4];   // dword r: sc*z of the same groups (bytes, <= 135)
};

struct Consts {
  __m512i spread;   // qword q <- bytes 7q..7q+7 of a 64-byte load
  __m512i fields;   // per qword: bit offsets 0, 7, ..., 49
  __m512i even, odd;
  __m512i tlo, thi;  // sc*z by field (sc | (z-2) << 4): entries 0..63, 64..127
  __m512i sc_pick[4];
  Consts() {
    alignas(64) uint8_t sp[64], fl[64], tl[64], th[64];
    for (int q = 0; q < 8; ++q)
      for (int i = 0; i < 8; ++i) {
        sp[8 * q + i] = static_cast<uint8_t>(std::min(63, 7 * q + i));
        fl[8 * q + i] = static_cast<uint8_t>(7 * i);
      }
    for (int i = 0; i < 64; ++i) {
      tl[i] = static_cast<uint8_t>((i & 15) * ((i >> 4) + 2));
      th[i] = static_cast<uint8_t>(((i + 64) & 15) * (((i + 64) >> 4) + 2));
    }
    spread = _mm512_load_si512(sp);
    fields = _mm512_load_si512(fl);
    tlo = _mm512_load_si512(tl);
    thi = _mm512_load_si512(th);
    even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int j = 0; j < 4; ++j) {
      alignas(64) uint8_t pk[64];
      for (int i = 0; i < 64; ++i) pk[i] = (i % 4 == 0) ? static_cast<uint8_t>((i % 16) + j) : 0x80;
      sc_pick[j] = _mm512_load_si512(pk);
    }
  }
};

inline Header16 DecodeHeader(const uint8_t* sb, const Consts& c) {
  Header16 h;
  h.d = _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(sb)));
  __m512i m[4];
  for (int i = 0; i < 4; ++i) {
    const __m512i f = _mm512_permutexvar_epi8(c.spread, _mm512_loadu_si512(sb + kX16FieldsOffset + 56 * i));
    m[i] = _mm512_multishift_epi64_epi8(c.fields, f);
  }
  // m[0] / m[1]: rows 0..7 / 8..15, groups 0..7 (dword 2r: groups 0..3, 2r+1: 4..7); m[2], m[3]: groups 8..15.
  const __m512i sz[4] = {_mm512_permutex2var_epi32(m[0], c.even, m[1]), _mm512_permutex2var_epi32(m[0], c.odd, m[1]),
                         _mm512_permutex2var_epi32(m[2], c.even, m[3]), _mm512_permutex2var_epi32(m[2], c.odd, m[3])};
  const __m512i m15 = _mm512_set1_epi8(15);
  for (int k = 0; k < 4; ++k) {
    h.scb[k] = _mm512_and_si512(sz[k], m15);
    h.scz[k] = _mm512_permutex2var_epi8(c.tlo, sz[k], c.thi);  // index bits 0..6; bit 7 (next field) ignored
  }
  return h;
}

// Field k (bits 2k..2k+1 of every byte) moved to bits 0..1: GF(2) affine, output bit
// i = parity(matrix byte 7-i & input).
template <int K>
inline __m512i Field(__m512i q) {
  if constexpr (K == 0) {
    return _mm512_and_si512(q, _mm512_set1_epi8(3));
  } else {
    constexpr uint64_t kA = (uint64_t{1} << (2 * K)) << 56 | (uint64_t{1} << (2 * K + 1)) << 48;
    return _mm512_gf2p8affine_epi64_epi8(q, _mm512_set1_epi64(static_cast<long long>(kA)), 0);
  }
}

// NT tokens (1..4) x one 16-row tile, every superblock; y[t * ldy + r] for r = 0..15.
template <int NT>
void Tile(const uint8_t* tile, int64_t nsb, const BlockQ8_KA* const* xt, float* y, int64_t ldy, const Consts& c) {
  __m512 sumf[NT];
  for (int t = 0; t < NT; ++t) sumf[t] = _mm512_setzero_ps();
  for (int64_t b = 0; b < nsb; ++b) {
    const uint8_t* sb = tile + b * kX16SuperBytes;
    for (int l = 0; l < kX16SuperBytes; l += 64)
      _mm_prefetch(reinterpret_cast<const char*>(sb + kPrefetchAhead + l), kX16PrefetchHint);
    const Header16 h = DecodeHeader(sb, c);
    __m512i sumi[NT];
    for (int t = 0; t < NT; ++t) sumi[t] = _mm512_setzero_si512();
    // Fully unrolled: g indexes h.scb[g / 4] and c.sc_pick[g % 4], which GCC otherwise
    // spills and re-addresses every group (decode 23 % slower out of cache).
#pragma GCC unroll 16
    for (int g = 0; g < 16; ++g) {
      const __m512i q = _mm512_loadu_si512(sb + kX16CodesOffset + 64 * g);
      const __m512i e0 = Field<0>(q), e1 = Field<1>(q), e2 = Field<2>(q), e3 = Field<3>(q);
      const __m512i sc = _mm512_shuffle_epi8(h.scb[g / 4], c.sc_pick[g % 4]);
      for (int t = 0; t < NT; ++t) {
        const int8_t* yq = xt[t][b].qs + 16 * g;
        __m512i acc = DpbusdBcast(_mm512_setzero_si512(), e0, yq);
        acc = DpbusdBcast(acc, e1, yq + 4);
        acc = DpbusdBcast(acc, e2, yq + 8);
        acc = DpbusdBcast(acc, e3, yq + 12);
        sumi[t] = _mm512_dpwssd_epi32(sumi[t], acc, sc);  // acc fits int16; sc's high word is 0
      }
    }
    const __m512 dm = _mm512_mul_ps(h.d, _mm512_set1_ps(0.25f));
    for (int t = 0; t < NT; ++t) {
      const BlockQ8_KA& xb = xt[t][b];
      const __m256i bs = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.bsums));
      alignas(32) int8_t lohi[32];
      _mm_store_si128(reinterpret_cast<__m128i*>(lohi),
                      _mm256_cvtepi16_epi8(_mm256_and_si256(bs, _mm256_set1_epi16(127))));
      _mm_store_si128(reinterpret_cast<__m128i*>(lohi + 16), _mm256_cvtepi16_epi8(_mm256_srai_epi16(bs, 7)));
      __m512i lo = _mm512_setzero_si512(), hi = _mm512_setzero_si512();
      for (int k = 0; k < 4; ++k) {
        lo = DpbusdBcast(lo, h.scz[k], lohi + 4 * k);
        hi = DpbusdBcast(hi, h.scz[k], lohi + 16 + 4 * k);
      }
      const __m512i summ = _mm512_add_epi32(_mm512_slli_epi32(hi, 7), lo);
      // SuperTerm: dy * (d*sumi - dmin*summ), as the oracle evaluates it.
      const __m512 a = _mm512_mul_ps(h.d, _mm512_cvtepi32_ps(sumi[t]));
      const __m512 bm = _mm512_mul_ps(dm, _mm512_cvtepi32_ps(summ));
      sumf[t] = _mm512_add_ps(sumf[t], _mm512_mul_ps(_mm512_set1_ps(xb.d), _mm512_sub_ps(a, bm)));
    }
  }
  for (int t = 0; t < NT; ++t) _mm512_storeu_ps(y + t * ldy, sumf[t]);
}

}  // namespace

bool TfQ2x16KernelAvailable() {
  static const bool ok = IsaAvailable(Isa::kAvx512Vnni) && __builtin_cpu_supports("avx512vbmi") &&
                         __builtin_cpu_supports("gfni");
  return ok;
}

void MatMulTfQ2x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                         const void* xpacked, int64_t n_tokens, float* y, int64_t ldy) {
  static const Consts c;
  const int64_t nsb = cols / kQKSuper;
  DriveTfX16(MatMulTfQ2x16Scalar, [&](auto nt, const uint8_t* tile, const BlockQ8_KA* const* xt, float* yt) {
    Tile<decltype(nt)::value>(tile, nsb, xt, yt, ldy, c);
  }, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
