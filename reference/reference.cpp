#include "reference/reference.hpp"

#include <algorithm>
#include <chrono>
#include <limits>

#include "reference/dispatch.hpp"
#include "reference/recurrent.hpp"

namespace dplr {

double ReferenceResult::min_certified_bits() const {
  double bits = std::numeric_limits<double>::infinity();
  for (const auto& [name, b] : certified_bits) bits = std::min(bits, b);
  return certified_bits.empty() ? 0.0 : bits;
}

ReferenceResult run_reference(const DplrProblem& problem, const ReferenceOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  RecurrentOptions recurrent{options.backward, options.checkpoint_interval, options.threads};
  ReferenceResult result;
  result.precision = options.precision;
  result.tensors = with_scalar(options.precision, [&]<class S>(std::type_identity<S>) {
    return recurrent_reference<S>(problem, recurrent);
  });
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

std::map<std::string, double> certify(const ReferenceResult& result, const ReferenceResult& more_precise) {
  std::map<std::string, double> bits;
  const double cap = result.precision.significand_bits();
  for (const auto& [name, tensor] : result.tensors) {
    auto it = more_precise.tensors.find(name);
    if (it != more_precise.tensors.end()) bits[name] = agreement_bits(tensor, it->second, cap);
  }
  return bits;
}

ReferenceResult run_certified_reference(const DplrProblem& problem, const ReferenceOptions& options) {
  ReferenceResult result = run_reference(problem, options);
  ReferenceOptions check = options;
  check.precision = options.precision.certifier();
  const ReferenceResult more_precise = run_reference(problem, check);
  result.certified_bits = certify(result, more_precise);
  result.certified_against = check.precision;
  return result;
}

}  // namespace dplr
