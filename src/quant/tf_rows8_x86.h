// tabfit quant (private): the end of an 8-row TF decode step, shared by the AVX2
// (kernels_tf_avx2.cpp) and AVX-512 VNNI (kernels_avx512vnni.cpp) kernels. Internal
// linkage, so the copies compiled with different -m flags never meet at link time.
// Both translation units are compiled with -ffp-contract=off: the float expression
// must stay the scalar oracle's, term for term.
#pragma once

#include <immintrin.h>

namespace tabfit::qk {
namespace {

// The 8 rows' [sumi pair sums (2) | summ pair sums (2)] per 128-bit half (v[r])
// reduced to sumi and summ per row, in the lane order rows 0,1,4,5,2,3,6,7 (that of
// dv, mv), and turned into the scalar oracle's SuperTerm dy * (d*sumi - dmin*summ)
// in its order (no contraction: -ffp-contract=off), so the sums stay bit-identical.
static inline __m256 SuperTerms8(const __m256i* v, __m256 dv, __m256 mv, float dy) {
  const __m256i w01 = _mm256_hadd_epi32(v[0], v[1]), w23 = _mm256_hadd_epi32(v[2], v[3]);
  const __m256i w45 = _mm256_hadd_epi32(v[4], v[5]), w67 = _mm256_hadd_epi32(v[6], v[7]);
  const __m256 xs = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permute2x128_si256(w01, w23, 0x20),
                                                         _mm256_permute2x128_si256(w01, w23, 0x31)));
  const __m256 ys = _mm256_castsi256_ps(_mm256_add_epi32(_mm256_permute2x128_si256(w45, w67, 0x20),
                                                         _mm256_permute2x128_si256(w45, w67, 0x31)));
  const __m256i isum = _mm256_castps_si256(_mm256_shuffle_ps(xs, ys, _MM_SHUFFLE(2, 0, 2, 0)));
  const __m256i msum = _mm256_castps_si256(_mm256_shuffle_ps(xs, ys, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m256 a = _mm256_mul_ps(dv, _mm256_cvtepi32_ps(isum));
  const __m256 m = _mm256_mul_ps(mv, _mm256_cvtepi32_ps(msum));
  return _mm256_mul_ps(_mm256_set1_ps(dy), _mm256_sub_ps(a, m));
}
// Rows 0,1,4,5,2,3,6,7 (SuperTerms8's lane order) back to 0..7.
static inline void StoreRows8(float* y, __m256 sumf) {
  _mm256_storeu_ps(y, _mm256_permutevar8x32_ps(sumf, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)));
}

}  // namespace
}  // namespace tabfit::qk
