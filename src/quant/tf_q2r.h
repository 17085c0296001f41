// tabfit quant: TF_Q2R — TF_Q2 codes of randomized-Hadamard-rotated ("incoherent") weights.
//
// Every 256-element superblock of a weight row w is stored as TF_Q2(R w), where
//   R = H · D / 16,  D = diag(s), s_i in {+1, -1} a fixed pseudo-random sign pattern
//   (kTfRotSigns), H the 256 x 256 Sylvester-Hadamard matrix (entries ±1).
// R is orthonormal (R^T R = I), so w·x = (R w)·(R x): the packed activation of a TF_Q2R
// weight is the Q8_KA packing of R x per superblock (PackType::kQ8_KAR), and the mat-mul
// kernels are exactly TF_Q2's. Rotation spreads outliers over the whole superblock, which
// makes the 4-level grid fit better and the int8 activation quantization finer.
// Dequantization returns R^T · TF_Q2-decoded values (the weights in the original basis).
// Importance: diag(R diag(imp) R^T) is the block mean of imp (R_ij^2 = 1/256), the same
// for every element of a superblock, so the quantizer fits each rotated superblock with
// uniform weights (importance is accepted and does not change the result).
// Block bytes, layout and bits/weight are TF_Q2's (80 B / 256 = 2.5 bits/weight).
//
// Thread-safety: every function is pure and reentrant; none allocates memory.
#pragma once

#include <cstdint>

namespace tabfit {

// In place, every 256-element block of x[0..n) (n a multiple of 256): x <- R x.
void TfRotate256(float* x, int64_t n);
// In place, the inverse: x <- R^T x.
void TfUnrotate256(float* x, int64_t n);

namespace qk {
void FromFloatTfQ2R(const float* src, void* dst, int64_t n, const float* imp);
void ToFloatTfQ2R(const void* src, float* dst, int64_t n);
// Q8_KA packing of R x (block layout of BlockQ8_KA). The AVX2 variant rotates with the
// same portable code and packs with PackQ8_KAAvx2 (bit-identical with the scalar one).
void PackQ8_KARScalar(const float* x, int64_t n_tokens, int64_t cols, void* out);
#if defined(TABFIT_HAVE_AVX2_KERNELS)
void PackQ8_KARAvx2(const float* x, int64_t n_tokens, int64_t cols, void* out);
#endif
}  // namespace qk

}  // namespace tabfit
