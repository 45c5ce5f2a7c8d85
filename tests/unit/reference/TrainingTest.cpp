// Tests of the float64 training reference (runtime/reference, ReferenceTraining.cpp):
// every backward is checked element by element against central finite
// differences of the double-precision forward, on small random problems that
// exercise G in {1, 2}, Dk != Dv, B > 1, T not a multiple of any block size,
// overlapping compression blocks (l = 4, d = 2), rows that see no key, and
// selections with duplicated, negative, out-of-range and future indices.
#include "runtime/reference/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace {

using nsajit::ref::Dims;
namespace ref = nsajit::ref;

using Vec = std::vector<double>;
using CSpan = std::span<const double>;

constexpr double kEps = 1e-6;   // central-difference step
constexpr double kRtol = 1e-6;  // relative to max(|fd|, max |gradient| of the tensor)

Vec randomVec(std::size_t n, unsigned seed, double lo = -1.0, double hi = 1.0) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(lo, hi);
  Vec out(n);
  for (double &x : out)
    x = dist(gen);
  return out;
}

bool anyNaN(const Vec &xs) {
  return std::any_of(xs.begin(), xs.end(), [](double x) { return !std::isfinite(x); });
}

double maxAbs(const Vec &xs) {
  double m = 0;
  for (double x : xs)
    m = std::max(m, std::fabs(x));
  return m;
}

double dot(const Vec &a, const Vec &b) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}

// Compares `analytic` (dL/dx) with central differences of loss() in every element
// of x (x is perturbed in place and restored). Each element must satisfy
// |analytic - fd| <= kRtol * max(|fd|, max_i |analytic_i|). Unless allowZero, the
// gradient must not be identically zero (a test that checks nothing can't pass).
void expectGradient(const std::string &what, Vec &x, const Vec &analytic,
                    const std::function<double()> &loss, bool allowZero = false) {
  ASSERT_EQ(x.size(), analytic.size()) << what;
  ASSERT_FALSE(anyNaN(analytic)) << what;
  const double scale = maxAbs(analytic);
  if (!allowZero) {
    EXPECT_GT(scale, 1e-3) << what << ": gradient (nearly) identically zero";
  }
  int failures = 0;
  double worst = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + kEps;
    const double lp = loss();
    x[i] = saved - kEps;
    const double lm = loss();
    x[i] = saved;
    const double fd = (lp - lm) / (2 * kEps);
    const double err = std::fabs(analytic[i] - fd);
    const double tol = kRtol * std::max(std::fabs(fd), std::max(scale, 1e-300));
    worst = std::max(worst, err / std::max(std::fabs(fd), scale));
    if (!(err <= tol) && failures++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " vs finite difference "
                    << fd << " (|err| " << err << " > tol " << tol << ")";
  }
  EXPECT_EQ(failures, 0) << what << ": " << failures << " of " << x.size()
                         << " elements off; worst relative error " << worst;
}

// ================================================================ branch backward

// One branch: forward o_c(q, k, v) and its backward, over kvLen key tokens.
struct Branch {
  int kvLen;
  std::function<void(CSpan q, CSpan k, CSpan v, Vec &o)> fwd;
  std::function<void(CSpan q, CSpan k, CSpan v, CSpan gate, CSpan dout, Vec &dq, Vec &dk, Vec &dv,
                     Vec &dg)>
      bwd;
};

struct BranchGrads {
  Vec dq, dk, dv, dg;
};

// Random q, k, v, dout and gates; the loss is L = sum dout * g * o_c. With
// gated = false the backward gets an empty gate span and the loss uses g = 1
// (the gate vector of ones is still perturbed to check dgate = rowsum(dout * o_c)).
// singleKey: every row sees at most one key, so o_c = v_key whatever q and k are:
// dq and dk must then be exactly zero.
BranchGrads checkBranch(const Dims &d, const Branch &br, bool gated, unsigned seed,
                        bool singleKey = false) {
  const std::size_t rows = std::size_t(d.B) * d.T * d.HQ();
  Vec q = randomVec(rows * d.Dk, seed, -2, 2);
  Vec k = randomVec(std::size_t(d.B) * br.kvLen * d.H * d.Dk, seed + 1, -2, 2);
  Vec v = randomVec(std::size_t(d.B) * br.kvLen * d.H * d.Dv, seed + 2);
  Vec dout = randomVec(rows * d.Dv, seed + 3);
  Vec gate = gated ? randomVec(rows, seed + 4, 0.2, 1.0) : Vec(rows, 1.0);
  BranchGrads g;
  br.bwd(q, k, v, gated ? CSpan(gate) : CSpan(), dout, g.dq, g.dk, g.dv, g.dg);
  EXPECT_FALSE(anyNaN(g.dq) || anyNaN(g.dk) || anyNaN(g.dv) || anyNaN(g.dg));
  auto loss = [&] {
    Vec o;
    br.fwd(q, k, v, o);
    double L = 0;
    for (std::size_t r = 0; r < rows; ++r)
      for (int x = 0; x < d.Dv; ++x)
        L += dout[r * d.Dv + x] * gate[r] * o[r * d.Dv + x];
    return L;
  };
  if (singleKey) {
    EXPECT_EQ(maxAbs(g.dq), 0.0);
    EXPECT_EQ(maxAbs(g.dk), 0.0);
  }
  expectGradient("dq", q, g.dq, loss, singleKey);
  expectGradient("dk", k, g.dk, loss, singleKey);
  expectGradient("dv", v, g.dv, loss);
  expectGradient("dgate", gate, g.dg, loss);
  return g;
}

// Rows of dq / dgate that must be exactly zero because the row sees no key.
void expectZeroRow(const Dims &d, const BranchGrads &g, int b, int t, int hq) {
  const std::size_t row = (std::size_t(b) * d.T + t) * d.HQ() + hq;
  for (int x = 0; x < d.Dk; ++x)
    EXPECT_EQ(g.dq[row * d.Dk + x], 0.0) << "t=" << t << " hq=" << hq;
  EXPECT_EQ(g.dg[row], 0.0) << "t=" << t << " hq=" << hq;
}

// Parameters: (G, gated).
class BranchBackward : public ::testing::TestWithParam<std::tuple<int, bool>> {
protected:
  Dims dims() const {
    // B > 1, T = 11 (not a multiple of l, d, lsel or w), Dk != Dv.
    return Dims{/*B=*/2, /*T=*/11, /*H=*/2, /*G=*/std::get<0>(GetParam()), /*Dk=*/5, /*Dv=*/3};
  }
  bool gated() const { return std::get<1>(GetParam()); }
  double scale() const { return 1.0 / std::sqrt(5.0); }
};

TEST_P(BranchBackward, WindowMatchesFiniteDifferences) {
  const Dims d = dims();
  const double sc = scale();
  for (int w : {1, 3, 4, 11}) {
    SCOPED_TRACE("w=" + std::to_string(w));
    Branch br{d.T,
              [&](CSpan q, CSpan k, CSpan v, Vec &o) {
                Vec lse;
                ref::windowAttention(d, w, sc, q, k, v, o, lse);
              },
              [&](CSpan q, CSpan k, CSpan v, CSpan g, CSpan dout, Vec &dq, Vec &dk, Vec &dv,
                  Vec &dg) { ref::windowAttentionBackward(d, w, sc, q, k, v, g, dout, dq, dk, dv, dg); }};
    checkBranch(d, br, gated(), 100 + w, /*singleKey=*/w == 1);
  }
}

TEST_P(BranchBackward, CausalMatchesFiniteDifferences) {
  const Dims d = dims();
  const double sc = scale();
  Branch br{d.T,
            [&](CSpan q, CSpan k, CSpan v, Vec &o) {
              Vec lse;
              ref::causalAttention(d, sc, q, k, v, o, lse);
            },
            [&](CSpan q, CSpan k, CSpan v, CSpan g, CSpan dout, Vec &dq, Vec &dk, Vec &dv,
                Vec &dg) { ref::causalAttentionBackward(d, sc, q, k, v, g, dout, dq, dk, dv, dg); }};
  checkBranch(d, br, gated(), 200);
}

TEST_P(BranchBackward, CompressedMatchesFiniteDifferences) {
  const Dims d = dims();
  const double sc = scale();
  // (l, d): overlapping 4/2 (Tc = 4; rows t < 3 see nothing), 4/4, 2/1, 8/4 (Tc = 1).
  for (auto [l, dd] : {std::pair{4, 2}, std::pair{4, 4}, std::pair{2, 1}, std::pair{8, 4}}) {
    SCOPED_TRACE("l=" + std::to_string(l) + " d=" + std::to_string(dd));
    const int Tc = ref::numCompressed(d.T, l, dd);
    Branch br{Tc,
              [&](CSpan q, CSpan k, CSpan v, Vec &o) {
                Vec lse;
                ref::compressedAttention(d, l, dd, sc, q, k, v, o, lse);
              },
              [&](CSpan q, CSpan k, CSpan v, CSpan g, CSpan dout, Vec &dq, Vec &dk, Vec &dv,
                  Vec &dg) {
                ref::compressedAttentionBackward(d, l, dd, sc, q, k, v, g, dout, dq, dk, dv, dg);
              }};
    const BranchGrads g = checkBranch(d, br, gated(), 300 + l * 10 + dd, /*singleKey=*/Tc == 1);
    for (int b = 0; b < d.B; ++b)
      for (int t = 0; t < l - 1; ++t)
        for (int hq = 0; hq < d.HQ(); ++hq)
          expectZeroRow(d, g, b, t, hq);
  }
}

// Selection with duplicates (attended twice), -1, out-of-range (>= NB) and future
// blocks; one row of every (b, kvh) lists only unusable indices.
std::vector<std::int32_t> messyIndices(const Dims &d, int lsel, int n, unsigned seed) {
  const int NB = ref::numSelectionBlocks(d.T, lsel);
  std::mt19937 gen(seed);
  std::uniform_int_distribution<int> dist(-1, NB);  // includes -1 and NB
  std::vector<std::int32_t> idx(std::size_t(d.B) * d.T * d.H * n);
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int h = 0; h < d.H; ++h) {
        std::int32_t *row = idx.data() + ((std::size_t(b) * d.T + t) * d.H + h) * n;
        for (int s = 0; s < n; ++s)
          row[s] = dist(gen);
        if ((t + h) % 2 == 0)
          row[1] = row[0];  // duplicate (maybe also an unusable one)
        if (t % 3 == 0)
          row[n - 1] = row[n - 2] = t / lsel;  // the causal block, twice
        if (t == 5)
          for (int s = 0; s < n; ++s)
            row[s] = s % 2 ? -1 : 2;  // -1 and a future block (2 * lsel = 6 > 5): no key
      }
  return idx;
}

TEST_P(BranchBackward, SelectedMatchesFiniteDifferences) {
  const Dims d = dims();
  const double sc = scale();
  const int lsel = 3, n = 5;  // NB = 4, last block partial
  const auto idx = messyIndices(d, lsel, n, 7);
  Branch br{d.T,
            [&](CSpan q, CSpan k, CSpan v, Vec &o) {
              Vec lse;
              ref::selectedAttention(d, lsel, n, sc, q, k, v, idx, o, lse);
            },
            [&](CSpan q, CSpan k, CSpan v, CSpan g, CSpan dout, Vec &dq, Vec &dk, Vec &dv,
                Vec &dg) {
              ref::selectedAttentionBackward(d, lsel, n, sc, q, k, v, idx, g, dout, dq, dk, dv, dg);
            }};
  const BranchGrads g = checkBranch(d, br, gated(), 400);
  for (int b = 0; b < d.B; ++b)
    for (int hq = 0; hq < d.HQ(); ++hq)
      expectZeroRow(d, g, b, 5, hq);
}

INSTANTIATE_TEST_SUITE_P(GAndGates, BranchBackward,
                         ::testing::Combine(::testing::Values(1, 2), ::testing::Bool()),
                         [](const auto &info) {
                           return "G" + std::to_string(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) ? "_gated" : "_ungated");
                         });

// A duplicated index counts twice: {j, j} is not the same as {j} (the duplicate
// doubles block j's weight against the others), and the gradient sees it.
TEST(BranchBackwardEdges, DuplicateIndexChangesTheGradient) {
  const Dims d{1, 8, 1, 1, 4, 3};
  const int lsel = 4, n = 3;
  const Vec q = randomVec(8 * 4, 1, -2, 2), k = randomVec(8 * 4, 2, -2, 2), v = randomVec(8 * 3, 3);
  const Vec dout = randomVec(8 * 3, 4);
  std::vector<std::int32_t> once(8 * n), twice(8 * n);
  for (int t = 0; t < 8; ++t) {
    once[t * n + 0] = 0, once[t * n + 1] = 1, once[t * n + 2] = -1;
    twice[t * n + 0] = 0, twice[t * n + 1] = 1, twice[t * n + 2] = 1;
  }
  Vec dq1, dk1, dv1, dg1, dq2, dk2, dv2, dg2;
  ref::selectedAttentionBackward(d, lsel, n, 0.5, q, k, v, once, {}, dout, dq1, dk1, dv1, dg1);
  ref::selectedAttentionBackward(d, lsel, n, 0.5, q, k, v, twice, {}, dout, dq2, dk2, dv2, dg2);
  // Rows t < 4 cannot see block 1 (it starts at 4): both lists give {block 0}.
  for (int i = 0; i < 4 * 4; ++i)
    EXPECT_EQ(dq1[i], dq2[i]);
  // Rows t >= 4 see blocks {0, 1} vs {0, 1, 1}: different.
  double diff = 0;
  for (int i = 4 * 4; i < 8 * 4; ++i)
    diff = std::max(diff, std::fabs(dq1[i] - dq2[i]));
  EXPECT_GT(diff, 1e-3);
  EXPECT_GT(ref::maxAbsError(dv1, dv2), 1e-3);
}

TEST(BranchBackwardEdges, CompressedWithNoCompleteBlockGivesZerosNotNaN) {
  const Dims d{2, 3, 2, 2, 4, 3};  // T = 3 < l = 4: Tc = 0
  const Vec q = randomVec(2 * 3 * 4 * 4, 1), dout = randomVec(2 * 3 * 4 * 3, 2);
  const Vec gate = randomVec(2 * 3 * 4, 3, 0, 1);
  Vec dq, dk, dv, dg;
  ref::compressedAttentionBackward(d, 4, 2, 0.5, q, Vec{}, Vec{}, gate, dout, dq, dk, dv, dg);
  EXPECT_EQ(dq, Vec(q.size(), 0.0));
  EXPECT_TRUE(dk.empty());
  EXPECT_TRUE(dv.empty());
  EXPECT_EQ(dg, Vec(gate.size(), 0.0));
}

TEST(BranchBackwardEdges, HugeScoresStayFinite) {
  const Dims d{1, 9, 1, 2, 4, 3};
  Vec q = randomVec(9 * 2 * 4, 1), k = randomVec(9 * 4, 2), v = randomVec(9 * 3, 3);
  for (double &x : q)
    x *= 1e4;  // scores ~1e8: exp would overflow without max subtraction
  const Vec dout = randomVec(9 * 2 * 3, 4);
  Vec dq, dk, dv, dg;
  ref::windowAttentionBackward(d, 4, 1.0, q, k, v, {}, dout, dq, dk, dv, dg);
  EXPECT_FALSE(anyNaN(dq) || anyNaN(dk) || anyNaN(dv) || anyNaN(dg));
}

TEST(BranchBackwardEdges, FloatOverloadsEqualDoubleOnTheSameValues) {
  const Dims d{2, 11, 2, 2, 5, 3};
  const std::size_t rows = 2 * 11 * 4;
  auto f = [](const Vec &x) {
    std::vector<float> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      out[i] = ref::roundToBf16(static_cast<float>(x[i]));
    return out;
  };
  auto dbl = [](const std::vector<float> &x) { return Vec(x.begin(), x.end()); };
  const auto q = f(randomVec(rows * 5, 1)), k = f(randomVec(2 * 11 * 2 * 5, 2)),
             v = f(randomVec(2 * 11 * 2 * 3, 3)), g = f(randomVec(rows, 4, 0, 1)),
             dout = f(randomVec(rows * 3, 5));
  const auto idx = messyIndices(d, 3, 5, 6);
  Vec a[4], b[4];
  ref::windowAttentionBackward(d, 4, 0.4, q, k, v, g, dout, a[0], a[1], a[2], a[3]);
  ref::windowAttentionBackward(d, 4, 0.4, dbl(q), dbl(k), dbl(v), dbl(g), dbl(dout), b[0], b[1],
                               b[2], b[3]);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(a[i], b[i]);
  ref::selectedAttentionBackward(d, 3, 5, 0.4, q, k, v, idx, g, dout, a[0], a[1], a[2], a[3]);
  ref::selectedAttentionBackward(d, 3, 5, 0.4, dbl(q), dbl(k), dbl(v), idx, dbl(g), dbl(dout),
                                 b[0], b[1], b[2], b[3]);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(a[i], b[i]);
  const int Tc = ref::numCompressed(11, 4, 2);
  const auto kc = f(randomVec(2 * Tc * 2 * 5, 7)), vc = f(randomVec(2 * Tc * 2 * 3, 8));
  ref::compressedAttentionBackward(d, 4, 2, 0.4, q, kc, vc, g, dout, a[0], a[1], a[2], a[3]);
  ref::compressedAttentionBackward(d, 4, 2, 0.4, dbl(q), dbl(kc), dbl(vc), dbl(g), dbl(dout),
                                   b[0], b[1], b[2], b[3]);
  for (int i = 0; i < 4; ++i)
    EXPECT_EQ(a[i], b[i]);
  // The double forward overloads agree with the float ones too.
  Vec o1, l1, o2, l2;
  ref::selectedAttention(d, 3, 5, 0.4, q, k, v, idx, o1, l1);
  ref::selectedAttention(d, 3, 5, 0.4, dbl(q), dbl(k), dbl(v), idx, o2, l2);
  EXPECT_EQ(o1, o2);
  EXPECT_EQ(l1, l2);
}

TEST(BranchBackwardEdges, BadSizesThrow) {
  const Dims d{1, 4, 1, 1, 2, 2};
  const Vec q(8), k(8), v(8), dout(8);
  Vec dq, dk, dv, dg;
  EXPECT_THROW(ref::windowAttentionBackward(d, 2, 1.0, q, k, v, Vec(3), dout, dq, dk, dv, dg),
               std::invalid_argument);
  EXPECT_THROW(ref::windowAttentionBackward(d, 2, 1.0, q, k, v, {}, Vec(7), dq, dk, dv, dg),
               std::invalid_argument);
  EXPECT_THROW(ref::windowAttentionBackward(d, 0, 1.0, q, k, v, {}, dout, dq, dk, dv, dg),
               std::invalid_argument);
  EXPECT_THROW(ref::selectedAttentionBackward(d, 2, 2, 1.0, q, k, v, std::vector<std::int32_t>(7),
                                              {}, dout, dq, dk, dv, dg),
               std::invalid_argument);
}

// ================================================================ compression backward

TEST(CompressionBackward, MeanPoolMatchesFiniteDifferences) {
  const int B = 2, T = 11, H = 2, D = 3;
  for (auto [l, dd] : {std::pair{4, 2}, std::pair{4, 4}, std::pair{2, 1}, std::pair{6, 3}}) {
    SCOPED_TRACE("l=" + std::to_string(l) + " d=" + std::to_string(dd));
    const int Tc = ref::numCompressed(T, l, dd);
    Vec x = randomVec(std::size_t(B) * T * H * D, 1);
    const Vec dout = randomVec(std::size_t(B) * Tc * H * D, 2);
    Vec dx;
    ref::compressMeanPoolBackward(B, T, H, D, l, dd, dout, dx);
    expectGradient("dx", x, dx, [&] {
      Vec out;
      ref::compressMeanPool(B, T, H, D, l, dd, x, out);
      return dot(out, dout);
    });
    // Tokens after the last block get exactly 0.
    for (int b = 0; b < B; ++b)
      for (int t = (Tc - 1) * dd + l; t < T; ++t)
        for (int e = 0; e < H * D; ++e)
          EXPECT_EQ(dx[(std::size_t(b) * T + t) * H * D + e], 0.0) << "t=" << t;
  }
}

TEST(CompressionBackward, WeightedMatchesFiniteDifferences) {
  const int B = 2, T = 11, H = 2, D = 3;
  for (auto [l, dd] : {std::pair{4, 2}, std::pair{4, 4}, std::pair{2, 1}, std::pair{6, 3}}) {
    SCOPED_TRACE("l=" + std::to_string(l) + " d=" + std::to_string(dd));
    const int Tc = ref::numCompressed(T, l, dd);
    Vec x = randomVec(std::size_t(B) * T * H * D, 1);
    Vec w = randomVec(l, 3);
    const Vec dout = randomVec(std::size_t(B) * Tc * H * D, 2);
    Vec dx, dw;
    ref::compressWeightedBackward(B, T, H, D, l, dd, w, x, dout, dx, dw);
    auto loss = [&] {
      Vec out;
      ref::compressWeighted(B, T, H, D, l, dd, w, x, out);
      return dot(out, dout);
    };
    expectGradient("dx", x, dx, loss);
    expectGradient("dweights", w, dw, loss);
  }
}

TEST(CompressionBackward, MeanIsWeightedWithUniformWeightsAndFloatMatchesDouble) {
  const int B = 2, T = 11, H = 2, D = 3, l = 4, dd = 2;
  const int Tc = ref::numCompressed(T, l, dd);
  const Vec dout = randomVec(std::size_t(B) * Tc * H * D, 2);
  const Vec x = randomVec(std::size_t(B) * T * H * D, 1);
  Vec dxMean, dxW, dw;
  ref::compressMeanPoolBackward(B, T, H, D, l, dd, dout, dxMean);
  ref::compressWeightedBackward(B, T, H, D, l, dd, Vec(l, 0.25), x, dout, dxW, dw);
  EXPECT_LE(ref::maxAbsError(dxMean, dxW), 1e-15);
  std::vector<float> doutF(dout.begin(), dout.end()), xF(x.begin(), x.end());
  Vec a, b, dwa, dwb;
  ref::compressMeanPoolBackward(B, T, H, D, l, dd, doutF, a);
  ref::compressMeanPoolBackward(B, T, H, D, l, dd, Vec(doutF.begin(), doutF.end()), b);
  EXPECT_EQ(a, b);
  const std::vector<float> wF = {0.5f, -1.0f, 2.0f, 0.25f};
  ref::compressWeightedBackward(B, T, H, D, l, dd, wF, xF, doutF, a, dwa);
  ref::compressWeightedBackward(B, T, H, D, l, dd, Vec(wF.begin(), wF.end()),
                                Vec(xF.begin(), xF.end()), Vec(doutF.begin(), doutF.end()), b,
                                dwb);
  EXPECT_EQ(a, b);
  EXPECT_EQ(dwa, dwb);
  EXPECT_THROW(ref::compressWeightedBackward(B, T, H, D, l, dd, Vec(3), x, dout, a, dwa),
               std::invalid_argument);
  EXPECT_THROW(ref::compressMeanPoolBackward(B, T, H, D, l, dd, Vec(5), a), std::invalid_argument);
}

// ================================================================ whole NSA

// Owns the tensors of one NSA problem; in() gives the span view.
struct NsaProblem {
  Dims d;
  ref::NsaConfig cfg;
  bool separate = false, gated = false;
  Vec q, k, v, kCmp, vCmp, kSlc, vSlc, kSwa, vSwa, wK, wV, gCmp, gSlc, gSwa;
  std::vector<std::int32_t> idx;  // held fixed once set

  NsaProblem(const Dims &dims, const ref::NsaConfig &c, bool sep, bool gat, unsigned seed)
      : d(dims), cfg(c), separate(sep), gated(gat) {
    const std::size_t rows = std::size_t(d.B) * d.T * d.HQ();
    const std::size_t nk = std::size_t(d.B) * d.T * d.H * d.Dk;
    const std::size_t nv = std::size_t(d.B) * d.T * d.H * d.Dv;
    q = randomVec(rows * d.Dk, seed, -2, 2);
    if (sep) {
      kCmp = randomVec(nk, seed + 1, -2, 2), vCmp = randomVec(nv, seed + 2);
      kSlc = randomVec(nk, seed + 3, -2, 2), vSlc = randomVec(nv, seed + 4);
      kSwa = randomVec(nk, seed + 5, -2, 2), vSwa = randomVec(nv, seed + 6);
    } else {
      k = randomVec(nk, seed + 1, -2, 2), v = randomVec(nv, seed + 2);
    }
    if (cfg.compression == ref::Compression::Weighted)
      wK = randomVec(cfg.l, seed + 7, 0, 0.6), wV = randomVec(cfg.l, seed + 8, 0, 0.6);
    if (gat) {
      gCmp = randomVec(rows, seed + 9, 0.2, 1), gSlc = randomVec(rows, seed + 10, 0.2, 1);
      gSwa = randomVec(rows, seed + 11, 0.2, 1);
    }
  }
  ref::NsaInputs in() const {
    ref::NsaInputs r;
    r.q = q, r.k = k, r.v = v, r.kCmp = kCmp, r.vCmp = vCmp, r.kSlc = kSlc, r.vSlc = vSlc;
    r.kSwa = kSwa, r.vSwa = vSwa, r.weightsK = wK, r.weightsV = wV;
    r.gCmp = gCmp, r.gSlc = gSlc, r.gSwa = gSwa, r.idx = idx;
    return r;
  }
};

ref::NsaConfig tinyConfig(ref::Compression c) {
  ref::NsaConfig cfg;
  cfg.l = 4, cfg.d = 2, cfg.lsel = 4, cfg.n = 3, cfg.numInitial = 1, cfg.numLocal = 1;
  cfg.w = 3, cfg.scale = 0.0, cfg.compression = c;  // scale 0: 1/sqrt(Dk)
  return cfg;
}

// B = 2, T = 13 (not a multiple of l, d, lsel or w), G = 2, Dk != Dv.
const Dims kNsaDims{2, 13, 2, 2, 4, 3};

// Parameters: (weighted compression, separate K/V per branch, gated).
class NsaBackward : public ::testing::TestWithParam<std::tuple<bool, bool, bool>> {};

TEST_P(NsaBackward, MatchesFiniteDifferencesWithSelectionHeldFixed) {
  const auto [weighted, separate, gated] = GetParam();
  NsaProblem p(kNsaDims,
               tinyConfig(weighted ? ref::Compression::Weighted : ref::Compression::Mean),
               separate, gated, 11);
  ref::NsaForwardResult fw;
  ref::nsaForward(p.d, p.cfg, p.in(), fw);
  ASSERT_FALSE(anyNaN(fw.o));
  // Freeze the selection (it is not differentiated). It must be a real top-n.
  p.idx = fw.idx;
  ASSERT_EQ(p.idx.size(), std::size_t(2) * 13 * 2 * 3);

  const Vec dout = randomVec(fw.o.size(), 99);
  ref::NsaGradients g;
  ref::nsaBackward(p.d, p.cfg, p.in(), dout, g);
  EXPECT_EQ(g.idx, p.idx);

  auto loss = [&] {
    ref::NsaForwardResult r;
    ref::nsaForward(p.d, p.cfg, p.in(), r);
    return dot(r.o, dout);
  };
  expectGradient("dq", p.q, g.dq, loss);
  if (separate) {
    EXPECT_TRUE(g.dk.empty());
    EXPECT_TRUE(g.dv.empty());
    expectGradient("dkCmp", p.kCmp, g.dkCmp, loss);
    expectGradient("dvCmp", p.vCmp, g.dvCmp, loss);
    expectGradient("dkSlc", p.kSlc, g.dkSlc, loss);
    expectGradient("dvSlc", p.vSlc, g.dvSlc, loss);
    expectGradient("dkSwa", p.kSwa, g.dkSwa, loss);
    expectGradient("dvSwa", p.vSwa, g.dvSwa, loss);
  } else {
    expectGradient("dk", p.k, g.dk, loss);
    expectGradient("dv", p.v, g.dv, loss);
    for (std::size_t i = 0; i < g.dk.size(); ++i)
      EXPECT_DOUBLE_EQ(g.dk[i], g.dkCmp[i] + g.dkSlc[i] + g.dkSwa[i]);
  }
  if (weighted) {
    expectGradient("dweightsK", p.wK, g.dweightsK, loss);
    expectGradient("dweightsV", p.wV, g.dweightsV, loss);
  } else {
    EXPECT_TRUE(g.dweightsK.empty());
    EXPECT_TRUE(g.dweightsV.empty());
  }
  if (gated) {
    expectGradient("dgCmp", p.gCmp, g.dgCmp, loss);
    expectGradient("dgSlc", p.gSlc, g.dgSlc, loss);
    expectGradient("dgSwa", p.gSwa, g.dgSwa, loss);
  } else {
    // dL/dg at g = 1 is rowsum(dout * o_c).
    const std::size_t rows = fw.lseCmp.size();
    for (std::size_t r = 0; r < rows; ++r) {
      double c = 0, s = 0, w = 0;
      for (int x = 0; x < p.d.Dv; ++x) {
        c += dout[r * p.d.Dv + x] * fw.oCmp[r * p.d.Dv + x];
        s += dout[r * p.d.Dv + x] * fw.oSlc[r * p.d.Dv + x];
        w += dout[r * p.d.Dv + x] * fw.oSwa[r * p.d.Dv + x];
      }
      EXPECT_NEAR(g.dgCmp[r], c, 1e-14);
      EXPECT_NEAR(g.dgSlc[r], s, 1e-14);
      EXPECT_NEAR(g.dgSwa[r], w, 1e-14);
    }
  }
  // dkc / dvc: gradient of the compressed tokens, mapped through phi.
  ASSERT_EQ(g.dkc.size(), fw.kc.size());
  ASSERT_EQ(g.dvc.size(), fw.vc.size());
}

INSTANTIATE_TEST_SUITE_P(Variants, NsaBackward,
                         ::testing::Combine(::testing::Bool(), ::testing::Bool(), ::testing::Bool()),
                         [](const auto &info) {
                           return std::string(std::get<0>(info.param) ? "Weighted" : "Mean") +
                                  (std::get<1>(info.param) ? "_SeparateKV" : "_SharedKV") +
                                  (std::get<2>(info.param) ? "_Gated" : "_Ungated");
                         });

// dkc / dvc (the gradient the compressed-attention kernel produces) checked by
// finite differences of the compressed branch with kc / vc as free inputs.
TEST(NsaForward, CompressedTokenGradientsMatchBranchBackward) {
  NsaProblem p(kNsaDims, tinyConfig(ref::Compression::Weighted), true, true, 21);
  ref::NsaForwardResult fw;
  ref::nsaForward(p.d, p.cfg, p.in(), fw);
  const Vec dout = randomVec(fw.o.size(), 5);
  ref::NsaGradients g;
  ref::nsaBackward(p.d, p.cfg, p.in(), dout, g);
  Vec kc = fw.kc, vc = fw.vc;
  const double sc = 1.0 / std::sqrt(double(p.d.Dk));
  auto loss = [&] {
    Vec o, lse;
    ref::compressedAttention(p.d, 4, 2, sc, p.q, kc, vc, o, lse);
    double L = 0;
    for (std::size_t r = 0; r < p.gCmp.size(); ++r)
      for (int x = 0; x < p.d.Dv; ++x)
        L += dout[r * p.d.Dv + x] * p.gCmp[r] * o[r * p.d.Dv + x];
    return L;
  };
  expectGradient("dkc", kc, g.dkc, loss);
  expectGradient("dvc", vc, g.dvc, loss);
}

// Wiring: each branch of nsaForward is the corresponding standalone function on
// the right tensors, the selection is selectTopN on (q, kc), o is gatedCombine.
TEST(NsaForward, ComposesTheBranchFunctions) {
  for (bool weighted : {false, true}) {
    SCOPED_TRACE(weighted ? "weighted" : "mean");
    NsaProblem p(kNsaDims,
                 tinyConfig(weighted ? ref::Compression::Weighted : ref::Compression::Mean), true,
                 true, 31);
    p.cfg.scale = 0.7;
    ref::NsaForwardResult fw;
    ref::nsaForward(p.d, p.cfg, p.in(), fw);
    const Dims &d = p.d;
    Vec kc, vc, o, lse;
    if (weighted) {
      ref::compressWeighted(d.B, d.T, d.H, d.Dk, 4, 2, p.wK, p.kCmp, kc);
      ref::compressWeighted(d.B, d.T, d.H, d.Dv, 4, 2, p.wV, p.vCmp, vc);
    } else {
      ref::compressMeanPool(d.B, d.T, d.H, d.Dk, 4, 2, p.kCmp, kc);
      ref::compressMeanPool(d.B, d.T, d.H, d.Dv, 4, 2, p.vCmp, vc);
    }
    EXPECT_EQ(fw.kc, kc);
    EXPECT_EQ(fw.vc, vc);
    ref::compressedAttention(d, 4, 2, 0.7, p.q, kc, vc, o, lse);
    EXPECT_EQ(fw.oCmp, o);
    EXPECT_EQ(fw.lseCmp, lse);
    std::vector<std::int32_t> idx;
    ref::selectTopN(d, 4, 2, 4, 3, 0.7, p.q, kc, idx, 1, 1);
    EXPECT_EQ(fw.idx, idx);
    ref::selectedAttention(d, 4, 3, 0.7, p.q, p.kSlc, p.vSlc, idx, o, lse);
    EXPECT_EQ(fw.oSlc, o);
    EXPECT_EQ(fw.lseSlc, lse);
    ref::windowAttention(d, 3, 0.7, p.q, p.kSwa, p.vSwa, o, lse);
    EXPECT_EQ(fw.oSwa, o);
    EXPECT_EQ(fw.lseSwa, lse);
    ref::gatedCombine(d, fw.oCmp, fw.oSlc, fw.oSwa, p.gCmp, p.gSlc, p.gSwa, o);
    EXPECT_EQ(fw.o, o);
  }
}

TEST(NsaForward, UngatedIsThePlainSumAndGivenIndicesAreUsed) {
  NsaProblem p(kNsaDims, tinyConfig(ref::Compression::Mean), false, false, 41);
  ref::NsaForwardResult fw;
  ref::nsaForward(p.d, p.cfg, p.in(), fw);
  for (std::size_t i = 0; i < fw.o.size(); ++i)
    EXPECT_DOUBLE_EQ(fw.o[i], fw.oCmp[i] + fw.oSlc[i] + fw.oSwa[i]);
  // Given (messy) indices are used as they are.
  p.idx = messyIndices(p.d, p.cfg.lsel, p.cfg.n, 3);
  ref::nsaForward(p.d, p.cfg, p.in(), fw);
  EXPECT_EQ(fw.idx, p.idx);
  Vec o, lse;
  ref::selectedAttention(p.d, 4, 3, 0.5, p.q, p.k, p.v, p.idx, o, lse);  // 1/sqrt(Dk = 4)
  EXPECT_EQ(fw.oSlc, o);
  ASSERT_FALSE(anyNaN(fw.o));
}

TEST(NsaForward, FloatInputsEqualDoubleInputsAndFloatPipeline) {
  const Dims d = kNsaDims;
  ref::NsaConfig cfg = tinyConfig(ref::Compression::Mean);
  const std::size_t rows = std::size_t(d.B) * d.T * d.HQ();
  auto bf = [](const Vec &x) {
    std::vector<float> out(x.size());
    for (std::size_t i = 0; i < x.size(); ++i)
      out[i] = ref::roundToBf16(static_cast<float>(x[i]));
    return out;
  };
  const auto q = bf(randomVec(rows * d.Dk, 1)), k = bf(randomVec(std::size_t(d.B) * d.T * d.H * d.Dk, 2)),
             v = bf(randomVec(std::size_t(d.B) * d.T * d.H * d.Dv, 3)),
             gc = bf(randomVec(rows, 4, 0, 1)), dout = bf(randomVec(rows * d.Dv, 5));
  const Vec qd(q.begin(), q.end()), kd(k.begin(), k.end()), vd(v.begin(), v.end()),
      gcd(gc.begin(), gc.end()), doutd(dout.begin(), dout.end());
  ref::NsaInputsF inF;
  inF.q = q, inF.k = k, inF.v = v, inF.gCmp = gc;
  ref::NsaInputs inD;
  inD.q = qd, inD.k = kd, inD.v = vd, inD.gCmp = gcd;
  ref::NsaForwardResult a, b;
  ref::nsaForward(d, cfg, inF, a);
  ref::nsaForward(d, cfg, inD, b);
  EXPECT_EQ(a.o, b.o);
  EXPECT_EQ(a.idx, b.idx);
  ref::NsaGradients ga, gb;
  ref::nsaBackward(d, cfg, inF, dout, ga);
  ref::nsaBackward(d, cfg, inD, doutd, gb);
  EXPECT_EQ(ga.dq, gb.dq);
  EXPECT_EQ(ga.dk, gb.dk);
  EXPECT_EQ(ga.dv, gb.dv);
  EXPECT_EQ(ga.dgCmp, gb.dgCmp);
  // The float pipeline (kc rounded to float) agrees to float precision.
  std::vector<float> kc, vc;
  ref::compressMeanPool(d.B, d.T, d.H, d.Dk, 4, 2, k, kc);
  ref::compressMeanPool(d.B, d.T, d.H, d.Dv, 4, 2, v, vc);
  Vec o, lse;
  ref::compressedAttention(d, 4, 2, 0.5, q, kc, vc, o, lse);
  EXPECT_LE(ref::relativeError(o, a.oCmp), 1e-6);
}

TEST(NsaForward, BadInputsThrow) {
  NsaProblem p(kNsaDims, tinyConfig(ref::Compression::Mean), false, false, 51);
  ref::NsaForwardResult fw;
  {  // weights with Mean
    ref::NsaInputs in = p.in();
    const Vec w(4, 0.25);
    in.weightsK = w, in.weightsV = w;
    EXPECT_THROW(ref::nsaForward(p.d, p.cfg, in, fw), std::invalid_argument);
  }
  {  // Weighted without weights
    ref::NsaConfig cfg = p.cfg;
    cfg.compression = ref::Compression::Weighted;
    EXPECT_THROW(ref::nsaForward(p.d, cfg, p.in(), fw), std::invalid_argument);
  }
  {  // no K at all for a branch
    ref::NsaInputs in = p.in();
    in.k = {};
    EXPECT_THROW(ref::nsaForward(p.d, p.cfg, in, fw), std::invalid_argument);
    const Vec kOwn(p.k);
    in.kCmp = kOwn, in.kSlc = kOwn;  // kSwa still missing
    EXPECT_THROW(ref::nsaForward(p.d, p.cfg, in, fw), std::invalid_argument);
    in.kSwa = kOwn;
    EXPECT_NO_THROW(ref::nsaForward(p.d, p.cfg, in, fw));
  }
  {  // wrong gate / idx / dout sizes, bad lsel
    ref::NsaInputs in = p.in();
    const Vec g(5);
    in.gSlc = g;
    EXPECT_THROW(ref::nsaForward(p.d, p.cfg, in, fw), std::invalid_argument);
    in = p.in();
    const std::vector<std::int32_t> idx(3);
    in.idx = idx;
    EXPECT_THROW(ref::nsaForward(p.d, p.cfg, in, fw), std::invalid_argument);
    ref::NsaGradients g2;
    EXPECT_THROW(ref::nsaBackward(p.d, p.cfg, p.in(), Vec(3), g2), std::invalid_argument);
    ref::NsaConfig cfg = p.cfg;
    cfg.lsel = 3;
    EXPECT_THROW(ref::nsaForward(p.d, cfg, p.in(), fw), std::invalid_argument);
  }
}

} // namespace
