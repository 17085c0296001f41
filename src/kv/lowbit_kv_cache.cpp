// The KIVI-style low-bit KV cache (see lowbit_kv_cache.h).
#include "kv/lowbit_kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>

#include "core/f16.h"
#include "kv/kv_chunks.h"
#include "kv/kv_slots.h"
#include "kv/lowbit_kernels.h"
#include "quant/kernels.h"
#include "quant/vec.h"

namespace tabfit {

namespace {

using kvchunks::ChunkedArray;
using kvlow::kSub;
constexpr int kMaxChunkTokens = 256;

// Everything that follows from the options and the model's cache shape.
struct Format {
  int bits = 2, rbits = 8, window = 0, G = 32, Gv = 32;
  int C = 0, hd = 0, n_kv = 0;
  size_t key_rec = 0;   // one channel's group of G keys
  size_t key_part = 0;  // a group's keys: C records
  size_t val_grp = 0;   // Gv values of one token
  size_t val_rec = 0;   // one token-head: hd/Gv groups
  size_t val_part = 0;  // a group's values: G * n_kv records
  size_t cell = 0;      // one window row (K or V): C/32 Q8_0 blocks or C f16
  int cap_w = 0;        // window ring cells: window + G
  int per_group_chunk = 1, per_cell_chunk = 1;
};

Format MakeFormat(const KvCacheConfig& c, const KvLowBitOptions& o, uint64_t max_buffer) {
  Format f;
  f.bits = o.default_bits;
  f.rbits = o.recent_token_bits;
  f.window = o.rolling_window;
  f.G = o.group_size;
  f.hd = c.head_dim;
  f.n_kv = c.n_kv_heads;
  f.C = f.hd * f.n_kv;
  f.Gv = std::min(f.G, f.hd);
  f.key_rec = kvlow::GroupBytes(f.G, f.bits);
  f.key_part = static_cast<size_t>(f.C) * f.key_rec;
  f.val_grp = kvlow::GroupBytes(f.Gv, f.bits);
  f.val_rec = static_cast<size_t>(f.hd / f.Gv) * f.val_grp;
  f.val_part = static_cast<size_t>(f.G) * f.n_kv * f.val_rec;
  f.cell = f.rbits == 8 ? static_cast<size_t>(f.C / kSub) * sizeof(BlockQ8_0) : static_cast<size_t>(f.C) * 2;
  f.cap_w = f.window + f.G;
  size_t target = o.chunk_bytes ? o.chunk_bytes : (1u << 20);
  if (max_buffer) target = std::min<uint64_t>(target, max_buffer);
  // Chunks of at most 256 tokens (as the plain cache's), so storage follows the tokens closely.
  // ... and at most a quarter of the capacity (at least one group).
  const int chunk_tokens = std::min(kMaxChunkTokens, std::max(f.G, c.capacity / 4));
  const int max_groups = std::max(1, std::min(c.capacity / f.G + 1, chunk_tokens / f.G));
  f.per_group_chunk = std::clamp(static_cast<int>(target / std::max(f.key_part, f.val_part)), 1, max_groups);
  f.per_cell_chunk = std::clamp(static_cast<int>(target / f.cell), 1, std::min({f.cap_w, c.capacity, 64}));
  return f;
}

struct LayerStore {
  ChunkedArray klow, vlow;  // units: groups
  ChunkedArray kwin, vwin;  // units: window cells (ring positions)
  int n_groups = 0, w_head = 0, w_size = 0;
  int cells(const Format& f) const { return n_groups * f.G + w_size; }
  uint64_t bytes() const { return klow.bytes() + vlow.bytes() + kwin.bytes() + vwin.bytes(); }
};

LayerStore NewLayer(const Format& f) {
  LayerStore L;
  L.klow = ChunkedArray(f.key_part, f.per_group_chunk);
  L.vlow = ChunkedArray(f.val_part, f.per_group_chunk);
  L.kwin = ChunkedArray(f.cell, f.per_cell_chunk);
  L.vwin = ChunkedArray(f.cell, f.per_cell_chunk);
  return L;
}

void EncodeCell(const Format& f, const float* x, uint8_t* dst) {
  if (f.rbits == 8) {
    QuantizeRow(TensorType::kQ8_0, x, dst, f.C, nullptr);
  } else {
    ConvertF32ToF16(x, reinterpret_cast<uint16_t*>(dst), f.C);
  }
}

void DecodeCell(const Format& f, const uint8_t* src, float* x) {
  if (f.rbits == 8) {
    DequantizeRow(TensorType::kQ8_0, src, x, f.C);
  } else {
    const auto* h = reinterpret_cast<const uint16_t*>(src);
    for (int i = 0; i < f.C; ++i) x[i] = F16ToF32(h[i]);
  }
}

}  // namespace

namespace {
// scores[0..n) *= scale (unless 1), then softmax in place.
void ScaledSoftmax(float* scores, int n, float scale) {
  if (scale != 1.f) {
    for (int s = 0; s < n; ++s) scores[s] *= scale;
  }
  float mx = -INFINITY;
  for (int s = 0; s < n; ++s) mx = std::max(mx, scores[s]);
  const double sum = ExpShiftSum(scores, mx, n);
  const float inv = static_cast<float>(1.0 / sum);
  for (int s = 0; s < n; ++s) scores[s] *= inv;
}
}  // namespace

struct LowBitKvCache::Impl {
  KvCacheConfig config;
  KvLowBitOptions opt;
  Format f;
  MemoryLedger* ledger = nullptr;
  std::vector<LayerStore> layers;
  std::vector<int> positions;
  int size = 0;
  Buffer scratch;  // staging: G cells (K, then V, of a flush), one decoded cell of K and V
  const kvlow::Kernels* kern = nullptr;

  float* stage() { return scratch.as<float>(); }
  float* cell_k() { return scratch.as<float>() + static_cast<size_t>(f.G) * f.C; }
  float* cell_v() { return cell_k() + f.C; }

  // Quantizes the window's oldest G cells into a new low group.
  Status Flush(LayerStore& L, const Format& F) {
    float* st = stage();
    TF_RETURN_IF_ERROR(L.klow.Reserve(*ledger, config.component, L.n_groups + 1));
    TF_RETURN_IF_ERROR(L.vlow.Reserve(*ledger, config.component, L.n_groups + 1));
    // Keys: per channel over the G tokens.
    for (int t = 0; t < F.G; ++t) DecodeCell(F, L.kwin.at((L.w_head + t) % F.cap_w), st + static_cast<size_t>(t) * F.C);
    uint8_t* kd = L.klow.at(L.n_groups);
    for (int c = 0; c < F.C; ++c) kvlow::QuantizeGroup(st + c, F.C, F.G, F.bits, kd + c * F.key_rec);
    // Values: per token over Gv channels.
    for (int t = 0; t < F.G; ++t) DecodeCell(F, L.vwin.at((L.w_head + t) % F.cap_w), st + static_cast<size_t>(t) * F.C);
    uint8_t* vd = L.vlow.at(L.n_groups);
    for (int t = 0; t < F.G; ++t) {
      for (int h = 0; h < F.n_kv; ++h) {
        uint8_t* rec = vd + (static_cast<size_t>(h) * F.G + t) * F.val_rec;
        const float* x = st + static_cast<size_t>(t) * F.C + static_cast<size_t>(h) * F.hd;
        for (int g = 0; g < F.hd / F.Gv; ++g) kvlow::QuantizeGroup(x + g * F.Gv, 1, F.Gv, F.bits, rec + g * F.val_grp);
      }
    }
    ++L.n_groups;
    L.w_head = (L.w_head + F.G) % F.cap_w;
    L.w_size -= F.G;
    return Status::Ok();
  }

  Status Append(LayerStore& L, const Format& F, const float* k, const float* v) {
    if (L.w_size >= F.window + F.G) TF_RETURN_IF_ERROR(Flush(L, F));
    const int r = (L.w_head + L.w_size) % F.cap_w;
    TF_RETURN_IF_ERROR(L.kwin.Reserve(*ledger, config.component, r + 1));
    TF_RETURN_IF_ERROR(L.vwin.Reserve(*ledger, config.component, r + 1));
    EncodeCell(F, k, L.kwin.at(r));
    EncodeCell(F, v, L.vwin.at(r));
    ++L.w_size;
    return Status::Ok();
  }

  void Decode(const LayerStore& L, const Format& F, int slot, float* k, float* v, int* bits) const {
    const int n_low = L.n_groups * F.G;
    if (slot < n_low) {
      const int g = slot / F.G, t = slot % F.G;
      const uint8_t* kg = L.klow.at(g);
      for (int c = 0; c < F.C; ++c) k[c] = kvlow::DequantAt(kg + c * F.key_rec, F.bits, t);
      for (int h = 0; h < F.n_kv; ++h) {
        const uint8_t* vr = L.vlow.at(g) + (static_cast<size_t>(h) * F.G + t) * F.val_rec;
        for (int g2 = 0; g2 < F.hd / F.Gv; ++g2) {
          kvlow::DequantizeGroup(vr + g2 * F.val_grp, F.Gv, F.bits, v + h * F.hd + g2 * F.Gv, 1);
        }
      }
      if (bits) *bits = F.bits;
      return;
    }
    const int r = (L.w_head + slot - n_low) % F.cap_w;
    DecodeCell(F, L.kwin.at(r), k);
    DecodeCell(F, L.vwin.at(r), v);
    if (bits) *bits = F.rbits;
  }

  // A fresh layer in format `to` holding the slots of `L` (format `from`) among
  // [0, n) for which keep(slot); whole low groups are copied as they are when
  // the formats agree and the group lands on a group boundary.
  Result<LayerStore> Rebuild(const LayerStore& L, const Format& from, const Format& to, int n,
                             const std::function<bool(int)>& keep) {
    LayerStore nl = NewLayer(to);
    const bool same = from.bits == to.bits && from.G == to.G && from.rbits == to.rbits;
    int total = 0;
    for (int s = 0; s < n; ++s) total += keep(s) ? 1 : 0;
    // Groups a cache built from scratch with `total` tokens has in its low store.
    const int want_groups = total <= to.window + to.G ? 0 : (total - to.window - 1) / to.G;
    float* k = cell_k();
    float* v = cell_v();
    for (int s = 0; s < n;) {
      const int g = s / from.G;
      if (same && s % from.G == 0 && g < L.n_groups && nl.w_size == 0 && nl.n_groups < want_groups) {
        bool all = true;
        for (int t = 0; t < from.G && all; ++t) all = keep(s + t);
        if (all) {
          TF_RETURN_IF_ERROR(nl.klow.Reserve(*ledger, config.component, nl.n_groups + 1));
          TF_RETURN_IF_ERROR(nl.vlow.Reserve(*ledger, config.component, nl.n_groups + 1));
          std::memcpy(nl.klow.at(nl.n_groups), L.klow.at(g), from.key_part);
          std::memcpy(nl.vlow.at(nl.n_groups), L.vlow.at(g), from.val_part);
          ++nl.n_groups;
          s += from.G;
          continue;
        }
      }
      if (keep(s)) {
        Decode(L, from, s, k, v, nullptr);
        TF_RETURN_IF_ERROR(Append(nl, to, k, v));
      }
      ++s;
    }
    return nl;
  }

  // Rebuilds every layer; on failure the cache is cleared (a half-rebuilt
  // cache would disagree between layers) and the error says so.
  Status RebuildAll(const Format& to, const std::function<bool(int)>& keep) {
    for (size_t l = 0; l < layers.size(); ++l) {
      auto nl = Rebuild(layers[l], f, to, size, keep);
      if (!nl.ok()) {
        ClearAll();
        return Status(nl.status().code(), "KV cache: rebuilding layer " + std::to_string(l) +
                                              " failed and the context was cleared: " + nl.status().message());
      }
      layers[l] = std::move(*nl);
    }
    int w = 0;
    for (int s = 0; s < size; ++s) {
      if (keep(s)) positions[w++] = positions[s];
    }
    positions.resize(w);
    size = w;
    return Status::Ok();
  }

  void ClearAll() {
    for (LayerStore& L : layers) L = NewLayer(f);
    positions.clear();
    size = 0;
  }
};

Status CheckLowBitOptions(const KvCacheConfig& c, const KvLowBitOptions& o) {
  if (c.n_layers <= 0 || c.n_kv_heads <= 0 || c.head_dim <= 0 || c.capacity <= 0) {
    return InvalidArgument("KV cache: layers, heads, head_dim and capacity must be positive");
  }
  if (!kvlow::ValidBits(o.default_bits)) {
    return InvalidArgument("KV cache default_bits must be 2, 3 or 4 (got " + std::to_string(o.default_bits) + ")");
  }
  if (o.recent_token_bits != 8 && o.recent_token_bits != 16) {
    return InvalidArgument("KV cache recent_token_bits must be 8 or 16 (got " + std::to_string(o.recent_token_bits) +
                           ")");
  }
  if (o.rolling_window < 0 || o.rolling_window > c.capacity) {
    return InvalidArgument("KV cache rolling_window must be in [0, " + std::to_string(c.capacity) +
                           "] (the context size); got " + std::to_string(o.rolling_window));
  }
  if (o.group_size != 32 && o.group_size != 64 && o.group_size != 128) {
    return InvalidArgument("KV cache group_size must be 32, 64 or 128 (got " + std::to_string(o.group_size) + ")");
  }
  if (c.head_dim % kSub != 0 || c.head_dim > kvlow::kMaxHeadDim || c.head_dim % std::min(o.group_size, c.head_dim)) {
    return Unsupported("the low-bit KV cache needs head_dim a multiple of 32 (and of group_size up to it), at most " +
                       std::to_string(kvlow::kMaxHeadDim) + "; this model has " + std::to_string(c.head_dim) +
                       "; use an f16 cache");
  }
  return Status::Ok();
}

uint64_t LowBitKvCacheBytes(const KvCacheConfig& c, const KvLowBitOptions& o, int tokens) {
  if (!CheckLowBitOptions(c, o).ok()) return 0;
  const Format f = MakeFormat(c, o, 0);
  tokens = std::clamp(tokens, 0, c.capacity);
  const int groups = tokens <= f.window + f.G ? 0 : (tokens - f.window - 1) / f.G;
  const int cells = std::min(tokens, f.cap_w);
  auto round = [](int n, int per) { return static_cast<uint64_t>((n + per - 1) / per) * per; };
  const uint64_t per_layer = round(groups, f.per_group_chunk) * (f.key_part + f.val_part) +
                             2 * round(cells, f.per_cell_chunk) * f.cell;
  return c.n_layers * per_layer + (static_cast<uint64_t>(f.G) + 2) * f.C * sizeof(float);
}

Result<std::unique_ptr<LowBitKvCache>> LowBitKvCache::Create(const KvCacheConfig& config,
                                                             const KvLowBitOptions& options, MemoryLedger& ledger) {
  TF_RETURN_IF_ERROR(CheckLowBitOptions(config, options));
  auto impl = std::make_unique<Impl>();
  impl->config = config;
  impl->opt = options;
  impl->ledger = &ledger;
  impl->f = MakeFormat(config, options, ledger.max_buffer_bytes());
  const Format& f = impl->f;
  TF_RETURN_IF_ERROR(kvchunks::UnitsPerChunk(ledger, std::max(f.key_part, f.val_part), 1, "low-bit token group").status());
  TF_RETURN_IF_ERROR(kvchunks::UnitsPerChunk(ledger, f.cell, 1, "window cell").status());
  TF_ASSIGN_OR_RETURN(impl->scratch,
                      ledger.Allocate(config.component + ".scratch", (static_cast<uint64_t>(f.G) + 2) * f.C * sizeof(float)));
  for (int l = 0; l < config.n_layers; ++l) impl->layers.push_back(NewLayer(f));
  impl->kern = &kvlow::Best();
  return std::unique_ptr<LowBitKvCache>(new LowBitKvCache(std::move(impl)));
}

LowBitKvCache::LowBitKvCache(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LowBitKvCache::~LowBitKvCache() = default;

const KvCacheConfig& LowBitKvCache::config() const { return impl_->config; }
int LowBitKvCache::size() const { return impl_->size; }
int LowBitKvCache::position(int slot) const { return impl_->positions[slot]; }
const KvLowBitOptions& LowBitKvCache::options() const { return impl_->opt; }
int LowBitKvCache::low_tokens(int layer) const { return impl_->layers[layer].n_groups * impl_->f.G; }

uint64_t LowBitKvCache::bytes() const {
  uint64_t b = impl_->scratch.size();
  for (const LayerStore& L : impl_->layers) b += L.bytes();
  return b;
}

Status LowBitKvCache::Write(int layer, int n, const int32_t* pos, const float* k, const float* v) {
  Impl& m = *impl_;
  TF_RETURN_IF_ERROR(kvslots::CheckWrite(m.config, m.size, layer, n));
  (void)pos;
  LayerStore& L = m.layers[layer];
  if (L.cells(m.f) != m.size) {
    // Cells of a step that failed before its Commit: drop them.
    const int extra = L.cells(m.f) - m.size;
    if (extra > 0 && extra <= L.w_size && L.n_groups * m.f.G <= m.size) {
      L.w_size -= extra;
    } else {
      const int keep_n = m.size;
      TF_ASSIGN_OR_RETURN(L, m.Rebuild(L, m.f, m.f, keep_n, [keep_n](int s) { return s < keep_n; }));
    }
  }
  const size_t row = static_cast<size_t>(m.f.C);
  for (int t = 0; t < n; ++t) TF_RETURN_IF_ERROR(m.Append(L, m.f, k + t * row, v + t * row));
  return Status::Ok();
}

Status LowBitKvCache::Commit(int n, const int32_t* pos) {
  Impl& m = *impl_;
  if (n < 0 || m.size + n > m.config.capacity) return OutOfRange("KV commit past capacity");
  for (const LayerStore& L : m.layers) {
    if (L.cells(m.f) != m.size + n) return Internal("KV commit: a layer was not written for this step");
  }
  m.positions.insert(m.positions.end(), pos, pos + n);
  m.size += n;
  return Status::Ok();
}

void LowBitKvCache::Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
                           float* out) const {
  const Impl& m = *impl_;
  const Format& f = m.f;
  const LayerStore& L = m.layers[layer];
  const kvlow::Kernels& K = *m.kern;
  const int hd = f.hd;
  const int n_low = std::min(L.n_groups * f.G, n_visible);
  const size_t head_keys = static_cast<size_t>(kv_head) * hd * f.key_rec;
  for (int g = 0; g * f.G < n_low; ++g) {
    const uint8_t* recs = L.klow.at(g) + head_keys;
    if ((g + 1) * f.G <= n_low) {
      K.key_scores(recs, f.key_rec, hd, f.G, f.bits, q, scores + g * f.G);
    } else {  // a group partly visible to this query (prefill)
      float tmp[128];
      K.key_scores(recs, f.key_rec, hd, f.G, f.bits, q, tmp);
      std::copy(tmp, tmp + (n_low - g * f.G), scores + g * f.G);
    }
  }
  const int m_win = n_visible - n_low;
  for (int j = 0; j < m_win; ++j) {
    const uint8_t* cell = L.kwin.at((L.w_head + j) % f.cap_w);
    scores[n_low + j] = f.rbits == 8
                            ? K.dot_q8(reinterpret_cast<const BlockQ8_0*>(cell) + kv_head * (hd / kSub), hd / kSub, q)
                            : K.dot_f16(reinterpret_cast<const uint16_t*>(cell) + kv_head * hd, hd, q);
  }
  ScaledSoftmax(scores, n_visible, scale);
  std::fill(out, out + hd, 0.f);
  for (int s = 0; s < n_low; ++s) {
    const int g = s / f.G, t = s % f.G;
    K.value_axpy(L.vlow.at(g) + (static_cast<size_t>(kv_head) * f.G + t) * f.val_rec, hd, f.Gv, f.bits, scores[s],
                 out);
  }
  for (int j = 0; j < m_win; ++j) {
    const float p = scores[n_low + j];
    const uint8_t* cell = L.vwin.at((L.w_head + j) % f.cap_w);
    if (f.rbits == 8) {
      K.axpy_q8(p, reinterpret_cast<const BlockQ8_0*>(cell) + kv_head * (hd / kSub), hd / kSub, out);
    } else {
      K.axpy_f16(p, reinterpret_cast<const uint16_t*>(cell) + kv_head * hd, hd, out);
    }
  }
}


// The n_q heads sharing a kv head: each sub-block of 32 low-bit tokens is
// dequantized once into a tile in L1 and all heads read it (a tile, never the
// whole cache); the window's 8/16-bit cells are read per head.
void LowBitKvCache::AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible,
                                float* scores, float* out) const {
  const Impl& m = *impl_;
  const Format& f = m.f;
  const int hd = f.hd;
  if (n_q == 1 || hd > 128) {
    KvCache::AttendGroup(layer, kv_head, q, n_q, scale, n_visible, scores, out);
    return;
  }
  const LayerStore& L = m.layers[layer];
  const kvlow::Kernels& K = *m.kern;
  const size_t ld = static_cast<size_t>(n_visible);
  const int n_low = std::min(L.n_groups * f.G, n_visible);
  const size_t head_keys = static_cast<size_t>(kv_head) * hd * f.key_rec;
  alignas(32) float tile[128 * kSub];
  // The scale folded into the queries: scores come out scaled.
  if (n_q > 16) {
    KvCache::AttendGroup(layer, kv_head, q, n_q, scale, n_visible, scores, out);
    return;
  }
  alignas(32) float qs[16 * 128];
  for (int i = 0; i < n_q * hd; ++i) qs[i] = q[i] * scale;
  q = qs;
  for (int t0 = 0; t0 < n_low; t0 += kSub) {
    const int g = t0 / f.G, sub = (t0 % f.G) / kSub;
    K.key_tile(L.klow.at(g) + head_keys, f.key_rec, hd, f.bits, sub, tile);
    K.tile_scores(tile, hd, q, n_q, std::min(kSub, n_low - t0), scores + t0, ld);
  }
  // The window in tiles of 32 cells too: K transposed into the tile, V as rows.
  const int m_win = n_visible - n_low;
  auto decode_head = [&](const uint8_t* cell, float* dst) {
    if (f.rbits == 8) {
      DequantizeRow(TensorType::kQ8_0, reinterpret_cast<const BlockQ8_0*>(cell) + kv_head * (hd / kSub), dst, hd);
    } else {
      const uint16_t* h16 = reinterpret_cast<const uint16_t*>(cell) + kv_head * hd;
      for (int c = 0; c < hd; ++c) dst[c] = F16ToF32(h16[c]);
    }
  };
  alignas(32) float rows[128 * kSub];
  for (int j0 = 0; j0 < m_win; j0 += kSub) {
    const int len = std::min(kSub, m_win - j0);
    for (int t = 0; t < len; ++t) decode_head(L.kwin.at((L.w_head + j0 + t) % f.cap_w), rows + t * hd);
    K.rows_to_tile(rows, len, hd, tile);
    K.tile_scores(tile, hd, q, n_q, len, scores + n_low + j0, ld);
  }
  for (int i = 0; i < n_q; ++i) ScaledSoftmax(scores + i * ld, n_visible, 1.f);
  std::fill(out, out + static_cast<size_t>(n_q) * hd, 0.f);
  for (int t0 = 0; t0 < n_low; t0 += kSub) {
    const int len = std::min(kSub, n_low - t0);
    K.value_tile(L.vlow.at(t0 / f.G) + (static_cast<size_t>(kv_head) * f.G + t0 % f.G) * f.val_rec, f.val_rec, len, hd,
                 f.Gv, f.bits, tile);
    K.tile_accumulate(tile, hd, len, scores + t0, ld, n_q, out);
  }
  for (int j0 = 0; j0 < m_win; j0 += kSub) {
    const int len = std::min(kSub, m_win - j0);
    for (int t = 0; t < len; ++t) decode_head(L.vwin.at((L.w_head + j0 + t) % f.cap_w), tile + t * hd);
    K.tile_accumulate(tile, hd, len, scores + n_low + j0, ld, n_q, out);
  }
}

void LowBitKvCache::Clear() { impl_->ClearAll(); }

Status LowBitKvCache::Retain(const std::vector<bool>& keep) {
  Impl& m = *impl_;
  if (keep.size() != static_cast<size_t>(m.size)) return InvalidArgument("KV retain: mask size != cache size");
  if (std::count(keep.begin(), keep.end(), true) == m.size) return Status::Ok();
  return m.RebuildAll(m.f, [&keep](int s) { return static_cast<bool>(keep[s]); });
}

Status LowBitKvCache::Get(int layer, int slot, float* k, float* v, int* bits) const {
  const Impl& m = *impl_;
  if (layer < 0 || layer >= m.config.n_layers || slot < 0 || slot >= m.size) {
    return OutOfRange("KV get: layer " + std::to_string(layer) + " slot " + std::to_string(slot) +
                      " is outside the cache (" + std::to_string(m.config.n_layers) + " layers, " +
                      std::to_string(m.size) + " tokens)");
  }
  m.Decode(m.layers[layer], m.f, slot, k, v, bits);
  return Status::Ok();
}

Status LowBitKvCache::SetCapacity(int capacity) {
  Impl& m = *impl_;
  if (capacity < m.size || capacity < 1) {
    return OutOfRange("KV cache: capacity " + std::to_string(capacity) + " is below the " + std::to_string(m.size) +
                      " tokens held; truncate or prune first");
  }
  m.config.capacity = capacity;
  return Status::Ok();
}

Result<uint64_t> LowBitKvCache::Requantize(int default_bits, int recent_token_bits, int rolling_window) {
  Impl& m = *impl_;
  KvLowBitOptions o = m.opt;
  if (default_bits != -1) o.default_bits = default_bits;
  if (recent_token_bits != -1) o.recent_token_bits = recent_token_bits;
  if (rolling_window != -1) o.rolling_window = rolling_window;
  TF_RETURN_IF_ERROR(CheckLowBitOptions(m.config, o));
  if (o.default_bits > m.opt.default_bits || o.recent_token_bits > m.opt.recent_token_bits ||
      o.rolling_window > m.opt.rolling_window) {
    return InvalidArgument("KV requantize only lowers precision: default_bits " + std::to_string(m.opt.default_bits) +
                           ", recent_token_bits " + std::to_string(m.opt.recent_token_bits) + ", rolling_window " +
                           std::to_string(m.opt.rolling_window) + " are the current values");
  }
  const uint64_t before = bytes();
  const Format to = MakeFormat(m.config, o, m.ledger->max_buffer_bytes());
  TF_RETURN_IF_ERROR(m.RebuildAll(to, [](int) { return true; }));
  m.f = to;
  m.opt = o;
  const uint64_t after = bytes();
  return before > after ? before - after : 0;
}

}  // namespace tabfit
