// Shared helpers for the chunk-form tests and the float study.
#pragma once
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "generators/distributions.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/reference.hpp"

namespace dplr::chunk_testing {

// The tensors the chunk form and the recurrence both produce.
inline const std::vector<std::string>& shared_outputs() {
  static const std::vector<std::string> names{"o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"};
  return names;
}

inline ReferenceResult recurrence(const DplrProblem& p, const Precision& precision) {
  ReferenceOptions options;
  options.precision = precision;
  return run_reference(p, options);
}

// Relative RMSE on the leading doubles: sqrt(sum (x - y)^2 / sum y^2); infinity when x has a non-finite
// element (y is the exact one).
inline double relative_rmse(const ExactTensor& x, const ExactTensor& y) {
  double err = 0.0, norm = 0.0;
  for (std::int64_t i = 0; i < y.numel(); ++i) {
    if (!std::isfinite(x.value(i))) return std::numeric_limits<double>::infinity();
    err += (x.value(i) - y.value(i)) * (x.value(i) - y.value(i));
    norm += y.value(i) * y.value(i);
  }
  return norm > 0.0 ? std::sqrt(err / norm) : std::sqrt(err);
}

inline bool all_finite(const ExactTensor& t) {
  for (std::int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t.value(i))) return false;
  return true;
}

}  // namespace dplr::chunk_testing
