// bf16 / fp16 rounding and bit conversions of runtime/reference: known values
// (ties to even, overflow, subnormals), exhaustive round trips of all 65536 bit
// patterns, and random floats against an independent nearest-value search (and
// against the compiler's _Float16 where it has one).
#include "runtime/reference/Reference.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <utility>
#include <vector>

namespace {

namespace ref = nsajit::ref;

TEST(Bf16, KnownValues) {
  EXPECT_EQ(ref::floatToBf16Bits(1.0f), 0x3F80);
  EXPECT_EQ(ref::floatToBf16Bits(-2.0f), 0xC000);
  EXPECT_EQ(ref::floatToBf16Bits(0.0f), 0x0000);
  EXPECT_EQ(ref::floatToBf16Bits(-0.0f), 0x8000);
  // bf16 has 7 mantissa bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7 -> even (1).
  EXPECT_EQ(ref::floatToBf16Bits(1.0f + 0x1p-8f), 0x3F80);
  // 1 + 3*2^-8 is halfway between 1 + 2^-7 (odd) and 1 + 2^-6 (even) -> 1 + 2^-6.
  EXPECT_EQ(ref::floatToBf16Bits(1.0f + 3 * 0x1p-8f), 0x3F82);
  // Just above the halfway point rounds up.
  EXPECT_EQ(ref::floatToBf16Bits(1.0f + 0x1p-8f + 0x1p-20f), 0x3F81);
  EXPECT_EQ(ref::floatToBf16Bits(-(1.0f + 0x1p-8f + 0x1p-20f)), 0xBF81);
  EXPECT_EQ(ref::floatToBf16Bits(3.14159265f), 0x4049);  // 0x40490FDB
  EXPECT_EQ(ref::floatToBf16Bits(1.0f / 3.0f), 0x3EAB);  // 0x3EAAAAAB
  EXPECT_EQ(ref::floatToBf16Bits(65504.0f), 0x4780);     // rounds up to 65536
  EXPECT_EQ(ref::floatToBf16Bits(std::numeric_limits<float>::infinity()), 0x7F80);
  EXPECT_EQ(ref::floatToBf16Bits(-std::numeric_limits<float>::infinity()), 0xFF80);
  EXPECT_EQ(ref::floatToBf16Bits(std::numeric_limits<float>::max()), 0x7F80);  // overflow
  EXPECT_EQ(ref::floatToBf16Bits(std::bit_cast<float>(0x7F7F7FFFu)), 0x7F7F);  // below half
  EXPECT_TRUE(std::isnan(ref::roundToBf16(std::numeric_limits<float>::quiet_NaN())));
  // A signalling NaN whose payload sits in the low 16 bits must not become inf.
  EXPECT_TRUE(std::isnan(ref::bf16BitsToFloat(ref::floatToBf16Bits(std::bit_cast<float>(0x7F800001u)))));
  EXPECT_EQ(ref::bf16BitsToFloat(0x3F80), 1.0f);
  EXPECT_EQ(ref::bf16BitsToFloat(0xC000), -2.0f);
  EXPECT_EQ(ref::roundToBf16(1.0f + 3 * 0x1p-8f), 1.0f + 0x1p-6f);
}

TEST(Fp16, KnownValues) {
  EXPECT_EQ(ref::floatToFp16Bits(1.0f), 0x3C00);
  EXPECT_EQ(ref::floatToFp16Bits(-2.0f), 0xC000);
  EXPECT_EQ(ref::floatToFp16Bits(-0.0f), 0x8000);
  EXPECT_EQ(ref::floatToFp16Bits(0.1f), 0x2E66);
  // 10 mantissa bits: ties to even around 1.
  EXPECT_EQ(ref::floatToFp16Bits(1.0f + 0x1p-11f), 0x3C00);
  EXPECT_EQ(ref::floatToFp16Bits(1.0f + 3 * 0x1p-11f), 0x3C02);
  EXPECT_EQ(ref::floatToFp16Bits(1.0f + 0x1p-11f + 0x1p-20f), 0x3C01);
  // Largest finite 65504; 65520 is halfway to 65536 and ties to even = inf.
  EXPECT_EQ(ref::floatToFp16Bits(65504.0f), 0x7BFF);
  EXPECT_EQ(ref::floatToFp16Bits(65519.0f), 0x7BFF);
  EXPECT_EQ(ref::floatToFp16Bits(65520.0f), 0x7C00);
  EXPECT_EQ(ref::floatToFp16Bits(-65520.0f), 0xFC00);
  EXPECT_EQ(ref::floatToFp16Bits(1e10f), 0x7C00);
  // Subnormals: multiples of 2^-24.
  EXPECT_EQ(ref::floatToFp16Bits(0x1p-24f), 0x0001);
  EXPECT_EQ(ref::floatToFp16Bits(0x1p-25f), 0x0000);              // tie -> even (0)
  EXPECT_EQ(ref::floatToFp16Bits(0x1p-25f + 0x1p-40f), 0x0001);   // just above the tie
  EXPECT_EQ(ref::floatToFp16Bits(3 * 0x1p-25f), 0x0002);          // 1.5 units -> 2
  EXPECT_EQ(ref::floatToFp16Bits(-0x1p-24f), 0x8001);
  EXPECT_EQ(ref::floatToFp16Bits(0x1p-14f), 0x0400);              // smallest normal
  EXPECT_EQ(ref::floatToFp16Bits(0x1p-14f - 0x1p-25f), 0x0400);   // 1023.5 units -> 1024
  EXPECT_EQ(ref::floatToFp16Bits(0x1p-14f - 0x1p-24f), 0x03FF);   // 1023 units
  EXPECT_EQ(ref::fp16BitsToFloat(0x0001), 0x1p-24f);
  EXPECT_EQ(ref::fp16BitsToFloat(0x7BFF), 65504.0f);
  EXPECT_EQ(ref::fp16BitsToFloat(0x7C00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(ref::fp16BitsToFloat(0x7E00)));
  EXPECT_TRUE(std::isnan(ref::roundToFp16(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(ref::fp16BitsToFloat(ref::floatToFp16Bits(std::bit_cast<float>(0x7F800001u)))));
}

// Every bit pattern converts to a float and back to itself (NaNs stay NaN).
TEST(Bf16, ExhaustiveRoundTrip) {
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const float f = ref::bf16BitsToFloat(std::uint16_t(b));
    if (std::isnan(f))
      ASSERT_TRUE(std::isnan(ref::bf16BitsToFloat(ref::floatToBf16Bits(f)))) << b;
    else
      ASSERT_EQ(ref::floatToBf16Bits(f), b) << b;
  }
}

TEST(Fp16, ExhaustiveRoundTrip) {
  for (std::uint32_t b = 0; b <= 0xFFFF; ++b) {
    const float f = ref::fp16BitsToFloat(std::uint16_t(b));
    if (std::isnan(f))
      ASSERT_TRUE(std::isnan(ref::fp16BitsToFloat(ref::floatToFp16Bits(f)))) << b;
    else
      ASSERT_EQ(ref::floatToFp16Bits(f), b) << b;
  }
}

// Independent rounding: binary search the sorted finite values of the format for
// the nearest one (ties -> even bit pattern); beyond the largest finite value by
// at least half an ulp (of the next binade) -> inf.
struct NearestTable {
  std::vector<std::pair<double, std::uint16_t>> values;  // non-negative finite, sorted
  double overflow;                                        // |x| >= overflow -> inf
  std::uint16_t infBits;

  template <typename ToFloat>
  NearestTable(ToFloat toFloat, std::uint16_t inf, double maxFinite, double halfUlpAboveMax)
      : overflow(maxFinite + halfUlpAboveMax), infBits(inf) {
    for (std::uint32_t b = 0; b < 0x8000; ++b) {
      const double v = toFloat(std::uint16_t(b));
      if (std::isfinite(v))
        values.push_back({v, std::uint16_t(b)});
    }
    std::sort(values.begin(), values.end());
  }

  std::uint16_t round(float x) const {
    const std::uint16_t sign = std::signbit(x) ? 0x8000 : 0;
    const double a = std::fabs(double(x));
    if (a >= overflow)
      return sign | infBits;
    auto it = std::lower_bound(values.begin(), values.end(), std::pair{a, std::uint16_t(0)});
    if (it == values.end())
      return sign | values.back().second;
    if (it == values.begin())
      return sign | it->second;
    const auto hi = *it, lo = *(it - 1);
    if (hi.first == a)
      return sign | hi.second;
    const double dlo = a - lo.first, dhi = hi.first - a;
    if (dlo < dhi)
      return sign | lo.second;
    if (dhi < dlo)
      return sign | hi.second;
    return sign | ((lo.second & 1) ? hi.second : lo.second);
  }
};

// Random floats over many binades, including the subnormal / overflow edges.
std::vector<float> randomFloats(unsigned seed, int n) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> mant(1.0f, 2.0f);
  std::uniform_int_distribution<int> expo(-30, 20);
  std::uniform_int_distribution<int> sign(0, 1);
  std::uniform_int_distribution<std::uint32_t> bits(0, 0xFFFFFFFFu);
  std::vector<float> out;
  for (int i = 0; i < n; ++i) {
    float x = std::ldexp(mant(gen), expo(gen)) * (sign(gen) ? -1.0f : 1.0f);
    out.push_back(x);
    // Also raw bit patterns (any finite float).
    const float r = std::bit_cast<float>(bits(gen));
    if (std::isfinite(r))
      out.push_back(r);
  }
  return out;
}

TEST(Bf16, RandomFloatsRoundToNearestEven) {
  const NearestTable table([](std::uint16_t b) { return double(ref::bf16BitsToFloat(b)); },
                           0x7F80, double(std::bit_cast<float>(0x7F7F0000u)), 0x1p119);
  for (float x : randomFloats(1, 100000))
    ASSERT_EQ(ref::floatToBf16Bits(x), table.round(x)) << x;
}

TEST(Fp16, RandomFloatsRoundToNearestEven) {
  const NearestTable table([](std::uint16_t b) { return double(ref::fp16BitsToFloat(b)); },
                           0x7C00, 65504.0, 16.0);
  for (float x : randomFloats(2, 100000))
    ASSERT_EQ(ref::floatToFp16Bits(x), table.round(x)) << x;
}

#if defined(__FLT16_MAX__)
TEST(Fp16, MatchesCompilerFloat16) {
  for (float x : randomFloats(3, 100000)) {
    const _Float16 h = static_cast<_Float16>(x);
    std::uint16_t b;
    std::memcpy(&b, &h, 2);
    ASSERT_EQ(ref::floatToFp16Bits(x), b) << x;
    ASSERT_EQ(ref::fp16BitsToFloat(b), static_cast<float>(h)) << x;
  }
}
#endif

TEST(NumericFormats, ArrayHelpers) {
  std::vector<float> xs = {1.0f + 0x1p-8f + 0x1p-20f, 0.1f, -3.0f};
  const auto bb = ref::toBf16Bits(xs);
  EXPECT_EQ(bb, (std::vector<std::uint16_t>{0x3F81, ref::floatToBf16Bits(0.1f), 0xC040}));
  const auto fb = ref::toFp16Bits(xs);
  EXPECT_EQ(fb[1], 0x2E66);
  const auto back = ref::fromBf16Bits(bb);
  std::vector<float> r = xs;
  ref::roundToBf16(r);
  EXPECT_EQ(back, r);
  std::vector<float> r16 = xs;
  ref::roundToFp16(r16);
  EXPECT_EQ(ref::fromFp16Bits(fb), r16);
  EXPECT_EQ(r16[1], ref::roundToFp16(0.1f));
}

} // namespace
