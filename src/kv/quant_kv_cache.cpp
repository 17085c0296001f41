// The quantized KV cache: Q8_0 / Q4_0 cells, and the mixed 8-bit-window cache.
#include "kv/kv_slots.h"
#include "kv/lowbit_kernels.h"
#include "kv/quant_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "quant/formats.h"
#include "quant/kernels.h"
#include "quant/vec.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace tabfit {

namespace {

constexpr int kBlock = 32;
constexpr int kMaxHeadDim = 1024;
constexpr size_t kB8 = sizeof(BlockQ8_0);  // 34
constexpr size_t kB4 = sizeof(BlockQ4_0);  // 18

// Sizes of the two regions (cells) for a config.
struct Regions {
  int w8 = 0, w4 = 0;
};

Regions RegionsFor(const KvCacheConfig& c, int recent_window) {
  Regions r;
  if (c.type == "q8_0") {
    r.w8 = c.capacity;
  } else if (c.type == "q4_0") {
    r.w4 = c.capacity;
  } else {  // mixed
    r.w8 = std::clamp(recent_window, 1, c.capacity);
    r.w4 = c.capacity - r.w8;
  }
  return r;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define TABFIT_KV_AVX2 1
// AVX2+FMA versions of the V accumulation (compiled for that target only;
// picked at run time by CPUID, like the quant module's kernels).
__attribute__((target("avx2,fma,f16c"))) void AxpyQ4Avx2(float p, const BlockQ4_0* b, int nb, float* out) {
  const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  for (int i = 0; i < nb; ++i, out += kBlock) {
    const __m256 c = _mm256_set1_ps(p * F16ToF32(b[i].d));
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);                     // elements 0..15
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);  // elements 16..31
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; ++k) {
      const __m256 x = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k]));
      _mm256_storeu_ps(out + 8 * k, _mm256_fmadd_ps(c, x, _mm256_loadu_ps(out + 8 * k)));
    }
  }
}

__attribute__((target("avx2,fma,f16c"))) inline float Hsum(__m256 v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  x = _mm_add_ss(x, _mm_movehdup_ps(x));
  return _mm_cvtss_f32(x);
}

// q . dequant(blocks) with q in f32 (no quantization of q on this path).
__attribute__((target("avx2,fma,f16c"))) float DotQ4Avx2(const BlockQ4_0* b, int nb, const float* q) {
  const __m128i m4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  __m256 acc = _mm256_setzero_ps();
  for (int i = 0; i < nb; ++i, q += kBlock) {
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[i].qs));
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(raw, m4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(raw, 4), m4), eight);
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    __m256 blk = _mm256_setzero_ps();
    for (int k = 0; k < 4; ++k) {
      blk = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k])), _mm256_loadu_ps(q + 8 * k), blk);
    }
    acc = _mm256_fmadd_ps(_mm256_set1_ps(F16ToF32(b[i].d)), blk, acc);
  }
  return Hsum(acc);
}

using kvlow::HasAvx2;
#endif

// out[0..32*nb) += p * dequant(blocks)
inline void AxpyQ4(float p, const BlockQ4_0* b, int nb, float* out) {
  for (int i = 0; i < nb; ++i, out += kBlock) {
    const float c = p * F16ToF32(b[i].d);
    const uint8_t* qs = b[i].qs;
    for (int j = 0; j < kBlock / 2; ++j) {
      out[j] += c * static_cast<float>((qs[j] & 15) - 8);
      out[j + kBlock / 2] += c * static_cast<float>((qs[j] >> 4) - 8);
    }
  }
}

class QuantKvCache final : public KvCache {
 private:
  struct Layer {
    Buffer k8, v8, k4, v4;
    int n4 = 0;  // slots [0, n4) are 4-bit
    int h8 = 0;  // ring index of slot n4
  };

 public:
  QuantKvCache(KvCacheConfig c, Regions r) : config_(std::move(c)), reg_(r) {}

  Status Init(MemoryLedger& ledger) {
    const int nb_cell = config_.n_kv_heads * config_.head_dim / kBlock;
    row8_ = nb_cell * kB8;
    row4_ = nb_cell * kB4;
    for (int l = 0; l < config_.n_layers; ++l) {
      Layer L;
      TF_ASSIGN_OR_RETURN(L.k8, ledger.Allocate(config_.component, row8_ * reg_.w8));
      TF_ASSIGN_OR_RETURN(L.v8, ledger.Allocate(config_.component, row8_ * reg_.w8));
      TF_ASSIGN_OR_RETURN(L.k4, ledger.Allocate(config_.component, row4_ * reg_.w4));
      TF_ASSIGN_OR_RETURN(L.v4, ledger.Allocate(config_.component, row4_ * reg_.w4));
      bytes_ += L.k8.size() + L.v8.size() + L.k4.size() + L.v4.size();
      layers_.push_back(std::move(L));
    }
    positions_.assign(config_.capacity, 0);
    return Status::Ok();
  }

  const KvCacheConfig& config() const override { return config_; }
  int size() const override { return size_; }
  int position(int slot) const override { return positions_[slot]; }

  Status Write(int layer, int n, const int32_t* pos, const float* k, const float* v) override {
    TF_RETURN_IF_ERROR(kvslots::CheckWrite(config_, size_, layer, n));
    Layer& L = layers_[layer];
    const size_t row = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    for (int t = 0; t < n; ++t) {
      const int slot = size_ + t;
      if (reg_.w8 == 0) {  // all 4-bit
        QuantizeRow(TensorType::kQ4_0, k + t * row, L.k4.as<uint8_t>() + slot * row4_, row, nullptr);
        QuantizeRow(TensorType::kQ4_0, v + t * row, L.v4.as<uint8_t>() + slot * row4_, row, nullptr);
        L.n4 = slot + 1;
        continue;
      }
      if (slot - L.n4 == reg_.w8) Demote(L);
      const size_t r = static_cast<size_t>((L.h8 + slot - L.n4) % reg_.w8);
      QuantizeRow(TensorType::kQ8_0, k + t * row, L.k8.as<uint8_t>() + r * row8_, row, nullptr);
      QuantizeRow(TensorType::kQ8_0, v + t * row, L.v8.as<uint8_t>() + r * row8_, row, nullptr);
    }
    return Status::Ok();
  }

  Status Commit(int n, const int32_t* pos) override {
    return kvslots::Commit(config_.capacity, positions_, &size_, n, pos);
  }

  void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
              float* out) const override {
    const Layer& L = layers_[layer];
    const int hd = config_.head_dim;
    [[maybe_unused]] const int nb = hd / kBlock;  // read by the AVX2 path only
    // Scores: 4-bit slots [0, n4), then the 8-bit ring (at most two contiguous runs).
    const int n4 = std::min(L.n4, n_visible);
    const int m8 = n_visible - n4;
#ifdef TABFIT_KV_AVX2
    if (HasAvx2()) {
      // Each K block is widened to f32 in registers and dotted with q directly.
      const uint8_t* k4 = L.k4.as<uint8_t>() + static_cast<size_t>(kv_head) * nb * kB4;
      for (int s = 0; s < n4; ++s) scores[s] = DotQ4Avx2(reinterpret_cast<const BlockQ4_0*>(k4 + s * row4_), nb, q);
      const uint8_t* k8 = L.k8.as<uint8_t>() + static_cast<size_t>(kv_head) * nb * kB8;
      for (int j = 0; j < m8; ++j) {
        const size_t r = static_cast<size_t>((L.h8 + j) % reg_.w8);
        scores[n4 + j] = kvlow::Avx2().dot_q8(reinterpret_cast<const BlockQ8_0*>(k8 + r * row8_), nb, q);
      }
    } else
#endif
    {
      AttendScoresPacked(L, kv_head, q, n4, m8, scores);
    }
    Softmax_AccumulateV(L, kv_head, scale, n_visible, n4, m8, scores, out);
  }

  // Portable path: q quantized to int8 once, the quant module's Q4_0/Q8_0 dot
  // kernels (WASM SIMD128 / NEON / scalar) run on the stored blocks.
  void AttendScoresPacked(const Layer& L, int kv_head, const float* q, int n4, int m8, float* scores) const {
    const int hd = config_.head_dim;
    const int nb = hd / kBlock;
    alignas(64) BlockQ8_0A qa[kMaxHeadDim / kBlock];
    PackActivations(TensorType::kQ8_0, q, 1, hd, qa);
    if (n4 > 0) {
      MatMulRows(TensorType::kQ4_0, L.k4.as<uint8_t>() + static_cast<size_t>(kv_head) * nb * kB4, row4_, 0, n4, hd,
                 qa, 1, scores, 1);
    }
    for (int j = 0; j < m8;) {
      const int r = (L.h8 + j) % reg_.w8;
      const int len = std::min(m8 - j, reg_.w8 - r);
      MatMulRows(TensorType::kQ8_0, L.k8.as<uint8_t>() + r * row8_ + static_cast<size_t>(kv_head) * nb * kB8, row8_,
                 0, len, hd, qa, 1, scores + n4 + j, 1);
      j += len;
    }
  }

  void Softmax_AccumulateV(const Layer& L, int kv_head, float scale, int n_visible, int n4, int m8, float* scores,
                           float* out) const {
    const int hd = config_.head_dim;
    const int nb = hd / kBlock;
    float mx = -INFINITY;
    for (int s = 0; s < n_visible; ++s) {
      scores[s] *= scale;
      mx = std::max(mx, scores[s]);
    }
    const double sum = ExpShiftSum(scores, mx, n_visible);
    const float inv = static_cast<float>(1.0 / sum);
    std::fill(out, out + hd, 0.f);
#ifdef TABFIT_KV_AVX2
    const auto axpy4 = HasAvx2() ? AxpyQ4Avx2 : AxpyQ4;
    const auto axpy8 = HasAvx2() ? kvlow::Avx2().axpy_q8 : kvlow::Scalar().axpy_q8;
#else
    const auto axpy4 = AxpyQ4;
    const auto axpy8 = kvlow::Best().axpy_q8;
#endif
    for (int s = 0; s < n4; ++s) {
      scores[s] *= inv;
      axpy4(scores[s],
             reinterpret_cast<const BlockQ4_0*>(L.v4.as<uint8_t>() + s * row4_) + static_cast<size_t>(kv_head) * nb,
             nb, out);
    }
    for (int j = 0; j < m8; ++j) {
      float& p = scores[n4 + j];
      p *= inv;
      const size_t r = static_cast<size_t>((L.h8 + j) % reg_.w8);
      axpy8(p, reinterpret_cast<const BlockQ8_0*>(L.v8.as<uint8_t>() + r * row8_) + static_cast<size_t>(kv_head) * nb,
             nb, out);
    }
  }

  void Clear() override {
    size_ = 0;
    for (Layer& L : layers_) L.n4 = L.h8 = 0;
  }

  Status Retain(const std::vector<bool>& keep) override {
    if (keep.size() != static_cast<size_t>(size_)) return InvalidArgument("KV retain: mask size != cache size");
    for (Layer& L : layers_) {
      int w4 = 0;
      for (int s = 0; s < L.n4; ++s) {
        if (!keep[s]) continue;
        if (w4 != s) {
          std::memcpy(L.k4.as<uint8_t>() + w4 * row4_, L.k4.as<uint8_t>() + s * row4_, row4_);
          std::memcpy(L.v4.as<uint8_t>() + w4 * row4_, L.v4.as<uint8_t>() + s * row4_, row4_);
        }
        ++w4;
      }
      int w8 = 0;
      for (int s = L.n4; s < size_; ++s) {
        if (!keep[s]) continue;
        const int j = s - L.n4;
        if (w8 != j) {
          const size_t from = static_cast<size_t>((L.h8 + j) % reg_.w8) * row8_;
          const size_t to = static_cast<size_t>((L.h8 + w8) % reg_.w8) * row8_;
          std::memcpy(L.k8.as<uint8_t>() + to, L.k8.as<uint8_t>() + from, row8_);
          std::memcpy(L.v8.as<uint8_t>() + to, L.v8.as<uint8_t>() + from, row8_);
        }
        ++w8;
      }
      L.n4 = w4;
    }
    int w = 0;
    for (int s = 0; s < size_; ++s) {
      if (keep[s]) positions_[w++] = positions_[s];
    }
    size_ = w;
    return Status::Ok();
  }

  uint64_t bytes() const override { return bytes_; }

  Status Get(int layer, int slot, float* k, float* v, int* bits) const override {
    if (layer < 0 || layer >= config_.n_layers || slot < 0 || slot >= size_) {
      return OutOfRange("KV get: layer " + std::to_string(layer) + " slot " + std::to_string(slot) +
                        " is outside the cache (" + std::to_string(size_) + " tokens)");
    }
    int b = 0;
    ReadCell(layer, slot, k, v, &b);
    if (bits) *bits = b;
    return Status::Ok();
  }

  void ReadCell(int layer, int slot, float* k, float* v, int* bits) const {
    const Layer& L = layers_[layer];
    const int64_t row = static_cast<int64_t>(config_.n_kv_heads) * config_.head_dim;
    if (slot < L.n4) {
      DequantizeRow(TensorType::kQ4_0, L.k4.as<uint8_t>() + slot * row4_, k, row);
      DequantizeRow(TensorType::kQ4_0, L.v4.as<uint8_t>() + slot * row4_, v, row);
      *bits = 4;
    } else {
      const size_t r = static_cast<size_t>((L.h8 + slot - L.n4) % reg_.w8);
      DequantizeRow(TensorType::kQ8_0, L.k8.as<uint8_t>() + r * row8_, k, row);
      DequantizeRow(TensorType::kQ8_0, L.v8.as<uint8_t>() + r * row8_, v, row);
      *bits = 8;
    }
  }

 private:

  // Moves the oldest 8-bit cell (ring head) to 4-bit slot n4.
  void Demote(Layer& L) {
    const int nb_cell = static_cast<int>(row8_ / kB8);
    float tmp[kBlock];
    const Buffer* src[2] = {&L.k8, &L.v8};
    Buffer* dst[2] = {&L.k4, &L.v4};
    for (int i = 0; i < 2; ++i) {
      const auto* b8 = reinterpret_cast<const BlockQ8_0*>(src[i]->as<uint8_t>() + L.h8 * row8_);
      auto* b4 = reinterpret_cast<BlockQ4_0*>(dst[i]->as<uint8_t>() + L.n4 * row4_);
      for (int b = 0; b < nb_cell; ++b) {
        DequantizeRow(TensorType::kQ8_0, b8 + b, tmp, kBlock);
        QuantizeRow(TensorType::kQ4_0, tmp, b4 + b, kBlock, nullptr);
      }
    }
    L.h8 = (L.h8 + 1) % reg_.w8;
    ++L.n4;
  }

  KvCacheConfig config_;
  Regions reg_;
  size_t row8_ = 0, row4_ = 0;
  std::vector<Layer> layers_;
  std::vector<int> positions_;
  int size_ = 0;
  uint64_t bytes_ = 0;
};

Status CheckConfig(const KvCacheConfig& c, int recent_window) {
  if (c.n_layers <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 || c.capacity <= 0) {
    return InvalidArgument("KV cache: layers, heads, head_dim and capacity must be positive");
  }
  if (!IsQuantKvType(c.type)) {
    return InvalidArgument("KV cache type '" + c.type + "' is not a quantized type (q8_0, q4_0, mixed)");
  }
  if (c.head_dim % kBlock != 0 || c.head_dim > kMaxHeadDim) {
    return Unsupported("KV cache type " + c.type + " needs head_dim a multiple of 32 and at most " +
                       std::to_string(kMaxHeadDim) + "; this model has " + std::to_string(c.head_dim) +
                       "; use --kv-type f16");
  }
  if (c.type == "mixed" && recent_window < 1) {
    return InvalidArgument("KV cache 'mixed' needs a recent window of at least 1 token (got " +
                           std::to_string(recent_window) + ")");
  }
  return Status::Ok();
}

}  // namespace

bool IsQuantKvType(const std::string& type) { return type == "q8_0" || type == "q4_0" || type == "mixed"; }

uint64_t QuantKvCacheBytes(const KvCacheConfig& c, int recent_window) {
  if (!CheckConfig(c, recent_window).ok()) return 0;
  const Regions r = RegionsFor(c, recent_window);
  const uint64_t nb_cell = static_cast<uint64_t>(c.n_kv_heads) * c.head_dim / kBlock;
  return 2ull * c.n_layers * nb_cell * (kB8 * r.w8 + kB4 * r.w4);
}

Status ReadQuantKvCell(const KvCache& cache, int layer, int slot, float* k, float* v, int* bits) {
  const auto* q = dynamic_cast<const QuantKvCache*>(&cache);
  if (!q) return InvalidArgument("ReadQuantKvCell: not a quantized KV cache");
  if (layer < 0 || layer >= q->config().n_layers || slot < 0 || slot >= q->size()) {
    return OutOfRange("ReadQuantKvCell: layer " + std::to_string(layer) + " slot " + std::to_string(slot) +
                      " is outside the cache");
  }
  q->ReadCell(layer, slot, k, v, bits);
  return Status::Ok();
}

Result<std::unique_ptr<KvCache>> CreateQuantKvCache(const KvCacheConfig& config, int recent_window,
                                                    MemoryLedger& ledger) {
  TF_RETURN_IF_ERROR(CheckConfig(config, recent_window));
  auto cache = std::make_unique<QuantKvCache>(config, RegionsFor(config, recent_window));
  TF_RETURN_IF_ERROR(cache->Init(ledger));
  return std::unique_ptr<KvCache>(std::move(cache));
}

}  // namespace tabfit
