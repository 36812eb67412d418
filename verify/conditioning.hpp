// The conditioning floor: how much of a tensor's error no kernel in a given working precision can avoid.
//
// The correctly rounded floor (metrics.hpp) says what storing the exact answer costs. It does not say what
// computing it costs: where the exact answer is ill-conditioned, every rounding inside a kernel is amplified.
// Example (reports/baselines/h200/property/cases, c1): K = 1, b = -a with a unit, near-zero decay, so the
// transition e^g + a b = e^g - 1 ~ -1e-4 cancels; one fp32 rounding of e^g (relative error ~6e-8) becomes a
// relative error of ~6e-4 in the transition, and an fp32 state correct to 44 fp32 floors is as good as fp32
// arithmetic gets there.
//
// Estimate: the exact answer's change under a random relative perturbation of every input element by at most
// the working precision's unit roundoff u (x -> x (1 + u r), r uniform in [-1, 1]): the forward error that a
// backward-stable kernel in that precision makes, to first order. Per tensor, the rel RMSE of
// (answer(perturbed) - exact), over `samples` independent perturbations (their RMS). The perturbed answers
// are computed in double: their own rounding error (~1e-16 x the conditioning) sits ~2^29 below the
// perturbation's effect at u = 2^-24.
//
// A comparison given these floors divides by max(correctly rounded floor, conditioning floor), where `dplr check`
// takes as conditioning floor the larger of this estimate and the fp32-implementation floor (below)
// (MetricsOptions::conditioning_rel_rmse). For a well-conditioned tensor the conditioning floor is of the order
// of u, near fp32's rounding floor (0.42 u), and far below the 16-bit floors (0.42 x 2^-8 or 2^-11): it moves a
// 16-bit verdict only past a conditioning of ~1e3, and an fp32 verdict by the factor the conditioning exceeds
// rounding. The report keeps both floors, so a reader sees which one judged.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/dtype.hpp"
#include "reference/exact_tensor.hpp"
#include "reference/problem.hpp"

namespace dplr {

// Per tensor name: the conditioning floor as a relative RMSE.
using ConditioningFloors = std::map<std::string, double>;

struct ConditioningOptions {
  double unit = 0x1p-24;      // the working precision's unit roundoff (fp32: our kernels' arithmetic)
  int samples = 2;            // independent perturbations, combined by their RMS
  std::uint64_t seed = 0x5eed;  // the perturbations' generator seed (deterministic per problem)
};

// The working precision's unit roundoff of our GPU kernels for inputs of `dtype`: fp32 arithmetic for fp32,
// fp16 and bf16 inputs; empty for fp64 (no fp64 kernel, and a double evaluation could not measure 2^-53).
std::optional<double> kernel_working_unit(DType dtype);

// `problem` with every element of q, k, v, a, b, gk, h0, do and dht multiplied by (1 + unit r).
DplrProblem perturbed_problem(const DplrProblem& problem, double unit, std::uint64_t seed);

// The conditioning floor of every tensor that `evaluate` returns and `exact` holds. `evaluate` computes the
// tensors of a (perturbed) problem, e.g. the reference or the chunk stages at double.
ConditioningFloors conditioning_floors(const DplrProblem& problem, const ExactTensorMap& exact,
                                       const std::function<ExactTensorMap(const DplrProblem&)>& evaluate,
                                       const ConditioningOptions& options = {});

// The fp32-implementation floor: per tensor, the rel RMSE against `exact` of the same algorithm computed in plain fp32
// on the CPU (`computed`: reference/ recurrence or chunk form in float). Where it exceeds the conditioning floor, the
// algorithm's own fp32 error is what a kernel of that algorithm cannot avoid (a long accumulation without decay, the
// chunk form's inverse at the edge of stability); the property sweep met both (session 7, H200). The same idea as
// FlashAttention's tests, which hold a kernel to a multiple of a same-precision reference implementation's error.
ConditioningFloors implementation_floors(const ExactTensorMap& computed, const ExactTensorMap& exact);

// `floors` raised, per name, to `more`'s floor where that is larger (names only in `more` are added).
void raise_floors(ConditioningFloors& floors, const ConditioningFloors& more);

}  // namespace dplr
