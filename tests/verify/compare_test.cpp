// verify/compare: which tensors are compared, in which order, at which dtype, and the verdicts.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/error.hpp"
#include "verify/compare.hpp"
#include "sample_reports.hpp"

namespace dplr {
namespace {

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

using testing::normal_values;

ExactTensor exact_tensor(std::vector<std::int64_t> shape, const std::vector<double>& values, int limbs = 1) {
  ExactTensor t;
  t.shape = std::move(shape);
  t.limbs = limbs;
  t.parts.assign(values.size() * limbs, 0.0);
  for (std::size_t i = 0; i < values.size(); ++i) {
    t.parts[i * limbs] = values[i];
    // A tail below half an ulp of the head, as an expansion has: it must not change the rounded value.
    for (int l = 1; l < limbs; ++l) t.parts[i * limbs + l] = values[i] * 0x1p-60 / l;
  }
  return t;
}

// The exact values rounded once to `dtype` (a perfect kernel's output), optionally with errors scaled up.
Tensor stored(DType dtype, std::vector<std::int64_t> shape, const std::vector<double>& exact, double error_scale = 1.0) {
  Tensor t;
  t.dtype = dtype;
  t.shape = std::move(shape);
  for (double x : exact) {
    const double r = round_to_dtype(x, dtype);
    t.values.push_back(x + error_scale * (r - x));
  }
  return t;
}

struct Case {
  TensorMap actual;
  ExactTensorMap exact;
};

// A bf16 run: q in bf16, o in bf16, ht stored in fp32 with bf16-sized errors (as fla does).
Case bf16_case(double o_error_scale, double ht_error_scale) {
  Case c;
  const auto o = normal_values(2 * 8 * 4, 1), ht = normal_values(2 * 4 * 4, 2), dq = normal_values(2 * 8 * 4, 3);
  c.exact["o"] = exact_tensor({1, 8, 2, 4}, o, 2);
  c.exact["ht"] = exact_tensor({1, 2, 4, 4}, ht);
  c.exact["dq"] = exact_tensor({1, 8, 2, 4}, dq);
  c.actual["q"] = stored(DType::BF16, {1, 8, 2, 4}, normal_values(64, 4));
  c.actual["o"] = stored(DType::BF16, {1, 8, 2, 4}, o, o_error_scale);
  Tensor ht_actual = stored(DType::BF16, {1, 2, 4, 4}, ht, ht_error_scale);
  ht_actual.dtype = DType::F32;  // values on the bf16 grid, stored in fp32
  c.actual["ht"] = ht_actual;
  return c;
}

TEST(Compare, SharedNamesInContractOrderJudgedAtTheWorkingDtype) {
  const auto c = bf16_case(1.0, 1.0);
  const auto result = compare(c.actual, c.exact, TolerancePolicy::preset("default"));
  ASSERT_EQ(result.tensors.size(), 2u);
  EXPECT_EQ(result.tensors[0].name, "o");
  EXPECT_EQ(result.tensors[1].name, "ht");
  EXPECT_EQ(result.only_in_actual, (std::vector<std::string>{"q"}));
  EXPECT_EQ(result.only_in_expected, (std::vector<std::string>{"dq"}));
  const auto& ht = result.tensors[1];
  EXPECT_EQ(ht.dtype, DType::F32);
  EXPECT_EQ(ht.judged_as, DType::BF16);  // fp32 storage, bf16 working precision
  EXPECT_EQ(ht.metrics.floor->dtype, DType::BF16);
  EXPECT_EQ(ht.metrics.floor->ratio, 1.0);
  EXPECT_EQ(ht.metrics.dtype, DType::F32);  // ulps of the storage dtype
  EXPECT_EQ(ht.tolerance.rule, "preset default: BF16:ht");
  EXPECT_EQ(result.tensors[0].metrics.floor->ratio, 1.0);  // the two-limb expansion's head was used
  EXPECT_EQ(result.verdict, Verdict::Pass);
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Pass);
}

TEST(Compare, StrictJudgesAtTheStorageDtype) {
  // Our kernels claim their fp32 ht: the same bf16-sized ht errors are ~4e4 fp32 floors and fail.
  const auto c = bf16_case(1.0, 1.0);
  const auto result = compare(c.actual, c.exact, TolerancePolicy::preset("strict"));
  const auto& ht = result.tensors[1];
  EXPECT_EQ(ht.judged_as, DType::F32);
  EXPECT_EQ(ht.metrics.floor->dtype, DType::F32);
  EXPECT_EQ(ht.tolerance.rule, "preset strict: F32:ht");
  EXPECT_EQ(ht.verdict, Verdict::Fail);
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Pass);  // bf16 o, correctly rounded
}

TEST(Compare, ExplicitWorkingDtype) {
  const auto c = bf16_case(1.0, 1.0);
  const auto result = compare(c.actual, c.exact, TolerancePolicy::preset("default"), {.working_dtype = DType::F32});
  EXPECT_EQ(result.tensors[1].judged_as, DType::F32);
  EXPECT_EQ(result.tensors[1].verdict, Verdict::Fail);  // bf16-sized errors against fp32's 1e-5
  EXPECT_TRUE(contains(result.tensors[1].reason, "rel RMSE")) << result.tensors[1].reason;
}

TEST(Compare, FailingTensorFailsTheRun) {
  const auto c = bf16_case(2.0, 1.0);  // o has twice the rounding error: ratio 2 > 1.3
  auto policy = TolerancePolicy::preset("default");
  policy.add_overrides("o=1.3");
  const auto result = compare(c.actual, c.exact, policy);
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Fail);
  EXPECT_NEAR(result.tensors[0].metrics.floor->ratio, 2.0, 1e-9);
  EXPECT_TRUE(contains(result.tensors[0].reason, "floor ratio 2 > 1.3")) << result.tensors[0].reason;
  EXPECT_EQ(result.tensors[1].verdict, Verdict::Pass);
  EXPECT_EQ(result.verdict, Verdict::Fail);
  // The default preset (3.0x for o) lets it through.
  EXPECT_EQ(compare(c.actual, c.exact, TolerancePolicy::preset("default")).verdict, Verdict::Pass);
}

TEST(Compare, NanMakesTheRunAnError) {
  auto c = bf16_case(1.0, 1.0);
  c.actual["ht"].values[5] = std::numeric_limits<double>::quiet_NaN();
  auto bad_o = bf16_case(3.0, 1.0).actual["o"];
  c.actual["o"] = bad_o;
  const auto result = compare(c.actual, c.exact, TolerancePolicy::preset("strict"));
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Fail);
  EXPECT_EQ(result.tensors[1].verdict, Verdict::Error);
  EXPECT_TRUE(contains(result.tensors[1].reason, "[0, 0, 1, 1]")) << result.tensors[1].reason;
  EXPECT_EQ(result.verdict, Verdict::Error);
  // NaN is an error under every policy.
  EXPECT_EQ(compare(c.actual, c.exact, TolerancePolicy::preset("report-only")).verdict, Verdict::Error);
}

TEST(Compare, ShapeMismatchNamesTensorAndShapes) {
  auto c = bf16_case(1.0, 1.0);
  c.exact["ht"].shape = {1, 2, 2, 8};
  try {
    compare(c.actual, c.exact, TolerancePolicy::preset("default"));
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    const std::string message = e.what();
    EXPECT_TRUE(contains(message, "'ht'")) << message;
    EXPECT_TRUE(contains(message, "[1, 2, 4, 4]")) << message;
    EXPECT_TRUE(contains(message, "[1, 2, 2, 8]")) << message;
  }
}

TEST(Compare, InconsistentTensorsAreInputErrors) {
  auto c = bf16_case(1.0, 1.0);
  c.actual["o"].values.pop_back();
  EXPECT_THROW(compare(c.actual, c.exact, TolerancePolicy::preset("default")), InputError);
  c = bf16_case(1.0, 1.0);
  c.exact["o"].parts.pop_back();
  EXPECT_THROW(compare(c.actual, c.exact, TolerancePolicy::preset("default")), InputError);
}

TEST(Compare, NothingSharedIsAnInputError) {
  TensorMap actual;
  actual["q"] = stored(DType::BF16, {2}, {1.0, 2.0});
  ExactTensorMap exact;
  exact["o"] = exact_tensor({2}, {1.0, 2.0});
  try {
    compare(actual, exact, TolerancePolicy::preset("default"));
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_TRUE(contains(e.what(), "[q]") && contains(e.what(), "[o]")) << e.what();
  }
}

TEST(Compare, ContractOrder) {
  EXPECT_EQ(contract_order({"zeta", "dgk", "o", "A_qk", "dq", "ht", "dh0", "dk", "da", "db", "dv"}),
            (std::vector<std::string>{"o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0", "A_qk", "zeta"}));
}

TEST(Compare, WorkingDtype) {
  TensorMap tensors;
  tensors["gk"] = stored(DType::F32, {1}, {-1.0});
  tensors["h0"] = stored(DType::F32, {1}, {1.0});
  EXPECT_EQ(working_dtype_of(tensors), DType::F32);  // no main input: all floats
  tensors["q"] = stored(DType::F16, {1}, {1.0});
  tensors["k"] = stored(DType::BF16, {1}, {1.0});
  tensors["dgk"] = stored(DType::F64, {1}, {1.0});
  EXPECT_EQ(working_dtype_of(tensors), DType::BF16);  // the main inputs decide; gk in fp32 does not
  tensors.clear();
  tensors["cu_seqlens"] = Tensor{DType::I64, {2}, {0, 4}};
  EXPECT_EQ(working_dtype_of(tensors), std::nullopt);
}

TEST(Compare, DiffIsJudgedByARealPolicy) {
  TensorMap a, b;
  const auto values = normal_values(32, 9);
  b["o"] = stored(DType::F64, {32}, values);
  a["o"] = stored(DType::BF16, {32}, values, 3.0);
  // B (fp64) is more precise than A's bf16: the floor is measured from B, and 3x the rounding error fails.
  auto result = compare_diff(a, b, TolerancePolicy::preset("strict"));
  ASSERT_EQ(result.tensors.size(), 1u);
  ASSERT_TRUE(result.tensors[0].metrics.floor.has_value());
  EXPECT_FALSE(result.tensors[0].metrics.floor->nominal);
  EXPECT_NEAR(result.tensors[0].metrics.floor->ratio, 3.0, 1e-9);
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Fail);

  // B as imprecise as A: the nominal floor. Pure noise against real values fails the default policy.
  TensorMap noise, real;
  real["o"] = stored(DType::BF16, {32}, values);
  noise["o"] = stored(DType::BF16, {32}, normal_values(32, 10));
  result = compare_diff(noise, real, TolerancePolicy::preset("default"));
  EXPECT_TRUE(result.tensors[0].metrics.floor->nominal);
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Fail) << result.tensors[0].reason;
  result = compare_diff(real, real, TolerancePolicy::preset("default"));
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Pass) << result.tensors[0].reason;

  auto policy = TolerancePolicy::preset("report-only");
  policy.add_overrides("o:rel_rmse=1e-4");
  result = compare_diff(a, b, policy);
  EXPECT_EQ(result.tensors[0].verdict, Verdict::Fail);
  EXPECT_TRUE(contains(result.tensors[0].reason, "B ")) << result.tensors[0].reason;

  b["o"].shape = {4, 8};
  EXPECT_THROW(compare_diff(a, b, policy), InputError);
}

TEST(Compare, StagesAndTheFirstDivergingOne) {
  // Synthetic values off the bf16 grid (scaled rounding errors) would all count as misrounded: judge by
  // the floor ratio alone.
  auto policy = TolerancePolicy::preset("strict");
  policy.add_overrides("x=1.3");
  std::vector<StageResult> all;
  auto stage = [&](std::string_view name, double error_scale) {
    const auto values = normal_values(64, static_cast<unsigned>(name.size()));
    TensorMap actual;
    ExactTensorMap exact;
    actual["x"] = stored(DType::BF16, {64}, values, error_scale);
    exact["x"] = exact_tensor({64}, values);
    exact["y"] = exact_tensor({64}, values);  // not written by the kernel: skipped, not an error
    for (auto& r : compare_stage(name, actual, exact, policy)) all.push_back(std::move(r));
  };
  stage("cumsum", 1.0);
  stage("A", 1.2);
  EXPECT_EQ(first_diverging_stage(all), std::nullopt);
  stage("h", 4.0);
  stage("o", 5.0);
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[2].stage, "h");
  EXPECT_EQ(all[2].result.verdict, Verdict::Fail);
  EXPECT_EQ(first_diverging_stage(all), "h");
  EXPECT_TRUE(compare_stage("WY", TensorMap{}, ExactTensorMap{}, policy).empty());
}

}  // namespace
}  // namespace dplr
