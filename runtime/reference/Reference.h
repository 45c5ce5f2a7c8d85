// nsajit::ref: the float64 CPU reference ("oracle") for Native Sparse Attention.
//
// Every GPU test compares against these functions, so they are written to be
// obviously right rather than fast: naive loops, all arithmetic in double.
// See docs/NSA.md (shared) for what each branch computes.
//
// Conventions (all tensors contiguous, row-major, no padding):
//   q    [B, T,   HQ, Dk]        HQ = H * G; query head hq uses KV head hq / G
//   k    [B, Tkv, H,  Dk]        Tkv = T (selected, window) or Tc (compressed)
//   v    [B, Tkv, H,  Dv]
//   o    [B, T,   HQ, Dv]
//   lse  [B, T,   HQ]            natural log of sum_j exp(scale * q.k_j);
//                                -infinity (and o = 0) where a row sees no key
//   idx  [B, T,   H,  n]         int32 selection-block indices
//   gates[B, T,   HQ]
// Inputs are host float arrays whose values the caller has already rounded to
// bf16/fp16 (see roundToBf16 / roundToFp16); outputs are double.
// Sizes are checked: a wrong-sized input throws std::invalid_argument.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace nsajit::ref {

struct Dims {
  int B = 1;   // batch
  int T = 1;   // query tokens (= key tokens of the selected / window branches)
  int H = 1;   // KV heads
  int G = 1;   // query heads per KV head (GQA group)
  int Dk = 1;  // q/k head dim
  int Dv = 1;  // v/o head dim
  int HQ() const { return H * G; }
};

// ---- sizes -----------------------------------------------------------------

// Number of compressed tokens: (T - l) / d + 1 when T >= l, else 0.
int numCompressed(int T, int l, int d);
// Number of selection blocks: ceil(T / lsel).
int numSelectionBlocks(int T, int lsel);

// ---- attention branches ----------------------------------------------------

// Compressed branch. kc [B, Tc, H, Dk], vc [B, Tc, H, Dv] with Tc = numCompressed(T, l, d).
// Query t sees compressed token i iff i*d + l - 1 <= t (whole block in its past).
// A query that sees none gets o = 0 and lse = -inf.
void compressedAttention(const Dims &dims, int l, int d, double scale,
                         std::span<const float> q, std::span<const float> kc,
                         std::span<const float> vc, std::vector<double> &o,
                         std::vector<double> &lse);

// Selected branch. For each (b, t, kv head) the n indices of idx are walked in
// order; block j contributes keys j*lsel .. j*lsel + lsel - 1 that are < T and
// <= t. An index that is negative, >= ceil(T / lsel) or whose block starts after t
// contributes nothing (not an error). A duplicated index is attended as often as
// it is listed. A row left with no key gets o = 0 and lse = -inf.
void selectedAttention(const Dims &dims, int lsel, int n, double scale,
                       std::span<const float> q, std::span<const float> k,
                       std::span<const float> v, std::span<const std::int32_t> idx,
                       std::vector<double> &o, std::vector<double> &lse);

// Sliding window branch: query t attends keys max(0, t - w + 1) .. t (w >= 1).
void windowAttention(const Dims &dims, int w, double scale, std::span<const float> q,
                     std::span<const float> k, std::span<const float> v,
                     std::vector<double> &o, std::vector<double> &lse);

// Full causal attention (query t attends keys 0..t): the window branch with w = T.
void causalAttention(const Dims &dims, double scale, std::span<const float> q,
                     std::span<const float> k, std::span<const float> v,
                     std::vector<double> &o, std::vector<double> &lse);

// ---- compression (phi) -----------------------------------------------------
// Inputs x [B, T, H, D] (keys or values); output [B, Tc, H, D] as float
// (computed in double) so it can be fed back into the attention functions.

// Mean pooling: out[i] = mean(x[i*d : i*d + l]).
void compressMeanPool(int B, int T, int H, int D, int l, int d, std::span<const float> x,
                      std::vector<float> &out);
// Weighted sum with one weight per position in the block:
// out[i] = sum_p weights[p] * x[i*d + p], p = 0..l-1 (weights has l entries).
void compressWeighted(int B, int T, int H, int D, int l, int d,
                      std::span<const float> weights, std::span<const float> x,
                      std::vector<float> &out);

// ---- selection scores and top-n --------------------------------------------

// p_cmp [B, T, HQ, Tc]: softmax over the compressed tokens visible to t of
// scale * q.kc (0 for invisible tokens; an all-zero row when none is visible).
void compressedProbabilities(const Dims &dims, int l, int d, double scale,
                             std::span<const float> q, std::span<const float> kc,
                             std::vector<double> &pcmp);

// p_slc [B, T, HQ, NB], NB = ceil(T / lsel), from p_cmp [B, T, HQ, Tc] by the
// paper's eq. 9 exactly as written in docs/NSA.md (requires l % d == 0, lsel % d == 0):
//   p_slc[j] = sum_{m=0}^{lsel/d-1} sum_{n=0}^{l/d-1} p_cmp[(lsel/d)*j - m - n]
// (out-of-range terms 0). See Reference.cpp for what overlap this expresses and
// blockImportanceOverlap for the variant aligned with block j's own tokens.
void blockImportance(const Dims &dims, int l, int d, int lsel, std::span<const double> pcmp,
                     std::vector<double> &pslc);

// Variant of eq. 9 weighting each compressed token by how many stride-d chunks
// it shares with selection block j (tokens j*lsel .. (j+1)*lsel - 1):
//   p_slc[j] = sum_{m=0}^{lsel/d-1} sum_{n=0}^{l/d-1} p_cmp[(lsel/d)*j + m - n]
// Not used by selectTopN; provided for comparison. Equals blockImportance when l = lsel = d.
void blockImportanceOverlap(const Dims &dims, int l, int d, int lsel,
                            std::span<const double> pcmp, std::vector<double> &pslc);

// GQA sharing (eq. 10): shared [B, T, H, NB] = sum over the G query heads of each
// KV head of p_slc [B, T, HQ, NB].
void sharedBlockScores(const Dims &dims, int numBlocks, std::span<const double> pslc,
                       std::vector<double> &shared);

// Top-n selection from given shared scores [B, T, H, NB] (NB = ceil(T / lsel)).
// For query t, block j is visible iff 0 <= j and j*lsel <= t. Forced blocks
// (initial blocks 0..numInitial-1 and local blocks t/lsel - numLocal + 1 .. t/lsel,
// where visible) are always selected and count toward n; the remaining slots take
// the visible blocks with the largest score, ties going to the lower index. With
// fewer than n visible blocks all visible blocks are selected.
// Output idx [B, T, H, n]: selected block indices in ascending order, then -1 padding.
// Throws if numInitial + numLocal > n (forced blocks could not fit).
void selectTopNFromScores(const Dims &dims, int lsel, int n, std::span<const double> shared,
                          std::vector<std::int32_t> &idx, int numInitial = 1,
                          int numLocal = 2);

// Full selection pipeline: p_cmp (from q, kc) -> p_slc (blockImportance, eq. 9)
// -> shared over the GQA group (eq. 10) -> selectTopNFromScores (eq. 11-12).
void selectTopN(const Dims &dims, int l, int d, int lsel, int n, double scale,
                std::span<const float> q, std::span<const float> kc,
                std::vector<std::int32_t> &idx, int numInitial = 1, int numLocal = 2);

// ---- gating ------------------------------------------------------------------

// out = g_cmp * o_cmp + g_slc * o_slc + g_swa * o_swa; o_* [B, T, HQ, Dv], g_* [B, T, HQ].
void gatedCombine(const Dims &dims, std::span<const double> oCmp, std::span<const double> oSlc,
                  std::span<const double> oSwa, std::span<const float> gCmp,
                  std::span<const float> gSlc, std::span<const float> gSwa,
                  std::vector<double> &out);

// ---- comparison ----------------------------------------------------------------
// a = value under test (e.g. GPU output), b = reference. Sizes must match (else throws).
// Equal infinities (e.g. lse = -inf in both) count as an exact match; any NaN in a,
// or an infinity in only one of a, b, gives +inf.

// ||a - b||_2 / ||b||_2 (norm of b over its finite entries); 0 when both are zero,
// +inf when b is zero and a is not.
double relativeError(std::span<const float> a, std::span<const double> b);
double relativeError(std::span<const double> a, std::span<const double> b);
double relativeError(std::span<const float> a, std::span<const float> b);
// max_i |a_i - b_i|; 0 for empty inputs.
double maxAbsError(std::span<const float> a, std::span<const double> b);
double maxAbsError(std::span<const double> a, std::span<const double> b);
double maxAbsError(std::span<const float> a, std::span<const float> b);

// ---- bf16 / fp16 ------------------------------------------------------------------
// Round to nearest, ties to even; overflow rounds to +-inf, NaN stays a (quiet) NaN,
// fp16 subnormals are produced and read correctly.

std::uint16_t floatToBf16Bits(float x);
float bf16BitsToFloat(std::uint16_t bits);
std::uint16_t floatToFp16Bits(float x);
float fp16BitsToFloat(std::uint16_t bits);

// x rounded to the nearest bf16 / fp16 value, returned as a float.
float roundToBf16(float x);
float roundToFp16(float x);
// In-place rounding of a whole array.
void roundToBf16(std::span<float> xs);
void roundToFp16(std::span<float> xs);
// Whole-array conversions to / from bit patterns (what a GPU buffer holds).
std::vector<std::uint16_t> toBf16Bits(std::span<const float> xs);
std::vector<std::uint16_t> toFp16Bits(std::span<const float> xs);
std::vector<float> fromBf16Bits(std::span<const std::uint16_t> bits);
std::vector<float> fromFp16Bits(std::span<const std::uint16_t> bits);

} // namespace nsajit::ref
