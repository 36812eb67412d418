// verify/tolerance: presets, override strings, policy files, and verdicts with their reasons.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "verify/tolerance.hpp"

namespace dplr {
namespace {

bool contains(const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; }

std::string error_of(auto&& f) {
  try {
    f();
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no InputError)";
}

std::filesystem::path write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("dplr_verify_" + name);
  std::ofstream(path) << text;
  return path;
}

TEST(TolerancePresets, Names) {
  const auto names = TolerancePolicy::preset_names();
  EXPECT_EQ(std::vector<std::string_view>(names.begin(), names.end()),
            (std::vector<std::string_view>{"strict", "default", "report-only"}));
  const auto message = error_of([] { TolerancePolicy::preset("lenient"); });
  EXPECT_TRUE(contains(message, "lenient") && contains(message, "strict, default, report-only")) << message;
}

TEST(TolerancePresets, StrictHoldsOurKernelTargets) {
  const auto strict = TolerancePolicy::preset("strict");
  EXPECT_EQ(strict.resolve("o", DType::BF16).limits.floor_ratio, 1.3);
  EXPECT_EQ(strict.resolve("ht", DType::F16).limits.floor_ratio, 1.3);
  EXPECT_EQ(strict.resolve("A_qk", DType::BF16).limits.floor_ratio, 1.3);
  EXPECT_EQ(strict.resolve("dgk", DType::F16).limits.floor_ratio, 2.0);
  // fp32 storage (our fp32 ht of a 16-bit run too: strict judges at the storage dtype) in fp32 floors.
  EXPECT_EQ(strict.floor_basis(), FloorBasis::Storage);
  EXPECT_EQ(strict.resolve("o", DType::F32).limits.floor_ratio, 32.0);
  EXPECT_EQ(strict.resolve("ht", DType::F32).limits.floor_ratio, 16.0);
  // fp32 gradients: issue 12's 1e-6 as 40 fp32 floors (so that a conditioning floor can raise it, metrics.hpp).
  EXPECT_EQ(strict.resolve("dgk", DType::F32).limits.floor_ratio, 40.0);
  EXPECT_EQ(strict.resolve("o", DType::F64).limits.rel_rmse, 1e-12);
  EXPECT_EQ(strict.resolve("cu_seqlens", DType::I64).limits.max_abs, 0.0);
  EXPECT_EQ(strict.resolve("o", DType::BF16).rule, "preset strict: BF16:*");
  // Every float rule gates elementwise; the 16-bit and fp32 ones also the worst block; 16-bit misrounding.
  for (DType dtype : {DType::BF16, DType::F16, DType::F32, DType::F64})
    for (const char* tensor : {"o", "ht", "dq", "dgk", "A_qk"})
      EXPECT_TRUE(strict.resolve(tensor, dtype).limits.max_elem.has_value()) << tensor;
  EXPECT_EQ(strict.resolve("o", DType::BF16).limits.misrounded, 0.0025);
  EXPECT_EQ(TolerancePolicy::preset("default").floor_basis(), FloorBasis::Working);
}

// The floor ratios of fla's recordings in ../shared/data/recorded (seed 11, B1 T256 H2 K=V=64, against a
// float64 recurrence, judged at the working dtype; computed when these presets were set). The default
// preset must pass them with margin; strict must not (fla does not meet our targets).
struct FlaFigure {
  DType dtype;
  const char* tensor;
  double floor_ratio;
};
constexpr FlaFigure kFlaFigures[] = {
    {DType::BF16, "o", 1.744},  {DType::BF16, "ht", 0.584}, {DType::BF16, "dq", 1.076}, {DType::BF16, "dk", 1.282},
    {DType::BF16, "dv", 1.925}, {DType::BF16, "da", 2.332}, {DType::BF16, "db", 2.546}, {DType::BF16, "dgk", 2.728},
    {DType::BF16, "dh0", 0.969}, {DType::F16, "o", 2.027},  {DType::F16, "ht", 1.214},  {DType::F16, "dq", 1.377},
    {DType::F16, "dk", 1.549},  {DType::F16, "dv", 2.139},  {DType::F16, "da", 3.410},  {DType::F16, "db", 3.122},
    {DType::F16, "dgk", 3.792}, {DType::F16, "dh0", 1.926},
};

TEST(TolerancePresets, DefaultPassesFlaRecordingsWithMargin) {
  const auto policy = TolerancePolicy::preset("default");
  for (const auto& figure : kFlaFigures) {
    const auto limit = policy.resolve(figure.tensor, figure.dtype).limits.floor_ratio;
    ASSERT_TRUE(limit.has_value()) << figure.tensor;
    EXPECT_GE(*limit, 1.4 * figure.floor_ratio) << dtype_name(figure.dtype) << " " << figure.tensor;
  }
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.floor_ratio, 3.5);
  EXPECT_EQ(policy.resolve("dgk", DType::BF16).limits.floor_ratio, 7.0);
  EXPECT_EQ(policy.resolve("v_new", DType::BF16).limits.floor_ratio, 4.0);
  EXPECT_EQ(policy.resolve("o", DType::F32).limits.rel_rmse, 1e-5);
  // fla's fp32 chunk kernel runs on TF32 (o rel RMSE 7.7e-4): not fp32 accuracy, so it fails the default.
  EXPECT_LT(*policy.resolve("o", DType::F32).limits.rel_rmse, 7.7e-4);
}

// The worst figures of fla's chunk kernel on the H200 (session 6: seeds 1-3 bf16 and 1 fp16 of the fla, mixed-decay
// and near-zero-decay distributions, reports/baselines/h200/fla-calibration.md), per tensor class: floor ratio,
// worst element (u), worst block (floors). The default preset passes each with at least 1.2x margin.
struct FlaWorst {
  const char* tensor;
  double floor_ratio, elem, local;
};
constexpr FlaWorst kFlaDeviceWorst[] = {
    {"o", 2.50, 4.7, 2.89},  {"ht", 2.17, 4.3, 2.18},  {"dq", 2.41, 4.3, 2.82}, {"dk", 2.37, 5.3, 2.66},
    {"dv", 2.61, 7.0, 2.91}, {"da", 4.72, 12.9, 5.80}, {"db", 4.84, 13.6, 5.48}, {"dgk", 4.63, 64.3, 9.60},
    {"dh0", 2.16, 3.5, 2.36},
};

TEST(TolerancePresets, DefaultPassesFlaOnTheDeviceWithMargin) {
  const auto policy = TolerancePolicy::preset("default");
  for (DType dtype : {DType::BF16, DType::F16})
    for (const auto& worst : kFlaDeviceWorst) {
      const auto limits = policy.resolve(worst.tensor, dtype).limits;
      EXPECT_GE(*limits.floor_ratio, 1.2 * worst.floor_ratio) << worst.tensor;
      EXPECT_GE(*limits.max_elem, 1.2 * worst.elem) << worst.tensor;
      EXPECT_GE(*limits.local_ratio, 1.2 * worst.local) << worst.tensor;
    }
}

TEST(TolerancePresets, StrictIsTighterThanFla) {
  const auto strict = TolerancePolicy::preset("strict");
  EXPECT_LT(*strict.resolve("o", DType::BF16).limits.floor_ratio, 1.744);
  EXPECT_LT(*strict.resolve("dgk", DType::BF16).limits.floor_ratio, 2.728);
}

TEST(TolerancePresets, ReportOnlyGatesNothing) {
  const auto policy = TolerancePolicy::preset("report-only");
  EXPECT_FALSE(policy.resolve("o", DType::BF16).limits.any());
}

TEST(ToleranceOverrides, TheBriefsExample) {
  auto policy = TolerancePolicy::preset("default");
  policy.add_overrides("o=1.5,dgk:rel_rmse=1e-2,bf16:*=2.0");
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.floor_ratio, 1.5);  // TENSOR beats DTYPE:*
  const auto dgk = policy.resolve("dgk", DType::BF16);
  EXPECT_EQ(dgk.limits.rel_rmse, 1e-2);
  EXPECT_FALSE(dgk.limits.floor_ratio.has_value());  // the winning rule replaces, it does not merge
  EXPECT_EQ(dgk.rule, "command line: dgk");
  EXPECT_EQ(policy.resolve("dv", DType::BF16).limits.floor_ratio, 2.0);
  EXPECT_EQ(policy.resolve("dv", DType::F16).limits.floor_ratio, 7.0);  // no override matches: the preset
  EXPECT_EQ(policy.resolve("dv", DType::F32).limits.rel_rmse, 1e-5);
  EXPECT_EQ(policy.resolve("o", DType::F32).limits.floor_ratio, 1.5);   // "o" names every dtype
  EXPECT_EQ(policy.sources(),
            (std::vector<std::string>{"preset default", "command line: o=1.5,dgk:rel_rmse=1e-2,bf16:*=2.0"}));
}

TEST(ToleranceOverrides, SpecificityAndMerging) {
  auto policy = TolerancePolicy::preset("strict");
  policy.add_overrides(" * = 9 , bf16 = 5, F16:o=2.5, o=3, o:max_ulp=64, fp16:o:rel_rmse=1e-3 ");
  EXPECT_EQ(policy.resolve("o", DType::F16).limits.floor_ratio, 2.5);
  EXPECT_EQ(policy.resolve("o", DType::F16).limits.rel_rmse, 1e-3);  // same selector, same source: merged
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.floor_ratio, 3.0);
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.max_ulp, 64.0);
  EXPECT_EQ(policy.resolve("dq", DType::BF16).limits.floor_ratio, 5.0);
  EXPECT_EQ(policy.resolve("dq", DType::F32).limits.floor_ratio, 9.0);
}

TEST(ToleranceOverrides, LaterSourcesWin) {
  auto policy = TolerancePolicy::preset("default");
  policy.add_overrides("o=1.5");
  policy.add_overrides("bf16:*=2.5", "second");
  // The later source has a matching rule, so it decides even though "o" is more specific.
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.floor_ratio, 2.5);
  EXPECT_EQ(policy.resolve("o", DType::BF16).rule, "second: BF16:*");
  EXPECT_EQ(policy.resolve("o", DType::F16).limits.floor_ratio, 1.5);
}

TEST(ToleranceOverrides, OffRemovesTheLimits) {
  auto policy = TolerancePolicy::preset("default");
  policy.add_overrides("dgk=off,dh0=1.1,dh0=OFF,da=off,da:max_rel=0.5");
  EXPECT_FALSE(policy.resolve("dgk", DType::BF16).limits.any());
  EXPECT_FALSE(policy.resolve("dh0", DType::BF16).limits.any());
  EXPECT_EQ(policy.resolve("da", DType::BF16).limits.max_rel, 0.5);
  EXPECT_FALSE(policy.resolve("da", DType::BF16).limits.floor_ratio.has_value());
}

TEST(ToleranceOverrides, UnitsAndDtypeSpellings) {
  auto policy = TolerancePolicy::preset("report-only");
  policy.add_overrides("o:floor=1,ht:ulp=3,dq:max_abs=1e-3,float32:dk:max_rel=0.1,BFloat16:dv:floor_ratio=2");
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.floor_ratio, 1.0);
  EXPECT_EQ(policy.resolve("ht", DType::BF16).limits.max_ulp, 3.0);
  EXPECT_EQ(policy.resolve("dq", DType::BF16).limits.max_abs, 1e-3);
  EXPECT_EQ(policy.resolve("dk", DType::F32).limits.max_rel, 0.1);
  EXPECT_FALSE(policy.resolve("dk", DType::BF16).limits.any());
  EXPECT_EQ(policy.resolve("dv", DType::BF16).limits.floor_ratio, 2.0);
  EXPECT_EQ(parse_dtype_selector("HALF"), DType::F16);
  EXPECT_EQ(parse_dtype_selector("o"), std::nullopt);
}

TEST(ToleranceOverrides, BadEntriesNameThemselves) {
  const std::pair<const char*, const char*> cases[] = {
      {"o", "'o'"},                  // no '='
      {"o=abc", "'abc'"},            // not a number
      {"o=-1", "'-1'"},              // negative
      {"o=1e999", "'1e999'"},        // out of range
      {"x:y=1", "'x:y'"},            // neither DTYPE:TENSOR nor TENSOR:UNIT
      {"bf16:o:bogus=1", "'bogus'"}, // unknown unit
      {"q:o:rel_rmse=1", "'q'"},     // not a dtype
      {"a:b:c:d=1", "too many"},
      {"bf16:=1", "empty tensor"},
  };
  for (const auto& [text, expected] : cases) {
    const auto message = error_of([&] {
      auto policy = TolerancePolicy::preset("default");
      policy.add_overrides(text);
    });
    EXPECT_TRUE(contains(message, expected)) << text << " -> " << message;
    EXPECT_TRUE(contains(message, "command line")) << message;
  }
}

TEST(TolerancePolicyFile, RulesApplyAsALayer) {
  const auto path = write_temp("policy_ok.json", R"({
    "dplr_policy": 1, "description": "looser dgk for fla under strong decay",
    "rules": [
      {"tensor": "o", "dtype": "BF16", "floor_ratio": 1.5},
      {"tensor": "dgk", "rel_rmse": 0.01, "max_ulp": 4096},
      {"dtype": "f16", "floor_ratio": 2.0},
      {"tensor": "dh0", "off": true},
      {"dtype": "*", "tensor": "*", "max_abs": 1}
    ]})");
  auto policy = TolerancePolicy::preset("strict");
  policy.add_file(path);
  EXPECT_EQ(policy.resolve("o", DType::BF16).limits.floor_ratio, 1.5);
  EXPECT_EQ(policy.resolve("dgk", DType::BF16).limits.rel_rmse, 0.01);
  EXPECT_EQ(policy.resolve("dgk", DType::BF16).limits.max_ulp, 4096.0);
  EXPECT_EQ(policy.resolve("dq", DType::F16).limits.floor_ratio, 2.0);
  EXPECT_FALSE(policy.resolve("dh0", DType::F16).limits.any());
  EXPECT_EQ(policy.resolve("dq", DType::BF16).limits.max_abs, 1.0);
  EXPECT_EQ(policy.resolve("dgk", DType::BF16).rule, "file " + path.string() + ": dgk");
  EXPECT_EQ(policy.sources().back(), "file " + path.string());
  std::filesystem::remove(path);
}

TEST(TolerancePolicyFile, BadFilesAreInputErrors) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"rules": []})", "dplr_policy"},
      {R"({"dplr_policy": 2, "rules": []})", "dplr_policy"},
      {R"({"dplr_policy": 1})", "rules"},
      {R"({"dplr_policy": 1, "rules": [], "extra": 1})", "\"extra\""},
      {R"({"dplr_policy": 1, "rules": [{"tensor": "o"}]})", "rule 0: sets no limit"},
      {R"({"dplr_policy": 1, "rules": [{"tensor": "o", "off": true, "rel_rmse": 1}]})", "rule 0"},
      {R"({"dplr_policy": 1, "rules": [{"tensor": "o", "floor_ratio": 1}, {"dtype": "F8", "floor_ratio": 1}]})",
       "rule 1: unknown dtype \"F8\""},
      {R"({"dplr_policy": 1, "rules": [{"tensor": "o", "floor_ratio": -1}]})", "\"floor_ratio\" must be"},
      {R"({"dplr_policy": 1, "rules": [{"tensor": "o", "floor": 1}]})", "unknown key \"floor\""},
      {R"({"dplr_policy": 1, "rules": [{"tensor": "", "floor_ratio": 1}]})", "non-empty"},
      {R"({"dplr_policy": 1, "rules": [)", "not valid JSON"},
      {R"([1, 2])", "expected a JSON object"},
  };
  int n = 0;
  for (const auto& [text, expected] : cases) {
    const auto path = write_temp(fmt::format("policy_bad_{}.json", n++), text);
    const auto message = error_of([&] {
      auto policy = TolerancePolicy::preset("default");
      policy.add_file(path);
    });
    EXPECT_TRUE(contains(message, expected)) << text << " -> " << message;
    EXPECT_TRUE(contains(message, path.string())) << message;
    std::filesystem::remove(path);
  }
  const auto missing = error_of([] {
    auto policy = TolerancePolicy::preset("default");
    policy.add_file("/nonexistent/policy.json");
  });
  EXPECT_TRUE(contains(missing, "/nonexistent/policy.json")) << missing;
}

TensorMetrics metrics_with(double rel_rmse, double floor_ratio) {
  TensorMetrics m;
  m.dtype = DType::BF16;
  m.shape = {2, 2};
  m.elements = m.compared = 4;
  m.rel_rmse = rel_rmse;
  m.max_abs = {0.25, {1, 0}, 1.25, 1.0};
  m.max_ulp = {32.0, {1, 0}, 1.25, 1.0};
  m.floor = FloorRatio{DType::BF16, 1.66e-3, 1.66e-3, false, floor_ratio};
  return m;
}

TEST(ToleranceJudge, PassAndFailCarryTheNumbers) {
  Tolerance tolerance{{.floor_ratio = 1.3}, "preset strict: BF16:o"};
  auto j = judge(metrics_with(2e-3, 1.2), tolerance);
  EXPECT_EQ(j.verdict, Verdict::Pass);
  EXPECT_EQ(j.reason, "floor ratio 1.2 <= 1.3");
  j = judge(metrics_with(3e-3, 1.8), tolerance);
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_TRUE(contains(j.reason, "floor ratio 1.8 > 1.3")) << j.reason;
  EXPECT_TRUE(contains(j.reason, "at [1, 0]")) << j.reason;
  EXPECT_TRUE(contains(j.reason, "preset strict: BF16:o")) << j.reason;

  tolerance.limits = {.floor_ratio = 2.0, .max_ulp = 16.0};
  j = judge(metrics_with(3e-3, 1.8), tolerance);
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_TRUE(contains(j.reason, "max ulp 32 > 16")) << j.reason;
  EXPECT_FALSE(contains(j.reason, "floor ratio 1.8 >")) << j.reason;
}

TEST(ToleranceJudge, NanIsAnErrorInfIsAFailure) {
  auto m = metrics_with(1e-3, 1.0);
  m.nonfinite.actual_nan = 3;
  m.nonfinite.first_actual_nan_index = std::vector<std::int64_t>{0, 1};
  auto j = judge(m, {{.floor_ratio = 100.0}, "x"});
  EXPECT_EQ(j.verdict, Verdict::Error);
  EXPECT_TRUE(contains(j.reason, "3 NaN") && contains(j.reason, "[0, 1]")) << j.reason;
  // Even with no limits at all, NaN is an error.
  EXPECT_EQ(judge(m, {{}, "report-only"}).verdict, Verdict::Error);

  m = metrics_with(1e-3, 1.0);
  m.nonfinite.inf_mismatch = 1;
  m.nonfinite.actual_inf = 1;
  EXPECT_EQ(judge(m, {{}, "report-only"}).verdict, Verdict::Fail);

  m = metrics_with(1e-3, 1.0);
  m.nonfinite.expected_nan = 1;
  j = judge(m, {{.floor_ratio = 1.0}, "x"}, "B");
  EXPECT_EQ(j.verdict, Verdict::Error);
  EXPECT_TRUE(contains(j.reason, "on the B side")) << j.reason;
}

TEST(ToleranceJudge, InfiniteMetricsFail) {
  auto m = metrics_with(std::numeric_limits<double>::infinity(), std::numeric_limits<double>::infinity());
  const auto j = judge(m, {{.floor_ratio = 1e6}, "x"});
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_TRUE(contains(j.reason, "floor ratio inf > 1e+06")) << j.reason;
}

TEST(ToleranceJudge, UngatedAndUnevaluable) {
  auto m = metrics_with(1e-3, 1.0);
  auto j = judge(m, {{}, "preset report-only: *"});
  EXPECT_EQ(j.verdict, Verdict::Pass);
  EXPECT_TRUE(contains(j.reason, "not gated: no limit set")) << j.reason;

  m.floor.reset();  // a diff without a floor
  j = judge(m, {{.floor_ratio = 1.3}, "preset default: BF16:o"}, "B");
  EXPECT_EQ(j.verdict, Verdict::Pass);
  EXPECT_TRUE(contains(j.reason, "not gated") && contains(j.reason, "no floor computed")) << j.reason;

  j = judge(m, {{.floor_ratio = 1.3, .rel_rmse = 1e-4}, "x"}, "B");
  EXPECT_EQ(j.verdict, Verdict::Fail);
  EXPECT_TRUE(contains(j.reason, "rel RMSE 0.001 > 0.0001")) << j.reason;
}

TEST(ToleranceJudge, VerdictOrder) {
  EXPECT_EQ(worst_verdict(Verdict::Pass, Verdict::Fail), Verdict::Fail);
  EXPECT_EQ(worst_verdict(Verdict::Error, Verdict::Fail), Verdict::Error);
  EXPECT_EQ(worst_verdict(Verdict::Pass, Verdict::Pass), Verdict::Pass);
  EXPECT_EQ(verdict_name(Verdict::Error), "error");
}

// The misrounded limit grows where the conditioning floor implies more misrounding (2 e / u), and only there.
TEST(ToleranceJudge, MisroundedLimitFollowsTheConditioningFloor) {
  TensorMetrics m;
  m.dtype = DType::F16;
  m.shape = {1000000};
  m.elements = m.compared = 1000000;  // 3 sigma of the fraction: 3 sqrt(0.01 / 1e6) = 0.03%
  m.elem_unit = 0x1p-11;
  m.misrounded_fraction = 0.015;
  m.floor = FloorRatio{DType::F16, 2e-4, 2e-4, false, 1.0};
  const Tolerance tolerance{{.misrounded = 0.01}, "test"};
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);  // no conditioning floor: 1.5% > 1%
  m.floor->conditioning_rel_rmse = 4e-6;                  // implies 2 x 4e-6 / 4.9e-4 = 1.6%
  const Judgement raised = judge(m, tolerance);
  EXPECT_EQ(raised.verdict, Verdict::Pass) << raised.reason;
  EXPECT_NE(raised.reason.find("conditioning"), std::string::npos) << raised.reason;
  m.misrounded_fraction = 0.069;  // 4x what the floor implies: still fails
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);
  m.floor->conditioning_rel_rmse = 1e-7;  // implies 0.04%: the 1% limit stands
  m.misrounded_fraction = 0.015;
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);
  // Few elements: 14 of 1152 (1.2%) is within 3 sigma of 1% (1% + 0.88%), 40 of 1152 (3.5%) is not.
  m.floor->conditioning_rel_rmse.reset();
  m.elements = m.compared = 1152;
  m.misrounded_fraction = 14.0 / 1152;
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Pass);
  m.misrounded_fraction = 40.0 / 1152;
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);
}

// The misrounded limit is at least twice what the kernel's algorithm in plain fp32 misrounds (session 9: the H200's
// correct chunk-bwd misrounded o 0.336% of 62848 bf16 elements, limit 0.31%, where the fp32 chunk form misrounds
// 0.479%, case 23-39), and no more: session 7's 7-12 (6.9%) and a planted missing barrier (0.61% of bf16 where
// the algorithm misrounds ~0.02%) still fail.
TEST(ToleranceJudge, MisroundedLimitFollowsTheFp32Implementation) {
  TensorMetrics m;
  m.dtype = DType::BF16;
  m.shape = {62848};
  m.elements = m.compared = 62848;
  m.elem_unit = 0x1p-8;
  m.floor = FloorRatio{DType::BF16, 1.62e-3, 1.62e-3, false, 1.0};
  m.misrounded_fraction = 0.00336;
  const Tolerance tolerance{{.misrounded = 0.0025}, "test"};
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);  // 0.336% > 0.25% + 3 sigma (0.31%)
  m.implementation_misrounded_fraction = 0.00479;
  const Judgement raised = judge(m, tolerance);
  EXPECT_EQ(raised.verdict, Verdict::Pass) << raised.reason;
  EXPECT_NE(raised.reason.find("fp32 implementation"), std::string::npos) << raised.reason;
  m.misrounded_fraction = 0.011;  // more than twice the implementation's 0.479% + 3 sigma (1.07%)
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);
  m.implementation_misrounded_fraction = 0.0002;  // a well-conditioned case: the 0.25% limit stands
  m.misrounded_fraction = 0.0061;                 // missing-barrier, session 7
  EXPECT_EQ(judge(m, tolerance).verdict, Verdict::Fail);
  m.dtype = DType::F16;  // 7-12 as tolerance_test plants it: 6.9% where the fp32 chunk form implies 1.0%
  m.elem_unit = 0x1p-11;
  m.implementation_misrounded_fraction = 0.01;
  m.misrounded_fraction = 0.069;
  EXPECT_EQ(judge(m, {{.misrounded = 0.01}, "test"}).verdict, Verdict::Fail);
}

}  // namespace
}  // namespace dplr
