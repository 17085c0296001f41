// tabfit quant: block structs of every format that has kernels, and the packed
// activation blocks the dot products consume.
//
// GGML formats (bit-identical with ggml-common.h, so GGUF files interoperate):
//   F32, F16, BF16: one element per "block".
//   Q8_0: 32 x int8 + fp16 scale            = 34 B / 32  = 8.5  bits/weight.
//   Q4_0: 32 x 4-bit (q-8) + fp16 scale     = 18 B / 32  = 4.5  bits/weight.
//
// tabfit formats (256-element superblocks; every superblock holds 8 groups of
// 32 elements; all multi-byte fields little-endian):
//   TF_Q8: w = d*sc[g]*q,  q int8 in [-127,127], sc uint8 sub-scale per group
//          266 B / 256 = 8.3125 bits/weight.
//   TF_Q4: w = d*sc[g]*q - dmin*m[g], q in [0,15], 6-bit sc and m per group
//          144 B / 256 = 4.5 bits/weight.
//   TF_Q3: same affine scheme, q in [0,7]    112 B / 256 = 3.5 bits/weight.
//   TF_Q2: 16 groups of 16: w = d*sc[g]*(q - z[g]/4), q in [0,3], sc 4-bit,
//          z[g] in {2..9} (offset 0.5..2.25 steps, 3 bits)
//          80 B / 256 = 2.5 bits/weight.
//   (bits/weight above include every scale and min.)
//   Quantizers search the per-group (scale, min) -- for TF_Q2 (scale, offset
//   index) -- that minimise the importance-weighted squared error, then quantize
//   the sub-scales against the superblock d/dmin and re-round every code (TF_Q2:
//   and re-pick the offset) for the final, stored scale and min.
//   TF_Q2 uses 16-element groups with an offset tied to the scale: on real
//   weights this gives ~21% lower squared error than 32-groups with free 6-bit
//   mins at the same 2.5 bits/weight.
//
// Code layouts (chosen so one 32-byte SIMD load yields whole groups):
//   TF_Q4 qs[128]: for pair p (0..3), bytes [32p, 32p+32): low nibble of byte i
//                  is element i of group 2p, high nibble element i of group 2p+1.
//   TF_Q2 qs[64]:  for half h (0..1), bytes [32h, 32h+32): bits 2s..2s+1 of
//                  byte i are element 32*(4h+s) + i of the superblock.
//         scz[14]: bytes 0..7: sc[2j] | sc[2j+1] << 4; the little-endian
//                  uint32 in bytes 8..11 holds bits 0..1 of z[g]-2 at bits 2g..2g+1,
//                  the uint16 in bytes 12..13 bit 2 of z[g]-2 at bit g.
//   TF_Q3 ql[64]:  low 2 bits in TF_Q2's qs layout; qh[32]: bit g of byte i is
//                  bit 2 of element i of group g.
//   6-bit scales (scales[12]): byte g (g<8) = (sc[g]&15) | (m[g]&15)<<4; the
//   little-endian uint32 in bytes 8..11 holds sc[g]>>4 at bits 2g..2g+1 and
//   m[g]>>4 at bits 16+2g..16+2g+1.
//
// Packed activations (what PackActivations writes; one row per token):
//   F32/F16/BF16 weights: plain f32 (cols * 4 bytes).
//   Q8_0/Q4_0 weights: BlockQ8_0A per 32 (d stored as the f32 value of the
//     fp16-rounded scale, so results equal ggml's q8_0 activations exactly).
//   TF formats: BlockQ8_KA per 256 (one f32 scale, int8 codes, sums per 16).
#pragma once

#include <cstddef>
#include <cstdint>

namespace tabfit {

constexpr int kQK8_0 = 32;
constexpr int kQK4_0 = 32;
constexpr int kQKSuper = 256;  // tabfit superblock
constexpr int kQKGroup = 32;   // tabfit group inside a superblock

struct BlockQ8_0 {
  uint16_t d;  // fp16
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block must match ggml");

struct BlockQ4_0 {
  uint16_t d;  // fp16
  uint8_t qs[kQK4_0 / 2];  // element j in low nibble of qs[j], element j+16 in high nibble
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block must match ggml");

// Read-only GGML formats (dequantization only).
struct BlockQ4_1 {
  uint16_t d, m;
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ4_1) == 20);
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_0) == 22);
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[16];
};
static_assert(sizeof(BlockQ5_1) == 24);
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t qs[128];
};
static_assert(sizeof(BlockQ4_K) == 144);
struct BlockQ6_K {
  uint8_t ql[128];
  uint8_t qh[64];
  int8_t scales[16];
  uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210);

struct BlockTfQ8 {
  uint16_t d;          // fp16 superblock scale
  uint8_t scales[8];   // per-group sub-scale
  int8_t qs[kQKSuper];
};
static_assert(sizeof(BlockTfQ8) == 266, "TF_Q8: 8.3125 bits/weight");

struct BlockTfQ4 {
  uint16_t d, dmin;    // fp16
  uint8_t scales[12];  // 6-bit sc/m per group
  uint8_t qs[kQKSuper / 2];
};
static_assert(sizeof(BlockTfQ4) == 144, "TF_Q4: 4.5 bits/weight");

struct BlockTfQ3 {
  uint16_t d, dmin;
  uint8_t scales[12];
  uint8_t ql[kQKSuper / 4];
  uint8_t qh[kQKSuper / 8];
};
static_assert(sizeof(BlockTfQ3) == 112, "TF_Q3: 3.5 bits/weight");

constexpr int kQ2Group = 16;  // TF_Q2 group size

struct BlockTfQ2 {
  uint16_t d;        // fp16
  uint8_t scz[14];   // 4-bit sc and 3-bit offset index per 16-group
  uint8_t qs[kQKSuper / 4];
};
static_assert(sizeof(BlockTfQ2) == 80, "TF_Q2: 2.5 bits/weight");

// Activation block for Q8_0/Q4_0 weights.
struct BlockQ8_0A {
  float d;  // == F16ToF32(F32ToF16(amax/127))
  int8_t qs[kQK8_0];
};
static_assert(sizeof(BlockQ8_0A) == 36);

// Activation block for tabfit formats.
struct BlockQ8_KA {
  float d;
  int16_t bsums[kQKSuper / 16];  // sum of qs per 16 values
  int8_t qs[kQKSuper];
};
static_assert(sizeof(BlockQ8_KA) == 292);

// 6-bit scale/min packing shared by TF_Q4/Q3. static: also compiled into -mavx2
// translation units, so no shared (possibly AVX2-encoded) out-of-line copy may exist.
static inline void UnpackScales6(const uint8_t* s, uint8_t* sc, uint8_t* m) {
  const uint32_t hi = uint32_t(s[8]) | uint32_t(s[9]) << 8 | uint32_t(s[10]) << 16 | uint32_t(s[11]) << 24;
  for (int g = 0; g < 8; ++g) {
    sc[g] = static_cast<uint8_t>((s[g] & 15) | ((hi >> (2 * g)) & 3) << 4);
    m[g] = static_cast<uint8_t>((s[g] >> 4) | ((hi >> (16 + 2 * g)) & 3) << 4);
  }
}
static inline void PackScales6(const uint8_t* sc, const uint8_t* m, uint8_t* s) {
  uint32_t hi = 0;
  for (int g = 0; g < 8; ++g) {
    s[g] = static_cast<uint8_t>((sc[g] & 15) | (m[g] & 15) << 4);
    hi |= uint32_t(sc[g] >> 4) << (2 * g);
    hi |= uint32_t(m[g] >> 4) << (16 + 2 * g);
  }
  for (int k = 0; k < 4; ++k) s[8 + k] = static_cast<uint8_t>(hi >> (8 * k));
}

// TF_Q2 sub-scales (0..15) and offsets z (2..9, in quarter steps) of 16 groups.
static inline void UnpackScz(const uint8_t* s, uint8_t* sc, uint8_t* z) {
  const uint32_t lo = uint32_t(s[8]) | uint32_t(s[9]) << 8 | uint32_t(s[10]) << 16 | uint32_t(s[11]) << 24;
  const uint32_t hi = uint32_t(s[12]) | uint32_t(s[13]) << 8;
  for (int g = 0; g < 16; ++g) {
    sc[g] = static_cast<uint8_t>((s[g / 2] >> (4 * (g % 2))) & 15);
    z[g] = static_cast<uint8_t>(2 + (((lo >> (2 * g)) & 3) | ((hi >> g) & 1) << 2));
  }
}
static inline void PackScz(const uint8_t* sc, const uint8_t* z, uint8_t* s) {
  uint32_t lo = 0, hi = 0;
  for (int j = 0; j < 8; ++j) s[j] = static_cast<uint8_t>((sc[2 * j] & 15) | (sc[2 * j + 1] & 15) << 4);
  for (int g = 0; g < 16; ++g) {
    const uint32_t zi = static_cast<uint32_t>(z[g] - 2) & 7;
    lo |= (zi & 3) << (2 * g);
    hi |= (zi >> 2) << g;
  }
  for (int k = 0; k < 4; ++k) s[8 + k] = static_cast<uint8_t>(lo >> (8 * k));
  s[12] = static_cast<uint8_t>(hi);
  s[13] = static_cast<uint8_t>(hi >> 8);
}

}  // namespace tabfit
