// TF_Q2R (see tf_q2r.h): rotation, quantizer, dequantizer, activation packing.
#include "quant/tf_q2r.h"

#include <array>
#include <cstring>

#include "quant/formats.h"
#include "quant/kernels_impl.h"

namespace tabfit {

namespace {

// Fixed pseudo-random signs (splitmix64 of the index, seed 0x7461626669742d32):
// part of the format — changing them changes what stored TF_Q2R blocks mean.
constexpr uint64_t SplitMix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
constexpr std::array<float, kQKSuper> MakeSigns() {
  std::array<float, kQKSuper> s{};
  for (int i = 0; i < kQKSuper; ++i) s[i] = (SplitMix(0x7461626669742d32ULL + i) >> 63) ? -1.0f : 1.0f;
  return s;
}
constexpr std::array<float, kQKSuper> kTfRotSigns = MakeSigns();

// In-place unnormalized fast Walsh-Hadamard transform of 256 values (x <- H x).
inline void Fwht256(float* x) {
  for (int len = 1; len < kQKSuper; len <<= 1) {
    for (int i = 0; i < kQKSuper; i += 2 * len) {
      for (int j = i; j < i + len; ++j) {
        const float a = x[j], b = x[j + len];
        x[j] = a + b;
        x[j + len] = a - b;
      }
    }
  }
}

inline void RotateBlock(const float* src, float* dst) {
  for (int i = 0; i < kQKSuper; ++i) dst[i] = src[i] * kTfRotSigns[i];
  Fwht256(dst);
  for (int i = 0; i < kQKSuper; ++i) dst[i] *= 0.0625f;  // 1/sqrt(256): exact
}

inline void UnrotateBlock(float* x) {
  Fwht256(x);
  for (int i = 0; i < kQKSuper; ++i) x[i] *= 0.0625f * kTfRotSigns[i];
}

using PackFn = void (*)(const float* x, int64_t n_tokens, int64_t cols, void* out);

// Rotate one superblock at a time into a stack buffer and pack it as one Q8_KA block.
void PackRotated(const float* x, int64_t n_tokens, int64_t cols, void* out, PackFn pack) {
  auto* y = static_cast<BlockQ8_KA*>(out);
  const int64_t nb = n_tokens * (cols / kQKSuper);
  alignas(32) float buf[kQKSuper];
  for (int64_t i = 0; i < nb; ++i) {
    RotateBlock(x + i * kQKSuper, buf);
    pack(buf, 1, kQKSuper, y + i);
  }
}

}  // namespace

void TfRotate256(float* x, int64_t n) {
  alignas(32) float buf[kQKSuper];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    RotateBlock(x + b * kQKSuper, buf);
    std::memcpy(x + b * kQKSuper, buf, sizeof(buf));
  }
}

void TfUnrotate256(float* x, int64_t n) {
  for (int64_t b = 0; b < n / kQKSuper; ++b) UnrotateBlock(x + b * kQKSuper);
}

namespace qk {

void FromFloatTfQ2R(const float* src, void* dst, int64_t n, const float* /*imp*/) {
  auto* y = static_cast<BlockTfQ2*>(dst);
  alignas(32) float buf[kQKSuper];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    RotateBlock(src + b * kQKSuper, buf);
    FromFloatTfQ2(buf, y + b, kQKSuper, nullptr);
  }
}

void ToFloatTfQ2R(const void* src, float* dst, int64_t n) {
  ToFloatTfQ2(src, dst, n);
  TfUnrotate256(dst, n);
}

void PackQ8_KARScalar(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  PackRotated(x, n_tokens, cols, out, PackQ8_KAScalar);
}

#if defined(TABFIT_HAVE_AVX2_KERNELS)
void PackQ8_KARAvx2(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  PackRotated(x, n_tokens, cols, out, PackQ8_KAAvx2);
}
#endif
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
void PackQ8_KARAvx512(const float* x, int64_t n_tokens, int64_t cols, void* out) {
  PackRotated(x, n_tokens, cols, out, PackQ8_KAAvx512);
}
#endif

}  // namespace qk
}  // namespace tabfit
