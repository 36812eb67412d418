// Comparing a run's tensors with the exact answer (`dplr verify`) or with another run (`dplr diff`), tensor
// by tensor, under a tolerance policy.
//
// Judged dtype. Each tensor's floor ratio and policy lookup use the lower precision of its storage dtype
// and the case's working dtype (the inputs' precision, working_dtype_of). A bf16 kernel that keeps its state
// in fp32 stores ht, dgk and dh0 in fp32, yet every product behind them had bf16 operands: judged against the
// fp32 floor, fla's chunk ht would be 4e4x "off"; judged against the bf16 floor it is 0.58x, which is the
// statement a user can act on (and the one issue 5's targets make). ulps stay in the storage dtype.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/exact_tensor.hpp"
#include "verify/metrics.hpp"
#include "verify/tolerance.hpp"

namespace dplr {

struct TensorResult {
  std::string name;
  DType dtype = DType::F64;      // storage dtype of the actual tensor
  DType judged_as = DType::F64;  // the floor dtype and the policy's dtype key
  TensorMetrics metrics;         // metrics.shape is the tensor's shape
  Tolerance tolerance;
  Verdict verdict = Verdict::Pass;
  std::string reason;
};

struct ComparisonResult {
  std::vector<TensorResult> tensors;          // contract order (contract_order)
  std::vector<std::string> only_in_actual;    // names not compared, sorted (inputs such as q usually)
  std::vector<std::string> only_in_expected;  // exact/B tensors the actual file lacks
  Verdict verdict = Verdict::Pass;            // the worst tensor verdict
};

struct CompareOptions {
  std::optional<DType> working_dtype{};  // empty: working_dtype_of(actual), else the tensor's own dtype
};

struct DiffOptions {
  std::optional<DType> working_dtype{};  // empty: working_dtype_of(A)
  bool floor_ratio = false;            // compute a floor from B (meaningful when B is more precise than A)
};

// Every name present in both maps, compared under the policy. Throws InputError when no name is shared
// (listing both sides' names), or when a tensor's shapes differ (naming the tensor and both shapes).
ComparisonResult compare(const TensorMap& actual, const ExactTensorMap& exact, const TolerancePolicy& policy,
                         const CompareOptions& options = {});

// `dplr diff A B`: B plays "expected" (metrics.hpp, compute_diff_metrics). Without a floor, floor-ratio
// limits cannot be evaluated; a tensor gated only by them passes with a "not gated" reason, so choose
// limits in rel_rmse/max_ulp/max_rel/max_abs for diff, or ask for the floor ratio.
ComparisonResult compare_diff(const TensorMap& a, const TensorMap& b, const TolerancePolicy& policy,
                              const DiffOptions& options = {});

// Stage-by-stage checking (issue 4): the tensors of one stage compared as compare() does, tagged with the
// stage; a stage whose tensors share no name with the exact stage gives no results (kernels need not write
// every intermediate).
struct StageResult {
  std::string stage;
  TensorResult result;
};
std::vector<StageResult> compare_stage(std::string_view stage, const TensorMap& actual, const ExactTensorMap& exact,
                                       const TolerancePolicy& policy, const CompareOptions& options = {});
// The first stage (in the order of `results`, i.e. pipeline order) with a tensor that does not pass.
std::optional<std::string> first_diverging_stage(const std::vector<StageResult>& results);

// The lowest-precision float dtype among the main inputs q, k, v, a, b (gk and h0 are often fp32 while the
// rest is 16-bit, as fla allows); if none is present, among all float tensors; empty when there is none.
std::optional<DType> working_dtype_of(const TensorMap& tensors);

// o, ht, dq, dk, dv, da, db, dgk, dh0 first in that order, then the other names alphabetically.
std::vector<std::string> contract_order(std::vector<std::string> names);

}  // namespace dplr
