// Attention-score pruning around any KV cache.
#include "kv/pruning_kv_cache.h"

#include <algorithm>
#include <cstring>
#include <numeric>

namespace tabfit {

namespace {
// *p += v, atomically (compare-and-swap on the bits: std::atomic_ref is not in
// every toolchain tabfit targets, e.g. Emscripten 3.1's libc++).
inline void AtomicAdd(float* p, float v) {
  auto* u = reinterpret_cast<uint32_t*>(p);
  uint32_t old = __atomic_load_n(u, __ATOMIC_RELAXED);
  for (;;) {
    float f;
    std::memcpy(&f, &old, 4);
    f += v;
    uint32_t next;
    std::memcpy(&next, &f, 4);
    if (__atomic_compare_exchange_n(u, &old, next, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) return;
  }
}
}  // namespace

Result<std::unique_ptr<PruningKvCache>> PruningKvCache::Create(std::unique_ptr<KvCache> inner,
                                                               const KvPruneOptions& options, MemoryLedger& ledger) {
  if (!inner) return InvalidArgument("PruningKvCache: no inner cache");
  if (options.sinks < 0 || options.recent < 0) {
    return InvalidArgument("KV pruning: sinks and recent must be >= 0");
  }
  if (!(options.auto_keep >= 0.f && options.auto_keep < 1.f)) {
    return InvalidArgument("KV pruning: the kept fraction must be in (0, 1) (0 disables automatic pruning); got " +
                           std::to_string(options.auto_keep));
  }
  std::unique_ptr<PruningKvCache> p(new PruningKvCache());
  const KvCacheConfig& c = inner->config();
  p->inner_ = std::move(inner);
  p->opt_ = options;
  const size_t cap = static_cast<size_t>(c.capacity);
  TF_ASSIGN_OR_RETURN(p->acc_, ledger.Allocate(c.component + ".scores", sizeof(float) * cap * c.n_layers * c.n_kv_heads));
  TF_ASSIGN_OR_RETURN(p->mass_, ledger.Allocate(c.component + ".scores", sizeof(float) * cap));
  TF_ASSIGN_OR_RETURN(p->seen_, ledger.Allocate(c.component + ".scores", sizeof(float) * cap));
  std::memset(p->acc_.data(), 0, p->acc_.size());
  p->own_bytes_ = p->acc_.size() + p->mass_.size() + p->seen_.size();
  return p;
}

Status PruningKvCache::Write(int layer, int n, const int32_t* pos, const float* k, const float* v) {
  return inner_->Write(layer, n, pos, k, v);
}

void PruningKvCache::Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
                            float* out) const {
  inner_->Attend(layer, kv_head, q, scale, n_visible, scores, out);
  const KvCacheConfig& c = inner_->config();
  float* acc = const_cast<Buffer&>(acc_).as<float>() +
               (static_cast<size_t>(layer) * c.n_kv_heads + kv_head) * static_cast<size_t>(c.capacity);
  for (int s = 0; s < n_visible; ++s) {
    AtomicAdd(acc + s, scores[s]);
  }
}

void PruningKvCache::AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible,
                                 float* scores, float* out) const {
  inner_->AttendGroup(layer, kv_head, q, n_q, scale, n_visible, scores, out);
  const KvCacheConfig& c = inner_->config();
  float* acc = const_cast<Buffer&>(acc_).as<float>() +
               (static_cast<size_t>(layer) * c.n_kv_heads + kv_head) * static_cast<size_t>(c.capacity);
  for (int i = 0; i < n_q; ++i) {
    const float* p = scores + static_cast<size_t>(i) * n_visible;
    for (int s = 0; s < n_visible; ++s) AtomicAdd(acc + s, p[s]);
  }
}

Status PruningKvCache::Commit(int n, const int32_t* pos) {
  const int n_past = inner_->size();
  TF_RETURN_IF_ERROR(inner_->Commit(n, pos));
  const KvCacheConfig& c = inner_->config();
  const int total = n_past + n;
  const size_t cap = static_cast<size_t>(c.capacity);
  float* acc = acc_.as<float>();
  float* mass = mass_.as<float>();
  float* seen = seen_.as<float>();
  for (int s = n_past; s < total; ++s) mass[s] = seen[s] = 0.f;
  // Only attention from queries beyond the protected recent window counts:
  // every token is heavily attended while it is local, which says nothing
  // about whether it is needed once it is old. `far` = slots at least
  // opt_.recent behind this step's first query.
  const int far = std::max(0, n_past + 1 - opt_.recent);
  const int rows = c.n_layers * c.n_kv_heads;
  for (int r = 0; r < rows; ++r) {
    float* a = acc + r * cap;
    for (int s = 0; s < far; ++s) mass[s] += a[s];
    std::memset(a, 0, sizeof(float) * total);
  }
  for (int s = 0; s < far; ++s) seen[s] += static_cast<float>(n);
  return Status::Ok();
}

void PruningKvCache::Clear() {
  inner_->Clear();
  std::memset(acc_.data(), 0, acc_.size());
}

float PruningKvCache::score(int slot) const {
  const float seen = seen_.as<float>()[slot];
  return seen > 0 ? mass_.as<float>()[slot] / seen : 0.f;
}

Status PruningKvCache::Retain(const std::vector<bool>& keep) {
  const int n = inner_->size();
  TF_RETURN_IF_ERROR(inner_->Retain(keep));
  float* mass = mass_.as<float>();
  float* seen = seen_.as<float>();
  int w = 0;
  for (int s = 0; s < n; ++s) {
    if (!keep[s]) continue;
    mass[w] = mass[s];
    seen[w] = seen[s];
    ++w;
  }
  return Status::Ok();
}

Result<int> PruningKvCache::Prune(int keep_slots) {
  const int n = inner_->size();
  const int sinks = std::min(opt_.sinks, n);
  const int recent = std::min(opt_.recent, n - sinks);
  keep_slots = std::max(keep_slots, sinks + recent);
  if (keep_slots >= n) return 0;
  std::vector<bool> keep(n, false);
  for (int s = 0; s < sinks; ++s) keep[s] = true;
  for (int s = n - recent; s < n; ++s) keep[s] = true;
  std::vector<int> middle(n - sinks - recent);
  std::iota(middle.begin(), middle.end(), sinks);
  const int take = keep_slots - sinks - recent;
  // Highest scores first; ties keep the newer slot.
  std::partial_sort(middle.begin(), middle.begin() + take, middle.end(), [&](int a, int b) {
    if (opt_.recency_only) return a > b;
    const float sa = score(a), sb = score(b);
    return sa != sb ? sa > sb : a > b;
  });
  for (int i = 0; i < take; ++i) keep[middle[i]] = true;
  TF_RETURN_IF_ERROR(Retain(keep));
  const int dropped = n - inner_->size();
  pruned_total_ += dropped;
  return dropped;
}

Result<int> PruningKvCache::MakeRoom(int n) {
  const int cap = inner_->config().capacity;
  if (opt_.auto_keep <= 0.f || inner_->size() + n <= cap) return 0;
  if (n > cap - opt_.sinks - opt_.recent) {
    return OutOfRange("KV pruning cannot make room for " + std::to_string(n) + " tokens: capacity " +
                      std::to_string(cap) + " minus " + std::to_string(opt_.sinks) + " sinks and " +
                      std::to_string(opt_.recent) + " protected recent slots is smaller; use smaller batches or a "
                      "larger context");
  }
  const int target = std::min(static_cast<int>(opt_.auto_keep * cap), cap - n);
  return Prune(target);
}

}  // namespace tabfit
