// tabfit's own formats TF_Q8 / TF_Q4 / TF_Q3 / TF_Q2 (layouts in formats.h):
// quantizers (importance-weighted least-squares search), dequantization, and the
// scalar dot products against BlockQ8_KA activations (the oracle for SIMD kernels).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tf_q2x16.h"
#include "quant/tf_q4x16.h"

namespace tabfit::qk {

namespace {

constexpr int kGroups = kQKSuper / kQKGroup;  // 8

inline int Nearest(float v) { return static_cast<int>(std::lrintf(v)); }

// Importance weights of one group of n: importance (floored so that no weight is 0) or 1.
void GroupWeights(const float* imp, float* w, int n = kQKGroup) {
  if (!imp) {
    std::fill(w, w + n, 1.0f);
    return;
  }
  float mean = 0.0f;
  for (int i = 0; i < n; ++i) mean += std::max(imp[i], 0.0f);
  mean /= n;
  const float floor = mean > 0.0f ? mean * 1e-3f : 1.0f;
  for (int i = 0; i < n; ++i) w[i] = std::max(imp[i], 0.0f) + floor;
}

// Affine fit x ~ s*L + mn, L in [0, nmax], mn <= 0, minimising sum w (s L + mn - x)^2.
// Searches the code assignment over a grid of inverse scales (each followed by the
// closed-form weighted least-squares (s, mn) and two re-assignment rounds).
void FitAffine(const float* x, const float* w, int nmax, float* s_out, float* mn_out) {
  float xmin = x[0], xmax = x[0];
  for (int i = 1; i < kQKGroup; ++i) {
    xmin = std::min(xmin, x[i]);
    xmax = std::max(xmax, x[i]);
  }
  if (xmin > 0.0f) xmin = 0.0f;
  if (xmax <= xmin) {
    *s_out = 0.0f;
    *mn_out = xmin;
    return;
  }
  float sw = 0.0f, sx = 0.0f;
  for (int i = 0; i < kQKGroup; ++i) {
    sw += w[i];
    sx += w[i] * x[i];
  }
  auto error = [&](float s, float mn) {
    float e = 0.0f;
    for (int i = 0; i < kQKGroup; ++i) {
      const int l = s > 0.0f ? std::clamp(Nearest((x[i] - mn) / s), 0, nmax) : 0;
      const float d = s * l + mn - x[i];
      e += w[i] * d * d;
    }
    return e;
  };
  // Least squares for fixed codes; keeps mn <= 0.
  auto solve = [&](const int* L, float* s, float* mn) {
    float sl = 0.0f, sl2 = 0.0f, slx = 0.0f;
    for (int i = 0; i < kQKGroup; ++i) {
      sl += w[i] * L[i];
      sl2 += w[i] * L[i] * L[i];
      slx += w[i] * L[i] * x[i];
    }
    const float det = sw * sl2 - sl * sl;
    if (det <= 0.0f || sl2 <= 0.0f) return false;
    *s = (sw * slx - sl * sx) / det;
    *mn = (sl2 * sx - sl * slx) / det;
    if (*mn > 0.0f) {
      *mn = 0.0f;
      *s = slx / sl2;
    }
    return *s > 0.0f;
  };
  float best_s = (xmax - xmin) / nmax, best_mn = xmin;
  float best_e = error(best_s, best_mn);
  const int nstep = 24;  // 12 loses ~0.2% rmse on real weights; quality first
  const float rmin = -1.0f, rdelta = 2.0f / nstep;
  int L[kQKGroup];
  for (int is = 0; is <= nstep; ++is) {
    const float iscale = (rmin + rdelta * is + nmax) / (xmax - xmin);
    for (int i = 0; i < kQKGroup; ++i) L[i] = std::clamp(Nearest(iscale * (x[i] - xmin)), 0, nmax);
    float s, mn;
    if (!solve(L, &s, &mn)) continue;
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < kQKGroup; ++i) L[i] = std::clamp(Nearest((x[i] - mn) / s), 0, nmax);
      float s2, mn2;
      if (!solve(L, &s2, &mn2)) break;
      s = s2;
      mn = mn2;
    }
    const float e = error(s, mn);
    if (e < best_e) {
      best_e = e;
      best_s = s;
      best_mn = mn;
    }
  }
  *s_out = best_s;
  *mn_out = best_mn;
}

// Symmetric fit x ~ s*L, L in [-127, 127].
float FitSymmetric8(const float* x, const float* w) {
  float amax = 0.0f;
  for (int i = 0; i < kQKGroup; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.0f) return 0.0f;
  float best_s = amax / 127, best_e = INFINITY;
  for (int k = -8; k <= 0; ++k) {  // never clip: iscale <= 127/amax
    const float iscale = (127.0f + 0.25f * k) / amax;
    float sxl = 0.0f, sll = 0.0f;
    for (int i = 0; i < kQKGroup; ++i) {
      const int l = std::clamp(Nearest(iscale * x[i]), -127, 127);
      sxl += w[i] * x[i] * l;
      sll += w[i] * l * l;
    }
    if (sll <= 0.0f) continue;
    const float s = sxl / sll;
    float e = 0.0f;
    for (int i = 0; i < kQKGroup; ++i) {
      const int l = std::clamp(Nearest(x[i] / s), -127, 127);
      const float d = s * l - x[i];
      e += w[i] * d * d;
    }
    if (e < best_e) {
      best_e = e;
      best_s = s;
    }
  }
  return best_s;
}

// Quantizes one superblock of an affine format: fills d, dmin, 6-bit scales and codes[256].
void QuantizeAffineSuper(const float* x, const float* imp, int nmax, uint16_t* d16, uint16_t* dmin16,
                         uint8_t* scales12, uint8_t* codes) {
  float s[kGroups], m[kGroups], w[kQKGroup];
  float smax = 0.0f, mmax = 0.0f;
  for (int g = 0; g < kGroups; ++g) {
    GroupWeights(imp ? imp + g * kQKGroup : nullptr, w);
    float mn;
    FitAffine(x + g * kQKGroup, w, nmax, &s[g], &mn);
    m[g] = -mn;
    smax = std::max(smax, s[g]);
    mmax = std::max(mmax, m[g]);
  }
  *d16 = F32ToF16(smax / 63);
  *dmin16 = F32ToF16(mmax / 63);
  const float d = F16ToF32(*d16), dmin = F16ToF32(*dmin16);
  uint8_t sc[kGroups], mq[kGroups];
  for (int g = 0; g < kGroups; ++g) {
    sc[g] = static_cast<uint8_t>(d > 0.0f ? std::clamp(Nearest(s[g] / d), 0, 63) : 0);
    mq[g] = static_cast<uint8_t>(dmin > 0.0f ? std::clamp(Nearest(m[g] / dmin), 0, 63) : 0);
  }
  PackScales6(sc, mq, scales12);
  // Final codes: nearest grid point of the stored scale and min.
  for (int g = 0; g < kGroups; ++g) {
    const float S = d * sc[g], M = dmin * mq[g];
    for (int i = 0; i < kQKGroup; ++i) {
      const float v = x[g * kQKGroup + i];
      codes[g * kQKGroup + i] = static_cast<uint8_t>(S > 0.0f ? std::clamp(Nearest((v + M) / S), 0, nmax) : 0);
    }
  }
}

template <typename Block, int kNmax, typename Store>
void QuantizeAffineRow(const float* src, void* dst, int64_t n, const float* imp, Store store) {
  auto* y = static_cast<Block*>(dst);
  uint8_t codes[kQKSuper];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    QuantizeAffineSuper(src + b * kQKSuper, imp ? imp + b * kQKSuper : nullptr, kNmax, &y[b].d, &y[b].dmin,
                        y[b].scales, codes);
    store(codes, &y[b]);
  }
}

template <typename Block, typename Decode>
void DequantAffineRow(const void* src, float* dst, int64_t n, Decode decode) {
  const auto* x = static_cast<const Block*>(src);
  uint8_t codes[kQKSuper], sc[kGroups], m[kGroups];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    const float d = F16ToF32(x[b].d), dmin = F16ToF32(x[b].dmin);
    UnpackScales6(x[b].scales, sc, m);
    decode(x[b], codes);
    for (int g = 0; g < kGroups; ++g) {
      const float S = d * sc[g], M = dmin * m[g];
      for (int i = 0; i < kQKGroup; ++i) dst[b * kQKSuper + g * kQKGroup + i] = S * codes[g * kQKGroup + i] - M;
    }
  }
}

// One superblock's term of the scalar affine dot.
template <typename Block, typename Decode>
float AffineTerm(const Block& x, const BlockQ8_KA& q, Decode decode) {
  uint8_t codes[kQKSuper], sc[kGroups], m[kGroups];
  UnpackScales6(x.scales, sc, m);
  decode(x, codes);
  int32_t sumi = 0, summ = 0;
  for (int g = 0; g < kGroups; ++g) {
    int32_t isum = 0;
    for (int i = 0; i < kQKGroup; ++i) isum += codes[g * kQKGroup + i] * q.qs[g * kQKGroup + i];
    sumi += sc[g] * isum;
    summ += m[g] * (q.bsums[2 * g] + q.bsums[2 * g + 1]);
  }
  return SuperTerm(q.d, F16ToF32(x.d), F16ToF32(x.dmin), sumi, summ);
}

// Scalar affine dot for one row against one packed token row.
template <typename Block, typename Decode>
float DotAffine(const Block* x, const BlockQ8_KA* q, int64_t nsb, Decode decode) {
  float sumf = 0.0f;
  for (int64_t b = 0; b < nsb; ++b) sumf += AffineTerm(x[b], q[b], decode);
  return sumf;
}

template <typename Block, typename Decode>
void MatMulAffine(TF_MATMUL_ARGS, Decode decode) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const Block*>(wb + r * row_bytes);
    for (int64_t t = 0; t < n_tokens; ++t) y[t * ldy + r] = DotAffine(row, xb + t * nsb, nsb, decode);
  }
}

}  // namespace

// ---------------------------------------------------------------- TF_Q4
float TfQ4SuperTerm(const BlockTfQ4& w, const BlockQ8_KA& x) {
  return AffineTerm(w, x, [](const BlockTfQ4& b, uint8_t* c) { DecodeTfQ4(b, c); });
}

void FromFloatTfQ4(const float* src, void* dst, int64_t n, const float* imp) {
  QuantizeAffineRow<BlockTfQ4, 15>(src, dst, n, imp, [](const uint8_t* c, BlockTfQ4* b) { EncodeTfQ4(c, b); });
}
void ToFloatTfQ4(const void* src, float* dst, int64_t n) {
  DequantAffineRow<BlockTfQ4>(src, dst, n, [](const BlockTfQ4& b, uint8_t* c) { DecodeTfQ4(b, c); });
}
void MatMulTfQ4Scalar(TF_MATMUL_ARGS) {
  MatMulAffine<BlockTfQ4>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy,
                          [](const BlockTfQ4& b, uint8_t* c) { DecodeTfQ4(b, c); });
}

// ---------------------------------------------------------------- TF_Q3
void FromFloatTfQ3(const float* src, void* dst, int64_t n, const float* imp) {
  QuantizeAffineRow<BlockTfQ3, 7>(src, dst, n, imp, [](const uint8_t* c, BlockTfQ3* b) { EncodeTfQ3(c, b); });
}
void ToFloatTfQ3(const void* src, float* dst, int64_t n) {
  DequantAffineRow<BlockTfQ3>(src, dst, n, [](const BlockTfQ3& b, uint8_t* c) { DecodeTfQ3(b, c); });
}
void MatMulTfQ3Scalar(TF_MATMUL_ARGS) {
  MatMulAffine<BlockTfQ3>(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy,
                          [](const BlockTfQ3& b, uint8_t* c) { DecodeTfQ3(b, c); });
}

// ---------------------------------------------------------------- TF_Q2
// w = d*sc*(q - z/4): per 16-group search over the 8 offsets z and a grid of scales
// (each refined by weighted least squares), then 4-bit sub-scales against the fp16
// superblock d, then the best offset and nearest codes again for the stored scale.
namespace {

constexpr int kQ2Groups = kQKSuper / kQ2Group;  // 16

// Weighted error of the group for scale S and offset z4 (quarter steps), codes nearest.
inline float Q2Error(const float* x, const float* w, float S, int z4, uint8_t* codes) {
  const float z = z4 * 0.25f;
  float e = 0.0f;
  for (int i = 0; i < kQ2Group; ++i) {
    const int l = S > 0.0f ? std::clamp(Nearest(x[i] / S + z), 0, 3) : 0;
    if (codes) codes[i] = static_cast<uint8_t>(l);
    const float d = S * (l - z) - x[i];
    e += w[i] * d * d;
  }
  return e;
}

float FitQ2Group(const float* x, const float* w) {
  float amax = 0.0f;
  for (int i = 0; i < kQ2Group; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (amax == 0.0f) return 0.0f;
  float best_s = 0.0f, best_e = INFINITY;
  for (int z4 = 2; z4 <= 9; ++z4) {
    const float z = z4 * 0.25f;
    for (int is = 0; is < 4; ++is) {  // 4 starts suffice: LS refinement converges
      float s = amax / std::max(3.0f - z, z) * (0.55f + 0.15f * is);
      for (int it = 0; it < 2; ++it) {
        float num = 0.0f, den = 0.0f;
        for (int i = 0; i < kQ2Group; ++i) {
          const float lz = std::clamp(Nearest(x[i] / s + z), 0, 3) - z;
          num += w[i] * x[i] * lz;
          den += w[i] * lz * lz;
        }
        if (den <= 0.0f || num <= 0.0f) break;
        s = num / den;
      }
      const float e = Q2Error(x, w, s, z4, nullptr);
      if (e < best_e) {
        best_e = e;
        best_s = s;
      }
    }
  }
  return best_s;
}

}  // namespace

void FromFloatTfQ2(const float* src, void* dst, int64_t n, const float* imp) {
  auto* y = static_cast<BlockTfQ2*>(dst);
  float w[kQKGroup];
  uint8_t codes[kQKSuper];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    const float* x = src + b * kQKSuper;
    float s[kQ2Groups], smax = 0.0f;
    for (int g = 0; g < kQ2Groups; ++g) {
      GroupWeights(imp ? imp + b * kQKSuper + g * kQ2Group : nullptr, w, kQ2Group);
      s[g] = FitQ2Group(x + g * kQ2Group, w);
      smax = std::max(smax, s[g]);
    }
    y[b].d = F32ToF16(smax / 15);
    const float d = F16ToF32(y[b].d);
    uint8_t sc[kQ2Groups], z[kQ2Groups];
    for (int g = 0; g < kQ2Groups; ++g) {
      GroupWeights(imp ? imp + b * kQKSuper + g * kQ2Group : nullptr, w, kQ2Group);
      sc[g] = static_cast<uint8_t>(d > 0.0f ? std::clamp(Nearest(s[g] / d), 0, 15) : 0);
      const float S = d * sc[g];
      float best_e = INFINITY;
      z[g] = 6;
      for (int z4 = 2; z4 <= 9; ++z4) {
        const float e = Q2Error(x + g * kQ2Group, w, S, z4, nullptr);
        if (e < best_e) {
          best_e = e;
          z[g] = static_cast<uint8_t>(z4);
        }
      }
      Q2Error(x + g * kQ2Group, w, S, z[g], codes + g * kQ2Group);
    }
    PackScz(sc, z, y[b].scz);
    EncodeTfQ2(codes, &y[b]);
  }
}

void ToFloatTfQ2(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockTfQ2*>(src);
  uint8_t codes[kQKSuper], sc[kQ2Groups], z[kQ2Groups];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    const float d = F16ToF32(x[b].d);
    UnpackScz(x[b].scz, sc, z);
    DecodeTfQ2(x[b], codes);
    for (int g = 0; g < kQ2Groups; ++g) {
      const float S = d * sc[g], zf = z[g] * 0.25f;
      for (int i = 0; i < kQ2Group; ++i) dst[b * kQKSuper + g * kQ2Group + i] = S * (codes[g * kQ2Group + i] - zf);
    }
  }
}

// Per superblock: sumi = sum_g sc*sum(q*y), summ = sum_g sc*z4*bsum16;
// term = dy*(d*sumi - (d/4)*summ).
float TfQ2SuperTerm(const BlockTfQ2& w, const BlockQ8_KA& x) {
  uint8_t codes[kQKSuper], sc[kQ2Groups], z[kQ2Groups];
  UnpackScz(w.scz, sc, z);
  DecodeTfQ2(w, codes);
  int32_t sumi = 0, summ = 0;
  for (int g = 0; g < kQ2Groups; ++g) {
    int32_t isum = 0;
    for (int i = 0; i < kQ2Group; ++i) isum += codes[g * kQ2Group + i] * x.qs[g * kQ2Group + i];
    sumi += sc[g] * isum;
    summ += sc[g] * z[g] * x.bsums[g];
  }
  const float d = F16ToF32(w.d);
  return SuperTerm(x.d, d, d * 0.25f, sumi, summ);
}

void MatMulTfQ2Scalar(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const BlockTfQ2*>(wb + r * row_bytes);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const BlockQ8_KA* q = xb + t * nsb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nsb; ++b) sumf += TfQ2SuperTerm(row[b], q[b]);
      y[t * ldy + r] = sumf;
    }
  }
}

// ---------------------------------------------------------------- TF_Q8
void FromFloatTfQ8(const float* src, void* dst, int64_t n, const float* imp) {
  auto* y = static_cast<BlockTfQ8*>(dst);
  float w[kQKGroup];
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    const float* x = src + b * kQKSuper;
    float s[kGroups], smax = 0.0f;
    for (int g = 0; g < kGroups; ++g) {
      GroupWeights(imp ? imp + b * kQKSuper + g * kQKGroup : nullptr, w);
      s[g] = FitSymmetric8(x + g * kQKGroup, w);
      smax = std::max(smax, s[g]);
    }
    y[b].d = F32ToF16(smax / 255);
    if (F16ToF32(y[b].d) * 255 < smax) ++y[b].d;  // round the fp16 up so that sc <= 255 covers every group
    const float d = F16ToF32(y[b].d);
    for (int g = 0; g < kGroups; ++g) {
      const float* xg = x + g * kQKGroup;
      int sc = d > 0.0f ? std::clamp(Nearest(s[g] / d), 0, 255) : 0;
      // Round the sub-scale up when rounding down would clip the group's largest value.
      float amax = 0.0f;
      for (int i = 0; i < kQKGroup; ++i) amax = std::max(amax, std::fabs(xg[i]));
      if (sc < 255 && amax > 127.5f * d * sc) ++sc;
      y[b].scales[g] = static_cast<uint8_t>(sc);
      const float S = d * sc;
      for (int i = 0; i < kQKGroup; ++i) {
        y[b].qs[g * kQKGroup + i] = static_cast<int8_t>(S > 0.0f ? std::clamp(Nearest(xg[i] / S), -127, 127) : 0);
      }
    }
  }
}

void ToFloatTfQ8(const void* src, float* dst, int64_t n) {
  const auto* x = static_cast<const BlockTfQ8*>(src);
  for (int64_t b = 0; b < n / kQKSuper; ++b) {
    const float d = F16ToF32(x[b].d);
    for (int g = 0; g < kGroups; ++g) {
      const float S = d * x[b].scales[g];
      for (int i = 0; i < kQKGroup; ++i) dst[b * kQKSuper + g * kQKGroup + i] = S * x[b].qs[g * kQKGroup + i];
    }
  }
}

void MatMulTfQ8Scalar(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* xb = static_cast<const BlockQ8_KA*>(xpacked);
  for (int64_t r = r0; r < r1; ++r) {
    const auto* row = reinterpret_cast<const BlockTfQ8*>(wb + r * row_bytes);
    for (int64_t t = 0; t < n_tokens; ++t) {
      const BlockQ8_KA* q = xb + t * nsb;
      float sumf = 0.0f;
      for (int64_t b = 0; b < nsb; ++b) {
        int32_t sumi = 0;
        for (int g = 0; g < kGroups; ++g) {
          int32_t isum = 0;
          for (int i = 0; i < kQKGroup; ++i) isum += row[b].qs[g * kQKGroup + i] * q[b].qs[g * kQKGroup + i];
          sumi += row[b].scales[g] * isum;
        }
        sumf += SuperTerm(q[b].d, F16ToF32(row[b].d), 0.0f, sumi, 0);
      }
      y[t * ldy + r] = sumf;
    }
  }
}

}  // namespace tabfit::qk
