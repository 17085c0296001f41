// tabfit eval: adaptive precision — per-tensor types chosen to minimise the
// expected output error within a byte budget for the weights.
//
// 1. MeasureSensitivity: for every weight matrix t and candidate type c,
//    quantize ONLY t to c (importance-weighted when an ImportanceMap is given),
//    run the model on calibration chunks and measure the mean KL divergence
//    from the unquantized model's next-token distribution ("measured" mode).
//    "proxy" mode measures KL only at the lowest-bit candidate per tensor and
//    extrapolates to the others with KL_t(c) = KL_t(c0) * (e_t(c) / e_t(c0))^2,
//    e = the importance-weighted relative RMS weight error (KL is locally
//    quadratic in small weight perturbations).
// 2. AllocateBudget: treats the total KL as the sum of per-tensor KLs and solves
//    the multiple-choice knapsack "min sum KL_t(c_t) s.t. sum bytes <= budget"
//    exactly by dynamic programming over bytes (in budget/20000 units, costs
//    rounded up, so the plan always fits). Non-matrix tensors (norms) are fixed.
//
// Thread-safety: single-threaded API (uses its own thread pools internally).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/status.h"
#include "eval/precision.h"
#include "quant/types.h"

namespace tabfit {

class GgufFile;
class ImportanceMap;

struct SensitivityOptions {
  std::vector<TensorType> candidates;   // e.g. q8_0, q4_0, tf_q4, tf_q3, tf_q2 (usable ones)
  int n_ctx = 256;
  int n_chunks = 2;
  int first = 32;                       // score positions first..n_ctx-2 of each chunk
  int threads = 0;
  bool proxy = false;                   // see header comment
  const ImportanceMap* importance = nullptr;
  // progress(done, total, message); return false to cancel.
  std::function<bool(int, int, const std::string&)> progress;
};

struct TensorOption {
  TensorType type;
  uint64_t bytes = 0;
  double kl = 0;            // expected (measured or extrapolated) KL when only this tensor is at `type`
  double weighted_error = 0;
  bool measured = false;
};

struct TensorSensitivity {
  std::string name;
  int64_t rows = 0, cols = 0;
  TensorType source_type;
  std::vector<TensorOption> options;   // [0] is the source type (kl 0), then candidates that fit
};

struct SensitivityReport {
  std::vector<TensorSensitivity> tensors;
  uint64_t fixed_bytes = 0;       // tensors that are not weight matrices (norms ...)
  uint64_t source_bytes = 0;      // all tensors at their source types
  uint64_t parameters = 0;
  int calibration_tokens = 0;     // tokens scored per run
};

// JSON round trip (cache sensitivity measurements across budgets).
std::string SensitivityToJson(const SensitivityReport& r);
Result<SensitivityReport> SensitivityFromJson(const std::string& text);

Result<SensitivityReport> MeasureSensitivity(const GgufFile& src, const std::vector<int32_t>& calib_tokens,
                                             int32_t bos, const SensitivityOptions& options);

struct PlannedTensor {
  std::string name;
  TensorType type;
  uint64_t bytes = 0;
  double expected_kl = 0;
};

struct BudgetPlan {
  PrecisionPlan plan;                 // exact-name rules for every matrix
  std::vector<PlannedTensor> tensors;
  uint64_t budget_bytes = 0;
  uint64_t total_bytes = 0;           // all tensors incl. fixed ones
  double expected_kl = 0;             // sum of per-tensor KLs
  double bits_per_weight = 0;
  std::string ToJson() const;         // a precision config (tensors map) plus a "plan" section
};

// InvalidArgument (naming the smallest possible size) if even the cheapest
// option of every tensor does not fit.
Result<BudgetPlan> AllocateBudget(const SensitivityReport& report, uint64_t budget_bytes);

// "1.5GB", "35MB", "60%" (of the source tensors' bytes) -> bytes.
Result<uint64_t> ParseBudget(const std::string& text, uint64_t source_bytes);

}  // namespace tabfit
