// Gradient check: high-precision finite differences against a backward, the algorithm behind `dplr gradcheck`.
//
// The backward checked is ours (the analytic BPTT of reference/recurrent.hpp) or the gradients a recording holds
// (dq ... dh0 from any kernel), so a foreign backward can be checked without ours. Directional mode compares
// <g, d> with (L(x + eps d) - L(x - eps d)) / 2 eps for random normal d per input and reports
// sqrt(sum (fd - <g,d>)^2 / sum fd^2) over the directions, an estimate of the gradient's relative RMSE;
// per-element mode (small cases) compares every element and reports the worst relative error (floored at the
// gradient's RMS). eps = 2^(-bits/3) of the working precision.
//
// Our GPU backward (`dplr gradcheck --gpu`): the kernel's gradients are checked (a) against the exact analytic
// backward under a tolerance policy (compare.hpp, as `dplr verify` judges a kernel) and (b) as a recording is, by
// the finite differences of the exact forward above.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/precision.hpp"
#include "verify/compare.hpp"
#include "verify/tolerance.hpp"
#include "reference/problem.hpp"

namespace dplr {

// The default tolerance for recorded gradients (a kernel's, rounded to its dtype); ours get 2^(-bits/2).
inline constexpr double kRecordedGradientTolerance = 1e-2;
// The default finite-difference tolerance of our GPU gradients from fp32 inputs: 10x their tested bar (relative
// RMSE <= 1e-6, tests/gpu/test_gpu_recurrent_bwd). 16-bit inputs get kRecordedGradientTolerance (their gradients
// are rounded to the dtype: ~2e-3 relative for bf16).
inline constexpr double kGpuFp32GradientTolerance = 1e-5;

struct GradcheckOptions {
  Precision precision{Arithmetic::QuadDouble, 0};
  int directions = 4;
  bool per_element = false;
  double tolerance = std::numeric_limits<double>::quiet_NaN();  // NaN: the default above
  int threads = 0;
  std::int64_t max_elements = 4096;  // per input, per-element mode
  std::string origin;                // names the case in progress lines and errors
};

struct GradientCheck {
  std::string gradient;        // "dq", ...
  bool in_recording = true;    // false: a recorded check whose file lacks this gradient (not checked)
  int checks = 0;              // directions, or elements
  double finite_difference = 0.0, backward = 0.0;  // the first direction's, or the worst element's
  double error = 0.0;          // relative, see the top of the file
  bool pass = false;
};

struct GradcheckResult {
  int bits = 0;
  double epsilon_log2 = 0.0;
  double tolerance = 0.0;
  std::vector<GradientCheck> gradients;  // one per differentiable input the problem has
  bool all_pass() const;
};

// Checks ours (recorded == nullptr) or the recorded gradients. The problem needs `do`; throws InputError when it
// has none, when a recorded gradient's shape is not its input's, or when per-element mode would pass
// max_elements.
// bits, epsilon_log2 and tolerance of a check with these options (no gradient checked yet).
GradcheckResult gradcheck_settings(const GradcheckOptions& options, bool recorded);

// `on_gradient`, when given, is called as each gradient's check finishes (the CLI prints and flushes a line:
// a long check shows its progress also into a pipe).
GradcheckResult check_gradients(const DplrProblem& problem, const GradcheckOptions& options,
                                const TensorMap* recorded = nullptr,
                                const std::function<void(const GradientCheck&)>& on_gradient = {});

// ---- our GPU backward --------------------------------------------------------------------------------------
// The GPU backward kernels `gradcheck --gpu --kernel NAME` names: every kernel built in this tree, then those
// planned but not built (run_gpu_backward refuses them, saying so).
std::vector<std::string> gpu_backward_kernel_names();
// Whether `kernel` names a GPU backward built in this tree; require_gpu_backward_kernel throws InputError unless it
// does (for a planned one: "not built yet").
bool gpu_backward_kernel_built(std::string_view kernel);
void require_gpu_backward_kernel(std::string_view kernel);
// The named kernel's gradients of the problem (verify/gpu_runner.hpp), named as the reference names them.
// chunk_size is read by the chunk kernel only. InputError for a kernel not built in this tree, or without a
// device (the message says why there is none).
TensorMap run_gpu_backward(const DplrProblem& problem, std::string_view kernel, int chunk_size);
// The finite-difference tolerance `gradcheck --gpu` uses unless one is given (see kGpuFp32GradientTolerance).
double gpu_gradient_tolerance(const DplrProblem& problem);
// (a) The GPU gradients against the exact analytic backward at `precision`, judged under `policy` at the
// problem's working dtype (the inputs'), with its cu_seqlens for the locality figures.
ComparisonResult compare_with_exact_backward(const DplrProblem& problem, const TensorMap& gradients,
                                             const TolerancePolicy& policy, const Precision& precision, int threads);

}  // namespace dplr
