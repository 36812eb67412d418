// How far one tensor is from its expected values: the numbers a verdict and a report are made of.
//
//   rel RMSE     = ||actual - expected||_2 / ||expected||_2                  (fla's ratio)
//   floor        = rel RMSE of round(expected, floor dtype) against expected  (the best any result stored
//                  in that dtype can do: the correctly rounded answer)
//   floor ratio  = rel RMSE / floor                                           (1.0: as good as correctly rounded)
//   rel error_i  = |a_i - e_i| / max(|e_i|, kRelativeFloor * RMS(expected))
//   ulp error_i  = |a_i - e_i| / dtype_ulp(e_i, storage dtype)
//
// "expected" is the exact reference rounded to double (ExactTensor::rounded(), for `dplr verify`) or a
// second file's tensor (`dplr diff A B`, where B plays the expected side and nothing is exact).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/dtype.hpp"

namespace dplr {

// Near-zero elements are judged against a floor of kRelativeFloor x RMS(expected) in the max relative error.
// Why this value: a kernel's absolute error on an element comes from sums over terms of the tensor's own
// scale, so an element far below the RMS measures cancellation, not the kernel. 2^-6 (~1.6% of the RMS)
// leaves ~99% of a normally distributed tensor judged elementwise (P(|z| < 0.0156) ~ 1.2%), while an
// element at zero can inflate its relative error by at most 64x its absolute error in RMS units.
inline constexpr double kRelativeFloor = 0x1p-6;

// The expected rel RMSE of correct rounding to a dtype with unit roundoff u, for values whose significands
// are log-uniformly spread: sqrt((u^2/3) * E[1/m^2]), m in [1, 2) with density 1/(m ln 2), = 0.4247 u.
// (Measured on fla's recordings: bf16 1.66e-3 = 0.425 u, fp16 2.08e-4, fp32 2.5e-8.)
double nominal_rounding_floor(DType dtype);

// When the measured floor is below kMinimumFloorFraction x the nominal floor, the nominal floor times this
// fraction is used instead. This happens when rounding to the floor dtype is exact or nearly so: floor dtype
// F64 (expected values are doubles already), all-zero or small-integer tensors. Dividing by a floor of zero
// (or of one stray rounding) would make the ratio infinite or meaningless; with the substitute, a result
// equal to the expected values still has ratio 0 and one a few ulps off gets a ratio of a few.
inline constexpr double kMinimumFloorFraction = 0.5;

// log2 relative-error histogram: bin i counts elements with floor(log2(rel error)) == kHistogramMinLog2 + i,
// the first bin also everything below (rel < 2^-59), the last also everything above (rel >= 1).
// Elements equal to their expected value (rel error 0) are counted apart, in `exact_equal`.
inline constexpr int kHistogramMinLog2 = -60;
inline constexpr int kHistogramMaxLog2 = 0;
inline constexpr int kHistogramBins = kHistogramMaxLog2 - kHistogramMinLog2 + 1;

struct ErrorHistogram {
  std::int64_t exact_equal = 0;
  std::vector<std::int64_t> counts = std::vector<std::int64_t>(kHistogramBins, 0);
};

struct NonFiniteCounts {
  std::int64_t actual_nan = 0, actual_inf = 0;
  std::int64_t expected_nan = 0, expected_inf = 0;
  // Elements where actual or expected is infinite and the two are not the same infinity.
  std::int64_t inf_mismatch = 0;
  std::optional<std::vector<std::int64_t>> first_actual_nan_index;
  bool any() const { return actual_nan + actual_inf + expected_nan + expected_inf > 0; }
};

// An element where an error statistic peaked: its multi-index and both values.
struct ErrorLocation {
  double error = 0.0;
  std::vector<std::int64_t> index;  // empty when no element was compared
  double actual = 0.0, expected = 0.0;
};

struct FloorRatio {
  DType dtype = DType::F64;         // the dtype the expected values were rounded to
  double measured_rel_rmse = 0.0;   // rel RMSE of round(expected, dtype)
  double used_rel_rmse = 0.0;       // the floor divided by: measured, or the substitute (see above)
  bool substituted = false;         // true when used_rel_rmse is kMinimumFloorFraction x nominal
  double ratio = 0.0;               // rel RMSE / used_rel_rmse
};

struct TensorMetrics {
  DType dtype = DType::F64;  // storage dtype of the actual tensor; ulps are of this dtype
  std::vector<std::int64_t> shape;
  std::int64_t elements = 0;
  std::int64_t compared = 0;  // elements finite on both sides; every statistic below is over these

  NonFiniteCounts nonfinite;
  ErrorLocation max_abs;        // |a - e|
  double rel_rmse = 0.0;        // 0 when both sides are zero, +inf when only expected is
  double expected_rms = 0.0;    // RMS of the compared expected values
  double relative_floor = 0.0;  // kRelativeFloor x expected_rms
  ErrorLocation max_rel;        // |a - e| / max(|e|, relative_floor)
  ErrorLocation max_ulp;        // |a - e| / dtype_ulp(e, dtype)
  double p99_ulp = 0.0;         // 99th percentile of the ulp errors (nearest rank)
  std::optional<FloorRatio> floor;  // absent in `diff` unless asked for
  ErrorHistogram histogram;
};

struct MetricsOptions {
  // The dtype whose correctly rounded answer is the floor. Empty: the actual tensor's dtype. Comparisons
  // pass the lower precision of the storage dtype and the case's working dtype (compare.hpp says why).
  std::optional<DType> floor_dtype{};
  bool compute_floor = true;
};

// actual and expected hold one tensor's values in row-major order, both of length prod(shape); `expected`
// is the exact answer rounded to double. Throws InputError when the lengths disagree with the shape.
TensorMetrics compute_metrics(std::span<const double> actual, std::span<const double> exact, DType actual_dtype,
                              const std::vector<std::int64_t>& shape, const MetricsOptions& options = {});

// `dplr diff A B`: B plays the expected side. Nothing is exact, so by default there is no floor ratio
// (a floor needs expected values more precise than the floor dtype); set options.compute_floor to get one
// anyway, against B rounded to the floor dtype (meaningful when B is more precise than A, e.g. an fp64
// recording). ulps are of A's dtype, measured at B's values.
TensorMetrics compute_diff_metrics(std::span<const double> actual, std::span<const double> expected,
                                   DType actual_dtype, const std::vector<std::int64_t>& shape,
                                   MetricsOptions options = {.floor_dtype = std::nullopt, .compute_floor = false});

// Multi-index of flat (row-major) element `flat` of a tensor of `shape`.
std::vector<std::int64_t> unravel_index(std::int64_t flat, const std::vector<std::int64_t>& shape);

// The float dtype with fewer significand bits (the lower precision); a if equal or if either is an
// integer dtype (an integer tensor is judged as itself).
DType lower_precision(DType a, DType b);

}  // namespace dplr
