// How far one tensor is from its expected values: the numbers a verdict and a report are made of.
//
//   rel RMSE     = ||actual - expected||_2 / ||expected||_2                  (fla's ratio)
//   floor        = rel RMSE of round(expected, floor dtype) against expected  (the best any result stored
//                  in that dtype can do: the correctly rounded answer)
//                  or, where a conditioning floor is given (verify/conditioning.hpp), the larger of the two
//   floor ratio  = rel RMSE / floor                                           (1.0: as good as correctly rounded)
//   rel error_i  = |a_i - e_i| / max(|e_i|, kRelativeFloor * RMS(expected))
//   ulp error_i  = |a_i - e_i| / dtype_ulp(max(|e_i|, kRelativeFloor * RMS(expected)), storage dtype)
//   elem error_i = |a_i - e_i| / (u (|e_i| + RMS(expected)) + eta/2)    u: the judged dtype's unit roundoff,
//                  eta its subnormal spacing (rounding's absolute error near zero: fl(x) = x (1 + d) + e,
//                  |d| <= u, |e| <= eta/2), so a tensor whose exact values lie below the dtype's range (exp(gl)
//                  of a strongly decaying chunk: ~1e-270 in fp32) is correctly rounded to 0 at elem error <= 1
//   local ratio  = per block of tokens of one (sequence, head): RMS_block(a - e) /
//                  (floor x max(RMS_block(e), kLocalScaleFloor x RMS(expected)))
//   misrounded   = fraction of elements with a_i != round(e_i, storage dtype)   (16-bit storage, exact e)
//
// Why elementwise and local figures beside the RMSE: a whole-tensor RMSE dilutes a defect confined to one
// element, one head or one chunk by the number of elements it misses (one bad element of 500,000 moves the
// RMSE by 1/700 of its own error). The elementwise bound is the mixed absolute/relative test that
// torch.testing.assert_close makes (|err| <= atol + rtol |e|, here atol = k (u RMS + eta/2), rtol = k u): a correctly
// rounded element has elem error <= 1 (|err| <= u |e|), and an element near zero is held to the tensor's
// scale, not its own. The local ratio is the floor ratio of one block of tokens of one head.
//
// "expected" is the exact reference rounded to double (ExactTensor::rounded(), for `dplr verify`) or a
// second file's tensor (`dplr diff A B`, where B plays the expected side and nothing is exact).
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "core/dtype.hpp"

namespace dplr {

// Near-zero elements are judged against a floor of kRelativeFloor x RMS(expected) in the max relative error.
// Why this value: a kernel's absolute error on an element comes from sums over terms of the tensor's own
// scale, so an element far below the RMS measures cancellation, not the kernel. 2^-6 (~1.6% of the RMS)
// leaves ~99% of a normally distributed tensor judged elementwise (P(|z| < 0.0156) ~ 1.2%), while an
// element at zero can inflate its relative error by at most 64x its absolute error in RMS units.
inline constexpr double kRelativeFloor = 0x1p-6;

// The expected rel RMSE of correct rounding to a dtype with unit roundoff u, for values whose significands
// are log-uniformly spread: sqrt((u^2/3) * E[1/m^2]), m in [1, 2) with density 1/(m ln 2), = 0.4247 u.
// (Measured on fla's recordings: bf16 1.66e-3 = 0.425 u, fp16 2.08e-4, fp32 2.5e-8.)
double nominal_rounding_floor(DType dtype);

// When the measured floor is below kMinimumFloorFraction x the nominal floor, the nominal floor times this
// fraction is used instead. This happens when rounding to the floor dtype is exact or nearly so: floor dtype
// F64 (expected values are doubles already), all-zero or small-integer tensors. Dividing by a floor of zero
// (or of one stray rounding) would make the ratio infinite or meaningless; with the substitute, a result
// equal to the expected values still has ratio 0 and one a few ulps off gets a ratio of a few.
inline constexpr double kMinimumFloorFraction = 0.5;

// The local ratio judges a block at its own scale, but never at less than kLocalScaleFloor x the tensor's
// RMS: a block of a strongly decayed head can be 10^-6 of the tensor, where a kernel whose absolute errors
// sit at the tensor's scale would read as 10^6 x "off". At 2^-4, a block must be 16x below the tensor's RMS
// before its errors are measured against the tensor's scale instead of its own.
inline constexpr double kLocalScaleFloor = 0x1p-4;

// The worst block is the worst of the blocks with at least this many elements (none: no worst block, and the
// local gate is not evaluated). The local ratio of a block of a few elements measures single elements, which the
// elementwise figure judges; the property sweep met T = 1, V = 3 blocks (3 elements) at 2.0-3.6 floors whose every
// element was within 1 u (session 7, H200).
inline constexpr std::int64_t kMinLocalBlockElements = 16;

// Tokens per block of the local figures: fla's and our fast chunk size, so a defect of one chunk fills one.
inline constexpr std::int64_t kDefaultBlockTokens = 16;

// The per-block grid of local ratios (for the HTML report's heatmap) is kept up to this many blocks; the
// per-(sequence, head) summaries up to kMaxLocalGroups (beyond: the worst ones).
inline constexpr std::int64_t kMaxLocalGridBlocks = 8192;
inline constexpr std::int64_t kMaxLocalGroups = 2048;

// log2 relative-error histogram: bin i counts elements with floor(log2(rel error)) == kHistogramMinLog2 + i,
// the first bin also everything below (rel < 2^-59), the last also everything above (rel >= 1).
// Elements equal to their expected value (rel error 0) are counted apart, in `exact_equal`.
inline constexpr int kHistogramMinLog2 = -60;
inline constexpr int kHistogramMaxLog2 = 0;
inline constexpr int kHistogramBins = kHistogramMaxLog2 - kHistogramMinLog2 + 1;

struct ErrorHistogram {
  std::int64_t exact_equal = 0;
  std::vector<std::int64_t> counts = std::vector<std::int64_t>(kHistogramBins, 0);
};

struct NonFiniteCounts {
  std::int64_t actual_nan = 0, actual_inf = 0;
  std::int64_t expected_nan = 0, expected_inf = 0;
  // Elements where actual or expected is infinite and the two are not the same infinity.
  std::int64_t inf_mismatch = 0;
  std::optional<std::vector<std::int64_t>> first_actual_nan_index;
  bool any() const { return actual_nan + actual_inf + expected_nan + expected_inf > 0; }
};

// An element where an error statistic peaked: its multi-index and both values.
struct ErrorLocation {
  double error = 0.0;
  std::vector<std::int64_t> index;  // empty when no element was compared
  double actual = 0.0, expected = 0.0;
};

struct FloorRatio {
  DType dtype = DType::F64;         // the dtype the expected values were rounded to
  double measured_rel_rmse = 0.0;   // rel RMSE of round(expected, dtype)
  double used_rel_rmse = 0.0;       // the floor divided by: measured, or the substitute (see above)
  bool substituted = false;         // true when used_rel_rmse is kMinimumFloorFraction x nominal
  double ratio = 0.0;               // rel RMSE / used_rel_rmse
  bool nominal = false;             // FloorSource::Nominal: used_rel_rmse is the nominal floor, nothing measured
  // The rounding floor (measured, substitute or nominal), and the conditioning floor where one was given
  // (verify/conditioning.hpp). used_rel_rmse is the larger; `conditioned` when the conditioning floor is.
  double rounding_rel_rmse = 0.0;
  std::optional<double> conditioning_rel_rmse{};
  bool conditioned = false;
};

// Where a tensor's elements sit in the case, so errors can be located by (sequence, head) and tokens.
struct TensorLayout {
  enum class Kind {
    Tokens,       // [B, T, H, X]: q, k, v, a, b, gk, o and their gradients, stage tensors such as A_qk, w, u
    States,       // [N, H, K, V]: h0, ht, dht, dh0 (one block per (sequence, head))
    ChunkStates,  // [B', NT, H, K, V]: h, dh (one block per chunk of a (row, head))
  };
  Kind kind = Kind::Tokens;
  std::vector<std::int64_t> cu_seqlens;  // Tokens with varlen packing (B = 1); empty: sequences = batch rows
  std::int64_t block_tokens = kDefaultBlockTokens;
};
std::string_view layout_kind_name(TensorLayout::Kind kind);  // "tokens", "states", "chunk-states"

// One block: tokens [token_begin, token_end) of (sequence, head) in Tokens layouts (token positions are
// along T, i.e. packed positions under varlen); chunks [token_begin, token_end) for ChunkStates; the whole
// K x V state for States (token range [0, 0)).
struct BlockMetrics {
  std::int64_t sequence = 0, head = 0, token_begin = 0, token_end = 0;
  std::int64_t elements = 0;
  double rel_rmse = 0.0;     // ||a - e|| / ||e|| over the block
  double local_ratio = 0.0;  // see the top of this file
};

struct GroupMetrics {  // one (sequence, head)
  std::int64_t sequence = 0, head = 0;
  double rel_rmse = 0.0;
  BlockMetrics worst_block;  // the block of this group with the largest local ratio
};

struct LocalityMetrics {
  TensorLayout::Kind layout = TensorLayout::Kind::Tokens;
  std::int64_t block_tokens = 0;  // 0 for States
  double floor = 0.0;             // the relative floor the local ratios divide by
  BlockMetrics worst_block;
  std::int64_t groups_total = 0;
  std::vector<GroupMetrics> groups;  // (sequence, head) order; the kMaxLocalGroups worst when more
  // local_ratio per block, grid[g][j] for group g (in groups' order, complete) and its j-th block; empty
  // when the tensor has more than kMaxLocalGridBlocks blocks or groups were cut.
  std::vector<std::vector<double>> grid;
};

struct TensorMetrics {
  DType dtype = DType::F64;  // storage dtype of the actual tensor; ulps are of this dtype
  std::vector<std::int64_t> shape;
  std::int64_t elements = 0;
  std::int64_t compared = 0;  // elements finite on both sides; every statistic below is over these

  NonFiniteCounts nonfinite;
  ErrorLocation max_abs;        // |a - e|
  double rel_rmse = 0.0;        // 0 when both sides are zero, +inf when only expected is
  double expected_rms = 0.0;    // RMS of the compared expected values
  double relative_floor = 0.0;  // kRelativeFloor x expected_rms
  ErrorLocation max_rel;        // |a - e| / max(|e|, relative_floor)
  ErrorLocation max_ulp;        // |a - e| / dtype_ulp(max(|e|, relative_floor), dtype)
  double p99_ulp = 0.0;         // 99th percentile of the ulp errors (nearest rank)
  ErrorLocation max_elem;       // |a - e| / (elem_unit (|e| + expected_rms)), in units of elem_unit
  double elem_unit = 0.0;       // the judged dtype's unit roundoff (0 for integer dtypes: no elem figure)
  std::optional<double> misrounded_fraction;  // 16-bit storage against exact values only
  // The same fraction for the kernel's algorithm computed in plain fp32 on the CPU and stored in this tensor's
  // dtype (MetricsOptions::implementation_misrounded_fraction): what that algorithm misrounds at fp32. Empty: not given.
  std::optional<double> implementation_misrounded_fraction;
  std::optional<FloorRatio> floor;  // absent when not computed
  std::optional<LocalityMetrics> locality;  // absent when the layout is unknown or nothing was compared
  ErrorHistogram histogram;
};

// How the floor is obtained. Measured: round(expected, floor dtype) against expected, with the substitute
// above where rounding is (nearly) exact; right when expected is more precise than the floor dtype (the
// exact reference, or an fp64 recording). Nominal: 0.4247 u of the floor dtype; for `diff` against a file B
// stored no more precisely than the judged dtype, where rounding B changes nothing.
enum class FloorSource { Measured, Nominal };

struct MetricsOptions {
  // The dtype whose correctly rounded answer is the floor. Empty: the actual tensor's dtype. Comparisons
  // pass the lower precision of the storage dtype and the case's working dtype (compare.hpp says why).
  std::optional<DType> floor_dtype{};
  bool compute_floor = true;
  FloorSource floor_source = FloorSource::Measured;
  std::optional<TensorLayout> layout{};  // empty: no locality figures
  bool expected_is_exact = true;         // false for diff: no misrounded fraction
  // The conditioning floor (verify/conditioning.hpp), a rel RMSE: the floor divided by is the larger of it and
  // the rounding floor. Empty: the rounding floor alone.
  std::optional<double> conditioning_rel_rmse{};
  // Copied to TensorMetrics::implementation_misrounded_fraction (compare.hpp computes it); the misrounded limit
  // follows it (tolerance.cpp).
  std::optional<double> implementation_misrounded_fraction{};
};

// Of the elements where `exact` is finite, the fraction whose `computed` value stored in `dtype` is not the exact
// value stored in `dtype` (correctly rounded); empty when none is finite. Both of length n.
std::optional<double> misrounded_fraction_of(std::span<const double> computed, std::span<const double> exact,
                                             DType dtype);

// actual and expected hold one tensor's values in row-major order, both of length prod(shape); `expected`
// is the exact answer rounded to double. Throws InputError when the lengths disagree with the shape.
TensorMetrics compute_metrics(std::span<const double> actual, std::span<const double> exact, DType actual_dtype,
                              const std::vector<std::int64_t>& shape, const MetricsOptions& options = {});

// `dplr diff A B`: B plays the expected side; nothing is exact (no misrounded fraction). The caller picks the
// floor source (compare.cpp: measured from B when B is more precise than the judged dtype, else nominal).
// ulps are of A's dtype, measured at B's values.
TensorMetrics compute_diff_metrics(std::span<const double> actual, std::span<const double> expected,
                                   DType actual_dtype, const std::vector<std::int64_t>& shape,
                                   MetricsOptions options);

// Multi-index of flat (row-major) element `flat` of a tensor of `shape`.
std::vector<std::int64_t> unravel_index(std::int64_t flat, const std::vector<std::int64_t>& shape);

// The float dtype with fewer significand bits (the lower precision); a if equal or if either is an
// integer dtype (an integer tensor is judged as itself).
DType lower_precision(DType a, DType b);

}  // namespace dplr
