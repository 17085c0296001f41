// The plain KV cache: f32 or f16 cells in chunks that follow the tokens.
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

// Storage per layer, in chunks of P cells (P <= 256; each chunk one ledger
// allocation, made when its first cell is written and freed when the cache
// shrinks below it): K as rows [P][n_kv_heads * head_dim]; V transposed,
// [kv_head][dim][P] (as llama.cpp's v_trans), so both halves of attention are
// mat-muls with the quant module's F16/F32 kernels: scores = K_h q (K rows are
// the matrix rows, the group's query heads the tokens) and out = V_h^T p (V^T
// rows are the matrix rows, the heads' probabilities the tokens). Every K and
// V element is read once per group of query heads, not once per head.
constexpr int kMaxChunkCells = 256;

class PlainKvCache final : public KvCache {
 public:
  PlainKvCache(KvCacheConfig c, bool f16) : config_(std::move(c)), f16_(f16) {}

  Status Init(MemoryLedger& ledger) {
    ledger_ = &ledger;
    const size_t row = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    elem_ = f16_ ? 2 : 4;
    row_bytes_ = row * elem_;
    P_ = ChunkCells(config_, ledger.max_buffer_bytes());
    if (ledger.max_buffer_bytes() && 2 * row_bytes_ > ledger.max_buffer_bytes()) {
      return BufferLimit("KV cache: one " + config_.type + " cell is " + std::to_string(2 * row_bytes_) +
                         " bytes, more than the largest buffer allowed (" +
                         std::to_string(ledger.max_buffer_bytes()) + " bytes); raise --max-buffer");
    }
    chunks_.resize(config_.n_layers);
    return Status::Ok();
  }

  // Cells per chunk for a config (shared with PlainKvCacheBytes).
  static int ChunkCells(const KvCacheConfig& c, uint64_t max_buffer) {
    const size_t cell = 2ull * c.n_kv_heads * c.head_dim * (c.type == "f32" ? 4 : 2);
    uint64_t target = 1u << 20;
    if (max_buffer) target = std::min<uint64_t>(target, max_buffer);
    // At most 256 cells and a quarter of the capacity (in steps of 16), so a
    // small context is not held in one chunk.
    const int quarter = std::max(16, (c.capacity / 4 + 15) / 16 * 16);
    return static_cast<int>(std::clamp<uint64_t>(target / cell, 1, std::min({kMaxChunkCells, quarter, c.capacity})));
  }

  const KvCacheConfig& config() const override { return config_; }
  int size() const override { return size_; }
  int position(int slot) const override { return positions_[slot]; }

  Status Write(int layer, int n, const int32_t* pos, const float* k, const float* v) override {
    TF_RETURN_IF_ERROR(kvslots::CheckWrite(config_, size_, layer, n));
    TF_RETURN_IF_ERROR(Reserve(layer, size_ + n));
    const size_t row = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    for (int t = 0; t < n; ++t) {
      const int slot = size_ + t;
      uint8_t* kd = Krow(layer, slot);
      const size_t col = static_cast<size_t>(slot % P_);
      uint8_t* vt = Vt(layer, slot);
      if (f16_) {
        ConvertF32ToF16(k + t * row, reinterpret_cast<uint16_t*>(kd), row);
        uint16_t* vd = reinterpret_cast<uint16_t*>(vt);
        for (size_t i = 0; i < row; ++i) vd[i * P_ + col] = F32ToF16(v[t * row + i]);
      } else {
        std::memcpy(kd, k + t * row, row_bytes_);
        float* vd = reinterpret_cast<float*>(vt);
        for (size_t i = 0; i < row; ++i) vd[i * P_ + col] = v[t * row + i];
      }
    }
    return Status::Ok();
  }

  Status Commit(int n, const int32_t* pos) override {
    if (n < 0 || size_ + n > config_.capacity) return OutOfRange("KV commit past capacity");
    positions_.resize(size_);
    positions_.insert(positions_.end(), pos, pos + n);
    size_ += n;
    return Status::Ok();
  }

  void Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
              float* out) const override {
    AttendGroup(layer, kv_head, q, 1, scale, n_visible, scores, out);
  }

  void AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible, float* scores,
                   float* out) const override {
    const int hd = config_.head_dim;
    const TensorType t = f16_ ? TensorType::kF16 : TensorType::kF32;
    const size_t head_k = static_cast<size_t>(kv_head) * hd * elem_;
    // The F16/F32 kernels take plain f32 activations: q rows and probability rows as they are.
    for (int c0 = 0; c0 < n_visible; c0 += P_) {
      const int len = std::min(P_, n_visible - c0);
      MatMulRows(t, chunks_[layer][c0 / P_].as<uint8_t>() + head_k, row_bytes_, 0, len, hd, q, n_q, scores + c0,
                 n_visible);
    }
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
    const size_t vrow = static_cast<size_t>(P_) * elem_;
    const size_t head_v = static_cast<size_t>(P_) * row_bytes_ + static_cast<size_t>(kv_head) * hd * vrow;
    if (n_visible <= P_) {  // one chunk: the probability rows are contiguous
      MatMulRows(t, chunks_[layer][0].as<uint8_t>() + head_v, vrow, 0, hd, n_visible, scores, n_q, out, hd);
      return;
    }
    // Several chunks: out = sum over chunks of V_c^T p_c, a few heads at a time
    // (their probability slices copied next to each other for the kernel).
    const int batch = std::max(1, std::min(4, 1024 / hd));
    float ptmp[4 * kMaxChunkCells];
    float otmp[1024];
    for (int i0 = 0; i0 < n_q; i0 += batch) {
      const int nb = std::min(batch, n_q - i0);
      float* o = out + static_cast<size_t>(i0) * hd;
      for (int c0 = 0; c0 < n_visible; c0 += P_) {
        const int len = std::min(P_, n_visible - c0);
        for (int i = 0; i < nb; ++i) {
          std::memcpy(ptmp + i * len, scores + static_cast<size_t>(i0 + i) * n_visible + c0, sizeof(float) * len);
        }
        const uint8_t* vt = chunks_[layer][c0 / P_].as<uint8_t>() + head_v;
        if (c0 == 0) {
          MatMulRows(t, vt, vrow, 0, hd, len, ptmp, nb, o, hd);
        } else {
          MatMulRows(t, vt, vrow, 0, hd, len, ptmp, nb, otmp, hd);
          for (int j = 0; j < nb * hd; ++j) o[j] += otmp[j];
        }
      }
    }
  }

  void Clear() override {
    size_ = 0;
    positions_.clear();
    for (auto& c : chunks_) c.clear();
  }

  Status Retain(const std::vector<bool>& keep) override {
    if (keep.size() != static_cast<size_t>(size_)) return InvalidArgument("KV retain: mask size != cache size");
    const size_t rows = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    int w = 0;
    for (int s = 0; s < size_; ++s) {
      if (!keep[s]) continue;
      if (w != s) {
        for (int l = 0; l < config_.n_layers; ++l) {
          std::memcpy(Krow(l, w), Krow(l, s), row_bytes_);
          uint8_t* vw = Vt(l, w) + static_cast<size_t>(w % P_) * elem_;
          const uint8_t* vs = Vt(l, s) + static_cast<size_t>(s % P_) * elem_;
          for (size_t i = 0; i < rows; ++i) std::memcpy(vw + i * P_ * elem_, vs + i * P_ * elem_, elem_);
        }
        positions_[w] = positions_[s];
      }
      ++w;
    }
    size_ = w;
    positions_.resize(w);
    const size_t need = static_cast<size_t>((w + P_ - 1) / P_);
    for (auto& c : chunks_) {
      while (c.size() > need) c.pop_back();  // whole chunks back to the ledger
    }
    return Status::Ok();
  }

  Status Get(int layer, int slot, float* k, float* v, int* bits) const override {
    if (layer < 0 || layer >= config_.n_layers || slot < 0 || slot >= size_) {
      return OutOfRange("KV get: layer " + std::to_string(layer) + " slot " + std::to_string(slot) +
                        " is outside the cache (" + std::to_string(size_) + " tokens)");
    }
    const size_t rows = static_cast<size_t>(config_.n_kv_heads) * config_.head_dim;
    const uint8_t* kr = const_cast<PlainKvCache*>(this)->Krow(layer, slot);
    const uint8_t* vt = const_cast<PlainKvCache*>(this)->Vt(layer, slot) + static_cast<size_t>(slot % P_) * elem_;
    for (size_t i = 0; i < rows; ++i) {
      if (f16_) {
        uint16_t hk, hv;
        std::memcpy(&hk, kr + 2 * i, 2);
        std::memcpy(&hv, vt + i * P_ * 2, 2);
        k[i] = F16ToF32(hk);
        v[i] = F16ToF32(hv);
      } else {
        std::memcpy(k + i, kr + 4 * i, 4);
        std::memcpy(v + i, vt + i * P_ * 4, 4);
      }
    }
    if (bits) *bits = f16_ ? 16 : 32;
    return Status::Ok();
  }

  Status SetCapacity(int capacity) override {
    if (capacity < size_ || capacity < 1) {
      return OutOfRange("KV cache: capacity " + std::to_string(capacity) + " is below the " + std::to_string(size_) +
                        " tokens held; truncate or prune first");
    }
    config_.capacity = capacity;
    return Status::Ok();
  }

  uint64_t bytes() const override {
    uint64_t b = 0;
    for (const auto& c : chunks_) {
      for (const Buffer& x : c) b += x.size();
    }
    return b;
  }

 private:
  Status Reserve(int layer, int cells) {
    auto& c = chunks_[layer];
    while (static_cast<int>(c.size()) * P_ < cells) {
      TF_ASSIGN_OR_RETURN(Buffer b, ledger_->Allocate(config_.component, 2 * row_bytes_ * P_));
      c.push_back(std::move(b));
    }
    return Status::Ok();
  }
  uint8_t* Krow(int layer, int slot) {
    return chunks_[layer][slot / P_].as<uint8_t>() + static_cast<size_t>(slot % P_) * row_bytes_;
  }
  // The V^T block of the chunk holding `slot` (column slot % P of each row).
  uint8_t* Vt(int layer, int slot) {
    return chunks_[layer][slot / P_].as<uint8_t>() + static_cast<size_t>(P_) * row_bytes_;
  }

  KvCacheConfig config_;
  bool f16_;
  MemoryLedger* ledger_ = nullptr;
  size_t elem_ = 4, row_bytes_ = 0;
  int P_ = 1;
  std::vector<std::vector<Buffer>> chunks_;  // [layer][chunk]: K rows [P][row] then V^T [row][P]
  std::vector<int> positions_;
  int size_ = 0;
};

}  // namespace

uint64_t PlainKvCacheBytes(const KvCacheConfig& c, uint64_t max_buffer, int tokens) {
  if (c.n_layers <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 || c.capacity <= 0) return 0;
  const int P = PlainKvCache::ChunkCells(c, max_buffer);
  tokens = std::clamp(tokens, 0, c.capacity);
  const uint64_t chunks = static_cast<uint64_t>((tokens + P - 1) / P);
  return chunks * P * 2ull * c.n_kv_heads * c.head_dim * (c.type == "f32" ? 4 : 2) * c.n_layers;
}

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
