// AVX-512 one-token mat-vec for F16 / BF16 / F32 weights against f32 activations.
// Compiled with the kernels_avx512vnni.cpp flags (-mavx512f -mavx512vl -mavx512bw
// on top of the AVX2 ones); only called after CPUID says the CPU has them
// (Isa::kAvx512Vnni, whose test includes F/VL/BW). No BF16 or FP16 extension
// instructions are used: F16 -> f32 is vcvtph2ps (F16C's AVX-512 form), BF16 ->
// f32 a zero-extend and shift.
//
// Decode (fewer than 4 tokens): eight weight rows per step, 512-bit vectors, two
// accumulators per row (16 independent FMA chains), and software prefetch of the
// NEXT step's eight rows swept across this step (as NextRowsPrefetch in
// q8_0_rows_x86.h does for Q8_0/Q4_0): the hardware prefetchers, handed eight
// streams that each end after one row, otherwise leave much of the memory latency
// exposed. Columns that are not a multiple of the vector width are read with
// masked loads (nothing past the row end is touched). Prefill (4 or more tokens)
// and the rows % 8 tail use the AVX2 kernels.
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
  static constexpr int kBytes = 2;
  static __m512 Load(const uint8_t* p, int64_t i) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
  }
  static __m512 LoadMasked(const uint8_t* p, int64_t i, __mmask16 m) {
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, p + 2 * i));
  }
};
struct BF16Z {
  static constexpr int kBytes = 2;
  static __m512 Widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }
  static __m512 Load(const uint8_t* p, int64_t i) {
    return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 2 * i)));
  }
  static __m512 LoadMasked(const uint8_t* p, int64_t i, __mmask16 m) {
    return Widen(_mm256_maskz_loadu_epi16(m, p + 2 * i));
  }
};
struct F32Z {
  static constexpr int kBytes = 4;
  static __m512 Load(const uint8_t* p, int64_t i) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p) + i); }
  static __m512 LoadMasked(const uint8_t* p, int64_t i, __mmask16 m) {
    return _mm512_maskz_loadu_ps(m, reinterpret_cast<const float*>(p) + i);
  }
};

// y[r] = dot(row w + r*rb, x) for r in [0, 8); cols elements per row.
// U: 16-element units per row per loop iteration (U accumulators per row).
// pf_lines: cache lines of the next step prefetched per iteration (0: none).
template <class W, int U>
static inline void Rows8(const uint8_t* w, size_t rb, const float* x, int64_t cols, int pf_lines, float* y) {
  __m512 acc[8][U];
  for (int r = 0; r < 8; ++r)
    for (int u = 0; u < U; ++u) acc[r][u] = _mm512_setzero_ps();
  const char* pf = reinterpret_cast<const char*>(w + 8 * rb);
  int64_t i = 0;
  for (; i + 16 * U <= cols; i += 16 * U) {
    for (int l = 0; l < pf_lines; ++l) _mm_prefetch(pf + 64 * l, _MM_HINT_T0);
    pf += 64 * pf_lines;
    __m512 xv[U];
    for (int u = 0; u < U; ++u) xv[u] = _mm512_loadu_ps(x + i + 16 * u);
    for (int r = 0; r < 8; ++r)
      for (int u = 0; u < U; ++u) acc[r][u] = _mm512_fmadd_ps(W::Load(w + r * rb, i + 16 * u), xv[u], acc[r][u]);
  }
  for (; i < cols; i += 16) {
    const int64_t left = cols - i;
    const __mmask16 m = left >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << left) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(m, x + i);
    for (int r = 0; r < 8; ++r) acc[r][0] = _mm512_fmadd_ps(W::LoadMasked(w + r * rb, i, m), xv, acc[r][0]);
  }
  for (int r = 0; r < 8; ++r) {
    __m512 s = acc[r][0];
    for (int u = 1; u < U; ++u) s = _mm512_add_ps(s, acc[r][u]);
    y[r] = _mm512_reduce_add_ps(s);
  }
}

// Decode for n_tokens < 4, else `fallback` (the AVX2 kernel) does everything.
using MatMulKernel = void (*)(TF_MATMUL_ARGS);

template <class W, int U>
void MatMulFloatDecode(MatMulKernel fallback, TF_MATMUL_ARGS) {
  if (n_tokens >= 4) {
    fallback(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const float*>(xpacked);
  // Prefetch only densely packed rows (weight matrices): with strided rows (one
  // head's slice of a KV-cache row) most of the swept range would be other data.
  const int64_t iters = cols / (16 * U);
  const int pf_lines = iters > 0 && row_bytes == static_cast<size_t>(cols) * W::kBytes
                           ? static_cast<int>((8 * row_bytes / 64 + iters - 1) / iters)
                           : 0;
  for (int64_t t = 0; t < n_tokens; ++t) {
    const float* xt = xb + t * cols;
    int64_t r = r0;
    for (; r + 8 <= r1; r += 8) Rows8<W, U>(wb + r * row_bytes, row_bytes, xt, cols, pf_lines, y + t * ldy + r);
    if (r < r1) fallback(w, row_bytes, r, r1, cols, xt, 1, y + t * ldy, ldy);
  }
}

}  // namespace

void MatMulF16Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulFloatDecode<F16Z, 2>(MatMulF16Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulBF16Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulFloatDecode<BF16Z, 2>(MatMulBF16Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulF32Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulFloatDecode<F32Z, 2>(MatMulF32Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
