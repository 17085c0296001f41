// tabfit quant (private): code packing of the TF formats (see formats.h for the
// layouts) and the per-superblock float combination every TF dot product uses, so
// scalar and SIMD kernels produce bit-identical per-superblock terms.
//
// Everything here has internal linkage (static): these helpers are compiled into both
// plain and -mavx2 translation units, and a shared out-of-line copy could otherwise be
// an AVX2 one picked by the linker for the portable code.
#pragma once

#include <cstdint>
#include <cstring>

#include "quant/formats.h"

namespace tabfit::qk {

// dy * (d * sumi - dmin * summ), evaluated exactly this way (no FMA contraction:
// SIMD translation units are built with -ffp-contract=off).
static inline float SuperTerm(float dy, float d, float dmin, int32_t sumi, int32_t summ) {
  const float a = d * static_cast<float>(sumi);
  const float b = dmin * static_cast<float>(summ);
  return dy * (a - b);
}

// codes[g*32 + i] in [0, 15].
static inline void EncodeTfQ4(const uint8_t* codes, BlockTfQ4* b) {
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < 32; ++i)
      b->qs[32 * p + i] = static_cast<uint8_t>(codes[64 * p + i] | codes[64 * p + 32 + i] << 4);
}
static inline void DecodeTfQ4(const BlockTfQ4& b, uint8_t* codes) {
  for (int p = 0; p < 4; ++p)
    for (int i = 0; i < 32; ++i) {
      codes[64 * p + i] = b.qs[32 * p + i] & 15;
      codes[64 * p + 32 + i] = b.qs[32 * p + i] >> 4;
    }
}

// 2-bit fields: bits 2s..2s+1 of byte 32h+i = element i of group 4h+s.
static inline void EncodeLow2(const uint8_t* codes, uint8_t* q64) {
  std::memset(q64, 0, 64);
  for (int g = 0; g < 8; ++g)
    for (int i = 0; i < 32; ++i) q64[32 * (g / 4) + i] |= static_cast<uint8_t>((codes[32 * g + i] & 3) << (2 * (g % 4)));
}
static inline void DecodeLow2(const uint8_t* q64, uint8_t* codes) {
  for (int g = 0; g < 8; ++g)
    for (int i = 0; i < 32; ++i) codes[32 * g + i] = (q64[32 * (g / 4) + i] >> (2 * (g % 4))) & 3;
}

static inline void EncodeTfQ2(const uint8_t* codes, BlockTfQ2* b) { EncodeLow2(codes, b->qs); }
static inline void DecodeTfQ2(const BlockTfQ2& b, uint8_t* codes) { DecodeLow2(b.qs, codes); }

// codes in [0, 7]: low 2 bits as TF_Q2, bit 2 of element i of group g in bit g of qh[i].
static inline void EncodeTfQ3(const uint8_t* codes, BlockTfQ3* b) {
  EncodeLow2(codes, b->ql);
  std::memset(b->qh, 0, sizeof(b->qh));
  for (int g = 0; g < 8; ++g)
    for (int i = 0; i < 32; ++i) b->qh[i] |= static_cast<uint8_t>(((codes[32 * g + i] >> 2) & 1) << g);
}
static inline void DecodeTfQ3(const BlockTfQ3& b, uint8_t* codes) {
  DecodeLow2(b.ql, codes);
  for (int g = 0; g < 8; ++g)
    for (int i = 0; i < 32; ++i) codes[32 * g + i] |= static_cast<uint8_t>(((b.qh[i] >> g) & 1) << 2);
}

}  // namespace tabfit::qk
