// Tests of the float64 NSA reference (runtime/reference): each branch is checked
// against an independent naive attention written here (plain log-sum-exp, no max
// subtraction, explicit key masks), plus hand-worked selection / gating examples.
#include "runtime/reference/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

namespace {

using nsajit::ref::Dims;
namespace ref = nsajit::ref;

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kTol = 1e-12;

// Uniform random values in [lo, hi], rounded to bf16 like real kernel inputs.
std::vector<float> randomBf16(std::size_t n, unsigned seed, float lo = -1.0f, float hi = 1.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  std::vector<float> out(n);
  for (float &x : out)
    x = ref::roundToBf16(dist(gen));
  return out;
}

struct Inputs {
  std::vector<float> q, k, v;
};

Inputs randomInputs(const Dims &d, int kvLen, unsigned seed) {
  Inputs in;
  in.q = randomBf16(std::size_t(d.B) * d.T * d.HQ() * d.Dk, seed);
  in.k = randomBf16(std::size_t(d.B) * kvLen * d.H * d.Dk, seed + 1);
  in.v = randomBf16(std::size_t(d.B) * kvLen * d.H * d.Dv, seed + 2);
  return in;
}

// Independent naive attention: mult(b, t, kvh, key) says how many times key is
// attended (0 = masked). lse = log(sum mult * exp(s)) computed directly (inputs
// are small so no overflow), o = sum mult * exp(s - lse) * v.
using Mult = std::function<int(int b, int t, int kvh, int key)>;

void naiveAttention(const Dims &d, int kvLen, double scale, const Inputs &in, const Mult &mult,
                    std::vector<double> &o, std::vector<double> &lse) {
  const int HQ = d.HQ();
  o.assign(std::size_t(d.B) * d.T * HQ * d.Dv, 0.0);
  lse.assign(std::size_t(d.B) * d.T * HQ, kNegInf);
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int hq = 0; hq < HQ; ++hq) {
        const int kvh = hq / d.G;
        auto score = [&](int key) {
          double s = 0;
          for (int x = 0; x < d.Dk; ++x)
            s += double(in.q[((std::size_t(b) * d.T + t) * HQ + hq) * d.Dk + x]) *
                 double(in.k[((std::size_t(b) * kvLen + key) * d.H + kvh) * d.Dk + x]);
          return scale * s;
        };
        double sum = 0;
        for (int key = 0; key < kvLen; ++key)
          sum += mult(b, t, kvh, key) * std::exp(score(key));
        const std::size_t row = (std::size_t(b) * d.T + t) * HQ + hq;
        if (sum == 0)
          continue;
        lse[row] = std::log(sum);
        for (int key = 0; key < kvLen; ++key) {
          const int m = mult(b, t, kvh, key);
          if (!m)
            continue;
          const double p = m * std::exp(score(key) - lse[row]);
          for (int x = 0; x < d.Dv; ++x)
            o[row * d.Dv + x] += p * in.v[((std::size_t(b) * kvLen + key) * d.H + kvh) * d.Dv + x];
        }
      }
}

void naiveCausal(const Dims &d, double scale, const Inputs &in, std::vector<double> &o,
                 std::vector<double> &lse) {
  naiveAttention(d, d.T, scale, in, [](int, int t, int, int key) { return key <= t ? 1 : 0; },
                 o, lse);
}

void expectClose(const std::vector<double> &got, const std::vector<double> &want,
                 double tol = kTol) {
  ASSERT_EQ(got.size(), want.size());
  EXPECT_LE(ref::maxAbsError(got, want), tol);
}

bool anyNaN(const std::vector<double> &xs) {
  return std::any_of(xs.begin(), xs.end(), [](double x) { return std::isnan(x); });
}

// Dk != Dv, G > 1, B > 1 and T not a multiple of any block size, to catch layout bugs.
const Dims kDims{/*B=*/2, /*T=*/37, /*H=*/2, /*G=*/3, /*Dk=*/8, /*Dv=*/5};
const double kScale = 1.0 / std::sqrt(8.0);

// ---------------------------------------------------------------- window / causal

TEST(WindowAttention, WindowAtLeastTEqualsFullCausal) {
  const Inputs in = randomInputs(kDims, kDims.T, 1);
  std::vector<double> o0, lse0, o, lse;
  naiveCausal(kDims, kScale, in, o0, lse0);
  for (int w : {kDims.T, kDims.T + 1, 1000}) {
    ref::windowAttention(kDims, w, kScale, in.q, in.k, in.v, o, lse);
    expectClose(o, o0);
    expectClose(lse, lse0);
  }
  ref::causalAttention(kDims, kScale, in.q, in.k, in.v, o, lse);
  expectClose(o, o0);
  expectClose(lse, lse0);
}

TEST(WindowAttention, SmallWindowsMatchMaskedNaive) {
  const Inputs in = randomInputs(kDims, kDims.T, 2);
  for (int w : {1, 2, 5, 16, 36}) {
    std::vector<double> o0, lse0, o, lse;
    naiveAttention(kDims, kDims.T, kScale, in,
                   [w](int, int t, int, int key) { return key <= t && key > t - w ? 1 : 0; }, o0,
                   lse0);
    ref::windowAttention(kDims, w, kScale, in.q, in.k, in.v, o, lse);
    SCOPED_TRACE(w);
    expectClose(o, o0);
    expectClose(lse, lse0);
  }
}

TEST(WindowAttention, WindowOneCopiesOwnValueAndLseIsTheScore) {
  const Inputs in = randomInputs(kDims, kDims.T, 3);
  std::vector<double> o, lse;
  ref::windowAttention(kDims, 1, kScale, in.q, in.k, in.v, o, lse);
  const int HQ = kDims.HQ();
  for (int b = 0; b < kDims.B; ++b)
    for (int t = 0; t < kDims.T; ++t)
      for (int hq = 0; hq < HQ; ++hq) {
        const int kvh = hq / kDims.G;
        const std::size_t row = (std::size_t(b) * kDims.T + t) * HQ + hq;
        double s = 0;
        for (int x = 0; x < kDims.Dk; ++x)
          s += double(in.q[row * kDims.Dk + x]) *
               in.k[((std::size_t(b) * kDims.T + t) * kDims.H + kvh) * kDims.Dk + x];
        EXPECT_NEAR(lse[row], kScale * s, kTol);
        for (int x = 0; x < kDims.Dv; ++x)
          EXPECT_NEAR(o[row * kDims.Dv + x],
                      in.v[((std::size_t(b) * kDims.T + t) * kDims.H + kvh) * kDims.Dv + x], kTol);
      }
}

// Large scores must not overflow (max subtraction): scale 1000 gives scores ~1e3.
TEST(WindowAttention, LargeScoresStayFinite) {
  const Inputs in = randomInputs(kDims, kDims.T, 4);
  std::vector<double> o, lse;
  ref::windowAttention(kDims, 8, 1000.0, in.q, in.k, in.v, o, lse);
  for (double x : o)
    ASSERT_TRUE(std::isfinite(x));
  for (double x : lse)
    ASSERT_TRUE(std::isfinite(x));
  // Each output is a convex combination of values in [-1, 1].
  for (double x : o)
    ASSERT_LE(std::fabs(x), 1.0 + 1e-12);
}

TEST(WindowAttention, RejectsBadArguments) {
  const Inputs in = randomInputs(kDims, kDims.T, 5);
  std::vector<double> o, lse;
  EXPECT_THROW(ref::windowAttention(kDims, 0, kScale, in.q, in.k, in.v, o, lse),
               std::invalid_argument);
  std::vector<float> shortK(in.k.begin(), in.k.end() - 1);
  EXPECT_THROW(ref::windowAttention(kDims, 4, kScale, in.q, shortK, in.v, o, lse),
               std::invalid_argument);
}

// ---------------------------------------------------------------- selected

// idx [B, T, H, n] filled per row by fill(b, t, kvh, row pointer).
std::vector<std::int32_t>
makeIdx(const Dims &d, int n, const std::function<void(int, int, int, std::int32_t *)> &fill) {
  std::vector<std::int32_t> idx(std::size_t(d.B) * d.T * d.H * n, -1);
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int kvh = 0; kvh < d.H; ++kvh)
        fill(b, t, kvh, idx.data() + ((std::size_t(b) * d.T + t) * d.H + kvh) * n);
  return idx;
}

TEST(SelectedAttention, AllBlocksEqualsFullCausal) {
  const Inputs in = randomInputs(kDims, kDims.T, 10);
  std::vector<double> o0, lse0, o, lse;
  naiveCausal(kDims, kScale, in, o0, lse0);
  for (int lsel : {1, 4, 8, 16, 37, 64}) {
    const int NB = (kDims.T + lsel - 1) / lsel;
    // Every block, future ones included (they must be ignored).
    auto idx = makeIdx(kDims, NB, [&](int, int, int, std::int32_t *r) {
      for (int j = 0; j < NB; ++j)
        r[j] = j;
    });
    ref::selectedAttention(kDims, lsel, NB, kScale, in.q, in.k, in.v, idx, o, lse);
    SCOPED_TRACE(lsel);
    expectClose(o, o0);
    expectClose(lse, lse0);
  }
}

TEST(SelectedAttention, InvalidIndicesAreIgnoredAndOrderDoesNotMatter) {
  const Inputs in = randomInputs(kDims, kDims.T, 11);
  std::vector<double> o0, lse0, o, lse;
  naiveCausal(kDims, kScale, in, o0, lse0);
  const int lsel = 8;  // NB = 5; block 4 is tokens 32..36 (partial)
  const int n = 9;
  auto idx = makeIdx(kDims, n, [&](int, int, int, std::int32_t *r) {
    const std::int32_t list[9] = {4, -1, 2, 5, 0, 99, 3, -7, 1};
    std::copy(list, list + n, r);
  });
  ref::selectedAttention(kDims, lsel, n, kScale, in.q, in.k, in.v, idx, o, lse);
  expectClose(o, o0);
  expectClose(lse, lse0);
}

TEST(SelectedAttention, RandomSubsetsMatchMaskedNaive) {
  const Inputs in = randomInputs(kDims, kDims.T, 12);
  const int lsel = 4, n = 3;  // NB = 10
  std::mt19937 gen(99);
  std::uniform_int_distribution<int> pick(-2, 11);  // includes invalid values
  auto idx = makeIdx(kDims, n, [&](int, int, int, std::int32_t *r) {
    std::set<int> used;
    for (int s = 0; s < n; ++s) {
      int j;
      do
        j = pick(gen);
      while (j >= 0 && used.count(j));
      used.insert(j);
      r[s] = j;
    }
  });
  auto mult = [&](int b, int t, int kvh, int key) {
    const std::int32_t *r = idx.data() + ((std::size_t(b) * kDims.T + t) * kDims.H + kvh) * n;
    int m = 0;
    for (int s = 0; s < n; ++s)
      m += (r[s] >= 0 && key / lsel == r[s] && key <= t) ? 1 : 0;
    return m;
  };
  std::vector<double> o0, lse0, o, lse;
  naiveAttention(kDims, kDims.T, kScale, in, mult, o0, lse0);
  ref::selectedAttention(kDims, lsel, n, kScale, in.q, in.k, in.v, idx, o, lse);
  expectClose(o, o0);
  expectClose(lse, lse0);
  EXPECT_FALSE(anyNaN(o));
}

TEST(SelectedAttention, DuplicatedIndexIsAttendedTwice) {
  const Inputs in = randomInputs(kDims, kDims.T, 13);
  const int lsel = 8, n = 3;
  // Rows list {0, 0, -1} (duplicate) vs {0, -1, -1}: same o, lse larger by log 2.
  auto dup = makeIdx(kDims, n, [](int, int, int, std::int32_t *r) { r[0] = r[1] = 0; });
  auto once = makeIdx(kDims, n, [](int, int, int, std::int32_t *r) { r[0] = 0; });
  std::vector<double> o1, lse1, o2, lse2;
  ref::selectedAttention(kDims, lsel, n, kScale, in.q, in.k, in.v, once, o1, lse1);
  ref::selectedAttention(kDims, lsel, n, kScale, in.q, in.k, in.v, dup, o2, lse2);
  expectClose(o2, o1);
  for (std::size_t i = 0; i < lse1.size(); ++i)
    EXPECT_NEAR(lse2[i], lse1[i] + std::log(2.0), kTol);
  // Duplicate of one block next to another: block 1 counts twice relative to block 0.
  auto mixed = makeIdx(kDims, n, [](int, int, int, std::int32_t *r) {
    r[0] = 1;
    r[1] = 0;
    r[2] = 1;
  });
  std::vector<double> o0, lse0;
  naiveAttention(kDims, kDims.T, kScale, in,
                 [&](int, int t, int, int key) {
                   if (key > t)
                     return 0;
                   return key / lsel == 0 ? 1 : key / lsel == 1 ? 2 : 0;
                 },
                 o0, lse0);
  ref::selectedAttention(kDims, lsel, n, kScale, in.q, in.k, in.v, mixed, o2, lse2);
  expectClose(o2, o0);
  expectClose(lse2, lse0);
}

TEST(SelectedAttention, RowWithNoKeyGivesZerosAndNegInf) {
  const Inputs in = randomInputs(kDims, kDims.T, 14);
  const int lsel = 8, n = 2;
  // All -1, except rows of t < 8 list block 3 only (in their future).
  auto idx = makeIdx(kDims, n, [](int, int t, int, std::int32_t *r) {
    if (t < 8)
      r[1] = 3;
  });
  std::vector<double> o, lse;
  ref::selectedAttention(kDims, lsel, n, kScale, in.q, in.k, in.v, idx, o, lse);
  for (double x : o)
    ASSERT_EQ(x, 0.0);
  for (double x : lse)
    ASSERT_EQ(x, kNegInf);
}

// ---------------------------------------------------------------- compressed

TEST(CompressedAttention, NumCompressed) {
  EXPECT_EQ(ref::numCompressed(31, 32, 16), 0);
  EXPECT_EQ(ref::numCompressed(32, 32, 16), 1);
  EXPECT_EQ(ref::numCompressed(47, 32, 16), 1);
  EXPECT_EQ(ref::numCompressed(48, 32, 16), 2);
  EXPECT_EQ(ref::numCompressed(64, 32, 16), 3);
  EXPECT_EQ(ref::numCompressed(0, 1, 1), 0);
  EXPECT_EQ(ref::numCompressed(37, 1, 1), 37);
  EXPECT_EQ(ref::numSelectionBlocks(37, 8), 5);
  EXPECT_EQ(ref::numSelectionBlocks(40, 8), 5);
  EXPECT_EQ(ref::numSelectionBlocks(0, 8), 0);
}

TEST(CompressedAttention, L1D1WithRawKeysEqualsFullCausal) {
  const Inputs in = randomInputs(kDims, kDims.T, 20);
  std::vector<double> o0, lse0, o, lse;
  naiveCausal(kDims, kScale, in, o0, lse0);
  ref::compressedAttention(kDims, 1, 1, kScale, in.q, in.k, in.v, o, lse);
  expectClose(o, o0);
  expectClose(lse, lse0);
}

TEST(CompressedAttention, MatchesMaskedNaive) {
  for (auto [l, d] : {std::pair{8, 4}, {8, 8}, {6, 2}, {32, 16}}) {
    const int Tc = ref::numCompressed(kDims.T, l, d);
    const Inputs in = randomInputs(kDims, Tc, 21);
    std::vector<double> o0, lse0, o, lse;
    naiveAttention(kDims, Tc, kScale, in,
                   [l = l, d = d](int, int t, int, int i) { return i * d + l - 1 <= t ? 1 : 0; },
                   o0, lse0);
    ref::compressedAttention(kDims, l, d, kScale, in.q, in.k, in.v, o, lse);
    SCOPED_TRACE(testing::Message() << "l=" << l << " d=" << d);
    expectClose(o, o0);
    expectClose(lse, lse0);
  }
}

TEST(CompressedAttention, QueriesSeeingNoBlockGiveZerosNegInfNoNaN) {
  Dims d = kDims;
  d.T = 40;  // l = 32, d = 16: Tc = 1, token 0 visible from t = 31
  const int Tc = ref::numCompressed(d.T, 32, 16);
  ASSERT_EQ(Tc, 1);
  const Inputs in = randomInputs(d, Tc, 22);
  std::vector<double> o, lse;
  ref::compressedAttention(d, 32, 16, kScale, in.q, in.k, in.v, o, lse);
  EXPECT_FALSE(anyNaN(o));
  EXPECT_FALSE(anyNaN(lse));
  const int HQ = d.HQ();
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int hq = 0; hq < HQ; ++hq) {
        const std::size_t row = (std::size_t(b) * d.T + t) * HQ + hq;
        if (t < 31) {
          EXPECT_EQ(lse[row], kNegInf);
          for (int x = 0; x < d.Dv; ++x)
            EXPECT_EQ(o[row * d.Dv + x], 0.0);
        } else {
          // A single visible token: o = vc[0], lse = its score.
          EXPECT_TRUE(std::isfinite(lse[row]));
          for (int x = 0; x < d.Dv; ++x)
            EXPECT_NEAR(o[row * d.Dv + x], in.v[(std::size_t(b) * d.H + hq / d.G) * d.Dv + x],
                        kTol);
        }
      }
  // T < l: no compressed token at all (empty kc / vc).
  d.T = 20;
  const Inputs in2 = randomInputs(d, 0, 23);
  ASSERT_TRUE(in2.k.empty());
  ref::compressedAttention(d, 32, 16, kScale, in2.q, in2.k, in2.v, o, lse);
  ASSERT_EQ(o.size(), std::size_t(d.B) * d.T * d.HQ() * d.Dv);
  for (double x : o)
    ASSERT_EQ(x, 0.0);
  for (double x : lse)
    ASSERT_EQ(x, kNegInf);
}

// ---------------------------------------------------------------- compression

TEST(Compression, MeanPoolAndWeightedHandValues) {
  // B=1, T=6, H=2, D=2; x[t, h] = {t + 100h, 10t + 100h}; l=4, d=2 -> Tc=2.
  const int T = 6, H = 2, D = 2;
  std::vector<float> x(T * H * D);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < H; ++h) {
      x[(t * H + h) * D + 0] = float(t + 100 * h);
      x[(t * H + h) * D + 1] = float(10 * t + 100 * h);
    }
  std::vector<float> kc;
  ref::compressMeanPool(1, T, H, D, 4, 2, x, kc);
  // Tokens 0..3: mean t = 1.5; tokens 2..5: mean t = 3.5.
  const std::vector<float> wantMean = {1.5f, 15.0f, 101.5f, 115.0f,
                                       3.5f, 35.0f, 103.5f, 135.0f};
  EXPECT_EQ(kc, wantMean);
  // Weights {1, 0, 0, 2}: x[i*2] + 2 * x[i*2 + 3].
  const std::vector<float> w = {1, 0, 0, 2};
  ref::compressWeighted(1, T, H, D, 4, 2, w, x, kc);
  const std::vector<float> wantW = {6.0f,   60.0f,  306.0f, 360.0f,
                                    12.0f, 120.0f, 312.0f, 420.0f};
  EXPECT_EQ(kc, wantW);
}

TEST(Compression, UniformWeightsEqualMeanPool) {
  const auto x = randomBf16(2 * 37 * 2 * 8, 30);
  std::vector<float> a, b;
  ref::compressMeanPool(2, 37, 2, 8, 8, 4, x, a);
  ref::compressWeighted(2, 37, 2, 8, 8, 4, std::vector<float>(8, 0.125f), x, b);
  ASSERT_EQ(a.size(), std::size_t(2) * ref::numCompressed(37, 8, 4) * 2 * 8);
  EXPECT_LE(ref::maxAbsError(a, b), 1e-6);
}

// ---------------------------------------------------------------- p_cmp / eq. 9

TEST(CompressedProbabilities, ConsistentWithCompressedAttentionLse) {
  const int l = 8, d = 4, Tc = ref::numCompressed(kDims.T, l, d);
  const Inputs in = randomInputs(kDims, Tc, 40);
  std::vector<double> p, o, lse;
  ref::compressedProbabilities(kDims, l, d, kScale, in.q, in.k, p);
  ref::compressedAttention(kDims, l, d, kScale, in.q, in.k, in.v, o, lse);
  const int HQ = kDims.HQ();
  for (int b = 0; b < kDims.B; ++b)
    for (int t = 0; t < kDims.T; ++t)
      for (int hq = 0; hq < HQ; ++hq) {
        const std::size_t row = (std::size_t(b) * kDims.T + t) * HQ + hq;
        double sum = 0;
        std::vector<double> ov(kDims.Dv, 0.0);
        for (int i = 0; i < Tc; ++i) {
          const double pi = p[row * Tc + i];
          const bool visible = i * d + l - 1 <= t;
          if (!visible) {
            EXPECT_EQ(pi, 0.0);
            continue;
          }
          double s = 0;
          for (int x = 0; x < kDims.Dk; ++x)
            s += double(in.q[row * kDims.Dk + x]) *
                 in.k[((std::size_t(b) * Tc + i) * kDims.H + hq / kDims.G) * kDims.Dk + x];
          EXPECT_NEAR(pi, std::exp(kScale * s - lse[row]), kTol);
          sum += pi;
          for (int x = 0; x < kDims.Dv; ++x)
            ov[x] += pi * in.v[((std::size_t(b) * Tc + i) * kDims.H + hq / kDims.G) * kDims.Dv + x];
        }
        EXPECT_NEAR(sum, t >= l - 1 ? 1.0 : 0.0, kTol);
        for (int x = 0; x < kDims.Dv; ++x)
          EXPECT_NEAR(ov[x], o[row * kDims.Dv + x], kTol);
      }
}

TEST(BlockImportance, EqualSizesReduceToPcmp) {
  const int l = 8, Tc = ref::numCompressed(kDims.T, l, l), NB = ref::numSelectionBlocks(kDims.T, l);
  ASSERT_EQ(Tc, 4);
  ASSERT_EQ(NB, 5);
  const Inputs in = randomInputs(kDims, Tc, 50);
  std::vector<double> p, s, s2;
  ref::compressedProbabilities(kDims, l, l, kScale, in.q, in.k, p);
  ref::blockImportance(kDims, l, l, l, p, s);
  ref::blockImportanceOverlap(kDims, l, l, l, p, s2);
  const std::size_t rows = std::size_t(kDims.B) * kDims.T * kDims.HQ();
  ASSERT_EQ(s.size(), rows * NB);
  for (std::size_t r = 0; r < rows; ++r)
    for (int j = 0; j < NB; ++j) {
      const double want = j < Tc ? p[r * Tc + j] : 0.0;
      EXPECT_EQ(s[r * NB + j], want);
      EXPECT_EQ(s2[r * NB + j], want);
    }
}

// Paper config l=32, d=16, l'=64, T=160: Tc=9, NB=3. With p_cmp[i] = 10^i the
// digits of p_slc[j] show each compressed token's weight:
//   paper eq. 9:  p[4j] + 2p[4j-1] + 2p[4j-2] + 2p[4j-3] + p[4j-4]
//   overlap:      p[4j-1] + 2p[4j] + 2p[4j+1] + 2p[4j+2] + p[4j+3]
TEST(BlockImportance, HandWorkedPaperConfig) {
  const Dims d{1, 160, 1, 1, 1, 1};
  const int Tc = ref::numCompressed(160, 32, 16), NB = ref::numSelectionBlocks(160, 64);
  ASSERT_EQ(Tc, 9);
  ASSERT_EQ(NB, 3);
  std::vector<double> p(std::size_t(d.T) * Tc);
  for (int t = 0; t < d.T; ++t)
    for (int i = 0; i < Tc; ++i)
      p[std::size_t(t) * Tc + i] = std::pow(10.0, i);
  std::vector<double> s, s2;
  ref::blockImportance(d, 32, 16, 64, p, s);
  ref::blockImportanceOverlap(d, 32, 16, 64, p, s2);
  for (int t = 0; t < d.T; ++t) {
    EXPECT_EQ(s[t * NB + 0], 1.0);
    EXPECT_EQ(s[t * NB + 1], 12221.0);
    EXPECT_EQ(s[t * NB + 2], 122210000.0);
    EXPECT_EQ(s2[t * NB + 0], 1222.0);
    EXPECT_EQ(s2[t * NB + 1], 12221000.0);
    EXPECT_EQ(s2[t * NB + 2], 210000000.0);
  }
}

// Literal transcription of eq. 9 for several (l, d, l'), and the overlap variant
// against a brute-force count of shared stride-d chunks.
TEST(BlockImportance, GeneralConfigsMatchFormulaAndOverlapCount) {
  struct Cfg {
    int l, d, lsel;
  };
  for (Cfg c : {Cfg{32, 16, 64}, Cfg{16, 16, 64}, Cfg{64, 16, 32}, Cfg{8, 2, 4}, Cfg{6, 3, 9}}) {
    SCOPED_TRACE(testing::Message() << "l=" << c.l << " d=" << c.d << " l'=" << c.lsel);
    const Dims d{1, 200, 1, 1, 1, 1};
    const int Tc = ref::numCompressed(d.T, c.l, c.d), NB = ref::numSelectionBlocks(d.T, c.lsel);
    std::vector<double> p(std::size_t(d.T) * Tc);
    std::mt19937 gen(7);
    std::uniform_real_distribution<double> u(0, 1);
    for (double &x : p)
      x = u(gen);
    std::vector<double> s, s2;
    ref::blockImportance(d, c.l, c.d, c.lsel, p, s);
    ref::blockImportanceOverlap(d, c.l, c.d, c.lsel, p, s2);
    for (int t = 0; t < d.T; t += 17)
      for (int j = 0; j < NB; ++j) {
        double want = 0, want2 = 0;
        for (int m = 0; m <= c.lsel / c.d - 1; ++m)
          for (int n = 0; n <= c.l / c.d - 1; ++n) {
            const int i = (c.lsel / c.d) * j - m - n;
            if (i >= 0 && i < Tc)
              want += p[std::size_t(t) * Tc + i];
          }
        for (int i = 0; i < Tc; ++i) {
          // Tokens shared by [i*d, i*d + l) and [j*l', (j+1)*l'), in units of d.
          const int lo = std::max(i * c.d, j * c.lsel);
          const int hi = std::min(i * c.d + c.l, (j + 1) * c.lsel);
          if (hi > lo)
            want2 += p[std::size_t(t) * Tc + i] * ((hi - lo) / c.d);
        }
        EXPECT_NEAR(s[std::size_t(t) * NB + j], want, 1e-12);
        EXPECT_NEAR(s2[std::size_t(t) * NB + j], want2, 1e-12);
      }
  }
}

TEST(BlockImportance, RejectsBadBlockSizes) {
  const Dims d{1, 64, 1, 1, 1, 1};
  std::vector<double> p(64 * ref::numCompressed(64, 32, 16)), s;
  EXPECT_THROW(ref::blockImportance(d, 32, 16, 40, p, s), std::invalid_argument);  // l' % d
  EXPECT_THROW(ref::blockImportance(d, 24, 16, 64, p, s), std::invalid_argument);  // l % d
}

// ---------------------------------------------------------------- top-n

const std::int32_t *idxRow(const std::vector<std::int32_t> &idx, const Dims &d, int n, int b,
                           int t, int kvh) {
  return idx.data() + ((std::size_t(b) * d.T + t) * d.H + kvh) * n;
}

std::vector<std::int32_t> rowVec(const std::vector<std::int32_t> &idx, const Dims &d, int n,
                                 int b, int t, int kvh) {
  const std::int32_t *r = idxRow(idx, d, n, b, t, kvh);
  return {r, r + n};
}

using V = std::vector<std::int32_t>;

TEST(SelectTopN, ForcedBlocksWinOverHigherScores) {
  const Dims d{1, 200, 2, 1, 1, 1};
  const int lsel = 16, n = 5, NB = ref::numSelectionBlocks(d.T, lsel);  // 13
  // Score 100 - j everywhere: the forced blocks are not the best ones.
  std::vector<double> sc(std::size_t(d.T) * d.H * NB);
  for (std::size_t i = 0; i < sc.size(); ++i)
    sc[i] = 100.0 - double(i % NB);
  // Make the local blocks the worst ones for t = 199.
  for (int h = 0; h < d.H; ++h) {
    sc[(std::size_t(199) * d.H + h) * NB + 11] = -5;
    sc[(std::size_t(199) * d.H + h) * NB + 12] = -5;
  }
  std::vector<std::int32_t> idx;
  ref::selectTopNFromScores(d, lsel, n, sc, idx);
  EXPECT_EQ(rowVec(idx, d, n, 0, 199, 1), (V{0, 1, 2, 11, 12}));
  EXPECT_EQ(rowVec(idx, d, n, 0, 100, 0), (V{0, 1, 2, 5, 6}));  // t in block 6
  EXPECT_EQ(rowVec(idx, d, n, 0, 47, 0), (V{0, 1, 2, -1, -1}));
  EXPECT_EQ(rowVec(idx, d, n, 0, 48, 0), (V{0, 1, 2, 3, -1}));
  EXPECT_EQ(rowVec(idx, d, n, 0, 0, 0), (V{0, -1, -1, -1, -1}));
  // numLocal = 3, numInitial = 2: t = 199 forces {0, 1, 10, 11, 12}.
  ref::selectTopNFromScores(d, lsel, n, sc, idx, 2, 3);
  EXPECT_EQ(rowVec(idx, d, n, 0, 199, 0), (V{0, 1, 10, 11, 12}));
  // No forced blocks: pure top-n by score.
  ref::selectTopNFromScores(d, lsel, n, sc, idx, 0, 0);
  EXPECT_EQ(rowVec(idx, d, n, 0, 199, 0), (V{0, 1, 2, 3, 4}));
}

TEST(SelectTopN, TiesGoToLowerIndex) {
  const Dims d{1, 160, 1, 1, 1, 1};
  const int lsel = 16, n = 4, NB = 10;
  std::vector<double> sc(std::size_t(d.T) * NB, 0.5);
  std::vector<std::int32_t> idx;
  ref::selectTopNFromScores(d, lsel, n, sc, idx);
  EXPECT_EQ(rowVec(idx, d, n, 0, 159, 0), (V{0, 1, 8, 9}));
  ref::selectTopNFromScores(d, lsel, n, sc, idx, 0, 0);
  EXPECT_EQ(rowVec(idx, d, n, 0, 159, 0), (V{0, 1, 2, 3}));
  // Block 5 is best, blocks 3 and 6 tie for second: n = 4 leaves one free slot
  // (-> 5), n = 5 leaves two (-> 5 and the lower of 3 / 6).
  for (int j = 0; j < NB; ++j)
    sc[std::size_t(159) * NB + j] = 0.1;
  sc[std::size_t(159) * NB + 5] = 0.9;
  sc[std::size_t(159) * NB + 3] = 0.7;
  sc[std::size_t(159) * NB + 6] = 0.7;
  ref::selectTopNFromScores(d, lsel, n, sc, idx);
  EXPECT_EQ(rowVec(idx, d, n, 0, 159, 0), (V{0, 5, 8, 9}));
  ref::selectTopNFromScores(d, lsel, 5, sc, idx);
  EXPECT_EQ(rowVec(idx, d, 5, 0, 159, 0), (V{0, 3, 5, 8, 9}));
}

TEST(SelectTopN, RandomScoresSatisfyTheRules) {
  const Dims d{2, 300, 3, 1, 1, 1};
  const int lsel = 16, n = 6, NB = ref::numSelectionBlocks(d.T, lsel);
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> u(0, 3);  // many ties
  std::vector<double> sc(std::size_t(d.B) * d.T * d.H * NB);
  for (double &x : sc)
    x = u(gen);
  std::vector<std::int32_t> idx;
  ref::selectTopNFromScores(d, lsel, n, sc, idx);
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int h = 0; h < d.H; ++h) {
        const V r = rowVec(idx, d, n, b, t, h);
        const double *s = sc.data() + ((std::size_t(b) * d.T + t) * d.H + h) * NB;
        const int current = t / lsel, visible = current + 1;
        const int count = int(std::count_if(r.begin(), r.end(), [](int x) { return x >= 0; }));
        ASSERT_EQ(count, std::min(n, visible));
        for (int i = 0; i < n; ++i) {
          if (i < count) {
            ASSERT_GE(r[i], 0);
            ASSERT_LE(r[i], current);
            if (i > 0) {
              ASSERT_LT(r[i - 1], r[i]);
            }
          } else {
            ASSERT_EQ(r[i], -1);
          }
        }
        std::set<int> sel(r.begin(), r.begin() + count);
        auto forced = [&](int j) { return j == 0 || j == current || j == current - 1; };
        for (int j = 0; j <= current; ++j) {
          if (forced(j)) {
            ASSERT_TRUE(sel.count(j)) << "t=" << t << " j=" << j;
          }
        }
        // Every unselected visible block loses to every non-forced selected block.
        for (int u2 = 0; u2 <= current; ++u2) {
          if (sel.count(u2))
            continue;
          for (int s2 : sel) {
            if (!forced(s2)) {
              ASSERT_TRUE(s[u2] < s[s2] || (s[u2] == s[s2] && u2 > s2))
                  << "t=" << t << " unselected " << u2 << " vs selected " << s2;
            }
          }
        }
      }
}

TEST(SelectTopN, SequenceShorterThanOneBlock) {
  const Dims d{1, 10, 2, 2, 4, 4};  // T < l = 32 < l' = 64: Tc = 0, NB = 1
  const auto q = randomBf16(std::size_t(d.T) * d.HQ() * d.Dk, 60);
  std::vector<std::int32_t> idx;
  ref::selectTopN(d, 32, 16, 64, 4, 0.5, q, std::vector<float>{}, idx);
  ASSERT_EQ(idx.size(), std::size_t(d.T) * d.H * 4);
  for (int t = 0; t < d.T; ++t)
    for (int h = 0; h < d.H; ++h)
      EXPECT_EQ(rowVec(idx, d, 4, 0, t, h), (V{0, -1, -1, -1}));
}

TEST(SelectTopN, PipelineEqualsComposedStepsAndSharesOverGroup) {
  const Dims d{2, 150, 2, 3, 8, 8};
  const int l = 32, dd = 16, lsel = 64, n = 3;  // NB = 3, Tc = 8
  const int Tc = ref::numCompressed(d.T, l, dd), NB = ref::numSelectionBlocks(d.T, lsel);
  const Inputs in = randomInputs(d, Tc, 70);
  std::vector<double> p, s, sh;
  ref::compressedProbabilities(d, l, dd, kScale, in.q, in.k, p);
  ref::blockImportance(d, l, dd, lsel, p, s);
  ref::sharedBlockScores(d, NB, s, sh);
  // Eq. 10 by hand.
  for (int b = 0; b < d.B; ++b)
    for (int t = 0; t < d.T; ++t)
      for (int h = 0; h < d.H; ++h)
        for (int j = 0; j < NB; ++j) {
          double want = 0;
          for (int g = 0; g < d.G; ++g)
            want += s[((std::size_t(b) * d.T + t) * d.HQ() + h * d.G + g) * NB + j];
          EXPECT_NEAR(sh[((std::size_t(b) * d.T + t) * d.H + h) * NB + j], want, 1e-15);
        }
  std::vector<std::int32_t> a, c;
  ref::selectTopNFromScores(d, lsel, n, sh, a, 0, 0);
  ref::selectTopN(d, l, dd, lsel, n, kScale, in.q, in.k, c, 0, 0);
  EXPECT_EQ(a, c);
  // n = 2 without forced blocks in block 2 (t >= 128): the lowest-scoring block is dropped.
  ref::selectTopN(d, l, dd, lsel, 2, kScale, in.q, in.k, c, 0, 0);
  for (int b = 0; b < d.B; ++b)
    for (int t = 128; t < d.T; ++t)
      for (int h = 0; h < d.H; ++h) {
        const double *r = sh.data() + ((std::size_t(b) * d.T + t) * d.H + h) * NB;
        int worst = 0;
        for (int j = 1; j < NB; ++j)
          if (r[j] <= r[worst])  // ties: the higher index is dropped
            worst = j;
        V want;
        for (int j = 0; j < NB; ++j)
          if (j != worst)
            want.push_back(j);
        EXPECT_EQ(rowVec(c, d, 2, b, t, h), want);
      }
}

TEST(SelectTopN, RejectsTooManyForcedBlocks) {
  const Dims d{1, 64, 1, 1, 1, 1};
  std::vector<double> sc(64 * 4, 0.0);
  std::vector<std::int32_t> idx;
  EXPECT_THROW(ref::selectTopNFromScores(d, 16, 2, sc, idx, 1, 2), std::invalid_argument);
  EXPECT_NO_THROW(ref::selectTopNFromScores(d, 16, 3, sc, idx, 1, 2));
}

// Indices from selectTopN with n >= number of blocks select everything visible,
// so selected attention equals full causal attention.
TEST(SelectTopN, FullSelectionFeedsSelectedAttention) {
  const int l = 8, dd = 4, lsel = 8, NB = ref::numSelectionBlocks(kDims.T, lsel);
  const int Tc = ref::numCompressed(kDims.T, l, dd);
  const Inputs in = randomInputs(kDims, kDims.T, 80);
  std::vector<float> kc;
  ref::compressMeanPool(kDims.B, kDims.T, kDims.H, kDims.Dk, l, dd, in.k, kc);
  ASSERT_EQ(kc.size(), std::size_t(kDims.B) * Tc * kDims.H * kDims.Dk);
  std::vector<std::int32_t> idx;
  ref::selectTopN(kDims, l, dd, lsel, NB, kScale, in.q, kc, idx);
  std::vector<double> o0, lse0, o, lse;
  naiveCausal(kDims, kScale, in, o0, lse0);
  ref::selectedAttention(kDims, lsel, NB, kScale, in.q, in.k, in.v, idx, o, lse);
  expectClose(o, o0);
  expectClose(lse, lse0);
}

// ---------------------------------------------------------------- gating

TEST(GatedCombine, HandValues) {
  const Dims d{1, 1, 1, 2, 1, 2};
  const std::vector<double> oc = {1, 2, 3, 4}, os = {10, 20, 30, 40}, ow = {100, 200, 300, 400};
  const std::vector<float> gc = {0.5f, 1.0f}, gs = {0.25f, 0.0f}, gw = {1.0f, 0.5f};
  std::vector<double> out;
  ref::gatedCombine(d, oc, os, ow, gc, gs, gw, out);
  EXPECT_EQ(out, (std::vector<double>{103, 206, 153, 204}));
  EXPECT_THROW(ref::gatedCombine(d, oc, os, ow, gc, gs, std::vector<float>{1.0f}, out),
               std::invalid_argument);
}

// ---------------------------------------------------------------- comparison

TEST(Compare, RelativeAndMaxAbsError) {
  using DV = std::vector<double>;
  using FV = std::vector<float>;
  const double inf = std::numeric_limits<double>::infinity();
  const float nanf = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(ref::relativeError(FV{0, 0}, DV{0, 0}), 0.0);
  EXPECT_EQ(ref::relativeError(FV{}, DV{}), 0.0);
  EXPECT_EQ(ref::relativeError(FV{0, 1e-30f}, DV{0, 0}), inf);
  EXPECT_DOUBLE_EQ(ref::relativeError(DV{4, 0}, DV{0, 3}), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(ref::relativeError(FV{1, 2, 3}, FV{1, 2, 3}), 0.0);
  EXPECT_EQ(ref::relativeError(FV{1, nanf}, DV{1, 1}), inf);
  EXPECT_EQ(ref::relativeError(FV{nanf}, DV{0}), inf);
  // lse rows of -inf in both: exact match; only one side -inf: inf.
  EXPECT_DOUBLE_EQ(ref::relativeError(FV{-INFINITY, 3.0f}, DV{-inf, 4.0}), 0.25);
  EXPECT_EQ(ref::relativeError(FV{-INFINITY, 3.0f}, DV{1.0, 4.0}), inf);
  EXPECT_EQ(ref::relativeError(FV{1.0f, 3.0f}, DV{-inf, 4.0}), inf);
  EXPECT_THROW(ref::relativeError(FV{1}, DV{1, 2}), std::invalid_argument);

  EXPECT_DOUBLE_EQ(ref::maxAbsError(FV{1, 2, 3}, DV{1, 2.5, 2}), 1.0);
  EXPECT_EQ(ref::maxAbsError(FV{}, DV{}), 0.0);
  EXPECT_EQ(ref::maxAbsError(FV{nanf}, DV{0}), inf);
  EXPECT_EQ(ref::maxAbsError(DV{-inf, 1}, DV{-inf, 1}), 0.0);
  EXPECT_EQ(ref::maxAbsError(DV{inf}, DV{-inf}), inf);
  EXPECT_THROW(ref::maxAbsError(FV{1}, FV{}), std::invalid_argument);
}

} // namespace
