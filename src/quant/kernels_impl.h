// tabfit quant (private): declarations of the per-ISA kernel functions that
// kernels.cpp puts into the kernel list. Not for use outside src/quant.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

namespace tabfit::qk {

#define TF_MATMUL_ARGS                                                                       \
  const void *w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void *xpacked, \
      int64_t n_tokens, float *y, int64_t ldy
#define TF_PACK_ARGS const float *x, int64_t n_tokens, int64_t cols, void *out

// Round half away from zero (C roundf), the rounding ggml's reference quantizers use.
inline int RoundAway(float v) { return static_cast<int>(std::round(v)); }

// ---- scalar (kernels_scalar.cpp, tf_formats.cpp) ----
void MatMulF32Scalar(TF_MATMUL_ARGS);
void MatMulF16Scalar(TF_MATMUL_ARGS);
void MatMulBF16Scalar(TF_MATMUL_ARGS);
void MatMulQ8_0Scalar(TF_MATMUL_ARGS);
void MatMulQ4_0Scalar(TF_MATMUL_ARGS);
void MatMulTfQ8Scalar(TF_MATMUL_ARGS);
void MatMulTfQ4Scalar(TF_MATMUL_ARGS);
void MatMulTfQ3Scalar(TF_MATMUL_ARGS);
void MatMulTfQ2Scalar(TF_MATMUL_ARGS);
void PackF32Scalar(TF_PACK_ARGS);
void PackQ8_0AScalar(TF_PACK_ARGS);
void PackQ8_KAScalar(TF_PACK_ARGS);

void ToFloatF32(const void* src, float* dst, int64_t n);
void ToFloatF16(const void* src, float* dst, int64_t n);
void ToFloatBF16(const void* src, float* dst, int64_t n);
void ToFloatQ8_0(const void* src, float* dst, int64_t n);
void ToFloatQ4_0(const void* src, float* dst, int64_t n);
void ToFloatQ4_1(const void* src, float* dst, int64_t n);
void ToFloatQ5_0(const void* src, float* dst, int64_t n);
void ToFloatQ5_1(const void* src, float* dst, int64_t n);
void ToFloatQ4_K(const void* src, float* dst, int64_t n);
void ToFloatQ6_K(const void* src, float* dst, int64_t n);
void ToFloatTfQ8(const void* src, float* dst, int64_t n);
void ToFloatTfQ4(const void* src, float* dst, int64_t n);
void ToFloatTfQ3(const void* src, float* dst, int64_t n);
void ToFloatTfQ2(const void* src, float* dst, int64_t n);

void FromFloatF32(const float* src, void* dst, int64_t n, const float* imp);
void FromFloatF16(const float* src, void* dst, int64_t n, const float* imp);
void FromFloatBF16(const float* src, void* dst, int64_t n, const float* imp);
void FromFloatQ8_0(const float* src, void* dst, int64_t n, const float* imp);  // == quantize_row_q8_0_ref
void FromFloatQ4_0(const float* src, void* dst, int64_t n, const float* imp);  // == quantize_row_q4_0_ref
void FromFloatTfQ8(const float* src, void* dst, int64_t n, const float* imp);
void FromFloatTfQ4(const float* src, void* dst, int64_t n, const float* imp);
void FromFloatTfQ3(const float* src, void* dst, int64_t n, const float* imp);
void FromFloatTfQ2(const float* src, void* dst, int64_t n, const float* imp);

// Vec ops, scalar.
float DotF32Scalar(const float* a, const float* b, int64_t n);
float DotF16F32Scalar(const uint16_t* a, const float* b, int64_t n);
void AxpyF32Scalar(float a, const float* x, float* y, int64_t n);
void AxpyF16Scalar(float a, const uint16_t* x, float* y, int64_t n);
void F32ToF16Scalar(const float* x, uint16_t* y, int64_t n);
void F16ToF32Scalar(const uint16_t* x, float* y, int64_t n);
double ExpShiftSumScalar(float* x, float shift, int64_t n);
double SumSquaresScalar(const float* x, int64_t n);
void SiluMulScalar(float* g, const float* u, int64_t n);

// ---- x86 AVX2+FMA+F16C (kernels_avx2.cpp, vec_avx2.cpp; built with -mavx2 -mfma -mf16c) ----
// TABFIT_HAVE_AVX2_KERNELS is defined by CMake when kernels_avx2.cpp is compiled in.
#if defined(TABFIT_HAVE_AVX2_KERNELS)
void MatMulF32Avx2(TF_MATMUL_ARGS);
void MatMulF16Avx2(TF_MATMUL_ARGS);
void MatMulBF16Avx2(TF_MATMUL_ARGS);
void MatMulQ8_0Avx2(TF_MATMUL_ARGS);
void MatMulQ4_0Avx2(TF_MATMUL_ARGS);
void MatMulTfQ8Avx2(TF_MATMUL_ARGS);
void MatMulTfQ4Avx2(TF_MATMUL_ARGS);
void MatMulTfQ3Avx2(TF_MATMUL_ARGS);
void MatMulTfQ2Avx2(TF_MATMUL_ARGS);
void PackQ8_0AAvx2(TF_PACK_ARGS);
void PackQ8_KAAvx2(TF_PACK_ARGS);
float DotF32Avx2(const float* a, const float* b, int64_t n);
float DotF16F32Avx2(const uint16_t* a, const float* b, int64_t n);
void AxpyF32Avx2(float a, const float* x, float* y, int64_t n);
void AxpyF16Avx2(float a, const uint16_t* x, float* y, int64_t n);
void F32ToF16Avx2(const float* x, uint16_t* y, int64_t n);
void F16ToF32Avx2(const uint16_t* x, float* y, int64_t n);
double ExpShiftSumAvx2(float* x, float shift, int64_t n);
double SumSquaresAvx2(const float* x, int64_t n);
void SiluMulAvx2(float* g, const float* u, int64_t n);
#endif

// ---- x86 AVX-512 VNNI + VL on 256-bit vectors (kernels_avx512vnni.cpp; built with
// -mavx512f -mavx512vl -mavx512bw -mavx512vnni on top of the AVX2 flags) ----
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
void MatMulQ8_0Avx512Vnni(TF_MATMUL_ARGS);
void PackQ8_KAAvx512(TF_PACK_ARGS);
void PackQ8_KARAvx512(TF_PACK_ARGS);
void MatMulQ4_0Avx512Vnni(TF_MATMUL_ARGS);
void MatMulTfQ2Avx512Vnni(TF_MATMUL_ARGS);  // TF_Q2 and TF_Q2R (same blocks)
void MatMulTfQ2Avx512VnniNoVbmi(TF_MATMUL_ARGS);  // the same without AVX512_VBMI (tests reach both)
// kernels_avx512_float.cpp (same flags; 512-bit decode for float weights).
void MatMulF32Avx512Vnni(TF_MATMUL_ARGS);
void MatMulF16Avx512Vnni(TF_MATMUL_ARGS);
void MatMulBF16Avx512Vnni(TF_MATMUL_ARGS);
#endif

// ---- WASM SIMD128 (kernels_wasm.cpp) ----
#if defined(__wasm_simd128__)
#define TABFIT_HAVE_WASM_KERNELS 1
void MatMulF32Wasm(TF_MATMUL_ARGS);
void MatMulF16Wasm(TF_MATMUL_ARGS);
void MatMulQ8_0Wasm(TF_MATMUL_ARGS);
void MatMulQ4_0Wasm(TF_MATMUL_ARGS);
void MatMulBF16Wasm(TF_MATMUL_ARGS);
void MatMulTfQ8Wasm(TF_MATMUL_ARGS);
void MatMulTfQ4Wasm(TF_MATMUL_ARGS);
void MatMulTfQ3Wasm(TF_MATMUL_ARGS);
void MatMulTfQ2Wasm(TF_MATMUL_ARGS);
float DotF32Wasm(const float* a, const float* b, int64_t n);
float DotF16F32Wasm(const uint16_t* a, const float* b, int64_t n);
void AxpyF32Wasm(float a, const float* x, float* y, int64_t n);
void AxpyF16Wasm(float a, const uint16_t* x, float* y, int64_t n);
double SumSquaresWasm(const float* x, int64_t n);
double ExpShiftSumWasm(float* x, float shift, int64_t n);
void SiluMulWasm(float* g, const float* u, int64_t n);
#endif

// ---- ARM NEON (kernels_neon.cpp) ----
#if defined(__ARM_NEON) && defined(__aarch64__)
#define TABFIT_HAVE_NEON_KERNELS 1
void MatMulF32Neon(TF_MATMUL_ARGS);
void MatMulQ8_0Neon(TF_MATMUL_ARGS);
void MatMulQ4_0Neon(TF_MATMUL_ARGS);
float DotF32Neon(const float* a, const float* b, int64_t n);
void AxpyF32Neon(float a, const float* x, float* y, int64_t n);
#endif

}  // namespace tabfit::qk
