// Shared helpers for the reference tests.
#pragma once
#include <gtest/gtest.h>

#include <cmath>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/reference.hpp"

namespace dplr::testing {

inline ReferenceResult run(const DplrProblem& p, const char* precision, std::int64_t interval = 0) {
  ReferenceOptions options;
  options.precision = Precision::parse(precision);
  options.checkpoint_interval = interval;
  return run_reference(p, options);
}

// max_i |x_i - y_i| / max(max_i |y_i|, tiny), on the leading doubles.
inline double max_relative_difference(const ExactTensor& x, const ExactTensor& y) {
  EXPECT_EQ(x.shape, y.shape);
  double diff = 0.0, scale = 1e-300;
  for (std::int64_t i = 0; i < y.numel(); ++i) {
    diff = std::max(diff, std::fabs(x.value(i) - y.value(i)));
    scale = std::max(scale, std::fabs(y.value(i)));
  }
  return diff / scale;
}

inline bool bitwise_equal(const ExactTensor& x, const ExactTensor& y) {
  return x.shape == y.shape && x.limbs == y.limbs && x.parts == y.parts;
}

}  // namespace dplr::testing
