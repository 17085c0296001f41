#include "engine/generation.h"

#include <algorithm>
#include <chrono>

#include "kv/kv_factory.h"
#include "model/llama/kv_cache.h"
#include "model/llama/llama_model.h"
#include "model/tokenizer/tokenizer.h"

namespace tabfit {

namespace {

double Now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
size_t HeldBackForStops(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const auto& s : stops) {
    if (s.empty()) continue;
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

Generation::Generation(Engine& engine) : e_(engine) {}
Generation::~Generation() = default;

Status Generation::Begin(const std::string& prompt, const GenerateOptions& go) {
  if (!e_.loaded()) return InvalidArgument("the engine was unloaded; load a model again");
  o_ = go;
  const Tokenizer& tok = e_.tokenizer();
  std::vector<int32_t> tokens = tok.Encode(prompt, go.add_bos && tok.add_bos(), go.parse_special);
  if (tokens.empty()) return InvalidArgument("the prompt is empty; give some text to continue");
  if (!e_.context_can_grow() && static_cast<int>(tokens.size()) >= e_.context_size()) {
    return OutOfRange("the prompt is " + std::to_string(tokens.size()) + " tokens but the context holds " +
                      std::to_string(e_.context_size()) + " (including at least one generated token); shorten the "
                      "prompt or raise the context size (-c / n_ctx, at most the model's " +
                      std::to_string(e_.model().hparams().n_ctx_train) + ")");
  }
  e_.ResetContext();
  if (e_.draft_loaded()) TF_RETURN_IF_ERROR(e_.DraftTruncate(0));
  stats_ = GenerateStats();
  stats_.prompt_tokens = static_cast<int>(tokens.size());
  streamed0_ = e_.residency().streamed_bytes_read();
  const double t0 = Now();
  TF_RETURN_IF_ERROR(e_.Eval(tokens));
  stats_.prompt_seconds = Now() - t0;
  sampler_ = std::make_unique<Sampler>(go.sampler);
  decoder_ = std::make_unique<StreamDecoder>(tok);
  history_ = std::move(tokens);
  queue_.clear();
  pending_.clear();
  first_ = true;
  active_ = true;
  finished_ = false;
  stats_.stop_reason = "max_tokens";
  t_start_ = Now();
  return Status::Ok();
}

int Generation::SpeculationWidth() const {
  if (!e_.draft_loaded() || o_.sampler.temperature > 0 || e_.context_can_grow()) return 0;
  const EngineOptions& eo = e_.options();
  int k = eo.draft_tokens;
  // Never verify past what may still be handed out, the context or one batch.
  k = std::min(k, o_.max_tokens - stats_.generated_tokens - 1);
  k = std::min(k, e_.context_size() - e_.context_used() - 1);
  k = std::min(k, eo.n_batch - 1);
  return std::max(0, k);
}

Status Generation::SpeculativeStep(int k) {
  const int n_vocab = e_.model().hparams().n_vocab;
  // The draft catches up on what it has not seen (the prompt at first, then the
  // model's corrections), last_ included, then proposes k tokens greedily.
  const int synced = e_.draft_context_used();
  std::vector<int32_t> feed(history_.begin() + synced, history_.end());
  TF_RETURN_IF_ERROR(e_.DraftEval(feed));
  std::vector<int32_t> drafts;
  for (int i = 0; i < k; ++i) {
    drafts.push_back(ArgMax(e_.draft_logits(), n_vocab));
    if (i + 1 < k) TF_RETURN_IF_ERROR(e_.DraftEval({drafts.back()}));
  }
  // One pass of the model over last_ and the k proposals.
  const int n0 = e_.context_used();
  const int h0 = static_cast<int>(history_.size());
  std::vector<int32_t> batch{last_};
  batch.insert(batch.end(), drafts.begin(), drafts.end());
  TF_RETURN_IF_ERROR(e_.Eval(batch, /*all_logits=*/true));
  stats_.verify_passes++;
  stats_.draft_proposed += k;
  int accepted = 0;
  for (int j = 0; j <= k; ++j) {
    const int32_t t = sampler_->Sample(e_.logits() + static_cast<size_t>(j) * n_vocab, n_vocab, history_);
    history_.push_back(t);
    queue_.push_back(t);
    if (j < k && t == drafts[j]) {
      ++accepted;
      continue;
    }
    break;
  }
  stats_.draft_accepted += accepted;
  // Keep last_ and the accepted proposals; the model's own last token is the new last_.
  TF_RETURN_IF_ERROR(e_.TruncateContext(n0 + 1 + accepted));
  TF_RETURN_IF_ERROR(e_.DraftTruncate(std::min(e_.draft_context_used(), h0 + accepted)));
  last_ = queue_.back();
  return Status::Ok();
}

Status Generation::Refill(bool* context_full) {
  *context_full = false;
  const int n_vocab = e_.model().hparams().n_vocab;
  if (first_) {
    first_ = false;
  } else if (const int k = SpeculationWidth(); k > 0) {
    return SpeculativeStep(k);
  } else {
    if (!e_.context_can_grow() && e_.context_used() + 1 > e_.context_size()) {
      *context_full = true;
      return Status::Ok();
    }
    TF_RETURN_IF_ERROR(e_.Eval({last_}));
  }
  const int32_t id = sampler_->Sample(e_.logits(), n_vocab, history_);
  history_.push_back(id);
  queue_.push_back(id);
  last_ = id;
  return Status::Ok();
}

void Generation::Finish(const char* reason, bool flush, Step* step) {
  stats_.stop_reason = reason;
  if (flush) step->tail = pending_ + decoder_->Flush();
  pending_.clear();
  queue_.clear();
  finished_ = true;
  step->done = true;
  stats_.decode_steps = std::max(0, stats_.generated_tokens - 1);
  stats_.generate_seconds = Now() - t_start_;
  stats_.streamed_bytes = e_.residency().streamed_bytes_read() - streamed0_;
}

Status Generation::Next(Step* step) {
  *step = Step();
  if (!active_) return InvalidArgument("no generation is running; call Begin first");
  if (finished_) {
    step->done = true;
    return Status::Ok();
  }
  if (stats_.generated_tokens >= o_.max_tokens) {
    Finish("max_tokens", true, step);
    return Status::Ok();
  }
  if (queue_.empty()) {
    bool full = false;
    Status s = Refill(&full);
    if (!s.ok()) {
      Finish("error", false, step);
      return s;
    }
    if (full) {
      Finish("context_full", true, step);
      return Status::Ok();
    }
  }
  const int32_t id = queue_.front();
  queue_.pop_front();
  stats_.generated_tokens++;
  step->token = id;
  if (o_.stop_at_eos && e_.tokenizer().IsEog(id)) {
    Finish("eos", true, step);
    return Status::Ok();
  }
  pending_ += decoder_->Push(id);
  bool stop_hit = false;
  size_t cut = std::string::npos;
  for (const auto& s : o_.stop) {
    if (s.empty()) continue;
    const size_t p = pending_.find(s);
    if (p != std::string::npos) cut = std::min(cut, p);
  }
  if (cut != std::string::npos) {
    pending_.resize(cut);
    stop_hit = true;
  }
  const size_t hold = stop_hit ? 0 : HeldBackForStops(pending_, o_.stop);
  if (pending_.size() > hold) {
    step->text = pending_.substr(0, pending_.size() - hold);
    pending_.erase(0, pending_.size() - hold);
  }
  if (stop_hit) {
    Finish("stop_string", false, step);
  } else if (stats_.generated_tokens >= o_.max_tokens) {
    Finish("max_tokens", true, step);
  }
  return Status::Ok();
}

void Generation::Cancel() {
  if (!active_ || finished_) return;
  Step ignored;
  Finish("cancelled", false, &ignored);
}

}  // namespace tabfit
