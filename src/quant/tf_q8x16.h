// tabfit quant (private): TF_Q8x16, a run-time layout of TF_Q8 matrices with 16
// rows interleaved, for the AVX-512 VNNI kernel (see q8_0x16.h for why).
//
// Bytes are exactly TF_Q8's (266 per row and superblock), rearranged in place.
// Geometry: row_bytes = nsb * 266. Tile t (rows 16t..16t+15) starts at
// w + t * 16 * row_bytes; its superblock b is the 4256 bytes at tile + b * 4256:
//   [0, 32)       d of rows 0..15 (fp16);
//   [32, 160)     sub-scales: dword r of [32, 96) = row r's sc[0..3], of [96, 160) sc[4..7];
//   [160, 4256)   8 groups of 512 bytes, group g = 8 steps of 64 bytes: step k,
//                 byte 4r + j = code(row r, element 32g + 4k + j) XOR 0x80.
// The kernel subtracts 128 * sum(y) per group: integer sums and the float
// expression are the scalar oracle's, results bit-identical with MatMulTfQ8Scalar.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace tabfit::qk {

constexpr int kQ8sRows = 16;
constexpr int kQ8sSuperBytes = kQ8sRows * static_cast<int>(sizeof(BlockTfQ8));  // 4256
constexpr int kQ8sCodesOffset = 160;

void TfQ8ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void TfQ8FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void MatMulTfQ8x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
void MatMulTfQ8x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#endif
bool TfQ8x16KernelAvailable();

}  // namespace tabfit::qk
