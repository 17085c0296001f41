#include "loader/residency.h"

#include <algorithm>
#include <atomic>

namespace tabfit {

const char* ComponentStateName(ComponentState s) {
  switch (s) {
    case ComponentState::kPending: return "pending";
    case ComponentState::kLoading: return "loading";
    case ComponentState::kResident: return "resident";
    case ComponentState::kEvicted: return "evicted";
    case ComponentState::kStreamed: return "streamed";
    case ComponentState::kFailed: return "failed";
  }
  return "?";
}

struct Residency::Part {
  ComponentState state = ComponentState::kPending;
  bool pinned = true;
  bool is_layer = false;
  int stream_index = -1;  // in stream_order_ while it streams
  ComponentWeights w;     // pinned and resident
  int users = 0;
  uint64_t loads = 0, bytes_read = 0;
  uint64_t maps = 0;  // loads that mapped the source instead of reading it
  Status error;
};

// A ring slot: buffers (allocated on first use, for `plan`'s shape) holding one
// streamed layer at a time.
struct Residency::Slot {
  ComponentWeights w;
  int plan = -1;       // component whose plan the buffers were allocated for
  int component = -1;  // what it holds or is reading
  bool loading = false;
  bool ready = false;
  bool disabled = false;  // its buffers could not be allocated (no room): unused
  int users = 0;
  Status error;
};

Residency::Residency(const LlamaModel& model, const GgufFile& gguf, MemoryLedger& ledger,
                     const ResidencyOptions& options, LoadEventFn on_event)
    : model_(model), gguf_(gguf), ledger_(ledger), options_(options), on_event_(std::move(on_event)) {}

Residency::~Residency() {
  Cancel();
  // parts_ and slots_ free their buffers as they go.
}

Result<std::vector<int>> Residency::Resolve(const std::vector<std::string>& names) const {
  std::vector<int> out;
  auto add = [&](int c) {
    if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  };
  const int L = model_.hparams().n_layer;
  for (const std::string& n : names) {
    if (n == "all") {
      add(model_.embeddings_component());
      for (int il = 0; il < L; ++il) add(il);
      for (int c = L + 1; c < model_.n_components(); ++c) add(c);
    } else if (n == "layers") {
      for (int il = 0; il < L; ++il) add(il);
    } else if (n == "lm_head") {
      add(model_.lm_head_component());
    } else if (int c = model_.FindComponent(n); c >= 0) {
      add(c);
    } else {
      return InvalidArgument("unknown component '" + n + "'; this model has embeddings, layers.0 to layers." +
                             std::to_string(L - 1) + ", output_norm and lm_head (or 'layers', 'all')");
    }
  }
  return out;
}

Result<std::unique_ptr<Residency>> Residency::Create(const LlamaModel& model, const GgufFile& gguf,
                                                     MemoryLedger& ledger, const ResidencyOptions& options,
                                                     LoadEventFn on_event) {
  if (options.ring_slots < 1) return InvalidArgument("ring_slots must be at least 1");
  if (options.keep_n_layers_loaded < 0) return InvalidArgument("keep_n_layers_loaded must be >= 0");
  std::unique_ptr<Residency> r(new Residency(model, gguf, ledger, options, std::move(on_event)));
  const int L = model.hparams().n_layer;
  const int n = model.n_components();
  r->parts_.resize(n);
  for (int il = 0; il < L; ++il) r->parts_[il].is_layer = true;

  // Priority order: what was asked for, then every component in forward order.
  TF_ASSIGN_OR_RETURN(std::vector<int> prio, r->Resolve(options.priority_components));
  TF_ASSIGN_OR_RETURN(std::vector<int> all, r->Resolve({"all"}));
  for (int c : all) {
    if (std::find(prio.begin(), prio.end(), c) == prio.end()) prio.push_back(c);
  }
  r->priority_ = prio;

  // What fits: every byte the ledger holds now (KV cache, activations, tokenizer)
  // stays; the weights and the loader's scratch (two reads at a time) come on top.
  const uint64_t limit = options.memory_threshold ? options.memory_threshold : ledger.budget();
  const uint64_t used = ledger.current_bytes() + options.reserved_bytes;
  uint64_t weights = 0, scratch = 0, globals = 0, largest_layer = 0;
  for (int c = 0; c < n; ++c) {
    const ComponentPlan& p = model.component(c);
    weights += p.bytes;
    scratch = std::max(scratch, 2 * p.scratch_bytes);
    if (c < L) largest_layer = std::max(largest_layer, p.bytes);
    else globals += p.bytes;
  }
  const bool fits = !limit || used + weights + scratch <= limit;
  const bool capped = options.keep_n_layers_loaded > 0 && options.keep_n_layers_loaded < L;
  const bool stream = L > 0 && (!fits || capped || options.naive_streaming);
  if (stream && !options.source_rereadable) {
    return OutOfMemory(gguf.name() + ": the weights (" + FormatBytes(weights) + ") do not fit the memory limit " +
                       FormatBytes(limit) + " with the KV cache and activations (" + FormatBytes(used) +
                       "), and layers cannot stream from bytes lent only for the load; load from a file, or from a "
                       "reader kept open with unload_unused_layers, or raise the memory budget");
  }
  int ring = 0;
  std::vector<bool> pinned(L, true);
  if (stream) {
    if (!options.unload_unused_layers && !fits) {
      return OutOfMemory(gguf.name() + ": the weights need " + FormatBytes(weights) + " but " +
                         FormatBytes(limit > used ? limit - used : 0) + " of the " + FormatBytes(limit) +
                         " limit is left after the KV cache and activations (" + FormatBytes(used) +
                         "); allow layers to stream (unload_unused_layers), lower the weight precision or raise "
                         "the memory budget");
    }
    // Pin P layers spread evenly over the depth; the rest stream through `ring` slots.
    auto choose = [&](int P) {
      std::vector<bool> pin(L, false);
      for (int il = 0; il < L; ++il) pin[il] = (static_cast<int64_t>(il + 1) * P) / L > (static_cast<int64_t>(il) * P) / L;
      return pin;
    };
    int P = options.naive_streaming ? 0 : L - 1;
    if (capped) P = std::min(P, options.keep_n_layers_loaded - 1);
    // The most pinned layers with the ring asked for; when even no pinned layer
    // leaves room for it, fewer slots (down to one: no read-ahead).
    bool found = false;
    const int max_pinned = P;
    // Without a loader thread nothing reads ahead: one slot is all that is filled.
    const int ring_asked = options.naive_streaming || !options.background_loading ? 1 : options.ring_slots;
    for (int want_ring = ring_asked; want_ring >= 1 && !found; --want_ring) {
      for (P = max_pinned; P >= 0; --P) {
        const int m = L - P;
        ring = std::min(want_ring, m);
        if (capped) ring = std::max(1, std::min(ring, options.keep_n_layers_loaded - P));
        const std::vector<bool> pin = choose(P);
        uint64_t need = used + globals + scratch + static_cast<uint64_t>(ring) * largest_layer;
        for (int il = 0; il < L; ++il) need += pin[il] ? model.component(il).bytes : 0;
        if (!limit || need <= limit) {
          pinned = pin;
          found = true;
          break;
        }
      }
    }
    if (!found) {
      const uint64_t minimum = used + globals + scratch + largest_layer;
      return OutOfMemory(gguf.name() + ": the memory limit " + FormatBytes(limit) +
                         " is too small even to stream the layers: the KV cache, activations and tokenizer take " +
                         FormatBytes(used) + ", the embeddings and output head " + FormatBytes(globals) +
                         ", the largest layer (layers.N) " + FormatBytes(largest_layer) +
                         (scratch ? ", the loader's scratch " + FormatBytes(scratch) : std::string()) +
                         "; the minimum is " + FormatBytes(minimum) + " (" + FormatBytes(minimum + largest_layer) +
                         " to read the next layer while one computes). Raise the memory budget, shorten the "
                         "context or quantize the KV cache");
    }
  }
  for (int il = 0; il < L; ++il) {
    Part& p = r->parts_[il];
    p.pinned = pinned[il];
    if (!p.pinned) {
      p.state = ComponentState::kStreamed;
      p.stream_index = static_cast<int>(r->stream_order_.size());
      r->stream_order_.push_back(il);
    }
  }
  r->n_streamed_ = static_cast<int>(r->stream_order_.size());
  // Slots exist even when nothing streams yet: an evicted layer streams later.
  r->slots_.resize(stream ? ring : (options.naive_streaming ? 1 : options.ring_slots));
  for (int c = 0; c < n; ++c) {
    if (r->parts_[c].pinned) r->pinned_total_ += model.component(c).source_bytes;
  }
  return r;
}

bool Residency::StreamsLocked(int c) const { return !parts_[c].pinned; }

int Residency::SlotOfLocked(int c) const {
  for (size_t s = 0; s < slots_.size(); ++s) {
    if (slots_[s].component == c) return static_cast<int>(s);
  }
  return -1;
}

int Residency::FreeSlotLocked(int for_component) const {
  // A slot nobody reads and that holds none of the layers needed next.
  const int m = static_cast<int>(stream_order_.size());
  const int R = static_cast<int>(slots_.size());
  auto needed_soon = [&](int c) {
    if (c < 0 || m == 0) return false;
    const int at = std::max(0, cursor_);
    for (int k = 0; k < std::min(R, m); ++k) {
      if (stream_order_[(at + k) % m] == c) return true;
    }
    return false;
  };
  int any = -1;
  for (int s = 0; s < R; ++s) {
    const Slot& sl = slots_[s];
    if (sl.users > 0 || sl.loading || sl.disabled) continue;
    if (sl.component < 0) return s;
    if (!needed_soon(sl.component)) return s;
    if (any < 0) any = s;
  }
  // The forward pass wants a layer now: any idle slot will do.
  return wanted_ == for_component ? any : -1;
}

bool Residency::NextJob(int* component, int* slot) {
  auto pinned_job = [&](int c) {
    Part& p = parts_[c];
    if (!p.pinned || p.state != ComponentState::kPending) return false;
    p.state = ComponentState::kLoading;
    *component = c;
    *slot = -1;
    return true;
  };
  auto stream_job = [&](int c) {
    if (SlotOfLocked(c) >= 0) return false;
    const int s = FreeSlotLocked(c);
    if (s < 0) return false;
    Slot& sl = slots_[s];
    sl.component = c;
    sl.loading = true;
    sl.ready = false;
    sl.error = Status::Ok();
    *component = c;
    *slot = s;
    return true;
  };
  if (wanted_ >= 0) {
    if (StreamsLocked(wanted_) ? stream_job(wanted_) : pinned_job(wanted_)) return true;
  }
  const int m = static_cast<int>(stream_order_.size());
  if (m > 0 && !options_.naive_streaming) {
    const int at = cursor_ < 0 ? 0 : cursor_ + 1;
    for (int k = 0; k < std::min<int>(static_cast<int>(slots_.size()) - (cursor_ < 0 ? 0 : 1), m); ++k) {
      const int c = stream_order_[(at + k) % m];
      if (SlotOfLocked(c) >= 0) continue;
      if (stream_job(c)) return true;
      break;
    }
  }
  if (options_.background_loading) {
    for (int c : priority_) {
      if (pinned_job(c)) return true;
    }
  }
  return false;
}

bool Residency::Emit(const LoadEvent& e) {
  if (!on_event_) return true;
  if (!on_event_(e)) {
    {
      std::lock_guard<std::mutex> lk(mu_);  // as in Cancel: no lost wake-up
      stop_.store(true);
    }
    cv_.notify_all();
    return false;
  }
  return true;
}

Status Residency::LoadPinned(int c, bool strict) {
  const ComponentPlan& plan = model_.component(c);
  uint64_t base;
  {
    std::lock_guard<std::mutex> lk(mu_);
    parts_[c].state = ComponentState::kLoading;
    base = pinned_loaded_;
  }
  Emit({base, pinned_total_, plan.name, ComponentState::kLoading});
  uint64_t read = 0;
  Status st;
  Result<ComponentWeights> w = model_.AllocateComponent(c, ledger_, options_.charge_prefix + plan.name);
  if (!w.ok()) {
    st = w.status();
  } else {
    st = model_.ReadComponent(c, gguf_, ledger_, &*w, [&](uint64_t n) {
      read += n;
      if (stop_.load()) return false;
      return Emit({base + read, pinned_total_, plan.name, ComponentState::kLoading});
    });
  }
  uint64_t loaded;
  bool streamed = false;
  {
    std::lock_guard<std::mutex> lk(mu_);
    Part& p = parts_[c];
    p.bytes_read += read;
    if (st.ok()) {
      p.w = std::move(*w);
      p.state = ComponentState::kResident;
      p.loads++;
      pinned_loaded_ += plan.source_bytes;
    } else if (st.code() == StatusCode::kOutOfMemory && p.is_layer && options_.unload_unused_layers && !strict) {
      // The room the plan counted on went elsewhere (a draft, a longer context):
      // this layer streams instead of failing the model.
      MakeStreamedLocked(c, ComponentState::kStreamed);
      st = Status::Ok();
      streamed = true;
    } else {
      // Cancelled loads go back to pending (read later on demand); others fail.
      p.state = st.code() == StatusCode::kCancelled ? ComponentState::kPending : ComponentState::kFailed;
      p.error = st;
    }
    if (wanted_ == c) wanted_ = -1;
    loaded = pinned_loaded_;
  }
  cv_.notify_all();
  if (st.ok()) Emit({loaded, pinned_total_, plan.name, streamed ? ComponentState::kStreamed : ComponentState::kResident});
  return st;
}

Status Residency::LoadIntoSlot(int c, int s) {
  Slot& sl = slots_[s];  // marked loading: only this thread touches its buffers
  Status st;
  uint64_t read = 0;
  bool mapped = false;
  if (options_.map_streamed_layers && model_.component(c).direct()) {
    sl.w = ComponentWeights();  // the previous mapping or buffers go first
    sl.plan = -1;
    Result<ComponentWeights> w = model_.MapComponent(c, gguf_, ledger_, options_.charge_prefix + "stream_buffers");
    if (w.ok()) {
      sl.w = std::move(*w);
      read = model_.component(c).source_bytes;
      mapped = true;
    } else if (w.status().code() != StatusCode::kUnsupported) {
      st = w.status();
      mapped = true;  // failed: do not read it instead
    }
  }
  if (!mapped && (sl.plan < 0 || !model_.component(sl.plan).SameShape(model_.component(c), ledger_.max_buffer_bytes()))) {
    sl.w = ComponentWeights();  // free the old shape first
    sl.plan = -1;
    Result<ComponentWeights> w = model_.AllocateComponent(c, ledger_, options_.charge_prefix + "stream_buffers");
    if (w.ok()) {
      sl.w = std::move(*w);
      sl.plan = c;
    } else {
      st = w.status();
    }
  }
  if (st.ok() && !mapped) {
    st = model_.ReadComponent(c, gguf_, ledger_, &sl.w, [&](uint64_t n) {
      read += n;
      return !stop_.load();
    });
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    Part& p = parts_[c];
    p.bytes_read += read;
    streamed_read_ += read;
    sl.loading = false;
    if (st.ok()) {
      sl.ready = true;
      p.loads++;
      if (mapped) p.maps++;
    } else if (sl.plan < 0 && wanted_ != c && s > 0) {
      // A prefetch found no room for another slot: stream through fewer.
      sl.disabled = true;
      sl.component = -1;
    } else {
      sl.error = st;
    }
    if (wanted_ == c) wanted_ = -1;
  }
  cv_.notify_all();
  return st;
}

void Residency::LoaderLoop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_.load()) {
    int c = -1, s = -1;
    if (!NextJob(&c, &s)) {
      cv_.wait(lk);
      continue;
    }
    lk.unlock();
    if (s < 0) (void)LoadPinned(c);
    else (void)LoadIntoSlot(c, s);
    lk.lock();
  }
}

Status Residency::Start() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (started_) return Status::Ok();
    started_ = true;
  }
  std::vector<int> first;
  for (const std::string& n : options_.priority_components) {
    TF_ASSIGN_OR_RETURN(std::vector<int> cs, Resolve({n}));
    for (int c : cs) {
      if (parts_[c].pinned && std::find(first.begin(), first.end(), c) == first.end()) first.push_back(c);
    }
  }
  if (!options_.background_loading) {
    for (int c : priority_) {
      if (!parts_[c].pinned) continue;
      if (stop_.load()) return Cancelled("loading " + gguf_.name() + " was cancelled");
      TF_RETURN_IF_ERROR(LoadPinned(c));
    }
    return Status::Ok();
  }
  loader_ = std::thread([this] { LoaderLoop(); });
  std::unique_lock<std::mutex> lk(mu_);
  for (int c : first) {
    cv_.wait(lk, [&] {
      const ComponentState st = parts_[c].state;
      return stop_.load() || st == ComponentState::kResident || st == ComponentState::kFailed;
    });
    if (parts_[c].state == ComponentState::kFailed) return parts_[c].error;
    if (parts_[c].state != ComponentState::kResident) {
      return Cancelled("loading " + gguf_.name() + " was cancelled at " + model_.component(c).name);
    }
  }
  return Status::Ok();
}

Status Residency::WaitUntilLoaded() {
  for (int c : priority_) {
    std::unique_lock<std::mutex> lk(mu_);
    if (!parts_[c].pinned) continue;
    if (loader_.joinable() && !stop_.load()) {
      cv_.wait(lk, [&] {
        const ComponentState st = parts_[c].state;
        return stop_.load() || !parts_[c].pinned || st == ComponentState::kResident ||
               st == ComponentState::kFailed;
      });
    }
    if (!parts_[c].pinned || parts_[c].state == ComponentState::kResident) continue;
    if (parts_[c].state == ComponentState::kFailed) return parts_[c].error;
    lk.unlock();
    TF_RETURN_IF_ERROR(LoadPinned(c));  // no loader thread (any more): read it here
  }
  return Status::Ok();
}

void Residency::Cancel() {
  {
    // Under mu_: the loader checks stop_ and then waits on cv_ with mu_ held, so a
    // store + notify outside it could fall between the two and be lost (a hang in
    // join, seen once in http_engine_test).
    std::lock_guard<std::mutex> lk(mu_);
    stop_.store(true);
  }
  cv_.notify_all();
  if (loader_.joinable()) loader_.join();
  std::lock_guard<std::mutex> lk(mu_);
  if (wanted_ >= 0) wanted_ = -1;
}

Result<const ComponentWeights*> Residency::Acquire(int c) {
  if (c < 0 || c >= static_cast<int>(parts_.size())) return InvalidArgument("no component " + std::to_string(c));
  std::unique_lock<std::mutex> lk(mu_);
  Part& p = parts_[c];
  auto threaded = [&] { return loader_.joinable() && !stop_.load(); };
  bool retried = false;
  for (;;) {
    if (!StreamsLocked(c)) {
      if (p.state == ComponentState::kResident) {
        p.users++;
        return &p.w;
      }
      if (p.state == ComponentState::kFailed) {
        // The Acquire that needs a failed component retries its read once (a
        // background failure nobody waited for, or a transient one); a second
        // failure is this call's error.
        p.state = ComponentState::kPending;  // the next Acquire reads it again
        if (retried) return p.error;
        retried = true;
        continue;
      }
      if (p.state == ComponentState::kPending && !threaded()) {
        p.state = ComponentState::kLoading;
        lk.unlock();
        Status s = LoadPinned(c);
        lk.lock();
        if (!s.ok()) {
          if (!StreamsLocked(c)) p.state = ComponentState::kPending;
          return s;
        }
        continue;
      }
      wanted_ = c;
      cv_.notify_all();
      cv_.wait(lk);
      continue;
    }
    // A streamed layer.
    if (cursor_ != p.stream_index) {
      cursor_ = p.stream_index;
      cv_.notify_all();  // the loader may read ahead past it now
    }
    int s = SlotOfLocked(c);
    if (s >= 0) {
      Slot& sl = slots_[s];
      if (sl.ready) {
        sl.users++;
        return &sl.w;
      }
      if (!sl.loading) {
        Status e = sl.error.ok() ? Internal("ring slot lost " + model_.component(c).name) : sl.error;
        sl.component = -1;
        sl.error = Status::Ok();
        return e;
      }
      cv_.wait(lk);
      continue;
    }
    if (!threaded()) {
      wanted_ = c;
      s = FreeSlotLocked(c);
      wanted_ = -1;
      if (s < 0) return Internal("no free ring slot for " + model_.component(c).name);
      Slot& sl = slots_[s];
      sl.component = c;
      sl.loading = true;
      sl.ready = false;
      sl.error = Status::Ok();
      lk.unlock();
      (void)LoadIntoSlot(c, s);
      lk.lock();
      continue;
    }
    wanted_ = c;
    cv_.notify_all();
    cv_.wait(lk);
  }
}

void Residency::MakeStreamedLocked(int c, ComponentState state) {
  Part& p = parts_[c];
  p.pinned = false;
  p.state = state;
  stream_order_.push_back(c);
  std::sort(stream_order_.begin(), stream_order_.end());
  for (size_t i = 0; i < stream_order_.size(); ++i) parts_[stream_order_[i]].stream_index = static_cast<int>(i);
  n_streamed_ = static_cast<int>(stream_order_.size());
  cursor_ = -1;
  pinned_total_ -= model_.component(c).source_bytes;
}

void Residency::Release(int c) {
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (c < 0 || c >= static_cast<int>(parts_.size())) return;
    if (StreamsLocked(c) || parts_[c].users == 0) {
      const int s = SlotOfLocked(c);
      if (s >= 0 && slots_[s].users > 0) slots_[s].users--;
    } else {
      parts_[c].users--;
    }
  }
  cv_.notify_all();
}

Status Residency::Pin(const std::vector<std::string>& names) {
  TF_ASSIGN_OR_RETURN(std::vector<int> cs, Resolve(names));
  for (int c : cs) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      Part& p = parts_[c];
      if (p.pinned) continue;
      if (!ledger_.Fits(model_.component(c).bytes)) {
        return OutOfMemory("pinning " + model_.component(c).name + " needs " +
                           FormatBytes(model_.component(c).bytes) + " but the ledger has " +
                           FormatBytes(ledger_.budget() - std::min(ledger_.budget(), ledger_.current_bytes())) +
                           " free; evict other components or raise the memory budget");
      }
      p.pinned = true;
      p.state = ComponentState::kLoading;
      stream_order_.erase(std::remove(stream_order_.begin(), stream_order_.end(), c), stream_order_.end());
      for (size_t i = 0; i < stream_order_.size(); ++i) parts_[stream_order_[i]].stream_index = static_cast<int>(i);
      p.stream_index = -1;
      n_streamed_ = static_cast<int>(stream_order_.size());
      cursor_ = -1;
      pinned_total_ += model_.component(c).source_bytes;
    }
    Status s = LoadPinned(c, /*strict=*/true);
    if (!s.ok()) {
      std::lock_guard<std::mutex> lk(mu_);
      if (!StreamsLocked(c)) MakeStreamedLocked(c, ComponentState::kStreamed);
      return s;
    }
  }
  // Nothing streams any more: the ring's buffers go back to the ledger.
  std::vector<ComponentWeights> freed;
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (n_streamed_ == 0) {
      for (Slot& sl : slots_) {
        if (sl.users > 0 || sl.loading || sl.plan < 0) continue;
        freed.push_back(std::move(sl.w));
        sl.w = ComponentWeights();
        sl.plan = -1;
        sl.component = -1;
        sl.ready = false;
      }
    }
  }
  return Status::Ok();
}

Result<uint64_t> Residency::Evict(const std::vector<std::string>& names) {
  TF_ASSIGN_OR_RETURN(std::vector<int> cs, Resolve(names));
  uint64_t freed = 0;
  for (int c : cs) {
    if (!parts_[c].is_layer) {
      return InvalidArgument("cannot evict " + model_.component(c).name +
                             ": it is read by every step; only layers stream");
    }
  }
  if (!options_.source_rereadable) {
    return InvalidArgument("cannot unload " + model_.component(cs.empty() ? 0 : cs[0]).name + " of " + gguf_.name() +
                           ": the model was loaded from bytes that are only valid during the load, so an unloaded "
                           "layer could not be read again; load it from a file or a reader kept open "
                           "(unload_unused_layers) to unload layers");
  }
  for (int c : cs) {
    ComponentWeights gone;
    {
      std::unique_lock<std::mutex> lk(mu_);
      Part& p = parts_[c];
      cv_.wait(lk, [&] { return p.state != ComponentState::kLoading; });
      if (!p.pinned) continue;
      if (p.users > 0) {
        return InvalidArgument("cannot evict " + model_.component(c).name + " while a forward pass reads it");
      }
      if (p.state == ComponentState::kResident) freed += model_.component(c).bytes;
      gone = std::move(p.w);
      p.w = ComponentWeights();
      if (p.state == ComponentState::kResident) pinned_loaded_ -= model_.component(c).source_bytes;
      MakeStreamedLocked(c, ComponentState::kEvicted);
    }
    // `gone` frees its buffers here, outside the lock.
  }
  cv_.notify_all();
  return freed;
}

uint64_t Residency::EvictDownTo(uint64_t target_total) {
  uint64_t freed = 0;
  for (int il = model_.hparams().n_layer - 1; il >= 0 && ledger_.current_bytes() > target_total; --il) {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (!parts_[il].pinned || parts_[il].users > 0) continue;
    }
    auto r = Evict({model_.component(il).name});
    if (r.ok()) freed += *r;
  }
  return freed;
}

std::vector<ComponentInfo> Residency::Components() const {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<ComponentInfo> out;
  for (int c : priority_) {
    const Part& p = parts_[c];
    ComponentInfo i;
    i.name = model_.component(c).name;
    i.bytes = model_.component(c).bytes;
    i.source_bytes = model_.component(c).source_bytes;
    i.state = p.state;
    i.pinned = p.pinned;
    i.loads = p.loads;
    i.bytes_read = p.bytes_read;
    i.maps = p.maps;
    if (!p.pinned) {
      // A streamed (or evicted) layer is never "resident", even while a ring
      // slot holds it for the forward pass: its bytes are stream_buffers'.
      const int s = SlotOfLocked(c);
      const ComponentState out_state = p.state == ComponentState::kEvicted ? p.state : ComponentState::kStreamed;
      i.state = s >= 0 && slots_[s].loading ? ComponentState::kLoading : out_state;
    }
    out.push_back(std::move(i));
  }
  std::sort(out.begin(), out.end(), [&](const ComponentInfo& a, const ComponentInfo& b) {
    return model_.FindComponent(a.name) < model_.FindComponent(b.name);
  });
  return out;
}

int Residency::pinned_layers() const {
  std::lock_guard<std::mutex> lk(mu_);
  int k = 0;
  for (int il = 0; il < model_.hparams().n_layer; ++il) k += parts_[il].pinned;
  return k;
}

int Residency::streamed_layers() const { return model_.hparams().n_layer - pinned_layers(); }

uint64_t Residency::streamed_bytes_per_pass() const {
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t b = 0;
  for (int c : stream_order_) b += model_.component(c).source_bytes;
  return b;
}

uint64_t Residency::streamed_bytes_read() const {
  std::lock_guard<std::mutex> lk(mu_);
  return streamed_read_;
}

std::string Residency::Summary() const {
  const int L = model_.hparams().n_layer;
  const int pinned = pinned_layers();
  uint64_t pinned_bytes = 0;
  std::string globals;
  for (int c = 0; c < model_.n_components(); ++c) {
    std::lock_guard<std::mutex> lk(mu_);
    if (!parts_[c].pinned) continue;
    pinned_bytes += model_.component(c).bytes;
    if (c >= L) globals += (globals.empty() ? "" : ", ") + model_.component(c).name;
  }
  if (pinned == L) {
    return "weights: all " + std::to_string(L) + " layers + " + globals + " in memory (" + FormatBytes(pinned_bytes) +
           ")";
  }
  uint64_t slot_bytes = 0;
  for (int il = 0; il < L; ++il) slot_bytes = std::max<uint64_t>(slot_bytes, model_.component(il).bytes);
  std::string s = "weights: " + std::to_string(pinned) + " of " + std::to_string(L) + " layers + " + globals +
                  " pinned (" + FormatBytes(pinned_bytes) + "); " + std::to_string(L - pinned) +
                  " layers stream through " + std::to_string(slots_.size()) + " x " + FormatBytes(slot_bytes) +
                  " buffers" + (options_.naive_streaming ? " (naive: no prefetch)" : "") +
                  (options_.map_streamed_layers ? " (mapped, not copied, where the source allows)" : "") + ", " +
                  FormatBytes(streamed_bytes_per_pass()) + " read per forward pass";
  return s;
}

}  // namespace tabfit
