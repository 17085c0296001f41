// tabfit kv: the quantized KV cache — 8-bit (Q8_0 blocks), 4-bit (Q4_0 blocks)
// and "mixed" (an 8-bit window of the most recent tokens, 4-bit for older ones).
//
// Storage (per layer, K and V separately, allocated up front for `capacity`
// tokens through the ledger under "kv_cache"):
//   one cell = n_kv_heads * head_dim values, each head a whole number of
//   32-value blocks (head_dim % 32 == 0):
//     8-bit block: fp16 scale + 32 int8      (34 bytes, ggml Q8_0 layout)
//     4-bit block: fp16 scale + 32 nibbles   (18 bytes, ggml Q4_0 layout)
//   "q8_0":  capacity 8-bit cells.
//   "q4_0":  capacity 4-bit cells.
//   "mixed": W = min(recent_window, capacity) 8-bit cells kept as a ring, plus
//            capacity - W 4-bit cells. Slots [0, n4) are 4-bit, [n4, size) are
//            8-bit; when a new token would make the window hold more than W
//            cells, the oldest 8-bit cell is requantized to 4-bit (block by
//            block: dequantize 32 values, quantize to Q4_0). The 4-bit region
//            never needs more than capacity - W cells: it grows only while the
//            window is full.
//   bytes() == QuantKvCacheBytes(config, recent_window) exactly.
//
// Attend: q is quantized to int8 per 32-block once (ggml's q8_0 activation),
// scores come from the quant module's Q8_0/Q4_0 dot kernels run directly on
// the stored blocks (no dequantized copy of the cache), V is accumulated
// block by block from the quantized cells.
//
// Thread-safety: as KvCache (Attend is const and reentrant; it uses only the
// stack and the caller's scores buffer).
#pragma once

#include <memory>

#include "model/llama/kv_cache.h"

namespace tabfit {

// True for "q8_0", "q4_0", "mixed".
bool IsQuantKvType(const std::string& type);

// Bytes the cache will hold for `config` (type must be a quantized type);
// recent_window only matters for "mixed". 0 for an invalid config.
uint64_t QuantKvCacheBytes(const KvCacheConfig& config, int recent_window);

// recent_window: the 8-bit window of "mixed" (>= 1); ignored otherwise.
Result<std::unique_ptr<KvCache>> CreateQuantKvCache(const KvCacheConfig& config, int recent_window,
                                                    MemoryLedger& ledger);

// Dequantizes one stored cell of a cache made by CreateQuantKvCache (for tests
// and debugging): k, v get n_kv_heads * head_dim floats, *bits 8 or 4.
Status ReadQuantKvCell(const KvCache& cache, int layer, int slot, float* k, float* v, int* bits);

}  // namespace tabfit
