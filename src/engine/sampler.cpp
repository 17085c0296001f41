#include "engine/sampler.h"

#include <algorithm>
#include <cmath>
#include <unordered_set>

namespace tabfit {

int32_t ArgMax(const float* logits, int n) {
  int32_t best = 0;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) best = i;
  }
  return best;
}

Sampler::Sampler(SamplerParams params) : params_(params), rng_(params.seed) {}

int32_t Sampler::Sample(const float* logits, int n_vocab, const std::vector<int32_t>& history) {
  const SamplerParams& p = params_;
  cand_.resize(n_vocab);
  for (int i = 0; i < n_vocab; ++i) cand_[i] = {i, logits[i], 0.f};

  if (p.repeat_penalty != 1.0f && p.repeat_last_n != 0) {
    size_t n = p.repeat_last_n < 0 ? history.size() : std::min<size_t>(history.size(), p.repeat_last_n);
    std::unordered_set<int32_t> seen(history.end() - n, history.end());
    for (int32_t id : seen) {
      if (id < 0 || id >= n_vocab) continue;
      float& l = cand_[id].logit;
      l = l > 0 ? l / p.repeat_penalty : l * p.repeat_penalty;
    }
  }
  if (p.temperature <= 0.f) {
    int32_t best = 0;
    for (int i = 1; i < n_vocab; ++i) {
      if (cand_[i].logit > cand_[best].logit) best = i;
    }
    return best;
  }

  auto by_logit = [](const Candidate& a, const Candidate& b) {
    return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
  };
  size_t keep = cand_.size();
  if (p.top_k > 0 && static_cast<size_t>(p.top_k) < keep) {
    keep = p.top_k;
    std::partial_sort(cand_.begin(), cand_.begin() + keep, cand_.end(), by_logit);
    cand_.resize(keep);
  } else {
    std::sort(cand_.begin(), cand_.end(), by_logit);
  }
  auto softmax = [&](float temp) {
    float mx = cand_[0].logit;
    double sum = 0;
    for (auto& c : cand_) {
      c.p = std::exp((c.logit - mx) / temp);
      sum += c.p;
    }
    for (auto& c : cand_) c.p = static_cast<float>(c.p / sum);
  };
  softmax(1.0f);
  if (p.top_p < 1.0f) {
    double cum = 0;
    size_t n = 0;
    while (n < cand_.size()) {
      cum += cand_[n].p;
      ++n;
      if (cum >= p.top_p) break;
    }
    cand_.resize(std::max<size_t>(1, n));
  }
  if (p.min_p > 0.f) {
    float thresh = cand_[0].p * p.min_p;
    size_t n = 1;
    while (n < cand_.size() && cand_[n].p >= thresh) ++n;
    cand_.resize(n);
  }
  softmax(p.temperature);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double r = u(rng_), cum = 0;
  for (auto& c : cand_) {
    cum += c.p;
    if (r < cum) return c.id;
  }
  return cand_.back().id;
}

}  // namespace tabfit
