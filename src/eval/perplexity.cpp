#include "eval/perplexity.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

#include "core/thread_pool.h"
#include "kv/kv_factory.h"
#include "model/llama/llama_model.h"

namespace tabfit {

namespace {

constexpr char kMagic[4] = {'T', 'F', 'L', 'G'};
constexpr uint32_t kVersion = 2;
size_t RecordBytes(uint32_t version, uint32_t n_vocab) { return (version >= 2 ? 12 : 4) + 2ull * n_vocab; }
constexpr size_t kHeaderBytes = 4 + 4 * 5 + 8 + 4;

double Now() {
  using namespace std::chrono;
  return duration<double>(steady_clock::now().time_since_epoch()).count();
}

template <typename T>
void PutLe(uint8_t*& p, T v) {
  std::memcpy(p, &v, sizeof(T));
  p += sizeof(T);
}
template <typename T>
T GetLe(const uint8_t*& p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  p += sizeof(T);
  return v;
}

}  // namespace

uint64_t HashTokens(const int32_t* tokens, size_t n) {
  uint64_t h = 1469598103934665603ull;
  const uint8_t* b = reinterpret_cast<const uint8_t*>(tokens);
  for (size_t i = 0; i < n * sizeof(int32_t); ++i) {
    h ^= b[i];
    h *= 1099511628211ull;
  }
  return h;
}

void LogSoftmax(const float* logits, int n, float* out) {
  float mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const float lse = mx + static_cast<float>(std::log(sum));
  for (int i = 0; i < n; ++i) out[i] = logits[i] - lse;
}

double PerplexityResult::ppl() const { return std::exp(nll_mean); }
double PerplexityResult::ppl_stderr() const { return ppl() * nll_stderr; }

// ---- reference files --------------------------------------------------------

Result<std::unique_ptr<ReferenceFileWriter>> ReferenceFileWriter::Create(const std::string& path,
                                                                         const ReferenceHeader& h) {
  std::unique_ptr<ReferenceFileWriter> w(new ReferenceFileWriter());
  w->path_ = path;
  w->h_ = h;
  w->f_.open(path + ".tmp", std::ios::binary | std::ios::trunc);
  if (!w->f_) return IoError("cannot create '" + path + ".tmp' (check the directory exists and is writable)");
  uint8_t buf[kHeaderBytes];
  uint8_t* p = buf;
  std::memcpy(p, kMagic, 4);
  p += 4;
  PutLe<uint32_t>(p, kVersion);
  PutLe<uint32_t>(p, h.n_vocab);
  PutLe<uint32_t>(p, h.n_ctx);
  PutLe<uint32_t>(p, h.first);
  PutLe<uint32_t>(p, h.n_chunks);
  PutLe<uint64_t>(p, h.tokens_hash);
  PutLe<float>(p, h.step);
  w->f_.write(reinterpret_cast<const char*>(buf), kHeaderBytes);
  return w;
}

Status ReferenceFileWriter::AddChunk(const float* lp, const int32_t* targets, int n_scored, int n_vocab) {
  if (static_cast<uint32_t>(n_vocab) != h_.n_vocab || n_scored != static_cast<int>(h_.n_ctx - 1 - h_.first)) {
    return Internal("reference writer: chunk shape does not match the header");
  }
  std::vector<uint8_t> rec(RecordBytes(kVersion, n_vocab));
  const float inv = 1.f / h_.step;
  for (int i = 0; i < n_scored; ++i) {
    const float* row = lp + static_cast<size_t>(i) * n_vocab;
    float mx = *std::max_element(row, row + n_vocab);
    uint8_t* p = rec.data();
    PutLe<float>(p, mx);
    PutLe<int32_t>(p, targets[i]);
    PutLe<float>(p, row[targets[i]]);
    for (int v = 0; v < n_vocab; ++v) {
      float c = std::nearbyint((mx - row[v]) * inv);
      PutLe<uint16_t>(p, static_cast<uint16_t>(std::clamp(c, 0.f, 65535.f)));
    }
    f_.write(reinterpret_cast<const char*>(rec.data()), static_cast<std::streamsize>(rec.size()));
  }
  if (!f_) return IoError("writing '" + path_ + ".tmp' failed (disk full?)");
  ++chunks_;
  return Status::Ok();
}

Status ReferenceFileWriter::Finish() {
  if (chunks_ != h_.n_chunks) {
    return Internal("reference writer: " + std::to_string(chunks_) + " chunks written, header says " +
                    std::to_string(h_.n_chunks));
  }
  f_.close();
  if (!f_) return IoError("closing '" + path_ + ".tmp' failed");
  if (std::rename((path_ + ".tmp").c_str(), path_.c_str()) != 0) {
    return IoError("cannot rename '" + path_ + ".tmp' to '" + path_ + "'");
  }
  return Status::Ok();
}

Result<std::unique_ptr<ReferenceFileReader>> ReferenceFileReader::Open(const std::string& path) {
  std::unique_ptr<ReferenceFileReader> r(new ReferenceFileReader());
  r->path_ = path;
  r->f_.open(path, std::ios::binary);
  if (!r->f_) return NotFound("cannot open reference logits '" + path + "'; create it with `tabfit eval --save-logits`");
  r->f_.seekg(0, std::ios::end);
  const uint64_t size = static_cast<uint64_t>(r->f_.tellg());
  r->f_.seekg(0);
  uint8_t buf[kHeaderBytes];
  if (size < kHeaderBytes || !r->f_.read(reinterpret_cast<char*>(buf), kHeaderBytes)) {
    return CorruptData(path + ": too short for a reference logits header (" + std::to_string(size) + " bytes)");
  }
  if (std::memcmp(buf, kMagic, 4) != 0) {
    return CorruptData(path + ": not a tabfit reference logits file (magic is not TFLG)");
  }
  const uint8_t* p = buf + 4;
  uint32_t version = GetLe<uint32_t>(p);
  if (version != 1 && version != 2) {
    return Unsupported(path + ": reference logits version " + std::to_string(version) + " (this build reads 1 and 2)");
  }
  r->version_ = version;
  ReferenceHeader& h = r->h_;
  h.n_vocab = GetLe<uint32_t>(p);
  h.n_ctx = GetLe<uint32_t>(p);
  h.first = GetLe<uint32_t>(p);
  h.n_chunks = GetLe<uint32_t>(p);
  h.tokens_hash = GetLe<uint64_t>(p);
  h.step = GetLe<float>(p);
  if (h.n_vocab == 0 || h.n_ctx < 2 || h.first >= h.n_ctx - 1 || !(h.step > 0) || !std::isfinite(h.step)) {
    return CorruptData(path + ": invalid header (n_vocab " + std::to_string(h.n_vocab) + ", n_ctx " +
                       std::to_string(h.n_ctx) + ", first " + std::to_string(h.first) + ")");
  }
  const uint64_t per_pos = RecordBytes(version, h.n_vocab);
  const uint64_t want = kHeaderBytes + per_pos * (h.n_ctx - 1 - h.first) * static_cast<uint64_t>(h.n_chunks);
  if (size != want) {
    return CorruptData(path + ": " + std::to_string(size) + " bytes but the header implies " + std::to_string(want) +
                       " (truncated or not written completely); recreate it with --save-logits");
  }
  return r;
}

Result<const float*> ReferenceFileReader::Chunk(int chunk, int n_scored, int n_vocab) {
  if (chunk < 0 || static_cast<uint32_t>(chunk) >= h_.n_chunks) {
    return OutOfRange(path_ + ": holds " + std::to_string(h_.n_chunks) + " chunks; chunk " + std::to_string(chunk) +
                      " was asked for (evaluate fewer chunks with --chunks)");
  }
  if (static_cast<uint32_t>(n_vocab) != h_.n_vocab || n_scored != static_cast<int>(h_.n_ctx - 1 - h_.first)) {
    return InvalidArgument(path_ + ": made with vocab " + std::to_string(h_.n_vocab) + ", n_ctx " +
                           std::to_string(h_.n_ctx) + "; this run differs");
  }
  const uint64_t per_pos = RecordBytes(version_, n_vocab);
  raw_.resize(per_pos * n_scored);
  lp_.resize(static_cast<size_t>(n_scored) * n_vocab);
  f_.seekg(static_cast<std::streamoff>(kHeaderBytes + per_pos * n_scored * static_cast<uint64_t>(chunk)));
  if (!f_.read(reinterpret_cast<char*>(raw_.data()), static_cast<std::streamsize>(raw_.size()))) {
    return IoError(path_ + ": read of chunk " + std::to_string(chunk) + " failed");
  }
  for (int i = 0; i < n_scored; ++i) {
    const uint8_t* p = raw_.data() + per_pos * i;
    float mx = GetLe<float>(p);
    int32_t target = -1;
    float lp_target = 0;
    if (version_ >= 2) {
      target = GetLe<int32_t>(p);
      lp_target = GetLe<float>(p);
      if (target < 0 || target >= n_vocab) {
        return CorruptData(path_ + ": chunk " + std::to_string(chunk) + " position " + std::to_string(i) +
                           " names target token " + std::to_string(target) + " outside the vocabulary");
      }
    }
    float* out = lp_.data() + static_cast<size_t>(i) * n_vocab;
    for (int v = 0; v < n_vocab; ++v) out[v] = mx - GetLe<uint16_t>(p) * h_.step;
    if (target >= 0) out[target] = lp_target;
  }
  return lp_.data();
}

Status MemoryReference::AddChunk(const float* lp, const int32_t*, int n_scored, int n_vocab) {
  chunks_.emplace_back(lp, lp + static_cast<size_t>(n_scored) * n_vocab);
  return Status::Ok();
}

Result<const float*> MemoryReference::Chunk(int chunk, int n_scored, int n_vocab) {
  if (chunk < 0 || chunk >= static_cast<int>(chunks_.size())) {
    return OutOfRange("reference holds " + std::to_string(chunks_.size()) + " chunks; chunk " + std::to_string(chunk) +
                      " was asked for");
  }
  if (chunks_[chunk].size() != static_cast<size_t>(n_scored) * n_vocab) {
    return InvalidArgument("reference chunk shape differs from this run");
  }
  return chunks_[chunk].data();
}

// ---- runner ----------------------------------------------------------------

namespace {
constexpr int kPruneBatch = 16;  // tokens per forward step when the KV cache prunes
}  // namespace

PerplexityRunner::~PerplexityRunner() {
  scratch_.reset();
  kv_.reset();
}

Result<std::unique_ptr<PerplexityRunner>> PerplexityRunner::Create(const LlamaModel& model,
                                                                   const PerplexityOptions& o) {
  std::unique_ptr<PerplexityRunner> r(new PerplexityRunner());
  r->model_ = &model;
  r->opt_ = o;
  const LlamaHParams& hp = model.hparams();
  if (o.n_ctx < 4) return InvalidArgument("perplexity: context must be at least 4 tokens");
  if (o.n_ctx > hp.n_ctx_train) {
    return InvalidArgument("perplexity: context " + std::to_string(o.n_ctx) + " exceeds the model's training context " +
                           std::to_string(hp.n_ctx_train));
  }
  r->first_ = o.first < 0 ? o.n_ctx / 2 : o.first;
  if (r->first_ >= o.n_ctx - 1) {
    return InvalidArgument("perplexity: first scored position " + std::to_string(r->first_) + " leaves nothing to "
                           "score in a context of " + std::to_string(o.n_ctx));
  }
  int threads = o.threads > 0 ? o.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  r->pool_ = std::make_unique<ThreadPool>(threads);
  KvCacheConfig kc;
  kc.n_layers = hp.n_layer;
  kc.n_kv_heads = hp.n_head_kv;
  kc.head_dim = hp.head_dim;
  kc.capacity = o.n_ctx;
  kc.type = o.kv_type;
  KvCacheOptions ko;
  ko.recent_window = o.kv_recent;
  ko.lowbit = o.kv_lowbit;
  ko.prune = o.kv_prune_config;
  int batch = o.n_ctx;
  if (o.kv_prune > 0.f) {
    if (!(o.kv_prune < 1.f)) return InvalidArgument("perplexity: --kv-prune must be in (0, 1)");
    batch = kPruneBatch;
    kc.capacity = std::max(1, static_cast<int>(o.kv_prune * o.n_ctx));
    ko.prune.sinks = o.kv_sinks;
    ko.prune.recent = o.kv_keep_recent > 0 ? o.kv_keep_recent : kc.capacity * 3 / 4;
    ko.prune.recency_only = o.kv_prune_recency;
    // Evict just enough for the next batch (the cache stays as full as it can).
    ko.prune.auto_keep = 1.f - static_cast<float>(kPruneBatch) / kc.capacity;
    if (kc.capacity < o.kv_sinks + ko.prune.recent + kPruneBatch || ko.prune.auto_keep <= 0.f) {
      return InvalidArgument("perplexity: --kv-prune " + std::to_string(o.kv_prune) + " of " +
                             std::to_string(o.n_ctx) + " leaves no room beyond the protected sink and recent tokens; "
                             "use a larger fraction or context");
    }
  }
  TF_ASSIGN_OR_RETURN(r->kv_, MakeKvCache(kc, ko, r->ledger_));
  TF_ASSIGN_OR_RETURN(ForwardScratch s, model.CreateScratch(r->ledger_, batch, kc.capacity, threads, true));
  r->scratch_ = std::make_unique<ForwardScratch>(std::move(s));
  return r;
}

uint64_t PerplexityRunner::kv_bytes() const { return kv_->bytes(); }
int PerplexityRunner::kv_tokens() const { return kv_->size(); }

int PerplexityRunner::ChunksFor(size_t n_tokens) const {
  int n = static_cast<int>(n_tokens / opt_.n_ctx);
  return opt_.n_chunks > 0 ? std::min(n, opt_.n_chunks) : n;
}

Result<const float*> PerplexityRunner::ChunkLogProbs(const int32_t* chunk_tokens) {
  const int n_ctx = opt_.n_ctx;
  const int n_vocab = model_->hparams().n_vocab;
  kv_->Clear();
  const int n_scored = n_scored_per_chunk();
  lp_.resize(static_cast<size_t>(n_scored) * n_vocab);
  PruningKvCache* pruning = AsPruning(kv_.get());
  const int batch = pruning ? kPruneBatch : n_ctx;
  for (int b0 = 0; b0 < n_ctx; b0 += batch) {
    const int n = std::min(batch, n_ctx - b0);
    if (pruning) TF_RETURN_IF_ERROR(pruning->MakeRoom(n).status());
    TF_RETURN_IF_ERROR(model_->Forward(chunk_tokens + b0, n, *kv_, *pool_, *scratch_));
    // Scored rows: positions first_ .. n_ctx-2 (lp_ row i is position first_ + i).
    const int lo = std::max(b0, first_), hi = std::min(b0 + n, n_ctx - 1);
    if (lo >= hi) continue;
    const float* logits = scratch_->logits.as<float>();
    pool_->ParallelFor(hi - lo, [&](size_t b, size_t e, int) {
      for (size_t i = b; i < e; ++i) {
        const size_t p = lo + i;
        LogSoftmax(logits + (p - b0) * static_cast<size_t>(n_vocab), n_vocab, lp_.data() + (p - first_) * n_vocab);
      }
    });
  }
  return lp_.data();
}

Result<PerplexityResult> PerplexityRunner::Run(const std::vector<int32_t>& tokens, int32_t bos, ReferenceSink* save,
                                               ReferenceSource* ref,
                                               const std::function<bool(int, int, double)>& progress) {
  const int n_ctx = opt_.n_ctx;
  const int n_vocab = model_->hparams().n_vocab;
  const int n_chunks = ChunksFor(tokens.size());
  if (n_chunks < 1) {
    return InvalidArgument("perplexity: the text has " + std::to_string(tokens.size()) +
                           " tokens, fewer than one chunk of " + std::to_string(n_ctx) +
                           "; give a longer text or a smaller --ctx");
  }
  const int n_scored = n_scored_per_chunk();
  PerplexityResult res;
  res.has_reference = ref != nullptr;
  double t0 = Now();
  double nll = 0, nll2 = 0, kl = 0, kl2 = 0, ref_nll = 0;
  int64_t agree = 0, count = 0;
  std::vector<int32_t> chunk(n_ctx);
  for (int c = 0; c < n_chunks; ++c) {
    std::copy(tokens.begin() + static_cast<size_t>(c) * n_ctx, tokens.begin() + static_cast<size_t>(c + 1) * n_ctx,
              chunk.begin());
    chunk[0] = bos;
    TF_ASSIGN_OR_RETURN(const float* lp, ChunkLogProbs(chunk.data()));
    if (save) TF_RETURN_IF_ERROR(save->AddChunk(lp, chunk.data() + first_ + 1, n_scored, n_vocab));
    const float* rlp = nullptr;
    if (ref) {
      TF_ASSIGN_OR_RETURN(rlp, ref->Chunk(c, n_scored, n_vocab));
    }
    for (int i = 0; i < n_scored; ++i) {
      const float* row = lp + static_cast<size_t>(i) * n_vocab;
      const int32_t target = chunk[first_ + i + 1];
      double v = -static_cast<double>(row[target]);
      nll += v;
      nll2 += v * v;
      if (rlp) {
        const float* rrow = rlp + static_cast<size_t>(i) * n_vocab;
        double k = 0;
        int am = 0, ram = 0;
        for (int t = 0; t < n_vocab; ++t) {
          double p = std::exp(static_cast<double>(rrow[t]));
          k += p * (static_cast<double>(rrow[t]) - row[t]);
          if (row[t] > row[am]) am = t;
          if (rrow[t] > rrow[ram]) ram = t;
        }
        kl += k;
        kl2 += k * k;
        res.kl_max = std::max(res.kl_max, k);
        agree += am == ram;
        ref_nll += -static_cast<double>(rrow[target]);
      }
      ++count;
    }
    res.chunk_ppl.push_back(std::exp(nll / count));
    if (progress && !progress(c + 1, n_chunks, res.chunk_ppl.back())) {
      return Cancelled("perplexity cancelled after chunk " + std::to_string(c + 1));
    }
  }
  auto stderr_of = [&](double s, double s2) {
    double m = s / count, var = s2 / count - m * m;
    return count > 1 ? std::sqrt(std::max(0.0, var) / (count - 1)) : 0.0;
  };
  res.n_chunks = n_chunks;
  res.n_scored = count;
  res.nll_mean = nll / count;
  res.nll_stderr = stderr_of(nll, nll2);
  if (ref) {
    res.kl_mean = kl / count;
    res.kl_stderr = stderr_of(kl, kl2);
    res.top1 = static_cast<double>(agree) / count;
    res.top1_stderr = count > 1 ? std::sqrt(res.top1 * (1 - res.top1) / (count - 1)) : 0.0;
    res.ref_nll_mean = ref_nll / count;
  }
  res.seconds = Now() - t0;
  return res;
}

}  // namespace tabfit
