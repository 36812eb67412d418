#include "reference/reference.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <limits>
#include <stdexcept>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "reference/dispatch.hpp"
#include "core/parallel.hpp"
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

std::string_view estimate_method_name(EstimateMethod method) {
  return method == EstimateMethod::Extrapolated ? "extrapolated" : "repeat";
}

EstimateMethod parse_estimate_method(std::string_view text) {
  if (text == "repeat") return EstimateMethod::Repeat;
  if (text == "extrapolated") return EstimateMethod::Extrapolated;
  throw InputError(fmt::format("estimate '{}' is not one of repeat (against a higher precision) or extrapolated "
                               "(from a lower one)", text));
}

double extrapolation_minimum_bits(const Precision& base) { return base.significand_bits() / 2.0; }

std::map<std::string, double> extrapolate_bits(const std::map<std::string, double>& agreement, double gap_bits,
                                               double cap_bits, double minimum_bits, std::vector<std::string>* notes) {
  std::map<std::string, double> bits;
  for (const auto& [name, agreed] : agreement) {
    if (agreed >= minimum_bits) {
      bits[name] = std::min(cap_bits, agreed + gap_bits - kExtrapolationMarginBits);
      continue;
    }
    bits[name] = agreed;
    if (notes)
      notes->push_back(fmt::format("'{}': the two runs agree on only {:.1f} bits, below the {:.0f} the extrapolated "
                                   "estimate relies on; claimed only the agreement (for a real estimate: --estimate "
                                   "repeat)", name, agreed, minimum_bits));
  }
  return bits;
}

namespace {
// extrapolate_bits for an answer at `answer` extrapolated from a run at `base`: the gap, the cap and the minimum.
std::map<std::string, double> extrapolate_between(const std::map<std::string, double>& agreement, const Precision& answer,
                                                  const Precision& base, std::vector<std::string>* notes) {
  return extrapolate_bits(agreement, answer.significand_bits() - base.significand_bits(), answer.significand_bits(),
                          extrapolation_minimum_bits(base), notes);
}
}  // namespace

std::map<std::string, double> extrapolate_from(ReferenceResult& answer, const ReferenceResult& base) {
  return extrapolate_between(certify(base, answer), answer.precision, base.precision, &answer.notes);
}

namespace {
Precision estimate_precision(const ReferenceOptions& options);
}  // namespace

std::string estimate_description(const ReferenceOptions& options) {
  const Precision other = estimate_precision(options);
  if (options.estimate == EstimateMethod::Repeat) return fmt::format("estimated against {}", other.name());
  return fmt::format("estimated, extrapolated from {} (+{:.0f} bits)", other.name(),
                     options.precision.significand_bits() - other.significand_bits() - kExtrapolationMarginBits);
}

namespace {

// The other run of a certified reference: the certifier (Repeat) or the extrapolation base.
Precision estimate_precision(const ReferenceOptions& options) {
  if (options.estimate == EstimateMethod::Repeat) return options.precision.certifier();
  if (auto base = options.precision.extrapolation_base()) return *base;
  throw InputError(fmt::format("{}: the extrapolated estimate is validated only for td (from dd) and dd (from double), not {}; use "
                               "--estimate repeat", options.origin, options.precision.name()));
}

void add_times(ReferenceResult& to, const ReferenceResult& answer, const ReferenceResult& other) {
  to.seconds += answer.seconds, to.cpu_seconds += answer.cpu_seconds;
  to.estimate_seconds += other.seconds, to.estimate_cpu_seconds += other.cpu_seconds;
}

// Sequences a streamed batch takes: from `first`, until it has two pairs a worker or kStreamTokens tokens.
inline constexpr std::int64_t kStreamTokens = 1 << 16;
std::int64_t batch_sequences(const DplrProblem& p, std::int64_t first, int threads) {
  const std::int64_t pairs_wanted = 2 * std::int64_t(resolve_thread_count(threads, std::int64_t(1) << 30));
  std::int64_t n = first, tokens = 0;
  while (n < p.num_sequences() && (n - first) * p.shape.H < pairs_wanted && tokens < kStreamTokens)
    tokens += p.sequence(n++).length();
  return n - first;
}

bool is_state_tensor(const std::string& name) { return name == "ht" || name == "dh0"; }

// ReferenceOptions::kept_limbs > 0: both runs a batch of sequences at a time; of each batch the answer's leading
// parts and the difference of the lower run from the higher are kept, the expansions dropped.
ReferenceResult run_certified_streamed(const DplrProblem& problem, const ReferenceOptions& options) {
  const bool extrapolated = options.estimate == EstimateMethod::Extrapolated;
  const Precision other_precision = estimate_precision(options);
  const int kept = std::min(options.kept_limbs, expansion_limbs(options.precision));
  {
    // Kept: the parts and a difference an element; a batch: both runs' outputs and the larger run's working states.
    ReferenceOptions other = options;
    other.precision = other_precision;
    const bool larger = expansion_limbs(other_precision) > expansion_limbs(options.precision);
    const ReferenceOptions& wider = larger ? other : options;
    const DplrProblem first = sequences_of(problem, 0, batch_sequences(problem, 0, options.threads));
    require_memory(saturating_sum({output_bytes(problem, options, kept + 1), output_bytes(first, options, expansion_limbs(options.precision)),
                                   output_bytes(first, other, expansion_limbs(other_precision)),
                                   working_bytes(problem, wider, expansion_limbs(wider.precision))}),
                   options.origin, memory_purpose(options) + fmt::format(", streamed, estimated against {}", other_precision.name()));
  }
  ReferenceResult result;
  result.precision = options.precision;
  result.estimate_method = options.estimate;
  result.estimated_against = other_precision;
  std::map<std::string, std::vector<double>> differences;
  for (std::int64_t first = 0; first < problem.num_sequences();) {
    const std::int64_t count = batch_sequences(problem, first, options.threads);
    const DplrProblem batch = sequences_of(problem, first, count);
    ReferenceOptions at = options;
    at.kept_limbs = 0;
    at.origin = fmt::format("{} (sequences {} to {})", options.origin, first, first + count - 1);
    ReferenceResult answer = run_reference(batch, at);
    at.precision = extrapolated ? other_precision : answer.precision.certifier();
    const ReferenceResult other = run_reference(batch, at);
    add_times(result, answer, other);
    for (const auto& note : answer.notes) result.notes.push_back(fmt::format("sequences {} to {}: {}", first, first + count - 1, note));
    if (result.tensors.empty()) {
      // The whole tensors, each allocated (and so first touched: gigabytes at training scale) on a worker thread.
      std::vector<std::string> names;
      for (const auto& [name, part] : answer.tensors) names.push_back(name);
      std::vector<ExactTensor> wholes(names.size());
      std::vector<std::vector<double>> zeros(names.size());
      parallel_for(
          static_cast<std::int64_t>(names.size()), options.threads,
          [&](std::int64_t i) {
            std::vector<std::int64_t> shape = answer.tensors.at(names[i]).shape;
            shape[0] = is_state_tensor(names[i]) ? problem.num_sequences() : problem.shape.B;
            if (!is_state_tensor(names[i])) shape[1] = problem.shape.T;
            wholes[i] = ExactTensor(shape, kept);
            zeros[i].assign(static_cast<std::size_t>(wholes[i].numel()), 0.0);
          },
          Progress::None);
      for (std::size_t i = 0; i < names.size(); ++i) {
        result.tensors.emplace(names[i], std::move(wholes[i]));
        differences.emplace(names[i], std::move(zeros[i]));
      }
    }
    for (const auto& [name, part] : answer.tensors) {
      ExactTensor& whole = result.tensors.at(name);
      std::vector<double>& difference = differences.at(name);
      const SequenceSpan span = problem.sequence(first);
      std::int64_t per_row = 1;  // elements a state (sequence), or a token row of every head
      for (std::size_t dim = is_state_tensor(name) ? 1 : 2; dim < part.shape.size(); ++dim) per_row *= part.shape[dim];
      const std::int64_t offset = is_state_tensor(name) ? first * per_row : (span.batch * problem.shape.T + span.begin) * per_row;
      // The lower run minus the higher, as agreement_bits forms it, and the kept parts: on the run's threads, a
      // block of elements each (a training-scale batch, one sequence, has 4.2e6 elements a tensor).
      const ExactTensor& higher = extrapolated ? part : other.tensors.at(name);
      const ExactTensor& lower = extrapolated ? other.tensors.at(name) : part;
      if (higher.shape != lower.shape) throw std::logic_error("run_certified_streamed: the two runs' shapes differ");
      constexpr std::int64_t kBlock = 1 << 15;
      const std::int64_t n = part.numel();
      parallel_for(
          (n + kBlock - 1) / kBlock, options.threads,
          [&](std::int64_t block) {
            for (std::int64_t i = block * kBlock; i < std::min(n, (block + 1) * kBlock); ++i) {
              difference[offset + i] = expansion_difference(lower, higher, i);
              for (int l = 0; l < kept; ++l) whole.parts[(offset + i) * kept + l] = part.parts[i * part.limbs + l];
            }
          },
          Progress::None);
    }
    first += count;
  }
  const double agreement_cap = std::min(options.precision.significand_bits(), other_precision.significand_bits());
  std::vector<std::string> names;
  for (const auto& [name, tensor] : result.tensors) names.push_back(name);
  std::vector<double> bits(names.size());
  parallel_for(
      static_cast<std::int64_t>(names.size()), options.threads,
      [&](std::int64_t i) {
        bits[i] = agreement_bits_of_differences(differences.at(names[i]), result.tensors.at(names[i]), agreement_cap);
      },
      Progress::None);
  std::map<std::string, double> agreement;
  for (std::size_t i = 0; i < names.size(); ++i) agreement[names[i]] = bits[i];
  result.estimated_bits =
      extrapolated ? extrapolate_between(agreement, options.precision, other_precision, &result.notes) : agreement;
  return result;
}

}  // namespace

ReferenceResult run_certified_reference(const DplrProblem& problem, const ReferenceOptions& options) {
  if (options.kept_limbs > 0) return run_certified_streamed(problem, options);
  ReferenceOptions check = options;
  check.precision = estimate_precision(options);
  // The other run's tensors are held beside the first run's; the working states are the wider run's.
  const int limbs = expansion_limbs(check.precision), own_limbs = expansion_limbs(options.precision);
  const ReferenceOptions& wider = limbs > own_limbs ? check : options;
  require_memory(saturating_sum({output_bytes(problem, options, own_limbs), output_bytes(problem, check, limbs),
                                 working_bytes(problem, wider, std::max(limbs, own_limbs))}),
                 options.origin, memory_purpose(options) + fmt::format(" estimated against {}", check.precision.name()));
  ReferenceResult result = run_reference(problem, options);
  if (options.estimate == EstimateMethod::Repeat)
    check.precision = result.precision.certifier();  // of the precision really used (MPFR after an overflow)
  const ReferenceResult other = run_reference(problem, check);
  result.estimated_bits = options.estimate == EstimateMethod::Repeat ? certify(result, other) : extrapolate_from(result, other);
  result.estimate_method = options.estimate;
  result.estimated_against = check.precision;
  result.estimate_seconds = other.seconds, result.estimate_cpu_seconds = other.cpu_seconds;
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
