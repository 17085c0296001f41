// The plain KV cache: f32 or f16 cells allocated up front.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "kv/kv_slots.h"
#include "kv/plain_kv_cache.h"
#include "quant/kernels.h"
#include "quant/vec.h"

namespace tabfit {

namespace {

// Storage per layer: K as rows [slot][n_kv_heads * head_dim]; V transposed,
// [kv_head][dim][capacity] (as llama.cpp's v_trans), so both halves of attention
// are mat-muls with the quant module's F16/F32 kernels: scores = K_h q (K rows
// are the matrix rows, the group's query heads the tokens) and out = V_h^T p
// (V^T rows are the matrix rows, the heads' probabilities the tokens). Every K
// and V element is read once per group of query heads, not once per head.
class PlainKvCache final : public KvCache {
 public:
  PlainKvCache(KvCacheConfig c, bool f16) : config_(std::move(c)), f16_(f16) {}

  Status Init(MemoryLedger& ledger) {
    const size_t row = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    elem_ = f16_ ? 2 : 4;
    row_bytes_ = row * elem_;
    for (int l = 0; l < config_.n_layers; ++l) {
      TF_ASSIGN_OR_RETURN(Buffer kb, ledger.Allocate(config_.component, row_bytes_ * config_.capacity));
      TF_ASSIGN_OR_RETURN(Buffer vb, ledger.Allocate(config_.component, row_bytes_ * config_.capacity));
      bytes_ += kb.size() + vb.size();
      k_.push_back(std::move(kb));
      vt_.push_back(std::move(vb));
    }
    positions_.assign(config_.capacity, 0);
    return Status::Ok();
  }

  const KvCacheConfig& config() const override { return config_; }
  int size() const override { return size_; }
  int position(int slot) const override { return positions_[slot]; }

  Status Write(int layer, int n, const int32_t* pos, const float* k, const float* v) override {
    TF_RETURN_IF_ERROR(kvslots::CheckWrite(config_, size_, layer, n));
    const size_t row = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    const size_t cap = static_cast<size_t>(config_.capacity);
    for (int t = 0; t < n; ++t) {
      const size_t slot = static_cast<size_t>(size_ + t);
      uint8_t* kd = k_[layer].as<uint8_t>() + slot * row_bytes_;
      if (f16_) {
        ConvertF32ToF16(k + t * row, reinterpret_cast<uint16_t*>(kd), row);
        uint16_t* vd = vt_[layer].as<uint16_t>();
        for (size_t i = 0; i < row; ++i) vd[i * cap + slot] = F32ToF16(v[t * row + i]);
      } else {
        std::memcpy(kd, k + t * row, row_bytes_);
        float* vd = vt_[layer].as<float>();
        for (size_t i = 0; i < row; ++i) vd[i * cap + slot] = v[t * row + i];
      }
    }
    return Status::Ok();
  }

  Status Commit(int n, const int32_t* pos) override {
    return kvslots::Commit(config_.capacity, positions_, &size_, n, pos);
  }

  void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
              float* out) const override {
    AttendGroup(layer, kv_head, q, 1, scale, n_visible, scores, out);
  }

  void AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible, float* scores,
                   float* out) const override {
    const int hd = config_.head_dim;
    const TensorType t = f16_ ? TensorType::kF16 : TensorType::kF32;
    // The F16/F32 kernels take plain f32 activations: q rows and probability rows as they are.
    MatMulRows(t, k_[layer].as<uint8_t>() + static_cast<size_t>(kv_head) * hd * elem_, row_bytes_, 0, n_visible, hd,
               q, n_q, scores, n_visible);
    for (int i = 0; i < n_q; ++i) {
      float* p = scores + static_cast<size_t>(i) * n_visible;
      float mx = -INFINITY;
      for (int s = 0; s < n_visible; ++s) {
        p[s] *= scale;
        mx = std::max(mx, p[s]);
      }
      const double sum = ExpShiftSum(p, mx, n_visible);
      const float inv = static_cast<float>(1.0 / sum);
      for (int s = 0; s < n_visible; ++s) p[s] *= inv;
    }
    const size_t vrow = static_cast<size_t>(config_.capacity) * elem_;
    MatMulRows(t, vt_[layer].as<uint8_t>() + static_cast<size_t>(kv_head) * hd * vrow, vrow, 0, hd, n_visible, scores,
               n_q, out, hd);
  }

  void Clear() override { size_ = 0; }

  Status Retain(const std::vector<bool>& keep) override {
    if (keep.size() != static_cast<size_t>(size_)) return InvalidArgument("KV retain: mask size != cache size");
    const size_t rows = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    const size_t cap = static_cast<size_t>(config_.capacity);
    int w = 0;
    for (int s = 0; s < size_; ++s) {
      if (!keep[s]) continue;
      if (w != s) {
        for (int l = 0; l < config_.n_layers; ++l) {
          std::memmove(k_[l].as<uint8_t>() + w * row_bytes_, k_[l].as<uint8_t>() + s * row_bytes_, row_bytes_);
          uint8_t* vt = vt_[l].as<uint8_t>();
          for (size_t i = 0; i < rows; ++i) std::memcpy(vt + (i * cap + w) * elem_, vt + (i * cap + s) * elem_, elem_);
        }
        positions_[w] = positions_[s];
      }
      ++w;
    }
    size_ = w;
    return Status::Ok();
  }

  uint64_t bytes() const override { return bytes_; }

 private:
  KvCacheConfig config_;
  bool f16_;
  size_t elem_ = 4, row_bytes_ = 0;
  std::vector<Buffer> k_;   // [capacity][n_kv_heads * head_dim]
  std::vector<Buffer> vt_;  // [n_kv_heads * head_dim][capacity]
  std::vector<int> positions_;
  int size_ = 0;
  uint64_t bytes_ = 0;
};

}  // namespace

Result<std::unique_ptr<KvCache>> CreatePlainKvCache(const KvCacheConfig& config, MemoryLedger& ledger) {
  if (config.n_layers <= 0 || config.n_kv_heads <= 0 || config.head_dim <= 0 || config.capacity <= 0) {
    return InvalidArgument("KV cache: layers, heads, head_dim and capacity must be positive");
  }
  if (config.type != "f16" && config.type != "f32") {
    return InvalidArgument("KV cache type '" + config.type + "' is not a plain type (f16, f32)");
  }
  auto cache = std::make_unique<PlainKvCache>(config, config.type == "f16");
  TF_RETURN_IF_ERROR(cache->Init(ledger));
  return std::unique_ptr<KvCache>(std::move(cache));
}

}  // namespace tabfit
