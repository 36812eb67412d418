// verify/metrics: every statistic on cases small enough to compute by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/error.hpp"
#include "verify/metrics.hpp"
#include "sample_reports.hpp"

namespace dplr {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

using testing::normal_values;

std::vector<double> rounded(const std::vector<double>& values, DType dtype) {
  std::vector<double> out;
  for (double x : values) out.push_back(round_to_dtype(x, dtype));
  return out;
}

TEST(Metrics, RelativeRmseIsTheNormRatio) {
  // ||(0, 0.5)|| / ||(3, 4)|| = 0.5 / 5.
  const std::vector<double> exact = {3.0, 4.0}, actual = {3.0, 4.5};
  const auto m = compute_metrics(actual, exact, DType::F64, {2});
  EXPECT_DOUBLE_EQ(m.rel_rmse, 0.1);
  EXPECT_DOUBLE_EQ(m.expected_rms, std::sqrt(12.5));
  EXPECT_EQ(m.max_abs.error, 0.5);
  EXPECT_EQ(m.max_abs.index, (std::vector<std::int64_t>{1}));
  EXPECT_EQ(m.max_abs.actual, 4.5);
  EXPECT_EQ(m.max_abs.expected, 4.0);
  EXPECT_EQ(m.compared, 2);
}

TEST(Metrics, MaxAbsErrorIndexIsTheMultiIndex) {
  // Shape [2, 3, 4]: flat 17 = 1*12 + 1*4 + 1.
  std::vector<double> exact(24, 1.0), actual(24, 1.0);
  actual[5] = 1.25;
  actual[17] = 0.5;
  const auto m = compute_metrics(actual, exact, DType::F32, {2, 3, 4});
  EXPECT_EQ(m.max_abs.error, 0.5);
  EXPECT_EQ(m.max_abs.index, (std::vector<std::int64_t>{1, 1, 1}));
  EXPECT_EQ(m.max_rel.index, (std::vector<std::int64_t>{1, 1, 1}));
  EXPECT_EQ(unravel_index(23, {2, 3, 4}), (std::vector<std::int64_t>{1, 2, 3}));
  EXPECT_EQ(unravel_index(0, {}), (std::vector<std::int64_t>{}));
}

TEST(Metrics, UlpErrorsInBf16) {
  // bf16 has 8 significand bits: spacing 2^-7 in [1, 2), 2^-6 in [2, 4), 2^-2 in [32, 64).
  const std::vector<double> exact = {1.0, 3.0, 40.0, -1.5};
  const std::vector<double> actual = {1.0 + 0x1p-7, 3.0 - 2 * 0x1p-6, 40.0 + 5 * 0x1p-2, -1.5};
  const auto m = compute_metrics(actual, exact, DType::BF16, {4});
  EXPECT_EQ(m.max_ulp.error, 5.0);
  EXPECT_EQ(m.max_ulp.index, (std::vector<std::int64_t>{2}));
  EXPECT_EQ(m.p99_ulp, 5.0);  // nearest rank of 4 values: the 4th
  EXPECT_EQ(m.histogram.exact_equal, 1);
}

TEST(Metrics, UlpErrorsInFp16) {
  // fp16 has 11 significand bits: spacing 0.5 in [512, 1024), 2^-10 in [1, 2), 2^-24 for subnormals.
  // Ulps are counted at max(|e|, relative floor): with RMS ~577 the floor is ~9.0, whose spacing is 2^-7,
  // so the tiny third element's error of 7 subnormal spacings is 7 * 2^-24 / 2^-7 ulps, not 7.
  const std::vector<double> exact = {1000.0, 1.0, 0x1p-20};
  const std::vector<double> actual = {1001.5, 1.0 - 0x1p-11, 0x1p-20 + 7 * 0x1p-24};
  const auto m = compute_metrics(actual, exact, DType::F16, {3});
  EXPECT_EQ(m.max_ulp.error, 3.0);
  EXPECT_EQ(m.max_ulp.index, (std::vector<std::int64_t>{0}));
  EXPECT_EQ(compute_metrics(std::vector<double>{actual[2]}, std::vector<double>{exact[2]}, DType::F16, {1}).max_ulp.error,
            7.0);  // alone, the element is its own scale: the subnormal spacing is fixed
  // 1 - 2^-11 is half an fp16 spacing below 1, measured with the spacing at 1.
  EXPECT_EQ(compute_metrics(std::vector<double>{actual[1]}, std::vector<double>{1.0}, DType::F16, {1}).max_ulp.error,
            0.5);
  EXPECT_EQ(compute_metrics(std::vector<double>{actual[0]}, std::vector<double>{1000.0}, DType::F16, {1}).max_ulp.error,
            3.0);
}

TEST(Metrics, P99IsTheNearestRank) {
  std::vector<double> exact(200, 1.0), actual(200);
  for (int i = 0; i < 200; ++i) actual[i] = 1.0 + i * 0x1p-52;  // i ulps of F64
  const auto m = compute_metrics(actual, exact, DType::F64, {200});
  EXPECT_EQ(m.max_ulp.error, 199.0);
  EXPECT_EQ(m.p99_ulp, 197.0);  // rank ceil(0.99 * 200) = 198 -> the value 197
}

TEST(Metrics, FloorRatioIsExactlyOneForTheCorrectlyRoundedAnswer) {
  const auto exact = normal_values(4096, 1);
  for (DType dtype : {DType::BF16, DType::F16, DType::F32}) {
    const auto m = compute_metrics(rounded(exact, dtype), exact, dtype, {64, 64});
    ASSERT_TRUE(m.floor.has_value());
    EXPECT_EQ(m.floor->ratio, 1.0) << dtype_name(dtype);
    EXPECT_FALSE(m.floor->substituted);
    EXPECT_EQ(m.floor->dtype, dtype);
    // The measured floor is close to the nominal 0.4247 u (fla's recordings: bf16 1.66e-3).
    EXPECT_NEAR(m.floor->measured_rel_rmse / nominal_rounding_floor(dtype), 1.0, 0.08) << dtype_name(dtype);
    EXPECT_LE(m.max_ulp.error, 0.5);  // correctly rounded: at most half a spacing
  }
  EXPECT_NEAR(nominal_rounding_floor(DType::BF16), 1.659e-3, 1e-6);
  EXPECT_NEAR(nominal_rounding_floor(DType::F16), 2.074e-4, 1e-7);
}

TEST(Metrics, FloorRatioOfTwiceTheRoundingErrorIsTwo) {
  const auto exact = normal_values(1000, 2);
  auto actual = rounded(exact, DType::BF16);
  for (std::size_t i = 0; i < exact.size(); ++i) actual[i] = exact[i] + 2.0 * (actual[i] - exact[i]);
  const auto m = compute_metrics(actual, exact, DType::F64, {1000}, {.floor_dtype = DType::BF16});
  EXPECT_NEAR(m.floor->ratio, 2.0, 1e-12);
  EXPECT_EQ(m.floor->dtype, DType::BF16);
}

TEST(Metrics, FloorIsSubstitutedWhereRoundingIsExact) {
  // F64: the expected values are doubles, so rounding is exact and the measured floor is 0.
  const auto exact = normal_values(100, 3);
  auto m = compute_metrics(exact, exact, DType::F64, {100});
  EXPECT_EQ(m.floor->measured_rel_rmse, 0.0);
  EXPECT_TRUE(m.floor->substituted);
  EXPECT_EQ(m.floor->used_rel_rmse, kMinimumFloorFraction * nominal_rounding_floor(DType::F64));
  EXPECT_EQ(m.floor->ratio, 0.0);

  // Small integers are exact in bf16 too; one element two spacings off gives a finite, readable ratio.
  std::vector<double> integers = {1, 2, 3, 4, 5, 6, 7, 8};
  auto off = integers;
  off[2] = 3.0 + 2 * 0x1p-6;
  m = compute_metrics(off, integers, DType::BF16, {8});
  EXPECT_TRUE(m.floor->substituted);
  EXPECT_TRUE(std::isfinite(m.floor->ratio));
  EXPECT_NEAR(m.floor->ratio, m.rel_rmse / (0.5 * nominal_rounding_floor(DType::BF16)), 1e-15);
}

TEST(Metrics, AllZeroExpected) {
  const std::vector<double> zeros(6, 0.0);
  auto m = compute_metrics(zeros, zeros, DType::BF16, {2, 3});
  EXPECT_EQ(m.rel_rmse, 0.0);
  EXPECT_EQ(m.floor->ratio, 0.0);
  EXPECT_EQ(m.histogram.exact_equal, 6);

  std::vector<double> noisy = zeros;
  noisy[4] = 1e-30;
  m = compute_metrics(noisy, zeros, DType::BF16, {2, 3});
  EXPECT_EQ(m.rel_rmse, kInf);
  EXPECT_EQ(m.floor->ratio, kInf);
  EXPECT_EQ(m.max_abs.error, 1e-30);
  EXPECT_EQ(m.max_abs.index, (std::vector<std::int64_t>{1, 1}));
  EXPECT_EQ(m.max_rel.error, kInf);
  EXPECT_EQ(m.histogram.counts.back(), 1);  // rel >= 1 bin
}

TEST(Metrics, NonFiniteValuesAreCountedAndExcluded) {
  const std::vector<double> exact = {1.0, 2.0, 3.0, kInf, kInf, 4.0, kNaN};
  const std::vector<double> actual = {kNaN, 2.0, kNaN, kInf, -kInf, kInf, 5.0};
  const auto m = compute_metrics(actual, exact, DType::F32, {7});
  EXPECT_EQ(m.nonfinite.actual_nan, 2);
  EXPECT_EQ(m.nonfinite.actual_inf, 3);
  EXPECT_EQ(m.nonfinite.expected_nan, 1);
  EXPECT_EQ(m.nonfinite.expected_inf, 2);
  EXPECT_EQ(m.nonfinite.inf_mismatch, 2);  // inf vs -inf, and inf where 4 was expected; inf == inf is fine
  ASSERT_TRUE(m.nonfinite.first_actual_nan_index.has_value());
  EXPECT_EQ(*m.nonfinite.first_actual_nan_index, (std::vector<std::int64_t>{0}));
  EXPECT_EQ(m.compared, 1);  // only element 1 is finite on both sides
  EXPECT_EQ(m.rel_rmse, 0.0);
}

TEST(Metrics, NanIndexIsMultiDimensional) {
  std::vector<double> exact(12, 1.0), actual(12, 1.0);
  actual[7] = kNaN;
  actual[9] = kNaN;
  const auto m = compute_metrics(actual, exact, DType::BF16, {3, 4});
  EXPECT_EQ(*m.nonfinite.first_actual_nan_index, (std::vector<std::int64_t>{1, 3}));
}

TEST(Metrics, MaxRelativeErrorUsesTheFloorNearZero) {
  // RMS of (1, 1, 1, 0) is sqrt(3/4); the zero element is judged against kRelativeFloor * RMS.
  const std::vector<double> exact = {1.0, 1.0, 1.0, 0.0};
  const std::vector<double> actual = {1.0, 1.0 + 0x1p-10, 1.0, 0.01};
  const auto m = compute_metrics(actual, exact, DType::F64, {4});
  const double floor = kRelativeFloor * std::sqrt(0.75);
  EXPECT_DOUBLE_EQ(m.relative_floor, floor);
  EXPECT_DOUBLE_EQ(m.max_rel.error, 0.01 / floor);
  EXPECT_EQ(m.max_rel.index, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(m.max_abs.index, (std::vector<std::int64_t>{3}));
}

TEST(Metrics, HistogramBinsByFloorOfLog2) {
  // Relative errors 2^-8, 0.75, 3, 2^-70 and 0 (all |e| = 1, far above the relative floor).
  const std::vector<double> exact = {1.0, 1.0, 1.0, 1.0, 1.0};
  const std::vector<double> actual = {1.0 + 0x1p-8, 1.75, 4.0, 1.0 + 0x1p-52, 1.0};
  const auto m = compute_metrics(actual, exact, DType::F64, {5});
  auto bin = [&](int log2) { return m.histogram.counts[log2 - kHistogramMinLog2]; };
  EXPECT_EQ(bin(-8), 1);
  EXPECT_EQ(bin(-1), 1);
  EXPECT_EQ(bin(0), 1);    // 3 >= 1: the last bin
  EXPECT_EQ(bin(-52), 1);
  EXPECT_EQ(m.histogram.exact_equal, 1);
  std::int64_t total = m.histogram.exact_equal;
  for (auto c : m.histogram.counts) total += c;
  EXPECT_EQ(total, m.compared);
  EXPECT_EQ(static_cast<int>(m.histogram.counts.size()), kHistogramBins);

}

TEST(Metrics, HistogramClampsBelow) {
  std::vector<double> exact = {0x1p10}, actual = {0x1p10 * (1.0 + 0x1p-52)};
  auto m = compute_metrics(actual, exact, DType::F64, {1});
  EXPECT_EQ(m.histogram.counts[-52 - kHistogramMinLog2], 1);
  // Relative error below 2^-60 only arises against a large floor: an element far below the RMS.
  exact = {1.0, 1e30};
  actual = {1.0 + 0x1p-52, 1e30};
  m = compute_metrics(actual, exact, DType::F64, {2});
  EXPECT_EQ(m.histogram.counts.front(), 1);  // 2^-52 / (1e30 * 2^-6 / sqrt 2) ~ 2^-142
}

TEST(Metrics, DiffFloorsAreMeasuredOrNominal) {
  const auto b = normal_values(64, 4);
  const auto a = rounded(b, DType::BF16);
  // B more precise than the judged dtype: the floor is measured from B, and A = round(B) sits at 1.0.
  auto m = compute_diff_metrics(a, b, DType::BF16, {64}, {.floor_dtype = DType::BF16, .expected_is_exact = false});
  ASSERT_TRUE(m.floor.has_value());
  EXPECT_EQ(m.floor->ratio, 1.0);
  EXPECT_FALSE(m.floor->nominal);
  EXPECT_FALSE(m.misrounded_fraction.has_value());  // B is not exact: no misrounding to count
  // Nominal: the floor is 0.4247 u, nothing measured.
  m = compute_diff_metrics(a, b, DType::BF16, {64},
                           {.floor_dtype = DType::BF16, .floor_source = FloorSource::Nominal, .expected_is_exact = false});
  ASSERT_TRUE(m.floor.has_value());
  EXPECT_TRUE(m.floor->nominal);
  EXPECT_EQ(m.floor->used_rel_rmse, nominal_rounding_floor(DType::BF16));
  EXPECT_NEAR(m.floor->ratio, m.rel_rmse / nominal_rounding_floor(DType::BF16), 1e-15);
}

TEST(Metrics, LengthsMustMatchTheShape) {
  const std::vector<double> three = {1, 2, 3}, four = {1, 2, 3, 4};
  EXPECT_THROW(compute_metrics(three, four, DType::F32, {4}), InputError);
  EXPECT_THROW(compute_metrics(four, four, DType::F32, {2, 3}), InputError);
  try {
    compute_metrics(three, three, DType::F32, {2, 2});
    FAIL();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("[2, 2]"), std::string::npos) << e.what();
  }
}

TEST(Metrics, EmptyTensor) {
  const std::vector<double> none;
  const auto m = compute_metrics(none, none, DType::BF16, {0, 4});
  EXPECT_EQ(m.elements, 0);
  EXPECT_EQ(m.compared, 0);
  EXPECT_EQ(m.rel_rmse, 0.0);
  EXPECT_TRUE(m.max_abs.index.empty());
}

TEST(Metrics, LowerPrecision) {
  EXPECT_EQ(lower_precision(DType::F32, DType::BF16), DType::BF16);
  EXPECT_EQ(lower_precision(DType::BF16, DType::F16), DType::BF16);
  EXPECT_EQ(lower_precision(DType::F16, DType::F64), DType::F16);
  EXPECT_EQ(lower_precision(DType::I64, DType::BF16), DType::I64);
  EXPECT_EQ(lower_precision(DType::F32, DType::I64), DType::F32);
}

TEST(Metrics, HugeValuesDoNotOverflowTheNorms) {
  const std::vector<double> exact = {1e300, -1e300, 1e300}, actual = {1e300 * (1 + 1e-3), -1e300, 1e300};
  const auto m = compute_metrics(actual, exact, DType::F64, {3});
  EXPECT_NEAR(m.rel_rmse, 1e-3 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(m.expected_rms, 1e300, 1e288);
}

TEST(Metrics, TinyValuesDoNotUnderflowTheNorms) {
  // Squares of 1e-300 underflow to zero in plain double; the norms keep them, alone and beside larger ones.
  const std::vector<double> exact = {1e-300, -1e-300, 1e-300}, actual = {1e-300 * (1 + 1e-3), -1e-300, 1e-300};
  const auto m = compute_metrics(actual, exact, DType::F64, {3});
  EXPECT_NEAR(m.rel_rmse, 1e-3 / std::sqrt(3.0), 1e-12);
  EXPECT_NEAR(m.expected_rms, 1e-300, 1e-312);
  // Mixed ranges: 3e-160 (square below 2^-1022), 1 and 4e200 (square above 2^1023) in one tensor.
  const std::vector<double> mixed = {3e-160, 1.0, 4e200}, off = {3e-160, 1.0, 4e200 * (1 + 1e-6)};
  const auto w = compute_metrics(off, mixed, DType::F64, {3});
  EXPECT_NEAR(w.rel_rmse, 1e-6, 1e-15);
  EXPECT_NEAR(w.expected_rms, 4e200 / std::sqrt(3.0), 1e188);
}

}  // namespace
}  // namespace dplr

namespace dplr {
namespace {

// Locality: blocks follow sequences and heads; one planted block is found where it is.
std::vector<double> planted(const std::vector<double>& exact, const std::vector<std::int64_t>& flat_indices, double by) {
  std::vector<double> actual = exact;
  for (auto i : flat_indices) actual[static_cast<std::size_t>(i)] *= 1.0 + by;
  return actual;
}

TEST(Locality, TokenBlocksStartAtEachPackedSequence) {
  // [1, T=40, H=2, X=3], sequences [0, 5), [5, 5) (empty), [5, 40), blocks of 16 tokens.
  const std::vector<std::int64_t> shape = {1, 40, 2, 3};
  const auto exact = testing::normal_values(240, 21);
  // Token 22 of head 1 sits in the third sequence at local position 17: its second block, tokens 21..36.
  std::vector<std::int64_t> bad;
  for (std::int64_t x = 0; x < 3; ++x) bad.push_back((22 * 2 + 1) * 3 + x);
  const auto actual = planted(exact, bad, 1e-3);
  TensorLayout layout;
  layout.cu_seqlens = {0, 5, 5, 40};
  const auto m = compute_metrics(actual, exact, DType::F64, shape, {.layout = layout});
  ASSERT_TRUE(m.locality.has_value());
  const auto& l = *m.locality;
  EXPECT_EQ(l.groups_total, 6);  // 3 sequences x 2 heads
  const auto& worst = l.worst_block;
  EXPECT_EQ(worst.sequence, 2);
  EXPECT_EQ(worst.head, 1);
  EXPECT_EQ(worst.token_begin, 21);
  EXPECT_EQ(worst.token_end, 37);
  EXPECT_EQ(worst.elements, 16 * 3);
  // The grid: per group its blocks (1, 0 and 3 blocks for the three sequences).
  ASSERT_EQ(l.grid.size(), 6u);
  EXPECT_EQ(l.grid[0].size(), 1u);
  EXPECT_EQ(l.grid[2].size(), 0u);
  EXPECT_EQ(l.grid[5].size(), 3u);
  EXPECT_EQ(l.grid[5][1], worst.local_ratio);
  EXPECT_EQ(l.grid[4][1], 0.0);  // head 0 of the same block is exact
  // Bad packings are input errors.
  layout.cu_seqlens = {0, 5, 39};
  EXPECT_THROW(compute_metrics(actual, exact, DType::F64, shape, {.layout = layout}), InputError);
}

TEST(Locality, StatesAreOneBlockPerSequenceAndHead) {
  const std::vector<std::int64_t> shape = {3, 2, 4, 4};  // [N, H, K, V]
  const auto exact = testing::normal_values(96, 22);
  const auto actual = planted(exact, {(2 * 2 + 0) * 16 + 5}, 1e-2);  // sequence 2, head 0
  TensorLayout layout;
  layout.kind = TensorLayout::Kind::States;
  const auto m = compute_metrics(actual, exact, DType::F64, shape, {.layout = layout});
  EXPECT_EQ(m.locality->groups_total, 6);
  EXPECT_EQ(m.locality->worst_block.sequence, 2);
  EXPECT_EQ(m.locality->worst_block.head, 0);
  EXPECT_EQ(m.locality->worst_block.elements, 16);
  EXPECT_EQ(m.locality->block_tokens, 0);
}

TEST(Locality, LocalRatioIsTheBlocksFloorRatioAtItsScale) {
  // Two heads of very different scales, both correctly rounded to bf16 except head 1, twice the rounding
  // error: each block is judged at its own scale (not diluted by head 0's large values).
  const std::vector<std::int64_t> shape = {1, 16, 2, 64};
  auto exact = testing::normal_values(16 * 2 * 64, 23);
  for (std::size_t i = 0; i < exact.size(); ++i)
    if ((i / 64) % 2 == 0) exact[i] *= 8.0;  // head 0 is 8x larger, within the 16x scale floor
  std::vector<double> actual(exact.size());
  for (std::size_t i = 0; i < exact.size(); ++i) {
    const double r = round_to_dtype(exact[i], DType::BF16);
    actual[i] = (i / 64) % 2 == 1 ? exact[i] + 2.0 * (r - exact[i]) : r;
  }
  const auto m = compute_metrics(actual, exact, DType::BF16, shape, {.layout = TensorLayout{}});
  EXPECT_EQ(m.locality->worst_block.head, 1);
  EXPECT_NEAR(m.locality->worst_block.local_ratio, 2.0, 0.25);
  EXPECT_LT(m.floor->ratio, 1.2);  // head 1 is 1/65 of the tensor's squared norm
}

TEST(Metrics, ElementwiseErrorIsInUnitsOfTheJudgedDtype) {
  const std::vector<double> exact = {1.0, -1.0, 0.0, 2.0};  // RMS = sqrt(6 / 4)
  std::vector<double> actual = exact;
  actual[2] = 0x1p-8;  // 1 u of bf16 at zero: measured against u x RMS
  const auto m = compute_metrics(actual, exact, DType::BF16, {4});
  EXPECT_EQ(m.elem_unit, 0x1p-8);
  EXPECT_NEAR(m.max_elem.error, 1.0 / std::sqrt(1.5), 1e-12);
  EXPECT_EQ(m.max_elem.index, (std::vector<std::int64_t>{2}));
  // Judged at fp32 (a floor dtype other than the storage one), the same error is 2^16 times larger.
  const auto f = compute_metrics(actual, exact, DType::BF16, {4}, {.floor_dtype = DType::F32});
  EXPECT_NEAR(f.max_elem.error, 65536.0 / std::sqrt(1.5), 1e-6);
  // Misrounding: 0x1p-8 is not round(0) in bf16: one of four elements.
  EXPECT_EQ(m.misrounded_fraction, 0.25);
}

TEST(Metrics, ConditioningFloorReplacesASmallerRoundingFloorOnly) {
  const auto exact = normal_values(4096, 3);
  std::vector<double> actual = rounded(exact, DType::F32);
  for (double& x : actual) x *= 1.0 + 40 * 0x1p-24;  // ~40 u off: ~100 fp32 rounding floors
  const auto plain = compute_metrics(actual, exact, DType::F32, {4096});
  ASSERT_TRUE(plain.floor);
  EXPECT_FALSE(plain.floor->conditioned);
  EXPECT_FALSE(plain.floor->conditioning_rel_rmse);
  EXPECT_GT(plain.floor->ratio, 50.0);
  EXPECT_EQ(plain.floor->rounding_rel_rmse, plain.floor->used_rel_rmse);

  // A conditioning floor 64x the rounding floor judges instead: the ratio drops by the same factor.
  const double conditioning = 64 * plain.floor->used_rel_rmse;
  const auto conditioned =
      compute_metrics(actual, exact, DType::F32, {4096}, {.conditioning_rel_rmse = conditioning});
  ASSERT_TRUE(conditioned.floor);
  EXPECT_TRUE(conditioned.floor->conditioned);
  EXPECT_EQ(conditioned.floor->used_rel_rmse, conditioning);
  EXPECT_EQ(conditioned.floor->rounding_rel_rmse, plain.floor->used_rel_rmse);
  EXPECT_NEAR(conditioned.floor->ratio, plain.floor->ratio / 64, 1e-12 * plain.floor->ratio);

  // One below the rounding floor changes nothing but is reported.
  const auto small = compute_metrics(actual, exact, DType::F32, {4096},
                                     {.conditioning_rel_rmse = plain.floor->used_rel_rmse / 4});
  EXPECT_FALSE(small.floor->conditioned);
  EXPECT_EQ(small.floor->ratio, plain.floor->ratio);
  EXPECT_EQ(*small.floor->conditioning_rel_rmse, plain.floor->used_rel_rmse / 4);
}

// Values below the dtype's range round to 0 (or a subnormal): correctly rounded, so elem error <= 1 even where the
// whole tensor lies there (its RMS too), as exp(gl) of a strongly decaying chunk does in fp32; a wrong element
// still fails.
TEST(Metrics, ElementwiseErrorAllowsUnderflowToZero) {
  const std::vector<double> exact = {1e-274, 3e-200, 2e-46, 1.5e-45};
  std::vector<double> actual(exact.size());
  for (std::size_t i = 0; i < exact.size(); ++i) actual[i] = round_to_dtype(exact[i], DType::F32);
  EXPECT_EQ(actual[0], 0.0);
  const auto m = compute_metrics(actual, exact, DType::F32, {4});
  EXPECT_LE(m.max_elem.error, 1.0);
  actual[3] = 0x1p-147;  // four subnormal spacings, where the correct answer is one
  EXPECT_GT(compute_metrics(actual, exact, DType::F32, {4}).max_elem.error, 4.0);
}

// fp16 overflows past 65520: an infinity there is the correct rounding, one below it is a mismatch.
TEST(Metrics, CorrectlyRoundedOverflowIsNoInfinityMismatch) {
  const double inf = std::numeric_limits<double>::infinity();
  const std::vector<double> exact = {70000.0, -66000.0, 1.0, 2.0};
  const std::vector<double> overflowed = {inf, -inf, 1.0, 2.0}, one_too_many = {inf, -inf, inf, 2.0};
  const auto ok = compute_metrics(overflowed, exact, DType::F16, {4});
  EXPECT_EQ(ok.nonfinite.inf_mismatch, 0);
  const auto bad = compute_metrics(one_too_many, exact, DType::F16, {4});  // 1.0 is no overflow
  EXPECT_EQ(bad.nonfinite.inf_mismatch, 1);
  const std::vector<double> below_actual = {inf, 1.0, 1.0, 2.0}, below_exact = {60000.0, 1.0, 1.0, 2.0};
  const auto below = compute_metrics(below_actual, below_exact, DType::F16, {4});
  EXPECT_EQ(below.nonfinite.inf_mismatch, 1);  // 60000 is a finite fp16 value
}

// misrounded_fraction_of: of the finite exact elements, those whose computed value stores to another 16-bit value.
TEST(Metrics, MisroundedFractionOfAComputedTensor) {
  const std::vector<double> exact{1.0, 2.0, 3.0, std::numeric_limits<double>::infinity()};
  const std::vector<double> computed{1.0 + 0x1p-10, 2.0 + 0x1p-6, 3.0, 0.0};  // bf16: the second misrounds
  EXPECT_DOUBLE_EQ(*misrounded_fraction_of(computed, exact, DType::BF16), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(*misrounded_fraction_of(computed, exact, DType::F16), 2.0 / 3.0);  // f16 u = 2^-11: also the first
  EXPECT_FALSE(misrounded_fraction_of(std::vector<double>{0.0}, std::vector<double>{NAN}, DType::F16).has_value());
}

}  // namespace
}  // namespace dplr
