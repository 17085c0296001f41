// tabfit eval: precision configuration — which storage type each weight matrix gets.
//
// A PrecisionPlan maps GGUF tensor names to TensorTypes from a JSON file or
// flags. Readable names (see docs/precision.md):
//   embeddings            token_embd.weight
//   lm_head               output.weight
//   attention.query|key|value|output   blk.N.attn_q|attn_k|attn_v|attn_output.weight
//   mlp.gate|up|down      blk.N.ffn_gate|ffn_up|ffn_down.weight
//   attention, mlp        the whole group ("feed_forward" is an alias of "mlp")
//   layers.A-B. / layers.N. / layers.*.  prefix restricting a pattern to layers
//   layers.A-B            every matrix of those layers
//   a literal GGUF name   e.g. "blk.3.ffn_down.weight"
// Values: bits (2, 3, 4, 8, 16, 32) or a type name ("q8_0", "tf_q3", "f16"...).
// Bits map to types explicitly (BitsToType): 32 f32, 16 f16, 8 q8_0 | tf_q8,
// 4 q4_0 | tf_q4, 3 tf_q3, 2 tf_q2 — `"family": "ggml"` (default) picks q8_0/q4_0,
// `"family": "tf"` picks tf_q8/tf_q4 (3 and 2 bits exist only as tf formats).
//
// Precedence for one tensor: a matching "tensors" rule beats the group settings
// (attention_bits, feed_forward_bits, embedding_bits, lm_head_bits), which beat
// default_bits. Among rules: an exact GGUF name beats a role (mlp.down) beats a
// group (mlp) beats a layer-only rule; at the same level a narrower layer range
// wins; remaining ties go to the rule written later.
// Tensors that are not 2-D weight matrices (norms, biases) never get a type.
//
// Thread-safety: a PrecisionPlan is immutable after parsing; TypeFor is const
// and safe to call concurrently.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/status.h"
#include "quant/types.h"

namespace tabfit {

enum class TensorRole {
  kEmbeddings,
  kLmHead,
  kAttnQuery,
  kAttnKey,
  kAttnValue,
  kAttnOutput,
  kMlpGate,
  kMlpUp,
  kMlpDown,
};

// The role and layer (-1 for embeddings / lm_head) of a llama-family GGUF
// weight-matrix name; nullopt for anything else (norms, biases, unknown).
struct TensorId {
  TensorRole role;
  int layer = -1;
};
std::optional<TensorId> IdentifyTensor(std::string_view gguf_name);
// "attention.query", "mlp.down", "embeddings", "lm_head".
std::string_view RoleName(TensorRole role);
// "layers.3.mlp.down" / "embeddings": the readable name of a GGUF tensor ("" if unknown).
std::string ReadableTensorName(std::string_view gguf_name);

enum class BitsFamily { kGgml, kTf };

// bits -> type: 32 f32, 16 f16, 8 q8_0|tf_q8, 4 q4_0|tf_q4, 3 tf_q3, 2 tf_q2.
// InvalidArgument for other bit counts. Does not check kernels (see CheckTypeUsable).
Result<TensorType> BitsToType(int bits, BitsFamily family);
// "q8_0", "Q4_0", "tf_q3", "f16", "bf16", "f32" -> type.
Result<TensorType> ParseTypeName(std::string_view name);
// Lower-case name as accepted by ParseTypeName ("q4_0", "tf_q2", ...).
std::string TypeNameLower(TensorType t);
// Unsupported (naming the type and `context`) unless this build can quantize to
// t and compute with it.
Status CheckTypeUsable(TensorType t, std::string_view context);

class PrecisionPlan {
 public:
  struct Rule {
    std::string pattern;              // as written
    std::optional<TensorRole> role;   // a single role, or
    std::vector<TensorRole> group;    // a group of roles (empty with no role: any matrix of the layers)
    int layer_lo = -1, layer_hi = -1; // inclusive; -1: any layer
    std::string exact;                // literal GGUF name (then nothing else applies)
    TensorType type = TensorType::kF16;
  };

  // The type for a GGUF tensor, or nullopt (keep the file's type).
  std::optional<TensorType> TypeFor(const std::string& gguf_tensor_name) const;
  // Which setting decided TypeFor (for reports): "tensors[\"mlp.down\"]", "feed_forward_bits", "default_bits", "".
  std::string SourceFor(const std::string& gguf_tensor_name) const;

  bool empty() const;
  // JSON text that ParsePrecisionConfig reads back to an equivalent plan.
  std::string ToJson() const;

  // Setters used by the parser and the CLI flags (flags override the file).
  std::optional<TensorType> default_type, attention_type, feed_forward_type, embedding_type, lm_head_type;
  BitsFamily family = BitsFamily::kGgml;
  std::vector<Rule> rules;  // in file order

  // Parses `pattern` (see the header comment) and appends a rule.
  Status AddRule(const std::string& pattern, TensorType type);

 private:
  const Rule* BestRule(const std::string& name, const TensorId* id) const;
};

// Parses a precision config (JSON object; see the header comment). Every
// error names the offending key/value and says what is accepted.
// Keys: default_bits, attention_bits, feed_forward_bits, embedding_bits,
// lm_head_bits (number or type name), family ("ggml" | "tf"), tensors
// (object: pattern -> bits or type name). Unknown keys are errors.
Result<PrecisionPlan> ParsePrecisionConfig(std::string_view json_text);
Result<PrecisionPlan> LoadPrecisionConfig(const std::string& path);

// A value as written in a config or a flag ("4", "q8_0") -> type.
Result<TensorType> ParseBitsOrType(std::string_view value, BitsFamily family);

// Command-line settings (tabfit eval / calibrate): a config file plus flags
// that override it. Empty strings mean "not given".
struct PrecisionFlags {
  std::string config_path;        // --precision cfg.json
  std::string weight_type;        // --weight-type q4_0 (same as --default-bits)
  std::string family;             // --family ggml|tf
  std::string default_bits, attention_bits, feed_forward_bits, embedding_bits, lm_head_bits;
  std::vector<std::string> tensor_bits;  // --tensor-bits "layers.0-3.mlp.down=8" (repeatable)
  Result<PrecisionPlan> ToPlan() const;
};

}  // namespace tabfit
