// TF_Q2x16 (tf_q2x16.h): packing, unpacking and the scalar mat-mul (the oracle
// the AVX-512 kernel is tested against, and the path for partial tiles).
#include "quant/tf_q2x16.h"

#include <cstring>

#include "quant/tf_decode.h"

namespace tabfit::qk {

namespace {
constexpr int kGroups = kQKSuper / kQ2Group;  // 16
}  // namespace

void PackTfQ2x16Super(const BlockTfQ2* const src[kX16Rows], uint8_t* dst) {
  std::memset(dst, 0, kX16SuperBytes);
  uint8_t codes[kQKSuper], sc[kGroups], z[kGroups];
  for (int r = 0; r < kX16Rows; ++r) {
    const BlockTfQ2& b = *src[r];
    std::memcpy(dst + 2 * r, &b.d, 2);
    UnpackScz(b.scz, sc, z);
    for (int h = 0; h < 2; ++h) {
      uint64_t v = 0;
      for (int j = 0; j < 8; ++j) {
        const int g = 8 * h + j;
        v |= static_cast<uint64_t>((sc[g] & 15) | ((z[g] - 2) & 7) << 4) << (7 * j);
      }
      uint8_t* chunk = dst + kX16FieldsOffset + 7 * (16 * h + r);
      for (int k = 0; k < 7; ++k) chunk[k] = static_cast<uint8_t>(v >> (8 * k));
    }
    DecodeTfQ2(b, codes);
    for (int g = 0; g < kGroups; ++g)
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 4; ++j)
          dst[kX16CodesOffset + 64 * g + 4 * r + j] |= static_cast<uint8_t>(codes[16 * g + 4 * k + j] << (2 * k));
  }
}

void UnpackTfQ2x16Row(const uint8_t* super, int i, BlockTfQ2* out) {
  std::memcpy(&out->d, super + 2 * i, 2);
  uint8_t codes[kQKSuper], sc[kGroups], z[kGroups];
  for (int h = 0; h < 2; ++h) {
    const uint8_t* chunk = super + kX16FieldsOffset + 7 * (16 * h + i);
    uint64_t v = 0;
    for (int k = 0; k < 7; ++k) v |= static_cast<uint64_t>(chunk[k]) << (8 * k);
    for (int j = 0; j < 8; ++j) {
      const unsigned f = (v >> (7 * j)) & 127;
      sc[8 * h + j] = static_cast<uint8_t>(f & 15);
      z[8 * h + j] = static_cast<uint8_t>(2 + (f >> 4));
    }
  }
  PackScz(sc, z, out->scz);
  for (int g = 0; g < kGroups; ++g)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 4; ++j)
        codes[16 * g + 4 * k + j] = (super[kX16CodesOffset + 64 * g + 4 * i + j] >> (2 * k)) & 3;
  EncodeTfQ2(codes, out);
}

void TfQ2ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nsb = cols / kQKSuper;
  const size_t rb = static_cast<size_t>(nsb) * sizeof(BlockTfQ2);
  for (int64_t t = 0; t + kX16Rows <= rows; t += kX16Rows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kX16Rows * rb);
    const BlockTfQ2* src[kX16Rows];
    for (int64_t b = 0; b < nsb; ++b) {
      for (int r = 0; r < kX16Rows; ++r) src[r] = reinterpret_cast<const BlockTfQ2*>(scratch + r * rb) + b;
      PackTfQ2x16Super(src, tile + b * kX16SuperBytes);
    }
  }
}

void TfQ2FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nsb = cols / kQKSuper;
  const size_t rb = static_cast<size_t>(nsb) * sizeof(BlockTfQ2);
  for (int64_t t = 0; t + kX16Rows <= rows; t += kX16Rows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kX16Rows * rb);
    for (int r = 0; r < kX16Rows; ++r)
      for (int64_t b = 0; b < nsb; ++b)
        UnpackTfQ2x16Row(scratch + b * kX16SuperBytes, r, reinterpret_cast<BlockTfQ2*>(tile + r * rb) + b);
  }
}

void MatMulTfQ2x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                         const void* xpacked, int64_t n_tokens, float* y, int64_t ldy) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = wb + (r / kX16Rows) * kX16Rows * row_bytes;
    const int i = static_cast<int>(r % kX16Rows);
    // y accumulates term by term in superblock order, as MatMulTfQ2Scalar's sumf.
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] = 0.0f;
    for (int64_t b = 0; b < nsb; ++b) {
      BlockTfQ2 blk;
      UnpackTfQ2x16Row(tile + b * kX16SuperBytes, i, &blk);
      for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] += TfQ2SuperTerm(blk, xb[t * nsb + b]);
    }
  }
}

#if !defined(TABFIT_HAVE_X16_KERNEL)
bool TfQ2x16KernelAvailable() { return false; }
#endif

}  // namespace tabfit::qk
