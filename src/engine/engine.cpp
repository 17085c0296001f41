#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "core/thread_pool.h"
#include "kv/kv_factory.h"
#include "engine/profile.h"
#include "model/gguf/gguf.h"
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

namespace {

double Now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

KvCacheOptions KvOptionsFrom(const EngineOptions& o) {
  KvCacheOptions k;
  k.recent_window = o.kv_recent;
  k.prune.auto_keep = o.kv_prune;
  k.prune.sinks = o.kv_sinks;
  k.prune.recent = o.kv_keep_recent;
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

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t HeldBackForStops(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    for (size_t len = std::min(s.size() - 1, text.size()); len > hold; --len) {
      if (text.compare(text.size() - len, len, s, 0, len) == 0) {
        hold = len;
        break;
      }
    }
  }
  return hold;
}

}  // namespace

Engine::~Engine() {
  Unload();
  if (options_.ledger_hook) options_.ledger_hook(nullptr);
}

void Engine::Unload() {
  // Free in dependency order: scratch and cache before the model.
  state_.reset();
  kv_.reset();
  model_.reset();
  pool_.reset();
  tokenizer_charge_.Reset();
}

Result<std::unique_ptr<Engine>> Engine::LoadFile(const std::string& path, const EngineOptions& options,
                                                 LoadProgressFn progress) {
  // A GGUF file or a tabfit package directory (a chunked GGUF + manifest).
  TF_ASSIGN_OR_RETURN(auto source, OpenModelSource(path));
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
  mo.progress = progress;
  TF_ASSIGN_OR_RETURN(e->model_, LlamaModel::Load(gguf, e->ledger_, mo));
  const LlamaHParams& hp = e->model_->hparams();
  if (e->tokenizer_->n_vocab() != hp.n_vocab) {
    return CorruptData(gguf.source().name() + ": tokenizer has " + std::to_string(e->tokenizer_->n_vocab()) +
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
  }
  TF_ASSIGN_OR_RETURN(e->kv_, MakeKvCache(kc, ko, e->ledger_));

  e->pool_ = std::make_unique<ThreadPool>(e->options_.threads);
  e->state_ = std::make_unique<State>();
  TF_ASSIGN_OR_RETURN(e->state_->scratch, e->model_->CreateScratch(e->ledger_, e->options_.n_batch, n_ctx,
                                                                   e->options_.threads, false));
  return e;
}

Status Engine::Eval(const std::vector<int32_t>& tokens, bool all_logits) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  if (tokens.empty()) return InvalidArgument("Eval: no tokens");
  State& st = *state_;
  if (all_logits != st.scratch_all_logits) {
    st.scratch = ForwardScratch();  // free the old one first
    TF_ASSIGN_OR_RETURN(st.scratch, model_->CreateScratch(ledger_, options_.n_batch, options_.n_ctx,
                                                          options_.threads, all_logits));
    st.scratch_all_logits = all_logits;
  }
  PruningKvCache* pruning = AsPruning(kv_.get());
  if (!pruning && kv_->size() + static_cast<int>(tokens.size()) > options_.n_ctx) {
    return OutOfRange(std::to_string(tokens.size()) + " tokens do not fit: " + std::to_string(kv_->size()) + " of " +
                      std::to_string(options_.n_ctx) +
                      " context positions are used; shorten the prompt or raise the context size (-c)");
  }
  const int n_vocab = model_->hparams().n_vocab;
  for (size_t i = 0; i < tokens.size(); i += options_.n_batch) {
    int n = static_cast<int>(std::min<size_t>(options_.n_batch, tokens.size() - i));
    if (pruning) TF_RETURN_IF_ERROR(pruning->MakeRoom(n).status());
    TF_RETURN_IF_ERROR(model_->Forward(tokens.data() + i, n, *kv_, *pool_, st.scratch));
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
int Engine::context_size() const { return options_.n_ctx; }
bool Engine::context_can_grow() const { return kv_ && AsPruning(kv_.get()) != nullptr; }
const Tokenizer& Engine::tokenizer() const { return *tokenizer_; }
const LlamaModel& Engine::model() const { return *model_; }
int Engine::threads() const { return options_.threads; }

Status Engine::Generate(const std::string& prompt, const GenerateOptions& go, const TokenFn& on_token,
                        GenerateStats* stats_out) {
  if (!loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  GenerateStats stats;
  std::vector<int32_t> tokens = tokenizer_->Encode(prompt, go.add_bos && tokenizer_->add_bos(), go.parse_special);
  if (tokens.empty()) return InvalidArgument("the prompt is empty; give some text to continue");
  if (!AsPruning(kv_.get()) && static_cast<int>(tokens.size()) >= options_.n_ctx) {
    return OutOfRange("the prompt is " + std::to_string(tokens.size()) + " tokens but the context holds " +
                      std::to_string(options_.n_ctx) + " (including at least one generated token); shorten the "
                      "prompt or raise the context size (-c, at most the model's " +
                      std::to_string(model_->hparams().n_ctx_train) + ")");
  }
  ResetContext();
  stats.prompt_tokens = static_cast<int>(tokens.size());
  double t0 = Now();
  TF_RETURN_IF_ERROR(Eval(tokens));
  stats.prompt_seconds = Now() - t0;

  Sampler sampler(go.sampler);
  StreamDecoder decoder(*tokenizer_);
  std::vector<int32_t> history = tokens;
  std::string pending;  // text held back because it may start a stop string
  const int n_vocab = model_->hparams().n_vocab;
  stats.stop_reason = "max_tokens";
  double t1 = Now();
  for (int i = 0; i < go.max_tokens; ++i) {
    int32_t id = sampler.Sample(logits(), n_vocab, history);
    history.push_back(id);
    stats.generated_tokens++;
    if (go.stop_at_eos && tokenizer_->IsEog(id)) {
      stats.stop_reason = "eos";
      break;
    }
    pending += decoder.Push(id);
    bool stop_hit = false;
    if (!go.stop.empty()) {
      size_t cut = std::string::npos;
      for (const auto& s : go.stop) {
        if (s.empty()) continue;
        size_t p = pending.find(s);
        if (p != std::string::npos) cut = std::min(cut, p);
      }
      if (cut != std::string::npos) {
        pending.resize(cut);
        stop_hit = true;
      }
    }
    size_t hold = stop_hit ? 0 : HeldBackForStops(pending, go.stop);
    if (pending.size() > hold) {
      std::string emit = pending.substr(0, pending.size() - hold);
      pending.erase(0, pending.size() - hold);
      if (on_token && !on_token(emit, id)) {
        stats.stop_reason = "cancelled";
        break;
      }
    }
    if (stop_hit) {
      stats.stop_reason = "stop_string";
      break;
    }
    if (i + 1 == go.max_tokens) break;
    if (!AsPruning(kv_.get()) && kv_->size() + 1 > options_.n_ctx) {
      stats.stop_reason = "context_full";
      break;
    }
    TF_RETURN_IF_ERROR(Eval({id}));
    stats.decode_steps++;
  }
  if (stats.stop_reason != "cancelled" && stats.stop_reason != "stop_string") {
    std::string rest = pending + decoder.Flush();
    if (!rest.empty() && on_token) on_token(rest, -1);
  }
  stats.generate_seconds = Now() - t1;
  if (stats_out) *stats_out = stats;
  return Status::Ok();
}

}  // namespace tabfit
