// tabfit quant: f32/f16 vector helpers for attention, norms, the KV cache.
// SIMD-dispatched like kernels.h (AVX2+FMA+F16C / WASM SIMD128 / NEON / scalar).
// Thread-safety: pure, reentrant, no allocation. f16 values are IEEE binary16 bits.
#pragma once

#include <cstdint>

namespace tabfit {

float DotF32(const float* a, const float* b, int64_t n);
float DotF16F32(const uint16_t* a_f16, const float* b, int64_t n);  // KV cache keys in f16
void AxpyF32(float a, const float* x, float* y, int64_t n);         // y += a*x
void AxpyF16(float a, const uint16_t* x_f16, float* y, int64_t n);  // y += a*x, x in f16
void ConvertF32ToF16(const float* x, uint16_t* y, int64_t n);       // round to nearest even
void ConvertF16ToF32(const uint16_t* x, float* y, int64_t n);
// Softmax's exponentials: x[i] = exp(x[i] - shift) in place; returns their sum
// (accumulated in double). Scalar: std::exp; SIMD: a Cephes-style polynomial
// within 2 ulp of std::exp (inputs below -87.3 give ~1e-38 instead of 0 / denormals).
double ExpShiftSum(float* x, float shift, int64_t n);
// sum(x[i]^2), every product and sum in double (RMSNorm's, as ggml accumulates
// it). SIMD entries sum in a different order: equal to the scalar's within
// n * 2^-52 relative.
double SumSquares(const float* x, int64_t n);
// SwiGLU's gate: g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i], in place.
// Scalar: std::exp; SIMD: the ExpShiftSum polynomial, so within a few ulp of the
// scalar (for g < -87.3 the result is ~g * 1e-38 * u instead of smaller).
void SiluMul(float* g, const float* u, int64_t n);

}  // namespace tabfit
