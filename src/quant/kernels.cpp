// Kernel list (one constexpr table per concern) and run-time dispatch.
#include "quant/kernels.h"

#include "quant/formats.h"
#include "quant/kernel_list.h"
#include "quant/kernels_impl.h"
#include "quant/tf_q2r.h"
#include "quant/tf_q2s.h"
#include "quant/q4_0x16.h"
#include "quant/q8_0x16.h"
#include "quant/tf_q2x16.h"
#include "quant/tf_q4x16.h"
#include "quant/tf_q8x16.h"
#include "quant/vec.h"

#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
namespace tabfit::qk {
void MatMulTfQ4Avx512Vnni(TF_MATMUL_ARGS);  // kernels_avx512vnni.cpp
void MatMulTfQ8Avx512Vnni(TF_MATMUL_ARGS);  // kernels_avx512vnni.cpp
}  // namespace tabfit::qk
#endif

namespace tabfit {

namespace {
using namespace qk;

#if defined(TABFIT_HAVE_AVX2_KERNELS)
#define AVX2(f) f
#else
#define AVX2(f) nullptr
#endif
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS)
#define VNNI(f) f
#else
#define VNNI(f) nullptr
#endif
#if defined(TABFIT_HAVE_WASM_KERNELS)
#define WASM(f) f
#else
#define WASM(f) nullptr
#endif
#if defined(TABFIT_HAVE_NEON_KERNELS)
#define NEON(f) f
#else
#define NEON(f) nullptr
#endif

// matmul[] order: kScalar, kAvx2, kWasmSimd, kNeon, kAvx512Vnni.
constexpr FormatTraits kFormats[] = {
    {TensorType::kF32, "F32", 1, 4, 32.0, ToFloatF32, FromFloatF32, PackType::kF32,
     {MatMulF32Scalar, AVX2(MatMulF32Avx2), WASM(MatMulF32Wasm), NEON(MatMulF32Neon), VNNI(MatMulF32Avx512Vnni)}},
    {TensorType::kF16, "F16", 1, 2, 16.0, ToFloatF16, FromFloatF16, PackType::kF32,
     {MatMulF16Scalar, AVX2(MatMulF16Avx2), WASM(MatMulF16Wasm), nullptr, VNNI(MatMulF16Avx512Vnni)}},
    {TensorType::kBF16, "BF16", 1, 2, 16.0, ToFloatBF16, FromFloatBF16, PackType::kF32,
     {MatMulBF16Scalar, AVX2(MatMulBF16Avx2), WASM(MatMulBF16Wasm), nullptr, VNNI(MatMulBF16Avx512Vnni)}},
    {TensorType::kQ8_0, "Q8_0", 32, 34, 8.5, ToFloatQ8_0, FromFloatQ8_0, PackType::kQ8_0A,
     {MatMulQ8_0Scalar, AVX2(MatMulQ8_0Avx2), WASM(MatMulQ8_0Wasm), NEON(MatMulQ8_0Neon), VNNI(MatMulQ8_0Avx512Vnni)}},
    {TensorType::kQ4_0, "Q4_0", 32, 18, 4.5, ToFloatQ4_0, FromFloatQ4_0, PackType::kQ8_0A,
     {MatMulQ4_0Scalar, AVX2(MatMulQ4_0Avx2), WASM(MatMulQ4_0Wasm), NEON(MatMulQ4_0Neon), VNNI(MatMulQ4_0Avx512Vnni)}},
    {TensorType::kTF_Q8, "TF_Q8", 256, 266, 8.3125, ToFloatTfQ8, FromFloatTfQ8, PackType::kQ8_KA,
     {MatMulTfQ8Scalar, AVX2(MatMulTfQ8Avx2), WASM(MatMulTfQ8Wasm), nullptr, VNNI(MatMulTfQ8Avx512Vnni)}},
    {TensorType::kTF_Q4, "TF_Q4", 256, 144, 4.5, ToFloatTfQ4, FromFloatTfQ4, PackType::kQ8_KA,
     {MatMulTfQ4Scalar, AVX2(MatMulTfQ4Avx2), WASM(MatMulTfQ4Wasm), nullptr, VNNI(MatMulTfQ4Avx512Vnni)}},
    {TensorType::kTF_Q3, "TF_Q3", 256, 112, 3.5, ToFloatTfQ3, FromFloatTfQ3, PackType::kQ8_KA,
     {MatMulTfQ3Scalar, AVX2(MatMulTfQ3Avx2), WASM(MatMulTfQ3Wasm), nullptr}},
    {TensorType::kTF_Q2, "TF_Q2", 256, 80, 2.5, ToFloatTfQ2, FromFloatTfQ2, PackType::kQ8_KA,
     {MatMulTfQ2Scalar, AVX2(MatMulTfQ2Avx2), WASM(MatMulTfQ2Wasm), nullptr, VNNI(MatMulTfQ2Avx512Vnni)}},
    // TF_Q2R: TF_Q2 blocks of rotated weights; same mat-mul kernels, rotated activation packing.
    {TensorType::kTF_Q2R, "TF_Q2R", 256, 80, 2.5, ToFloatTfQ2R, FromFloatTfQ2R, PackType::kQ8_KAR,
     {MatMulTfQ2Scalar, AVX2(MatMulTfQ2Avx2), WASM(MatMulTfQ2Wasm), nullptr, VNNI(MatMulTfQ2Avx512Vnni)}},
    // TF_Q2S / TF_Q2SR: symmetric 2-bit groups, 2.3125 bits/weight (quant/tf_q2s.h).
    {TensorType::kTF_Q2S, "TF_Q2S", 256, 74, 2.3125, ToFloatTfQ2S, FromFloatTfQ2S, PackType::kQ8_KA,
     {MatMulTfQ2SScalar, AVX2(MatMulTfQ2SAvx2), WASM(MatMulTfQ2SWasm), nullptr}},
    {TensorType::kTF_Q2SR, "TF_Q2SR", 256, 74, 2.3125, ToFloatTfQ2SR, FromFloatTfQ2SR, PackType::kQ8_KAR,
     {MatMulTfQ2SScalar, AVX2(MatMulTfQ2SAvx2), WASM(MatMulTfQ2SWasm), nullptr}},
    // Read-only GGML formats: dequantization only (no mat-mul kernels).
    {TensorType::kQ4_1, "Q4_1", 32, 20, 5.0, ToFloatQ4_1, nullptr, PackType::kF32, {}},
    {TensorType::kQ5_0, "Q5_0", 32, 22, 5.5, ToFloatQ5_0, nullptr, PackType::kF32, {}},
    {TensorType::kQ5_1, "Q5_1", 32, 24, 6.0, ToFloatQ5_1, nullptr, PackType::kF32, {}},
    {TensorType::kQ4_K, "Q4_K", 256, 144, 4.5, ToFloatQ4_K, nullptr, PackType::kF32, {}},
    {TensorType::kQ6_K, "Q6_K", 256, 210, 6.5625, ToFloatQ6_K, nullptr, PackType::kF32, {}},
};

constexpr PackTraits kPacks[] = {
    {PackType::kF32, "f32", 1, 4, {PackF32Scalar, nullptr, nullptr, nullptr}},
    {PackType::kQ8_0A, "q8_0a", 32, 36, {PackQ8_0AScalar, AVX2(PackQ8_0AAvx2), nullptr, nullptr}},
    {PackType::kQ8_KA, "q8_ka", 256, 292, {PackQ8_KAScalar, AVX2(PackQ8_KAAvx2), nullptr, nullptr, VNNI(PackQ8_KAAvx512)}},
    {PackType::kQ8_KAR, "q8_kar", 256, 292, {PackQ8_KARScalar, AVX2(PackQ8_KARAvx2), nullptr, nullptr, VNNI(PackQ8_KARAvx512)}},
};

constexpr VecKernels kVec[] = {
    {Isa::kScalar, DotF32Scalar, DotF16F32Scalar, AxpyF32Scalar, AxpyF16Scalar, F32ToF16Scalar, F16ToF32Scalar,
     ExpShiftSumScalar, SumSquaresScalar, SiluMulScalar},
#if defined(TABFIT_HAVE_AVX2_KERNELS)
    {Isa::kAvx2, DotF32Avx2, DotF16F32Avx2, AxpyF32Avx2, AxpyF16Avx2, F32ToF16Avx2, F16ToF32Avx2, ExpShiftSumAvx2,
     SumSquaresAvx2, SiluMulAvx2},
#endif
#if defined(TABFIT_HAVE_WASM_KERNELS)
    {Isa::kWasmSimd, DotF32Wasm, DotF16F32Wasm, AxpyF32Wasm, AxpyF16Wasm, F32ToF16Scalar, F16ToF32Scalar,
     ExpShiftSumWasm, SumSquaresWasm, SiluMulWasm},
#endif
#if defined(TABFIT_HAVE_NEON_KERNELS)
    {Isa::kNeon, DotF32Neon, DotF16F32Scalar, AxpyF32Neon, AxpyF16Scalar, F32ToF16Scalar, F16ToF32Scalar,
     ExpShiftSumScalar, SumSquaresScalar, SiluMulScalar},
#endif
};

#if defined(TABFIT_HAVE_X16_KERNEL)
#define X16(f) f
#else
#define X16(f) nullptr
#endif
constexpr LayoutTraits kLayouts[] = {
    {WeightLayout::kTfQ2x16, "TF_Q2x16", {TensorType::kTF_Q2, TensorType::kTF_Q2R}, kX16Rows, TfQ2ToX16,
     TfQ2FromX16, MatMulTfQ2x16Scalar, X16(MatMulTfQ2x16Avx512), TfQ2x16KernelAvailable},
    {WeightLayout::kQ8_0x16, "Q8_0x16", {TensorType::kQ8_0, TensorType::kQ8_0}, kQ8x16Rows, Q8_0ToX16, Q8_0FromX16,
     MatMulQ8_0x16Scalar, VNNI(MatMulQ8_0x16Avx512), Q8_0x16KernelAvailable},
    {WeightLayout::kQ4_0x16, "Q4_0x16", {TensorType::kQ4_0, TensorType::kQ4_0}, kQ4x16Rows, Q4_0ToX16, Q4_0FromX16,
     MatMulQ4_0x16Scalar, VNNI(MatMulQ4_0x16Avx512), Q4_0x16KernelAvailable},
    {WeightLayout::kTfQ4x16, "TF_Q4x16", {TensorType::kTF_Q4, TensorType::kTF_Q4}, kQ4sRows, TfQ4ToX16, TfQ4FromX16,
     MatMulTfQ4x16Scalar, X16(MatMulTfQ4x16Avx512), TfQ4x16KernelAvailable},
    {WeightLayout::kTfQ8x16, "TF_Q8x16", {TensorType::kTF_Q8, TensorType::kTF_Q8}, kQ8sRows, TfQ8ToX16, TfQ8FromX16,
     MatMulTfQ8x16Scalar, VNNI(MatMulTfQ8x16Avx512), TfQ8x16KernelAvailable},
};

// The best ISA's entry, else its fallback's (kAvx512Vnni -> kAvx2), else scalar.
template <typename Fn>
Fn Best(const Fn (&fns)[kIsaCount]) {
  for (Isa isa = BestIsa(); isa != Isa::kScalar; isa = FallbackIsa(isa)) {
    if (fns[static_cast<int>(isa)]) return fns[static_cast<int>(isa)];
  }
  return fns[0];
}

// Resolved once (thread-safe static init), then a table lookup per call.
struct Dispatch {
  const VecKernels* vec = &kVec[0];
  Dispatch() {
    for (Isa isa = BestIsa(); isa != Isa::kScalar && vec == &kVec[0]; isa = FallbackIsa(isa)) {
      for (const auto& v : kVec) {
        if (v.isa == isa) vec = &v;
      }
    }
  }
};
const Dispatch& D() {
  static const Dispatch d;
  return d;
}

}  // namespace

const char* IsaName(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return "scalar";
    case Isa::kAvx2: return "avx2";
    case Isa::kWasmSimd: return "wasm_simd128";
    case Isa::kNeon: return "neon";
    case Isa::kAvx512Vnni: return "avx512vnni";
  }
  return "?";
}

bool IsaAvailable(Isa isa) {
  switch (isa) {
    case Isa::kScalar: return true;
    case Isa::kAvx2:
#if defined(TABFIT_HAVE_AVX2_KERNELS) && (defined(__GNUC__) || defined(__clang__))
    {
      static const bool ok = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                             __builtin_cpu_supports("f16c");
      return ok;
    }
#else
      return false;
#endif
    case Isa::kWasmSimd:
#if defined(TABFIT_HAVE_WASM_KERNELS)
      return true;
#else
      return false;
#endif
    case Isa::kNeon:
#if defined(TABFIT_HAVE_NEON_KERNELS)
      return true;
#else
      return false;
#endif
    case Isa::kAvx512Vnni:
#if defined(TABFIT_HAVE_AVX512VNNI_KERNELS) && (defined(__GNUC__) || defined(__clang__))
    {
      static const bool ok = IsaAvailable(Isa::kAvx2) && __builtin_cpu_supports("avx512f") &&
                             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw") &&
                             __builtin_cpu_supports("avx512vnni");
      return ok;
    }
#else
      return false;
#endif
  }
  return false;
}

Isa FallbackIsa(Isa isa) { return isa == Isa::kAvx512Vnni ? Isa::kAvx2 : Isa::kScalar; }

Isa BestIsa() {
  static const Isa best = [] {
    for (Isa isa : {Isa::kAvx512Vnni, Isa::kAvx2, Isa::kWasmSimd, Isa::kNeon}) {
      if (IsaAvailable(isa)) return isa;
    }
    return Isa::kScalar;
  }();
  return best;
}

std::span<const FormatTraits> Formats() { return kFormats; }

const FormatTraits* FindFormat(TensorType t) {
  for (const auto& f : kFormats) {
    if (f.type == t) return &f;
  }
  return nullptr;
}

const PackTraits& PackTraitsFor(PackType p) { return kPacks[static_cast<int>(p)]; }

std::span<const VecKernels> AllVecKernels() { return kVec; }

size_t PackedActivationRowBytes(TensorType wtype, int64_t cols) {
  const FormatTraits* f = FindFormat(wtype);
  if (!f || !f->matmul[0] || cols <= 0) return 0;
  const PackTraits& p = PackTraitsFor(f->pack);
  if (cols % f->block_elems != 0 || cols % p.block_elems != 0) return 0;
  return static_cast<size_t>(cols / p.block_elems * p.block_bytes);
}

void PackActivations(TensorType wtype, const float* x, int64_t n_tokens, int64_t cols, void* out) {
  if (PackedActivationRowBytes(wtype, cols) == 0 || n_tokens <= 0) return;
  Best(PackTraitsFor(FindFormat(wtype)->pack).pack)(x, n_tokens, cols, out);
}

void MatMulRows(TensorType wtype, const void* w, size_t row_bytes, int64_t r0, int64_t r1, int64_t cols,
                const void* xpacked, int64_t n_tokens, float* y, int64_t ldy) {
  const FormatTraits* f = FindFormat(wtype);
  if (!f || !f->matmul[0] || r1 <= r0 || n_tokens <= 0 || cols % f->block_elems != 0) return;
  Best(f->matmul)(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

void DequantizeRow(TensorType t, const void* src, float* dst, int64_t n) {
  const FormatTraits* f = FindFormat(t);
  if (!f || !f->to_float || n % f->block_elems != 0) return;
  f->to_float(src, dst, n);
}

void QuantizeRow(TensorType t, const float* src, void* dst, int64_t n, const float* importance) {
  const FormatTraits* f = FindFormat(t);
  if (!f || !f->from_float || n % f->block_elems != 0) return;
  f->from_float(src, dst, n, importance);
}

bool IsSupported(TensorType t) {
  const FormatTraits* f = FindFormat(t);
  return f && f->matmul[0];
}
bool CanDequantize(TensorType t) {
  const FormatTraits* f = FindFormat(t);
  return f && f->to_float;
}
bool CanQuantize(TensorType t) {
  const FormatTraits* f = FindFormat(t);
  return f && f->from_float;
}
double BitsPerWeight(TensorType t) {
  const FormatTraits* f = FindFormat(t);
  return f ? f->bits_per_weight : 0.0;
}

std::span<const LayoutTraits> Layouts() { return kLayouts; }

const LayoutTraits* FindLayout(WeightLayout l) {
  for (const auto& t : kLayouts) {
    if (t.layout == l) return &t;
  }
  return nullptr;
}

namespace {
// The layout's entry when it takes type t, else nullptr.
const LayoutTraits* LayoutFor(WeightLayout l, TensorType t) {
  const LayoutTraits* lt = FindLayout(l);
  return lt && (lt->base[0] == t || lt->base[1] == t) ? lt : nullptr;
}
}  // namespace

const char* WeightLayoutName(WeightLayout l) {
  const LayoutTraits* lt = FindLayout(l);
  return lt ? lt->name : "row-major";
}

WeightLayout PreferredLayout(TensorType t, int64_t rows, int64_t cols) {
  for (const auto& lt : kLayouts) {
    if ((lt.base[0] == t || lt.base[1] == t) && lt.fast && lt.fast_available() && rows > 0 &&
        rows % lt.tile_rows == 0 && RowBytes(t, cols) != 0) {
      return lt.layout;
    }
  }
  return WeightLayout::kRowMajor;
}

int64_t LayoutTileRows(WeightLayout l) {
  const LayoutTraits* lt = FindLayout(l);
  return lt ? lt->tile_rows : 1;
}

size_t LayoutScratchBytes(WeightLayout l, TensorType t, int64_t cols) {
  const LayoutTraits* lt = LayoutFor(l, t);
  return lt ? static_cast<size_t>(lt->tile_rows) * RowBytes(t, cols) : 0;
}

void ToLayout(WeightLayout l, TensorType t, void* data, int64_t rows, int64_t cols, void* scratch) {
  const LayoutTraits* lt = LayoutFor(l, t);
  if (!lt || RowBytes(t, cols) == 0) return;
  lt->to_layout(static_cast<uint8_t*>(data), rows, cols, static_cast<uint8_t*>(scratch));
}

void FromLayout(WeightLayout l, TensorType t, void* data, int64_t rows, int64_t cols, void* scratch) {
  const LayoutTraits* lt = LayoutFor(l, t);
  if (!lt || RowBytes(t, cols) == 0) return;
  lt->from_layout(static_cast<uint8_t*>(data), rows, cols, static_cast<uint8_t*>(scratch));
}

void MatMulRowsLayout(WeightLayout l, TensorType wtype, const void* w, size_t row_bytes, int64_t r0, int64_t r1,
                      int64_t cols, const void* xpacked, int64_t n_tokens, float* y, int64_t ldy) {
  if (l == WeightLayout::kRowMajor) {
    MatMulRows(wtype, w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
    return;
  }
  const LayoutTraits* lt = LayoutFor(l, wtype);
  if (!lt || r1 <= r0 || n_tokens <= 0 || RowBytes(wtype, cols) == 0) return;
  const bool fast = lt->fast && lt->fast_available();  // fast_available caches CPUID
  (fast ? lt->fast : lt->reference)(w, row_bytes, r0, r1, cols, xpacked, n_tokens, y, ldy);
}

float DotF32(const float* a, const float* b, int64_t n) { return D().vec->dot_f32(a, b, n); }
float DotF16F32(const uint16_t* a, const float* b, int64_t n) { return D().vec->dot_f16_f32(a, b, n); }
void AxpyF32(float a, const float* x, float* y, int64_t n) { D().vec->axpy_f32(a, x, y, n); }
void AxpyF16(float a, const uint16_t* x, float* y, int64_t n) { D().vec->axpy_f16(a, x, y, n); }
void ConvertF32ToF16(const float* x, uint16_t* y, int64_t n) { D().vec->f32_to_f16(x, y, n); }
void ConvertF16ToF32(const uint16_t* x, float* y, int64_t n) { D().vec->f16_to_f32(x, y, n); }
double ExpShiftSum(float* x, float shift, int64_t n) { return D().vec->exp_shift_sum(x, shift, n); }
double SumSquares(const float* x, int64_t n) { return D().vec->sum_squares(x, n); }
void SiluMul(float* g, const float* u, int64_t n) { D().vec->silu_mul(g, u, n); }

}  // namespace tabfit
