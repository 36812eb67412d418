// Judging a chunk kernel's stage tensors and a backward kernel's gradients against the exact answers: the one place
// that builds a report's StageSection (`dplr check`'s staged cases, `dplr stages --compare FILE` and `--gpu`) and
// that picks the tensors a backward case is judged on. No GPU here: what the kernels return comes in as a TensorMap,
// so the tests plant a wrong stage or gradient in one and see the verdict fail (tests/verify/stage_check_test.cpp).
#pragma once
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/exact_tensor.hpp"
#include "reports/report.hpp"
#include "verify/compare.hpp"
#include "verify/tolerance.hpp"

namespace dplr {

// The stages of the chunk form's backward, in pipeline order (reference/chunk_stages.hpp's table after "o").
const std::vector<std::string>& chunk_backward_stages();

// Every stage of chunk_stage_table() in pipeline order: the kernel's tensors of that stage against the oracle's
// (compare_stage), and the first stage with a tensor that does not pass named. `skip`: names not judged here (ht,
// where the case judges it against the exact recurrence). `missing`: the oracle's tensors the kernel did not return
// (every stage, backward included, when the oracle has the backward); a run of our own staged kernels must return
// them all, and the sweep fails a case that misses one (a foreign file may hold only some: `dplr stages --compare`
// judges what it holds).
struct StageJudgement {
  StageSection section;
  std::vector<std::string> missing;
};
StageJudgement judge_stages(const TensorMap& kernel, const ExactTensorMap& oracle, const TolerancePolicy& policy,
                            const CompareOptions& options, const std::vector<std::string>& skip = {});

// A backward kernel's gradients against the exact ones: the contract's gradients (dq, dk, dv, da, db, dgk, dh0) and
// nothing else of `kernel` (a staged run's intermediates are judged by judge_stages against the stage oracles), and
// the exact gradients the kernel did not return in `missing`.
struct GradientJudgement {
  ComparisonResult comparison;
  std::vector<std::string> missing;
};
GradientJudgement judge_gradients(const TensorMap& kernel, const ExactTensorMap& exact, const TolerancePolicy& policy,
                                  const CompareOptions& options);

// One backward case of `dplr check` into `c`: c.comparison the gradients against `exact` (the recurrence), and with
// `stages` and `oracle` (a staged run and the exact chunk-form stages) c.stages every stage, forward and backward,
// against its oracle. A gradient or stage tensor the kernel did not return is one of c.failures.
void judge_backward_case(const TensorMap& gradients, const TensorMap* stages, const ExactTensorMap& exact,
                         const ExactTensorMap* oracle, const TolerancePolicy& policy, const CompareOptions& options,
                         CaseResult& c);

}  // namespace dplr
