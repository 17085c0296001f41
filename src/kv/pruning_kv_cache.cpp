// Attention-score pruning around any KV cache.
#include "kv/pruning_kv_cache.h"

#include <algorithm>
#include <cstring>
#include <cmath>
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

Status CheckPruneOptions(const KvPruneOptions& o) {
  if (o.sinks < 0 || o.recent < 0) return InvalidArgument("KV pruning: sinks and recent must be >= 0");
  if (!(o.auto_keep >= 0.f && o.auto_keep < 1.f)) {
    return InvalidArgument("KV pruning: the kept fraction must be in (0, 1) (0 disables automatic pruning); got " +
                           std::to_string(o.auto_keep));
  }
  if (o.strategy != "threshold" && o.strategy != "budget" && o.strategy != "window") {
    return InvalidArgument("KV pruning strategy must be threshold, budget or window (got '" + o.strategy + "')");
  }
  if (!(o.threshold >= 0.f && o.threshold <= 1.f)) {
    return InvalidArgument("KV pruning threshold must be in [0, 1] (got " + std::to_string(o.threshold) + ")");
  }
  if (!(o.max_tokens_to_drop > 0.f && o.max_tokens_to_drop <= 1.f)) {
    return InvalidArgument("KV pruning max_tokens_to_drop must be in (0, 1] (a fraction of the tokens held; got " +
                           std::to_string(o.max_tokens_to_drop) + ")");
  }
  if (!(o.decay > 0.f && o.decay <= 1.f)) {
    return InvalidArgument("KV pruning decay must be in (0, 1] (got " + std::to_string(o.decay) + ")");
  }
  if (o.min_tokens_to_keep < 0 || o.budget < 0 || o.auto_max_tokens < 0 || o.auto_interval < 0) {
    return InvalidArgument("KV pruning: min_tokens_to_keep, budget, max_tokens and pruning_interval must be >= 0");
  }
  return Status::Ok();
}

Status PruningKvCache::Allocate(MemoryLedger& ledger, int capacity) {
  const KvCacheConfig& c = inner_->config();
  const size_t cap = static_cast<size_t>(capacity);
  const size_t rows = static_cast<size_t>(c.n_layers) * c.n_kv_heads;
  const std::string comp = c.component + ".scores";
  TF_ASSIGN_OR_RETURN(Buffer acc, ledger.Allocate(comp, sizeof(float) * cap * rows));
  TF_ASSIGN_OR_RETURN(Buffer mass, ledger.Allocate(comp, sizeof(float) * cap));
  TF_ASSIGN_OR_RETURN(Buffer seen, ledger.Allocate(comp, sizeof(float) * cap));
  Buffer hits_acc, hits;
  if (opt_.frequency_aware) {
    TF_ASSIGN_OR_RETURN(hits_acc, ledger.Allocate(comp, sizeof(float) * cap * rows));
    TF_ASSIGN_OR_RETURN(hits, ledger.Allocate(comp, sizeof(float) * cap));
    std::memset(hits_acc.data(), 0, hits_acc.size());
    std::memset(hits.data(), 0, hits.size());
  }
  std::memset(acc.data(), 0, acc.size());
  std::memset(mass.data(), 0, mass.size());
  std::memset(seen.data(), 0, seen.size());
  // Carry the scores of the slots held over.
  const int n = inner_->size();
  if (!mass_.empty()) {
    std::memcpy(mass.data(), mass_.data(), sizeof(float) * n);
    std::memcpy(seen.data(), seen_.data(), sizeof(float) * n);
    if (!hits_.empty() && !hits.empty()) std::memcpy(hits.data(), hits_.data(), sizeof(float) * n);
  }
  acc_ = std::move(acc);
  mass_ = std::move(mass);
  seen_ = std::move(seen);
  hits_acc_ = std::move(hits_acc);
  hits_ = std::move(hits);
  alloc_capacity_ = capacity;
  own_bytes_ = acc_.size() + mass_.size() + seen_.size() + hits_acc_.size() + hits_.size();
  return Status::Ok();
}

Result<std::unique_ptr<PruningKvCache>> PruningKvCache::Create(std::unique_ptr<KvCache> inner,
                                                               const KvPruneOptions& options, MemoryLedger& ledger) {
  if (!inner) return InvalidArgument("PruningKvCache: no inner cache");
  TF_RETURN_IF_ERROR(CheckPruneOptions(options));
  std::unique_ptr<PruningKvCache> p(new PruningKvCache());
  p->inner_ = std::move(inner);
  p->opt_ = options;
  p->ledger_ = &ledger;
  TF_RETURN_IF_ERROR(p->Allocate(ledger, p->inner_->config().capacity));
  return p;
}

Status PruningKvCache::Configure(const KvPruneOptions& options) {
  TF_RETURN_IF_ERROR(CheckPruneOptions(options));
  const bool realloc = options.frequency_aware != opt_.frequency_aware;
  opt_ = options;
  if (realloc) TF_RETURN_IF_ERROR(Allocate(*ledger_, alloc_capacity_));
  return Status::Ok();
}

Status PruningKvCache::EnableAutoPruning(int max_tokens, int pruning_interval) {
  KvPruneOptions o = opt_;
  o.auto_max_tokens = max_tokens;
  o.auto_interval = pruning_interval;
  if (max_tokens < 0 || pruning_interval < 0) {
    return InvalidArgument("enable_auto_pruning: max_tokens and pruning_interval must be >= 0 (0 turns it off)");
  }
  return Configure(o);
}

Status PruningKvCache::SetCapacity(int capacity) {
  TF_RETURN_IF_ERROR(inner_->SetCapacity(capacity));
  if (capacity > alloc_capacity_) return Allocate(*ledger_, capacity);
  return Status::Ok();
}

Status PruningKvCache::Write(int layer, int n, const int32_t* pos, const float* k, const float* v) {
  return inner_->Write(layer, n, pos, k, v);
}

void PruningKvCache::Attend(int layer, int kv_head, const float* q, float scale, int n_visible, float* scores,
                            float* out) const {
  inner_->Attend(layer, kv_head, q, scale, n_visible, scores, out);
  Accumulate(layer, kv_head, 1, n_visible, scores);
}

void PruningKvCache::AttendGroup(int layer, int kv_head, const float* q, int n_q, float scale, int n_visible,
                                 float* scores, float* out) const {
  inner_->AttendGroup(layer, kv_head, q, n_q, scale, n_visible, scores, out);
  Accumulate(layer, kv_head, n_q, n_visible, scores);
}

void PruningKvCache::Accumulate(int layer, int kv_head, int n_q, int n_visible, const float* scores) const {
  const KvCacheConfig& c = inner_->config();
  const size_t off = (static_cast<size_t>(layer) * c.n_kv_heads + kv_head) * static_cast<size_t>(alloc_capacity_);
  float* acc = const_cast<Buffer&>(acc_).as<float>() + off;
  float* hits = opt_.frequency_aware ? const_cast<Buffer&>(hits_acc_).as<float>() + off : nullptr;
  const float heavy = 2.f / static_cast<float>(n_visible);
  for (int i = 0; i < n_q; ++i) {
    const float* p = scores + static_cast<size_t>(i) * n_visible;
    for (int s = 0; s < n_visible; ++s) {
      AtomicAdd(acc + s, p[s]);
      if (hits && p[s] >= heavy) AtomicAdd(hits + s, 1.f);
    }
  }
}

Status PruningKvCache::Commit(int n, const int32_t* pos) {
  const int n_past = inner_->size();
  TF_RETURN_IF_ERROR(inner_->Commit(n, pos));
  const KvCacheConfig& c = inner_->config();
  const int total = n_past + n;
  const size_t cap = static_cast<size_t>(alloc_capacity_);
  float* acc = acc_.as<float>();
  float* mass = mass_.as<float>();
  float* seen = seen_.as<float>();
  float* hits_acc = hits_acc_.empty() ? nullptr : hits_acc_.as<float>();
  float* hits = hits_.empty() ? nullptr : hits_.as<float>();
  for (int s = n_past; s < total; ++s) {
    mass[s] = seen[s] = 0.f;
    if (hits) hits[s] = 0.f;
  }
  // Only attention from queries beyond the protected recent window counts:
  // every token is heavily attended while it is local, which says nothing
  // about whether it is needed once it is old. `far` = slots at least
  // opt_.recent behind this step's first query.
  const int far = std::max(0, n_past + 1 - opt_.recent);
  if (opt_.decay < 1.f) {
    const float d = std::pow(opt_.decay, static_cast<float>(n));
    for (int s = 0; s < far; ++s) {
      mass[s] *= d;
      seen[s] *= d;
      if (hits) hits[s] *= d;
    }
  }
  const int rows = c.n_layers * c.n_kv_heads;
  for (int r = 0; r < rows; ++r) {
    float* a = acc + r * cap;
    for (int s = 0; s < far; ++s) mass[s] += a[s];
    std::memset(a, 0, sizeof(float) * total);
    if (hits_acc && hits) {
      float* h = hits_acc + r * cap;
      for (int s = 0; s < far; ++s) hits[s] += h[s];
      std::memset(h, 0, sizeof(float) * total);
    }
  }
  // Each step's query rows, counted once per layer-head row, as the hits are.
  for (int s = 0; s < far; ++s) seen[s] += static_cast<float>(n);
  since_auto_ += n;
  return Status::Ok();
}

void PruningKvCache::Clear() {
  inner_->Clear();
  std::memset(acc_.data(), 0, acc_.size());
  if (!hits_acc_.empty()) std::memset(hits_acc_.data(), 0, hits_acc_.size());
  since_auto_ = 0;
}

float PruningKvCache::score(int slot) const {
  const float seen = seen_.as<float>()[slot];
  return seen > 0 ? mass_.as<float>()[slot] / seen : 0.f;
}

float PruningKvCache::rank_score(int slot) const {
  const float sc = score(slot);
  if (!opt_.frequency_aware || hits_.empty()) return sc;
  const KvCacheConfig& c = inner_->config();
  const float seen = seen_.as<float>()[slot] * static_cast<float>(c.n_layers * c.n_kv_heads);
  const float freq = seen > 0 ? std::min(1.f, hits_.as<float>()[slot] / seen) : 0.f;
  return sc * (0.5f + freq);
}

Status PruningKvCache::Retain(const std::vector<bool>& keep) {
  const int n = inner_->size();
  TF_RETURN_IF_ERROR(inner_->Retain(keep));
  float* mass = mass_.as<float>();
  float* seen = seen_.as<float>();
  float* hits = hits_.empty() ? nullptr : hits_.as<float>();
  int w = 0;
  for (int s = 0; s < n && s < static_cast<int>(keep.size()); ++s) {
    if (!keep[s]) continue;
    mass[w] = mass[s];
    seen[w] = seen[s];
    if (hits) hits[w] = hits[s];
    ++w;
  }
  return Status::Ok();
}

// Drops `drop` middle slots (never sinks or the recent window): the lowest
// ranked, or the oldest when oldest_first.
Result<KvPruneResult> PruningKvCache::DropLowest(int drop, bool oldest_first) {
  const int n = inner_->size();
  const int sinks = std::min(opt_.sinks, n);
  const int recent = std::min(opt_.recent, n - sinks);
  drop = std::min(drop, n - sinks - recent);
  if (drop <= 0) return KvPruneResult{};
  std::vector<int> middle(n - sinks - recent);
  std::iota(middle.begin(), middle.end(), sinks);
  if (!oldest_first) {
    // Lowest scores first; ties drop the older slot.
    std::vector<float> rs(n);
    for (int s : middle) rs[s] = rank_score(s);
    std::partial_sort(middle.begin(), middle.begin() + drop, middle.end(), [&](int a, int b) {
      return rs[a] != rs[b] ? rs[a] < rs[b] : a < b;
    });
  }
  std::vector<bool> keep(n, true);
  for (int i = 0; i < drop; ++i) keep[middle[i]] = false;
  const uint64_t before = bytes();
  TF_RETURN_IF_ERROR(Retain(keep));
  KvPruneResult r;
  r.tokens = n - inner_->size();
  const uint64_t after = bytes();
  r.bytes = before > after ? before - after : 0;
  pruned_total_ += r.tokens;
  return r;
}

Result<int> PruningKvCache::Prune(int keep_slots) {
  const int n = inner_->size();
  const int sinks = std::min(opt_.sinks, n);
  const int recent = std::min(opt_.recent, n - sinks);
  keep_slots = std::max(keep_slots, sinks + recent);
  if (keep_slots >= n) return 0;
  TF_ASSIGN_OR_RETURN(KvPruneResult r, DropLowest(n - keep_slots, opt_.recency_only || opt_.strategy == "window"));
  return r.tokens;
}

Result<KvPruneResult> PruningKvCache::PruneNow() {
  const int n = inner_->size();
  const int floor_keep = std::max(opt_.min_tokens_to_keep, std::min(n, opt_.sinks + opt_.recent));
  const int allowed = std::min(static_cast<int>(opt_.max_tokens_to_drop * n), n - floor_keep);
  if (allowed <= 0) return KvPruneResult{};
  if (opt_.strategy == "threshold") {
    const int sinks = std::min(opt_.sinks, n);
    const int recent = std::min(opt_.recent, n - sinks);
    double sum = 0;
    for (int s = sinks; s < n - recent; ++s) sum += rank_score(s);
    const int m = n - sinks - recent;
    if (m <= 0) return KvPruneResult{};
    const double cut = opt_.threshold * sum / m;
    int below = 0;
    for (int s = sinks; s < n - recent; ++s) below += rank_score(s) < cut ? 1 : 0;
    return DropLowest(std::min(allowed, below), false);
  }
  const int target = opt_.budget > 0 ? opt_.budget : n / 2;
  return DropLowest(std::min(allowed, n - target), opt_.strategy == "window" || opt_.recency_only);
}

Result<KvPruneResult> PruningKvCache::Truncate(int keep_recent) {
  if (keep_recent < 0) return InvalidArgument("KV truncate: keep_recent must be >= 0");
  const int n = inner_->size();
  const int sinks = std::min(opt_.sinks, n);
  const int drop = std::max(0, n - sinks - keep_recent);
  if (drop == 0) return KvPruneResult{};
  std::vector<bool> keep(n, true);
  for (int s = sinks; s < sinks + drop; ++s) keep[s] = false;
  const uint64_t before = bytes();
  TF_RETURN_IF_ERROR(Retain(keep));
  KvPruneResult r;
  r.tokens = drop;
  const uint64_t after = bytes();
  r.bytes = before > after ? before - after : 0;
  pruned_total_ += drop;
  return r;
}

Result<int> PruningKvCache::MakeRoom(int n) {
  int dropped = 0;
  if (opt_.auto_max_tokens > 0 && since_auto_ >= std::max(1, opt_.auto_interval) &&
      inner_->size() > opt_.auto_max_tokens) {
    since_auto_ = 0;
    TF_ASSIGN_OR_RETURN(dropped, Prune(opt_.auto_max_tokens));
  }
  const int cap = inner_->config().capacity;
  if (opt_.auto_keep <= 0.f || inner_->size() + n <= cap) return dropped;
  if (n > cap - opt_.sinks - opt_.recent) {
    return OutOfRange("KV pruning cannot make room for " + std::to_string(n) + " tokens: capacity " +
                      std::to_string(cap) + " minus " + std::to_string(opt_.sinks) + " sinks and " +
                      std::to_string(opt_.recent) + " protected recent slots is smaller; use smaller batches or a "
                      "larger context");
  }
  if (opt_.strategy == "threshold") {
    TF_ASSIGN_OR_RETURN(KvPruneResult r, PruneNow());
    dropped += r.tokens;
    if (inner_->size() + n <= cap) return dropped;
  }
  const int target = std::min(static_cast<int>(opt_.auto_keep * cap), cap - n);
  TF_ASSIGN_OR_RETURN(int more, Prune(target));
  return dropped + more;
}

}  // namespace tabfit
