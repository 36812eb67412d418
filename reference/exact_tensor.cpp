#include "reference/exact_tensor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <qd/dd_real.h>
#include <qd/qd_real.h>

#include "core/error.hpp"

namespace dplr {

ExactTensor::ExactTensor(std::vector<std::int64_t> shape_, int limbs_) : shape(std::move(shape_)), limbs(limbs_) {
  parts.assign(static_cast<std::size_t>(numel()) * limbs, 0.0);
}

std::int64_t ExactTensor::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::vector<double> ExactTensor::rounded() const {
  std::vector<double> out(static_cast<std::size_t>(numel()));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = parts[i * limbs];
  return out;
}

Tensor ExactTensor::to_tensor(DType dtype) const {
  Tensor t{dtype, shape, rounded()};
  if (dtype != DType::F64)
    for (auto& x : t.values) x = round_to_dtype(x, dtype);
  return t;
}

namespace {
template <class Sum>
double summed_difference(const ExactTensor& x, const ExactTensor& y, std::size_t i) {
  Sum sum(0.0);
  for (int l = 0; l < std::max(x.limbs, y.limbs); ++l) {
    if (l < x.limbs) sum += x.parts[i * x.limbs + l];
    if (l < y.limbs) sum -= y.parts[i * y.limbs + l];
  }
  return to_double(sum);
}
}  // namespace

// The leading parts cancel exactly (two_sum), so the difference is resolved to ~2^-104 of the leading part in
// double-double and ~2^-209 in quad-double: below the agreement cap of any pair of runs (106 bits where neither
// has more than two parts). double-double is ~3x cheaper: a training-scale recording forms 2.3e8 differences.
double expansion_difference(const ExactTensor& x, const ExactTensor& y, std::int64_t i) {
  const auto at = static_cast<std::size_t>(i);
  return std::max(x.limbs, y.limbs) <= 2 ? summed_difference<dd_real>(x, y, at) : summed_difference<qd_real>(x, y, at);
}

namespace {
// kAgreementFloor times the RMS of the leading parts (scaled by the largest, so that squares do not overflow).
double magnitude_floor(const ExactTensor& y) {
  const auto n = static_cast<std::size_t>(y.numel());
  double largest = 0.0, sum_squares = 0.0;
  for (std::size_t i = 0; i < n; ++i) largest = std::max(largest, std::fabs(y.value(i)));
  if (largest > 0.0)
    for (std::size_t i = 0; i < n; ++i) sum_squares += (y.value(i) / largest) * (y.value(i) / largest);
  return n == 0 ? 0.0 : kAgreementFloor * largest * std::sqrt(sum_squares / static_cast<double>(n));
}
}  // namespace

double proven_bits(const ExactTensor& x, double cap_bits) {
  if (x.radius.size() != static_cast<std::size_t>(x.numel()))
    throw std::invalid_argument("proven_bits: the tensor carries no radius (not an enclosure)");
  const double floor = magnitude_floor(x);
  double bits = cap_bits;
  for (std::size_t i = 0; i < x.radius.size(); ++i) {
    if (x.radius[i] == 0.0) continue;
    if (!std::isfinite(x.radius[i])) return 0.0;
    const double magnitude = std::max(std::fabs(x.value(i)), floor);
    if (magnitude == 0.0) return 0.0;
    bits = std::min(bits, -std::log2(x.radius[i] / magnitude));
  }
  return std::max(0.0, bits);
}

double proven_agreement_bits(const ExactTensor& x, const ExactTensor& enclosure, double cap_bits) {
  if (x.shape != enclosure.shape) throw std::invalid_argument("proven_agreement_bits: tensors differ in shape");
  if (enclosure.radius.size() != static_cast<std::size_t>(enclosure.numel()))
    throw std::invalid_argument("proven_agreement_bits: the second tensor is not an enclosure");
  if (!std::ranges::all_of(x.parts, [](double part) { return std::isfinite(part); })) return 0.0;
  const double floor = magnitude_floor(enclosure);
  double bits = cap_bits;
  for (std::size_t i = 0; i < enclosure.radius.size(); ++i) {
    const double bound = std::fabs(expansion_difference(x, enclosure, i)) * (1 + 0x1p-50) + enclosure.radius[i] +
                         0x1p-200 * std::fabs(x.value(i));
    if (bound == 0.0) continue;
    if (!std::isfinite(bound)) return 0.0;
    const double magnitude = std::max(std::fabs(enclosure.value(i)), floor);
    if (magnitude == 0.0) return 0.0;
    bits = std::min(bits, -std::log2(bound / magnitude));
  }
  return std::max(0.0, bits);
}

std::vector<double> expansion_differences(const ExactTensor& x, const ExactTensor& y) {
  if (x.shape != y.shape) throw std::invalid_argument("expansion_differences: tensors differ in shape");
  std::vector<double> difference(static_cast<std::size_t>(y.numel()));
  for (std::size_t i = 0; i < difference.size(); ++i) difference[i] = expansion_difference(x, y, i);
  return difference;
}

double agreement_bits_of_differences(const std::vector<double>& difference, const ExactTensor& y, double cap_bits) {
  const auto n = static_cast<std::size_t>(y.numel());
  if (difference.size() != n) throw std::invalid_argument("agreement_bits_of_differences: one difference an element");
  if (n == 0) return cap_bits;
  if (!std::ranges::all_of(y.parts, [](double part) { return std::isfinite(part); }) ||
      !std::ranges::all_of(difference, [](double d) { return std::isfinite(d); }))
    return 0.0;
  const double floor = magnitude_floor(y);
  // The largest relative difference, and one log2 of it (log2 is monotonic; one a tensor, not one an element).
  double worst = 0.0;
  for (std::size_t i = 0; i < n; ++i) {
    const double d = std::fabs(difference[i]);
    if (d == 0.0) continue;
    const double magnitude = std::max(std::fabs(y.value(i)), floor);
    if (magnitude == 0.0) return 0.0;
    worst = std::max(worst, d / magnitude);
  }
  return worst == 0.0 ? cap_bits : std::max(0.0, std::min(cap_bits, -std::log2(worst)));
}

double agreement_bits(const ExactTensor& x, const ExactTensor& y, double cap_bits) {
  if (x.shape != y.shape) throw std::invalid_argument("agreement_bits: tensors differ in shape");
  if (y.numel() == 0) return cap_bits;
  if (!std::ranges::all_of(x.parts, [](double part) { return std::isfinite(part); })) return 0.0;
  return agreement_bits_of_differences(expansion_differences(x, y), y, cap_bits);
}

std::optional<NonFiniteElement> first_non_finite(const ExactTensorMap& tensors) {
  for (const auto& [name, tensor] : tensors) {
    for (std::size_t e = 0; e < tensor.radius.size(); ++e)
      if (!std::isfinite(tensor.radius[e])) return NonFiniteElement{name, static_cast<std::int64_t>(e), tensor.radius[e]};
    for (std::size_t p = 0; p < tensor.parts.size(); ++p)
      if (!std::isfinite(tensor.parts[p])) {
        const std::size_t element = p / static_cast<std::size_t>(tensor.limbs);
        return NonFiniteElement{name, static_cast<std::int64_t>(element), tensor.parts[element * tensor.limbs]};
      }
  }
  return std::nullopt;
}

std::string overflow_note(std::string_view first_at, std::string_view repeated_at, const NonFiniteElement& overflow) {
  return fmt::format("the run at {} overflowed double's exponent range ('{}' element {} was {}); repeated at {}, "
                     "whose exponent range holds",
                     first_at, overflow.tensor, overflow.index, overflow.value, repeated_at);
}

void refuse_beyond_double_range(std::string_view origin, std::string_view what, const NonFiniteElement& overflow) {
  throw BeyondDoubleRangeError(fmt::format("{}: the {} '{}' (element {} at flat index {}) lies beyond double's range "
                               "(|x| > 1.8e308), so it cannot be stored or compared; expected inputs whose results "
                               "fit in float64 (growth, gk > 0, compounds as exp of the summed gk)",
                               origin, what, overflow.tensor, overflow.value, overflow.index));
}

}  // namespace dplr
