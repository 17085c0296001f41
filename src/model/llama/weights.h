// tabfit model: a llama model's weights, component by component.
//
// A model's weights are split into components, the ledger's names for them:
//   layers.N     one transformer block (norms, q/k/v/o, gate/up/down, biases)
//   embeddings   token_embd
//   output_norm  the final RMSNorm weight
//   lm_head      output.weight (absent when the head is tied to the embeddings)
// Each component is planned before any memory is allocated (ComponentPlan: which
// tensors, at what type and layout, how many bytes in memory and in the file),
// then allocated (LlamaModel::AllocateComponent) and read (ReadComponent) as a
// unit. Who decides WHEN a component is resident is not the model: the forward
// pass asks a WeightAccess for each component as it needs it. The model's own
// ResidentWeights (everything loaded up front) is one WeightAccess; the loader's
// residency manager (src/loader/residency.h) is the other.
//
// Ownership: ComponentWeights owns its ledger buffers; freeing them returns their
// bytes to the ledger they were charged to.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/ledger.h"
#include "core/status.h"
#include "model/gguf/gguf.h"
#include "quant/kernels.h"
#include "quant/types.h"

namespace tabfit {

// A weight matrix: `rows` rows of `cols` elements of `type`, stored row-chunked.
// layout: kRowMajor, or a run-time layout (quant/kernels.h) the loader gave a
// matrix that is only multiplied (never token_embd); chunks then hold whole tiles.
struct WeightMatrix {
  std::string name;  // GGUF tensor name
  TensorType type = TensorType::kF32;
  WeightLayout layout = WeightLayout::kRowMajor;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
  ChunkedBuffer data;
  // Row r's bytes; only for kRowMajor (a tiled matrix interleaves its rows).
  const uint8_t* row(int64_t r) const { return data.at(static_cast<size_t>(r) * row_bytes); }
  int64_t rows_per_chunk() const { return static_cast<int64_t>(data.units_per_chunk * (data.unit / row_bytes)); }
  uint64_t bytes() const { return data.total_bytes; }
};

struct LayerWeights {
  Buffer attn_norm, ffn_norm;   // f32 [n_embd]
  WeightMatrix wq, wk, wv, wo, w_gate, w_up, w_down;
  Buffer bq, bk, bv;            // f32 biases (qwen2), empty otherwise
};

// The kinds of component a llama model has.
enum class ComponentKind { kLayer, kEmbeddings, kOutputNorm, kLmHead };

// How one tensor of a component is held in memory.
struct TensorPlan {
  GgufTensorInfo info;  // the file's tensor (shape checked against the hyper-parameters)
  bool vector = false;  // a 1-D f32 vector (norm weight, bias) rather than a matrix
  int64_t rows = 0, cols = 0;
  TensorType target = TensorType::kF32;  // type in memory (vectors: f32)
  WeightLayout layout = WeightLayout::kRowMajor;
  int slot = 0;  // which field of ComponentWeights it fills (see llama_model.cpp)
  size_t bytes() const;                  // bytes in memory
  size_t unit() const;                   // indivisible chunk unit (a row, or a layout's tile)
  // Read straight into memory: same type, row-major, and (vectors) already f32.
  bool direct() const { return info.type == target && layout == WeightLayout::kRowMajor; }
};

struct ComponentPlan {
  std::string name;  // "layers.3", "embeddings", "output_norm", "lm_head"
  ComponentKind kind = ComponentKind::kLayer;
  int layer = -1;    // kLayer: its index
  std::vector<TensorPlan> tensors;
  uint64_t bytes = 0;         // in memory, once loaded
  uint64_t source_bytes = 0;  // tensor bytes read from the file to load it
  // Bytes of loader scratch ("loader" in the ledger) reading it needs at most at a
  // time: conversion rows, a layout's in-place scratch.
  uint64_t scratch_bytes = 0;
  // Every tensor read straight into memory (no conversion, no layout), so a reload
  // is only reads.
  bool direct() const;
  // Two plans whose buffers have the same sizes and chunking: one component's
  // buffers may be reused to hold the other (the loader's streaming ring).
  bool SameShape(const ComponentPlan& other, uint64_t max_buffer_bytes) const;
};

// One component's weights once loaded. Which members are used depends on the kind:
//   kLayer: layer;  kEmbeddings, kLmHead: matrix;  kOutputNorm: vec.
struct ComponentWeights {
  LayerWeights layer;
  WeightMatrix matrix;
  Buffer vec;
  int component = -1;  // index of the component whose weights these are (-1: none yet)
};

// What the forward pass reads its weights through, by component index (see
// LlamaModel: layers are 0..n_layer-1, then embeddings, output_norm, lm_head).
// Acquire waits until the component is resident (loading it if needed) and keeps
// it so until Release; it fails with a Status naming the component when it cannot
// be loaded (a read error, a corrupt chunk, cancellation). The forward pass holds
// at most a few components at once: embeddings, one layer, then output_norm and
// lm_head. Thread-safety: Acquire/Release are called from the forward pass's
// calling thread only.
class WeightAccess {
 public:
  virtual ~WeightAccess() = default;
  virtual Result<const ComponentWeights*> Acquire(int component) = 0;
  virtual void Release(int component) = 0;
};

}  // namespace tabfit
