// tabfit quant: quantize / dequantize rows and the mat-mul the forward pass calls.
//
// Usage per mat-mul y = W x (W: [rows][cols] of type wtype):
//   1. PackActivations(wtype, x, n_tokens, cols, buf)   // buf: n_tokens * PackedActivationRowBytes(wtype, cols)
//   2. MatMulRows(wtype, w, RowBytes(wtype, cols), r0, r1, cols, buf, n_tokens, y, ldy)
//      (threads split [0, rows) into row ranges and call MatMulRows concurrently.)
//
// Packed activation formats (see quant/formats.h):
//   F32 / F16 / BF16 weights -> f32 copy of x (no precision loss on the activation side).
//   Q8_0 / Q4_0 weights      -> BlockQ8_0A per 32 values: exactly ggml's q8_0 activation
//                               (d = fp16(amax/127), q = roundf(x/d)); dot products equal
//                               ggml_vec_dot_{q8_0,q4_0}_q8_0 up to float summation order.
//   TF_Q8/Q4/Q3/Q2 weights   -> BlockQ8_KA per 256 values (f32 scale, int8, sums per 16).
//
// Shapes: cols must be a multiple of the weight type's block size (32 for Q8_0/Q4_0,
// 256 for the TF formats, 1 for F32/F16/BF16); callers check with RowBytes() != 0.
// Thread-safety: every function is pure and reentrant; none allocates memory.
// Dispatch: the best instruction set of this CPU (AVX2+FMA+F16C on x86 when present,
// WASM SIMD128 / NEON when compiled for them), else portable scalar code.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/types.h"

namespace tabfit {

// Bytes of one packed activation row (one token) for a weight type; 0 if unsupported
// or cols is not a multiple of the block size.
size_t PackedActivationRowBytes(TensorType wtype, int64_t cols);

// x: [n_tokens][cols] f32 -> out: n_tokens rows of PackedActivationRowBytes(wtype, cols).
void PackActivations(TensorType wtype, const float* x, int64_t n_tokens, int64_t cols, void* out);

// For rows r in [r0, r1) and tokens t in [0, n_tokens): y[t*ldy + r] = dot(W row r, x_t).
// `w` points at row 0; row r starts at w + r*row_bytes. xpacked from PackActivations.
void MatMulRows(TensorType wtype, const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                const void* xpacked, int64_t n_tokens, float* y, int64_t ldy);

// n elements (a whole number of blocks) of type t -> f32. Also covers read-only GGML
// types (Q4_1, Q5_0, Q5_1, Q4_K, Q6_K). No-op for types without dequantization
// (check CanDequantize first).
void DequantizeRow(TensorType t, const void* src, float* dst, int64_t n);

// f32 -> n elements of type t. importance: nullable, [n] non-negative per-column weights
// (e.g. activation second moments); the TF formats minimise sum importance*err^2 with it.
// Q8_0/Q4_0 are bit-exact with ggml's quantize_row_q8_0_ref / quantize_row_q4_0_ref
// (which ignore importance). No-op for types that cannot be written (check CanQuantize).
void QuantizeRow(TensorType t, const float* src, void* dst, int64_t n, const float* importance);

bool IsSupported(TensorType t);    // has MatMulRows / PackActivations kernels
bool CanDequantize(TensorType t);  // DequantizeRow works
bool CanQuantize(TensorType t);    // QuantizeRow works

// Bits per weight including scales (0 for unknown types).
double BitsPerWeight(TensorType t);

// ---- Run-time weight layouts ----
// A loader may rearrange a matrix that is only ever multiplied (never read row by
// row) into a layout whose kernel is faster on this CPU. The bytes per row stay
// RowBytes(type, cols); files never hold a layout (tabfit repacks after reading).
//   kTfQ2x16: TF_Q2 / TF_Q2R with 16 rows interleaved (quant/tf_q2x16.h), for
//             AVX-512 VNNI + VBMI + GFNI.
//   kQ8_0x16, kQ4_0x16: Q8_0 / Q4_0 with 16 rows interleaved (quant/q8_0x16.h,
//             quant/q4_0x16.h), for AVX-512 VNNI.
//   kTfQ4x16: TF_Q4 with 16 rows interleaved (quant/tf_q4x16.h), AVX-512 VNNI + VBMI.
//   kTfQ8x16: TF_Q8 with 16 rows interleaved (quant/tf_q8x16.h), AVX-512 VNNI.
enum class WeightLayout : uint8_t {
  kRowMajor = 0, kTfQ2x16 = 1, kQ8_0x16 = 2, kQ4_0x16 = 3, kTfQ4x16 = 4, kTfQ8x16 = 5
};
const char* WeightLayoutName(WeightLayout l);
// The layout to give a [rows x cols] matrix of type t on this CPU: kRowMajor unless a
// layout's fast kernel runs here and the shape fits it (rows a multiple of its tile).
WeightLayout PreferredLayout(TensorType t, int64_t rows, int64_t cols);
// Rows per tile (1 for kRowMajor); row ranges given to MatMulRowsLayout should start
// and end on tile boundaries (others work through a slow scalar path).
int64_t LayoutTileRows(WeightLayout l);
// Scratch bytes ToLayout / FromLayout need (tile rows * RowBytes(t, cols)).
size_t LayoutScratchBytes(WeightLayout l, TensorType t, int64_t cols);
// In place: `rows` (a multiple of the tile rows) row-major rows of type t at data
// -> layout l, and back. No-op for kRowMajor or a type the layout does not take.
void ToLayout(WeightLayout l, TensorType t, void* data, int64_t rows, int64_t cols, void* scratch);
void FromLayout(WeightLayout l, TensorType t, void* data, int64_t rows, int64_t cols, void* scratch);
// MatMulRows for a matrix stored in layout l (w points at row 0's tile).
void MatMulRowsLayout(WeightLayout l, TensorType wtype, const void* w, size_t row_bytes, int64_t r0, int64_t r1,
                      int64_t cols, const void* xpacked, int64_t n_tokens, float* y, int64_t ldy);

}  // namespace tabfit
