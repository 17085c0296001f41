// Planning, allocating and reading a llama-family model's weights, component by
// component (weights.h), and LlamaModel::Load, which does all three up front.
#include "model/llama/llama_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/f16.h"
#include "model/gguf/gguf.h"
#include "quant/kernels.h"

namespace tabfit {

namespace {

// Which field of ComponentWeights a tensor fills (TensorPlan::slot).
enum Slot {
  kAttnNorm, kFfnNorm, kBq, kBk, kBv,                 // layer vectors
  kWq, kWk, kWv, kWo, kWGate, kWUp, kWDown,           // layer matrices
  kMatrix, kVector,                                   // embeddings / lm_head; output_norm
};

Buffer* VectorSlot(ComponentWeights* w, int slot) {
  switch (slot) {
    case kAttnNorm: return &w->layer.attn_norm;
    case kFfnNorm: return &w->layer.ffn_norm;
    case kBq: return &w->layer.bq;
    case kBk: return &w->layer.bk;
    case kBv: return &w->layer.bv;
    case kVector: return &w->vec;
    default: return nullptr;
  }
}

WeightMatrix* MatrixSlot(ComponentWeights* w, int slot) {
  switch (slot) {
    case kWq: return &w->layer.wq;
    case kWk: return &w->layer.wk;
    case kWv: return &w->layer.wv;
    case kWo: return &w->layer.wo;
    case kWGate: return &w->layer.w_gate;
    case kWUp: return &w->layer.w_up;
    case kWDown: return &w->layer.w_down;
    case kMatrix: return &w->matrix;
    default: return nullptr;
  }
}

constexpr int64_t kBatchRows = 64;  // rows converted per read

struct Planner {
  const GgufFile& g;
  const ModelLoadOptions& opt;
  uint64_t max_buffer;

  const std::string& file() const { return g.source().name(); }

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

  Result<TensorPlan> Vector(const std::string& name, int64_t n, int slot) {
    TF_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(name));
    TF_RETURN_IF_ERROR(CheckShape(*t, {n}));
    if (t->type != TensorType::kF32 && t->type != TensorType::kF16 && t->type != TensorType::kBF16) {
      return Unsupported(file() + ": 1-D tensor '" + name + "' has type " + std::string(TensorTypeName(t->type)) +
                         "; only F32/F16/BF16 vectors are supported");
    }
    TensorPlan p;
    p.info = *t;
    p.vector = true;
    p.rows = 1;
    p.cols = n;
    p.target = TensorType::kF32;
    p.slot = slot;
    return p;
  }

  // The type a tensor is loaded as: the file's, or the requested one where it fits.
  Result<TensorType> TargetType(const GgufTensorInfo& t, int64_t cols) {
    if (!IsSupported(t.type)) {
      return Unsupported(file() + ": tensor '" + t.name + "' has type " + std::string(TensorTypeName(t.type)) +
                         ", which this build cannot compute with; re-quantize the model to F16, Q8_0 or Q4_0");
    }
    TensorType target = t.type;
    std::optional<TensorType> want = opt.weight_type;
    if (opt.type_for_tensor) {
      if (auto o = opt.type_for_tensor(t.name)) want = o;
    }
    if (want && IsSupported(*want) && RowBytes(*want, cols) != 0) target = *want;
    return target;
  }

  // matmul_only: the matrix is never read row by row, so it may get a run-time layout.
  Result<TensorPlan> Matrix(const std::string& name, int64_t rows, int64_t cols, int slot, bool matmul_only = true) {
    TF_ASSIGN_OR_RETURN(const GgufTensorInfo* t, Find(name));
    TF_RETURN_IF_ERROR(CheckShape(*t, {cols, rows}));
    TensorPlan p;
    p.info = *t;
    p.rows = rows;
    p.cols = cols;
    p.slot = slot;
    TF_ASSIGN_OR_RETURN(p.target, TargetType(*t, cols));
    p.layout = matmul_only && opt.runtime_layouts ? PreferredLayout(p.target, rows, cols) : WeightLayout::kRowMajor;
    // A chunk must hold a whole tile; with a tiny max buffer size keep rows.
    if (max_buffer && p.unit() > max_buffer) p.layout = WeightLayout::kRowMajor;
    return p;
  }
};

uint64_t TensorScratch(const TensorPlan& p) {
  if (p.vector) return p.info.type == TensorType::kF32 ? 0 : p.info.nbytes;
  uint64_t s = 0;
  if (p.info.type != p.target) s += kBatchRows * p.info.row_bytes() + p.cols * sizeof(float);
  if (p.layout != WeightLayout::kRowMajor) s = std::max<uint64_t>(s, LayoutScratchBytes(p.layout, p.target, p.cols));
  return s;
}

void Finish(ComponentPlan* c) {
  c->bytes = c->source_bytes = c->scratch_bytes = 0;
  for (const TensorPlan& t : c->tensors) {
    c->bytes += t.bytes();
    c->source_bytes += t.info.nbytes;
    c->scratch_bytes = std::max(c->scratch_bytes, TensorScratch(t));
  }
}

}  // namespace

size_t TensorPlan::bytes() const {
  return vector ? static_cast<size_t>(cols) * sizeof(float) : RowBytes(target, cols) * rows;
}
size_t TensorPlan::unit() const {
  return vector ? bytes() : RowBytes(target, cols) * LayoutTileRows(layout);
}

bool ComponentPlan::direct() const {
  return std::all_of(tensors.begin(), tensors.end(), [](const TensorPlan& t) { return t.direct(); });
}

bool ComponentPlan::SameShape(const ComponentPlan& o, uint64_t) const {
  if (kind != o.kind || tensors.size() != o.tensors.size()) return false;
  for (size_t i = 0; i < tensors.size(); ++i) {
    const TensorPlan &a = tensors[i], &b = o.tensors[i];
    if (a.vector != b.vector || a.slot != b.slot || a.rows != b.rows || a.cols != b.cols || a.target != b.target ||
        a.layout != b.layout) {
      return false;
    }
  }
  return true;  // same bytes and units per tensor: the ledger chunks them alike
}

// Everything resident: the weights Load read.
class LlamaModel::ResidentWeights : public WeightAccess {
 public:
  std::vector<ComponentWeights> parts;
  Result<const ComponentWeights*> Acquire(int c) override { return &parts[c]; }
  void Release(int) override {}
};

LlamaModel::~LlamaModel() = default;

Status LlamaModel::Forward(const int32_t* tokens, int n, KvCache& kv, ThreadPool& pool, ForwardScratch& s) const {
  if (!resident_) return InvalidArgument("Forward: the model was only planned; load its weights first");
  return Forward(tokens, n, kv, pool, s, *resident_);
}

int LlamaModel::FindComponent(std::string_view name) const {
  for (size_t i = 0; i < plans_.size(); ++i) {
    if (plans_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

uint64_t LlamaModel::weight_bytes() const {
  uint64_t sum = 0;
  for (const auto& p : plans_) sum += p.bytes;
  return sum;
}

std::vector<std::tuple<std::string, TensorType, uint64_t>> LlamaModel::WeightTable() const {
  // token_embd, each layer's matrices, then the output head: the order Load used to report.
  std::vector<std::tuple<std::string, TensorType, uint64_t>> out;
  auto add = [&](const ComponentPlan& c) {
    for (const TensorPlan& t : c.tensors) {
      if (!t.vector) out.emplace_back(t.info.name, t.target, t.bytes());
    }
  };
  add(plans_[embeddings_component()]);
  for (int il = 0; il < hp_.n_layer; ++il) add(plans_[il]);
  if (!tied_output_) add(plans_[lm_head_component()]);
  return out;
}

std::vector<std::pair<std::string, WeightLayout>> LlamaModel::LayoutTable() const {
  std::vector<std::pair<std::string, WeightLayout>> out;
  auto add = [&](const ComponentPlan& c) {
    for (const TensorPlan& t : c.tensors) {
      if (!t.vector && t.layout != WeightLayout::kRowMajor) out.emplace_back(t.info.name, t.layout);
    }
  };
  add(plans_[embeddings_component()]);
  for (int il = 0; il < hp_.n_layer; ++il) add(plans_[il]);
  if (!tied_output_) add(plans_[lm_head_component()]);
  return out;
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::Plan(const GgufFile& g, const ModelLoadOptions& options,
                                                     uint64_t max_buffer_bytes) {
  std::unique_ptr<LlamaModel> m(new LlamaModel());
  TF_ASSIGN_OR_RETURN(m->hp_, ReadLlamaHParams(g));
  const LlamaHParams& hp = m->hp_;
  Planner pl{g, options, max_buffer_bytes};
  m->plans_.resize(hp.n_layer + 2);
  for (int il = 0; il < hp.n_layer; ++il) {
    ComponentPlan& c = m->plans_[il];
    c.name = "layers." + std::to_string(il);
    c.kind = ComponentKind::kLayer;
    c.layer = il;
    const std::string p = "blk." + std::to_string(il) + ".";
    auto add = [&](Result<TensorPlan> t) -> Status {
      if (!t.ok()) return t.status();
      c.tensors.push_back(std::move(*t));
      return Status::Ok();
    };
    TF_RETURN_IF_ERROR(add(pl.Vector(p + "attn_norm.weight", hp.n_embd, kAttnNorm)));
    if (hp.qkv_bias) {
      TF_RETURN_IF_ERROR(add(pl.Vector(p + "attn_q.bias", hp.q_dim(), kBq)));
      TF_RETURN_IF_ERROR(add(pl.Vector(p + "attn_k.bias", hp.kv_dim(), kBk)));
      TF_RETURN_IF_ERROR(add(pl.Vector(p + "attn_v.bias", hp.kv_dim(), kBv)));
    }
    TF_RETURN_IF_ERROR(add(pl.Vector(p + "ffn_norm.weight", hp.n_embd, kFfnNorm)));
    // The seven matrices in the order a decode step reads them.
    for (auto [name, rows, cols, slot] : {std::tuple{"attn_q.weight", hp.q_dim(), hp.n_embd, kWq},
                                          {"attn_k.weight", hp.kv_dim(), hp.n_embd, kWk},
                                          {"attn_v.weight", hp.kv_dim(), hp.n_embd, kWv},
                                          {"attn_output.weight", hp.n_embd, hp.q_dim(), kWo},
                                          {"ffn_gate.weight", hp.n_ff, hp.n_embd, kWGate},
                                          {"ffn_up.weight", hp.n_ff, hp.n_embd, kWUp},
                                          {"ffn_down.weight", hp.n_embd, hp.n_ff, kWDown}}) {
      TF_RETURN_IF_ERROR(add(pl.Matrix(p + name, rows, cols, slot)));
    }
    Finish(&c);
  }
  {
    ComponentPlan& c = m->plans_[m->embeddings_component()];
    c.name = "embeddings";
    c.kind = ComponentKind::kEmbeddings;
    TF_ASSIGN_OR_RETURN(TensorPlan t, pl.Matrix("token_embd.weight", hp.n_vocab, hp.n_embd, kMatrix,
                                                /*matmul_only=*/false));
    c.tensors.push_back(std::move(t));
    Finish(&c);
  }
  {
    ComponentPlan& c = m->plans_[m->output_norm_component()];
    c.name = "output_norm";
    c.kind = ComponentKind::kOutputNorm;
    TF_ASSIGN_OR_RETURN(TensorPlan t, pl.Vector("output_norm.weight", hp.n_embd, kVector));
    c.tensors.push_back(std::move(t));
    Finish(&c);
  }
  if (g.FindTensor("output.weight")) {
    ComponentPlan c;
    c.name = "lm_head";
    c.kind = ComponentKind::kLmHead;
    TF_ASSIGN_OR_RETURN(TensorPlan t, pl.Matrix("output.weight", hp.n_vocab, hp.n_embd, kMatrix));
    c.tensors.push_back(std::move(t));
    Finish(&c);
    m->plans_.push_back(std::move(c));
  } else {
    m->tied_output_ = true;  // lm_head shares the embedding matrix
  }
  // RoPE: theta_i = pos * scale^i, iterated in float exactly as ggml does.
  m->rope_theta_scale_ = std::pow(hp.rope_base, -2.0f / hp.n_rot);
  return m;
}

Result<ComponentWeights> LlamaModel::AllocateComponent(int c, MemoryLedger& ledger, std::string_view charge_to) const {
  const ComponentPlan& plan = plans_[c];
  std::vector<std::pair<size_t, size_t>> ranges;
  for (const TensorPlan& t : plan.tensors) ranges.emplace_back(t.bytes(), t.unit());
  // One block for the component (AllocateGroup: huge pages then cover the small
  // attention matrices and the matrices' tails too).
  TF_ASSIGN_OR_RETURN(std::vector<ChunkedBuffer> data, ledger.AllocateChunkedGroup(charge_to, ranges));
  ComponentWeights w;
  for (size_t i = 0; i < plan.tensors.size(); ++i) {
    const TensorPlan& t = plan.tensors[i];
    if (t.vector) {
      *VectorSlot(&w, t.slot) = std::move(data[i].chunks[0]);
    } else {
      MatrixSlot(&w, t.slot)->data = std::move(data[i]);
    }
  }
  return w;
}

namespace {
// A matrix's description as planned, row-major (its bytes arrive separately).
void DescribeRowMajor(const TensorPlan& t, WeightMatrix* m) {
  m->name = t.info.name;
  m->type = t.target;
  m->layout = WeightLayout::kRowMajor;
  m->rows = t.rows;
  m->cols = t.cols;
  m->row_bytes = RowBytes(t.target, t.cols);
}
}  // namespace

Status LlamaModel::ReadComponent(int c, const GgufFile& g, MemoryLedger& ledger, ComponentWeights* out,
                                 const std::function<bool(uint64_t)>& on_bytes) const {
  const ComponentPlan& plan = plans_[c];
  out->component = -1;  // until every byte is in
  auto fail = [&](const Status& s) { return s.WithContext("loading " + plan.name); };
  auto told = [&](uint64_t n) -> Status {
    if (on_bytes && !on_bytes(n)) return Cancelled("loading " + g.name() + " was cancelled at " + plan.name);
    return Status::Ok();
  };
  for (const TensorPlan& t : plan.tensors) {
    if (t.vector) {
      Buffer* dst = VectorSlot(out, t.slot);
      float* f = dst->as<float>();
      if (t.info.type == TensorType::kF32) {
        if (Status s = g.ReadTensor(t.info, f); !s.ok()) return fail(s);
      } else {
        TF_ASSIGN_OR_RETURN(Buffer raw, ledger.Allocate("loader", t.info.nbytes));
        if (Status s = g.ReadTensor(t.info, raw.data()); !s.ok()) return fail(s);
        const uint16_t* h = raw.as<uint16_t>();
        for (int64_t i = 0; i < t.cols; ++i) f[i] = t.info.type == TensorType::kF16 ? F16ToF32(h[i]) : Bf16ToF32(h[i]);
      }
      TF_RETURN_IF_ERROR(told(t.info.nbytes));
      continue;
    }
    WeightMatrix* m = MatrixSlot(out, t.slot);
    DescribeRowMajor(t, m);
    const size_t src_row_bytes = t.info.row_bytes();
    if (t.info.type == t.target) {
      // Straight copy, chunk by chunk (a chunk holds whole rows).
      const int64_t per = m->rows_per_chunk();
      for (size_t k = 0; k < m->data.chunks.size(); ++k) {
        const int64_t r0 = static_cast<int64_t>(k) * per, nr = std::min(per, t.rows - r0);
        for (int64_t r = 0; r < nr; r += kBatchRows * 16) {
          const int64_t n = std::min<int64_t>(kBatchRows * 16, nr - r);
          Status s = g.ReadTensorRows(t.info, r0 + r, n, m->data.chunks[k].as<uint8_t>() + r * src_row_bytes);
          if (!s.ok()) return fail(s);
          TF_RETURN_IF_ERROR(told(n * src_row_bytes));
        }
      }
    } else {
      // Convert: read a batch of rows, dequantize each to f32, quantize to the target.
      TF_ASSIGN_OR_RETURN(Buffer raw, ledger.Allocate("loader", kBatchRows * src_row_bytes));
      TF_ASSIGN_OR_RETURN(Buffer f32, ledger.Allocate("loader", t.cols * sizeof(float)));
      for (int64_t r = 0; r < t.rows; r += kBatchRows) {
        const int64_t n = std::min<int64_t>(kBatchRows, t.rows - r);
        if (Status s = g.ReadTensorRows(t.info, r, n, raw.data()); !s.ok()) return fail(s);
        for (int64_t i = 0; i < n; ++i) {
          DequantizeRow(t.info.type, raw.as<uint8_t>() + i * src_row_bytes, f32.as<float>(), t.cols);
          QuantizeRow(t.target, f32.as<float>(), m->data.at((r + i) * m->row_bytes), t.cols, nullptr);
        }
        TF_RETURN_IF_ERROR(told(n * src_row_bytes));
      }
    }
    if (t.layout != WeightLayout::kRowMajor) {
      // In place, chunk by chunk (every chunk holds whole tiles).
      TF_ASSIGN_OR_RETURN(Buffer scratch, ledger.Allocate("loader", LayoutScratchBytes(t.layout, t.target, t.cols)));
      const int64_t per = m->rows_per_chunk();
      for (size_t k = 0; k < m->data.chunks.size(); ++k) {
        const int64_t nr = std::min<int64_t>(per, t.rows - static_cast<int64_t>(k) * per);
        ToLayout(t.layout, t.target, m->data.chunks[k].data(), nr, t.cols, scratch.data());
      }
      m->layout = t.layout;
    }
  }
  out->component = c;
  return Status::Ok();
}

Result<ComponentWeights> LlamaModel::MapComponent(int c, const GgufFile& g, MemoryLedger& ledger,
                                                  std::string_view charge_to) const {
  const ComponentPlan& plan = plans_[c];
  if (!plan.direct()) return Unsupported(plan.name + " is converted or re-laid out at load; it cannot be mapped");
  ComponentWeights w;
  for (const TensorPlan& t : plan.tensors) {
    auto mapped = g.source().MapRange(t.info.offset, t.info.nbytes);
    if (!mapped.ok()) return mapped.status().WithContext("mapping " + plan.name + ": tensor '" + t.info.name + "'");
    const uint8_t* p = mapped->get();
    std::shared_ptr<void> map = std::const_pointer_cast<uint8_t>(std::move(mapped).value());
    if (t.vector) {
      TF_ASSIGN_OR_RETURN(*VectorSlot(&w, t.slot), ledger.ChargeMapped(charge_to, p, t.bytes(), std::move(map)));
      continue;
    }
    WeightMatrix* m = MatrixSlot(&w, t.slot);
    TF_ASSIGN_OR_RETURN(m->data, ledger.MapChunked(charge_to, p, t.bytes(), t.unit(), std::move(map)));
    DescribeRowMajor(t, m);
  }
  w.component = c;
  return w;
}

Result<std::unique_ptr<LlamaModel>> LlamaModel::Load(const GgufFile& g, MemoryLedger& ledger,
                                                     const ModelLoadOptions& options) {
  TF_ASSIGN_OR_RETURN(std::unique_ptr<LlamaModel> m, Plan(g, options, ledger.max_buffer_bytes()));
  uint64_t done = 0, total = 0;
  for (const auto& t : g.tensors()) total += t.nbytes;
  auto progress = [&](const std::string& component) -> Status {
    if (options.progress && !options.progress(done, total, component)) {
      return Cancelled("loading " + g.name() + " was cancelled at " + component);
    }
    return Status::Ok();
  };
  auto resident = std::make_unique<ResidentWeights>();
  resident->parts.resize(m->n_components());
  // Embeddings first, then the layers, output_norm and lm_head: the order a forward pass reads them.
  std::vector<int> order{m->embeddings_component()};
  for (int il = 0; il < m->hp_.n_layer; ++il) order.push_back(il);
  for (int c = m->hp_.n_layer + 1; c < m->n_components(); ++c) order.push_back(c);
  for (int c : order) {
    const std::string& name = m->plans_[c].name;
    TF_RETURN_IF_ERROR(progress(name));
    TF_ASSIGN_OR_RETURN(resident->parts[c], m->AllocateComponent(c, ledger, name));
    TF_RETURN_IF_ERROR(m->ReadComponent(c, g, ledger, &resident->parts[c], [&](uint64_t n) {
      done += n;
      return !options.progress || options.progress(done, total, name);
    }));
  }
  done = total;
  TF_RETURN_IF_ERROR(progress("done"));
  m->resident_ = std::move(resident);
  return m;
}

}  // namespace tabfit
