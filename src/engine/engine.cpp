#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/thread_pool.h"
#include "kv/kv_factory.h"
#include "engine/generation.h"
#include "engine/profile.h"
#include "loader/residency.h"
#include "model/gguf/gguf.h"
#include "loader/http_source.h"
#include "model/package/package.h"
#include "model/llama/kv_cache.h"
#include "model/llama/llama_model.h"
#include "model/tokenizer/tokenizer.h"
#include "quant/kernels.h"

namespace tabfit {

struct Engine::State {
  ForwardScratch scratch;
  bool scratch_all_logits = false;
  int last_n_logits = 0;
};

// The "draft" group: a smaller model with the same vocabulary, its own
// residency (all pinned), KV cache and scratch, charged to "draft.*".
struct Engine::Draft {
  std::unique_ptr<GgufFile> gguf;
  std::unique_ptr<LlamaModel> model;
  std::unique_ptr<Residency> residency;
  std::unique_ptr<KvCache> kv;
  ForwardScratch scratch;
  ~Draft() {
    if (residency) residency->Cancel();
    scratch = ForwardScratch();
    kv.reset();
    residency.reset();
    model.reset();
  }
};

namespace {



KvCacheOptions KvOptionsFrom(const EngineOptions& o) {
  KvCacheOptions k;
  k.recent_window = o.kv_recent;
  k.lowbit = o.kv_lowbit;
  k.prune = o.kv_prune_config;
  k.prune.auto_keep = o.kv_prune;
  k.prune.sinks = o.kv_sinks;
  k.prune.recent = o.kv_keep_recent;
  k.pruning = o.kv_pruning;
  return k;
}

Result<std::optional<TensorType>> ParseWeightType(const std::string& name) {
  if (name.empty()) return std::optional<TensorType>();
  std::string n;
  for (char c : name) n += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  static const std::pair<const char*, TensorType> kTypes[] = {
      {"f32", TensorType::kF32},     {"f16", TensorType::kF16},     {"bf16", TensorType::kBF16},
      {"q8_0", TensorType::kQ8_0},   {"q4_0", TensorType::kQ4_0},   {"tf_q8", TensorType::kTF_Q8},
      {"tf_q4", TensorType::kTF_Q4}, {"tf_q3", TensorType::kTF_Q3}, {"tf_q2", TensorType::kTF_Q2},
  };
  for (auto& [s, t] : kTypes) {
    if (n == s) {
      if (!IsSupported(t)) return Unsupported("weight type '" + name + "' has no kernels in this build");
      return std::optional<TensorType>(t);
    }
  }
  return InvalidArgument("unknown weight type '" + name + "'; use f32, f16, bf16, q8_0, q4_0, tf_q8, tf_q4, tf_q3 or tf_q2");
}

// Bytes the weights take once loaded as `wtype` (nullopt keeps the file's types),
// counted from the tensor table with the same rule LlamaModel::Load applies.
uint64_t PlannedWeightBytes(const GgufFile& g, std::optional<TensorType> wtype) {
  uint64_t sum = 0;
  for (const auto& t : g.tensors()) {
    if (wtype && t.ne.size() == 2 && IsSupported(*wtype) && RowBytes(*wtype, t.ne[0]) != 0) {
      sum += RowBytes(*wtype, t.ne[0]) * static_cast<uint64_t>(t.ne[1]);
    } else {
      sum += t.nbytes;
    }
  }
  return sum;
}



}  // namespace

Engine::~Engine() {
  Unload();
  if (options_.ledger_hook) options_.ledger_hook(nullptr);
}

void Engine::Unload() {
  // Stop the loader first (no thread outlives this), then free in dependency
  // order: the draft, scratch and cache, the weights, the model's plan, the file.
  if (residency_) residency_->Cancel();
  draft_.reset();
  state_.reset();
  kv_.reset();
  residency_.reset();
  model_.reset();
  gguf_.reset();
  pool_.reset();
  tokenizer_charge_.Reset();
}

Result<std::unique_ptr<Engine>> Engine::LoadFile(const std::string& path, const EngineOptions& options,
                                                 LoadProgressFn progress) {
  // A GGUF file or a tabfit package directory (a chunked GGUF + manifest).
  TF_ASSIGN_OR_RETURN(auto source, OpenAnySource(path));
  if (options.groups.empty() && IsPackageDir(path)) {
    TF_ASSIGN_OR_RETURN(PackageGroups groups, ReadPackageGroups(path));
    if (!groups.empty()) {
      EngineOptions with_groups = options;
      with_groups.groups = std::move(groups);
      return Load(std::move(source), with_groups, std::move(progress));
    }
  }
  return Load(std::move(source), options, std::move(progress));
}

Result<std::unique_ptr<Engine>> Engine::Load(std::unique_ptr<ByteSource> source, const EngineOptions& options,
                                             LoadProgressFn progress) {
  std::unique_ptr<Engine> e(new Engine());
  e->options_ = options;
  if (e->options_.threads <= 0) e->options_.threads = std::max(1u, std::thread::hardware_concurrency());
  e->ledger_.set_budget(options.budget_bytes);
  e->ledger_.set_max_buffer_bytes(options.max_buffer_bytes);
  if (options.ledger_hook) options.ledger_hook(&e->ledger_);
  TF_ASSIGN_OR_RETURN(std::optional<TensorType> wtype, ParseWeightType(options.weight_type));

  TF_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Parse(std::move(source)));
  TF_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromGguf(gguf));
  e->tokenizer_ = std::make_unique<Tokenizer>(std::move(tok));
  // Its tables live in std containers: charge what they hold so the ledger covers them too.
  TF_ASSIGN_OR_RETURN(e->tokenizer_charge_, e->ledger_.ChargeExternal("tokenizer", e->tokenizer_->MemoryBytes()));

  TF_ASSIGN_OR_RETURN(LlamaHParams hp0, ReadLlamaHParams(gguf));
  if (options.profile) {
    const BrowserProfile& prof = *options.profile;
    // The profile's budget is the ledger's unless the caller set one.
    if (!options.budget_bytes && prof.memory_budget_bytes) {
      e->ledger_.set_budget(prof.memory_budget_bytes);
      e->options_.budget_bytes = prof.memory_budget_bytes;
    }
    int ctx = options.n_ctx > 0 ? options.n_ctx : std::min(hp0.n_ctx_train, 4096);
    if (prof.max_context > 0) ctx = std::min(ctx, prof.max_context);
    e->options_.n_ctx = ctx;
    KvCacheConfig pkc{.n_layers = hp0.n_layer, .n_kv_heads = hp0.n_head_kv, .head_dim = hp0.head_dim,
                      .capacity = ctx, .type = options.kv_type};
    PlanRequest plan;
    plan.kv_bytes = KvCacheBytes(pkc, KvOptionsFrom(options));
    plan.activation_bytes = static_cast<uint64_t>(options.n_batch) * 4 *
                                (3ull * hp0.n_embd + 2ull * hp0.q_dim() + 2ull * hp0.kv_dim() + 2ull * hp0.n_ff) +
                            4ull * hp0.n_vocab + 4ull * e->options_.threads * ctx;
    plan.n_params = hp0.ParameterCount(gguf.FindTensor("output.weight") != nullptr);
    plan.n_ctx = ctx;
    plan.weight_bytes = PlannedWeightBytes(gguf, wtype);
    plan.weight_precision = options.weight_type;
    std::string advice;
    Status fit = CheckPlan(prof, plan, &advice);
    if (!fit.ok() && options.adapt_precision) {
      for (const char* cand : {"q8_0", "tf_q4", "q4_0", "tf_q3", "tf_q2"}) {
        auto t = ParseWeightType(cand);
        if (!t.ok() || !*t) continue;
        PlanRequest p2 = plan;
        p2.weight_bytes = PlannedWeightBytes(gguf, *t);
        p2.weight_precision = cand;
        if (p2.weight_bytes >= plan.weight_bytes) continue;
        std::string adv2;
        if (CheckPlan(prof, p2, &adv2).ok()) {
          e->load_report_ += "profile " + prof.name + ": the model does not fit at its own precision; adapted "
                             "weights to " + std::string(cand) + " (" + adv2 + ")\n";
          wtype = *t;
          e->options_.weight_type = cand;
          fit = Status::Ok();
          break;
        }
      }
    }
    if (!fit.ok() && options.residency.unload_unused_layers && !options.adapt_precision) {
      // Streaming the layers that do not fit keeps the model exact; the
      // residency plan below decides (and fails if even that cannot fit).
      e->load_report_ += "profile " + prof.name + ": the model does not fit at its own precision (" +
                         fit.message() + "); layers that do not fit will stream (or adapt the precision: --adapt)\n";
      fit = Status::Ok();
    }
    if (!fit.ok()) {
      return Status(fit.code(), gguf.source().name() + ": " + fit.message() +
                                    (options.adapt_precision ? "" : " (or allow adapting the precision: --adapt)"));
    }
    if (e->load_report_.empty()) e->load_report_ = "profile " + prof.name + ": plan fits (" + advice + ")\n";
  }

  ModelLoadOptions mo;
  mo.weight_type = wtype;
  mo.type_for_tensor = options.type_for_tensor;
  mo.runtime_layouts = options.runtime_layouts;
  e->gguf_ = std::make_unique<GgufFile>(std::move(gguf));
  TF_ASSIGN_OR_RETURN(e->model_, LlamaModel::Plan(*e->gguf_, mo, e->ledger_.max_buffer_bytes()));
  const LlamaHParams& hp = e->model_->hparams();
  if (e->tokenizer_->n_vocab() != hp.n_vocab) {
    return CorruptData(e->gguf_->name() + ": tokenizer has " + std::to_string(e->tokenizer_->n_vocab()) +
                       " tokens but the model's vocabulary is " + std::to_string(hp.n_vocab));
  }
  int n_ctx = e->options_.n_ctx > 0 ? e->options_.n_ctx : std::min(hp.n_ctx_train, 4096);
  e->options_.n_ctx = n_ctx;
  e->options_.n_batch = std::clamp(options.n_batch, 1, n_ctx);

  KvCacheConfig kc;
  kc.n_layers = hp.n_layer;
  kc.n_kv_heads = hp.n_head_kv;
  kc.head_dim = hp.head_dim;
  kc.capacity = n_ctx;
  kc.type = options.kv_type;
  KvCacheOptions ko = KvOptionsFrom(options);
  if (ko.prune.auto_keep > 0.f) {
    // The protected recent window fits in what pruning keeps; prompts are fed
    // in batches that pruning can always make room for.
    const int kept = static_cast<int>(ko.prune.auto_keep * n_ctx);
    if (ko.prune.recent <= 0) ko.prune.recent = kept * 3 / 4;
    ko.prune.recent = std::min(ko.prune.recent, std::max(0, kept - ko.prune.sinks));
    const int room = n_ctx - ko.prune.sinks - ko.prune.recent;
    if (room < 1) {
      return InvalidArgument("KV pruning: " + std::to_string(ko.prune.sinks) + " sink tokens leave no room in a " +
                             std::to_string(n_ctx) + "-token context; use fewer sinks or a larger context");
    }
    e->options_.n_batch = std::min(e->options_.n_batch, room);
  } else if (ko.pruning && ko.prune.recent <= 0) {
    ko.prune.recent = std::min(64, n_ctx / 4);  // on-demand pruning keeps a recent window too
  }
  // The KV cache and activations first: what is left is the weights' room
  // (the residency plan pins what fits and streams the rest).
  TF_ASSIGN_OR_RETURN(e->kv_, MakeKvCache(kc, ko, e->ledger_));
  e->pool_ = std::make_unique<ThreadPool>(e->options_.threads);
  e->state_ = std::make_unique<State>();
  // With a draft, verifying passes need every row's logits: room for them up front.
  const bool all_logits = !options.draft_model.empty();
  TF_ASSIGN_OR_RETURN(e->state_->scratch, e->model_->CreateScratch(e->ledger_, e->options_.n_batch, n_ctx,
                                                                   e->options_.threads, all_logits));
  e->state_->scratch_all_logits = all_logits;

  // The draft group is small and needed whole: it goes in before the model's
  // residency plan, which then counts its bytes as taken.
  if (!options.draft_model.empty() && options.draft_at_load) TF_RETURN_IF_ERROR(e->LoadDraft());
  LoadEventFn on_event = options.on_load_event;
  if (progress) {
    on_event = [progress, user = options.on_load_event](const LoadEvent& ev) {
      if (user && !user(ev)) return false;
      return progress(ev.loaded, ev.total, ev.component);
    };
  }
  // The KV caches grow with the tokens: the plan keeps room for them at full context.
  ResidencyOptions ro = options.residency;
  const uint64_t kv_full = KvCacheBytes(kc, ko);
  ro.reserved_bytes += kv_full > e->kv_->bytes() ? kv_full - e->kv_->bytes() : 0;
  if (e->draft_ && e->draft_->kv) {
    KvCacheConfig dc = e->draft_->kv->config();
    const uint64_t d_full = KvCacheBytes(dc, KvCacheOptions{});
    ro.reserved_bytes += d_full > e->draft_->kv->bytes() ? d_full - e->draft_->kv->bytes() : 0;
  }
  TF_ASSIGN_OR_RETURN(e->residency_,
                      Residency::Create(*e->model_, *e->gguf_, e->ledger_, ro, std::move(on_event)));
  e->load_report_ += e->residency_->Summary() + "\n";
  TF_RETURN_IF_ERROR(e->residency_->Start());
  return e;
}

Status Engine::LoadDraft() {
  if (draft_) return Status::Ok();
  if (options_.draft_model.empty()) {
    return InvalidArgument("no draft model was given; set draft_model (--draft MODEL) to load the \"draft\" group");
  }
  if (options_.draft_tokens < 1 || options_.draft_tokens > 16) {
    return InvalidArgument("draft_tokens must be in [1, 16]; got " + std::to_string(options_.draft_tokens));
  }
  auto d = std::make_unique<Draft>();
  TF_ASSIGN_OR_RETURN(auto src, OpenAnySource(options_.draft_model));
  TF_ASSIGN_OR_RETURN(GgufFile g, GgufFile::Parse(std::move(src)));
  d->gguf = std::make_unique<GgufFile>(std::move(g));
  // Same vocabulary, token for token: the draft's ids must mean the model's.
  auto mine = gguf_->GetStringArray("tokenizer.ggml.tokens");
  auto theirs = d->gguf->GetStringArray("tokenizer.ggml.tokens");
  if (!mine.ok() || !theirs.ok() || *mine != *theirs) {
    return InvalidArgument("draft model " + d->gguf->name() + " does not share " + gguf_->name() +
                           "'s vocabulary (tokenizer.ggml.tokens differ); a draft must use the same tokenizer");
  }
  ModelLoadOptions mo;
  mo.runtime_layouts = options_.runtime_layouts;
  TF_ASSIGN_OR_RETURN(d->model, LlamaModel::Plan(*d->gguf, mo, ledger_.max_buffer_bytes()));
  const LlamaHParams& hp = d->model->hparams();
  KvCacheConfig kc;
  kc.n_layers = hp.n_layer;
  kc.n_kv_heads = hp.n_head_kv;
  kc.head_dim = hp.head_dim;
  kc.capacity = options_.n_ctx;
  kc.type = "f16";
  kc.component = "draft.kv_cache";
  TF_ASSIGN_OR_RETURN(d->kv, MakeKvCache(kc, KvCacheOptions{}, ledger_));
  TF_ASSIGN_OR_RETURN(d->scratch, d->model->CreateScratch(ledger_, options_.n_batch, options_.n_ctx,
                                                          options_.threads, false, "draft."));
  ResidencyOptions ro;
  ro.priority_components = {"all"};
  ro.background_loading = false;
  ro.unload_unused_layers = true;  // a draft that does not fit streams too (slowly): still correct
  ro.charge_prefix = "draft.";
  TF_ASSIGN_OR_RETURN(d->residency, Residency::Create(*d->model, *d->gguf, ledger_, ro));
  TF_RETURN_IF_ERROR(d->residency->Start());
  draft_ = std::move(d);
  return Status::Ok();
}

bool Engine::draft_loaded() const { return draft_ != nullptr; }

Status Engine::DraftEval(const std::vector<int32_t>& tokens) {
  Draft& d = *draft_;
  for (size_t i = 0; i < tokens.size(); i += options_.n_batch) {
    const int n = static_cast<int>(std::min<size_t>(options_.n_batch, tokens.size() - i));
    TF_RETURN_IF_ERROR(d.model->Forward(tokens.data() + i, n, *d.kv, *pool_, d.scratch, *d.residency));
  }
  return Status::Ok();
}

const float* Engine::draft_logits() const { return draft_->scratch.logits.as<float>(); }
int Engine::draft_context_used() const { return draft_ ? draft_->kv->size() : 0; }

namespace {
Status KeepFirst(KvCache& kv, int n) {
  if (n < 0 || n > kv.size()) {
    return InvalidArgument("truncating the context: " + std::to_string(n) + " is outside [0, " +
                           std::to_string(kv.size()) + "]");
  }
  if (n == kv.size()) return Status::Ok();
  std::vector<bool> keep(kv.size(), false);
  std::fill(keep.begin(), keep.begin() + n, true);
  return kv.Retain(keep);
}
}  // namespace

Status Engine::DraftTruncate(int n) { return KeepFirst(*draft_->kv, n); }

Status Engine::TruncateContext(int n) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  return KeepFirst(*kv_, n);
}

std::vector<EngineComponent> Engine::components() const {
  std::vector<EngineComponent> out;
  if (!loaded()) return out;
  const double tokens = static_cast<double>(std::max<uint64_t>(1, tokens_evaluated_));
  for (const ComponentInfo& c : residency_->Components()) {
    EngineComponent x;
    x.name = c.name;
    x.group = "model";
    x.bytes = c.bytes;
    x.state = ComponentStateName(c.state);
    x.pinned = c.pinned;
    x.loads = c.loads;
    x.bytes_read = c.bytes_read;
    x.reads_per_token = tokens_evaluated_ ? c.loads / tokens : 0;
    out.push_back(std::move(x));
  }
  if (!options_.draft_model.empty()) {
    EngineComponent x;
    x.name = "draft";
    x.group = "draft";
    x.bytes = draft_ ? draft_->model->weight_bytes() : 0;
    x.state = draft_ ? "resident" : "pending";
    x.pinned = draft_ != nullptr;
    x.loads = draft_ ? 1 : 0;
    out.push_back(std::move(x));
  }
  // Named groups: one entry each, over its members ("resident" when all are,
  // "partial" when some are).
  const size_t n_model = residency_->Components().size();
  for (const auto& [name, members] : options_.groups) {
    EngineComponent g;
    g.name = name;
    g.group = "group";
    size_t resident = 0, found = 0;
    for (size_t i = 0; i < n_model; ++i) {
      if (std::find(members.begin(), members.end(), out[i].name) == members.end()) continue;
      ++found;
      g.bytes += out[i].bytes;
      g.loads += out[i].loads;
      g.bytes_read += out[i].bytes_read;
      resident += out[i].state == "resident";
    }
    g.state = found && resident == found ? "resident" : resident ? "partial" : "evicted";
    g.pinned = found && resident == found;
    g.reads_per_token = tokens_evaluated_ ? g.loads / tokens : 0;
    out.push_back(std::move(g));
  }
  return out;
}

namespace {
// Splits names into the draft group and the model's components.
bool TakeDraft(std::vector<std::string>* names) {
  auto it = std::find(names->begin(), names->end(), "draft");
  if (it == names->end()) return false;
  names->erase(std::remove(names->begin(), names->end(), "draft"), names->end());
  return true;
}
}  // namespace

std::vector<std::string> Engine::ExpandGroups(const std::vector<std::string>& names) const {
  std::vector<std::string> out;
  for (const std::string& n : names) {
    auto it = options_.groups.find(n);
    if (it == options_.groups.end()) out.push_back(n);
    else out.insert(out.end(), it->second.begin(), it->second.end());
  }
  return out;
}

Status Engine::LoadComponents(const std::vector<std::string>& names) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  std::vector<std::string> rest = ExpandGroups(names);
  const bool draft = TakeDraft(&rest);
  if (!rest.empty()) TF_RETURN_IF_ERROR(residency_->Pin(rest));
  if (draft) TF_RETURN_IF_ERROR(LoadDraft());
  return Status::Ok();
}

Status Engine::UnloadComponents(const std::vector<std::string>& names) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  std::vector<std::string> rest = ExpandGroups(names);
  if (TakeDraft(&rest)) draft_.reset();
  if (!rest.empty()) TF_RETURN_IF_ERROR(residency_->Evict(rest).status());
  return Status::Ok();
}

Status Engine::Swap(const std::vector<std::string>& unload, const std::vector<std::string>& load) {
  TF_RETURN_IF_ERROR(UnloadComponents(unload));
  return LoadComponents(load);
}

Status Engine::WaitUntilLoaded() {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  return residency_->WaitUntilLoaded();
}

Status Engine::Eval(const std::vector<int32_t>& tokens, bool all_logits) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  if (tokens.empty()) return InvalidArgument("Eval: no tokens");
  State& st = *state_;
  if (all_logits && !st.scratch_all_logits) {
    // Room for every row's logits; kept afterwards (a speculative decode asks
    // for all logits every step), and single-logit calls use its first row.
    st.scratch = ForwardScratch();  // free the old one first
    TF_ASSIGN_OR_RETURN(st.scratch, model_->CreateScratch(ledger_, options_.n_batch, options_.n_ctx,
                                                          options_.threads, true));
    st.scratch_all_logits = true;
  }
  st.scratch.all_logits = all_logits;
  PruningKvCache* pruning = AsPruning(kv_.get());
  if (!pruning && kv_->size() + static_cast<int>(tokens.size()) > context_size()) {
    return OutOfRange(std::to_string(tokens.size()) + " tokens do not fit: " + std::to_string(kv_->size()) + " of " +
                      std::to_string(context_size()) +
                      " context positions are used; shorten the prompt or raise the context size (-c)");
  }
  const int n_vocab = model_->hparams().n_vocab;
  for (size_t i = 0; i < tokens.size(); i += options_.n_batch) {
    int n = static_cast<int>(std::min<size_t>(options_.n_batch, tokens.size() - i));
    if (pruning) TF_RETURN_IF_ERROR(pruning->MakeRoom(n).status());
    TF_RETURN_IF_ERROR(model_->Forward(tokens.data() + i, n, *kv_, *pool_, st.scratch, *residency_));
    tokens_evaluated_ += n;
    if (all_logits && i + n < tokens.size()) {
      // Only one batch of logits fits the scratch: callers wanting every logit
      // pass at most n_batch tokens per call.
      return InvalidArgument("Eval(all_logits): pass at most n_batch (" + std::to_string(options_.n_batch) +
                             ") tokens per call");
    }
    st.last_n_logits = all_logits ? n : 1;
  }
  (void)n_vocab;
  return Status::Ok();
}

const float* Engine::logits() const { return state_->scratch.logits.as<float>(); }
void Engine::ResetContext() {
  if (kv_) kv_->Clear();
}
int Engine::context_used() const { return kv_ ? kv_->size() : 0; }
int Engine::context_size() const { return kv_ ? kv_->config().capacity : options_.n_ctx; }

Result<KvPruneResult> Engine::SetContextWindow(int n_ctx) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  if (n_ctx < 1 || n_ctx > options_.n_ctx) {
    return InvalidArgument("context window " + std::to_string(n_ctx) + " must be in [1, " +
                           std::to_string(options_.n_ctx) + "] (the context the model was loaded with, -c)");
  }
  KvPruneResult r;
  if (kv_->size() > n_ctx) {
    // The oldest tokens after the sinks go: keep n_ctx in all.
    const int sinks = std::min({options_.kv_sinks, kv_->size(), n_ctx});
    TF_ASSIGN_OR_RETURN(r, TruncateKv(n_ctx - sinks));
  }
  TF_RETURN_IF_ERROR(kv_->SetCapacity(n_ctx));
  return r;
}
bool Engine::context_can_grow() const { return kv_ && AsPruning(kv_.get()) != nullptr; }

const KvCache& Engine::kv_cache() const { return *kv_; }

Result<KvPruneResult> Engine::PruneKv() {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  PruningKvCache* p = AsPruning(kv_.get());
  if (!p) {
    return InvalidArgument("KV pruning needs attention scores: load with kv_pruning on (--kv-prune-strategy, C API "
                           "\"kv_pruning\":true, JS kvCache.pruning)");
  }
  return p->PruneNow();
}

Result<KvPruneResult> Engine::TruncateKv(int keep_recent) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  if (PruningKvCache* p = AsPruning(kv_.get())) return p->Truncate(keep_recent);
  if (keep_recent < 0) return InvalidArgument("KV truncate: keep_recent must be >= 0");
  const int n = kv_->size();
  const int sinks = std::min(options_.kv_sinks, n);
  const int drop = std::max(0, n - sinks - keep_recent);
  KvPruneResult r;
  if (drop == 0) return r;
  std::vector<bool> keep(n, true);
  for (int s = sinks; s < sinks + drop; ++s) keep[s] = false;
  const uint64_t before = kv_->bytes();
  TF_RETURN_IF_ERROR(kv_->Retain(keep));
  r.tokens = drop;
  r.bytes = before > kv_->bytes() ? before - kv_->bytes() : 0;
  return r;
}

Result<uint64_t> Engine::RequantizeKv(int default_bits, int recent_token_bits, int rolling_window) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  KvCache* k = kv_.get();
  if (PruningKvCache* p = AsPruning(k)) k = &p->inner();
  auto* low = dynamic_cast<LowBitKvCache*>(k);
  if (!low) {
    return Unsupported("only the low-bit KV cache (kv_type kivi2/kivi3/kivi4, --kv-bits) and q8_0 can lower their "
                       "precision in place; this engine's cache is " + options_.kv_type);
  }
  return low->Requantize(default_bits, recent_token_bits, rolling_window);
}

Status Engine::ConfigureKvPruning(const KvPruneOptions& options) {
  PruningKvCache* p = kv_ ? AsPruning(kv_.get()) : nullptr;
  if (!p) return InvalidArgument("KV pruning needs attention scores: load with kv_pruning on");
  KvPruneOptions o = options;
  o.sinks = p->options().sinks;
  o.recent = p->options().recent;
  o.auto_keep = p->options().auto_keep;
  return p->Configure(o);
}

Status Engine::EnableKvAutoPruning(int max_tokens, int pruning_interval) {
  PruningKvCache* p = kv_ ? AsPruning(kv_.get()) : nullptr;
  if (!p) return InvalidArgument("KV pruning needs attention scores: load with kv_pruning on");
  return p->EnableAutoPruning(max_tokens, pruning_interval);
}

Status Engine::KvGet(int layer, int position, float* k, float* v, int* bits) const {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  const int n = kv_->size();
  // Positions increase with the slot (pruning keeps the order): binary search.
  int lo = 0, hi = n;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (kv_->position(mid) < position) lo = mid + 1;
    else hi = mid;
  }
  if (lo >= n || kv_->position(lo) != position) {
    return NotFound("KV get: no token at position " + std::to_string(position) + " in the cache (" +
                    std::to_string(n) + " tokens; pruned or not yet generated)");
  }
  return kv_->Get(layer, lo, k, v, bits);
}
const Tokenizer& Engine::tokenizer() const { return *tokenizer_; }
const LlamaModel& Engine::model() const { return *model_; }
int Engine::threads() const { return options_.threads; }

Status Engine::Generate(const std::string& prompt, const GenerateOptions& go, const TokenFn& on_token,
                        GenerateStats* stats_out) {
  Generation g(*this);
  TF_RETURN_IF_ERROR(g.Begin(prompt, go));
  for (;;) {
    Generation::Step step;
    TF_RETURN_IF_ERROR(g.Next(&step));
    if (!step.text.empty() && on_token && !on_token(step.text, step.token)) {
      g.Cancel();
      break;
    }
    if (!step.tail.empty() && on_token) on_token(step.tail, -1);
    if (step.done) break;
  }
  if (stats_out) *stats_out = g.stats();
  return Status::Ok();
}

}  // namespace tabfit
