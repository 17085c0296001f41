// tabfit engine: one generation, step by step.
//
// Engine::Generate and the C API's tabfit_generate_* both run a Generation:
// Begin tokenizes and runs the prompt; each Next hands out one generated token
// and its text (complete UTF-8, stop strings held back until they are ruled
// out); the last Next says done, with the text that was still held back.
//
// Speculative decoding: when the engine has its draft group loaded and sampling
// is greedy (temperature <= 0), a step lets the draft propose up to
// EngineOptions::draft_tokens tokens, verifies them all with ONE forward pass of
// the model (all logits), keeps the longest prefix the model itself would have
// chosen plus the model's own next token, and rolls both KV caches back to what
// was kept. Every token handed out is the model's greedy choice, so the output
// equals decoding without the draft; what changes is how many tokens each pass
// of the (possibly streamed) model yields. With temperature > 0 the draft is not
// used.
//
// Ownership: borrows the Engine, which must outlive it; drive it from the
// engine's thread. Nothing is allocated outside the engine's ledger except the
// token history and text buffers.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "core/status.h"
#include "engine/engine.h"
#include "engine/sampler.h"

namespace tabfit {

class StreamDecoder;

class Generation {
 public:
  explicit Generation(Engine& engine);
  ~Generation();

  // Clears the context, tokenizes and evaluates the prompt.
  Status Begin(const std::string& prompt, const GenerateOptions& options);

  struct Step {
    std::string text;   // this token's text ("" while held back)
    int32_t token = -1; // the token handed out (-1 when none)
    std::string tail;   // with done: text held back until now (stop strings, partial UTF-8)
    bool done = false;  // the generation has finished (stats().stop_reason says why)
  };
  // The next token. A failed forward pass ends the generation with its error.
  Status Next(Step* step);
  // Ends it early: stop_reason "cancelled" (no effect once done).
  void Cancel();

  bool active() const { return active_; }
  bool finished() const { return finished_; }
  const GenerateStats& stats() const { return stats_; }

 private:
  // Puts the next token(s) in queue_: one ordinary decode step, or a speculative one.
  Status Refill(bool* context_full);
  Status SpeculativeStep(int k);
  int SpeculationWidth() const;
  void Finish(const char* reason, bool flush, Step* step);

  Engine& e_;
  GenerateOptions o_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<StreamDecoder> decoder_;
  std::vector<int32_t> history_;  // prompt + every token chosen (also those still queued)
  std::deque<int32_t> queue_;     // chosen, not handed out yet
  std::string pending_;           // text held back (a stop string may be starting)
  int32_t last_ = -1;             // newest chosen token; not in the KV cache yet
  bool first_ = true;             // the next token comes from the prompt's logits
  bool active_ = false;
  bool finished_ = false;
  double t_start_ = 0;
  uint64_t streamed0_ = 0;
  GenerateStats stats_;
};

}  // namespace tabfit
