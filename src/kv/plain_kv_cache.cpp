// The plain KV cache: f32 or f16 cells allocated up front.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "kv/kv_slots.h"
#include "kv/plain_kv_cache.h"
#include "quant/vec.h"

namespace tabfit {

namespace {

class PlainKvCache final : public KvCache {
 public:
  PlainKvCache(KvCacheConfig c, bool f16) : config_(std::move(c)), f16_(f16) {}

  Status Init(MemoryLedger& ledger) {
    const size_t row = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    elem_ = f16_ ? 2 : 4;
    row_bytes_ = row * elem_;
    for (int l = 0; l < config_.n_layers; ++l) {
      TF_ASSIGN_OR_RETURN(Buffer kb, ledger.Allocate("kv_cache", row_bytes_ * config_.capacity));
      TF_ASSIGN_OR_RETURN(Buffer vb, ledger.Allocate("kv_cache", row_bytes_ * config_.capacity));
      bytes_ += kb.size() + vb.size();
      k_.push_back(std::move(kb));
      v_.push_back(std::move(vb));
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
    for (int t = 0; t < n; ++t) {
      uint8_t* kd = k_[layer].as<uint8_t>() + (size_ + t) * row_bytes_;
      uint8_t* vd = v_[layer].as<uint8_t>() + (size_ + t) * row_bytes_;
      if (f16_) {
        ConvertF32ToF16(k + t * row, reinterpret_cast<uint16_t*>(kd), row);
        ConvertF32ToF16(v + t * row, reinterpret_cast<uint16_t*>(vd), row);
      } else {
        std::memcpy(kd, k + t * row, row_bytes_);
        std::memcpy(vd, v + t * row, row_bytes_);
      }
    }
    return Status::Ok();
  }

  Status Commit(int n, const int32_t* pos) override {
    return kvslots::Commit(config_.capacity, positions_, &size_, n, pos);
  }

  void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
              float* out) const override {
    const int hd = config_.head_dim;
    const size_t stride = static_cast<size_t>(config_.n_kv_heads) * hd;
    const uint8_t* kb = k_[layer].as<uint8_t>();
    const uint8_t* vb = v_[layer].as<uint8_t>();
    float mx = -INFINITY;
    for (int s = 0; s < n_visible; ++s) {
      const size_t off = s * stride + static_cast<size_t>(kv_head) * hd;
      float d = f16_ ? DotF16F32(reinterpret_cast<const uint16_t*>(kb) + off, q, hd)
                     : DotF32(reinterpret_cast<const float*>(kb) + off, q, hd);
      scores[s] = d * scale;
      mx = std::max(mx, scores[s]);
    }
    double sum = 0;
    for (int s = 0; s < n_visible; ++s) {
      scores[s] = std::exp(scores[s] - mx);
      sum += scores[s];
    }
    const float inv = static_cast<float>(1.0 / sum);
    std::fill(out, out + hd, 0.f);
    for (int s = 0; s < n_visible; ++s) {
      scores[s] *= inv;
      const size_t off = s * stride + static_cast<size_t>(kv_head) * hd;
      if (f16_) AxpyF16(scores[s], reinterpret_cast<const uint16_t*>(vb) + off, out, hd);
      else AxpyF32(scores[s], reinterpret_cast<const float*>(vb) + off, out, hd);
    }
  }

  void Clear() override { size_ = 0; }

  Status Retain(const std::vector<bool>& keep) override {
    if (keep.size() != static_cast<size_t>(size_)) return InvalidArgument("KV retain: mask size != cache size");
    int w = 0;
    for (int s = 0; s < size_; ++s) {
      if (!keep[s]) continue;
      if (w != s) {
        for (int l = 0; l < config_.n_layers; ++l) {
          std::memmove(k_[l].as<uint8_t>() + w * row_bytes_, k_[l].as<uint8_t>() + s * row_bytes_, row_bytes_);
          std::memmove(v_[l].as<uint8_t>() + w * row_bytes_, v_[l].as<uint8_t>() + s * row_bytes_, row_bytes_);
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
  std::vector<Buffer> k_, v_;
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
