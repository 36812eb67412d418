// What `dplr verify` does to one recorded case, as a library call, so the command line and the Python
// package (python/) build the same report from the same code: the exact answer of the inputs a file
// holds, and every output and gradient it holds compared with it under a policy.
#pragma once
#include <optional>
#include <string>

#include "core/tensor.hpp"
#include "reference/precision.hpp"
#include "reference/problem.hpp"
#include "reference/reference.hpp"
#include "reports/report.hpp"
#include "verify/conventions.hpp"
#include "verify/tolerance.hpp"

namespace dplr {

// The case a file holds: its tensors under the contract's names, metadata `scale` (a number; absent:
// K^-1/2) and `reverse` ("true", "True" or "1"). InputError names `origin` when the metadata is malformed.
DplrProblem problem_from_file(const TensorFile& file, std::string_view origin);

struct VerifyCaseOptions {
  Precision precision = Precision::parse("dd");
  bool certify = true;  // estimate the reference's bits by a second run (estimate says how)
  EstimateMethod estimate = EstimateMethod::Repeat;
  // Set: the reference in ball arithmetic instead (run_rigorous_reference; precision and certify are ignored),
  // the case's bits proven by its radii.
  std::optional<RigorousOptions> rigorous;
  int threads = 0;      // 0: all cores
  TensorConvention convention;  // the file's names and layout (verify/conventions.hpp)
  std::int64_t block_tokens = kDefaultBlockTokens;  // tokens per block of the local gate (verify/metrics.hpp)
};


// The case's report entry (id = origin): shape, dtypes, the reference run, the comparison, notes (the
// file's `producer` metadata, the convention's mapping, inputs outside the intended domain), under the
// file's names. InputError, naming `origin`, when the file is not a case (problem_from_file), holds no
// output or gradient, or gradients without `do`. `exact`, when given, receives the reference run (in the
// contract's names and layout). The caller adds source.files (it knows where the tensors came from). The file
// is taken by value: a caller done with it moves it in, and no tensor is copied.
CaseResult verify_case(TensorFile file, const TolerancePolicy& policy, const VerifyCaseOptions& options,
                       std::string_view origin, ReferenceResult* exact = nullptr);

}  // namespace dplr
