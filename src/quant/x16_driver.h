// tabfit quant (private): the row/token walk shared by the 16-row-tiled TF kernels
// (tf_q2x16_avx512.cpp, tf_q4x16_avx512.cpp, qx16_avx512.cpp's TF_Q8x16).
// Rows [r0, r1) that do not fill a whole tile go through `scalar` (the layout's
// reference kernel); each whole tile runs per block of up to 4 tokens through
// tile(std::integral_constant<int, NT>{}, tile_bytes, token_rows[NT], y_out).
// Header-only with internal linkage: included by translation units built with
// different -m flags.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "quant/formats.h"

namespace tabfit::qk {
namespace {

// The hint of every tiled kernel's software prefetch (each thread prefetches its one
// weight stream ~10 KiB ahead). Weights are read once per token, so non-temporal:
// prefetchnta fills L1 without allocating the line in L2 the way T0 does. Measured
// on the 2-vCPU AMD EPYC (Zen 5) VM, TF_Q2 TinyLlama-1.1B decode, alternating runs:
// 1 thread 95.8 -> 115.8 tok/s; 2 threads 130.9 -> 138.0 (host at ~50 GB/s) and
// 183 -> 192 (host at ~80 GB/s). T1 and T2 were slower than T0 (162 vs 183).
constexpr auto kX16PrefetchHint = _MM_HINT_NTA;

// acc + the 16 rows' u8 codes (x) the s8 dword at p broadcast, as
// _mm512_dpbusd_epi32(acc, u8, _mm512_set1_epi32(dword at p)). GCC 12 keeps that
// broadcast as a vpbroadcastd of its own (4 of the 16 instructions per 64 code bytes
// of TF_Q2x16); this writes vpdpbusd's memory-broadcast form {1to16} instead.
inline __m512i DpbusdBcast(__m512i acc, __m512i u8, const int8_t* p) {
#if defined(__GNUC__) && !defined(TABFIT_NO_INLINE_ASM)
  using Dword = int32_t __attribute__((may_alias));
  __asm__("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(acc) : "v"(u8), "m"(*reinterpret_cast<const Dword*>(p)));
  return acc;
#else
  int32_t v;
  __builtin_memcpy(&v, p, 4);
  return _mm512_dpbusd_epi32(acc, u8, _mm512_set1_epi32(v));
#endif
}

using X16ScalarFn = void (*)(const void*, size_t, int64_t, int64_t, int64_t, const void*, int64_t, float*, int64_t);

template <class Tile>
inline void DriveTfX16(X16ScalarFn scalar, const Tile& tile, const void* w, size_t row_bytes, int64_t r0, int64_t r1,
                       int64_t cols, const void* xpacked, int64_t n_tokens, float* y, int64_t ldy) {
  constexpr int64_t kRows = 16;
  const int64_t a = (r0 + kRows - 1) / kRows * kRows, e = r1 / kRows * kRows;
  if (a >= e) {
    scalar(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  if (r0 < a) scalar(w, row_bytes, r0, a, cols, xpacked, n_tokens, y, ldy);
  if (e < r1) scalar(w, row_bytes, e, r1, cols, xpacked, n_tokens, y, ldy);
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* x = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = a; r < e; r += kRows) {
    const uint8_t* tp = wb + r * row_bytes;
    for (int64_t t = 0; t < n_tokens; t += 4) {
      const BlockQ8_KA* xt[4];
      const int nt = static_cast<int>(std::min<int64_t>(4, n_tokens - t));
      for (int i = 0; i < nt; ++i) xt[i] = x + (t + i) * nsb;
      float* yt = y + t * ldy + r;
      switch (nt) {
        case 1: tile(std::integral_constant<int, 1>{}, tp, xt, yt); break;
        case 2: tile(std::integral_constant<int, 2>{}, tp, xt, yt); break;
        case 3: tile(std::integral_constant<int, 3>{}, tp, xt, yt); break;
        default: tile(std::integral_constant<int, 4>{}, tp, xt, yt); break;
      }
    }
  }
}

}  // namespace
}  // namespace tabfit::qk
