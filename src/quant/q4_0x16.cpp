// Q4_0x16 (q4_0x16.h): packing, unpacking and the scalar mat-mul (the oracle the
// AVX-512 kernel is tested against, and the path for partial tiles).
#include "quant/q4_0x16.h"

#include <cstring>

#include "core/f16.h"
#include "quant/kernel_list.h"

namespace tabfit::qk {

namespace {

// Row i (0..15) of one packed block -> a BlockQ4_0 (qs[j]: column j low, j+16 high).
inline void UnpackRow(const uint8_t* blk, int i, BlockQ4_0* out) {
  std::memcpy(&out->d, blk + 2 * i, 2);
  for (int k = 0; k < 4; ++k)
    for (int j = 0; j < 4; ++j) out->qs[4 * k + j] = blk[32 + 64 * k + 4 * i + j];
}

}  // namespace

void Q4_0ToX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nb = cols / kQK4_0;
  const size_t rb = static_cast<size_t>(nb) * sizeof(BlockQ4_0);
  for (int64_t t = 0; t + kQ4x16Rows <= rows; t += kQ4x16Rows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kQ4x16Rows * rb);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* dst = tile + b * kQ4x16BlockBytes;
      for (int r = 0; r < kQ4x16Rows; ++r) {
        const auto* src = reinterpret_cast<const BlockQ4_0*>(scratch + r * rb) + b;
        std::memcpy(dst + 2 * r, &src->d, 2);
        for (int k = 0; k < 4; ++k) std::memcpy(dst + 32 + 64 * k + 4 * r, src->qs + 4 * k, 4);
      }
    }
  }
}

void Q4_0FromX16(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch) {
  const int64_t nb = cols / kQK4_0;
  const size_t rb = static_cast<size_t>(nb) * sizeof(BlockQ4_0);
  for (int64_t t = 0; t + kQ4x16Rows <= rows; t += kQ4x16Rows) {
    uint8_t* tile = data + t * rb;
    std::memcpy(scratch, tile, kQ4x16Rows * rb);
    for (int r = 0; r < kQ4x16Rows; ++r)
      for (int64_t b = 0; b < nb; ++b)
        UnpackRow(scratch + b * kQ4x16BlockBytes, r, reinterpret_cast<BlockQ4_0*>(tile + r * rb) + b);
  }
}

void MatMulQ4_0x16Scalar(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols, const void* xpacked,
                         int64_t n_tokens, float* y, int64_t ldy) {
  const int64_t nb = cols / kQK4_0;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_0A*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const uint8_t* tile = wb + (r / kQ4x16Rows) * kQ4x16Rows * row_bytes;
    const int i = static_cast<int>(r % kQ4x16Rows);
    // y accumulates block by block, as MatMulQ4_0Scalar's sumf.
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] = 0.0f;
    for (int64_t b = 0; b < nb; ++b) {
      BlockQ4_0 blk;
      UnpackRow(tile + b * kQ4x16BlockBytes, i, &blk);
      const float dw = F16ToF32(blk.d);
      for (int64_t t = 0; t < n_tokens; ++t) {
        const BlockQ8_0A& q = xb[t * nb + b];
        int sumi0 = 0, sumi1 = 0;
        for (int j = 0; j < 16; ++j) {
          sumi0 += ((blk.qs[j] & 0x0F) - 8) * q.qs[j];
          sumi1 += ((blk.qs[j] >> 4) - 8) * q.qs[j + 16];
        }
        y[t * ldy + r] += (sumi0 + sumi1) * (dw * q.d);
      }
    }
  }
}

#if !defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
bool Q4_0x16KernelAvailable() { return false; }
#else
bool Q4_0x16KernelAvailable() { return IsaAvailable(Isa::kAvx512Vnni); }
#endif

}  // namespace tabfit::qk
