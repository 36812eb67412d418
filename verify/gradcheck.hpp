// Gradient check: high-precision finite differences against a backward, the algorithm behind `dplr gradcheck`.
//
// The backward checked is ours (the analytic BPTT of reference/recurrent.hpp) or the gradients a recording holds
// (dq ... dh0 from any kernel), so a foreign backward can be checked without ours. Directional mode compares
// <g, d> with (L(x + eps d) - L(x - eps d)) / 2 eps for random normal d per input and reports
// sqrt(sum (fd - <g,d>)^2 / sum fd^2) over the directions, an estimate of the gradient's relative RMSE;
// per-element mode (small cases) compares every element and reports the worst relative error (floored at the
// gradient's RMS). eps = 2^(-bits/3) of the working precision.
#pragma once
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/precision.hpp"
#include "reference/problem.hpp"

namespace dplr {

// The default tolerance for recorded gradients (a kernel's, rounded to its dtype); ours get 2^(-bits/2).
inline constexpr double kRecordedGradientTolerance = 1e-2;

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

}  // namespace dplr
