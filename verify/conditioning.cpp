#include "verify/conditioning.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace dplr {
namespace {

// Per tensor of `exact` that `computed` has with the same size: the squared rel RMSE of `computed` against it, over
// the elements finite on both sides. An all-zero exact tensor has no relative scale and no entry (the rounding
// floor's substitute judges it, metrics.hpp).
std::map<std::string, double> squared_rel_rmse(const ExactTensorMap& computed, const ExactTensorMap& exact) {
  std::map<std::string, double> out;
  for (const auto& [name, e] : exact) {
    const auto it = computed.find(name);
    if (it == computed.end() || it->second.numel() != e.numel()) continue;
    double diff = 0.0, norm = 0.0;
    for (std::int64_t i = 0; i < e.numel(); ++i) {
      const double x = e.value(i), y = it->second.value(i);
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      diff += (y - x) * (y - x);
      norm += x * x;
    }
    if (norm > 0.0) out[name] = diff / norm;
  }
  return out;
}

}  // namespace

std::optional<double> kernel_working_unit(DType dtype) {
  switch (dtype) {
    case DType::BF16:
    case DType::F16:
    case DType::F32:
      return 0x1p-24;
    default:
      return std::nullopt;
  }
}

DplrProblem perturbed_problem(const DplrProblem& problem, double unit, std::uint64_t seed) {
  DplrProblem out = problem;
  std::mt19937_64 generator(seed);
  std::uniform_real_distribution<double> r(-1.0, 1.0);
  for (std::string_view name : kInputNames) {
    if (name == "cu_seqlens") continue;
    if (Tensor* t = find_input(out, name))
      for (double& x : t->values) x *= 1.0 + unit * r(generator);
  }
  return out;
}

ConditioningFloors conditioning_floors(const DplrProblem& problem, const ExactTensorMap& exact,
                                       const std::function<ExactTensorMap(const DplrProblem&)>& evaluate,
                                       const ConditioningOptions& options) {
  std::map<std::string, double> squares;  // sum over samples of the squared rel RMSE
  for (int s = 0; s < options.samples; ++s) {
    const ExactTensorMap perturbed = evaluate(perturbed_problem(problem, options.unit, options.seed + s));
    for (const auto& [name, squared] : squared_rel_rmse(perturbed, exact)) squares[name] += squared;
  }
  ConditioningFloors floors;
  for (const auto& [name, sum] : squares) floors[name] = std::sqrt(sum / options.samples);
  return floors;
}

ConditioningFloors implementation_floors(const ExactTensorMap& computed, const ExactTensorMap& exact) {
  ConditioningFloors floors;
  for (const auto& [name, squared] : squared_rel_rmse(computed, exact)) floors[name] = std::sqrt(squared);
  return floors;
}

void raise_floors(ConditioningFloors& floors, const ConditioningFloors& more) {
  for (const auto& [name, floor] : more)
    if (auto [it, added] = floors.emplace(name, floor); !added) it->second = std::max(it->second, floor);
}

}  // namespace dplr
