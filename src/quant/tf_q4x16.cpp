// TF_Q4x16 (tf_q4x16.h): packing, unpacking and the scalar mat-mul (the oracle the
// AVX-512 kernel is tested against, and the path for partial tiles).
#include "quant/tf_q4x16.h"

#include <cstring>

#include "quant/kernel_list.h"
#include "quant/tf_decode.h"

namespace tabfit::qk {

namespace {

constexpr int kGroups = kQKSuper / kQKGroup;  // 8

void PackSuper(const BlockTfQ4* const src[kQ4sRows], uint8_t* dst) {
  std::memset(dst, 0, kQ4sSuperBytes);
  uint8_t codes[kQKSuper], sc[kGroups], m[kGroups];
  for (int r = 0; r < kQ4sRows; ++r) {
    const BlockTfQ4& b = *src[r];
    std::memcpy(dst + 2 * r, &b.d, 2);
    std::memcpy(dst + 32 + 2 * r, &b.dmin, 2);
    UnpackScales6(b.scales, sc, m);
    for (int h = 0; h < 2; ++h) {
      uint64_t v = 0;
      for (int j = 0; j < kGroups; ++j) v |= static_cast<uint64_t>((h ? m[j] : sc[j]) & 63) << (6 * j);
      uint8_t* chunk = dst + kQ4sScalesOffset + 6 * (16 * h + r);
      for (int k = 0; k < 6; ++k) chunk[k] = static_cast<uint8_t>(v >> (8 * k));
    }
    DecodeTfQ4(b, codes);
    for (int g = 0; g < kGroups; ++g)
      for (int k = 0; k < 4; ++k)
        for (int j = 0; j < 4; ++j)
          dst[kQ4sCodesOffset + 256 * g + 64 * k + 4 * r + j] =
              static_cast<uint8_t>(codes[32 * g + 4 * k + j] | codes[32 * g + 16 + 4 * k + j] << 4);
  }
}

void UnpackRow(const uint8_t* super, int i, BlockTfQ4* out) {
  std::memcpy(&out->d, super + 2 * i, 2);
  std::memcpy(&out->dmin, super + 32 + 2 * i, 2);
  uint8_t codes[kQKSuper], sc[kGroups], m[kGroups];
  for (int h = 0; h < 2; ++h) {
    const uint8_t* chunk = super + kQ4sScalesOffset + 6 * (16 * h + i);
    uint64_t v = 0;
    for (int k = 0; k < 6; ++k) v |= static_cast<uint64_t>(chunk[k]) << (8 * k);
    for (int j = 0; j < kGroups; ++j) (h ? m : sc)[j] = static_cast<uint8_t>((v >> (6 * j)) & 63);
  }
  PackScales6(sc, m, out->scales);
  for (int g = 0; g < kGroups; ++g)
    for (int k = 0; k < 4; ++k)
      for (int j = 0; j < 4; ++j) {
        const uint8_t byte = super[kQ4sCodesOffset + 256 * g + 64 * k + 4 * i + j];
        codes[32 * g + 4 * k + j] = byte & 15;
        codes[32 * g + 16 + 4 * k + j] = byte >> 4;
      }
  EncodeTfQ4(codes, out);
}

}  // namespace

void TfQ4ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nsb = cols / kQKSuper;
  const size_t rb = static_cast<size_t>(nsb) * sizeof(BlockTfQ4);
  for (int64_t t = 0; t + kQ4sRows <= rows; t += kQ4sRows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kQ4sRows * rb);
    const BlockTfQ4* src[kQ4sRows];
    for (int64_t b = 0; b < nsb; ++b) {
      for (int r = 0; r < kQ4sRows; ++r) src[r] = reinterpret_cast<const BlockTfQ4*>(scratch + r * rb) + b;
      PackSuper(src, tile + b * kQ4sSuperBytes);
    }
  }
}

void TfQ4FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nsb = cols / kQKSuper;
  const size_t rb = static_cast<size_t>(nsb) * sizeof(BlockTfQ4);
  for (int64_t t = 0; t + kQ4sRows <= rows; t += kQ4sRows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kQ4sRows * rb);
    for (int r = 0; r < kQ4sRows; ++r)
      for (int64_t b = 0; b < nsb; ++b)
        UnpackRow(scratch + b * kQ4sSuperBytes, r, reinterpret_cast<BlockTfQ4*>(tile + r * rb) + b);
  }
}

void MatMulTfQ4x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = wb + (r / kQ4sRows) * kQ4sRows * row_bytes;
    const int i = static_cast<int>(r % kQ4sRows);
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] = 0.0f;
    for (int64_t b = 0; b < nsb; ++b) {
      BlockTfQ4 blk;
      UnpackRow(tile + b * kQ4sSuperBytes, i, &blk);
      for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] += TfQ4SuperTerm(blk, xb[t * nsb + b]);
    }
  }
}

#if !defined(TABFIT_HAVE_X16_KERNEL)
bool TfQ4x16KernelAvailable() { return false; }
#else
bool TfQ4x16KernelAvailable() { return IsaAvailable(Isa::kAvx512Vnni) && __builtin_cpu_supports("avx512vbmi"); }
#endif

}  // namespace tabfit::qk
