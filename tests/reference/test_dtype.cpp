// Exact widening and correctly rounded narrowing between double and the 16-bit float dtypes.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

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

}  // namespace
}  // namespace dplr
