// The exact DPLR reference: forward (o, ht) and backward (dq, dk, dv, da, db, dgk, dh0) of the
// recurrence in the contract, at a precision chosen at run time, spread over (sequence, head) pairs on
// all cores, with the backward's memory bounded by checkpointing. See reference/recurrent.hpp.
#pragma once
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "reference/exact_tensor.hpp"
#include "reference/precision.hpp"
#include "reference/problem.hpp"

namespace dplr {

// How run_certified_reference estimates a run's bits.
enum class EstimateMethod {
  // Agreement with a repeat at precision.certifier(), a higher precision: the bits of the answer, the lower run.
  Repeat,
  // The answer at `precision`, its bits extrapolated from its agreement with a run at precision.extrapolation_base(),
  // a lower one: the base's error is about the problem's conditioning times the base's unit roundoff, and the
  // answer's the same conditioning times its own (first order), so the answer's bits are the agreement plus the gap
  // in significand bits (td from dd: 44; dd from double: 53) less kExtrapolationMarginBits. Where the agreement is
  // below extrapolation_minimum_bits(base) (or a run is non-finite) the model is not relied on: the answer is claimed
  // only the agreement, and a note says so.
  Extrapolated,
};
// The gap the operations really have is not quite the significand bits': on the validation's cases
// (tests/reference/test_precision.cpp, 21 cases of 7 distributions) td's true bits less dd's agreement with it ran
// down to 41.5 (mixed-decay), so 4 bits are taken off: the claim stayed 1.5 or more below the truth there.
inline constexpr double kExtrapolationMarginBits = 4;
std::string_view estimate_method_name(EstimateMethod method);  // "repeat", "extrapolated"
EstimateMethod parse_estimate_method(std::string_view text);  // "repeat" | "extrapolated"; InputError otherwise

struct ReferenceOptions {
  Precision precision;
  bool backward = true;              // computed when the problem has `do`
  std::int64_t checkpoint_interval = 0;  // states kept every this many tokens; 0: resolve_checkpoint_interval's choice
  int threads = 0;                   // 0: all cores
  std::string origin = "case";       // names the case (a file) in error messages
  EstimateMethod estimate = EstimateMethod::Repeat;  // run_certified_reference's estimate
  // run_certified_reference only. 0: both runs over the whole problem at once, every part of every element kept.
  // > 0: streamed, a few sequences at a time (every head of them), and the result keeps only each element's
  // leading `kept_limbs` parts (1: correctly rounded to double), so memory holds no full-size expansion: for
  // training-scale recordings. The bits are the same but for the floor's RMS, taken of the kept answer.
  int kept_limbs = 0;
};

struct ReferenceResult {
  ExactTensorMap tensors;  // o, ht, and with the backward dq, dk, dv, da, db, dgk, dh0
  Precision precision;
  double seconds = 0.0;      // wall time of the run (the estimate's repeat not counted)
  double cpu_seconds = 0.0;  // the process's CPU time (user + system, all threads) over the run
  std::optional<Precision> estimated_against;  // the other run of the estimate: higher (Repeat) or lower (Extrapolated)
  EstimateMethod estimate_method = EstimateMethod::Repeat;
  double estimate_seconds = 0.0, estimate_cpu_seconds = 0.0;  // the same of the repeat at estimated_against
  std::map<std::string, double> estimated_bits;  // per tensor, when certified: the estimate (agreement of two runs)
  std::map<std::string, double> proven_bits;     // per tensor, of a rigorous (ball) run: proven_bits() of exact_tensor.hpp
  std::vector<std::string> notes;  // e.g. why the run moved to MPFR
  double min_estimated_bits() const;
  double min_proven_bits() const;
};

struct RigorousOptions {
  double proven_bits = 64;      // asked of every tensor
  int first_precision = 0;      // working bits of the first run; 0: proven_bits + 32
  int max_precision = 4096;     // no run above this many working bits
};

// Ball arithmetic (Arb), where the build has it (else an InputError says so): runs at growing working
// precision until every tensor proves `rigorous.proven_bits`, or throws an InputError naming what the last
// run (at max_precision) reached. An unbounded ball or a midpoint beyond double's range is refused by name.
// options.precision is ignored. The result's tensors carry radius; its notes list the runs made.
ReferenceResult run_rigorous_reference(const DplrProblem& problem, const ReferenceOptions& options,
                                       const RigorousOptions& rigorous);

// Double, double-double and quad-double have double's exponent range (about 2^1024): where a run in one
// of them overflows (a non-finite part in any tensor), it is repeated in MPFR at the same significand bits,
// whose exponent range holds, and a note says so. Where the exact result itself lies beyond double's range
// (it could not be stored or compared), the run is refused with an InputError naming origin and tensor.
ReferenceResult run_reference(const DplrProblem& problem, const ReferenceOptions& options);

// Study only, never a reference: the recurrence (forward and, with do, backward) computed in float, inputs rounded
// to float once (reference/instantiate_float.cpp). What a plain fp32 implementation of the recurrence achieves.
ExactTensorMap recurrent_in_float(const DplrProblem& problem, int threads = 0);

// Runs at options.precision and again at its certifier(); returns the first run's tensors with the bits
// on which the two runs agree, per tensor.
ReferenceResult run_certified_reference(const DplrProblem& problem, const ReferenceOptions& options);

// How the bits of a certified run at options' precision are estimated, for messages: "estimated against td",
// "estimated, extrapolated from dd (+44 bits)".
std::string estimate_description(const ReferenceOptions& options);

// The bits on which every tensor of `result` agrees with the same tensor of `more_precise`.
std::map<std::string, double> certify(const ReferenceResult& result, const ReferenceResult& more_precise);

// The agreement the first-order model is relied on from: half the base's significand bits (dd 53, double 26.5).
// The base then kept at least half of its bits, so its error's second-order part (~ the error squared) lies below
// what the answer's own precision can resolve.
double extrapolation_minimum_bits(const Precision& base);

// EstimateMethod::Extrapolated's claim from the agreement (per tensor) of the answer with a run `gap_bits` fewer
// significand bits: agreement + gap_bits - kExtrapolationMarginBits, at most cap_bits, where the agreement reaches
// minimum_bits; the agreement alone where it does not, with a note naming the tensor in *notes.
std::map<std::string, double> extrapolate_bits(const std::map<std::string, double>& agreement, double gap_bits,
                                               double cap_bits, double minimum_bits, std::vector<std::string>* notes);

// The answer's bits extrapolated from a run at a lower precision (`base`, the same problem): certify(base, answer)
// then extrapolate_bits with the gap in significand bits of the two precisions. Notes go into answer.notes.
std::map<std::string, double> extrapolate_from(ReferenceResult& answer, const ReferenceResult& base);

}  // namespace dplr
