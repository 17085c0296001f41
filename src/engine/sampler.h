// tabfit engine: token sampling.
//
// Order (as llama.cpp's default chain): repetition penalty over the last
// `repeat_last_n` tokens -> top-k -> top-p -> min-p -> temperature -> draw.
// temperature <= 0 means greedy (arg-max, ties to the lowest id).
// Deterministic for a given seed. Not thread-safe (one per generation).
#pragma once

#include <cstdint>
#include <random>
#include <vector>

namespace tabfit {

struct SamplerParams {
  float temperature = 0.8f;
  int top_k = 40;         // <= 0: off
  float top_p = 0.95f;    // >= 1: off
  float min_p = 0.05f;    // <= 0: off
  float repeat_penalty = 1.0f;  // 1: off
  int repeat_last_n = 64;
  uint64_t seed = 0xC0FFEE;
};

class Sampler {
 public:
  explicit Sampler(SamplerParams params);
  // Picks the next token from logits[n_vocab]; `history` are the tokens so far.
  int32_t Sample(const float* logits, int n_vocab, const std::vector<int32_t>& history);
  const SamplerParams& params() const { return params_; }

 private:
  struct Candidate {
    int32_t id;
    float logit;
    float p;
  };
  SamplerParams params_;
  std::mt19937_64 rng_;
  std::vector<Candidate> cand_;
};

int32_t ArgMax(const float* logits, int n);

}  // namespace tabfit
