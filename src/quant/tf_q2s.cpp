// TF_Q2S / TF_Q2SR (see tf_q2s.h): quantizer, dequantizer, scalar mat-mul.
#include "quant/tf_q2s.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

#include "core/f16.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tf_q2r.h"

namespace tabfit {
namespace {

constexpr int kG = kQ2Group;                 // 16 values per group
constexpr int kNG = kQKSuper / kQ2Group;     // 16 groups
constexpr float kZ = kQ2SOffset4 * 0.25f;    // 1.5

inline int Nearest(float v) { return static_cast<int>(std::lrintf(v)); }

void GroupWeights(const float* imp, float* w) {
  if (!imp) {
    std::fill(w, w + kG, 1.0f);
    return;
  }
  float mean = 0.0f;
  for (int i = 0; i < kG; ++i) mean += std::max(imp[i], 0.0f);
  mean /= kG;
  const float floor = mean > 0.0f ? mean * 1e-3f : 1.0f;
  for (int i = 0; i < kG; ++i) w[i] = std::max(imp[i], 0.0f) + floor;
}

inline float GroupError(const float* x, const float* w, float S, uint8_t* codes) {
  float e = 0.0f;
  for (int i = 0; i < kG; ++i) {
    const int l = S > 0.0f ? std::clamp(Nearest(x[i] / S + kZ), 0, 3) : 0;
    if (codes) codes[i] = static_cast<uint8_t>(l);
    const float d = S > 0.0f ? S * (l - kZ) - x[i] : -x[i];
    e += w[i] * d * d;
  }
  return e;
}

// Best unconstrained scale S of one group: starts over [0.4, 1.15] * amax/1.5, each
// refined by two weighted least-squares steps.
float FitGroup(const float* x, const float* w) {
  float amax = 0.0f;
  for (int i = 0; i < kG; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.0f) return 0.0f;
  float best_s = amax / kZ, best_e = INFINITY;
  for (int is = 0; is < 8; ++is) {
    float s = amax / kZ * (0.4f + 0.107f * is);
    for (int it = 0; it < 3; ++it) {
      const float e = GroupError(x, w, s, nullptr);
      if (e < best_e) {
        best_e = e;
        best_s = s;
      }
      float num = 0.0f, den = 0.0f;
      for (int i = 0; i < kG; ++i) {
        const float lz = std::clamp(Nearest(x[i] / s + kZ), 0, 3) - kZ;
        num += w[i] * x[i] * lz;
        den += w[i] * lz * lz;
      }
      if (den <= 0.0f || num <= 0.0f) break;
      s = num / den;
    }
    const float e = GroupError(x, w, s, nullptr);
    if (e < best_e) {
      best_e = e;
      best_s = s;
    }
  }
  return best_s;
}

void QuantizeSuper(const float* x, const float* imp, BlockTfQ2S* y) {
  float w[kNG][kG], s[kNG], smax = 0.0f;
  for (int g = 0; g < kNG; ++g) {
    GroupWeights(imp ? imp + g * kG : nullptr, w[g]);
    s[g] = FitGroup(x + g * kG, w[g]);
    smax = std::max(smax, s[g]);
  }
  uint8_t best_sc[kNG] = {};
  uint16_t best_d = F32ToF16(0.0f);
  if (smax > 0.0f) {
    float best_total = INFINITY;
    // d grid: smax/15 scaled so the largest group may sit on sub-scale 15, 14 or 13
    // (finer steps for the other groups), each sub-scale then chosen exactly.
    for (float f : {1.0f, 15.0f / 14.5f, 15.0f / 14.0f, 15.0f / 13.5f, 15.0f / 13.0f}) {
      const uint16_t d16 = F32ToF16(smax / 15.0f * f);
      const float d = F16ToF32(d16);
      if (!(d > 0.0f)) continue;
      float total = 0.0f;
      uint8_t sc[kNG];
      for (int g = 0; g < kNG; ++g) {
        const int c = std::clamp(Nearest(s[g] / d), 0, 15);
        float be = INFINITY;
        sc[g] = 0;
        for (int k = std::max(0, c - 2); k <= std::min(15, c + 2); ++k) {
          const float e = GroupError(x + g * kG, w[g], d * k, nullptr);
          if (e < be) {
            be = e;
            sc[g] = static_cast<uint8_t>(k);
          }
        }
        total += be;
      }
      if (total < best_total) {
        best_total = total;
        best_d = d16;
        std::copy(sc, sc + kNG, best_sc);
      }
    }
  }
  y->d = best_d;
  const float d = F16ToF32(best_d);
  uint8_t codes[kQKSuper];
  for (int g = 0; g < kNG; ++g) GroupError(x + g * kG, w[g], d * best_sc[g], codes + g * kG);
  for (int j = 0; j < 8; ++j) y->sc[j] = static_cast<uint8_t>(best_sc[2 * j] | best_sc[2 * j + 1] << 4);
  qk::EncodeLow2(codes, y->qs);
}

}  // namespace

namespace qk {

void FromFloatTfQ2S(const float* src, void* dst, int64_t n, const float* imp) {
  auto* y = static_cast<BlockTfQ2S*>(dst);
  for (int64_t b = 0; b < n / kQKSuper; ++b) QuantizeSuper(src + b * kQKSuper, imp ? imp + b * kQKSuper : nullptr, y + b);
}

void ToFloatTfQ2S(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockTfQ2S*>(src);
  uint8_t codes[kQKSuper];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    const float d = F16ToF32(x[b].d);
    DecodeLow2(x[b].qs, codes);
    for (int g = 0; g < kNG; ++g) {
      const float S = d * ((x[b].sc[g / 2] >> (4 * (g % 2))) & 15);
      for (int i = 0; i < kG; ++i) dst[b * kQKSuper + g * kG + i] = S * (codes[g * kG + i] - kZ);
    }
  }
}

void MatMulTfQ2SScalar(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  uint8_t codes[kQKSuper];
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const BlockTfQ2S*>(wb + r * row_bytes);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const BlockQ8_KA* q = xb + t * nsb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nsb; ++b) {
        DecodeLow2(row[b].qs, codes);
        int32_t sumi = 0, summ = 0;
        for (int g = 0; g < kNG; ++g) {
          const int32_t sc = (row[b].sc[g / 2] >> (4 * (g % 2))) & 15;
          int32_t isum = 0;
          for (int i = 0; i < kG; ++i) isum += codes[g * kG + i] * q[b].qs[g * kG + i];
          sumi += sc * isum;
          summ += sc * kQ2SOffset4 * q[b].bsums[g];
        }
        const float d = F16ToF32(row[b].d);
        sumf += SuperTerm(q[b].d, d, d * 0.25f, sumi, summ);
      }
      y[t * ldy + r] = sumf;
    }
  }
}

void FromFloatTfQ2SR(const float* src, void* dst, int64_t n, const float* /*imp*/) {
  auto* y = static_cast<BlockTfQ2S*>(dst);
  alignas(32) float buf[kQKSuper];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    std::copy(src + b * kQKSuper, src + (b + 1) * kQKSuper, buf);
    TfRotate256(buf, kQKSuper);
    QuantizeSuper(buf, nullptr, y + b);
  }
}

void ToFloatTfQ2SR(const void* src, float* dst, int64_t n) {
  ToFloatTfQ2S(src, dst, n);
  TfUnrotate256(dst, n);
}

}  // namespace qk
}  // namespace tabfit
