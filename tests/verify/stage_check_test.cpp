// The CPU side of `dplr check`'s backward cases and of `dplr stages --compare/--gpu` (verify/stage_check.hpp,
// verify/sweep.hpp), without a GPU: what the kernels would return is the exact answer rounded to its storage dtype
// (which passes the strict policy), then a planted defect (one stage tensor, one gradient, one element, a missing
// tensor) that must fail the verdict and name the right stage. Also: the GPU sweep's backward case list covers the
// forward sweep's dimensions, and case files name the backward kernels.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/reference.hpp"
#include "verify/case_file.hpp"
#include "verify/gpu_runner.hpp"
#include "verify/stage_check.hpp"
#include "verify/sweep.hpp"

namespace dplr {
namespace {

// ---- the case list ----------------------------------------------------------------------------------------

std::vector<GpuSweepCase> backward_of(const std::vector<GpuSweepCase>& all) {
  std::vector<GpuSweepCase> out;
  for (const auto& g : all)
    if (is_backward_kernel(g.kernel)) out.push_back(g);
  return out;
}

// Sequence lengths of a spec (one per sequence; B of them without cu_seqlens).
std::vector<std::int64_t> lengths(const CaseSpec& s) {
  if (s.cu_seqlens.empty()) return std::vector<std::int64_t>(s.shape.B, s.shape.T);
  std::vector<std::int64_t> out;
  for (std::size_t i = 0; i + 1 < s.cu_seqlens.size(); ++i) out.push_back(s.cu_seqlens[i + 1] - s.cu_seqlens[i]);
  return out;
}

TEST(BackwardCaseList, CoversTheForwardSweepsDimensions) {
  const auto cases = backward_of(gpu_sweep_cases(false, 7));
  ASSERT_FALSE(cases.empty());
  for (const std::string kernel : {"chunk-bwd", "recurrent-bwd"}) {
    SCOPED_TRACE(kernel);
    std::set<DType> dtypes;
    std::set<int> chunk_sizes;
    std::set<std::pair<std::int64_t, std::int64_t>> kv;
    std::set<std::string> distributions;
    std::set<std::pair<DType, int>> varlen_with_empty;  // (dtype, C) of varlen cases with an empty sequence
    for (const auto& g : cases) {
      if (g.kernel != kernel) continue;
      const CaseSpec& s = g.spec;
      dtypes.insert(s.dtype);
      chunk_sizes.insert(g.chunk_size);
      kv.insert({s.shape.K, s.shape.V});
      distributions.insert(s.distribution);
      // Every case: H > 1, h0 and the upstream gradients (do and dht), gk in fp32.
      EXPECT_GT(s.shape.H, 1) << describe(s);
      EXPECT_TRUE(s.with_h0 && s.with_backward) << describe(s);
      EXPECT_EQ(s.gk_dtype, DType::F32) << describe(s);
      const auto len = lengths(s);
      if (g.chunk_size > 0) {
        // T not a multiple of C: some sequence ends in a short chunk.
        EXPECT_TRUE(std::any_of(len.begin(), len.end(), [&](std::int64_t n) { return n % g.chunk_size != 0; }))
            << describe(s) << " C" << g.chunk_size;
        EXPECT_FALSE(s.reverse) << "the chunk form runs forward only";
      }
      if (std::find(len.begin(), len.end(), 0) != len.end()) varlen_with_empty.insert({s.dtype, g.chunk_size});
    }
    EXPECT_EQ(dtypes, (std::set<DType>{DType::BF16, DType::F16, DType::F32}));
    EXPECT_EQ(kv, (std::set<std::pair<std::int64_t, std::int64_t>>{{64, 64}, {128, 128}, {60, 100}}));
    EXPECT_TRUE(distributions.count("fla") && distributions.count("strong-decay"));
    if (kernel == "chunk-bwd") {
      EXPECT_EQ(chunk_sizes, (std::set<int>{16, 32, 64}));
      for (DType d : dtypes)
        for (int C : {16, 32, 64}) EXPECT_TRUE(varlen_with_empty.count({d, C})) << dtype_name(d) << " C" << C;
    } else {
      EXPECT_EQ(chunk_sizes, std::set<int>{0});
      for (DType d : dtypes) EXPECT_TRUE(varlen_with_empty.count({d, 0})) << dtype_name(d);
    }
  }
  // Every spec draws a problem with do and dht, do exact in the inputs' dtype (the GPU runners require it).
  const DplrProblem p = generate_case(cases.front().spec);
  ASSERT_TRUE(p.grad_o && p.grad_ht && p.h0);
  EXPECT_EQ(p.grad_o->dtype, cases.front().spec.dtype);
}

TEST(BackwardCaseList, QuickHasBothKernelsInEveryDtypeAndTheForwardCasesComeFirst) {
  const auto all = gpu_sweep_cases(true, 7);
  const auto cases = backward_of(all);
  for (const std::string kernel : {"chunk-bwd", "recurrent-bwd"})
    for (DType d : {DType::BF16, DType::F16, DType::F32})
      EXPECT_TRUE(std::any_of(cases.begin(), cases.end(), [&](const GpuSweepCase& g) {
        return g.kernel == kernel && g.spec.dtype == d;
      })) << kernel << " " << dtype_name(d);
  // The forward cases keep their positions (the shards of a forward-only sweep and the committed baselines).
  const auto first_backward = std::find_if(all.begin(), all.end(), [](const auto& g) { return is_backward_kernel(g.kernel); });
  EXPECT_TRUE(std::none_of(first_backward, all.end(), [](const auto& g) { return !is_backward_kernel(g.kernel); }));
}

TEST(BackwardCaseList, GpuKernelsAndPlantedDefectsSelect) {
  SweepOptions o;
  const auto all = selected_gpu_cases(o);
  EXPECT_EQ(all.size(), gpu_sweep_cases(false, 7).size());
  o.gpu_kernels = {"chunk-bwd", "chunk-bwd-fma", "recurrent-bwd"};
  const auto backward = selected_gpu_cases(o);
  EXPECT_EQ(backward.size(), backward_of(all).size());
  EXPECT_TRUE(std::all_of(backward.begin(), backward.end(), [](const auto& g) { return is_backward_kernel(g.kernel); }));
  // A planted defect, the forward's or the backward's, leaves every case in (the backward runs take it too), in
  // the same order; with --gpu-kernels it selects as without one.
  o.gpu_kernels.clear();
  for (const char* defect : {"head-stride", "bwd-state-bf16", "recurrent-bwd-state-bf16"}) {
    o.planted_defect = defect;
    const auto planted = selected_gpu_cases(o);
    ASSERT_EQ(planted.size(), all.size()) << defect;
    for (std::size_t i = 0; i < all.size(); ++i)
      EXPECT_EQ(planted[i].kernel, all[i].kernel) << defect << " case " << i;
  }
  o.gpu_kernels = {"chunk-bwd", "chunk-bwd-fma", "recurrent-bwd"};
  EXPECT_EQ(selected_gpu_cases(o).size(), backward.size());
}

// The backward runners take the planted defect by name: the backward's are listed, and a name that is not a defect,
// or (in a build without them) any defect, is refused before the device is touched, naming what was expected.
TEST(BackwardCaseList, BackwardRunnersTakeThePlantedDefect) {
  const std::vector<std::string> names = gpu_planted_defect_names();
  if (names.empty()) GTEST_SKIP() << "built without CUDA: " << gpu_device().reason;
  for (const char* defect : {"head-stride", "bwd-head-offset", "bwd-state-bf16", "bwd-dgk-exclusive", "recurrent-bwd-state-bf16"})
    EXPECT_NE(std::find(names.begin(), names.end(), defect), names.end()) << defect;
  CaseSpec spec;
  spec.shape = {1, 20, 2, 16, 16};
  spec.dtype = DType::BF16;
  spec.with_backward = true;
  const DplrProblem p = generate_case(spec);
  const auto refusal = [&](const std::string& defect, bool chunk) {
    const GpuRunOptions run{.output = GpuOutput::Rounded, .backward = {}, .planted_defect = defect};
    try {
      if (chunk) run_gpu_chunk_backward(p, 16, run);
      else run_gpu_recurrent_backward(p, run);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  for (const bool chunk : {true, false}) {
    const std::string unknown = refusal("no-such-bug", chunk);
    EXPECT_NE(unknown.find("no-such-bug"), std::string::npos) << unknown;
    EXPECT_NE(unknown.find("bwd-dgk-exclusive"), std::string::npos) << unknown;
    if (!gpu_planted_defects_built()) {
      const std::string refused = refusal("bwd-state-bf16", chunk);
      EXPECT_NE(refused.find("DPLR_PLANT_DEFECTS"), std::string::npos) << refused;
    }
  }
}

TEST(BackwardCaseList, KernelNamesAreChecked) {
  EXPECT_NO_THROW(require_gpu_sweep_kernels({"chunk-bwd", "recurrent-bwd", "chunk"}));
  try {
    require_gpu_sweep_kernels({"chunk-backward"});
    FAIL() << "an unknown kernel name was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("chunk-backward"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("recurrent-bwd"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(is_backward_kernel("chunk-bwd") && is_backward_kernel("chunk-bwd-fma") && is_backward_kernel("recurrent-bwd"));
  EXPECT_FALSE(is_backward_kernel("chunk") || is_backward_kernel("recurrent") || is_backward_kernel("chunk-fused"));
}

// The FMA kernels keep a place in the sweep once the default runs tensor cores: every 16-bit chunk-bwd case at
// C = 16 has its chunk-bwd-fma twin, and no other case does.
TEST(BackwardCaseList, FmaTwinsOfTheTensorCoreCases) {
  const auto all = gpu_sweep_cases(false, 7);
  std::size_t tc = 0, fma = 0;
  for (const auto& g : all) {
    if (g.kernel == "chunk-bwd" && g.chunk_size == 16 && g.spec.dtype != DType::F32) ++tc;
    if (g.kernel == "chunk-bwd-fma") {
      ++fma;
      EXPECT_EQ(g.chunk_size, 16);
      EXPECT_NE(g.spec.dtype, DType::F32);
    }
  }
  EXPECT_GT(tc, 0u);
  EXPECT_EQ(fma, tc);
}

// ---- judging: a staged run and its gradients ---------------------------------------------------------------

CaseSpec small_spec(DType dtype, bool varlen) {
  CaseSpec spec;
  spec.distribution = "strong-decay";
  spec.shape = varlen ? DplrShape{1, 45, 2, 8, 6} : DplrShape{2, 37, 2, 8, 6};
  if (varlen) spec.cu_seqlens = {0, 0, 20, 20, 45};
  spec.dtype = dtype;
  spec.gk_dtype = DType::F32;
  spec.seed = 5;
  return spec;
}

struct Exact {
  DplrProblem problem;
  ExactTensorMap gradients;  // the recurrence's (o, ht and dq ... dh0)
  ExactTensorMap stages;     // the chunk form's, every stage
};

Exact exact_of(const CaseSpec& spec, int C) {
  Exact e;
  e.problem = generate_case(spec);
  ReferenceOptions r;
  r.precision = Precision{Arithmetic::DoubleDouble, 0};
  r.threads = 1;
  e.gradients = run_reference(e.problem, r).tensors;
  ChunkOptions c;
  c.threads = 1;
  e.stages = run_chunk_stages(e.problem, C, Precision{Arithmetic::DoubleDouble, 0}, c).tensors;
  return e;
}

// What our kernels store: o and dq, dk, dv, da, db in the inputs' dtype for the driver's gradients; every stage
// tensor fp32 (o in the inputs' dtype) for a staged run.
TensorMap as_driver(const ExactTensorMap& exact, DType dtype) {
  TensorMap out;
  for (std::string_view g : kGradientNames) {
    const std::string name(g);
    if (!exact.count(name)) continue;
    out[name] = exact.at(name).to_tensor(name == "dgk" || name == "dh0" ? DType::F32 : dtype);
  }
  return out;
}
TensorMap as_staged(const ExactTensorMap& stages, DType dtype) {
  TensorMap out;
  for (const auto& [name, t] : stages) out[name] = t.to_tensor(name == "o" ? dtype : DType::F32);
  return out;
}

CompareOptions options_of(const CaseSpec& spec, int C) {
  return {.working_dtype = spec.dtype,
          .cu_seqlens = spec.cu_seqlens.empty() ? std::nullopt : std::optional(spec.cu_seqlens),
          .block_tokens = C};
}

const TolerancePolicy& strict() {
  static const TolerancePolicy policy = TolerancePolicy::preset("strict");
  return policy;
}

class StageCheck : public ::testing::TestWithParam<std::tuple<DType, bool>> {
 protected:
  static constexpr int C = 16;
  void SetUp() override {
    spec = small_spec(std::get<0>(GetParam()), std::get<1>(GetParam()));
    exact = exact_of(spec, C);
    driver = as_driver(exact.gradients, spec.dtype);
    staged = as_staged(exact.stages, spec.dtype);
  }
  CaseResult judge(const TensorMap& gradients, const TensorMap& stages) const {
    CaseResult c;
    judge_backward_case(gradients, &stages, exact.gradients, &exact.stages, strict(), options_of(spec, C), c);
    return c;
  }
  CaseSpec spec;
  Exact exact;
  TensorMap driver, staged;
};

TEST_P(StageCheck, TheExactAnswerRoundedPassesAndEveryTensorIsJudged) {
  const CaseResult c = judge(driver, staged);
  EXPECT_EQ(c.verdict(), Verdict::Pass) << format_table(c);
  EXPECT_TRUE(c.failures.empty());
  // The comparison holds the gradients, each once, and nothing else.
  std::vector<std::string> judged;
  for (const auto& t : c.comparison.tensors) judged.push_back(t.name);
  EXPECT_EQ(judged, (std::vector<std::string>{"dq", "dk", "dv", "da", "db", "dgk", "dh0"}));
  // The stages: every tensor the oracles have, under the stage that completes it, in pipeline order.
  ASSERT_TRUE(c.stages);
  EXPECT_FALSE(c.stages->first_diverging_stage);
  std::set<std::string> staged_names;
  const std::vector<std::string> order = chunk_stage_order();
  std::size_t last = 0;
  for (const auto& r : c.stages->results) {
    staged_names.insert(r.result.name);
    EXPECT_EQ(chunk_stage_of(r.result.name), r.stage) << r.result.name;
    const std::size_t at = std::find(order.begin(), order.end(), r.stage) - order.begin();
    EXPECT_GE(at, last) << r.stage << " out of pipeline order";
    last = at;
  }
  for (const auto& [name, t] : exact.stages) EXPECT_TRUE(staged_names.count(name)) << name << " not judged";
  for (const auto& stage : chunk_backward_stages())
    EXPECT_TRUE(std::any_of(c.stages->results.begin(), c.stages->results.end(),
                            [&](const StageResult& r) { return r.stage == stage; }))
        << stage;
}

// A stage tensor 0.1% off (whole tensor), and one element of it 0.1% off: the verdict fails, naming that stage,
// and every stage before it passes.
TEST_P(StageCheck, APlantedWrongStageIsTheFirstToDiverge) {
  const std::pair<const char*, const char*> plants[] = {{"dA_qk", "o_bwd"}, {"dh", "h_bwd"},   {"dv_new", "h_bwd"},
                                                        {"dA_ab", "WY_bwd"}, {"dv", "WY_bwd"}, {"db", "A_bwd"},
                                                        {"dgk", "cumsum_bwd"}, {"w", "WY"}};
  for (const auto& [tensor, stage] : plants)
    for (bool one_element : {false, true}) {
      SCOPED_TRACE(std::string(tensor) + (one_element ? " one element" : " whole tensor"));
      TensorMap bad = staged;
      auto& values = bad.at(tensor).values;
      // The element of largest magnitude (nonzero: dA_* are zero above the diagonal), or all of them.
      const auto largest = std::max_element(values.begin(), values.end(),
                                            [](double a, double b) { return std::abs(a) < std::abs(b); });
      for (auto it = values.begin(); it != values.end(); ++it)
        if (!one_element || it == largest) *it = static_cast<double>(static_cast<float>(*it * 1.001));
      const CaseResult c = judge(driver, bad);
      EXPECT_EQ(c.verdict(), Verdict::Fail);
      ASSERT_TRUE(c.stages);
      EXPECT_EQ(c.stages->first_diverging_stage.value_or("none"), stage);
      EXPECT_EQ(c.comparison.verdict, Verdict::Pass) << "the driver's gradients were not touched";
    }
}

// The first diverging stage is the earliest: a wrong WY (forward) and a wrong h_bwd name WY.
TEST_P(StageCheck, TheEarliestOfTwoWrongStagesIsNamed) {
  TensorMap bad = staged;
  for (const char* t : {"dh", "u"})
    for (auto& v : bad.at(t).values) v = static_cast<double>(static_cast<float>(v * 1.01));
  const CaseResult c = judge(driver, bad);
  ASSERT_TRUE(c.stages);
  EXPECT_EQ(c.stages->first_diverging_stage.value_or("none"), "WY");
}

// A wrong gradient of the driver fails the case's comparison (the stages still pass): dgk 0.1% off in one element; dq
// with every element a few ulps of its dtype up (a relative 4 u in 16 bits: ~2 ulps, over strict's 2.0x the floor;
// 32 u in fp32: 1.9e-6, over its 1e-6).
TEST_P(StageCheck, APlantedWrongGradientFails) {
  {
    TensorMap bad = driver;
    auto& values = bad.at("dgk").values;
    auto& v = *std::max_element(values.begin(), values.end(), [](double a, double b) { return std::abs(a) < std::abs(b); });
    v = static_cast<double>(static_cast<float>(v * 1.001));
    const CaseResult c = judge(bad, staged);
    EXPECT_EQ(c.verdict(), Verdict::Fail);
    for (const auto& t : c.comparison.tensors) EXPECT_EQ(t.verdict != Verdict::Pass, t.name == "dgk") << t.name;
    ASSERT_TRUE(c.stages);
    EXPECT_FALSE(c.stages->first_diverging_stage);
  }
  {
    TensorMap bad = driver;
    const double k = spec.dtype == DType::F32 ? 32.0 : 4.0;
    for (auto& v : bad.at("dq").values) v = round_to_dtype(v * (1.0 + k * dtype_unit_roundoff(spec.dtype)), spec.dtype);
    const CaseResult c = judge(bad, staged);
    EXPECT_EQ(c.verdict(), Verdict::Fail);
  }
}

// A tensor the kernel does not return is a failure of ours, not a tensor skipped.
TEST_P(StageCheck, AMissingTensorFails) {
  {
    TensorMap bad = driver;
    bad.erase("dh0");
    const CaseResult c = judge(bad, staged);
    EXPECT_EQ(c.verdict(), Verdict::Fail);
    ASSERT_EQ(c.failures.size(), 1u);
    EXPECT_NE(c.failures[0].find("dh0"), std::string::npos) << c.failures[0];
  }
  {
    TensorMap bad = staged;
    bad.erase("dw");
    const CaseResult c = judge(driver, bad);
    EXPECT_EQ(c.verdict(), Verdict::Fail);
    ASSERT_EQ(c.failures.size(), 1u);
    EXPECT_NE(c.failures[0].find("dw"), std::string::npos) << c.failures[0];
  }
  // A recurrent backward's case (no staged run) judges the gradients only.
  CaseResult c;
  judge_backward_case(driver, nullptr, exact.gradients, nullptr, strict(), options_of(spec, C), c);
  EXPECT_EQ(c.verdict(), Verdict::Pass);
  EXPECT_FALSE(c.stages);
}

INSTANTIATE_TEST_SUITE_P(DtypesAndVarlen, StageCheck,
                         ::testing::Combine(::testing::Values(DType::F32, DType::BF16), ::testing::Bool()),
                         [](const auto& info) {
                           return std::string(dtype_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_varlen" : "");
                         });

// `dplr stages --compare FILE` judges what a foreign file holds: missing stages are listed, not judged.
TEST(StageCheckForeign, OnlyWhatTheFileHoldsIsJudged) {
  const CaseSpec spec = small_spec(DType::F32, false);
  const Exact e = exact_of(spec, 16);
  TensorMap some;
  for (const char* t : {"w", "u", "dh"}) some[t] = e.stages.at(t).to_tensor(DType::F32);
  const StageJudgement j = judge_stages(some, e.stages, strict(), options_of(spec, 16));
  EXPECT_EQ(j.section.results.size(), 3u);
  EXPECT_FALSE(j.section.first_diverging_stage);
  EXPECT_TRUE(std::find(j.missing.begin(), j.missing.end(), "dA_qk") != j.missing.end());
  // skip: a name judged elsewhere (the forward cases judge ht against the exact recurrence).
  const StageJudgement skipped = judge_stages(as_staged(e.stages, DType::F32), e.stages, strict(), options_of(spec, 16), {"ht"});
  for (const auto& r : skipped.section.results) EXPECT_NE(r.result.name, "ht");
}

// ---- case files of the backward kernels -------------------------------------------------------------------

TEST(BackwardCaseFile, WrittenAndReadBackAndRefusedWithoutDo) {
  const auto folder = std::filesystem::temp_directory_path() / "dplr-stage-check-test";
  std::filesystem::remove_all(folder);
  CaseSpec spec = small_spec(DType::BF16, true);
  const DplrProblem p = generate_case(spec);
  const auto path = write_case_file(folder, "bwd", p, spec, "chunk-bwd", 32, "test", "test");
  const CaseFile read = read_case_file(path);
  EXPECT_EQ(read.kernel, "chunk-bwd");
  EXPECT_EQ(read.chunk_size, 32);
  EXPECT_TRUE(read.problem.grad_o.has_value());
  const auto recurrent = write_case_file(folder, "rec", p, spec, "recurrent-bwd", 0, "test", "test");
  EXPECT_EQ(read_case_file(recurrent).kernel, "recurrent-bwd");
  EXPECT_THROW(read_case_file(write_case_file(folder, "bad-c", p, spec, "chunk-bwd", 0, "test", "test")), InputError);
  EXPECT_THROW(read_case_file(write_case_file(folder, "bad-r", p, spec, "recurrent-bwd", 16, "test", "test")), InputError);
  spec.with_backward = false;
  const DplrProblem no_do = generate_case(spec);
  try {
    read_case_file(write_case_file(folder, "no-do", no_do, spec, "recurrent-bwd", 0, "test", "test"));
    FAIL() << "a backward case file without do was accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("'do'"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(folder);
}

}  // namespace
}  // namespace dplr
