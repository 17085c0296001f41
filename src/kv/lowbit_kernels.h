// tabfit kv (private to the kv module and its tests): the KIVI-style low-bit
// formats of the KV cache and the attention kernels that run on them.
//
// A *group* is n values (n a multiple of 32) quantized together, asymmetric:
//   header: f16 scale s, f16 minimum m                     (4 bytes)
//   codes:  n/32 sub-blocks of 32 codes at `bits` ∈ {2,3,4} (32*bits/8 bytes each)
//   value i = m + code_i * s,  code_i ∈ [0, 2^bits - 1].
// QuantizeGroup rounds m down and s up to f16 so that [m, m + (2^bits-1)s]
// covers the group's range: every value is within s/2 of its original (plus
// float rounding) — the bound the tests check.
//
// Packing of one sub-block of 32 codes (chosen so 8-wide and 4-wide SIMD
// unpack whole vectors with shifts and masks):
//   2 bits: byte j (0..7) holds codes j, j+8, j+16, j+24 at bits 0, 2, 4, 6
//   4 bits: byte j (0..15) holds code j (low nibble) and code j+16 (high nibble)
//   3 bits: the low two bits as for 2 bits (8 bytes), then a little-endian
//           32-bit word whose bit i is bit 2 of code i (4 bytes)
//
// Keys are quantized per channel over a group of G tokens (G ∈ {32, 64, 128}):
// a *key record* is one channel's group (4 + G*bits/8 bytes); a head's hd
// channels are hd consecutive records. Values are quantized per token over
// groups of Gv channels (Gv = min(G, head_dim)): a *value record* is one
// token-head's hd/Gv consecutive groups.
//
// The recent window stores tokens at 8 bits (ggml Q8_0 blocks of 32: f16 scale
// + 32 int8) or 16 bits (f16 values); those kernels are here too.
//
// Kernels: Scalar() is the oracle (dequantize, then multiply, in plain loops);
// Best() is AVX2+FMA+F16C when the CPU has it (x86-64), WebAssembly SIMD128
// when built with -msimd128, else the scalar set. Every entry is reentrant.
#pragma once

#include <cstddef>
#include <cstdint>

#include "quant/formats.h"

namespace tabfit::kvlow {

constexpr int kSub = 32;          // codes per packed sub-block
constexpr int kMaxHeadDim = 1024;
constexpr size_t kHeader = 4;     // f16 scale + f16 min

inline constexpr size_t SubBytes(int bits) { return static_cast<size_t>(4 * bits); }
inline constexpr size_t GroupBytes(int n, int bits) { return kHeader + static_cast<size_t>(n / kSub) * SubBytes(bits); }
inline constexpr bool ValidBits(int bits) { return bits >= 2 && bits <= 4; }

// Quantizes x[0], x[stride], ..., x[(n-1)*stride] (n a multiple of 32) into
// GroupBytes(n, bits) bytes at out.
void QuantizeGroup(const float* x, size_t stride, int n, int bits, uint8_t* out);
// The inverse: x[i*stride] = m + code_i * s.
void DequantizeGroup(const uint8_t* in, int n, int bits, float* x, size_t stride);
// The header's scale and minimum as floats.
void GroupRange(const uint8_t* in, float* scale, float* min);

// Unpacks one sub-block's 32 codes (the packing above).
void UnpackSub(const uint8_t* p, int bits, uint8_t codes[kSub]);
// Value i of a group (without unpacking the rest).
float DequantAt(const uint8_t* group, int bits, int i);

struct Kernels {
  const char* name;
  // scores[t] = sum_{c < hd} q[c] * key(c, t) for t < G, where channel c's
  // record starts at recs + c * rec_bytes (rec_bytes = GroupBytes(G, bits)).
  void (*key_scores)(const uint8_t* recs, size_t rec_bytes, int hd, int G, int bits, const float* q, float* scores);
  // out[c] += p * value(c) for c < hd: the hd/Gv consecutive groups at recs.
  void (*value_axpy)(const uint8_t* recs, int hd, int Gv, int bits, float p, float* out);
  // q . dequant(nb Q8_0 blocks); out[0..32nb) += p * dequant(blocks).
  float (*dot_q8)(const BlockQ8_0* b, int nb, const float* q);
  void (*axpy_q8)(float p, const BlockQ8_0* b, int nb, float* out);
  // q . v and out += p * v for n f16 values.
  float (*dot_f16)(const uint16_t* k, int n, const float* q);
  void (*axpy_f16)(float p, const uint16_t* v, int n, float* out);

  // Tiles for grouped-query attention (n_q query heads share one kv head): a
  // sub-block of 32 tokens is dequantized once into L1 and every head works on it.
  // kt[c*32 + t] = key(c, 32*sub + t) for the hd channel records at recs.
  void (*key_tile)(const uint8_t* recs, size_t rec_bytes, int hd, int bits, int sub, float* kt);
  // scores[h*ld + t] = sum_c q[h*hd + c] * kt[c*32 + t] for h < n_q, t < len (<= 32).
  void (*tile_scores)(const float* kt, int hd, const float* q, int n_q, int len, float* scores, size_t ld);
  // vt[t*hd + c] = value(c) of token t < len, whose hd/Gv groups start at recs + t * stride.
  void (*value_tile)(const uint8_t* recs, size_t stride, int len, int hd, int Gv, int bits, float* vt);
  // kt[c*32 + t] = rows[t*hd + c] for t < len, 0 for len <= t < 32 (the window's
  // decoded rows into the key-tile layout).
  void (*rows_to_tile)(const float* rows, int len, int hd, float* kt);
  // out[h*hd + c] += sum_{t < len} p[h*ld + t] * vt[t*hd + c] for h < n_q.
  void (*tile_accumulate)(const float* vt, int hd, int len, const float* p, size_t ld, int n_q, float* out);
};

const Kernels& Scalar();
const Kernels& Best();

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
// The AVX2 set (lowbit_kernels_avx2.cpp); only call when HasAvx2().
const Kernels& Avx2();
bool HasAvx2();
#endif

}  // namespace tabfit::kvlow
