// tabfit quant (private): walks [r0, r1) x [0, n_tokens) in register tiles of
// RT rows x TT tokens (with 1-row / 1-token tails) and calls
// kernel.Run<R, T>(row_ptrs[R], token_ptrs[T], out[R][T]); writes y[t*ldy + r].
#pragma once

#include <cstddef>
#include <cstdint>

namespace tabfit::qk {

template <int R, int T, class K>
inline void RunTile(const K& k, const uint8_t* w, size_t row_bytes, int64_t r, const uint8_t* x, size_t x_row_bytes,
                    int64_t t, float* y, int64_t ldy) {
  const uint8_t* wr[R];
  const uint8_t* xt[T];
  for (int i = 0; i < R; ++i) wr[i] = w + (r + i) * row_bytes;
  for (int j = 0; j < T; ++j) xt[j] = x + (t + j) * x_row_bytes;
  float out[R][T];
  k.template Run<R, T>(wr, xt, out);
  for (int i = 0; i < R; ++i)
    for (int j = 0; j < T; ++j) y[(t + j) * ldy + r + i] = out[i][j];
}

// Tokens are processed in chunks whose packed activations fit in about half of a
// typical L2 (kChunkBytes), rows inside a chunk: each weight tile then streams from
// memory once per chunk while the chunk's activations stay cache-resident.
constexpr size_t kChunkBytes = 192 * 1024;

template <int RT, int TT, class K>
inline void DriveTiles(const K& k, const void* wv, size_t row_bytes, int64_t r0, int64_t r1, const void* xv,
                       size_t x_row_bytes, int64_t n_tokens, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wv);
  const auto* x = static_cast<const uint8_t*>(xv);
  int64_t chunk = static_cast<int64_t>(kChunkBytes / (x_row_bytes ? x_row_bytes : 1)) / TT * TT;
  if (chunk < TT) chunk = TT;
  for (int64_t t0 = 0; t0 < n_tokens; t0 += chunk) {
    const int64_t t1 = t0 + chunk < n_tokens ? t0 + chunk : n_tokens;
    int64_t r = r0;
    for (; r + RT <= r1; r += RT) {
      int64_t t = t0;
      for (; t + TT <= t1; t += TT) RunTile<RT, TT>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
      for (; t < t1; ++t) RunTile<RT, 1>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
    }
    for (; r < r1; ++r) {
      int64_t t = t0;
      for (; t + TT <= t1; t += TT) RunTile<1, TT>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
      for (; t < t1; ++t) RunTile<1, 1>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
    }
  }
}

// Separate tile shapes for decode (n_tokens < TN) and prefill. Defaults measured on
// the 2-core AVX2 target (AVX2 has 16 vector
// registers): one token (decode) -> 6-row tiles keep enough independent accumulators
// in flight; several tokens (prefill) -> 3 rows x 4 tokens reuses every load 3-4 times.
template <int R1 = 6, int RN = 3, int TN = 4, class K>
inline void DriveSplit(const K& k, const void* w, size_t row_bytes, int64_t r0, int64_t r1, const void* xp,
                      size_t x_row_bytes, int64_t n_tokens, float* y, int64_t ldy) {
  if (n_tokens < TN) {
    DriveTiles<R1, 1>(k, w, row_bytes, r0, r1, xp, x_row_bytes, n_tokens, y, ldy);
  } else {
    DriveTiles<RN, TN>(k, w, row_bytes, r0, r1, xp, x_row_bytes, n_tokens, y, ldy);
  }
}

}  // namespace tabfit::qk
