// tabfit quant: the one list of kernels (per format and per instruction set).
// kernels.cpp dispatches from it, quant_test checks every entry against the
// scalar oracle, bench/bench_kernels.cpp times every entry.
//
// Thread-safety: every function here is pure and reentrant.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "quant/kernels.h"
#include "quant/types.h"

namespace tabfit {

// kAvx512Vnni: AVX2 plus AVX-512 F/VL/BW/VNNI (vpdpbusd; 256- and 512-bit vectors).
// Formats without a kAvx512Vnni kernel use their kAvx2 one there (FallbackIsa).
enum class Isa : int { kScalar = 0, kAvx2 = 1, kWasmSimd = 2, kNeon = 3, kAvx512Vnni = 4 };
constexpr int kIsaCount = 5;
const char* IsaName(Isa isa);
// True when the instructions run on this CPU (kScalar always; kAvx2 needs AVX2+FMA+F16C;
// kAvx512Vnni needs those and AVX-512 F, VL, BW and VNNI).
bool IsaAvailable(Isa isa);
// The ISA whose kernels stand in where `isa` has none (kAvx512Vnni -> kAvx2, others -> kScalar).
Isa FallbackIsa(Isa isa);
// The best available ISA (what the public API dispatches to).
Isa BestIsa();

// How activations are packed for a weight type's dot product (see formats.h).
// kQ8_KAR: Q8_KA of the Hadamard-rotated activation (TF_Q2R, see quant/tf_q2r.h).
enum class PackType : int { kF32 = 0, kQ8_0A = 1, kQ8_KA = 2, kQ8_KAR = 3 };
constexpr int kPackTypeCount = 4;

using MatMulFn = void (*)(const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                          const void* xpacked, int64_t n_tokens, float* y, int64_t ldy);
using PackFn = void (*)(const float* x, int64_t n_tokens, int64_t cols, void* out);
using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n, const float* importance);

struct FormatTraits {
  TensorType type;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
  double bits_per_weight;  // including scales/mins
  ToFloatFn to_float;      // nullptr: no dequantization
  FromFloatFn from_float;  // nullptr: cannot be written
  PackType pack;
  MatMulFn matmul[kIsaCount];  // nullptr where no kernel for that ISA (or none at all)
};

// Every format with at least dequantization. Indexed by nothing in particular:
// use FindFormat().
std::span<const FormatTraits> Formats();
const FormatTraits* FindFormat(TensorType t);

struct PackTraits {
  PackType type;
  const char* name;
  int64_t block_elems;  // cols must be a multiple
  int64_t block_bytes;
  PackFn pack[kIsaCount];
};
const PackTraits& PackTraitsFor(PackType p);

// Run-time layouts (kernels.h WeightLayout): one entry per layout; tests check
// `fast` against `reference` and the base format's scalar kernel, benchmarks time both.
using LayoutFn = void (*)(uint8_t* data, int64_t rows, int64_t cols, uint8_t* scratch);
struct LayoutTraits {
  WeightLayout layout;
  const char* name;
  TensorType base[2];      // the formats it rearranges
  int64_t tile_rows;
  LayoutFn to_layout;      // in place, whole tiles
  LayoutFn from_layout;
  MatMulFn reference;      // portable scalar kernel (the oracle; partial tiles)
  MatMulFn fast;           // nullptr when not compiled in
  bool (*fast_available)();  // CPUID says `fast` runs here
};
std::span<const LayoutTraits> Layouts();  // every layout except kRowMajor
const LayoutTraits* FindLayout(WeightLayout l);

// Vector ops (vec.h) per ISA.
struct VecKernels {
  Isa isa;
  float (*dot_f32)(const float* a, const float* b, int64_t n);
  float (*dot_f16_f32)(const uint16_t* a, const float* b, int64_t n);
  void (*axpy_f32)(float a, const float* x, float* y, int64_t n);
  void (*axpy_f16)(float a, const uint16_t* x, float* y, int64_t n);
  void (*f32_to_f16)(const float* x, uint16_t* y, int64_t n);
  void (*f16_to_f32)(const uint16_t* x, float* y, int64_t n);
  double (*exp_shift_sum)(float* x, float shift, int64_t n);
  double (*sum_squares)(const float* x, int64_t n);
  void (*silu_mul)(float* g, const float* u, int64_t n);
};
std::span<const VecKernels> AllVecKernels();  // only the ISAs compiled in

}  // namespace tabfit
