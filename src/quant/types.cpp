#include "quant/types.h"

namespace tabfit {

namespace {
struct Geometry {
  uint32_t id;
  const char* name;
  int64_t block_elems;
  int64_t block_bytes;
};

// GGML's geometries (ggml-common.h), then tabfit's own formats.
constexpr Geometry kGeometry[] = {
    {0, "F32", 1, 4},        {1, "F16", 1, 2},       {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},     {7, "Q5_1", 32, 24},    {8, "Q8_0", 32, 34},   {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84},   {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210},  {15, "Q8_K", 256, 292}, {24, "I8", 1, 1},      {25, "I16", 1, 2},
    {26, "I32", 1, 4},       {27, "I64", 1, 8},      {28, "F64", 1, 8},     {30, "BF16", 1, 2},
    // tabfit formats (layouts and bits/weight in quant/formats.h).
    {1000, "TF_Q8", 256, 266}, {1001, "TF_Q4", 256, 144}, {1002, "TF_Q3", 256, 112}, {1003, "TF_Q2", 256, 80},
    {1004, "TF_Q2R", 256, 80}, {1005, "TF_Q2S", 256, 74}, {1006, "TF_Q2SR", 256, 74},
};

const Geometry* Find(uint32_t id) {
  for (const auto& g : kGeometry) {
    if (g.id == id) return &g;
  }
  return nullptr;
}
}  // namespace

bool TensorTypeGeometry(uint32_t type_id, int64_t* block_elems, int64_t* block_bytes) {
  const Geometry* g = Find(type_id);
  if (!g) return false;
  *block_elems = g->block_elems;
  *block_bytes = g->block_bytes;
  return true;
}

std::string_view TensorTypeName(TensorType t) {
  const Geometry* g = Find(static_cast<uint32_t>(t));
  return g ? g->name : "?";
}

size_t RowBytes(TensorType t, int64_t n) {
  int64_t be, bb;
  if (n < 0 || !TensorTypeGeometry(static_cast<uint32_t>(t), &be, &bb) || n % be != 0) return 0;
  return static_cast<size_t>(n / be * bb);
}

}  // namespace tabfit
