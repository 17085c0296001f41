// tabfit kv (private): the slot bookkeeping every KV cache type shares —
// argument checks for Write and the position table Commit appends to.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "model/llama/kv_cache.h"

namespace tabfit::kvslots {

// Checks a Write of n tokens into `layer` when `size` cells are in use.
inline Status CheckWrite(const KvCacheConfig& c, int size, int layer, int n) {
  if (layer < 0 || layer >= c.n_layers) return InvalidArgument("KV write: bad layer");
  if (n < 0 || size + n > c.capacity) {
    return OutOfRange("KV cache full: " + std::to_string(size) + " + " + std::to_string(n) + " > capacity " +
                      std::to_string(c.capacity) + "; raise the context size or enable KV pruning");
  }
  return Status::Ok();
}

// Appends the n positions to `positions` (sized to capacity) after *size cells; *size += n.
inline Status Commit(int capacity, std::vector<int>& positions, int* size, int n, const int32_t* pos) {
  if (n < 0 || *size + n > capacity) return OutOfRange("KV commit past capacity");
  for (int t = 0; t < n; ++t) positions[*size + t] = pos[t];
  *size += n;
  return Status::Ok();
}

}  // namespace tabfit::kvslots
