// tabfit eval: re-quantize a GGUF model tensor by tensor (mixed precision,
// importance-weighted), to a file or to memory, with a per-tensor error report.
//
// Every 2-D weight matrix for which `type_for` returns a type is converted
// (dequantize the source row to f32, QuantizeRow(type, importance)); all other
// tensors and all metadata are copied unchanged. A matrix whose row length is
// not a multiple of the target's block size keeps its type (reported with
// kept_reason). Rows are converted lazily while the GGUF writer streams, so
// writing to a file holds only a few MiB of rows at a time; writing to memory
// holds the whole output.
//
// Error report per converted tensor (computed from the very rows written):
//   rel_rms_error      = sqrt( sum (w - w_q)^2 / sum w^2 )
//   weighted_rel_error = sqrt( sum_c imp_c sum_r (w - w_q)^2 / sum_c imp_c sum_r w^2 )
//                        (imp: the importance vector; equals rel_rms_error without one)
// The weighted error is proportional to the RMS error of the matrix's output
// under the calibration activations (diagonal approximation).
//
// Thread-safety: one call at a time per ThreadPool; the source GgufFile is only read.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"
#include "quant/types.h"

namespace tabfit {

class GgufFile;
class ImportanceMap;
class ThreadPool;

struct TensorQuantReport {
  std::string name;
  TensorType from = TensorType::kF32;
  TensorType to = TensorType::kF32;
  int64_t rows = 0, cols = 0;
  uint64_t bytes = 0;             // bytes of the tensor as written
  double rel_rms_error = 0;
  double weighted_rel_error = 0;
  bool used_importance = false;
  std::string kept_reason;        // why a requested conversion was not done ("" otherwise)
};

struct QuantizeOptions {
  // Type for a GGUF tensor name (nullopt: keep). Called for 2-D tensors only.
  std::function<std::optional<TensorType>(const std::string&)> type_for;
  const ImportanceMap* importance = nullptr;  // optional; must outlive the call
  ThreadPool* pool = nullptr;                 // optional; rows are quantized in parallel
};

struct QuantizedModel {
  std::vector<uint8_t> bytes;               // the GGUF file (memory output only)
  uint64_t file_bytes = 0;                  // size of the written file
  uint64_t tensor_bytes = 0;                // sum of all tensors' data bytes (incl. norms)
  uint64_t parameters = 0;                  // elements over all tensors
  std::vector<TensorQuantReport> tensors;   // every tensor, in file order
};

// out_path empty: the result's `bytes` holds the file; else streams to out_path.
Result<QuantizedModel> QuantizeGguf(const GgufFile& src, const QuantizeOptions& options,
                                    const std::string& out_path = "");

// Quantizes one tensor of `src` to `type` in memory (nothing is kept) and
// reports its errors and bytes. kept_reason set (and errors 0) if it cannot.
Result<TensorQuantReport> MeasureTensorError(const GgufFile& src, const std::string& tensor_name, TensorType type,
                                             const float* importance, ThreadPool* pool);

// Bytes a tensor of rows x cols takes as `type` (0 if cols does not fit its blocks).
uint64_t TensorBytes(TensorType type, int64_t rows, int64_t cols);

}  // namespace tabfit
