// The llama-family forward pass: RMSNorm, RoPE, grouped-query attention over a
// KvCache, SwiGLU, output head. Batched (prefill) and single-token (decode).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/thread_pool.h"
#include "model/llama/kv_cache.h"
#include "model/llama/llama_model.h"
#include "quant/kernels.h"
#include "quant/vec.h"

namespace tabfit {

namespace {

// WorkShares sites: per layer q, k, v, o, gate, up, down; the output head after the last layer.
constexpr int kMatMulSitesPerLayer = 7;
enum MatMulSlot { kSiteQ = 0, kSiteO = 3, kSiteGate = 4, kSiteDown = 6 };

// out = x / rms(x) * w, accumulated in double as ggml does.
void RmsNorm(const float* x, const float* w, float* out, int n, float eps) {
  const double sum = SumSquares(x, n);
  const float scale = 1.0f / std::sqrt(static_cast<float>(sum / n) + eps);
  for (int i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

}  // namespace

namespace {
// What CreateScratch allocates, as (component, bytes) in order.
struct ScratchSizes {
  size_t x, xb, q, k, v, att, hb, hb2, packed, scores, logits, positions, rope;
  uint64_t total() const { return x + xb + q + k + v + att + hb + hb2 + packed + scores + logits + positions + rope; }
};

ScratchSizes SizesFor(const LlamaHParams& hp, const std::vector<ComponentPlan>& plans, int max_tokens,
                             int n_ctx, int threads, bool all_logits) {
  const size_t T = std::max(1, max_tokens);
  const size_t F = sizeof(float);
  ScratchSizes z{};
  z.x = T * hp.n_embd * F;
  z.xb = T * std::max(hp.n_embd, hp.q_dim()) * F;
  z.q = T * hp.q_dim() * F;
  z.k = T * hp.kv_dim() * F;
  z.v = T * hp.kv_dim() * F;
  z.att = T * hp.q_dim() * F;
  z.hb = T * hp.n_ff * F;
  z.hb2 = T * hp.n_ff * F;
  // Packed activations: the widest input over every weight type in use.
  size_t packed = 0;
  for (const ComponentPlan& c : plans) {
    for (const TensorPlan& t : c.tensors) {
      if (!t.vector) packed = std::max(packed, T * PackedActivationRowBytes(t.target, t.cols));
    }
  }
  z.packed = packed;
  z.scores = static_cast<size_t>(std::max(1, threads)) * hp.n_gqa() * n_ctx * F;
  z.logits = (all_logits ? T : 1) * hp.n_vocab * F;
  z.positions = T * sizeof(int32_t);
  z.rope = T * std::max(2, hp.n_rot) * F;
  return z;
}
}  // namespace

uint64_t LlamaModel::ScratchBytes(int max_tokens, int n_ctx, int threads, bool all_logits) const {
  return SizesFor(hp_, plans_, max_tokens, n_ctx, threads, all_logits).total();
}

Result<ForwardScratch> LlamaModel::CreateScratch(MemoryLedger& ledger, int max_tokens, int n_ctx, int threads,
                                                 bool all_logits, std::string_view prefix) const {
  const LlamaHParams& hp = hp_;
  ForwardScratch s;
  s.max_tokens = std::max(1, max_tokens);
  s.n_ctx = n_ctx;
  s.threads = std::max(1, threads);
  s.all_logits = all_logits;
  const ScratchSizes z = SizesFor(hp, plans_, max_tokens, n_ctx, s.threads, all_logits);
  const std::string activations = std::string(prefix) + "activations";
  auto alloc = [&](Buffer* b, size_t bytes, const char* component = nullptr) -> Status {
    TF_ASSIGN_OR_RETURN(*b, ledger.Allocate(component ? std::string(prefix) + component : activations, bytes));
    return Status::Ok();
  };
  TF_RETURN_IF_ERROR(alloc(&s.x, z.x));
  TF_RETURN_IF_ERROR(alloc(&s.xb, z.xb));
  TF_RETURN_IF_ERROR(alloc(&s.q, z.q));
  TF_RETURN_IF_ERROR(alloc(&s.k, z.k));
  TF_RETURN_IF_ERROR(alloc(&s.v, z.v));
  TF_RETURN_IF_ERROR(alloc(&s.att, z.att));
  TF_RETURN_IF_ERROR(alloc(&s.hb, z.hb));
  TF_RETURN_IF_ERROR(alloc(&s.hb2, z.hb2));
  TF_RETURN_IF_ERROR(alloc(&s.packed, z.packed));
  TF_RETURN_IF_ERROR(alloc(&s.scores, z.scores));
  TF_RETURN_IF_ERROR(alloc(&s.logits, z.logits, "logits"));
  TF_RETURN_IF_ERROR(alloc(&s.positions, z.positions));
  TF_RETURN_IF_ERROR(alloc(&s.rope, z.rope));
  s.shares = WorkShares(hp.n_layer * kMatMulSitesPerLayer + 1, s.threads);
  return s;
}

void LlamaModel::MatMul(ThreadPool& pool, const WeightMatrix& w, const float* x, int n, float* y,
                        ForwardScratch& s, int site, bool reuse_packed, const Epilogue& epilogue) const {
  if (s.observe_input) s.observe_input(w, x, n);
  const size_t prb = PackedActivationRowBytes(w.type, w.cols);
  uint8_t* packed = s.packed.as<uint8_t>();
  if (reuse_packed) {
    // The previous MatMul packed the same x for the same type and width.
  } else if (n == 1) {
    PackActivations(w.type, x, 1, w.cols, packed);
  } else {
    pool.ParallelFor(n, [&](size_t b, size_t e, int) {
      PackActivations(w.type, x + b * w.cols, static_cast<int64_t>(e - b), w.cols, packed + b * prb);
    });
  }
  MatMulPass(pool, {{&w, y}}, n, s, site, epilogue);
}

void LlamaModel::MatMulPass(ThreadPool& pool, std::initializer_list<MatMulOut> outs, int n, ForwardScratch& s,
                            int site, const Epilogue& epilogue) const {
  const int threads = pool.num_threads();
  const bool learn = threads > 1 && s.shares.threads() == threads;
  const WorkShares equal(0, threads);  // no sites: every Range is the equal split
  const WorkShares& shares = learn ? s.shares : equal;
  const uint8_t* packed = s.packed.as<uint8_t>();
  pool.RunOnAll([&](int t) {
    const auto start = learn ? std::chrono::steady_clock::now() : std::chrono::steady_clock::time_point();
    bool any = false;
    for (size_t i = 0; i < outs.size(); ++i) {
      const MatMulOut& o = outs.begin()[i];
      // Whole 16-row tiles, so register tiles and the x16 layouts stay whole.
      const auto [b, e] = shares.Range(site, static_cast<size_t>(o.w->rows), 16, t);
      if (b >= e) continue;
      MatMulRange(*o.w, static_cast<int64_t>(b), static_cast<int64_t>(e), packed, n, o.y);
      any = true;
      if (i + 1 == outs.size() && epilogue) epilogue(static_cast<int64_t>(b), static_cast<int64_t>(e));
    }
    if (learn && any) {
      s.shares.Record(site, t, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    }
  });
  if (learn) s.shares.Update(site);
}

void LlamaModel::MatMulRange(const WeightMatrix& w, int64_t begin, int64_t end, const void* packed, int n,
                             float* y) const {
  const int64_t per = w.rows_per_chunk();
  for (int64_t r = begin; r < end;) {
    const int64_t c = r / per;
    const int64_t chunk_end = std::min(end, (c + 1) * per);
    MatMulRowsLayout(w.layout, w.type, w.data.chunks[c].data(), w.row_bytes, r - c * per, chunk_end - c * per, w.cols,
                     packed, n, y + c * per, w.rows);
    r = chunk_end;
  }
}

void LlamaModel::MatMulSameInput(ThreadPool& pool, std::initializer_list<MatMulOut> outs, const float* x, int n,
                                 ForwardScratch& s, int site, const Epilogue& epilogue) const {
  const WeightMatrix& w0 = *outs.begin()->w;
  bool same = true;
  for (const MatMulOut& o : outs) same = same && o.w->type == w0.type && o.w->cols == w0.cols;
  if (!same) {
    size_t i = 0;
    const WeightMatrix* prev = nullptr;
    for (const MatMulOut& o : outs) {
      const bool last = i + 1 == outs.size();
      MatMul(pool, *o.w, x, n, o.y, s, site + static_cast<int>(i),
             prev && prev->type == o.w->type && prev->cols == o.w->cols, last ? epilogue : nullptr);
      prev = o.w;
      ++i;
    }
    return;
  }
  // Pack x once for every matrix.
  if (s.observe_input) {
    for (const MatMulOut& o : outs) s.observe_input(*o.w, x, n);
  }
  const size_t prb = PackedActivationRowBytes(w0.type, w0.cols);
  uint8_t* packed = s.packed.as<uint8_t>();
  if (n == 1) {
    PackActivations(w0.type, x, 1, w0.cols, packed);
  } else {
    pool.ParallelFor(n, [&](size_t b, size_t e, int) {
      PackActivations(w0.type, x + b * w0.cols, static_cast<int64_t>(e - b), w0.cols, packed + b * prb);
    });
  }
  MatMulPass(pool, outs, n, s, site, epilogue);
}

void LlamaModel::RopeTable(int pos, float* cs, float* sn) const {
  const LlamaHParams& hp = hp_;
  float theta = static_cast<float>(pos);
  for (int i = 0; i < hp.n_rot / 2; ++i) {
    const float t = theta * hp.rope_freq_scale;
    cs[i] = std::cos(t);
    sn[i] = std::sin(t);
    theta *= rope_theta_scale_;
  }
}

void LlamaModel::ApplyRope(float* x, int n_heads, const float* cs, const float* sn) const {
  const LlamaHParams& hp = hp_;
  const int half = hp.n_rot / 2;
  for (int h = 0; h < n_heads; ++h) {
    float* v = x + h * hp.head_dim;
    if (hp.rope == RopeOrdering::kNormal) {
      for (int i = 0; i < half; ++i) {
        const float x0 = v[2 * i], x1 = v[2 * i + 1];
        v[2 * i] = x0 * cs[i] - x1 * sn[i];
        v[2 * i + 1] = x0 * sn[i] + x1 * cs[i];
      }
    } else {
      for (int i = 0; i < half; ++i) {
        const float x0 = v[i], x1 = v[i + half];
        v[i] = x0 * cs[i] - x1 * sn[i];
        v[i + half] = x0 * sn[i] + x1 * cs[i];
      }
    }
  }
}

namespace {
// Holds one acquired component until it goes out of scope.
class Held {
 public:
  Held(WeightAccess& w, int c) : w_(w), c_(c) {}
  ~Held() { if (p_) w_.Release(c_); }
  Held(const Held&) = delete;
  Held& operator=(const Held&) = delete;
  Status Get() {
    Result<const ComponentWeights*> r = w_.Acquire(c_);
    if (!r.ok()) return r.status();
    p_ = *r;
    return Status::Ok();
  }
  const ComponentWeights& operator*() const { return *p_; }
  const ComponentWeights* operator->() const { return p_; }

 private:
  WeightAccess& w_;
  int c_;
  const ComponentWeights* p_ = nullptr;
};
}  // namespace

Status LlamaModel::Forward(const int32_t* tokens, int n, KvCache& kv, ThreadPool& pool, ForwardScratch& s,
                           WeightAccess& weights) const {
  const LlamaHParams& hp = hp_;
  if (n <= 0) return InvalidArgument("Forward: no tokens");
  if (n > s.max_tokens) {
    return InvalidArgument("Forward: batch of " + std::to_string(n) + " tokens exceeds the scratch size " +
                           std::to_string(s.max_tokens));
  }
  const int n_past = kv.size();
  if (n_past + n > s.n_ctx || n_past + n > kv.config().capacity) {
    return OutOfRange("the context is full: " + std::to_string(n_past) + " tokens used + " + std::to_string(n) +
                      " new > context size " + std::to_string(std::min(s.n_ctx, kv.config().capacity)) +
                      "; shorten the prompt or raise the context size (-c)");
  }
  if (pool.num_threads() > s.threads) return InvalidArgument("Forward: thread pool larger than scratch");
  for (int t = 0; t < n; ++t) {
    if (tokens[t] < 0 || tokens[t] >= hp.n_vocab) {
      return InvalidArgument("token id " + std::to_string(tokens[t]) + " is outside the vocabulary [0, " +
                             std::to_string(hp.n_vocab) + ")");
    }
  }
  const int D = hp.n_embd, QD = hp.q_dim(), KVD = hp.kv_dim(), FF = hp.n_ff, HD = hp.head_dim;
  float* x = s.x.as<float>();
  float* xb = s.xb.as<float>();
  float* q = s.q.as<float>();
  float* k = s.k.as<float>();
  float* v = s.v.as<float>();
  float* att = s.att.as<float>();
  float* hb = s.hb.as<float>();
  float* hb2 = s.hb2.as<float>();
  int32_t* pos = s.positions.as<int32_t>();
  // Next RoPE position: one past the newest slot's (equal to n_past unless a
  // pruning KV cache dropped slots from the middle).
  const int pos0 = n_past > 0 ? kv.position(n_past - 1) + 1 : 0;
  for (int t = 0; t < n; ++t) pos[t] = pos0 + t;
  // RoPE's cos/sin per token, once for every layer: [n][n_rot / 2] each.
  float* rope_cs = s.rope.as<float>();
  float* rope_sn = rope_cs + static_cast<size_t>(n) * (hp.n_rot / 2);
  for (int t = 0; t < n; ++t) RopeTable(pos[t], rope_cs + t * (hp.n_rot / 2), rope_sn + t * (hp.n_rot / 2));

  {
    Held emb(weights, embeddings_component());
    TF_RETURN_IF_ERROR(emb.Get());
    const WeightMatrix& tok_embd = emb->matrix;
    for (int t = 0; t < n; ++t) DequantizeRow(tok_embd.type, tok_embd.row(tokens[t]), x + t * D, D);
  }

  const float attn_scale = 1.0f / std::sqrt(static_cast<float>(HD));
  for (int il = 0; il < hp.n_layer; ++il) {
    Held held(weights, il);
    TF_RETURN_IF_ERROR(held.Get());
    const LayerWeights& L = held->layer;
    const int site = il * kMatMulSitesPerLayer;
    // Attention block.
    for (int t = 0; t < n; ++t) RmsNorm(x + t * D, L.attn_norm.as<float>(), xb + t * D, D, hp.rms_eps);
    // q, k and v read the same input: pack it once when their types agree.
    MatMulSameInput(pool, {{&L.wq, q}, {&L.wk, k}, {&L.wv, v}}, xb, n, s, site + kSiteQ);
    if (hp.qkv_bias) {
      for (int t = 0; t < n; ++t) {
        for (int i = 0; i < QD; ++i) q[t * QD + i] += L.bq.as<float>()[i];
        for (int i = 0; i < KVD; ++i) {
          k[t * KVD + i] += L.bk.as<float>()[i];
          v[t * KVD + i] += L.bv.as<float>()[i];
        }
      }
    }
    for (int t = 0; t < n; ++t) {
      const float* cs = rope_cs + t * (hp.n_rot / 2);
      const float* sn = rope_sn + t * (hp.n_rot / 2);
      ApplyRope(q + t * QD, hp.n_head, cs, sn);
      ApplyRope(k + t * KVD, hp.n_head_kv, cs, sn);
    }
    TF_RETURN_IF_ERROR(kv.Write(il, n, pos, k, v));
    // One task per (token, kv head): the gqa query heads sharing a kv head are
    // contiguous in q and att, and read its K/V rows together.
    const int gqa = hp.n_gqa();
    pool.ParallelFor(static_cast<size_t>(n) * hp.n_head_kv, [&](size_t b, size_t e, int ti) {
      float* scores = s.scores.as<float>() + static_cast<size_t>(ti) * gqa * s.n_ctx;
      for (size_t i = b; i < e; ++i) {
        const int t = static_cast<int>(i / hp.n_head_kv), j = static_cast<int>(i % hp.n_head_kv);
        const size_t off = static_cast<size_t>(t) * QD + static_cast<size_t>(j) * gqa * HD;
        kv.AttendGroup(il, j, q + off, gqa, attn_scale, n_past + t + 1, scores, att + off);
      }
    });
    // x += attention output, each thread for the rows it computed.
    auto add_residual = [&](int64_t b, int64_t e) {
      for (int t = 0; t < n; ++t)
        for (int64_t i = b; i < e; ++i) x[t * D + i] += xb[t * D + i];
    };
    MatMul(pool, L.wo, att, n, xb, s, site + kSiteO, false, add_residual);

    // Feed-forward block (SwiGLU).
    for (int t = 0; t < n; ++t) RmsNorm(x + t * D, L.ffn_norm.as<float>(), xb + t * D, D, hp.rms_eps);
    // hb = silu(gate) * up, each thread for the rows of up it computed (and of gate: the
    // same rows, in the same pass when the types agree; else gate's are all done before).
    MatMulSameInput(pool, {{&L.w_gate, hb}, {&L.w_up, hb2}}, xb, n, s, site + kSiteGate, [&](int64_t b, int64_t e) {
      for (int t = 0; t < n; ++t) SiluMul(hb + t * FF + b, hb2 + t * FF + b, e - b);
    });
    MatMul(pool, L.w_down, hb, n, xb, s, site + kSiteDown, false, add_residual);
  }

  // Output head: every token (perplexity) or just the last.
  const int first = s.all_logits ? 0 : n - 1;
  const int n_out = n - first;
  {
    Held norm(weights, output_norm_component());
    TF_RETURN_IF_ERROR(norm.Get());
    for (int t = 0; t < n_out; ++t) {
      RmsNorm(x + (first + t) * D, norm->vec.as<float>(), xb + t * D, D, hp.rms_eps);
    }
  }
  Held head(weights, lm_head_component());
  TF_RETURN_IF_ERROR(head.Get());
  MatMul(pool, head->matrix, xb, n_out, s.logits.as<float>(), s, hp.n_layer * kMatMulSitesPerLayer);
  // Only now, with every weight read, do the step's tokens join the cache.
  return kv.Commit(n, pos);
}

}  // namespace tabfit
