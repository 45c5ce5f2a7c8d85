// Float64 CPU reference for Native Sparse Attention. See Reference.h for the
// conventions; every function here is a direct transcription of the maths with
// naive loops, so that it can serve as the oracle for the GPU kernels.
#include "runtime/reference/Reference.h"
#include "runtime/reference/ReferenceDetail.h"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <limits>
#include <stdexcept>
#include <string_view>

namespace nsajit::ref {

using namespace detail;

namespace {

// One attention row: query qrow (Dk values) against the keys at positions
// `keys` (possibly repeated) of one KV head. kBase/vBase point at token 0 of that
// (b, head); consecutive tokens are kStride/vStride elements apart.
// Writes Dv doubles to out and returns lse (natural log, scaled scores);
// no key -> zeros and -inf. Two passes with max subtraction so large scores
// cannot overflow.
template <typename S>
double attendRow(const S *qrow, int Dk, int Dv, double scale, const std::vector<int> &keys,
                 const S *kBase, std::size_t kStride, const S *vBase,
                 std::size_t vStride, double *out) {
  std::fill(out, out + Dv, 0.0);
  if (keys.empty())
    return kNegInf;
  std::vector<double> s(keys.size());
  double mx = kNegInf;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    const S *krow = kBase + sz(keys[j]) * kStride;
    double dot = 0.0;
    for (int x = 0; x < Dk; ++x)
      dot += static_cast<double>(qrow[x]) * static_cast<double>(krow[x]);
    s[j] = scale * dot;
    mx = std::max(mx, s[j]);
  }
  double sum = 0.0;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    double p = std::exp(s[j] - mx);
    sum += p;
    const S *vrow = vBase + sz(keys[j]) * vStride;
    for (int x = 0; x < Dv; ++x)
      out[x] += p * static_cast<double>(vrow[x]);
  }
  for (int x = 0; x < Dv; ++x)
    out[x] /= sum;
  return mx + std::log(sum);
}

// Shared driver: for every (b, t, hq) attend the key positions that keysFor(b, t, kvh)
// returns, from k/v with kvLen tokens.
template <typename S, typename KeysFor>
void attendAll(const Dims &dims, int kvLen, double scale, std::span<const S> q,
               std::span<const S> k, std::span<const S> v, std::vector<double> &o,
               std::vector<double> &lse, KeysFor keysFor) {
  const int HQ = dims.HQ();
  o.assign(sz(dims.B) * dims.T * HQ * dims.Dv, 0.0);
  lse.assign(sz(dims.B) * dims.T * HQ, kNegInf);
  std::vector<int> keys;
  for (int b = 0; b < dims.B; ++b)
    for (int t = 0; t < dims.T; ++t)
      for (int kvh = 0; kvh < dims.H; ++kvh) {
        keys.clear();
        keysFor(b, t, kvh, keys);
        const S *kBase = k.data() + at4(kvLen, dims.H, dims.Dk, b, 0, kvh);
        const S *vBase = v.data() + at4(kvLen, dims.H, dims.Dv, b, 0, kvh);
        for (int g = 0; g < dims.G; ++g) {
          const int hq = kvh * dims.G + g;
          const S *qrow = q.data() + at4(dims.T, HQ, dims.Dk, b, t, hq);
          double *orow = o.data() + at4(dims.T, HQ, dims.Dv, b, t, hq);
          lse[(sz(b) * dims.T + t) * HQ + hq] =
              attendRow(qrow, dims.Dk, dims.Dv, scale, keys, kBase, sz(dims.H) * dims.Dk, vBase,
                        sz(dims.H) * dims.Dv, orow);
        }
      }
}

// Shared body of the two eq. 9 variants: sign = -1 gives the paper's
// (lsel/d)*j - m - n, sign = +1 gives (lsel/d)*j + m - n.
void blockImportanceImpl(std::string_view fn, const Dims &dims, int l, int d, int lsel,
                         int sign, std::span<const double> pcmp, std::vector<double> &pslc) {
  checkDims(fn, dims);
  checkCompression(fn, l, d);
  if (lsel < 1 || lsel % d != 0)
    fail(fn, fmt::format("bad selection block lsel={} (need lsel >= 1, lsel % d == 0, d={})",
                         lsel, d));
  const int Tc = numCompressed(dims.T, l, d);
  const int NB = numSelectionBlocks(dims.T, lsel);
  const int HQ = dims.HQ();
  checkSize(fn, "pcmp", pcmp.size(), sz(dims.B) * dims.T * HQ * Tc);
  pslc.assign(sz(dims.B) * dims.T * HQ * NB, 0.0);
  const int perSel = lsel / d, perCmp = l / d;
  for (std::size_t row = 0; row < sz(dims.B) * dims.T * HQ; ++row)
    for (int j = 0; j < NB; ++j) {
      double acc = 0.0;
      for (int m = 0; m < perSel; ++m)
        for (int n = 0; n < perCmp; ++n) {
          const int i = perSel * j + sign * m - n;
          if (i >= 0 && i < Tc)
            acc += pcmp[row * Tc + i];
        }
      pslc[row * NB + j] = acc;
    }
}

template <typename A, typename B>
void checkSameSize(std::string_view fn, std::span<const A> a, std::span<const B> b) {
  if (a.size() != b.size())
    fail(fn, fmt::format("sizes differ: a has {}, b has {}", a.size(), b.size()));
}

// |a - b| with the comparison conventions of Reference.h: equal values (including
// equal infinities) -> 0; NaN in a or an infinity on one side only -> +inf.
double absDiff(double a, double b) {
  if (std::isnan(a))
    return kInf;
  if (a == b)
    return 0.0;
  return std::fabs(a - b);  // inf when exactly one is infinite; NaN if b is NaN
}

template <typename A, typename B>
double relativeErrorImpl(std::span<const A> a, std::span<const B> b) {
  checkSameSize("relativeError", a, b);
  double diff2 = 0.0, ref2 = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double x = static_cast<double>(a[i]), y = static_cast<double>(b[i]);
    const double e = absDiff(x, y);
    if (std::isinf(e))
      return kInf;
    diff2 += e * e;
    if (std::isfinite(y))
      ref2 += y * y;
  }
  if (diff2 == 0.0)
    return 0.0;  // includes both all-zero
  if (ref2 == 0.0)
    return kInf;
  return std::sqrt(diff2) / std::sqrt(ref2);
}

template <typename A, typename B>
double maxAbsErrorImpl(std::span<const A> a, std::span<const B> b) {
  checkSameSize("maxAbsError", a, b);
  double mx = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const double e = absDiff(static_cast<double>(a[i]), static_cast<double>(b[i]));
    if (std::isnan(e) || std::isinf(e))
      return kInf;
    mx = std::max(mx, e);
  }
  return mx;
}

} // namespace

// ---- sizes -----------------------------------------------------------------

int numCompressed(int T, int l, int d) { return T >= l ? (T - l) / d + 1 : 0; }

int numSelectionBlocks(int T, int lsel) { return (T + lsel - 1) / lsel; }

// ---- attention branches ----------------------------------------------------
// Each branch is one template over the input element type S (float or double);
// the public float and double overloads below only instantiate it.

namespace {

// Compressed token i summarises tokens i*d .. i*d+l-1, so it is visible to t only
// when its last token i*d + l - 1 <= t.
template <typename S>
void compressedAttentionImpl(const Dims &dims, int l, int d, double scale, std::span<const S> q,
                             std::span<const S> kc, std::span<const S> vc,
                             std::vector<double> &o, std::vector<double> &lse) {
  checkCompression("compressedAttention", l, d);
  const int Tc = numCompressed(dims.T, l, d);
  checkQkv("compressedAttention", dims, Tc, q, kc, vc);
  attendAll(dims, Tc, scale, q, kc, vc, o, lse, [&](int, int t, int, std::vector<int> &keys) {
    compressedKeys(t, l, d, Tc, keys);
  });
}

// The tokens of the listed blocks, concatenated in list order, causally cut at t.
template <typename S>
void selectedAttentionImpl(const Dims &dims, int lsel, int n, double scale, std::span<const S> q,
                           std::span<const S> k, std::span<const S> v,
                           std::span<const std::int32_t> idx, std::vector<double> &o,
                           std::vector<double> &lse) {
  if (lsel < 1 || n < 0)
    fail("selectedAttention", fmt::format("bad lsel={} n={}", lsel, n));
  checkQkv("selectedAttention", dims, dims.T, q, k, v);
  checkSize("selectedAttention", "idx", idx.size(), sz(dims.B) * dims.T * dims.H * n);
  const int NB = numSelectionBlocks(dims.T, lsel);
  attendAll(dims, dims.T, scale, q, k, v, o, lse,
            [&](int b, int t, int kvh, std::vector<int> &keys) {
              selectedKeys(idx.data() + at4(dims.T, dims.H, n, b, t, kvh), n, lsel, NB, dims.T,
                           t, keys);
            });
}

template <typename S>
void windowAttentionImpl(const Dims &dims, int w, double scale, std::span<const S> q,
                         std::span<const S> k, std::span<const S> v, std::vector<double> &o,
                         std::vector<double> &lse) {
  if (w < 1)
    fail("windowAttention", fmt::format("bad window w={} (need w >= 1)", w));
  checkQkv("windowAttention", dims, dims.T, q, k, v);
  attendAll(dims, dims.T, scale, q, k, v, o, lse, [&](int, int t, int, std::vector<int> &keys) {
    windowKeys(t, w, keys);
  });
}

// ---- compression (phi) -----------------------------------------------------

// Accumulates in double; out stays double (the float API rounds it afterwards).
template <typename S>
void compressWeightedImpl(int B, int T, int H, int D, int l, int d, std::span<const S> weights,
                          std::span<const S> x, std::vector<double> &out) {
  checkCompression("compressWeighted", l, d);
  checkPoolDims("compressWeighted", B, T, H, D);
  checkSize("compressWeighted", "weights", weights.size(), sz(l));
  checkSize("compressWeighted", "x", x.size(), sz(B) * T * H * D);
  const int Tc = numCompressed(T, l, d);
  out.assign(sz(B) * Tc * H * D, 0.0);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Tc; ++i)
      for (int h = 0; h < H; ++h) {
        double *acc = out.data() + at4(Tc, H, D, b, i, h);
        for (int p = 0; p < l; ++p) {
          const S *row = x.data() + at4(T, H, D, b, i * d + p, h);
          for (int e = 0; e < D; ++e)
            acc[e] += static_cast<double>(weights[p]) * static_cast<double>(row[e]);
        }
      }
}

template <typename S>
void compressMeanPoolImpl(int B, int T, int H, int D, int l, int d, std::span<const S> x,
                          std::vector<double> &out) {
  // Not compressWeighted with weights 1/l: 1/l may not be exact.
  checkCompression("compressMeanPool", l, d);
  checkPoolDims("compressMeanPool", B, T, H, D);
  checkSize("compressMeanPool", "x", x.size(), sz(B) * T * H * D);
  const int Tc = numCompressed(T, l, d);
  out.assign(sz(B) * Tc * H * D, 0.0);
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < Tc; ++i)
      for (int h = 0; h < H; ++h)
        for (int e = 0; e < D; ++e) {
          double acc = 0.0;
          for (int p = 0; p < l; ++p)
            acc += static_cast<double>(x[at4(T, H, D, b, i * d + p, h) + e]);
          out[at4(Tc, H, D, b, i, h) + e] = acc / l;
        }
}

std::vector<float> toFloat(const std::vector<double> &xs) {
  std::vector<float> out(xs.size());
  std::transform(xs.begin(), xs.end(), out.begin(),
                 [](double x) { return static_cast<float>(x); });
  return out;
}

// ---- selection scores --------------------------------------------------------

// Same visibility rule as compressedAttention; p = exp(s - lse) per visible token.
template <typename S>
void compressedProbabilitiesImpl(const Dims &dims, int l, int d, double scale,
                                 std::span<const S> q, std::span<const S> kc,
                                 std::vector<double> &pcmp) {
  constexpr std::string_view fn = "compressedProbabilities";
  checkDims(fn, dims);
  checkCompression(fn, l, d);
  const int Tc = numCompressed(dims.T, l, d);
  const int HQ = dims.HQ();
  checkSize(fn, "q", q.size(), sz(dims.B) * dims.T * HQ * dims.Dk);
  checkSize(fn, "kc", kc.size(), sz(dims.B) * Tc * dims.H * dims.Dk);
  pcmp.assign(sz(dims.B) * dims.T * HQ * Tc, 0.0);
  std::vector<double> s;
  for (int b = 0; b < dims.B; ++b)
    for (int t = 0; t < dims.T; ++t)
      for (int hq = 0; hq < HQ; ++hq) {
        const int kvh = hq / dims.G;
        const S *qrow = q.data() + at4(dims.T, HQ, dims.Dk, b, t, hq);
        s.clear();
        double mx = kNegInf;
        for (int i = 0; i < Tc && i * d + l - 1 <= t; ++i) {
          const S *krow = kc.data() + at4(Tc, dims.H, dims.Dk, b, i, kvh);
          double dot = 0.0;
          for (int x = 0; x < dims.Dk; ++x)
            dot += static_cast<double>(qrow[x]) * static_cast<double>(krow[x]);
          s.push_back(scale * dot);
          mx = std::max(mx, s.back());
        }
        if (s.empty())
          continue;
        double sum = 0.0;
        for (double si : s)
          sum += std::exp(si - mx);
        double *prow = pcmp.data() + ((sz(b) * dims.T + t) * HQ + hq) * Tc;
        for (std::size_t i = 0; i < s.size(); ++i)
          prow[i] = std::exp(s[i] - mx) / sum;
      }
}

} // namespace

void compressedAttention(const Dims &dims, int l, int d, double scale,
                         std::span<const float> q, std::span<const float> kc,
                         std::span<const float> vc, std::vector<double> &o,
                         std::vector<double> &lse) {
  compressedAttentionImpl(dims, l, d, scale, q, kc, vc, o, lse);
}
void compressedAttention(const Dims &dims, int l, int d, double scale,
                         std::span<const double> q, std::span<const double> kc,
                         std::span<const double> vc, std::vector<double> &o,
                         std::vector<double> &lse) {
  compressedAttentionImpl(dims, l, d, scale, q, kc, vc, o, lse);
}

void selectedAttention(const Dims &dims, int lsel, int n, double scale,
                       std::span<const float> q, std::span<const float> k,
                       std::span<const float> v, std::span<const std::int32_t> idx,
                       std::vector<double> &o, std::vector<double> &lse) {
  selectedAttentionImpl(dims, lsel, n, scale, q, k, v, idx, o, lse);
}
void selectedAttention(const Dims &dims, int lsel, int n, double scale,
                       std::span<const double> q, std::span<const double> k,
                       std::span<const double> v, std::span<const std::int32_t> idx,
                       std::vector<double> &o, std::vector<double> &lse) {
  selectedAttentionImpl(dims, lsel, n, scale, q, k, v, idx, o, lse);
}

void windowAttention(const Dims &dims, int w, double scale, std::span<const float> q,
                     std::span<const float> k, std::span<const float> v,
                     std::vector<double> &o, std::vector<double> &lse) {
  windowAttentionImpl(dims, w, scale, q, k, v, o, lse);
}
void windowAttention(const Dims &dims, int w, double scale, std::span<const double> q,
                     std::span<const double> k, std::span<const double> v,
                     std::vector<double> &o, std::vector<double> &lse) {
  windowAttentionImpl(dims, w, scale, q, k, v, o, lse);
}

void causalAttention(const Dims &dims, double scale, std::span<const float> q,
                     std::span<const float> k, std::span<const float> v,
                     std::vector<double> &o, std::vector<double> &lse) {
  windowAttention(dims, std::max(dims.T, 1), scale, q, k, v, o, lse);
}
void causalAttention(const Dims &dims, double scale, std::span<const double> q,
                     std::span<const double> k, std::span<const double> v,
                     std::vector<double> &o, std::vector<double> &lse) {
  windowAttention(dims, std::max(dims.T, 1), scale, q, k, v, o, lse);
}

// ---- compression (phi) -----------------------------------------------------

void compressWeighted(int B, int T, int H, int D, int l, int d,
                      std::span<const float> weights, std::span<const float> x,
                      std::vector<float> &out) {
  std::vector<double> acc;
  compressWeightedImpl(B, T, H, D, l, d, weights, x, acc);
  out = toFloat(acc);
}
void compressWeighted(int B, int T, int H, int D, int l, int d,
                      std::span<const double> weights, std::span<const double> x,
                      std::vector<double> &out) {
  compressWeightedImpl(B, T, H, D, l, d, weights, x, out);
}

void compressMeanPool(int B, int T, int H, int D, int l, int d, std::span<const float> x,
                      std::vector<float> &out) {
  std::vector<double> acc;
  compressMeanPoolImpl(B, T, H, D, l, d, x, acc);
  out = toFloat(acc);
}
void compressMeanPool(int B, int T, int H, int D, int l, int d, std::span<const double> x,
                      std::vector<double> &out) {
  compressMeanPoolImpl(B, T, H, D, l, d, x, out);
}

// ---- selection scores and top-n --------------------------------------------

void compressedProbabilities(const Dims &dims, int l, int d, double scale,
                             std::span<const float> q, std::span<const float> kc,
                             std::vector<double> &pcmp) {
  compressedProbabilitiesImpl(dims, l, d, scale, q, kc, pcmp);
}
void compressedProbabilities(const Dims &dims, int l, int d, double scale,
                             std::span<const double> q, std::span<const double> kc,
                             std::vector<double> &pcmp) {
  compressedProbabilitiesImpl(dims, l, d, scale, q, kc, pcmp);
}

// Paper eq. 9, exactly as in docs/NSA.md:
//   p_slc[j] = sum_{m=0}^{lsel/d-1} sum_{n=0}^{l/d-1} p_cmp[(lsel/d)*j - m - n].
// What it expresses: split the sequence into stride-d chunks. Compressed token i
// covers chunks i .. i + l/d - 1; selection block j covers chunks (lsel/d)*j ..
// (lsel/d)*(j+1) - 1. The double sum is a box filter of length lsel/d convolved
// with one of length l/d, so p_cmp[i] is weighted by a count of shared chunks
// (a trapezoid of weights), i.e. it is meant as "sum of compressed scores weighted
// by their overlap with the block". BUT with the minus sign on m the window is
// anchored so that it reaches back from index (lsel/d)*j: it sums compressed tokens
// (lsel/d)*j - (lsel/d + l/d - 2) .. (lsel/d)*j, which cover tokens
// j*lsel - lsel - l + 2*d .. j*lsel + l - 1, i.e. mostly block j-1 plus the first
// l tokens of block j. Example l=32, d=16, lsel=64:
//   p_slc[j] = p[4j] + 2 p[4j-1] + 2 p[4j-2] + 2 p[4j-3] + p[4j-4]
// covers tokens 64j-64 .. 64j+31 while block j is tokens 64j .. 64j+63 (whose
// overlapping compressed tokens are 4j-1 .. 4j+3). For j = 0 only p[0] remains.
// The weights equal true overlap counts only for index (lsel/d)*j + m - n,
// which blockImportanceOverlap implements. With l = lsel = d both reduce to p_cmp[j].
void blockImportance(const Dims &dims, int l, int d, int lsel, std::span<const double> pcmp,
                     std::vector<double> &pslc) {
  blockImportanceImpl("blockImportance", dims, l, d, lsel, -1, pcmp, pslc);
}

// p_cmp[i] weighted by the number of stride-d chunks that compressed token i and
// selection block j share: chunk (lsel/d)*j + m of the block is chunk n of token i
// when i = (lsel/d)*j + m - n.
void blockImportanceOverlap(const Dims &dims, int l, int d, int lsel,
                            std::span<const double> pcmp, std::vector<double> &pslc) {
  blockImportanceImpl("blockImportanceOverlap", dims, l, d, lsel, +1, pcmp, pslc);
}

// Eq. 10: all G query heads of a KV head share one selection.
void sharedBlockScores(const Dims &dims, int numBlocks, std::span<const double> pslc,
                       std::vector<double> &shared) {
  checkDims("sharedBlockScores", dims);
  if (numBlocks < 0)
    fail("sharedBlockScores", fmt::format("bad numBlocks={}", numBlocks));
  checkSize("sharedBlockScores", "pslc", pslc.size(),
            sz(dims.B) * dims.T * dims.HQ() * numBlocks);
  shared.assign(sz(dims.B) * dims.T * dims.H * numBlocks, 0.0);
  for (int b = 0; b < dims.B; ++b)
    for (int t = 0; t < dims.T; ++t)
      for (int hq = 0; hq < dims.HQ(); ++hq) {
        const int kvh = hq / dims.G;
        for (int j = 0; j < numBlocks; ++j)
          shared[at4(dims.T, dims.H, numBlocks, b, t, kvh) + j] +=
              pslc[at4(dims.T, dims.HQ(), numBlocks, b, t, hq) + j];
      }
}

// Eq. 11-12 with the paper's forced initial / local blocks. Per row: mark forced
// visible blocks, then repeatedly take the unmarked visible block with the largest
// score (strictly larger wins, so ties go to the lower index), then sort ascending
// and pad with -1.
void selectTopNFromScores(const Dims &dims, int lsel, int n, std::span<const double> shared,
                          std::vector<std::int32_t> &idx, int numInitial, int numLocal) {
  constexpr std::string_view fn = "selectTopNFromScores";
  checkDims(fn, dims);
  if (lsel < 1 || n < 1 || numInitial < 0 || numLocal < 0 || numInitial + numLocal > n)
    fail(fn, fmt::format("bad lsel={} n={} numInitial={} numLocal={} (need numInitial + "
                         "numLocal <= n)",
                         lsel, n, numInitial, numLocal));
  const int NB = numSelectionBlocks(dims.T, lsel);
  checkSize(fn, "shared", shared.size(), sz(dims.B) * dims.T * dims.H * NB);
  idx.assign(sz(dims.B) * dims.T * dims.H * n, -1);
  std::vector<char> taken(sz(NB));
  std::vector<std::int32_t> chosen;
  for (int b = 0; b < dims.B; ++b)
    for (int t = 0; t < dims.T; ++t)
      for (int kvh = 0; kvh < dims.H; ++kvh) {
        const double *score = shared.data() + at4(dims.T, dims.H, NB, b, t, kvh);
        const int current = t / lsel;  // last visible block
        std::fill(taken.begin(), taken.end(), 0);
        chosen.clear();
        auto take = [&](int j) {
          if (j >= 0 && j <= current && !taken[j]) {
            taken[j] = 1;
            chosen.push_back(j);
          }
        };
        for (int j = 0; j < numInitial; ++j)
          take(j);
        for (int j = current - numLocal + 1; j <= current; ++j)
          take(j);
        while (static_cast<int>(chosen.size()) < n) {
          int best = -1;
          for (int j = 0; j <= current; ++j)
            if (!taken[j] && (best < 0 || score[j] > score[best]))
              best = j;
          if (best < 0)
            break;  // every visible block is already selected
          take(best);
        }
        std::sort(chosen.begin(), chosen.end());
        std::copy(chosen.begin(), chosen.end(),
                  idx.begin() + static_cast<std::ptrdiff_t>(at4(dims.T, dims.H, n, b, t, kvh)));
      }
}

namespace {
template <typename S>
void selectTopNImpl(const Dims &dims, int l, int d, int lsel, int n, double scale,
                    std::span<const S> q, std::span<const S> kc, std::vector<std::int32_t> &idx,
                    int numInitial, int numLocal) {
  std::vector<double> pcmp, pslc, shared;
  compressedProbabilities(dims, l, d, scale, q, kc, pcmp);
  blockImportance(dims, l, d, lsel, pcmp, pslc);
  sharedBlockScores(dims, numSelectionBlocks(dims.T, lsel), pslc, shared);
  selectTopNFromScores(dims, lsel, n, shared, idx, numInitial, numLocal);
}
} // namespace

void selectTopN(const Dims &dims, int l, int d, int lsel, int n, double scale,
                std::span<const float> q, std::span<const float> kc,
                std::vector<std::int32_t> &idx, int numInitial, int numLocal) {
  selectTopNImpl(dims, l, d, lsel, n, scale, q, kc, idx, numInitial, numLocal);
}
void selectTopN(const Dims &dims, int l, int d, int lsel, int n, double scale,
                std::span<const double> q, std::span<const double> kc,
                std::vector<std::int32_t> &idx, int numInitial, int numLocal) {
  selectTopNImpl(dims, l, d, lsel, n, scale, q, kc, idx, numInitial, numLocal);
}

// ---- gating ------------------------------------------------------------------

namespace {
// Gates are per (b, t, hq) and broadcast over Dv.
template <typename S>
void gatedCombineImpl(const Dims &dims, std::span<const double> oCmp,
                      std::span<const double> oSlc, std::span<const double> oSwa,
                      std::span<const S> gCmp, std::span<const S> gSlc, std::span<const S> gSwa,
                      std::vector<double> &out) {
  constexpr std::string_view fn = "gatedCombine";
  checkDims(fn, dims);
  const std::size_t rows = sz(dims.B) * dims.T * dims.HQ();
  checkSize(fn, "oCmp", oCmp.size(), rows * dims.Dv);
  checkSize(fn, "oSlc", oSlc.size(), rows * dims.Dv);
  checkSize(fn, "oSwa", oSwa.size(), rows * dims.Dv);
  checkSize(fn, "gCmp", gCmp.size(), rows);
  checkSize(fn, "gSlc", gSlc.size(), rows);
  checkSize(fn, "gSwa", gSwa.size(), rows);
  out.assign(rows * dims.Dv, 0.0);
  for (std::size_t r = 0; r < rows; ++r)
    for (int x = 0; x < dims.Dv; ++x) {
      const std::size_t i = r * dims.Dv + x;
      out[i] = static_cast<double>(gCmp[r]) * oCmp[i] + static_cast<double>(gSlc[r]) * oSlc[i] +
               static_cast<double>(gSwa[r]) * oSwa[i];
    }
}
} // namespace

void gatedCombine(const Dims &dims, std::span<const double> oCmp, std::span<const double> oSlc,
                  std::span<const double> oSwa, std::span<const float> gCmp,
                  std::span<const float> gSlc, std::span<const float> gSwa,
                  std::vector<double> &out) {
  gatedCombineImpl(dims, oCmp, oSlc, oSwa, gCmp, gSlc, gSwa, out);
}
void gatedCombine(const Dims &dims, std::span<const double> oCmp, std::span<const double> oSlc,
                  std::span<const double> oSwa, std::span<const double> gCmp,
                  std::span<const double> gSlc, std::span<const double> gSwa,
                  std::vector<double> &out) {
  gatedCombineImpl(dims, oCmp, oSlc, oSwa, gCmp, gSlc, gSwa, out);
}

// ---- comparison ----------------------------------------------------------------

double relativeError(std::span<const float> a, std::span<const double> b) {
  return relativeErrorImpl(a, b);
}
double relativeError(std::span<const double> a, std::span<const double> b) {
  return relativeErrorImpl(a, b);
}
double relativeError(std::span<const float> a, std::span<const float> b) {
  return relativeErrorImpl(a, b);
}
double maxAbsError(std::span<const float> a, std::span<const double> b) {
  return maxAbsErrorImpl(a, b);
}
double maxAbsError(std::span<const double> a, std::span<const double> b) {
  return maxAbsErrorImpl(a, b);
}
double maxAbsError(std::span<const float> a, std::span<const float> b) {
  return maxAbsErrorImpl(a, b);
}

// ---- bf16 / fp16 ------------------------------------------------------------------

// bf16 is the top 16 bits of a float: add 0x7fff plus the lowest kept bit, then
// truncate (round to nearest even; carries into the exponent give inf on overflow).
std::uint16_t floatToBf16Bits(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // NaN: keep sign, force quiet
  const std::uint32_t lsb = (u >> 16) & 1u;
  return static_cast<std::uint16_t>((u + 0x7fffu + lsb) >> 16);
}

float bf16BitsToFloat(std::uint16_t bits) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

// fp16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Normal numbers keep the
// top 10 of the 23 float mantissa bits with round to nearest even (a carry out of
// the mantissa correctly bumps the exponent); values below 2^-14 become
// subnormals (multiples of 2^-24, rounded with nearbyint, ties to even);
// |x| >= 65520 (halfway between 65504 and 65536, tie to even) becomes inf.
std::uint16_t floatToFp16Bits(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const std::uint16_t sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u)  // NaN: keep top payload bits, force quiet
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u)  // >= 65520 (incl. inf)
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  if (a < 0x38800000u) {  // below 2^-14: subnormal or zero
    const double units = static_cast<double>(std::bit_cast<float>(a)) * 16777216.0;  // / 2^-24
    return static_cast<std::uint16_t>(sign | static_cast<std::uint32_t>(std::nearbyint(units)));
  }
  const std::uint32_t exp = (a >> 23) - 127 + 15;
  const std::uint32_t mant = a & 0x7fffffu;
  std::uint32_t h = (exp << 10) | (mant >> 13);
  const std::uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
    ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float fp16BitsToFloat(std::uint16_t bits) {
  const std::uint32_t sign = (static_cast<std::uint32_t>(bits) & 0x8000u) << 16;
  const std::uint32_t exp = (bits >> 10) & 0x1fu;
  const std::uint32_t mant = bits & 0x3ffu;
  if (exp == 0) {  // zero / subnormal: mant * 2^-24, exact in float
    const float v = static_cast<float>(mant) * 0x1p-24f;
    return sign ? -v : v;
  }
  if (exp == 0x1f)  // inf / NaN
    return std::bit_cast<float>(sign | 0x7f800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

float roundToBf16(float x) { return bf16BitsToFloat(floatToBf16Bits(x)); }
float roundToFp16(float x) { return fp16BitsToFloat(floatToFp16Bits(x)); }

void roundToBf16(std::span<float> xs) {
  for (float &x : xs)
    x = roundToBf16(x);
}
void roundToFp16(std::span<float> xs) {
  for (float &x : xs)
    x = roundToFp16(x);
}

std::vector<std::uint16_t> toBf16Bits(std::span<const float> xs) {
  std::vector<std::uint16_t> out(xs.size());
  std::transform(xs.begin(), xs.end(), out.begin(), [](float x) { return floatToBf16Bits(x); });
  return out;
}
std::vector<std::uint16_t> toFp16Bits(std::span<const float> xs) {
  std::vector<std::uint16_t> out(xs.size());
  std::transform(xs.begin(), xs.end(), out.begin(), [](float x) { return floatToFp16Bits(x); });
  return out;
}
std::vector<float> fromBf16Bits(std::span<const std::uint16_t> bits) {
  std::vector<float> out(bits.size());
  std::transform(bits.begin(), bits.end(), out.begin(),
                 [](std::uint16_t b) { return bf16BitsToFloat(b); });
  return out;
}
std::vector<float> fromFp16Bits(std::span<const std::uint16_t> bits) {
  std::vector<float> out(bits.size());
  std::transform(bits.begin(), bits.end(), out.begin(),
                 [](std::uint16_t b) { return fp16BitsToFloat(b); });
  return out;
}

} // namespace nsajit::ref
