#include "verify/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/tensor.hpp"

namespace dplr {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// Sum of squares by Blue's algorithm, as LAPACK 3.10's dnrm2: magnitudes below 2^-511, between, and above 2^486
// each summed in their own accumulator, scaled by a power of two so that no square overflows or underflows, so
// norms of tensors with values near the double range neither overflow nor lose their small terms. No division an
// element (the scheme before, dnrm2's older one, divided by the running scale: the comparison adds five squares an
// element, 1.2e9 of them for a training-scale recording).
class ScaledSumOfSquares {
 public:
  void add(double x) {
    const double magnitude = std::fabs(x);
    if (magnitude > kBig) big_ += (magnitude * kScaleBig) * (magnitude * kScaleBig);
    else if (magnitude < kSmall) small_ += (magnitude * kScaleSmall) * (magnitude * kScaleSmall);
    else medium_ += magnitude * magnitude;
  }
  double norm() const {
    if (big_ > 0.0) return std::sqrt(big_ + (medium_ * kScaleBig) * kScaleBig) / kScaleBig;  // small terms vanish
    if (small_ == 0.0) return std::sqrt(medium_);
    const double small_norm = std::sqrt(small_) / kScaleSmall;
    if (medium_ == 0.0) return small_norm;
    const double medium_norm = std::sqrt(medium_);
    const double low = std::min(small_norm, medium_norm), high = std::max(small_norm, medium_norm);
    return high * std::sqrt(1.0 + (low / high) * (low / high));
  }

 private:
  // LAPACK's la_constants for double: tsml, tbig, ssml, sbig.
  static constexpr double kSmall = 0x1p-511, kBig = 0x1p486, kScaleSmall = 0x1p537, kScaleBig = 0x1p-538;
  double small_ = 0.0, medium_ = 0.0, big_ = 0.0;
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

// The blocks of the locality figures: every element's block ("slot"), slots ordered by (sequence, head,
// block), so a group's blocks are contiguous.
class BlockMap {
 public:
  BlockMap(const TensorLayout& layout, const std::vector<std::int64_t>& shape) : kind_(layout.kind) {
    auto require = [&](std::size_t rank, std::string_view expected) {
      if (shape.size() != rank)
        throw InputError(fmt::format("locality: shape {}, expected {}", shape_string(shape), expected));
    };
    if (kind_ == TensorLayout::Kind::Tokens) {
      require(4, "[B, T, H, X]");
      if (layout.block_tokens < 1)
        throw InputError(fmt::format("locality: blocks of {} tokens, expected at least 1", layout.block_tokens));
      per_block_ = layout.block_tokens;
    } else if (kind_ == TensorLayout::Kind::States) {
      require(4, "[N, H, K, V]");
    } else {
      require(5, "[B', NT, H, K, V]");
    }
    const bool states = kind_ == TensorLayout::Kind::States;
    rows_ = shape[0];
    tokens_ = states ? 1 : shape[1];
    heads_ = states ? shape[1] : shape[2];
    inner_ = 1;
    for (std::size_t d = states ? 2 : 3; d < shape.size(); ++d) inner_ *= shape[d];
    const auto& cu = layout.cu_seqlens;
    if (kind_ == TensorLayout::Kind::Tokens && !cu.empty()) {
      if (rows_ != 1 || cu.front() != 0 || cu.back() != tokens_ || !std::is_sorted(cu.begin(), cu.end()))
        throw InputError(fmt::format("locality: cu_seqlens [{}] do not pack the {} tokens of shape {}",
                                     fmt::join(cu, ", "), tokens_, shape_string(shape)));
      for (std::size_t n = 0; n + 1 < cu.size(); ++n) add_sequence(0, cu[n], cu[n + 1]);
    } else {
      for (std::int64_t r = 0; r < rows_; ++r) add_sequence(r, 0, tokens_);
    }
  }

  std::int64_t slots() const { return static_cast<std::int64_t>(slots_.size()); }
  std::int64_t groups() const { return static_cast<std::int64_t>(sequences_.size()) * heads_; }
  const BlockMetrics& slot(std::int64_t i) const { return slots_[i]; }
  std::int64_t group_of(std::int64_t slot) const { return group_of_slot_[slot]; }
  bool states() const { return kind_ == TensorLayout::Kind::States; }

  // Calls f(flat element index, slot) for every element, in memory order.
  template <class F>
  void for_each(F&& f) const {
    std::int64_t flat = 0;
    for (const Sequence& seq : sequences_)
      for (std::int64_t t = seq.begin; t < seq.end; ++t) {
        // Elements of (row, t): the row's offset plus t; packed sequences share row 0.
        flat = ((seq.row * tokens_) + t) * heads_ * inner_;
        const std::int64_t block = (t - seq.begin) / per_block_;
        for (std::int64_t h = 0; h < heads_; ++h) {
          const std::int64_t slot = seq.first_slot + h * seq.blocks + block;
          for (std::int64_t x = 0; x < inner_; ++x) f(flat++, slot);
        }
      }
  }

 private:
  struct Sequence {
    std::int64_t row, begin, end, blocks, first_slot;
  };
  void add_sequence(std::int64_t row, std::int64_t begin, std::int64_t end) {
    const std::int64_t blocks = (end - begin + per_block_ - 1) / per_block_;
    const std::int64_t sequence = static_cast<std::int64_t>(sequences_.size());
    sequences_.push_back({row, begin, end, blocks, static_cast<std::int64_t>(slots_.size())});
    for (std::int64_t h = 0; h < heads_; ++h)
      for (std::int64_t j = 0; j < blocks; ++j) {
        BlockMetrics b;
        b.sequence = sequence;
        b.head = h;
        if (!states()) {
          b.token_begin = begin + j * per_block_;
          b.token_end = std::min(end, b.token_begin + per_block_);
        }
        slots_.push_back(b);
        group_of_slot_.push_back(sequence * heads_ + h);
      }
  }

  TensorLayout::Kind kind_;
  std::int64_t per_block_ = 1;  // tokens (or chunks) per block
  std::int64_t rows_ = 0, tokens_ = 0, heads_ = 0, inner_ = 0;
  std::vector<Sequence> sequences_;
  std::vector<BlockMetrics> slots_;
  std::vector<std::int64_t> group_of_slot_;
};

// Per-block and per-(sequence, head) figures (metrics.hpp has the definitions).
LocalityMetrics measure_locality(std::span<const double> actual, std::span<const double> expected,
                                 const std::vector<bool>& comparable, const std::vector<std::int64_t>& shape,
                                 const TensorLayout& layout, double floor, double expected_rms) {
  const BlockMap map(layout, shape);
  std::vector<ScaledSumOfSquares> block_error(map.slots()), block_expected(map.slots());
  std::vector<std::int64_t> block_count(map.slots());
  map.for_each([&](std::int64_t i, std::int64_t slot) {
    if (!comparable[i]) return;
    block_error[slot].add(actual[i] - expected[i]);
    block_expected[slot].add(expected[i]);
    ++block_count[slot];
  });

  LocalityMetrics out;
  out.layout = layout.kind;
  out.block_tokens = map.states() ? 0 : layout.block_tokens;
  out.floor = floor;
  out.groups_total = map.groups();
  std::vector<GroupMetrics> groups(map.groups());
  std::vector<ScaledSumOfSquares> group_error(map.groups()), group_expected(map.groups());
  std::vector<std::vector<double>> grid(map.groups());
  double worst = -1.0;
  for (std::int64_t slot = 0; slot < map.slots(); ++slot) {
    BlockMetrics b = map.slot(slot);
    const std::int64_t g = map.group_of(slot);
    b.elements = block_count[slot];
    const double error_norm = block_error[slot].norm(), expected_norm = block_expected[slot].norm();
    b.rel_rmse = norm_ratio(error_norm, expected_norm);
    if (b.elements > 0) {
      const double root = std::sqrt(static_cast<double>(b.elements));
      const double scale = std::max(expected_norm / root, kLocalScaleFloor * expected_rms);
      b.local_ratio = norm_ratio(error_norm / root, floor * scale);
    }
    group_error[g].add(error_norm);
    group_expected[g].add(expected_norm);
    grid[g].push_back(b.local_ratio);
    GroupMetrics& group = groups[g];
    group.sequence = b.sequence;
    group.head = b.head;
    if (b.elements > 0 && (group.worst_block.elements == 0 || b.local_ratio > group.worst_block.local_ratio))
      group.worst_block = b;
    if (b.elements >= kMinLocalBlockElements && b.local_ratio > worst) {
      worst = b.local_ratio;
      out.worst_block = b;
    }
  }
  for (std::int64_t g = 0; g < map.groups(); ++g)
    groups[g].rel_rmse = norm_ratio(group_error[g].norm(), group_expected[g].norm());
  if (static_cast<std::int64_t>(groups.size()) > kMaxLocalGroups) {
    std::partial_sort(groups.begin(), groups.begin() + kMaxLocalGroups, groups.end(),
                      [](const GroupMetrics& x, const GroupMetrics& y) {
                        return x.worst_block.local_ratio > y.worst_block.local_ratio;
                      });
    groups.resize(kMaxLocalGroups);
  } else if (map.slots() <= kMaxLocalGridBlocks) {
    out.grid = std::move(grid);
  }
  out.groups = std::move(groups);
  return out;
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
  const DType floor_dtype = options.floor_dtype.value_or(actual_dtype);
  m.elem_unit = dtype_unit_roundoff(floor_dtype);
  // Rounding's absolute part near zero (metrics.hpp): half the judged dtype's subnormal spacing.
  const double elem_underflow = m.elem_unit > 0.0 ? 0.5 * dtype_ulp(0.0, floor_dtype) : 0.0;

  // First pass: non-finite bookkeeping and the norms (the relative floor needs the RMS before the second).
  std::vector<bool> comparable(static_cast<std::size_t>(numel));
  ScaledSumOfSquares difference_squares, expected_squares;
  // Where each statistic peaks, as flat indices; turned into locations once, at the end.
  std::int64_t max_abs_at = -1, max_rel_at = -1, max_ulp_at = -1, max_elem_at = -1;
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
    // An infinity that is the exact value correctly rounded (past the dtype's largest finite value: fp16 above
    // 65520) is no mismatch; the property sweep met fp16 o of 41152-65600 at the edge of stability (session 7).
    const bool rounded_overflow = options.expected_is_exact && std::isinf(a) && e_finite && round_to_dtype(e, actual_dtype) == a;
    if ((std::isinf(a) || std::isinf(e)) && !std::isnan(a) && !std::isnan(e) && a != e && !rounded_overflow)
      ++m.nonfinite.inf_mismatch;
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

  // Second pass: elementwise relative, ulp and elem errors, misrounding, the histogram, and the floor.
  std::vector<double> ulp_errors;
  ulp_errors.reserve(static_cast<std::size_t>(m.compared));
  ScaledSumOfSquares rounding_squares;
  const bool count_misrounded =
      options.expected_is_exact && (actual_dtype == DType::BF16 || actual_dtype == DType::F16);
  std::int64_t misrounded = 0;
  double max_rel = -1.0, max_ulp = -1.0, max_elem = -1.0;
  for (std::int64_t i = 0; i < numel; ++i) {
    if (!comparable[i]) continue;
    const double a = actual[i], e = expected[i];
    const double abs_error = std::fabs(a - e);
    const double denominator = std::max(std::fabs(e), m.relative_floor);
    const double rel = abs_error == 0.0 ? 0.0 : (denominator == 0.0 ? kInfinity : abs_error / denominator);
    const double ulps = abs_error == 0.0 ? 0.0 : abs_error / dtype_ulp(denominator, actual_dtype);
    ulp_errors.push_back(ulps);
    if (rel > max_rel) {
      max_rel = rel;
      max_rel_at = i;
    }
    if (ulps > max_ulp) {
      max_ulp = ulps;
      max_ulp_at = i;
    }
    if (m.elem_unit > 0.0) {
      const double scale = m.elem_unit * (std::fabs(e) + m.expected_rms) + elem_underflow;
      const double elem = abs_error == 0.0 ? 0.0 : (scale == 0.0 ? kInfinity : abs_error / scale);
      if (elem > max_elem) {
        max_elem = elem;
        max_elem_at = i;
      }
    }
    if (count_misrounded && a != round_to_dtype(e, actual_dtype)) ++misrounded;
    if (a == e) ++m.histogram.exact_equal;
    else ++m.histogram.counts[histogram_bin(rel)];
    if (options.compute_floor && options.floor_source == FloorSource::Measured)
      rounding_squares.add(round_to_dtype(e, floor_dtype) - e);
  }

  auto location = [&](double error, std::int64_t at) {
    return ErrorLocation{error, unravel_index(at, shape), actual[at], expected[at]};
  };
  m.max_abs = location(max_abs, max_abs_at);
  m.max_rel = location(max_rel, max_rel_at);
  m.max_ulp = location(max_ulp, max_ulp_at);
  if (max_elem_at >= 0) m.max_elem = location(max_elem, max_elem_at);
  if (count_misrounded) m.misrounded_fraction = static_cast<double>(misrounded) / static_cast<double>(m.compared);

  // p99 by nearest rank: the smallest value with at least 99% of the errors at or below it.
  const auto rank = static_cast<std::size_t>(std::ceil(0.99 * static_cast<double>(ulp_errors.size())));
  const auto nth = ulp_errors.begin() + static_cast<std::ptrdiff_t>(std::max<std::size_t>(rank, 1) - 1);
  std::nth_element(ulp_errors.begin(), nth, ulp_errors.end());
  m.p99_ulp = *nth;

  const double nominal = nominal_rounding_floor(floor_dtype);
  if (options.compute_floor) {
    FloorRatio floor;
    floor.dtype = floor_dtype;
    if (options.floor_source == FloorSource::Measured) {
      const double measured = norm_ratio(rounding_squares.norm(), expected_norm);
      // An all-zero expected tensor rounds exactly: measured 0, like any exactly representable tensor.
      floor.measured_rel_rmse = std::isfinite(measured) ? measured : 0.0;
      const double minimum = kMinimumFloorFraction * nominal;
      floor.substituted = floor.measured_rel_rmse < minimum;
      floor.used_rel_rmse = floor.substituted ? minimum : floor.measured_rel_rmse;
    } else {
      floor.nominal = true;
      floor.used_rel_rmse = nominal;
    }
    floor.rounding_rel_rmse = floor.used_rel_rmse;
    if (options.conditioning_rel_rmse && std::isfinite(*options.conditioning_rel_rmse)) {
      floor.conditioning_rel_rmse = *options.conditioning_rel_rmse;
      if (*options.conditioning_rel_rmse > floor.used_rel_rmse) {
        floor.used_rel_rmse = *options.conditioning_rel_rmse;
        floor.conditioned = true;
      }
    }
    floor.ratio = m.rel_rmse / floor.used_rel_rmse;
    m.floor = floor;
  }
  m.implementation_misrounded_fraction = options.implementation_misrounded_fraction;
  if (options.layout)
    m.locality = measure_locality(actual, expected, comparable, shape, *options.layout,
                                  m.floor ? m.floor->used_rel_rmse : nominal, m.expected_rms);
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

std::string_view layout_kind_name(TensorLayout::Kind kind) {
  switch (kind) {
    case TensorLayout::Kind::Tokens: return "tokens";
    case TensorLayout::Kind::States: return "states";
    case TensorLayout::Kind::ChunkStates: return "chunk-states";
  }
  return "?";
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

std::optional<double> misrounded_fraction_of(std::span<const double> computed, std::span<const double> exact,
                                             DType dtype) {
  std::int64_t finite = 0, misrounded = 0;
  for (std::size_t i = 0; i < exact.size() && i < computed.size(); ++i) {
    if (!std::isfinite(exact[i])) continue;
    ++finite;
    if (round_to_dtype(computed[i], dtype) != round_to_dtype(exact[i], dtype)) ++misrounded;
  }
  if (finite == 0) return std::nullopt;
  return static_cast<double>(misrounded) / static_cast<double>(finite);
}

}  // namespace dplr
