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
// Every function taking float inputs also has an overload taking double inputs
// (same maths: float -> double is exact), used for finite-difference checks and
// to compose the branches without rounding (nsaForward / nsaBackward).
// Sizes are checked: a wrong-sized input throws std::invalid_argument.
//
// Training (backward) conventions, see "backward" below:
//   dout [B, T, HQ, Dv]  gradient of the loss with respect to o
//   dq   [B, T, HQ, Dk]; dk [B, Tkv, H, Dk]; dv [B, Tkv, H, Dv]  (summed over the
//        G query heads of each KV head and over all queries); dgate [B, T, HQ]
// Gradients are always double.
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
void compressedAttention(const Dims &dims, int l, int d, double scale,
                         std::span<const double> q, std::span<const double> kc,
                         std::span<const double> vc, std::vector<double> &o,
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
void selectedAttention(const Dims &dims, int lsel, int n, double scale,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<const std::int32_t> idx,
                       std::vector<double> &o, std::vector<double> &lse);

// Sliding window branch: query t attends keys max(0, t - w + 1) .. t (w >= 1).
void windowAttention(const Dims &dims, int w, double scale, std::span<const float> q,
                     std::span<const float> k, std::span<const float> v,
                     std::vector<double> &o, std::vector<double> &lse);
void windowAttention(const Dims &dims, int w, double scale, std::span<const double> q,
                     std::span<const double> k, std::span<const double> v,
                     std::vector<double> &o, std::vector<double> &lse);

// Full causal attention (query t attends keys 0..t): the window branch with w = T.
void causalAttention(const Dims &dims, double scale, std::span<const float> q,
                     std::span<const float> k, std::span<const float> v,
                     std::vector<double> &o, std::vector<double> &lse);
void causalAttention(const Dims &dims, double scale, std::span<const double> q,
                     std::span<const double> k, std::span<const double> v,
                     std::vector<double> &o, std::vector<double> &lse);

// ---- compression (phi) -----------------------------------------------------
// Inputs x [B, T, H, D] (keys or values); output [B, Tc, H, D] as float
// (computed in double) so it can be fed back into the attention functions.
// The double overloads return the unrounded double result. Tokens after the last
// complete block (t >= (Tc - 1) * d + l) are not used.

// Mean pooling: out[i] = mean(x[i*d : i*d + l]).
void compressMeanPool(int B, int T, int H, int D, int l, int d, std::span<const float> x,
                      std::vector<float> &out);
void compressMeanPool(int B, int T, int H, int D, int l, int d, std::span<const double> x,
                      std::vector<double> &out);
// Weighted sum with one weight per position in the block:
// out[i] = sum_p weights[p] * x[i*d + p], p = 0..l-1 (weights has l entries).
void compressWeighted(int B, int T, int H, int D, int l, int d,
                      std::span<const float> weights, std::span<const float> x,
                      std::vector<float> &out);
void compressWeighted(int B, int T, int H, int D, int l, int d,
                      std::span<const double> weights, std::span<const double> x,
                      std::vector<double> &out);

// ---- selection scores and top-n --------------------------------------------

// p_cmp [B, T, HQ, Tc]: softmax over the compressed tokens visible to t of
// scale * q.kc (0 for invisible tokens; an all-zero row when none is visible).
void compressedProbabilities(const Dims &dims, int l, int d, double scale,
                             std::span<const float> q, std::span<const float> kc,
                             std::vector<double> &pcmp);
void compressedProbabilities(const Dims &dims, int l, int d, double scale,
                             std::span<const double> q, std::span<const double> kc,
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
void selectTopN(const Dims &dims, int l, int d, int lsel, int n, double scale,
                std::span<const double> q, std::span<const double> kc,
                std::vector<std::int32_t> &idx, int numInitial = 1, int numLocal = 2);

// ---- gating ------------------------------------------------------------------

// out = g_cmp * o_cmp + g_slc * o_slc + g_swa * o_swa; o_* [B, T, HQ, Dv], g_* [B, T, HQ].
void gatedCombine(const Dims &dims, std::span<const double> oCmp, std::span<const double> oSlc,
                  std::span<const double> oSwa, std::span<const float> gCmp,
                  std::span<const float> gSlc, std::span<const float> gSwa,
                  std::vector<double> &out);
void gatedCombine(const Dims &dims, std::span<const double> oCmp, std::span<const double> oSlc,
                  std::span<const double> oSwa, std::span<const double> gCmp,
                  std::span<const double> gSlc, std::span<const double> gSwa,
                  std::vector<double> &out);

// ---- backward of the attention branches ----------------------------------------
// Each branch c enters the NSA output as o = ... + g_c * o_c + ..., so given
// dout = dL/do the branch sees dO_c = g_c * dout. With the branch's own forward
// recomputed (P = softmax of the scaled scores over the row's key list, O_c = P V),
// the standard attention backward is, per query row:
//   dP_j  = dO_c . v_j                  Delta = dO_c . O_c
//   dS_j  = P_j (dP_j - Delta)
//   dq   += scale * dS_j k_j            dk_j += scale * dS_j q      dv_j += P_j dO_c
//   dgate = dout . O_c                  (= dL/dg_c)
// Key positions listed several times in a row's key list (duplicated selection
// indices) are separate softmax entries, so they receive one contribution per
// listing. A row that sees no key has O_c = 0: it contributes nothing (dq row = 0,
// dgate = 0) and produces no NaN.
//
// Arguments (all row-major, see the conventions at the top):
//   q     [B, T, HQ, Dk]
//   k, v  [B, Tkv, H, Dk] / [B, Tkv, H, Dv]: the branch's keys / values
//         (compressed: kc, vc with Tkv = Tc = numCompressed(T, l, d); else Tkv = T)
//   gate  [B, T, HQ] gate g_c of this branch, or empty for g_c = 1
//   dout  [B, T, HQ, Dv] gradient of the gated sum o
// Outputs (resized and overwritten): dq [B, T, HQ, Dk], dk [B, Tkv, H, Dk],
//   dv [B, Tkv, H, Dv], dgate [B, T, HQ] (always computed, also when gate is empty).
// The visibility rules and the meaning of l, d, lsel, n, idx, w are those of the
// forward functions above.

void compressedAttentionBackward(const Dims &dims, int l, int d, double scale,
                                 std::span<const float> q, std::span<const float> kc,
                                 std::span<const float> vc, std::span<const float> gate,
                                 std::span<const float> dout, std::vector<double> &dq,
                                 std::vector<double> &dk, std::vector<double> &dv,
                                 std::vector<double> &dgate);
void compressedAttentionBackward(const Dims &dims, int l, int d, double scale,
                                 std::span<const double> q, std::span<const double> kc,
                                 std::span<const double> vc, std::span<const double> gate,
                                 std::span<const double> dout, std::vector<double> &dq,
                                 std::vector<double> &dk, std::vector<double> &dv,
                                 std::vector<double> &dgate);

void selectedAttentionBackward(const Dims &dims, int lsel, int n, double scale,
                               std::span<const float> q, std::span<const float> k,
                               std::span<const float> v, std::span<const std::int32_t> idx,
                               std::span<const float> gate, std::span<const float> dout,
                               std::vector<double> &dq, std::vector<double> &dk,
                               std::vector<double> &dv, std::vector<double> &dgate);
void selectedAttentionBackward(const Dims &dims, int lsel, int n, double scale,
                               std::span<const double> q, std::span<const double> k,
                               std::span<const double> v, std::span<const std::int32_t> idx,
                               std::span<const double> gate, std::span<const double> dout,
                               std::vector<double> &dq, std::vector<double> &dk,
                               std::vector<double> &dv, std::vector<double> &dgate);

void windowAttentionBackward(const Dims &dims, int w, double scale, std::span<const float> q,
                             std::span<const float> k, std::span<const float> v,
                             std::span<const float> gate, std::span<const float> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate);
void windowAttentionBackward(const Dims &dims, int w, double scale, std::span<const double> q,
                             std::span<const double> k, std::span<const double> v,
                             std::span<const double> gate, std::span<const double> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate);

// Full causal attention backward: windowAttentionBackward with w = T.
void causalAttentionBackward(const Dims &dims, double scale, std::span<const float> q,
                             std::span<const float> k, std::span<const float> v,
                             std::span<const float> gate, std::span<const float> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate);
void causalAttentionBackward(const Dims &dims, double scale, std::span<const double> q,
                             std::span<const double> k, std::span<const double> v,
                             std::span<const double> gate, std::span<const double> dout,
                             std::vector<double> &dq, std::vector<double> &dk,
                             std::vector<double> &dv, std::vector<double> &dgate);

// ---- backward of the compression (phi) -----------------------------------------
// dout [B, Tc, H, D] (Tc = numCompressed(T, l, d)) is the gradient of the
// compressed tokens; dx [B, T, H, D] receives, for every token, the sum over the
// (up to l/d, overlapping) blocks containing it; tokens in no block get 0.

// Mean pooling: dx[i*d + p] += dout[i] / l.
void compressMeanPoolBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const float> dout, std::vector<double> &dx);
void compressMeanPoolBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const double> dout, std::vector<double> &dx);

// Weighted pooling (forward: out[i] = sum_p weights[p] x[i*d + p]):
//   dx[i*d + p] += weights[p] dout[i];
//   dweights[p]  = sum over b, i, h, e of x[b, i*d + p, h, e] * dout[b, i, h, e]   ([l]).
void compressWeightedBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const float> weights, std::span<const float> x,
                              std::span<const float> dout, std::vector<double> &dx,
                              std::vector<double> &dweights);
void compressWeightedBackward(int B, int T, int H, int D, int l, int d,
                              std::span<const double> weights, std::span<const double> x,
                              std::span<const double> dout, std::vector<double> &dx,
                              std::vector<double> &dweights);

// ---- whole NSA: forward and backward ---------------------------------------------
// nsaForward composes, for one layer's attention:
//   kc = phi(K_cmp), vc = phi(V_cmp)                  (compressMeanPool / compressWeighted)
//   o_cmp, lse_cmp = compressedAttention(q, kc, vc)
//   idx = selectTopN(q, kc)                           (unless given)
//   o_slc, lse_slc = selectedAttention(q, K_slc, V_slc, idx)
//   o_swa, lse_swa = windowAttention(q, K_swa, V_swa)
//   o = g_cmp o_cmp + g_slc o_slc + g_swa o_swa       (gatedCombine)
// entirely in double (kc/vc are not rounded to float). nsaBackward differentiates
// it with respect to q, every branch's K/V (the compressed branch's through phi),
// the gates and the pooling weights. The selection is not differentiated: the
// indices are held fixed.

enum class Compression {
  Mean,      // phi = compressMeanPool
  Weighted,  // phi = compressWeighted, one weight per block position (weightsK / weightsV)
};

struct NsaConfig {
  int l = 32;        // compression block length
  int d = 16;        // compression stride (1 <= d <= l, l % d == 0)
  int lsel = 64;     // selection block size (lsel % d == 0)
  int n = 16;        // selected blocks per (query, KV head), forced ones included
  int numInitial = 1;  // forced initial blocks (selectTopN)
  int numLocal = 2;    // forced local blocks (selectTopN)
  int w = 512;       // sliding window (w >= 1)
  double scale = 0;  // softmax scale of all three branches; <= 0 means 1 / sqrt(Dk)
  Compression compression = Compression::Mean;
};

// The inputs of nsaForward / nsaBackward (spans: the caller keeps the data alive).
// An empty optional span means "not given". Real = float (bf16/fp16-rounded
// host data, NsaInputsF) or double (NsaInputs).
template <typename Real>
struct NsaInputsT {
  std::span<const Real> q;  // [B, T, HQ, Dk] required
  // Shared keys / values [B, T, H, Dk] / [B, T, H, Dv], used by every branch whose
  // own k / v below is empty. May be empty when every branch has its own.
  std::span<const Real> k, v;
  // Optional per-branch raw keys / values, same shapes as k / v. Key and value are
  // resolved independently (e.g. kCmp given, vCmp empty -> the compressed branch
  // pools kCmp and v).
  std::span<const Real> kCmp, vCmp;  // compressed branch, before phi
  std::span<const Real> kSlc, vSlc;  // selected branch
  std::span<const Real> kSwa, vSwa;  // window branch
  // Pooling weights [l] for the keys / values; required with Compression::Weighted
  // and must be empty with Compression::Mean. (To share one weight vector, pass
  // the same span twice and add dweightsK + dweightsV.)
  std::span<const Real> weightsK, weightsV;
  // Optional gates [B, T, HQ]; empty = all ones.
  std::span<const Real> gCmp, gSlc, gSwa;
  // Optional selection [B, T, H, n] (see selectedAttention for the meaning of
  // entries); empty = computed by selectTopN(q, kc, cfg.numInitial, cfg.numLocal).
  std::span<const std::int32_t> idx;
};
using NsaInputs = NsaInputsT<double>;
using NsaInputsF = NsaInputsT<float>;

struct NsaForwardResult {
  std::vector<double> o;                       // [B, T, HQ, Dv] gated sum
  std::vector<double> oCmp, oSlc, oSwa;        // [B, T, HQ, Dv] branch outputs (ungated)
  std::vector<double> lseCmp, lseSlc, lseSwa;  // [B, T, HQ] (-inf where a row sees no key)
  std::vector<double> kc, vc;                  // [B, Tc, H, Dk] / [B, Tc, H, Dv] = phi(K/V_cmp)
  std::vector<std::int32_t> idx;               // [B, T, H, n] selection used (given or computed)
};

struct NsaGradients {
  std::vector<double> dq;  // [B, T, HQ, Dk]
  // Gradient of each branch's raw keys / values [B, T, H, Dk] / [B, T, H, Dv]
  // (whichever tensor the branch used, own or shared); dkCmp / dvCmp are through phi.
  std::vector<double> dkCmp, dvCmp, dkSlc, dvSlc, dkSwa, dvSwa;
  // Gradient of the shared k / v: the sum of the above over the branches that
  // used k / v (zeros if none); empty when inputs.k / inputs.v is empty.
  std::vector<double> dk, dv;
  std::vector<double> dkc, dvc;              // [B, Tc, H, Dk] / [B, Tc, H, Dv] gradient of kc / vc
  std::vector<double> dgCmp, dgSlc, dgSwa;   // [B, T, HQ] (computed also when gates are empty)
  std::vector<double> dweightsK, dweightsV;  // [l] with Compression::Weighted, else empty
  std::vector<std::int32_t> idx;             // [B, T, H, n] selection used (given or computed)
};

void nsaForward(const Dims &dims, const NsaConfig &cfg, const NsaInputs &in,
                NsaForwardResult &out);
void nsaForward(const Dims &dims, const NsaConfig &cfg, const NsaInputsF &in,
                NsaForwardResult &out);

// dout [B, T, HQ, Dv] = dL/do. Recomputes the forward (same selection rule as
// nsaForward: in.idx if given, else selectTopN).
void nsaBackward(const Dims &dims, const NsaConfig &cfg, const NsaInputs &in,
                 std::span<const double> dout, NsaGradients &grads);
void nsaBackward(const Dims &dims, const NsaConfig &cfg, const NsaInputsF &in,
                 std::span<const float> dout, NsaGradients &grads);

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
