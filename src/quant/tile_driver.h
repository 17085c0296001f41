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

template <int RT, int TT, class K>
inline void DriveTiles(const K& k, const void* wv, size_t row_bytes, int64_t r0, int64_t r1, const void* xv,
                       size_t x_row_bytes, int64_t n_tokens, float* y, int64_t ldy) {
  const auto* w = static_cast<const uint8_t*>(wv);
  const auto* x = static_cast<const uint8_t*>(xv);
  int64_t r = r0;
  for (; r + RT <= r1; r += RT) {
    int64_t t = 0;
    for (; t + TT <= n_tokens; t += TT) RunTile<RT, TT>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
    for (; t < n_tokens; ++t) RunTile<RT, 1>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
  }
  for (; r < r1; ++r) {
    int64_t t = 0;
    for (; t + TT <= n_tokens; t += TT) RunTile<1, TT>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
    for (; t < n_tokens; ++t) RunTile<1, 1>(k, w, row_bytes, r, x, x_row_bytes, t, y, ldy);
  }
}

}  // namespace tabfit::qk
