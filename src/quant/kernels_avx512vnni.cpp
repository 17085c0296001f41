// AVX-512 VNNI (with VL, on 256-bit vectors) decode kernels for Q8_0 / Q4_0.
// Compiled with -mavx2 -mfma -mf16c -mavx512f -mavx512vl -mavx512bw -mavx512vnni;
// only called after CPUID says the CPU has all of them (Isa::kAvx512Vnni).
//
// The one-token mat-vec uses q8_0_rows_x86.h with vpdpbusd (one instruction for
// maddubs + madd). Prefill (4 or more tokens) and the rows % 8 tail use the AVX2
// kernels, which are compute-bound on other work than the byte dot product.
#include <immintrin.h>

#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/q8_0_rows_x86.h"

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

}  // namespace

void MatMulQ8_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q8_0Rows8<DotVnni>, MatMulQ8_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}
void MatMulQ4_0Avx512Vnni(TF_MATMUL_ARGS) {
  MatMulDecodeVnni(Q4_0Rows8<DotVnni>, MatMulQ4_0Avx2, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

}  // namespace tabfit::qk
