#include "reference/exact_tensor.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include <qd/qd_real.h>

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
// x_i - y_i summed part by part in quad-double: the leading parts cancel exactly, so the difference is
// resolved to ~2^-212 of the leading part's magnitude, even where both expansions are longer.
double expansion_difference(const ExactTensor& x, const ExactTensor& y, std::size_t i) {
  qd_real sum(0.0);
  for (int l = 0; l < std::max(x.limbs, y.limbs); ++l) {
    if (l < x.limbs) sum += x.parts[i * x.limbs + l];
    if (l < y.limbs) sum -= y.parts[i * y.limbs + l];
  }
  return to_double(sum);
}
}  // namespace

double agreement_bits(const ExactTensor& x, const ExactTensor& y, double cap_bits) {
  if (x.shape != y.shape) throw std::invalid_argument("agreement_bits: tensors differ in shape");
  const auto n = static_cast<std::size_t>(y.numel());
  if (n == 0) return cap_bits;
  double sum_squares = 0.0;
  for (std::size_t i = 0; i < n; ++i) sum_squares += y.value(i) * y.value(i);
  const double floor = kAgreementFloor * std::sqrt(sum_squares / static_cast<double>(n));
  double bits = cap_bits;
  for (std::size_t i = 0; i < n; ++i) {
    if (std::isnan(x.value(i)) != std::isnan(y.value(i)) || std::isinf(x.value(i)) != std::isinf(y.value(i))) return 0.0;
    if (!std::isfinite(y.value(i))) continue;
    const double difference = std::fabs(expansion_difference(x, y, i));
    if (difference == 0.0) continue;
    const double magnitude = std::max(std::fabs(y.value(i)), floor);
    if (magnitude == 0.0) return 0.0;
    bits = std::min(bits, -std::log2(difference / magnitude));
  }
  return std::max(0.0, bits);
}

}  // namespace dplr
