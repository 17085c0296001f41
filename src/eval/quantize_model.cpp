#include "eval/quantize_model.h"

#include <cmath>
#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

#include "core/thread_pool.h"
#include "eval/importance.h"
#include "model/gguf/gguf.h"
#include "model/gguf/gguf_writer.h"
#include "quant/kernels.h"

namespace tabfit {

uint64_t TensorBytes(TensorType type, int64_t rows, int64_t cols) {
  return static_cast<uint64_t>(RowBytes(type, cols)) * static_cast<uint64_t>(rows);
}

namespace {

struct ErrorAcc {
  std::mutex mu;
  double err = 0, ref = 0, werr = 0, wref = 0;
};

// Converts rows [row0, row0+nrows) of `t` into `dst` (target type), adding to acc.
Status ConvertRows(const GgufFile& g, const GgufTensorInfo& t, TensorType target, const float* imp, ThreadPool* pool,
                   int64_t row0, int64_t nrows, void* dst, ErrorAcc* acc) {
  const int64_t cols = t.ne[0];
  const size_t src_rb = t.row_bytes();
  const size_t dst_rb = RowBytes(target, cols);
  std::vector<uint8_t> raw(src_rb * nrows);
  TF_RETURN_IF_ERROR(g.ReadTensorRows(t, row0, nrows, raw.data()));
  const bool can_back = CanDequantize(target);
  auto work = [&](size_t begin, size_t end, int) {
    std::vector<float> f(cols), back(cols);
    double err = 0, ref = 0, werr = 0, wref = 0;
    for (size_t r = begin; r < end; ++r) {
      DequantizeRow(t.type, raw.data() + r * src_rb, f.data(), cols);
      uint8_t* out = static_cast<uint8_t*>(dst) + r * dst_rb;
      QuantizeRow(target, f.data(), out, cols, imp);
      if (!can_back) continue;
      DequantizeRow(target, out, back.data(), cols);
      for (int64_t c = 0; c < cols; ++c) {
        double d = static_cast<double>(f[c]) - back[c];
        double w2 = static_cast<double>(f[c]) * f[c];
        err += d * d;
        ref += w2;
        if (imp) {
          werr += imp[c] * d * d;
          wref += imp[c] * w2;
        }
      }
    }
    std::lock_guard<std::mutex> lock(acc->mu);
    acc->err += err;
    acc->ref += ref;
    acc->werr += werr;
    acc->wref += wref;
  };
  if (pool && pool->num_threads() > 1 && nrows > 1) {
    pool->ParallelFor(static_cast<size_t>(nrows), work, 1);
  } else {
    work(0, static_cast<size_t>(nrows), 0);
  }
  return Status::Ok();
}

}  // namespace

Result<TensorQuantReport> MeasureTensorError(const GgufFile& g, const std::string& name, TensorType type,
                                             const float* imp, ThreadPool* pool) {
  const GgufTensorInfo* t = g.FindTensor(name);
  if (!t) return NotFound(g.name() + ": no tensor '" + name + "'");
  TensorQuantReport rep;
  rep.name = name;
  rep.from = t->type;
  rep.to = type;
  rep.cols = t->ne.empty() ? 0 : t->ne[0];
  rep.rows = t->rows();
  if (t->ne.size() != 2 || !CanDequantize(t->type) || !CanQuantize(type) || RowBytes(type, rep.cols) == 0) {
    rep.to = t->type;
    rep.bytes = t->nbytes;
    rep.kept_reason = "cannot convert " + std::string(TensorTypeName(t->type)) + " [" + std::to_string(rep.cols) +
                      " cols] to " + std::string(TensorTypeName(type));
    return rep;
  }
  rep.bytes = TensorBytes(type, rep.rows, rep.cols);
  rep.used_importance = imp != nullptr;
  ErrorAcc acc;
  const size_t rb = RowBytes(type, rep.cols);
  constexpr int64_t kRows = 256;
  std::vector<uint8_t> dst(rb * kRows);
  for (int64_t r = 0; r < rep.rows; r += kRows) {
    int64_t n = std::min(kRows, rep.rows - r);
    TF_RETURN_IF_ERROR(ConvertRows(g, *t, type, imp, pool, r, n, dst.data(), &acc));
  }
  rep.rel_rms_error = acc.ref > 0 ? std::sqrt(acc.err / acc.ref) : 0;
  rep.weighted_rel_error = imp ? (acc.wref > 0 ? std::sqrt(acc.werr / acc.wref) : 0) : rep.rel_rms_error;
  return rep;
}

Result<QuantizedModel> QuantizeGguf(const GgufFile& g, const QuantizeOptions& options, const std::string& out_path) {
  GgufWriter w;
  for (const auto& [key, value] : g.metadata()) {
    if (key == "general.alignment") continue;  // SetAlignment below writes it
    w.Set(key, value);
  }
  if (g.Find("general.alignment")) w.SetAlignment(g.alignment());

  QuantizedModel result;
  std::vector<std::shared_ptr<ErrorAcc>> accs;
  for (const GgufTensorInfo& t : g.tensors()) {
    TensorQuantReport rep;
    rep.name = t.name;
    rep.from = rep.to = t.type;
    rep.cols = t.ne.empty() ? 0 : t.ne[0];
    rep.rows = t.rows();
    rep.bytes = t.nbytes;
    auto acc = std::make_shared<ErrorAcc>();
    accs.push_back(acc);
    std::optional<TensorType> want;
    if (t.ne.size() == 2 && options.type_for) want = options.type_for(t.name);
    if (want && *want != t.type) {
      if (!CanDequantize(t.type)) {
        rep.kept_reason = "source type " + std::string(TensorTypeName(t.type)) + " cannot be dequantized";
      } else if (!CanQuantize(*want)) {
        rep.kept_reason = "no quantizer for " + std::string(TensorTypeName(*want)) + " in this build";
      } else if (RowBytes(*want, rep.cols) == 0) {
        rep.kept_reason = "row length " + std::to_string(rep.cols) + " is not a multiple of " +
                          std::string(TensorTypeName(*want)) + "'s block size";
      } else {
        rep.to = *want;
      }
    }
    if (rep.to == t.type) {
      // Copy as is (no conversion): stream rows from the source.
      const GgufTensorInfo* tp = &t;
      TF_RETURN_IF_ERROR(w.AddTensor(t.name, t.type, t.ne, [&g, tp](int64_t r0, int64_t n, void* dst) {
        return g.ReadTensorRows(*tp, r0, n, dst);
      }));
    } else {
      const float* imp = options.importance ? options.importance->For(t.name, rep.cols) : nullptr;
      rep.used_importance = imp != nullptr;
      rep.bytes = TensorBytes(rep.to, rep.rows, rep.cols);
      const GgufTensorInfo* tp = &t;
      TensorType to = rep.to;
      ThreadPool* pool = options.pool;
      TF_RETURN_IF_ERROR(w.AddTensor(t.name, to, t.ne, [&g, tp, to, imp, pool, acc](int64_t r0, int64_t n, void* dst) {
        return ConvertRows(g, *tp, to, imp, pool, r0, n, dst, acc.get());
      }));
    }
    result.tensor_bytes += rep.bytes;
    result.parameters += static_cast<uint64_t>(rep.rows) * static_cast<uint64_t>(rep.cols);
    result.tensors.push_back(std::move(rep));
  }
  if (out_path.empty()) {
    TF_ASSIGN_OR_RETURN(result.bytes, w.WriteToMemory());
    result.file_bytes = result.bytes.size();
  } else {
    TF_RETURN_IF_ERROR(w.WriteFile(out_path));
    TF_ASSIGN_OR_RETURN(result.file_bytes, w.FileSize());
  }
  for (size_t i = 0; i < result.tensors.size(); ++i) {
    TensorQuantReport& r = result.tensors[i];
    const ErrorAcc& a = *accs[i];
    if (r.to == r.from) continue;
    r.rel_rms_error = a.ref > 0 ? std::sqrt(a.err / a.ref) : 0;
    r.weighted_rel_error = r.used_importance ? (a.wref > 0 ? std::sqrt(a.werr / a.wref) : 0) : r.rel_rms_error;
  }
  return result;
}

}  // namespace tabfit
