#include "tests/verify/sample_reports.hpp"

#include <cmath>
#include <limits>
#include <random>

#include <fmt/format.h>

#include "reports/sha256.hpp"

namespace dplr::testing {
namespace {


ExactTensor exact_tensor(std::vector<std::int64_t> shape, const std::vector<double>& values) {
  ExactTensor t;
  t.shape = std::move(shape);
  t.limbs = 1;
  t.parts = values;
  return t;
}

Tensor stored(DType dtype, std::vector<std::int64_t> shape, const std::vector<double>& exact, double error_scale) {
  Tensor t{dtype, std::move(shape), {}};
  for (double x : exact) t.values.push_back(x + error_scale * (round_to_dtype(x, dtype) - x));
  return t;
}

// fp32 storage of values with bf16-sized errors: how a bf16 kernel with an fp32 state writes ht or dgk.
Tensor stored_f32_from_bf16(std::vector<std::int64_t> shape, const std::vector<double>& exact, double error_scale) {
  Tensor t = stored(DType::BF16, std::move(shape), exact, error_scale);
  t.dtype = DType::F32;
  return t;
}

Report base_report(std::string command, std::optional<std::string> gpu) {
  Report report;
  report.command = std::move(command);
  report.command_line = {"dplr", report.command, "case.safetensors", "--tolerance", "o=1.5,dgk:rel_rmse=1e-2"};
  report.host = HostInfo::current(std::move(gpu));
  report.start_time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));
  report.duration_seconds = 1.25;
  return report;
}

// A bf16 case with every optional part: generator and files, reference with certification, stages with a
// divergence, notes, a failing tensor, a NaN tensor, an infinite metric (all-zero exact, nonzero actual).
CaseResult full_case(const TolerancePolicy& policy) {
  const std::vector<std::int64_t> token_shape = {1, 16, 2, 4}, state_shape = {1, 2, 4, 4};
  TensorMap actual;
  ExactTensorMap exact;
  const auto o = testing::normal_values(128, 1), ht = testing::normal_values(32, 2), dq = testing::normal_values(128, 3);
  actual["q"] = stored(DType::BF16, token_shape, testing::normal_values(128, 4), 1.0);
  actual["o"] = stored(DType::BF16, token_shape, o, 1.1);
  exact["o"] = exact_tensor(token_shape, o);
  actual["ht"] = stored_f32_from_bf16(state_shape, ht, 1.0);
  exact["ht"] = exact_tensor(state_shape, ht);
  actual["dq"] = stored(DType::BF16, token_shape, dq, 5.0);  // fails strict
  exact["dq"] = exact_tensor(token_shape, dq);
  actual["dgk"] = stored(DType::F32, token_shape, testing::normal_values(128, 5), 1.0);
  actual["dgk"].values[7] = std::numeric_limits<double>::quiet_NaN();
  exact["dgk"] = exact_tensor(token_shape, testing::normal_values(128, 5));
  actual["dh0"] = Tensor{DType::F32, state_shape, std::vector<double>(32, 0.0)};
  actual["dh0"].values[3] = 1e-20;
  exact["dh0"] = exact_tensor(state_shape, std::vector<double>(32, 0.0));
  exact["db"] = exact_tensor(token_shape, dq);

  CaseResult c;
  c.id = "fla-default-B1-T16-H2-K4-V4-bf16-seed11";
  c.shape = CaseShape{1, 16, 2, 4, 4, 1};
  for (const auto& [name, tensor] : actual) c.dtypes[name] = tensor.dtype;
  c.working_dtype = working_dtype_of(actual);
  c.options = CaseOptions{0.5, false, false, true, true, true};
  c.source.generator = GeneratorSource{"fla-default", 11};
  c.source.files.push_back({"case", "recorded/case <1>.safetensors", sha256_hex("case bytes")});
  c.baseline = "exact";
  c.reference = ReferenceInfo{"dd", 106, std::string("qd"), std::string("repeat"), {{"o", 101.5}, {"ht", 99.0}, {"dq", 97.25}}, {}, 0.75};
  c.comparison = compare(actual, exact, policy);

  StageSection stages;
  for (const auto& [stage, scale] : std::vector<std::pair<std::string, double>>{{"cumsum", 1.0}, {"A", 1.0}, {"h", 9.0}}) {
    TensorMap stage_actual;
    ExactTensorMap stage_exact;
    const auto values = testing::normal_values(64, static_cast<unsigned>(stage.size() + 20));
    stage_actual["A_qk"] = stored_f32_from_bf16({1, 1, 2, 4, 8}, values, scale);
    stage_exact["A_qk"] = exact_tensor({1, 1, 2, 4, 8}, values);
    for (auto& r : compare_stage(stage, stage_actual, stage_exact, policy, {.working_dtype = DType::BF16}))
      stages.results.push_back(std::move(r));
  }
  stages.first_diverging_stage = first_diverging_stage(stages.results);
  c.stages = std::move(stages);
  c.notes = {"gk > 0 in 3 elements: growth, outside the intended domain", "quotes \" and <tags> & ampersands"};
  return c;
}

// The least a case can carry: a file, no shape, no options, no reference, no stages, all passing.
CaseResult minimal_case(const TolerancePolicy& policy) {
  TensorMap actual;
  ExactTensorMap exact;
  const auto o = testing::normal_values(8, 7);
  actual["o"] = stored(DType::F64, {8}, o, 0.0);
  exact["o"] = exact_tensor({8}, o);
  CaseResult c;
  c.id = "minimal";
  c.source.files.push_back({"case", "m.npy", sha256_hex("")});
  c.comparison = compare(actual, exact, policy);
  return c;
}

CaseResult diff_case(const TolerancePolicy& policy) {
  TensorMap a, b;
  const auto o = testing::normal_values(64, 8);
  a["o"] = stored(DType::BF16, {1, 8, 2, 4}, o, 1.0);
  b["o"] = stored(DType::F64, {1, 8, 2, 4}, o, 0.0);
  a["dk"] = stored(DType::F16, {1, 8, 2, 4}, o, 1.0);
  b["dk"] = stored(DType::F32, {1, 8, 2, 4}, o, 1.0);
  a["extra"] = stored(DType::F32, {2}, {1.0, 2.0}, 0.0);
  CaseResult c;
  c.id = "diff a.safetensors b.safetensors";
  c.baseline = "file";
  for (const auto& [name, tensor] : a) c.dtypes[name] = tensor.dtype;
  c.working_dtype = working_dtype_of(a);
  c.options = CaseOptions{std::nullopt, false, false, false, false, false};
  c.source.files.push_back({"actual", "a.safetensors", sha256_hex("a")});
  c.source.files.push_back({"expected", "b.safetensors", sha256_hex("b")});
  c.comparison = compare_diff(a, b, policy);
  return c;
}

}  // namespace

std::vector<std::pair<std::string, Report>> sample_reports() {
  std::vector<std::pair<std::string, Report>> out;

  // Judged at the working dtype, 1.3 floors for every bf16 tensor (synthetic values off the bf16 grid
  // would all count as misrounded under strict).
  auto strict = TolerancePolicy::preset("default");
  strict.add_overrides("bf16:*=1.3,dgk:rel_rmse=1e-2");
  Report full = base_report("verify", std::string("NVIDIA H100 80GB HBM3 (sm_90)"));
  full.policy_preset = strict.preset_name();
  full.policy_sources = strict.sources();
  full.cases.push_back(full_case(strict));
  full.cases.push_back(minimal_case(strict));
  CaseResult refused = minimal_case(strict);
  refused.id = "refused";
  refused.comparison = {};
  refused.error = "gpu chunk: K = 300 exceeds the largest supported head size 128";
  full.cases.push_back(std::move(refused));
  out.emplace_back("verify_full", std::move(full));

  const auto loose = TolerancePolicy::preset("default");
  Report minimal = base_report("verify", std::nullopt);
  minimal.policy_preset = loose.preset_name();
  minimal.policy_sources = loose.sources();
  CaseResult with_passing_stages = minimal_case(loose);
  // A rigorous reference (proven bits, no estimate), and stages that all pass (no first diverging stage).
  with_passing_stages.reference = ReferenceInfo{"ball112", 112, std::nullopt, std::nullopt, {}, {{"o", 81.5}, {"ht", 90.0}}, 0.01};
  {
    const auto values = testing::normal_values(16, 30);
    TensorMap stage_actual;
    ExactTensorMap stage_exact;
    stage_actual["gi"] = stored(DType::F32, {16}, values, 1.0);
    stage_exact["gi"] = exact_tensor({16}, values);
    StageSection stages;
    stages.results = compare_stage("cumsum", stage_actual, stage_exact, loose);
    stages.first_diverging_stage = first_diverging_stage(stages.results);
    with_passing_stages.stages = std::move(stages);
  }
  minimal.cases.push_back(std::move(with_passing_stages));
  out.emplace_back("verify_minimal", std::move(minimal));

  auto diff_policy = TolerancePolicy::preset("report-only");
  diff_policy.add_overrides("dk:rel_rmse=1e-9");
  Report diff = base_report("diff", std::nullopt);
  diff.policy_preset = diff_policy.preset_name();
  diff.policy_sources = diff_policy.sources();
  diff.cases.push_back(diff_case(diff_policy));
  out.emplace_back("diff", std::move(diff));

  Report input_error = base_report("verify", std::nullopt);
  input_error.policy_preset = "default";
  input_error.input_error = "case.safetensors: tensor 'q': expected shape [B, T, H, K], got [4] <&>";
  input_error.duration_seconds = 0.0;
  out.emplace_back("input_error", std::move(input_error));

  Report internal_error = base_report("check", std::nullopt);
  internal_error.policy_preset = "strict";
  internal_error.floor_basis = FloorBasis::Storage;
  internal_error.internal_error = "std::bad_alloc";
  out.emplace_back("internal_error", std::move(internal_error));

  // A check against a stored baseline: a case with a failed gate outside the tensors, one regression.
  Report regressed = base_report("check", std::nullopt);
  regressed.policy_preset = "strict";
  regressed.floor_basis = FloorBasis::Storage;
  CaseResult gated = minimal_case(loose);
  gated.failures.push_back("the reference has 70.0 estimated bits, below the 80 required");
  regressed.cases.push_back(std::move(gated));
  BaselineComparison comparison;
  comparison.path = "reports/baselines/cpu/check-quick.json";
  comparison.cases_compared = 1;
  comparison.figures_compared = 5;
  comparison.regressions.push_back({"minimal", "o", "", "floor_ratio", 1.0, 2.5, 1.3});
  comparison.missing_cases = {"gone"};
  comparison.new_cases = {"minimal"};
  regressed.baseline = comparison;
  out.emplace_back("check_baseline", std::move(regressed));

  Report no_cases = base_report("check", std::nullopt);
  no_cases.policy_preset = "strict";
  no_cases.tool.git_revision = "unknown";
  out.emplace_back("no_cases", std::move(no_cases));

  // A shard of a sweep (dplr check --shard 1/4): sweep identity, every case's position.
  Report shard = base_report("check", std::nullopt);
  shard.policy_preset = "strict";
  shard.cases.push_back(minimal_case(strict));
  shard.cases.back().sweep_index = 5;
  shard.sweep = SweepInfo{"check", {{"quick", true}, {"cpu_only", true}, {"seed", nullptr}}, 8, 1, 4};
  out.emplace_back("shard", shard);

  // A merged report (dplr report merge): the shards listed.
  Report merged = shard;
  merged.sweep->shard_index = 0;
  merged.sweep->shard_count = 1;
  for (int i = 0; i < 2; ++i)
    merged.merged_from.push_back({fmt::format("out/shard-{}.json", i), sha256_hex(std::to_string(i)), i, 2,
                                  HostInfo{"node" + std::to_string(i), "cpu", 16, "NVIDIA H200 (sm_90)"},
                                  "2025-06-01T12:00:00.000Z", 20.5, 3, i ? Verdict::Fail : Verdict::Pass, i ? 1 : 0});
  out.emplace_back("merged", std::move(merged));
  return out;
}

}  // namespace dplr::testing

namespace dplr::testing {

std::vector<double> normal_values(std::size_t n, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  std::vector<double> out(n);
  for (auto& x : out) x = normal(rng);
  return out;
}

}  // namespace dplr::testing
