// tabfit quant: tensor element types and their storage geometry.
//
// Ids below 1000 are GGML's (so GGUF files map 1:1); tabfit's own formats use
// ids >= 1000 and are only written into tabfit packages / tabfit-written GGUF.
// A row of `n` elements of a block type occupies RowBytes(type, n) bytes;
// n must be a multiple of the block size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tabfit {

enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kBF16 = 30,
  // tabfit's own formats (defined in quant/formats.h).
  kTF_Q8 = 1000,  // 8-bit
  kTF_Q4 = 1001,  // 4-bit
  kTF_Q3 = 1002,  // 3-bit
  kTF_Q2 = 1003,  // 2-bit
  kTF_Q2R = 1004, // 2-bit, TF_Q2 of Hadamard-rotated weights (quant/tf_q2r.h)
  kTF_Q2S = 1005, // 2.3125-bit symmetric groups (quant/tf_q2s.h)
  kTF_Q2SR = 1006, // TF_Q2S of Hadamard-rotated weights (quant/tf_q2s.h)
};

// Geometry known without the kernels: block size (elements) and bytes per block.
// Returns false for unknown ids (a GGUF reader must reject those cleanly).
bool TensorTypeGeometry(uint32_t type_id, int64_t* block_elems, int64_t* block_bytes);

// "F16", "Q4_0", "TF_Q2", ... ("?" for unknown).
std::string_view TensorTypeName(TensorType t);

// Bytes of a row of n elements; 0 if n is not a multiple of the block size or
// the type is unknown.
size_t RowBytes(TensorType t, int64_t n);

}  // namespace tabfit
