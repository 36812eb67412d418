// The gates of verify/ against the defects they exist for: each test plants one (a bad element, a bad head
// and window, a misrounding kernel, an fp32 tensor 10x off) into a realistic result and sees the
// verdict fail, with the location named; and sees the same result without the defect pass.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include <fmt/format.h>

#include "verify/compare.hpp"
#include "sample_reports.hpp"

namespace dplr {
namespace {

using testing::normal_values;

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

ExactTensor exact_of(std::vector<std::int64_t> shape, const std::vector<double>& values) {
  ExactTensor t;  // one limb: the exact values are these doubles
  t.shape = std::move(shape);
  t.parts = values;
  return t;
}

// A kernel's result: each element off by a relative error of `relative` x N(0, 1), then stored in `dtype`.
Tensor kernel_result(DType dtype, std::vector<std::int64_t> shape, const std::vector<double>& exact, double relative,
                     unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  for (double x : exact) t.values.push_back(round_to_dtype(x * (1.0 + relative * normal(rng)), dtype));
  return t;
}

TensorResult only(const ComparisonResult& result) {
  EXPECT_EQ(result.tensors.size(), 1u);
  return result.tensors.front();
}

// fla's shapes: B1 T256 H2, K = V = 64.
const std::vector<std::int64_t> kTokens = {1, 256, 2, 64};

TEST(Planted, OneBadElementOfAnFp32Gradient) {
  // fp32 inputs; a kernel with rel RMSE ~1e-7 (4 floors); one element of dgk off by 1e-3 of its value.
  const auto values = normal_values(256 * 2 * 64, 1);
  const ExactTensorMap exact{{"dgk", exact_of(kTokens, values)}};
  TensorMap actual{{"dgk", kernel_result(DType::F32, kTokens, values, 1e-7, 2)}};
  const auto policy = TolerancePolicy::preset("default");
  EXPECT_EQ(only(compare(actual, exact, policy)).verdict, Verdict::Pass) << only(compare(actual, exact, policy)).reason;

  // Element (0, 100, 1, 7), flat ((100 * 2) + 1) * 64 + 7, chosen with |e| >= RMS / 2.
  std::size_t bad = (100 * 2 + 1) * 64 + 7;
  while (std::fabs(values[bad]) < 0.5) ++bad;
  actual["dgk"].values[bad] = static_cast<float>(values[bad] * (1.0 + 1e-3));
  const auto r = only(compare(actual, exact, policy));
  EXPECT_EQ(r.verdict, Verdict::Fail);
  EXPECT_LT(r.metrics.rel_rmse, 1e-5) << "the aggregate alone passes: the elementwise gate is what fails it";
  const auto index = unravel_index(static_cast<std::int64_t>(bad), kTokens);
  EXPECT_EQ(r.metrics.max_elem.index, index);
  EXPECT_TRUE(contains(r.reason, fmt::format("[{}, {}, {}, {}]", index[0], index[1], index[2], index[3]))) << r.reason;
}

TEST(Planted, ThreePercentInOneHeadAndWindowOfABf16Gradient) {
  // A bf16 kernel at fla's level (rel RMSE ~1.1 floors); 3% error in head 1, tokens 64..79 of dq.
  const auto values = normal_values(256 * 2 * 64, 3);
  const ExactTensorMap exact{{"dq", exact_of(kTokens, values)}};
  TensorMap actual{{"dq", kernel_result(DType::BF16, kTokens, values, 1.5e-3, 4)}};
  const auto policy = TolerancePolicy::preset("default");
  const auto good = only(compare(actual, exact, policy));
  EXPECT_EQ(good.verdict, Verdict::Pass) << good.reason;

  std::mt19937_64 rng(5);
  std::normal_distribution<double> normal;
  for (std::int64_t t = 64; t < 80; ++t)
    for (std::int64_t x = 0; x < 64; ++x) {
      const std::size_t i = static_cast<std::size_t>((t * 2 + 1) * 64 + x);
      actual["dq"].values[i] = round_to_dtype(values[i] * (1.0 + 0.03 * normal(rng)), DType::BF16);
    }
  const auto r = only(compare(actual, exact, policy));
  EXPECT_EQ(r.verdict, Verdict::Fail) << r.reason;
  ASSERT_TRUE(r.metrics.floor && r.metrics.locality);
  EXPECT_LT(r.metrics.floor->ratio, 6.0) << "the whole tensor passes its floor-ratio limit";
  const auto& worst = r.metrics.locality->worst_block;
  EXPECT_EQ(worst.head, 1);
  EXPECT_EQ(worst.token_begin, 64);
  EXPECT_EQ(worst.token_end, 80);
  EXPECT_GT(worst.local_ratio, 12.0);
  EXPECT_TRUE(contains(r.reason, "head 1, tokens 64..79")) << r.reason;
}

TEST(Planted, OneBadChunkOfAllHeadsOfBf16Output) {
  const auto values = normal_values(256 * 2 * 64, 6);
  const ExactTensorMap exact{{"o", exact_of(kTokens, values)}};
  TensorMap actual{{"o", kernel_result(DType::BF16, kTokens, values, 1e-3, 7)}};
  const auto policy = TolerancePolicy::preset("default");
  EXPECT_EQ(only(compare(actual, exact, policy)).verdict, Verdict::Pass);
  // Chunk 13 (tokens 208..223) computed with 1% error in both heads (a dropped correction term, say).
  std::mt19937_64 rng(8);
  std::normal_distribution<double> normal;
  for (std::size_t i = 208 * 2 * 64; i < 224 * 2 * 64; ++i)
    actual["o"].values[i] = round_to_dtype(values[i] * (1.0 + 0.01 * normal(rng)), DType::BF16);
  const auto r = only(compare(actual, exact, policy));
  EXPECT_EQ(r.verdict, Verdict::Fail) << r.reason;
  EXPECT_LT(r.metrics.floor->ratio, 3.0);
  EXPECT_EQ(r.metrics.locality->worst_block.token_begin, 208);
}

TEST(Planted, Tf32GradeErrorInsideA16BitKernelIsCaughtByMisrounding) {
  // Internal relative error 3e-4 (TF32 products) before the final bf16 rounding: the floor ratio barely
  // moves (~1.016), the misrounded fraction does (~4%).
  const auto values = normal_values(256 * 2 * 64, 9);
  const ExactTensorMap exact{{"o", exact_of(kTokens, values)}};
  const auto strict = TolerancePolicy::preset("strict");
  TensorMap ours{{"o", kernel_result(DType::BF16, kTokens, values, 1e-6, 10)}};
  const auto good = only(compare(ours, exact, strict));
  EXPECT_EQ(good.verdict, Verdict::Pass) << good.reason;
  TensorMap tf32{{"o", kernel_result(DType::BF16, kTokens, values, 3e-4, 10)}};
  const auto r = only(compare(tf32, exact, strict));
  EXPECT_LT(r.metrics.floor->ratio, 1.1);
  EXPECT_GT(*r.metrics.misrounded_fraction, 0.02);
  EXPECT_EQ(r.verdict, Verdict::Fail);
  EXPECT_TRUE(contains(r.reason, "misrounded fraction")) << r.reason;
}

TEST(Planted, Fp32StateOfA16BitRunTenTimesOffFailsTheStorageFloor) {
  // ht [N, H, K, V] stored in fp32 by a bf16 kernel at 3 fp32 floors (~7.5e-8, as ours measure), then
  // 10x worse. Under strict (our kernels: the storage dtype's floor) the 10x fails; under default (the
  // working dtype's floor, for foreign kernels) both are far below the bf16 floor and pass.
  const std::vector<std::int64_t> state = {1, 2, 64, 64};
  const auto values = normal_values(2 * 64 * 64, 11);
  const ExactTensorMap exact{{"ht", exact_of(state, values)}};
  TensorMap q{{"q", Tensor{DType::BF16, {1, 1, 2, 64}, std::vector<double>(128, 0.5)}}};
  auto with_ht = [&](double relative) {
    TensorMap m = q;
    m["ht"] = kernel_result(DType::F32, state, values, relative, 12);
    return m;
  };
  const auto strict = TolerancePolicy::preset("strict"), foreign = TolerancePolicy::preset("default");
  const auto good = only(compare(with_ht(7.5e-8), exact, strict));
  EXPECT_EQ(good.judged_as, DType::F32);
  EXPECT_EQ(good.verdict, Verdict::Pass) << good.reason;
  const auto bad = only(compare(with_ht(7.5e-7), exact, strict));
  EXPECT_EQ(bad.verdict, Verdict::Fail) << bad.reason;
  const auto bad_as_foreign = only(compare(with_ht(7.5e-7), exact, foreign));
  EXPECT_EQ(bad_as_foreign.judged_as, DType::BF16);
  EXPECT_EQ(bad_as_foreign.verdict, Verdict::Pass);
}

TEST(Planted, UlpsNearExactZerosAreMeasuredAtTheTensorsScale) {
  // da of a correct kernel: some exact values are 0 or tiny; one ulp at the tensor's scale is no longer
  // billions of ulps of a subnormal.
  std::vector<double> values = normal_values(1024, 13);
  values[5] = 0.0;
  values[6] = 1e-30;
  Tensor actual = kernel_result(DType::BF16, {1024}, values, 0.0, 14);
  actual.values[5] = 1e-3;  // an absolute error of ~1/4 ulp at the RMS
  actual.values[6] = -1e-3;
  const auto m = compute_metrics(actual.values, values, DType::BF16, {1024});
  EXPECT_LT(m.max_ulp.error, 64.0);  // at most 2^6 x its error in ulps of the RMS
  EXPECT_GT(m.max_ulp.error, 1.0);
  EXPECT_LT(m.max_elem.error, 1.0);  // 1e-3 < u (|0| + RMS) with u = 2^-8
}

}  // namespace
}  // namespace dplr
