// tabfit quant (private): Q4_0x16, a run-time layout of Q4_0 matrices with 16 rows
// interleaved, for the AVX-512 VNNI kernel (the Q4_0 counterpart of q8_0x16.h:
// one sequential stream per thread, one int32 lane per row, no reductions).
//
// Bytes are exactly Q4_0's (18 per row and block of 32), rearranged in place.
// Geometry: row_bytes = nb * 18 (nb = cols / 32). Tile t (rows 16t..16t+15) starts
// at w + t * 16 * row_bytes; its block b is the 288 bytes at tile + b * 288:
//   [0, 32)     d of rows 0..15 (fp16, row order);
//   [32, 288)   4 steps of 64 bytes: step k, byte 4r + j: low nibble = code of
//               row r, column 4k+j; high nibble = column 16+4k+j (codes 0..15 as
//               stored, value = code - 8; Q4_0 pairs columns j and j+16 the same way).
// The kernel takes sum(code * y) - 8 * sum(y): the oracle's integer sums.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace tabfit::qk {

constexpr int kQ4x16Rows = 16;
constexpr int kQ4x16BlockBytes = kQ4x16Rows * static_cast<int>(sizeof(BlockQ4_0));  // 288

// In place, whole tiles: rows (a multiple of 16) row-major Q4_0 rows <-> Q4_0x16.
// scratch: 16 * row_bytes bytes.
void Q4_0ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void Q4_0FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);

// Mat-mul over a Q4_0x16 matrix (w at tile 0); any r0 <= r1 (partial tiles allowed).
// Bit-identical with MatMulQ4_0Scalar on the row-major matrix.
void MatMulQ4_0x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
// Needs AVX-512 F/BW/VL/VNNI. Equals MatMulQ4_0x16Scalar up to the fused
// multiply-add of each block's term (as the row-major x86 Q4_0 kernels). Rows of
// more than 131072 columns run the scalar kernel.
void MatMulQ4_0x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#endif
bool Q4_0x16KernelAvailable();

}  // namespace tabfit::qk
