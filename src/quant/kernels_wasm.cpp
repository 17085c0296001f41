// WebAssembly SIMD128 kernels (built when compiling with -msimd128; WASM has no
// run-time feature detection, so a SIMD build simply requires a SIMD-capable engine).
// F32/F16/BF16 mat-mul, Q8_0/Q4_0 x Q8_0A, TF_Q8/Q4/Q3/Q2 x Q8_KA, and vec ops.
#if defined(__wasm_simd128__)

#include <wasm_simd128.h>

#include <cstring>
#include <type_traits>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernels_impl.h"
#include "quant/tf_decode.h"
#include "quant/tile_driver.h"

namespace tabfit::qk {
namespace {

inline float Hsum(v128_t v) {
  return wasm_f32x4_extract_lane(v, 0) + wasm_f32x4_extract_lane(v, 1) + wasm_f32x4_extract_lane(v, 2) +
         wasm_f32x4_extract_lane(v, 3);
}
inline int32_t HsumI(v128_t v) {
  return wasm_i32x4_extract_lane(v, 0) + wasm_i32x4_extract_lane(v, 1) + wasm_i32x4_extract_lane(v, 2) +
         wasm_i32x4_extract_lane(v, 3);
}
inline v128_t Fma(v128_t a, v128_t b, v128_t c) { return wasm_f32x4_add(c, wasm_f32x4_mul(a, b)); }

// 4 halves (low 64 bits of h4) -> 4 floats, exact for normals, subnormals, signed
// zeros, inf and nan: sign-extend, move exponent+mantissa to float position, clear the
// sign copies, rescale by 2^112 (turns half's exponent bias into float's, and half
// subnormals into exact float normals); max-exponent halves become inf/nan.
inline v128_t HalfToFloat4(v128_t h4) {
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_extend_low_i16x8(h4), 13);
  const v128_t bits = wasm_v128_and(e, wasm_i32x4_splat(static_cast<int32_t>(0x8FFFFFFFu)));
  v128_t f = wasm_f32x4_mul(bits, wasm_f32x4_splat(0x1p112f));
  const v128_t infnan = wasm_f32x4_ge(wasm_f32x4_abs(f), wasm_f32x4_splat(65536.0f));
  return wasm_v128_or(f, wasm_v128_and(infnan, wasm_i32x4_splat(0x7f800000)));
}
inline void LoadHalf8(const uint16_t* p, v128_t* lo, v128_t* hi) {
  const v128_t v = wasm_v128_load(p);
  *lo = HalfToFloat4(v);
  *hi = HalfToFloat4(wasm_i64x2_shuffle(v, v, 1, 0));
}

struct F32W {
  static void Load8(const uint8_t* p, int64_t i, v128_t* a, v128_t* b) {
    *a = wasm_v128_load(p + 4 * i);
    *b = wasm_v128_load(p + 4 * i + 16);
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    float v;
    std::memcpy(&v, p + 4 * i, 4);
    return v;
  }
};
struct F16W {
  static void Load8(const uint8_t* p, int64_t i, v128_t* a, v128_t* b) {
    LoadHalf8(reinterpret_cast<const uint16_t*>(p + 2 * i), a, b);
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return F16ToF32(h);
  }
};

struct BF16W {
  static void Load8(const uint8_t* p, int64_t i, v128_t* a, v128_t* b) {
    const v128_t v = wasm_v128_load(p + 2 * i);
    *a = wasm_i32x4_shl(wasm_u32x4_extend_low_u16x8(v), 16);
    *b = wasm_i32x4_shl(wasm_u32x4_extend_high_u16x8(v), 16);
  }
  static float Scalar(const uint8_t* p, int64_t i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return Bf16ToF32(h);
  }
};

template <class W>
struct FloatKernel {
  int64_t cols;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    v128_t acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = wasm_f32x4_splat(0.0f);
    int64_t i = 0;
    for (; i + 8 <= cols; i += 8) {
      v128_t wa[R], wb[R];
      for (int r = 0; r < R; ++r) W::Load8(w[r], i, &wa[r], &wb[r]);
      for (int t = 0; t < T; ++t) {
        const float* xt = reinterpret_cast<const float*>(x[t]) + i;
        const v128_t xa = wasm_v128_load(xt), xb = wasm_v128_load(xt + 4);
        for (int r = 0; r < R; ++r) acc[r][t] = Fma(wb[r], xb, Fma(wa[r], xa, acc[r][t]));
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) {
        float s = Hsum(acc[r][t]);
        const float* xt = reinterpret_cast<const float*>(x[t]);
        for (int64_t j = i; j < cols; ++j) s += W::Scalar(w[r], j) * xt[j];
        out[r][t] = s;
      }
  }
};

// ---- Relaxed SIMD 8-bit dot (TABFIT_WASM_RELAXED builds) ------------------------
// i32x4.relaxed_dot_i8x16_i7x16_add_s(a, b, c): lane i = c[i] + sum_k a[4i+k]*b[4i+k],
// a signed bytes, b bytes in 0..127 (then every engine gives the same result; V8 on
// AVX-VNNI CPUs emits one vpdpbusd). Emscripten 3.1.6 / clang 14 cannot emit the
// instruction, so the kernels call an import with the same stack signature and
// scripts/wasm-relaxed-patch.mjs rewrites every `call` of it into the opcode
// (0xfd 0x93 0x02) after linking; the JS stub (web/wasm/relaxed_stub.js) that
// satisfies the import throws, so an unpatched module fails loudly, never wrongly.
// `const`: a pure function of its operands (lets clang schedule and CSE around it).
#if defined(TABFIT_WASM_RELAXED)
extern "C" __attribute__((import_module("env"), import_name("tabfit_relaxed_dot_add"), const)) v128_t
tabfit_relaxed_dot_add(v128_t a_i8, v128_t b_u7, v128_t acc);
inline v128_t RDot(v128_t a_i8, v128_t b_u7, v128_t acc) { return tabfit_relaxed_dot_add(a_i8, b_u7, acc); }
#endif

// Signed 8-bit dot of 16 lanes -> i32x4 partial sums.
[[maybe_unused]] inline v128_t DotI8x16(v128_t a, v128_t b) {
  const v128_t lo = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_low_i8x16(a), wasm_i16x8_extend_low_i8x16(b));
  const v128_t hi = wasm_i32x4_dot_i16x8(wasm_i16x8_extend_high_i8x16(a), wasm_i16x8_extend_high_i8x16(b));
  return wasm_i32x4_add(lo, hi);
}

// ---- Q8_0 / Q4_0 x Q8_0A, int16 formulation ----------------------------------
// x86 has no signed 8-bit multiply-add in SIMD128 (without relaxed SIMD), but
// i32x4.dot_i16x8_s is one pmaddwd. Bytes viewed as i16 lanes split for free into
// the even and odd elements (sign-extended: shl 8 + shr_s 8 and shr_s 8; Q4_0
// nibbles: and / shr_u), so each weight byte is widened with 1-2 cheap shifts and
// the activation split (the same pairing) is done once per block and token and
// shared by all rows of a tile. Q4_0 codes stay unsigned (0..15); the -8 offset
// is applied once per block as 8 * sum(y). Per 4 blocks the int partial sums are
// reduced into one i32x4 (one lane per block) and scaled by one f32x4 of
// dw*dy, so fp16 scales are converted 4 at a time, in SIMD.

[[maybe_unused]] inline v128_t EvenI8(v128_t v) { return wasm_i16x8_shr(wasm_i16x8_shl(v, 8), 8); }
[[maybe_unused]] inline v128_t OddI8(v128_t v) { return wasm_i16x8_shr(v, 8); }
inline v128_t Dot16(v128_t a, v128_t b) { return wasm_i32x4_dot_i16x8(a, b); }
// [a0+a1+a2+a3 | b... | c... | d...] from a pairwise step (Pair(a, b), Pair(c, d)).
inline v128_t Pair(v128_t a, v128_t b) {
  return wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 4, 1, 5), wasm_i32x4_shuffle(a, b, 2, 6, 3, 7));
}
inline v128_t Join(v128_t ab, v128_t cd) {
  return wasm_i32x4_add(wasm_i32x4_shuffle(ab, cd, 0, 1, 4, 5), wasm_i32x4_shuffle(ab, cd, 2, 3, 6, 7));
}

// One activation block as i16: element pairs (even, odd) of qs[0..16) and qs[16..32).
struct YSplit {
  v128_t e0, o0, e1, o1, s8;  // s8: i32x4 partial sums of the offset term the caller subtracts
};
template <bool kQ4>
inline YSplit SplitY(const int8_t* qs) {  // 32 activation codes
  const v128_t y0 = wasm_v128_load(qs), y1 = wasm_v128_load(qs + 16);
  YSplit s;
  s.e0 = EvenI8(y0);
  s.o0 = OddI8(y0);
  s.e1 = EvenI8(y1);
  s.o1 = OddI8(y1);
  if constexpr (kQ4) {
    const v128_t sum = wasm_i16x8_add(wasm_i16x8_add(s.e0, s.o0), wasm_i16x8_add(s.e1, s.o1));
    s.s8 = Dot16(sum, wasm_i16x8_splat(8));
    // Q4_0 weights are used as whole bytes B = lo + 16*hi (see BlockDot): lo*y0 + hi*y1
    // = B*y0 + hi*(y1 - 16*y0). |y1 - 16*y0| <= 17*128 fits i16.
    s.e1 = wasm_i16x8_sub(s.e1, wasm_i16x8_shl(s.e0, 4));
    s.o1 = wasm_i16x8_sub(s.o1, wasm_i16x8_shl(s.o0, 4));
  } else {
    // Q8_0 weights as i16 lanes v = 256*hi + lo_u (lo_u the unsigned low byte); with the
    // low byte's sign bit flipped, v' = 256*hi + lo + 128 exactly, so
    // lo*ye + hi*yo = v'*ye + hi*(yo - 256*ye) - 128*ye. |yo - 256*ye| <= 127 + 256*127
    // fits i16 because PackQ8_0A codes are within [-127, 127].
    s.s8 = Dot16(wasm_i16x8_add(s.e0, s.e1), wasm_i16x8_splat(128));
    s.o0 = wasm_i16x8_sub(s.o0, wasm_i16x8_shl(s.e0, 8));
    s.o1 = wasm_i16x8_sub(s.o1, wasm_i16x8_shl(s.e1, 8));
  }
  return s;
}
template <bool kQ4>
inline YSplit SplitY(const BlockQ8_0A* xb) {
  return SplitY<kQ4>(xb->qs);
}
// Exact int dot of one weight block with one split activation block, as i32x4.
template <bool kQ4>
inline v128_t BlockDot(const void* qs, const YSplit& y) {
  if constexpr (kQ4) {
    // Without the -8 offset (the caller subtracts y.s8).
    const v128_t v = wasm_v128_load(qs);
    const v128_t be = wasm_v128_and(v, wasm_i16x8_splat(0xFF));  // byte 2k: elements 2k + 16*(16+2k)
    const v128_t he = wasm_u16x8_shr(be, 4);                     // element 16+2k
    const v128_t bo = wasm_u16x8_shr(v, 8);                      // byte 2k+1: 2k+1 + 16*(17+2k)
    const v128_t ho = wasm_u16x8_shr(v, 12);                     // element 17+2k
    const v128_t a = wasm_i32x4_add(Dot16(be, y.e0), Dot16(bo, y.o0));
    const v128_t b = wasm_i32x4_add(Dot16(he, y.e1), Dot16(ho, y.o1));
    return wasm_i32x4_add(a, b);
  } else {
    // Plus 128*sum(y) (the caller subtracts y.s8).
    const v128_t w0 = wasm_v128_load(qs), w1 = wasm_v128_load(static_cast<const uint8_t*>(qs) + 16);
    const v128_t flip = wasm_i16x8_splat(0x80);
    const v128_t a = wasm_i32x4_add(Dot16(wasm_v128_xor(w0, flip), y.e0), Dot16(OddI8(w0), y.o0));
    const v128_t b = wasm_i32x4_add(Dot16(wasm_v128_xor(w1, flip), y.e1), Dot16(OddI8(w1), y.o1));
    return wasm_i32x4_add(a, b);
  }
}

// Activation policy of the plain kernel: i16 split activations, offsets always
// subtracted (Q4_0: 8*sum(y); Q8_0: 128*sum(y), see BlockDot).
template <bool kQ4>
struct ActI16 {
  using Y = YSplit;
  static constexpr bool kSubtractS8 = true;
  static Y Load(const BlockQ8_0A* xb) { return SplitY<kQ4>(xb); }
  static v128_t Dot(const void* qs, const Y& y) { return BlockDot<kQ4>(qs, y); }
};

// Q4_0 / Q8_0 x Q8_0A decode/prefill tile: exact int block dots (policy A), per 4
// blocks reduced into one i32x4 (one lane per block) and scaled by one f32x4 of dw*dy.
template <bool kQ4, class A>
struct QBlockKernel {
  using WBlock = std::conditional_t<kQ4, BlockQ4_0, BlockQ8_0>;
  int64_t nb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    const WBlock* wr[R];
    const BlockQ8_0A* xr[T];
    for (int r = 0; r < R; ++r) wr[r] = reinterpret_cast<const WBlock*>(w[r]);
    for (int t = 0; t < T; ++t) xr[t] = reinterpret_cast<const BlockQ8_0A*>(x[t]);
    v128_t acc[R][T];
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) acc[r][t] = wasm_f32x4_splat(0.0f);
    int64_t b = 0;
    for (; b + 4 <= nb; b += 4) {
      v128_t half[R][T];  // Pair() of blocks b, b+1 then b+2, b+3
      v128_t sums[R][T];
      v128_t s8half[T], s8[T];  // the same for the offset terms
#pragma clang loop unroll(full)
      for (int j = 0; j < 4; j += 2) {
        for (int t = 0; t < T; ++t) {
          const typename A::Y ya = A::Load(xr[t] + b + j), yb = A::Load(xr[t] + b + j + 1);
          if constexpr (A::kSubtractS8) {
            if (j == 0) {
              s8half[t] = Pair(ya.s8, yb.s8);
            } else {
              s8[t] = Join(s8half[t], Pair(ya.s8, yb.s8));
            }
          }
          for (int r = 0; r < R; ++r) {
            const v128_t p = Pair(A::Dot(wr[r][b + j].qs, ya), A::Dot(wr[r][b + j + 1].qs, yb));
            if (j == 0) {
              half[r][t] = p;
            } else {
              sums[r][t] = Join(half[r][t], p);
            }
          }
        }
      }
      v128_t dw[R];
      for (int r = 0; r < R; ++r) {
        const WBlock* q = wr[r] + b;
        v128_t h = wasm_v128_load16_lane(&q[0].d, wasm_i16x8_splat(0), 0);
        h = wasm_v128_load16_lane(&q[1].d, h, 1);
        h = wasm_v128_load16_lane(&q[2].d, h, 2);
        h = wasm_v128_load16_lane(&q[3].d, h, 3);
        dw[r] = HalfToFloat4(h);
        if constexpr (A::kSubtractS8) {
          for (int t = 0; t < T; ++t) sums[r][t] = wasm_i32x4_sub(sums[r][t], s8[t]);
        }
      }
      for (int t = 0; t < T; ++t) {
        const BlockQ8_0A* xb = xr[t] + b;
        const v128_t dy = wasm_f32x4_make(xb[0].d, xb[1].d, xb[2].d, xb[3].d);
        for (int r = 0; r < R; ++r)
          acc[r][t] = Fma(wasm_f32x4_convert_i32x4(sums[r][t]), wasm_f32x4_mul(dw[r], dy), acc[r][t]);
      }
    }
    for (; b < nb; ++b) {
      for (int t = 0; t < T; ++t) {
        const typename A::Y ys = A::Load(xr[t] + b);
        for (int r = 0; r < R; ++r) {
          v128_t p = A::Dot(wr[r][b].qs, ys);
          if constexpr (A::kSubtractS8) p = wasm_i32x4_sub(p, ys.s8);
          acc[r][t] =
              Fma(wasm_f32x4_convert_i32x4(p), wasm_f32x4_splat(F16ToF32(wr[r][b].d) * xr[t][b].d), acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = Hsum(acc[r][t]);
  }
};

#if defined(TABFIT_WASM_RELAXED)
// Q4_0 / Q8_0 x Q8_0A with the relaxed 8-bit dot, exact int sums per block and the
// same block reduction and float expression (QBlockKernel): identical results.
// Q4_0: the unsigned nibbles (0..15) are the i7 operand and the activation codes the
//   i8 one: two RDot per block (low nibbles with qs[0..16), high with qs[16..32)); the
//   -8 offset is 8*sum(y), two RDot with splat(8) per block and token.
// Q8_0: both sides are signed, so the activation codes (PackQ8_0A: within [-127, 127])
//   are split once per block and token into y+ = max(y, 0) and y- = y+ - y, both in
//   0..127: w.y = w.y+ - w.y-, four RDot per block with the weights as the i8 operand.
// The activation work is shared by all rows of a tile.
template <bool kQ4>
struct ActRelaxed {
  v128_t y0, y1, n0, n1;  // Q4: y (n unused); Q8: y+ and y- of both 16-halves
  v128_t s8;              // Q4: i32x4 partial sums of 8*y, subtracted by the caller
};
template <bool kQ4>
inline ActRelaxed<kQ4> LoadActRelaxed(const int8_t* qs) {
  ActRelaxed<kQ4> a;
  const v128_t y0 = wasm_v128_load(qs), y1 = wasm_v128_load(qs + 16);
  if constexpr (kQ4) {
    const v128_t eight = wasm_i8x16_splat(8);
    a.y0 = y0;
    a.y1 = y1;
    a.s8 = RDot(y1, eight, RDot(y0, eight, wasm_i32x4_splat(0)));
  } else {
    const v128_t z = wasm_i8x16_splat(0);
    a.y0 = wasm_i8x16_max(y0, z);
    a.y1 = wasm_i8x16_max(y1, z);
    a.n0 = wasm_i8x16_sub(a.y0, y0);
    a.n1 = wasm_i8x16_sub(a.y1, y1);
  }
  return a;
}
template <bool kQ4>
inline v128_t BlockDotRelaxed(const void* qs_, const ActRelaxed<kQ4>& a) {
  const auto* qs = static_cast<const uint8_t*>(qs_);
  const v128_t zero = wasm_i32x4_splat(0);
  if constexpr (kQ4) {  // without the -8 offset
    const v128_t m15 = wasm_i8x16_splat(0x0F);
    const v128_t v = wasm_v128_load(qs);
    return RDot(a.y1, wasm_v128_and(wasm_u16x8_shr(v, 4), m15), RDot(a.y0, wasm_v128_and(v, m15), zero));
  } else {
    const v128_t w0 = wasm_v128_load(qs), w1 = wasm_v128_load(qs + 16);
    return wasm_i32x4_sub(RDot(w1, a.y1, RDot(w0, a.y0, zero)), RDot(w1, a.n1, RDot(w0, a.n0, zero)));
  }
}

template <bool kQ4>
struct ActRelaxedPolicy {
  using Y = ActRelaxed<kQ4>;
  static constexpr bool kSubtractS8 = kQ4;  // Q8_0's y+/y- split needs no offset
  static Y Load(const BlockQ8_0A* xb) { return LoadActRelaxed<kQ4>(xb->qs); }
  static v128_t Dot(const void* qs, const Y& y) { return BlockDotRelaxed<kQ4>(qs, y); }
};
#endif

// ---- TF_Q4 x Q8_KA, int16 formulation -----------------------------------------
// Same widening as above: for group pair p, the 32 code bytes hold group 2p in the
// low and group 2p+1 in the high nibbles; as i16 lanes, and/shr give the even and
// odd elements of both groups. Per group one i32x4 of exact partial sums; the 8
// groups are reduced to two i32x4 (one lane per group), multiplied by the 6-bit
// sub-scales (unpacked in SIMD), and the mins term is one pmaddwd of m with the
// activation's pair sums of bsums. sumi/summ are exact, then the scalar oracle's
// SuperTerm: bit-identical to MatMulTfQ4Scalar.

// 6-bit sc[0..7] and m[0..7] of a TF_Q4/Q3 scales[12] as i16x8 each.
inline void UnpackScales6x8(const uint8_t* s, v128_t* sc, v128_t* m) {
  const v128_t raw = wasm_v128_load64_zero(s);  // bytes 0..7 (low nibble sc, high nibble m)
  uint32_t hi32;
  std::memcpy(&hi32, s + 8, 4);
  const v128_t b = wasm_u16x8_extend_low_u8x16(raw);
  // Lane g of hs: byte 8 + g/4 (sc high bits) ; of hm: byte 10 + g/4 (m high bits).
  const v128_t hv = wasm_i32x4_splat(static_cast<int32_t>(hi32));
  const v128_t hs = wasm_i8x16_swizzle(hv, wasm_i8x16_const(0, -1, 0, -1, 0, -1, 0, -1, 1, -1, 1, -1, 1, -1, 1, -1));
  const v128_t hm = wasm_i8x16_swizzle(hv, wasm_i8x16_const(2, -1, 2, -1, 2, -1, 2, -1, 3, -1, 3, -1, 3, -1, 3, -1));
  // (byte << (6 - 2*(g%4))) >> 6 == byte >> 2*(g%4): per-lane shifts by one multiply.
  const v128_t mul = wasm_i16x8_const(64, 16, 4, 1, 64, 16, 4, 1);
  const v128_t three = wasm_i16x8_splat(3);
  const v128_t sh = wasm_v128_and(wasm_u16x8_shr(wasm_i16x8_mul(hs, mul), 6), three);
  const v128_t mh = wasm_v128_and(wasm_u16x8_shr(wasm_i16x8_mul(hm, mul), 6), three);
  *sc = wasm_v128_or(wasm_v128_and(b, wasm_i16x8_splat(15)), wasm_i16x8_shl(sh, 4));
  *m = wasm_v128_or(wasm_u16x8_shr(b, 4), wasm_i16x8_shl(mh, 4));
}

// Horizontal sums of a and b: lanes 0 and 2 of the result... returned as a pair.
inline void Hsum2I(v128_t a, v128_t b, int32_t* sa, int32_t* sb) {
  const v128_t t = wasm_i32x4_add(wasm_i32x4_shuffle(a, b, 0, 1, 4, 5), wasm_i32x4_shuffle(a, b, 2, 3, 6, 7));
  const v128_t u = wasm_i32x4_add(t, wasm_i32x4_shuffle(t, t, 1, 0, 3, 2));
  *sa = wasm_i32x4_extract_lane(u, 0);
  *sb = wasm_i32x4_extract_lane(u, 2);
}

struct TfQ4KernelI16 {
  int64_t nsb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    [[maybe_unused]] const v128_t m15 = wasm_i16x8_splat(0x0F);
    for (int64_t b = 0; b < nsb; ++b) {
      const BlockTfQ4* blk[R];
      const BlockQ8_KA* xb[T];
      for (int r = 0; r < R; ++r) blk[r] = reinterpret_cast<const BlockTfQ4*>(w[r]) + b;
      for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
      v128_t gsum[R][T][2];  // per group g: lane g%4 of gsum[..][g/4]
      v128_t half[R][T];
#pragma clang loop unroll(full)
      for (int p = 0; p < 4; ++p) {
        for (int t = 0; t < T; ++t) {
          // Activations of groups 2p (ya*) and 2p+1 (yb*), split even/odd, both 16-halves.
          const int8_t* qa = xb[t]->qs + 64 * p;
          const v128_t a0 = wasm_v128_load(qa), a1 = wasm_v128_load(qa + 16);
          const v128_t b0 = wasm_v128_load(qa + 32), b1 = wasm_v128_load(qa + 48);
#if defined(TABFIT_WASM_RELAXED)
          // Byte k: low nibble = element k of group 2p (activation qa[k]), high nibble
          // = element k of group 2p+1 (qa[32+k]); nibbles are the i7 operand.
          const v128_t n15 = wasm_i8x16_splat(0x0F), zero = wasm_i32x4_splat(0);
          for (int r = 0; r < R; ++r) {
            const uint8_t* q = blk[r]->qs + 32 * p;
            const v128_t v0 = wasm_v128_load(q), v1 = wasm_v128_load(q + 16);
            const v128_t ga = RDot(a1, wasm_v128_and(v1, n15), RDot(a0, wasm_v128_and(v0, n15), zero));
            const v128_t gb = RDot(b1, wasm_v128_and(wasm_u16x8_shr(v1, 4), n15),
                                   RDot(b0, wasm_v128_and(wasm_u16x8_shr(v0, 4), n15), zero));
            const v128_t pr = Pair(ga, gb);
            if (p % 2 == 0) {
              half[r][t] = pr;
            } else {
              gsum[r][t][p / 2] = Join(half[r][t], pr);
            }
          }
#else
          const v128_t ae0 = EvenI8(a0), ao0 = OddI8(a0), ae1 = EvenI8(a1), ao1 = OddI8(a1);
          const v128_t be0 = EvenI8(b0), bo0 = OddI8(b0), be1 = EvenI8(b1), bo1 = OddI8(b1);
          for (int r = 0; r < R; ++r) {
            const uint8_t* q = blk[r]->qs + 32 * p;
            const v128_t v0 = wasm_v128_load(q), v1 = wasm_v128_load(q + 16);
            const v128_t ga = wasm_i32x4_add(
                wasm_i32x4_add(Dot16(wasm_v128_and(v0, m15), ae0), Dot16(wasm_v128_and(wasm_u16x8_shr(v0, 8), m15), ao0)),
                wasm_i32x4_add(Dot16(wasm_v128_and(v1, m15), ae1),
                               Dot16(wasm_v128_and(wasm_u16x8_shr(v1, 8), m15), ao1)));
            const v128_t gb = wasm_i32x4_add(
                wasm_i32x4_add(Dot16(wasm_v128_and(wasm_u16x8_shr(v0, 4), m15), be0), Dot16(wasm_u16x8_shr(v0, 12), bo0)),
                wasm_i32x4_add(Dot16(wasm_v128_and(wasm_u16x8_shr(v1, 4), m15), be1),
                               Dot16(wasm_u16x8_shr(v1, 12), bo1)));
            const v128_t pr = Pair(ga, gb);
            if (p % 2 == 0) {
              half[r][t] = pr;
            } else {
              gsum[r][t][p / 2] = Join(half[r][t], pr);
            }
          }
#endif
        }
      }
      // Activation pair sums of bsums (one per group) as i16x8: |sum| <= 32*128.
      v128_t bs2[T];
      for (int t = 0; t < T; ++t) {
        const v128_t ones = wasm_i16x8_splat(1);
        bs2[t] = wasm_i16x8_narrow_i32x4(Dot16(wasm_v128_load(xb[t]->bsums), ones),
                                         Dot16(wasm_v128_load(xb[t]->bsums + 8), ones));
      }
      for (int r = 0; r < R; ++r) {
        v128_t sc, mn;
        UnpackScales6x8(blk[r]->scales, &sc, &mn);
        const v128_t sclo = wasm_u32x4_extend_low_u16x8(sc), schi = wasm_u32x4_extend_high_u16x8(sc);
        uint32_t dd;
        std::memcpy(&dd, &blk[r]->d, 4);  // d, dmin
        const v128_t df = HalfToFloat4(wasm_i32x4_make(static_cast<int32_t>(dd), 0, 0, 0));
        const float d = wasm_f32x4_extract_lane(df, 0), dmin = wasm_f32x4_extract_lane(df, 1);
        for (int t = 0; t < T; ++t) {
          const v128_t si = wasm_i32x4_add(wasm_i32x4_mul(gsum[r][t][0], sclo), wasm_i32x4_mul(gsum[r][t][1], schi));
          int32_t sumi, summ;
          Hsum2I(si, Dot16(mn, bs2[t]), &sumi, &summ);
          sumf[r][t] += SuperTerm(xb[t]->d, d, dmin, sumi, summ);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

// TF_Q8: w = d*sc[g]*q, q int8.
struct TfQ8Kernel {
  int64_t nsb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const BlockTfQ8* blk[R];
      for (int r = 0; r < R; ++r) blk[r] = reinterpret_cast<const BlockTfQ8*>(w[r]) + b;
      for (int t = 0; t < T; ++t) {
        const auto* xb = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
        for (int r = 0; r < R; ++r) {
          v128_t acc = wasm_i32x4_splat(0);
          for (int g = 0; g < 8; ++g) {
#if defined(TABFIT_WASM_RELAXED)
            // Both sides signed: split the activation codes (within [-127, 127]) into
            // y+ = max(y, 0) and y- = y+ - y, both 0..127 (see ActRelaxed<false>).
            const v128_t z = wasm_i8x16_splat(0), zero = wasm_i32x4_splat(0);
            const v128_t y0 = wasm_v128_load(xb->qs + 32 * g), y1 = wasm_v128_load(xb->qs + 32 * g + 16);
            const v128_t p0 = wasm_i8x16_max(y0, z), p1 = wasm_i8x16_max(y1, z);
            const v128_t n0 = wasm_i8x16_sub(p0, y0), n1 = wasm_i8x16_sub(p1, y1);
            const v128_t w0 = wasm_v128_load(blk[r]->qs + 32 * g), w1 = wasm_v128_load(blk[r]->qs + 32 * g + 16);
            const v128_t p = wasm_i32x4_sub(RDot(w1, p1, RDot(w0, p0, zero)), RDot(w1, n1, RDot(w0, n0, zero)));
#else
            const v128_t p = wasm_i32x4_add(DotI8x16(wasm_v128_load(blk[r]->qs + 32 * g), wasm_v128_load(xb->qs + 32 * g)),
                                            DotI8x16(wasm_v128_load(blk[r]->qs + 32 * g + 16),
                                                     wasm_v128_load(xb->qs + 32 * g + 16)));
#endif
            acc = wasm_i32x4_add(acc, wasm_i32x4_mul(p, wasm_i32x4_splat(blk[r]->scales[g])));
          }
          sumf[r][t] += SuperTerm(xb->d, F16ToF32(blk[r]->d), 0.0f, HsumI(acc), 0);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

// TF formats with unsigned codes, decoded 32 at a time (chunk c = values 32c..32c+31)
// straight from the packed bytes. Exact int sums per superblock and the scalar
// oracle's SuperTerm, so results are bit-identical to the scalar kernels.
inline void Low2(const uint8_t* q64, int c, v128_t* v0, v128_t* v1) {
  const uint8_t* p = q64 + 32 * (c / 4);
  const int sh = 2 * (c % 4);
  const v128_t three = wasm_i8x16_splat(3);
  *v0 = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(p), sh), three);
  *v1 = wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(p + 16), sh), three);
}

struct WDecQ3 {
  using Block = BlockTfQ3;
  static void Codes(const Block& b, int c, v128_t* v0, v128_t* v1) {
    Low2(b.ql, c, v0, v1);
    const v128_t one = wasm_i8x16_splat(1);
    const v128_t h0 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(b.qh), c), one), 2);
    const v128_t h1 = wasm_i8x16_shl(wasm_v128_and(wasm_u8x16_shr(wasm_v128_load(b.qh + 16), c), one), 2);
    *v0 = wasm_v128_or(*v0, h0);
    *v1 = wasm_v128_or(*v1, h1);
  }
};
struct WDecQ2 {
  using Block = BlockTfQ2;
  static void Codes(const Block& b, int c, v128_t* v0, v128_t* v1) { Low2(b.qs, c, v0, v1); }
};

// Dot of 16 unsigned codes (0..127) with 16 signed activation codes -> i32x4 partial sums;
// kRelaxed: with the relaxed dot (in TABFIT_WASM_RELAXED builds).
template <bool kRelaxed>
inline v128_t DotCodesI8(v128_t codes, v128_t y) {
#if defined(TABFIT_WASM_RELAXED)
  if constexpr (kRelaxed) return RDot(y, codes, wasm_i32x4_splat(0));
#endif
  return DotI8x16(codes, y);
}

// kQ2: 16-groups with sc*(q - z/4); otherwise 32-groups with 6-bit sc and min.
template <class Dec, bool kQ2>
struct TfKernel {
  using Block = typename Dec::Block;
  int64_t nsb;
  template <int R, int T>
  void Run(const uint8_t* const* w, const uint8_t* const* x, float (*out)[T]) const {
    float sumf[R][T] = {};
    for (int64_t b = 0; b < nsb; ++b) {
      const Block* blk[R];
      uint8_t sc[R][16], mz[R][16];
      float d[R], dmin[R];
      for (int r = 0; r < R; ++r) {
        blk[r] = reinterpret_cast<const Block*>(w[r]) + b;
        d[r] = F16ToF32(blk[r]->d);
        if constexpr (kQ2) {
          UnpackScz(blk[r]->scz, sc[r], mz[r]);
          dmin[r] = d[r] * 0.25f;
        } else {
          UnpackScales6(blk[r]->scales, sc[r], mz[r]);
          dmin[r] = F16ToF32(blk[r]->dmin);
        }
      }
      const BlockQ8_KA* xb[T];
      for (int t = 0; t < T; ++t) xb[t] = reinterpret_cast<const BlockQ8_KA*>(x[t]) + b;
      v128_t acc[R][T];
      for (int r = 0; r < R; ++r)
        for (int t = 0; t < T; ++t) acc[r][t] = wasm_i32x4_splat(0);
      for (int c = 0; c < 8; ++c) {
        v128_t q0[R], q1[R];
        for (int r = 0; r < R; ++r) Dec::Codes(*blk[r], c, &q0[r], &q1[r]);
        for (int t = 0; t < T; ++t) {
          const v128_t y0 = wasm_v128_load(xb[t]->qs + 32 * c), y1 = wasm_v128_load(xb[t]->qs + 32 * c + 16);
          for (int r = 0; r < R; ++r) {
            if constexpr (kQ2) {
              // Relaxed dot for decode tiles only: with 2-token tiles it measured ~8% slower
              // than the widening dot (Chromium 156, kernel_bench n_tokens 2 and 4).
              acc[r][t] =
                  wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(DotCodesI8<T == 1>(q0[r], y0), wasm_i32x4_splat(sc[r][2 * c])));
              acc[r][t] = wasm_i32x4_add(acc[r][t],
                                         wasm_i32x4_mul(DotCodesI8<T == 1>(q1[r], y1), wasm_i32x4_splat(sc[r][2 * c + 1])));
            } else {
#if defined(TABFIT_WASM_RELAXED)
              const v128_t p = RDot(y1, q1[r], RDot(y0, q0[r], wasm_i32x4_splat(0)));
#else
              const v128_t p = wasm_i32x4_add(DotI8x16(q0[r], y0), DotI8x16(q1[r], y1));
#endif
              acc[r][t] = wasm_i32x4_add(acc[r][t], wasm_i32x4_mul(p, wasm_i32x4_splat(sc[r][c])));
            }
          }
        }
      }
      for (int t = 0; t < T; ++t) {
        for (int r = 0; r < R; ++r) {
          int32_t summ = 0;
          if constexpr (kQ2) {
            for (int g = 0; g < 16; ++g) summ += sc[r][g] * mz[r][g] * xb[t]->bsums[g];
          } else {
            for (int g = 0; g < 8; ++g) summ += mz[r][g] * (xb[t]->bsums[2 * g] + xb[t]->bsums[2 * g + 1]);
          }
          sumf[r][t] += SuperTerm(xb[t]->d, d[r], dmin[r], HsumI(acc[r][t]), summ);
        }
      }
    }
    for (int r = 0; r < R; ++r)
      for (int t = 0; t < T; ++t) out[r][t] = sumf[r][t];
  }
};

// Tile shapes: decode (1 token) R1 rows; prefill RN rows x TN tokens.
#ifndef TABFIT_WASM_QR1
#define TABFIT_WASM_QR1 4
#define TABFIT_WASM_QRN 2
#define TABFIT_WASM_QTN 2
#endif
constexpr int kQRows1 = TABFIT_WASM_QR1, kQRowsN = TABFIT_WASM_QRN, kQTokN = TABFIT_WASM_QTN;
#ifndef TABFIT_WASM_TR1
#define TABFIT_WASM_TR1 4
#define TABFIT_WASM_TRN 2
#define TABFIT_WASM_TTN 2
#endif
constexpr int kTRows1 = TABFIT_WASM_TR1, kTRowsN = TABFIT_WASM_TRN, kTTokN = TABFIT_WASM_TTN;

}  // namespace

void MatMulF32Wasm(TF_MATMUL_ARGS) {
  DriveTiles<4, 2>(FloatKernel<F32W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulF16Wasm(TF_MATMUL_ARGS) {
  // Measured under Node (V8): f16 decode costs dominate, so prefill reuses each
  // converted weight vector for 4 tokens.
  DriveSplit<4, 2, 4>(FloatKernel<F16W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulBF16Wasm(TF_MATMUL_ARGS) {
  DriveTiles<4, 2>(FloatKernel<BF16W>{cols}, w, row_bytes, r0, r1, xpacked, cols * 4, n_tokens, y, ldy);
}
void MatMulTfQ8Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfQ8Kernel{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens, y, ldy);
}
void MatMulTfQ3Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfKernel<WDecQ3, false>{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens,
                   y, ldy);
}
void MatMulQ8_0Wasm(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK8_0;
#if defined(TABFIT_WASM_RELAXED)
  using Q8Kernel = QBlockKernel<false, ActRelaxedPolicy<false>>;
#else
  using Q8Kernel = QBlockKernel<false, ActI16<false>>;
#endif
  DriveSplit<kQRows1, kQRowsN, kQTokN>(Q8Kernel{nb}, w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy);
}
void MatMulQ4_0Wasm(TF_MATMUL_ARGS) {
  const int64_t nb = cols / kQK4_0;
#if defined(TABFIT_WASM_RELAXED)
  using Q4Kernel = QBlockKernel<true, ActRelaxedPolicy<true>>;
#else
  using Q4Kernel = QBlockKernel<true, ActI16<true>>;
#endif
  DriveSplit<kQRows1, kQRowsN, kQTokN>(Q4Kernel{nb}, w, row_bytes, r0, r1, xpacked, nb * sizeof(BlockQ8_0A), n_tokens, y, ldy);
}
void MatMulTfQ4Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveSplit<kTRows1, kTRowsN, kTTokN>(TfQ4KernelI16{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens,
                   y, ldy);
}
void MatMulTfQ2Wasm(TF_MATMUL_ARGS) {
  const int64_t nsb = cols / kQKSuper;
  DriveTiles<2, 2>(TfKernel<WDecQ2, true>{nsb}, w, row_bytes, r0, r1, xpacked, nsb * sizeof(BlockQ8_KA), n_tokens,
                   y, ldy);
}

float DotF32Wasm(const float* a, const float* b, int64_t n) {
  v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    s0 = Fma(wasm_v128_load(a + i), wasm_v128_load(b + i), s0);
    s1 = Fma(wasm_v128_load(a + i + 4), wasm_v128_load(b + i + 4), s1);
  }
  float s = Hsum(wasm_f32x4_add(s0, s1));
  for (; i < n; ++i) s += a[i] * b[i];
  return s;
}
namespace {
// exp(x) for x in [-87.3, 88.4] (clamped), as vec_avx2.cpp's Exp8: x = n ln2 + r,
// e^r by Cephes expf's degree-7 polynomial, 2^n through the exponent bits.
// Without a fused multiply-add the reduction is ~1 ulp less exact: within 2 ulp
// of std::exp (Vec.ExpShiftSumMatchesStdExp, selfcheck).
inline v128_t Exp4(v128_t x) {
  x = wasm_f32x4_min(wasm_f32x4_max(x, wasm_f32x4_splat(-87.33654f)), wasm_f32x4_splat(88.3762626647949f));
  const v128_t n = wasm_f32x4_nearest(wasm_f32x4_mul(x, wasm_f32x4_splat(1.44269504088896341f)));
  v128_t r = wasm_f32x4_sub(x, wasm_f32x4_mul(n, wasm_f32x4_splat(0.693359375f)));
  r = wasm_f32x4_sub(r, wasm_f32x4_mul(n, wasm_f32x4_splat(-2.12194440e-4f)));
  v128_t p = wasm_f32x4_splat(1.9875691500e-4f);
  p = Fma(p, r, wasm_f32x4_splat(1.3981999507e-3f));
  p = Fma(p, r, wasm_f32x4_splat(8.3334519073e-3f));
  p = Fma(p, r, wasm_f32x4_splat(4.1665795894e-2f));
  p = Fma(p, r, wasm_f32x4_splat(1.6666665459e-1f));
  p = Fma(p, r, wasm_f32x4_splat(5.0000001201e-1f));
  p = Fma(p, wasm_f32x4_mul(r, r), wasm_f32x4_add(r, wasm_f32x4_splat(1.0f)));
  const v128_t e = wasm_i32x4_shl(wasm_i32x4_add(wasm_i32x4_trunc_sat_f32x4(n), wasm_i32x4_splat(127)), 23);
  return wasm_f32x4_mul(p, e);
}
}  // namespace

double ExpShiftSumWasm(float* x, float shift, int64_t n) {
  const v128_t vs = wasm_f32x4_splat(shift);
  v128_t acc = wasm_f64x2_splat(0.0);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const v128_t e = Exp4(wasm_f32x4_sub(wasm_v128_load(x + i), vs));
    wasm_v128_store(x + i, e);
    acc = wasm_f64x2_add(acc, wasm_f64x2_add(wasm_f64x2_promote_low_f32x4(e),
                                             wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(e, e, 1, 0))));
  }
  double sum = wasm_f64x2_extract_lane(acc, 0) + wasm_f64x2_extract_lane(acc, 1);
  if (i < n) {  // the tail through the same polynomial
    alignas(16) float t[4];
    for (int j = 0; j < 4; ++j) t[j] = i + j < n ? x[i + j] - shift : -100.0f;
    wasm_v128_store(t, Exp4(wasm_v128_load(t)));
    for (int j = 0; i + j < n; ++j) {
      x[i + j] = t[j];
      sum += t[j];
    }
  }
  return sum;
}

// silu(g) * u = g / (1 + exp(-g)) * u; the tail through the same polynomial.
void SiluMulWasm(float* g, const float* u, int64_t n) {
  const v128_t one = wasm_f32x4_splat(1.0f);
  auto silu_mul = [&](v128_t gv, v128_t uv) {
    const v128_t e = Exp4(wasm_f32x4_neg(gv));
    return wasm_f32x4_mul(wasm_f32x4_div(gv, wasm_f32x4_add(one, e)), uv);
  };
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(g + i, silu_mul(wasm_v128_load(g + i), wasm_v128_load(u + i)));
  if (i < n) {
    alignas(16) float tg[4] = {}, tu[4] = {};
    for (int j = 0; i + j < n; ++j) {
      tg[j] = g[i + j];
      tu[j] = u[i + j];
    }
    wasm_v128_store(tg, silu_mul(wasm_v128_load(tg), wasm_v128_load(tu)));
    for (int j = 0; i + j < n; ++j) g[i + j] = tg[j];
  }
}

// RMSNorm's sum of squares in double: f64x2 lanes, four accumulators.
double SumSquaresWasm(const float* x, int64_t n) {
  v128_t acc[4] = {wasm_f64x2_splat(0.0), wasm_f64x2_splat(0.0), wasm_f64x2_splat(0.0), wasm_f64x2_splat(0.0)};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const v128_t a = wasm_v128_load(x + i), b = wasm_v128_load(x + i + 4);
    const v128_t d[4] = {wasm_f64x2_promote_low_f32x4(a), wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(a, a, 1, 0)),
                         wasm_f64x2_promote_low_f32x4(b), wasm_f64x2_promote_low_f32x4(wasm_i64x2_shuffle(b, b, 1, 0))};
    for (int k = 0; k < 4; ++k) acc[k] = wasm_f64x2_add(acc[k], wasm_f64x2_mul(d[k], d[k]));
  }
  const v128_t t = wasm_f64x2_add(wasm_f64x2_add(acc[0], acc[1]), wasm_f64x2_add(acc[2], acc[3]));
  double sum = wasm_f64x2_extract_lane(t, 0) + wasm_f64x2_extract_lane(t, 1);
  for (; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  return sum;
}
float DotF16F32Wasm(const uint16_t* a, const float* b, int64_t n) {
  v128_t s0 = wasm_f32x4_splat(0.0f), s1 = s0;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t lo, hi;
    LoadHalf8(a + i, &lo, &hi);
    s0 = Fma(lo, wasm_v128_load(b + i), s0);
    s1 = Fma(hi, wasm_v128_load(b + i + 4), s1);
  }
  float s = Hsum(wasm_f32x4_add(s0, s1));
  for (; i < n; ++i) s += F16ToF32(a[i]) * b[i];
  return s;
}
void AxpyF32Wasm(float a, const float* x, float* y, int64_t n) {
  const v128_t av = wasm_f32x4_splat(a);
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) wasm_v128_store(y + i, Fma(av, wasm_v128_load(x + i), wasm_v128_load(y + i)));
  for (; i < n; ++i) y[i] += a * x[i];
}
void AxpyF16Wasm(float a, const uint16_t* x, float* y, int64_t n) {
  const v128_t av = wasm_f32x4_splat(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    v128_t lo, hi;
    LoadHalf8(x + i, &lo, &hi);
    wasm_v128_store(y + i, Fma(av, lo, wasm_v128_load(y + i)));
    wasm_v128_store(y + i + 4, Fma(av, hi, wasm_v128_load(y + i + 4)));
  }
  for (; i < n; ++i) y[i] += a * F16ToF32(x[i]);
}

}  // namespace tabfit::qk

#endif  // __wasm_simd128__
