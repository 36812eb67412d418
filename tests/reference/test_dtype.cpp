// Exact widening and correctly rounded narrowing between double and the 16-bit float dtypes.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <random>

#include "core/dtype.hpp"

namespace dplr {
namespace {

TEST(DType, EveryHalfAndBfloatPatternRoundTrips) {
  for (std::uint32_t bits = 0; bits < 65536; ++bits) {
    const double h = fp16_bits_to_double(static_cast<std::uint16_t>(bits));
    const double b = bf16_bits_to_double(static_cast<std::uint16_t>(bits));
    if (!std::isnan(h)) {
      EXPECT_EQ(double_to_fp16_bits(h), bits) << bits;
      EXPECT_EQ(round_to_dtype(h, DType::F16), h);
    }
    if (!std::isnan(b)) {
      EXPECT_EQ(double_to_bf16_bits(b), bits) << bits;
      EXPECT_EQ(round_to_dtype(b, DType::BF16), b);
    }
  }
}

TEST(DType, RoundsToNearestEvenDirectlyFromDouble) {
  // 1 + 2^-8 is halfway between bf16 neighbours 1 and 1 + 2^-7: ties go to even (1).
  EXPECT_EQ(round_to_dtype(1.0 + 0x1p-8, DType::BF16), 1.0);
  EXPECT_EQ(round_to_dtype(1.0 + 0x1p-8 + 0x1p-40, DType::BF16), 1.0 + 0x1p-7);
  // Rounding through float first would round twice: 1 + 2^-8 + 2^-30 rounds up in one step.
  EXPECT_EQ(round_to_dtype(1.0 + 0x1p-8 + 0x1p-30, DType::BF16), 1.0 + 0x1p-7);
  EXPECT_EQ(round_to_dtype(65520.0, DType::F16), std::numeric_limits<double>::infinity());
  EXPECT_EQ(round_to_dtype(65519.0, DType::F16), 65504.0);
  EXPECT_EQ(round_to_dtype(0x1p-25, DType::F16), 0.0);           // half the smallest subnormal: tie to even
  EXPECT_EQ(round_to_dtype(0x1p-25 * 1.5, DType::F16), 0x1p-24);
  EXPECT_EQ(dtype_ulp(1.0, DType::BF16), 0x1p-7);
  EXPECT_EQ(dtype_ulp(1.0, DType::F16), 0x1p-10);
  EXPECT_EQ(dtype_ulp(0.0, DType::F16), 0x1p-24);
  EXPECT_EQ(dtype_unit_roundoff(DType::F32), 0x1p-24);
}

// The rounding and the ulp as first written, with libm's ilogb and ldexp: what the bit-level versions must equal.
double round_by_libm(double x, int p, int min_exponent, int max_exponent) {
  if (!std::isfinite(x) || x == 0.0) return x;
  const int exponent = std::max(std::ilogb(x), min_exponent);
  const double spacing = std::ldexp(1.0, exponent - (p - 1));
  const double rounded = std::nearbyint(x / spacing) * spacing;
  const double largest = std::ldexp(2.0 - std::ldexp(1.0, 1 - p), max_exponent);
  return std::fabs(rounded) > largest ? std::copysign(std::numeric_limits<double>::infinity(), x) : rounded;
}

TEST(DType, RoundingAndUlpEqualTheLibmFormulasAcrossTheWholeRange) {
  struct Format {
    DType dtype;
    int p, min_exponent, max_exponent;
  };
  std::mt19937_64 rng(11);
  std::uniform_real_distribution<double> mantissa(1.0, 2.0);
  std::uniform_int_distribution<int> exponent(-1074, 1023);
  for (const Format f : {Format{DType::F32, 24, -126, 127}, Format{DType::F16, 11, -14, 15},
                         Format{DType::BF16, 8, -126, 127}, Format{DType::F64, 53, -1022, 1023}}) {
    for (int i = 0; i < 200000; ++i) {
      // Every binade of double, the subnormal ones included, and ties (a value halfway between neighbours).
      double x = std::ldexp(mantissa(rng), exponent(rng));
      if (i % 3 == 0) x = std::ldexp(1.0 + std::ldexp(2.0 * (i % 97) + 1.0, -f.p), exponent(rng) % (f.max_exponent + 2));
      if (i % 2) x = -x;
      const double expected = f.p >= 53 ? x : round_by_libm(x, f.p, f.min_exponent, f.max_exponent);
      ASSERT_EQ(round_to_dtype(x, f.dtype), expected) << dtype_name(f.dtype) << " " << x;
      const double r = expected;
      const int e = (r == 0.0 || !std::isfinite(r)) ? f.min_exponent : std::max(std::ilogb(r), f.min_exponent);
      ASSERT_EQ(dtype_ulp(x, f.dtype), std::ldexp(1.0, e - (f.p - 1))) << dtype_name(f.dtype) << " " << x;
    }
  }
}

}  // namespace
}  // namespace dplr
