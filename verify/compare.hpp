// Comparing a run's tensors with the exact answer (`dplr verify`) or with another run (`dplr diff`), tensor
// by tensor, under a tolerance policy.
//
// Judged dtype. Each tensor's floor ratio and policy lookup use the lower precision of its storage dtype
// and the case's working dtype (the inputs' precision, working_dtype_of). A bf16 kernel that keeps its state
// in fp32 stores ht, dgk and dh0 in fp32, yet every product behind them had bf16 operands: judged against the
// fp32 floor, fla's chunk ht would be 4e4x "off"; judged against the bf16 floor it is 0.58x, which is the
// statement a user can act on (and the one issue 5's targets make). ulps stay in the storage dtype.
#pragma once
#include <map>
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
  // Varlen packing for the locality figures; empty: the actual side's cu_seqlens tensor, if any.
  std::optional<std::vector<std::int64_t>> cu_seqlens{};
  std::int64_t block_tokens = kDefaultBlockTokens;  // tokens per block of the locality figures
  // Conditioning floors by tensor name (verify/conditioning.hpp); a tensor named here is judged against the
  // larger of its rounding floor and this. nullptr: rounding floors alone.
  const std::map<std::string, double>* conditioning = nullptr;
  // The kernel's algorithm computed in plain fp32 on the CPU (the recurrence or the chunk form in float: what
  // verify/conditioning.hpp's implementation floors come from). A 16-bit tensor named here carries that
  // implementation's misrounded fraction, stored in the tensor's dtype, and its misrounded limit is at least twice
  // it (tolerance.cpp). nullptr: none.
  const std::map<std::string, ExactTensor>* implementation = nullptr;
  // Tensors measured at once (0: one a core); each measures on its own thread, the results in contract order.
  int threads = 1;
};

// `dplr diff`: B is the expected side. Floors: measured from B where B's dtype is more precise than the
// judged dtype (an fp64 recording), else the nominal floor of the judged dtype (FloorSource::Nominal).
struct DiffOptions {
  std::optional<DType> working_dtype{};  // empty: working_dtype_of(A)
  std::optional<std::vector<std::int64_t>> cu_seqlens{};
  std::int64_t block_tokens = kDefaultBlockTokens;
};

// Every name present in both maps, compared under the policy. Throws InputError when no name is shared
// (listing both sides' names), or when a tensor's shapes differ (naming the tensor and both shapes).
ComparisonResult compare(const TensorMap& actual, const ExactTensorMap& exact, const TolerancePolicy& policy,
                         const CompareOptions& options = {});

// `dplr diff A B`: B plays "expected" (metrics.hpp, compute_diff_metrics), judged by the same policies as
// verify; floors as DiffOptions says.
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

// Where a tensor's elements sit (metrics.hpp TensorLayout), from its contract or stage name and shape:
// h0, ht, dht, dh0 are states [N, H, K, V]; h, dh chunk states [B', NT, H, K, V]; any other rank-4 tensor
// is [B, T, H, X]. cu_seqlens apply to token tensors whose shape packs them ([1, cu.back(), H, X]).
// Empty for other ranks (no locality figures).
std::optional<TensorLayout> layout_for(std::string_view name, const std::vector<std::int64_t>& shape,
                                       const std::vector<std::int64_t>& cu_seqlens, std::int64_t block_tokens);

// o, ht, dq, dk, dv, da, db, dgk, dh0 first in that order, then the other names alphabetically.
std::vector<std::string> contract_order(std::vector<std::string> names);

}  // namespace dplr
