#include "engine/sampler.h"

#include <gtest/gtest.h>

#include <map>

namespace tabfit {
namespace {

TEST(Sampler, GreedyPicksArgMaxLowestIdOnTies) {
  SamplerParams p;
  p.temperature = 0;
  Sampler s(p);
  std::vector<float> logits = {0.1f, 2.0f, 2.0f, -1.f};
  EXPECT_EQ(s.Sample(logits.data(), 4, {}), 1);
}

TEST(Sampler, RepeatPenaltyChangesGreedyChoice) {
  SamplerParams p;
  p.temperature = 0;
  p.repeat_penalty = 2.0f;
  Sampler s(p);
  std::vector<float> logits = {1.0f, 1.5f, 0.2f};
  EXPECT_EQ(s.Sample(logits.data(), 3, {1}), 0);  // 1.5/2 < 1.0
  EXPECT_EQ(s.Sample(logits.data(), 3, {}), 1);
}

TEST(Sampler, TopKOneIsGreedy) {
  SamplerParams p;
  p.temperature = 1.5f;
  p.top_k = 1;
  Sampler s(p);
  std::vector<float> logits = {0.f, 3.f, 1.f, 2.9f};
  for (int i = 0; i < 20; ++i) EXPECT_EQ(s.Sample(logits.data(), 4, {}), 1);
}

TEST(Sampler, SeedIsDeterministicAndDistributionFollowsSoftmax) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0;
  p.seed = 42;
  std::vector<float> logits = {0.f, std::log(3.f)};  // p = 0.25, 0.75
  Sampler a(p), b(p);
  int ones = 0;
  for (int i = 0; i < 4000; ++i) {
    int x = a.Sample(logits.data(), 2, {});
    EXPECT_EQ(x, b.Sample(logits.data(), 2, {}));
    ones += x;
  }
  EXPECT_NEAR(ones / 4000.0, 0.75, 0.03);
}

TEST(Sampler, TopPAndMinPCutTheTail) {
  SamplerParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.top_p = 0.5f;  // only the top token (p ~ 0.84) survives
  p.min_p = 0;
  Sampler s(p);
  std::vector<float> logits = {3.f, 1.f, 0.f, 0.f};
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(logits.data(), 4, {}), 0);
  SamplerParams q = p;
  q.top_p = 1.0f;
  q.min_p = 0.2f;  // tokens below 0.2 * p_max are dropped: only 0 remains (p1/p0 = e^-2)
  Sampler m(q);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(m.Sample(logits.data(), 4, {}), 0);
}

}  // namespace
}  // namespace tabfit
