// TF_Q8x16 (tf_q8x16.h): packing, unpacking and the scalar mat-mul (the oracle the
// AVX-512 kernel is tested against, and the path for partial tiles).
#include "quant/tf_q8x16.h"

#include <cstring>

#include "core/f16.h"
#include "quant/kernel_list.h"
#include "quant/tf_decode.h"

namespace tabfit::qk {

namespace {

void UnpackRow(const uint8_t* super, int i, BlockTfQ8* out) {
  std::memcpy(&out->d, super + 2 * i, 2);
  for (int g = 0; g < 8; ++g) out->scales[g] = super[32 + 64 * (g / 4) + 4 * i + g % 4];
  for (int g = 0; g < 8; ++g)
    for (int k = 0; k < 8; ++k)
      for (int j = 0; j < 4; ++j)
        out->qs[32 * g + 4 * k + j] = static_cast<int8_t>(super[kQ8sCodesOffset + 512 * g + 64 * k + 4 * i + j] ^ 0x80);
}

}  // namespace

void TfQ8ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nsb = cols / kQKSuper;
  const size_t rb = static_cast<size_t>(nsb) * sizeof(BlockTfQ8);
  for (int64_t t = 0; t + kQ8sRows <= rows; t += kQ8sRows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kQ8sRows * rb);
    for (int64_t b = 0; b < nsb; ++b) {
      uint8_t* dst = tile + b * kQ8sSuperBytes;
      for (int r = 0; r < kQ8sRows; ++r) {
        const BlockTfQ8& s = reinterpret_cast<const BlockTfQ8*>(scratch + r * rb)[b];
        std::memcpy(dst + 2 * r, &s.d, 2);
        for (int g = 0; g < 8; ++g) dst[32 + 64 * (g / 4) + 4 * r + g % 4] = s.scales[g];
        for (int g = 0; g < 8; ++g)
          for (int k = 0; k < 8; ++k) {  // 4 codes at a time
            uint32_t v;
            std::memcpy(&v, s.qs + 32 * g + 4 * k, 4);
            v ^= 0x80808080u;
            std::memcpy(dst + kQ8sCodesOffset + 512 * g + 64 * k + 4 * r, &v, 4);
          }
      }
    }
  }
}

void TfQ8FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nsb = cols / kQKSuper;
  const size_t rb = static_cast<size_t>(nsb) * sizeof(BlockTfQ8);
  for (int64_t t = 0; t + kQ8sRows <= rows; t += kQ8sRows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kQ8sRows * rb);
    for (int r = 0; r < kQ8sRows; ++r)
      for (int64_t b = 0; b < nsb; ++b)
        UnpackRow(scratch + b * kQ8sSuperBytes, r, reinterpret_cast<BlockTfQ8*>(tile + r * rb) + b);
  }
}

void MatMulTfQ8x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = wb + (r / kQ8sRows) * kQ8sRows * row_bytes;
    const int i = static_cast<int>(r % kQ8sRows);
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] = 0.0f;
    for (int64_t b = 0; b < nsb; ++b) {
      BlockTfQ8 blk;
      UnpackRow(tile + b * kQ8sSuperBytes, i, &blk);
      const float d = F16ToF32(blk.d);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const BlockQ8_KA& q = xb[t * nsb + b];
        int32_t sumi = 0;
        for (int g = 0; g < 8; ++g) {
          int32_t isum = 0;
          for (int k = 0; k < 32; ++k) isum += blk.qs[32 * g + k] * q.qs[32 * g + k];
          sumi += blk.scales[g] * isum;
        }
        // MatMulTfQ8Scalar's SuperTerm(q.d, d, 0.0f, sumi, 0), term for term.
        y[t * ldy + r] += SuperTerm(q.d, d, 0.0f, sumi, 0);
      }
    }
  }
}

#if !defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
bool TfQ8x16KernelAvailable() { return false; }
#else
bool TfQ8x16KernelAvailable() { return IsaAvailable(Isa::kAvx512Vnni); }
#endif

}  // namespace tabfit::qk
