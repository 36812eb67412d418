#include "reference/reference.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "reference/dispatch.hpp"
#include "reference/parallel.hpp"
#include "reference/recurrent.hpp"

namespace dplr {

double ReferenceResult::min_estimated_bits() const {
  double bits = std::numeric_limits<double>::infinity();
  for (const auto& [name, b] : estimated_bits) bits = std::min(bits, b);
  return estimated_bits.empty() ? 0.0 : bits;
}

double ReferenceResult::min_proven_bits() const {
  double bits = std::numeric_limits<double>::infinity();
  for (const auto& [name, b] : proven_bits) bits = std::min(bits, b);
  return proven_bits.empty() ? 0.0 : bits;
}

namespace {

// Bytes of a run's output expansions.
std::uint64_t output_bytes(const DplrProblem& p, const ReferenceOptions& options, int limbs) {
  using U = std::uint64_t;
  const auto& s = p.shape;
  const U tokens = saturating_product({U(s.B), U(s.T), U(s.H)}), states = saturating_product({U(p.num_sequences()), U(s.H), U(s.K), U(s.V)});
  const bool backward = options.backward && p.has_backward();
  const U elements = saturating_sum({saturating_product({tokens, U(s.V), backward ? 2u : 1u}),
                                     saturating_product({states, backward ? 2u : 1u}),
                                     backward ? saturating_product({tokens, U(s.K), 5}) : 0});
  return saturating_product({elements, U(limbs), sizeof(double)});
}

// Bytes of the workers' states: the backward's checkpoints, one segment's recomputed states, G, and each
// step's x and decay (and the forward's one state), per worker, in the scalar type (MPFR, Arb: their limbs
// plus the header). The interval is the one the recurrence resolves (reference/recurrent.hpp).
std::uint64_t working_bytes(const DplrProblem& p, const ReferenceOptions& options, int limbs) {
  using U = std::uint64_t;
  std::int64_t longest = 0;
  for (std::int64_t n = 0; n < p.num_sequences(); ++n) longest = std::max(longest, p.sequence(n).length());
  const std::int64_t pairs = p.num_sequences() * p.shape.H;
  const bool heap_limbs = options.precision.arithmetic == Arithmetic::Mpfr || options.precision.encloses();
  const U scalar = state_scalar_bytes(limbs, heap_limbs);
  const std::int64_t state = p.shape.K * p.shape.V;
  const bool backward = options.backward && p.has_backward();
  const std::int64_t interval = resolve_checkpoint_interval(options.checkpoint_interval, longest, state, scalar);
  const std::int64_t segment = std::min(interval, std::max<std::int64_t>(longest, 1));
  const U states = backward ? U((longest + interval - 1) / interval + segment + 2) : 1;
  const U per_step = backward ? saturating_product({U(longest), U(p.shape.K + p.shape.V), scalar}) : 0;
  return saturating_product({U(resolve_thread_count(options.threads, pairs)),
                             saturating_sum({saturating_product({states, U(state), scalar}), per_step})});
}

std::string memory_purpose(const ReferenceOptions& options) {
  return fmt::format("the exact reference at {} (outputs, gradients and working states)", options.precision.name());
}

ReferenceResult run_at(const DplrProblem& problem, const ReferenceOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  const std::clock_t cpu_start = std::clock();
  RecurrentOptions recurrent{options.backward, options.checkpoint_interval, options.threads};
  ReferenceResult result;
  result.precision = options.precision;
  result.tensors = with_scalar(options.precision, [&]<class S>(std::type_identity<S>) {
    return recurrent_reference<S>(problem, recurrent);
  });
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  result.cpu_seconds = double(std::clock() - cpu_start) / CLOCKS_PER_SEC;
  return result;
}

}  // namespace

ReferenceResult run_reference(const DplrProblem& problem, const ReferenceOptions& options) {
  const int limbs = expansion_limbs(options.precision);
  require_memory(saturating_sum({output_bytes(problem, options, limbs), working_bytes(problem, options, limbs)}),
                 options.origin, memory_purpose(options));
  ReferenceResult result = run_at(problem, options);
  auto overflow = first_non_finite(result.tensors);
  if (!overflow) return result;
  const Precision first = options.precision;
  if (first.arithmetic != Arithmetic::Mpfr) {
    ReferenceOptions wide = options;
    wide.precision = first.with_wide_exponent();
    result = run_at(problem, wide);
    result.notes.push_back(overflow_note(first.name(), wide.precision.name(), *overflow));
    overflow = first_non_finite(result.tensors);
  }
  if (overflow) refuse_beyond_double_range(options.origin, "exact", *overflow);
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
  ReferenceOptions check = options;
  check.precision = options.precision.certifier();
  // The certifying run's tensors are held beside the first run's.
  const int limbs = expansion_limbs(check.precision);
  require_memory(saturating_sum({output_bytes(problem, options, expansion_limbs(options.precision)),
                                 output_bytes(problem, check, limbs), working_bytes(problem, check, limbs)}),
                 options.origin, memory_purpose(options) + fmt::format(" certified at {}", check.precision.name()));
  ReferenceResult result = run_reference(problem, options);
  check.precision = result.precision.certifier();  // of the precision really used (MPFR after an overflow)
  const ReferenceResult more_precise = run_reference(problem, check);
  result.estimated_bits = certify(result, more_precise);
  result.estimated_against = check.precision;
  result.estimate_seconds = more_precise.seconds, result.estimate_cpu_seconds = more_precise.cpu_seconds;
  return result;
}

ReferenceResult run_rigorous_reference(const DplrProblem& problem, const ReferenceOptions& options,
                                       const RigorousOptions& rigorous) {
  ReferenceOptions at = options;
  int bits = rigorous.first_precision > 0 ? rigorous.first_precision : static_cast<int>(std::ceil(rigorous.proven_bits)) + 32;
  bits = std::min(std::max(bits, 24), rigorous.max_precision);
  std::vector<std::string> runs;
  for (;;) {
    at.precision = Precision::ball(bits);
    const int limbs = expansion_limbs(at.precision);
    require_memory(saturating_sum({output_bytes(problem, at, limbs + 1), working_bytes(problem, at, limbs)}), options.origin,
                   memory_purpose(at));
    ReferenceResult result = run_at(problem, at);
    if (auto unbounded = first_non_finite(result.tensors))
      throw InputError(fmt::format("{}: the rigorous reference at {} working bits could not bound '{}' (element {}: {}); "
                                   "expected inputs whose results fit in float64", options.origin, bits,
                                   unbounded->tensor, unbounded->index, unbounded->value));
    std::string worst;
    for (const auto& [name, tensor] : result.tensors) {
      result.proven_bits[name] = proven_bits(tensor, bits);
      if (worst.empty() || result.proven_bits[name] < result.proven_bits[worst]) worst = name;
    }
    const double reached = result.min_proven_bits();
    runs.push_back(fmt::format("{} working bits: {:.1f} proven bits ('{}' worst), {:.2f} s", bits, reached, worst, result.seconds));
    if (reached >= rigorous.proven_bits) {
      result.notes = runs;
      return result;
    }
    if (bits >= rigorous.max_precision)
      throw InputError(fmt::format("{}: the rigorous reference proved {:.1f} bits ('{}' worst) at {} working bits, the "
                                   "limit, short of the {:.1f} asked; ask fewer proven bits or raise the limit "
                                   "(--max-precision). Runs: {}", options.origin, reached, worst, bits,
                                   rigorous.proven_bits, fmt::join(runs, "; ")));
    // What a run loses to the balls' growth is about constant in the working precision (B2 T1024 H4 K=V=64:
    // 355 bits at 364 and at 471 working bits): add the deficit, with margin. A run that proved nothing
    // says nothing of the loss but that it exceeds the working bits: double them.
    const int deficit = static_cast<int>(std::ceil(rigorous.proven_bits - reached));
    bits = std::min(rigorous.max_precision, reached > 0 ? std::max(bits + deficit + 16, bits + bits / 4) : 2 * bits);
  }
}

}  // namespace dplr
