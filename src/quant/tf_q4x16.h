// tabfit quant (private): TF_Q4x16, a run-time layout of TF_Q4 matrices with 16
// rows interleaved, for the AVX-512 VNNI+VBMI kernel (the TF_Q4 counterpart of
// tf_q2x16.h: one sequential stream per thread, one int32 lane per row, one
// header decode per 16 rows, no horizontal reductions).
//
// Bytes are exactly TF_Q4's (144 per row and superblock), rearranged in place.
// Geometry: row_bytes = nsb * 144. Tile t (rows 16t..16t+15) starts at
// w + t * 16 * row_bytes; its superblock b is the 2304 bytes at tile + b * 2304:
//   [0, 32)       d of rows 0..15 (fp16);   [32, 64) dmin of rows 0..15 (fp16);
//   [64, 256)     32 chunks of 6 bytes: chunk r = row r's 8 sub-scales, chunk 16 + r
//                 its 8 mins, a 48-bit little-endian value with group j's 6-bit
//                 field at bits 6j..6j+5;
//   [256, 2304)   8 groups of 256 bytes, group g = 4 steps of 64 bytes: step k,
//                 byte 4r + j: low nibble = code(row r, element 32g + 4k + j),
//                 high nibble = code(row r, element 32g + 16 + 4k + j).
// Values are TF_Q4's unchanged: results are bit-identical with TF_Q4's scalar kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace tabfit::qk {

// One TF_Q4 superblock's term of the scalar dot, what MatMulTfQ4Scalar adds (tf_formats.cpp).
float TfQ4SuperTerm(const BlockTfQ4& w, const BlockQ8_KA& x);

constexpr int kQ4sRows = 16;
constexpr int kQ4sSuperBytes = kQ4sRows * static_cast<int>(sizeof(BlockTfQ4));  // 2304
constexpr int kQ4sScalesOffset = 64;
constexpr int kQ4sCodesOffset = 256;

void TfQ4ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void TfQ4FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void MatMulTfQ4x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#if defined(TABFIT_HAVE_X16_KERNEL)
// Needs AVX-512 F/BW/VL/VNNI plus VBMI (TfQ4x16KernelAvailable()).
void MatMulTfQ4x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#endif
bool TfQ4x16KernelAvailable();

}  // namespace tabfit::qk
