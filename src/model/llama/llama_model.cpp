// Loading llama-family weights from a GGUF into ledger buffers.
#include "model/llama/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "model/gguf/gguf.h"
#include "quant/kernels.h"

namespace tabfit {

namespace {

std::string LayerComponent(int il) { return "layers." + std::to_string(il); }

struct LoadContext {
  const GgufFile& g;
  MemoryLedger& ledger;
  const ModelLoadOptions& opt;
  uint64_t done = 0;
  uint64_t total = 0;

  const std::string& file() const { return g.source().name(); }

  Status Progress(const std::string& component) {
    if (opt.progress && !opt.progress(done, total, component)) {
      return Cancelled("loading " + file() + " was cancelled at " + component);
    }
    return Status::Ok();
  }

  Result<const GgufTensorInfo*> Find(const std::string& name) {
    const GgufTensorInfo* t = g.FindTensor(name);
    if (!t) {
      return NotFound(file() + ": tensor '" + name +
                      "' is missing; the file is not a complete llama-family model (re-convert it)");
    }
    return t;
  }

  Status CheckShape(const GgufTensorInfo& t, std::vector<int64_t> want) {
    if (t.ne != want) {
      auto fmt = [](const std::vector<int64_t>& v) {
        std::string s = "[";
        for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + std::to_string(v[i]);
        return s + "]";
      };
      return CorruptData(file() + ": tensor '" + t.name + "' has shape " + fmt(t.ne) + " but the hyper-parameters say " +
                         fmt(want) + "; the file's metadata and tensors disagree");
    }
    return Status::Ok();
  }

  // Reads a 1-D tensor of n elements as f32.
  Result<Buffer> LoadVector(const std::string& name, int64_t n, const std::string& component) {
    TF_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(name));
    TF_RETURN_IF_ERROR(CheckShape(*t, {n}));
    TF_ASSIGN_OR_RETURN(Buffer out, ledger.Allocate(component, n * sizeof(float)));
    if (t->type == TensorType::kF32) {
      TF_RETURN_IF_ERROR(g.ReadTensor(*t, out.data()));
    } else if (t->type == TensorType::kF16 || t->type == TensorType::kBF16) {
      std::vector<uint16_t> tmp(n);
      TF_RETURN_IF_ERROR(g.ReadTensor(*t, tmp.data()));
      for (int64_t i = 0; i < n; ++i) {
        out.as<float>()[i] = t->type == TensorType::kF16 ? F16ToF32(tmp[i]) : Bf16ToF32(tmp[i]);
      }
    } else {
      return Unsupported(file() + ": 1-D tensor '" + name + "' has type " + std::string(TensorTypeName(t->type)) +
                         "; only F32/F16/BF16 vectors are supported");
    }
    done += t->nbytes;
    return out;
  }

  // How a 2-D tensor [rows x cols] will be held: its type, layout and rows per
  // indivisible unit (a layout's tile), before any memory is allocated.
  struct MatrixPlan {
    const GgufTensorInfo* info = nullptr;  // the file's tensor (shape checked)
    std::string name;
    int64_t rows = 0, cols = 0;
    TensorType target = TensorType::kF32;
    WeightLayout layout = WeightLayout::kRowMajor;
    size_t bytes() const { return RowBytes(target, cols) * rows; }
    size_t unit() const { return RowBytes(target, cols) * LayoutTileRows(layout); }
  };

  // matmul_only: the matrix is never read row by row, so it may get a run-time layout.
  Result<MatrixPlan> PlanMatrix(const std::string& name, int64_t rows, int64_t cols, bool matmul_only = true) {
    MatrixPlan p{nullptr, name, rows, cols};
    TF_ASSIGN_OR_RETURN(p.info, Find(name));
    TF_RETURN_IF_ERROR(CheckShape(*p.info, {cols, rows}));  // before anything is allocated for it
    TF_ASSIGN_OR_RETURN(p.target, TargetType(*p.info, cols));
    p.layout = matmul_only && opt.runtime_layouts ? PreferredLayout(p.target, rows, cols) : WeightLayout::kRowMajor;
    // A chunk must hold a whole tile; with a tiny max buffer size keep rows.
    if (p.unit() > ledger.max_buffer_bytes()) p.layout = WeightLayout::kRowMajor;
    return p;
  }

  // Reads a 2-D tensor, converting to the requested type, into `data` (allocated
  // for the plan: chunks of whole units).
  Status FillMatrix(const MatrixPlan& p, const std::string& component, ChunkedBuffer data, WeightMatrix* out) {
    TF_RETURN_IF_ERROR(LoadRows(p, component, std::move(data), out));
    if (p.layout == WeightLayout::kRowMajor) return Status::Ok();
    // In place, chunk by chunk (every chunk holds whole tiles).
    TF_ASSIGN_OR_RETURN(Buffer scratch, ledger.Allocate("loader", LayoutScratchBytes(p.layout, out->type, p.cols)));
    const int64_t per = out->rows_per_chunk();
    for (size_t c = 0; c < out->data.chunks.size(); ++c) {
      const int64_t nr = std::min<int64_t>(per, p.rows - static_cast<int64_t>(c) * per);
      ToLayout(p.layout, out->type, out->data.chunks[c].data(), nr, p.cols, scratch.data());
    }
    out->layout = p.layout;
    return Status::Ok();
  }

  // One matrix in buffers of its own (embeddings, lm_head).
  Status LoadMatrix(const std::string& name, int64_t rows, int64_t cols, const std::string& component,
                    WeightMatrix* out, bool matmul_only = true) {
    TF_ASSIGN_OR_RETURN(const MatrixPlan p, PlanMatrix(name, rows, cols, matmul_only));
    TF_ASSIGN_OR_RETURN(ChunkedBuffer data, ledger.AllocateChunked(component, p.bytes(), p.unit()));
    return FillMatrix(p, component, std::move(data), out);
  }

  // Several matrices of one component in one ledger block (AllocateGroup: huge pages
  // then cover the small attention matrices and the matrices' tails too), in order.
  Status LoadMatrices(const std::string& component, const std::vector<std::pair<MatrixPlan, WeightMatrix*>>& ms) {
    std::vector<std::pair<size_t, size_t>> ranges;
    for (const auto& [p, out] : ms) ranges.emplace_back(p.bytes(), p.unit());
    TF_ASSIGN_OR_RETURN(std::vector<ChunkedBuffer> data, ledger.AllocateChunkedGroup(component, ranges));
    for (size_t i = 0; i < ms.size(); ++i) {
      TF_RETURN_IF_ERROR(FillMatrix(ms[i].first, component, std::move(data[i]), ms[i].second));
    }
    return Status::Ok();
  }

  // The type a tensor is loaded as: the file's, or the requested one where it fits.
  Result<TensorType> TargetType(const GgufTensorInfo& info, int64_t cols) {
    const GgufTensorInfo* t = &info;
    const std::string& name = info.name;
    if (!IsSupported(t->type)) {
      return Unsupported(file() + ": tensor '" + name + "' has type " + std::string(TensorTypeName(t->type)) +
                         ", which this build cannot compute with; re-quantize the model to F16, Q8_0 or Q4_0");
    }
    TensorType target = t->type;
    std::optional<TensorType> want = opt.weight_type;
    if (opt.type_for_tensor) {
      if (auto o = opt.type_for_tensor(name)) want = o;
    }
    if (want && IsSupported(*want) && RowBytes(*want, cols) != 0) target = *want;
    return target;
  }

  // Reads the planned tensor row-major into `data`, converting to the plan's
  // type; data's chunks hold whole rows.
  Status LoadRows(const MatrixPlan& p, const std::string& component, ChunkedBuffer data, WeightMatrix* out) {
    const GgufTensorInfo* t = p.info;
    const int64_t rows = p.rows, cols = p.cols;
    const TensorType target = p.target;
    out->name = p.name;
    out->type = target;
    out->rows = rows;
    out->cols = cols;
    out->row_bytes = RowBytes(target, cols);
    out->data = std::move(data);
    const size_t src_row_bytes = t->row_bytes();
    constexpr int64_t kBatchRows = 64;
    if (target == t->type) {
      // Straight copy, chunk by chunk (a chunk holds whole rows).
      const int64_t per = out->rows_per_chunk();
      for (size_t c = 0; c < out->data.chunks.size(); ++c) {
        int64_t r0 = c * per, nr = std::min(per, rows - r0);
        for (int64_t r = 0; r < nr; r += kBatchRows * 16) {
          int64_t n = std::min<int64_t>(kBatchRows * 16, nr - r);
          TF_RETURN_IF_ERROR(g.ReadTensorRows(*t, r0 + r, n, out->data.chunks[c].as<uint8_t>() + r * src_row_bytes));
          done += n * src_row_bytes;
          TF_RETURN_IF_ERROR(Progress(component));
        }
      }
      return Status::Ok();
    }
    // Convert: read a batch of rows, dequantize each to f32, quantize to the target.
    TF_ASSIGN_OR_RETURN(Buffer raw, ledger.Allocate("loader", kBatchRows * src_row_bytes));
    TF_ASSIGN_OR_RETURN(Buffer f32, ledger.Allocate("loader", cols * sizeof(float)));
    for (int64_t r = 0; r < rows; r += kBatchRows) {
      int64_t n = std::min<int64_t>(kBatchRows, rows - r);
      TF_RETURN_IF_ERROR(g.ReadTensorRows(*t, r, n, raw.data()));
      for (int64_t i = 0; i < n; ++i) {
        DequantizeRow(t->type, raw.as<uint8_t>() + i * src_row_bytes, f32.as<float>(), cols);
        QuantizeRow(target, f32.as<float>(), out->data.at((r + i) * out->row_bytes), cols, nullptr);
      }
      done += n * src_row_bytes;
      TF_RETURN_IF_ERROR(Progress(component));
    }
    return Status::Ok();
  }
};

}  // namespace

uint64_t LlamaModel::weight_bytes() const {
  uint64_t sum = tok_embd_.bytes() + (tied_output_ ? 0 : output_.bytes()) + output_norm_.size();
  for (const auto& l : layers_) {
    sum += l.attn_norm.size() + l.ffn_norm.size() + l.bq.size() + l.bk.size() + l.bv.size();
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) sum += m->bytes();
  }
  return sum;
}

std::vector<std::tuple<std::string, TensorType, uint64_t>> LlamaModel::WeightTable() const {
  std::vector<std::tuple<std::string, TensorType, uint64_t>> out;
  out.emplace_back(tok_embd_.name, tok_embd_.type, tok_embd_.bytes());
  for (const auto& l : layers_) {
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) {
      out.emplace_back(m->name, m->type, m->bytes());
    }
  }
  if (!tied_output_) out.emplace_back(output_.name, output_.type, output_.bytes());
  return out;
}

std::vector<std::pair<std::string, WeightLayout>> LlamaModel::LayoutTable() const {
  std::vector<std::pair<std::string, WeightLayout>> out;
  auto add = [&](const WeightMatrix& m) {
    if (m.layout != WeightLayout::kRowMajor) out.emplace_back(m.name, m.layout);
  };
  add(tok_embd_);
  for (const auto& l : layers_) {
    for (const WeightMatrix* m : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down}) add(*m);
  }
  if (!tied_output_) add(output_);
  return out;
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::Load(const GgufFile& g, MemoryLedger& ledger,
                                                     const ModelLoadOptions& options) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  TF_ASSIGN_OR_RETURN(m->hp_, ReadLlamaHParams(g));
  const LlamaHParams& hp = m->hp_;
  LoadContext ctx{g, ledger, options};
  for (const auto& t : g.tensors()) ctx.total += t.nbytes;

  TF_RETURN_IF_ERROR(ctx.Progress("embeddings"));
  TF_RETURN_IF_ERROR(ctx.LoadMatrix("token_embd.weight", hp.n_vocab, hp.n_embd, "embeddings", &m->tok_embd_,
                                        /*matmul_only=*/false));
  m->layers_.resize(hp.n_layer);
  for (int il = 0; il < hp.n_layer; ++il) {
    LayerWeights& L = m->layers_[il];
    const std::string c = LayerComponent(il);
    const std::string p = "blk." + std::to_string(il) + ".";
    TF_ASSIGN_OR_RETURN(L.attn_norm, ctx.LoadVector(p + "attn_norm.weight", hp.n_embd, c));
    if (hp.qkv_bias) {
      TF_ASSIGN_OR_RETURN(L.bq, ctx.LoadVector(p + "attn_q.bias", hp.q_dim(), c));
      TF_ASSIGN_OR_RETURN(L.bk, ctx.LoadVector(p + "attn_k.bias", hp.kv_dim(), c));
      TF_ASSIGN_OR_RETURN(L.bv, ctx.LoadVector(p + "attn_v.bias", hp.kv_dim(), c));
    }
    TF_ASSIGN_OR_RETURN(L.ffn_norm, ctx.LoadVector(p + "ffn_norm.weight", hp.n_embd, c));
    // The layer's seven matrices in one block, in the order a decode step reads them.
    std::vector<std::pair<LoadContext::MatrixPlan, WeightMatrix*>> ms;
    for (auto [name, rows, cols, out] : {std::tuple{"attn_q.weight", hp.q_dim(), hp.n_embd, &L.wq},
                                         {"attn_k.weight", hp.kv_dim(), hp.n_embd, &L.wk},
                                         {"attn_v.weight", hp.kv_dim(), hp.n_embd, &L.wv},
                                         {"attn_output.weight", hp.n_embd, hp.q_dim(), &L.wo},
                                         {"ffn_gate.weight", hp.n_ff, hp.n_embd, &L.w_gate},
                                         {"ffn_up.weight", hp.n_ff, hp.n_embd, &L.w_up},
                                         {"ffn_down.weight", hp.n_embd, hp.n_ff, &L.w_down}}) {
      TF_ASSIGN_OR_RETURN(auto plan, ctx.PlanMatrix(p + name, rows, cols));
      ms.emplace_back(std::move(plan), out);
    }
    TF_RETURN_IF_ERROR(ctx.LoadMatrices(c, ms));
  }
  TF_ASSIGN_OR_RETURN(m->output_norm_, ctx.LoadVector("output_norm.weight", hp.n_embd, "output_norm"));
  if (g.FindTensor("output.weight")) {
    TF_RETURN_IF_ERROR(ctx.LoadMatrix("output.weight", hp.n_vocab, hp.n_embd, "lm_head", &m->output_));
  } else {
    m->tied_output_ = true;  // lm_head shares the embedding matrix
  }
  ctx.done = ctx.total;
  TF_RETURN_IF_ERROR(ctx.Progress("done"));

  // RoPE: theta_i = pos * scale^i, iterated in float exactly as ggml does.
  m->rope_theta_scale_ = std::pow(hp.rope_base, -2.0f / hp.n_rot);
  return m;
}

}  // namespace tabfit
