// Results of the exact reference, kept at the precision they were computed in without holding the wide
// scalar type: each element is an unevaluated sum of `limbs` doubles (a floating-point expansion), its
// first part being the element correctly rounded to double. Memory is limbs x 8 bytes an element.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"

namespace dplr {

struct ExactTensor {
  std::vector<std::int64_t> shape;
  int limbs = 1;
  std::vector<double> parts;  // numel * limbs
  // Enclosures only (a ball_real run): per element, an upper bound of |exact - (sum of its parts)|, so the
  // exact value lies within value(i) +- (radius[i] + half an ulp of value(i)). Empty otherwise.
  std::vector<double> radius;

  ExactTensor() = default;
  ExactTensor(std::vector<std::int64_t> shape_, int limbs_);
  std::int64_t numel() const;
  double value(std::int64_t i) const { return parts[static_cast<std::size_t>(i) * limbs]; }
  std::vector<double> rounded() const;       // every element correctly rounded to double
  Tensor to_tensor(DType dtype) const;       // rounded to double, then to dtype (one rounding from double)
};

using ExactTensorMap = std::map<std::string, ExactTensor>;

// How many leading bits two results of the same tensor agree on, per element relative to the element's
// magnitude, floored at kAgreementFloor times the tensor's RMS so that elements near zero are judged
// against the tensor's scale: bits_i = -log2(|x_i - y_i| / max(|y_i|, floor)). Returns the minimum over
// elements, capped at `cap_bits` (identical values). y is the more precise of the two.
//
// The floor, 2^-16 of the RMS, sits 2^10 below the finest floor any metric of verify/ uses (max relative
// error floors at 2^-6 RMS; relative RMSE is normwise), so a result certified to b bits is accurate to b
// bits for every figure a report shows. A finer floor only measures elements no check looks at: on
// B2 T1024 H4 K=V=64 at double-double (fla distribution), 2^-26 gives 83.7 bits where 2^-16 gives 88.1
// (the same errors: the worst elements are the smallest ones).
inline constexpr double kAgreementFloor = 0x1p-16;
double agreement_bits(const ExactTensor& x, const ExactTensor& y, double cap_bits);
// x_i - y_i of element i, summed part by part in double-double (both at most two parts) or quad-double: resolved
// to ~2^-104 or ~2^-209 of the leading parts. expansion_differences: of every element.
double expansion_difference(const ExactTensor& x, const ExactTensor& y, std::int64_t i);
std::vector<double> expansion_differences(const ExactTensor& x, const ExactTensor& y);
// agreement_bits from differences already formed (difference[i] = x_i - y_i), y's magnitudes taken of `y`'s
// leading parts: what a streamed run keeps (reference.hpp, ReferenceOptions::kept_limbs). 0 if any is non-finite.
double agreement_bits_of_differences(const std::vector<double>& difference, const ExactTensor& y, double cap_bits);

// The bits an enclosure proves: the minimum over elements of -log2(radius_i / max(|x_i|, floor)), with the
// same floor (kAgreementFloor times the tensor's RMS) as agreement_bits, so that proven and estimated bits
// bound the same quantity. Elements with radius 0 (exact) do not lower it; capped at cap_bits. Needs radius.
double proven_bits(const ExactTensor& x, double cap_bits);
// The bits an enclosure proves of another result x of the same tensor (e.g. a dd run): the minimum over
// elements of -log2((|x_i - m_i| + radius_i + 2^-200 |x_i|) / max(|m_i|, floor)), m the enclosure's
// midpoint expansion; the difference is summed in quad-double, 2^-200 |x_i| covering its rounding.
double proven_agreement_bits(const ExactTensor& x, const ExactTensor& enclosure, double cap_bits);

// The first element, in name order, with a non-finite part (an overflow past double's exponent range) or,
// for an enclosure, a non-finite radius (an unbounded ball).
struct NonFiniteElement {
  std::string tensor;
  std::int64_t index = 0;
  double value = 0.0;  // the element's leading part
};
std::optional<NonFiniteElement> first_non_finite(const ExactTensorMap& tensors);
// The note of a run repeated at `repeated_at` after overflowing at `first_at`.
std::string overflow_note(std::string_view first_at, std::string_view repeated_at, const NonFiniteElement& overflow);
// Throws the BeyondDoubleRangeError (an InputError, core/error.hpp) of an exact result beyond double's range: `origin` names the case, `what` the kind
// of tensor ("exact", "exact stage tensor").
[[noreturn]] void refuse_beyond_double_range(std::string_view origin, std::string_view what,
                                             const NonFiniteElement& overflow);

}  // namespace dplr
