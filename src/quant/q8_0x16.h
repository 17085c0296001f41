// tabfit quant (private): Q8_0x16, a run-time layout of Q8_0 matrices with 16
// rows interleaved, for the AVX-512 VNNI decode/prefill kernel.
//
// Why: the row-major Q8_0 kernels read 8 rows at once, 8 interleaved memory
// streams per thread that the hardware prefetcher alone does not keep ahead of
// (they depend on a software prefetch of the next rows). Interleaving 16 rows
// makes each thread's work ONE sequential stream, and one int32 lane of a zmm is
// one row, so vpdpbusd with a broadcast activation dword does 16 rows x 4
// columns per instruction with no horizontal reductions.
//
// Bytes are exactly Q8_0's (34 per row and block of 32): a matrix of `rows` rows
// (a multiple of 16) keeps its size and is rearranged in place at load time.
// Geometry: row_bytes = nb * 34 (nb = cols / 32). Tile t (rows 16t..16t+15)
// starts at w + t * 16 * row_bytes; its block b is the 544 bytes at tile + b * 544:
//   [0, 32)     d of rows 0..15 (fp16, row order);
//   [32, 544)   8 steps of 64 bytes: step k, byte 4r + j = q(row r, column 4k+j) XOR 0x80
//               (the code + 128 as an unsigned byte, what vpdpbusd multiplies).
// The kernel subtracts 128 * sum(y) per block, so its integer sums are the scalar
// oracle's; it accumulates with FMA as the row-major x86 Q8_0 decode kernels do.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace tabfit::qk {

constexpr int kQ8x16Rows = 16;
constexpr int kQ8x16BlockBytes = kQ8x16Rows * static_cast<int>(sizeof(BlockQ8_0));  // 544

// In place, whole tiles: rows (a multiple of 16) row-major Q8_0 rows <-> Q8_0x16.
// scratch: 16 * row_bytes bytes.
void Q8_0ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void Q8_0FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);

// Mat-mul over a Q8_0x16 matrix (w at tile 0); any r0 <= r1 (partial tiles allowed).
// Bit-identical with MatMulQ8_0Scalar on the row-major matrix.
void MatMulQ8_0x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
// Needs AVX-512 F/BW/VL/VNNI (Isa::kAvx512Vnni). Equals MatMulQ8_0x16Scalar up to
// the fused multiply-add of each block's term. Rows of more than 131072 columns
// run the scalar kernel.
void MatMulQ8_0x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy);
#endif
bool Q8_0x16KernelAvailable();

}  // namespace tabfit::qk
