// Internal helpers shared by Reference.cpp (forward) and ReferenceTraining.cpp
// (backward, compression backward, whole-NSA forward/backward). Not part of the
// public API: include only from runtime/reference/*.cpp.
//
// The key lists below define, in one place, which key positions each query row
// of each branch attends (repeated positions = attended that many times), so the
// forward and the backward of a branch cannot disagree on the mask.
#pragma once

#include "runtime/reference/Reference.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace nsajit::ref::detail {

inline constexpr double kNegInf = -std::numeric_limits<double>::infinity();
inline constexpr double kInf = std::numeric_limits<double>::infinity();

// Throws with a message naming the function and the offending argument.
[[noreturn]] inline void fail(std::string_view fn, const std::string &msg) {
  throw std::invalid_argument(fmt::format("nsajit::ref::{}: {}", fn, msg));
}

inline void checkSize(std::string_view fn, std::string_view what, std::size_t got,
                      std::size_t want) {
  if (got != want)
    fail(fn, fmt::format("{} has {} elements, expected {}", what, got, want));
}

inline void checkDims(std::string_view fn, const Dims &d) {
  if (d.B < 1 || d.T < 0 || d.H < 1 || d.G < 1 || d.Dk < 1 || d.Dv < 1)
    fail(fn, fmt::format("bad dims B={} T={} H={} G={} Dk={} Dv={} (need B,H,G,Dk,Dv >= 1, T >= 0)",
                         d.B, d.T, d.H, d.G, d.Dk, d.Dv));
}

inline void checkCompression(std::string_view fn, int l, int d) {
  if (l < 1 || d < 1 || d > l || l % d != 0)
    fail(fn, fmt::format("bad compression l={} d={} (need 1 <= d <= l, l % d == 0)", l, d));
}

inline void checkPoolDims(std::string_view fn, int B, int T, int H, int D) {
  if (B < 1 || T < 0 || H < 1 || D < 1)
    fail(fn, fmt::format("bad dims B={} T={} H={} D={}", B, T, H, D));
}

inline std::size_t sz(long long a) { return static_cast<std::size_t>(a); }

// Index helpers for the row-major layouts.
// [B, T, Heads, D] element (b, t, h, 0).
inline std::size_t at4(int T, int Hn, int D, int b, int t, int h) {
  return ((sz(b) * T + t) * Hn + h) * D;
}

template <typename S>
void checkQkv(std::string_view fn, const Dims &dims, int kvLen, std::span<const S> q,
              std::span<const S> k, std::span<const S> v) {
  checkDims(fn, dims);
  checkSize(fn, "q", q.size(), sz(dims.B) * dims.T * dims.HQ() * dims.Dk);
  checkSize(fn, "k", k.size(), sz(dims.B) * kvLen * dims.H * dims.Dk);
  checkSize(fn, "v", v.size(), sz(dims.B) * kvLen * dims.H * dims.Dv);
}

// ---- key lists ---------------------------------------------------------------

// Compressed branch: token i is visible to t iff its block ends at or before t.
inline void compressedKeys(int t, int l, int d, int Tc, std::vector<int> &keys) {
  for (int i = 0; i < Tc && i * d + l - 1 <= t; ++i)
    keys.push_back(i);
}

// Selected branch: the tokens of the listed blocks (row = n indices), concatenated
// in list order, cut at T - 1 and at t. Negative, out-of-range (>= NB) and future
// (j * lsel > t) indices contribute nothing.
inline void selectedKeys(const std::int32_t *row, int n, int lsel, int NB, int T, int t,
                         std::vector<int> &keys) {
  for (int s = 0; s < n; ++s) {
    const std::int64_t j = row[s];
    if (j < 0 || j >= NB || j * lsel > t)
      continue;
    const int first = static_cast<int>(j) * lsel;
    const int last = std::min({first + lsel - 1, T - 1, t});
    for (int key = first; key <= last; ++key)
      keys.push_back(key);
  }
}

// Window branch: keys max(0, t - w + 1) .. t.
inline void windowKeys(int t, int w, std::vector<int> &keys) {
  for (int key = std::max(0, t - w + 1); key <= t; ++key)
    keys.push_back(key);
}

// ---- conversions ---------------------------------------------------------------

// float -> double is exact, so a float overload that converts its inputs and calls
// the double implementation computes exactly what a float implementation would.
inline std::vector<double> toDouble(std::span<const float> xs) {
  return std::vector<double>(xs.begin(), xs.end());
}

} // namespace nsajit::ref::detail
