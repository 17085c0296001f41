// tabfit quant (private): TF_Q2x16, a run-time layout of TF_Q2 / TF_Q2R matrices
// with 16 rows interleaved, for the AVX-512 VNNI+VBMI+GFNI decode kernel.
//
// Why: the row-major TF_Q2 kernel spends about half its instructions per row on
// reductions (16 partial sums of a row into one per superblock) and on decoding
// each row's packed sub-scales and offsets. With 16 rows interleaved so that one
// int32 lane of a zmm IS one row, vpdpbusd with a broadcast activation dword
// accumulates 16 rows x 4 columns per instruction, the partial sums never need a
// horizontal reduction, and one header decode serves 16 rows.
//
// Bytes are exactly TF_Q2's (80 per row and superblock): a matrix of `rows` rows
// (a multiple of 16) keeps its size and is rearranged in place at load time.
// Files never hold this layout; tabfit repacks after reading (and checksumming).
//
// Geometry: row_bytes = nsb * 80 as for TF_Q2 (nsb = cols / 256). Tile t (rows
// 16t..16t+15) starts at w + t * 16 * row_bytes; its superblock b is the 1280
// bytes at tile + b * 1280:
//   [0, 32)      d of rows 0..15 (fp16, row order).
//   [32, 256)    32 chunks of 7 bytes: chunk 16h + r is row r's groups 8h..8h+7,
//                a 56-bit little-endian value whose bits 7j..7j+6 hold group
//                8h+j's field  sc | (z - 2) << 4  (sc 0..15, z 2..9: formats.h).
//   [256, 1280)  16 blocks of 64 bytes, block g = group g (elements 16g..16g+15):
//                byte 4r + j, bits 2k..2k+1 = the code of row r, element 16g+4k+j.
// The values (d, sc, z, codes) are the TF_Q2 block's, unchanged: results are
// bit-identical with TF_Q2's scalar kernel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace tabfit::qk {

// One TF_Q2 superblock's term of the scalar dot product, exactly what
// MatMulTfQ2Scalar adds per superblock (tf_formats.cpp).
float TfQ2SuperTerm(const BlockTfQ2& w, const BlockQ8_KA& x);

constexpr int kX16Rows = 16;
constexpr int kX16SuperBytes = kX16Rows * static_cast<int>(sizeof(BlockTfQ2));  // 1280
constexpr int kX16FieldsOffset = 32;
constexpr int kX16CodesOffset = 256;

// One superblock of 16 rows: src[r] (row r's block) -> the 1280 bytes at dst.
void PackTfQ2x16Super(const BlockTfQ2* const src[kX16Rows], uint8_t* dst);
// The inverse, for one row i (0..15) of a packed superblock.
void UnpackTfQ2x16Row(const uint8_t* super, int i, BlockTfQ2* out);

// Whole tiles, in place: rows (a multiple of 16) row-major TF_Q2 rows at data
// <-> the x16 layout. scratch: 16 * row_bytes bytes (row_bytes = cols / 256 * 80).
void TfQ2ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
void TfQ2FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);

// Mat-mul over an x16 matrix (w at tile 0); any r0 <= r1 (partial tiles allowed).
void MatMulTfQ2x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                         const void* xpacked, int64_t n_tokens, float* y, int64_t ldy);
#if defined(TABFIT_HAVE_X16_KERNEL)
// Needs AVX-512 F/BW/VL/VNNI plus VBMI and GFNI (TfQ2x16KernelAvailable()).
void MatMulTfQ2x16Avx512(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                         const void* xpacked, int64_t n_tokens, float* y, int64_t ldy);
#endif
// True when MatMulTfQ2x16Avx512 is compiled in and this CPU runs it.
bool TfQ2x16KernelAvailable();

}  // namespace tabfit::qk
