#include "verify/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace dplr {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Sum of squares kept as scale^2 * ssq (LAPACK's dnrm2 scheme), so norms of tensors with values near the
// double range neither overflow nor lose their small terms to underflow.
class ScaledSumOfSquares {
 public:
  void add(double x) {
    const double magnitude = std::fabs(x);
    if (magnitude == 0.0) return;
    if (scale_ < magnitude) {
      ssq_ = 1.0 + ssq_ * (scale_ / magnitude) * (scale_ / magnitude);
      scale_ = magnitude;
    } else {
      ssq_ += (magnitude / scale_) * (magnitude / scale_);
    }
  }
  double norm() const { return scale_ == 0.0 ? 0.0 : scale_ * std::sqrt(ssq_); }

 private:
  double scale_ = 0.0;
  double ssq_ = 0.0;
};

// ||difference|| / ||reference||, with the convention that 0/0 = 0 (both exact) and x/0 = inf.
double norm_ratio(double difference_norm, double reference_norm) {
  if (difference_norm == 0.0) return 0.0;
  if (reference_norm == 0.0) return kInfinity;
  return difference_norm / reference_norm;
}

int histogram_bin(double relative_error) {
  if (relative_error >= 1.0) return kHistogramBins - 1;  // also +inf
  // frexp: rel = m * 2^e with m in [0.5, 1), so floor(log2(rel)) = e - 1 exactly (no log rounding).
  int exponent = 0;
  std::frexp(relative_error, &exponent);
  const int floor_log2 = exponent - 1;
  return std::clamp(floor_log2, kHistogramMinLog2, kHistogramMaxLog2) - kHistogramMinLog2;
}

std::int64_t shape_numel(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) {
    if (d < 0) throw InputError(fmt::format("tensor shape {} has a negative dimension", shape_string(shape)));
    n *= d;
  }
  return n;
}

TensorMetrics measure(std::span<const double> actual, std::span<const double> expected, DType actual_dtype,
                      const std::vector<std::int64_t>& shape, const MetricsOptions& options) {
  const std::int64_t numel = shape_numel(shape);
  if (static_cast<std::int64_t>(actual.size()) != numel || static_cast<std::int64_t>(expected.size()) != numel)
    throw InputError(fmt::format("metrics: shape {} has {} elements, but actual holds {} and expected {}",
                                 shape_string(shape), numel, actual.size(), expected.size()));

  TensorMetrics m;
  m.dtype = actual_dtype;
  m.shape = shape;
  m.elements = numel;

  // First pass: non-finite bookkeeping and the norms (the relative floor needs the RMS before the second).
  std::vector<bool> comparable(static_cast<std::size_t>(numel));
  ScaledSumOfSquares difference_squares, expected_squares;
  // Where each statistic peaks, as flat indices; turned into locations once, at the end.
  std::int64_t max_abs_at = -1, max_rel_at = -1, max_ulp_at = -1;
  double max_abs = -1.0;
  for (std::int64_t i = 0; i < numel; ++i) {
    const double a = actual[i], e = expected[i];
    const bool a_finite = std::isfinite(a), e_finite = std::isfinite(e);
    if (std::isnan(a)) {
      if (m.nonfinite.actual_nan++ == 0) m.nonfinite.first_actual_nan_index = unravel_index(i, shape);
    }
    if (std::isinf(a)) ++m.nonfinite.actual_inf;
    if (std::isnan(e)) ++m.nonfinite.expected_nan;
    if (std::isinf(e)) ++m.nonfinite.expected_inf;
    if ((std::isinf(a) || std::isinf(e)) && !std::isnan(a) && !std::isnan(e) && a != e) ++m.nonfinite.inf_mismatch;
    if (!(a_finite && e_finite)) continue;
    comparable[i] = true;
    ++m.compared;
    const double difference = a - e;
    difference_squares.add(difference);
    expected_squares.add(e);
    if (std::fabs(difference) > max_abs) {
      max_abs = std::fabs(difference);
      max_abs_at = i;
    }
  }
  if (m.compared == 0) return m;
  const double expected_norm = expected_squares.norm();
  m.rel_rmse = norm_ratio(difference_squares.norm(), expected_norm);
  m.expected_rms = expected_norm / std::sqrt(static_cast<double>(m.compared));
  m.relative_floor = kRelativeFloor * m.expected_rms;

  // Second pass: elementwise relative and ulp errors, the histogram, and the floor.
  std::vector<double> ulp_errors;
  ulp_errors.reserve(static_cast<std::size_t>(m.compared));
  ScaledSumOfSquares rounding_squares;
  const DType floor_dtype = options.floor_dtype.value_or(actual_dtype);
  double max_rel = -1.0, max_ulp = -1.0;
  for (std::int64_t i = 0; i < numel; ++i) {
    if (!comparable[i]) continue;
    const double a = actual[i], e = expected[i];
    const double abs_error = std::fabs(a - e);
    const double denominator = std::max(std::fabs(e), m.relative_floor);
    const double rel = abs_error == 0.0 ? 0.0 : (denominator == 0.0 ? kInfinity : abs_error / denominator);
    const double ulps = abs_error / dtype_ulp(e, actual_dtype);
    ulp_errors.push_back(ulps);
    if (rel > max_rel) {
      max_rel = rel;
      max_rel_at = i;
    }
    if (ulps > max_ulp) {
      max_ulp = ulps;
      max_ulp_at = i;
    }
    if (a == e) ++m.histogram.exact_equal;
    else ++m.histogram.counts[histogram_bin(rel)];
    if (options.compute_floor) rounding_squares.add(round_to_dtype(e, floor_dtype) - e);
  }

  auto location = [&](double error, std::int64_t at) {
    return ErrorLocation{error, unravel_index(at, shape), actual[at], expected[at]};
  };
  m.max_abs = location(max_abs, max_abs_at);
  m.max_rel = location(max_rel, max_rel_at);
  m.max_ulp = location(max_ulp, max_ulp_at);

  // p99 by nearest rank: the smallest value with at least 99% of the errors at or below it.
  const auto rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(ulp_errors.size())));
  const auto nth = ulp_errors.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(rank, 1) - 1);
  std::nth_element(ulp_errors.begin(), nth, ulp_errors.end());
  m.p99_ulp = *nth;

  if (options.compute_floor) {
    FloorRatio floor;
    floor.dtype = floor_dtype;
    const double measured = norm_ratio(rounding_squares.norm(), expected_norm);
    // An all-zero expected tensor rounds exactly: measured 0, like any exactly representable tensor.
    floor.measured_rel_rmse = std::isfinite(measured) ? measured : 0.0;
    const double minimum = kMinimumFloorFraction * nominal_rounding_floor(floor_dtype);
    floor.substituted = floor.measured_rel_rmse < minimum;
    floor.used_rel_rmse = floor.substituted ? minimum : floor.measured_rel_rmse;
    floor.ratio = m.rel_rmse / floor.used_rel_rmse;
    m.floor = floor;
  }
  return m;
}

}  // namespace

double nominal_rounding_floor(DType dtype) {
  // sqrt(E[1/m^2] / 3) with E[1/m^2] = 3 / (8 ln 2) for log-uniform m in [1, 2).
  static const double factor = std::sqrt(1.0 / (8.0 * std::log(2.0)));
  const double u = dtype_unit_roundoff(dtype);
  // Integer dtypes round exactly at unit spacing; their "floor" is taken as that of one unit in 2^53.
  return factor * (u > 0.0 ? u : dtype_unit_roundoff(DType::F64));
}

TensorMetrics compute_metrics(std::span<const double> actual, std::span<const double> exact, DType actual_dtype,
                              const std::vector<std::int64_t>& shape, const MetricsOptions& options) {
  return measure(actual, exact, actual_dtype, shape, options);
}

TensorMetrics compute_diff_metrics(std::span<const double> actual, std::span<const double> expected,
                                   DType actual_dtype, const std::vector<std::int64_t>& shape,
                                   MetricsOptions options) {
  return measure(actual, expected, actual_dtype, shape, options);
}

std::vector<std::int64_t> unravel_index(std::int64_t flat, const std::vector<std::int64_t>& shape) {
  std::vector<std::int64_t> index(shape.size());
  for (std::size_t d = shape.size(); d-- > 0;) {
    const std::int64_t extent = shape[d] > 0 ? shape[d] : 1;
    index[d] = flat % extent;
    flat /= extent;
  }
  return index;
}

DType lower_precision(DType a, DType b) {
  if (!dtype_is_float(a) || !dtype_is_float(b)) return a;
  return dtype_significand_bits(b) < dtype_significand_bits(a) ? b : a;
}

}  // namespace dplr
