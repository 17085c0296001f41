// AVX-512 one-token mat-vec for F16 / BF16 / F32 weights against f32 activations.
// Compiled with the kernels_avx512vnni.cpp flags (-mavx512f -mavx512vl -mavx512bw
// on top of the AVX2 ones); only called after CPUID says the CPU has them
// (Isa::kAvx512Vnni, whose test includes F/VL/BW). No BF16 or FP16 extension
// instructions are used: F16 -> f32 is vcvtph2ps (F16C's AVX-512 form), BF16 ->
// f32 a zero-extend and shift.
//
// Decode (fewer than 4 tokens): the row range is cut into two contiguous halves
// read side by side (one row of each per step: two long sequential streams that
// the hardware prefetchers follow on their own), 512-bit vectors, four
// accumulators per row. Columns that are not a
// multiple of the vector width are read with masked loads (nothing past the row
// end is touched). Prefill (4 or more tokens) uses the AVX2 kernels.
//
// Results differ from the scalar oracle only in float summation order.
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "quant/kernels_impl.h"

namespace tabfit::qk {
namespace {

// Load(p, i): the 16 weights at elements i..i+15 of row p as 16 floats;
// LoadMasked(p, i, m): only the lanes set in m are read (others are 0).
struct F16Z {
  static __m512 Load(const uint8_t* p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
  }
  static __m512 LoadMasked(const uint8_t* p, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * i));
  }
};
struct BF16Z {
  static __m512 Widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 Load(const uint8_t* p, int64_t i) {
    return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
  }
  static __m512 LoadMasked(const uint8_t* p, int64_t i, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, p + 2 * i));
  }
};
struct F32Z {
  static __m512 Load(const uint8_t* p, int64_t i) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p) + i); }
  static __m512 LoadMasked(const uint8_t* p, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p) + i);
  }
};

// out[s] = dot(row w[s], x) for s in [0, S); cols elements per row. U: 16-element
// units per row per loop iteration (U accumulators per row).
template <class W, int S, int U>
static inline void DotRows(const uint8_t* const* w, const float* x, int64_t cols, float* out) {
  __m512 acc[S][U];
  for (int s = 0; s < S; ++s)
    for (int u = 0; u < U; ++u) acc[s][u] = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 * U <= cols; i += 16 * U) {
    __m512 xv[U];
    for (int u = 0; u < U; ++u) xv[u] = _mm512_loadu_ps(x + i + 16 * u);
    for (int s = 0; s < S; ++s)
      for (int u = 0; u < U; ++u) acc[s][u] = _mm512_fmadd_ps(W::Load(w[s], i + 16 * u), xv[u], acc[s][u]);
  }
  for (; i < cols; i += 16) {
    const int64_t left = cols - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    for (int s = 0; s < S; ++s) acc[s][0] = _mm512_fmadd_ps(W::LoadMasked(w[s], i, m), xv, acc[s][0]);
  }
  for (int s = 0; s < S; ++s) {
    __m512 t = acc[s][0];
    for (int u = 1; u < U; ++u) t = _mm512_add_ps(t, acc[s][u]);
    out[s] = _mm512_reduce_add_ps(t);
  }
}

using MatMulKernel = void (*)(TF_MATMUL_ARGS);

// Measured on a 2-core Zen 5 EPYC, TinyLlama-1.1B F16, 1 thread (share of the
// streaming-read ceiling): 2 streams ~91% (adding software prefetch 4 KiB ahead
// in each changed 1- and 2-thread speed by under 2% either way); 4 streams with prefetch
// 2 KiB ahead ~88%; 1 stream with prefetch 6 KiB ahead ~86%; 8 adjacent rows per
// step with prefetch of the next 8 rows (as q8_0_rows_x86.h) ~72%.
constexpr int kStreams = 2;

// Decode for n_tokens < 4, else `fallback` (the AVX2 kernel) does everything.
// The rows [r0, r1) are cut into kStreams equal contiguous parts read side by
// side, one row of each per step: a few long sequential streams, which the
// hardware prefetchers follow well without software prefetch (8 adjacent rows
// per step, i.e. 8 streams that each end after one row, measured ~20% slower).
template <class W, int U>
void MatMulFloatDecode(MatMulKernel fallback, TF_MATMUL_ARGS) {
  if (n_tokens >= 4) {
    fallback(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const float*>(xpacked);
  const int64_t per = (r1 - r0) / kStreams;
  // Tokens inside the row loop: with 2-3 tokens the step's rows are still in L1
  // for the next token, so the weights stream from memory once.
  for (int64_t j = 0; j < per; ++j) {
    const uint8_t* rows[kStreams];
    for (int s = 0; s < kStreams; ++s) rows[s] = wb + (r0 + s * per + j) * row_bytes;
    for (int64_t t = 0; t < n_tokens; ++t) {
      float out[kStreams];
      DotRows<W, kStreams, U>(rows, xb + t * cols, cols, out);
      for (int s = 0; s < kStreams; ++s) y[t * ldy + r0 + s * per + j] = out[s];
    }
  }
  for (int64_t r = r0 + kStreams * per; r < r1; ++r) {
    const uint8_t* row = wb + r * row_bytes;
    for (int64_t t = 0; t < n_tokens; ++t) DotRows<W, 1, U>(&row, xb + t * cols, cols, y + t * ldy + r);
  }
}

}  // namespace

void MatMulF16Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulFloatDecode<F16Z, 4>(MatMulF16Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulBF16Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulFloatDecode<BF16Z, 4>(MatMulBF16Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulF32Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulFloatDecode<F32Z, 4>(MatMulF32Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
