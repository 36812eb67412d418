// A DPLR case as the contract (shared spec DPLR.md) defines it: inputs in fla's batch-first layout,
// options, and the upstream gradients. Values are held as exact doubles (core/tensor.hpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/tensor.hpp"

namespace dplr {

struct DplrShape {
  std::int64_t B = 1, T = 1, H = 1, K = 1, V = 1;
};

// One sequence of the batch: tokens [begin, end) of batch row `batch`.
struct SequenceSpan {
  std::int64_t batch = 0, begin = 0, end = 0;
  std::int64_t length() const { return end - begin; }
};

struct DplrProblem {
  DplrShape shape;
  double scale = 0.0;  // resolved: K^-1/2 unless given
  bool reverse = false;
  std::vector<std::int64_t> cu_seqlens;  // empty: each batch row is one sequence

  Tensor q, k, v, a, b, gk;               // [B, T, H, K] (v: [B, T, H, V])
  std::optional<Tensor> h0;               // [N, H, K, V]; zero when absent
  std::optional<Tensor> grad_o;           // "do": [B, T, H, V]; present to ask for the backward
  std::optional<Tensor> grad_ht;          // "dht": [N, H, K, V]; zero when absent

  std::int64_t num_sequences() const { return cu_seqlens.empty() ? shape.B : std::int64_t(cu_seqlens.size()) - 1; }
  SequenceSpan sequence(std::int64_t n) const;
  bool has_backward() const { return grad_o.has_value(); }
  // Flat index of element (b, t, h, i) of a [B, T, H, D] tensor, and of (n, h, i, j) of an [N, H, K, V] one.
  std::int64_t token_index(std::int64_t b, std::int64_t t, std::int64_t h, std::int64_t i, std::int64_t D) const {
    return ((b * shape.T + t) * shape.H + h) * D + i;
  }
  std::int64_t state_index(std::int64_t n, std::int64_t h, std::int64_t i, std::int64_t j) const {
    return ((n * shape.H + h) * shape.K + i) * shape.V + j;
  }
};

// The contract's tensor names, in report order.
inline constexpr std::string_view kInputNames[] = {"q", "k", "v", "a", "b", "gk", "h0", "cu_seqlens", "do", "dht"};
inline constexpr std::string_view kOutputNames[] = {"o", "ht"};
inline constexpr std::string_view kGradientNames[] = {"dq", "dk", "dv", "da", "db", "dgk", "dh0"};

// The inputs that have a gradient, and each one's gradient name: q -> dq, ..., h0 -> dh0.
inline constexpr std::string_view kDifferentiableInputs[] = {"q", "k", "v", "a", "b", "gk", "h0"};
std::string gradient_name(std::string_view input);

// Builds a problem from named tensors (as read from a file), checking every shape against the contract.
// `origin` names the source (a file path) in error messages. Options: scale (NaN: default K^-1/2), reverse.
// The first form copies the inputs; the second moves their values out of `tensors` (a training-scale
// recording's inputs are gigabytes), whose entries of those names are then left empty.
DplrProblem problem_from_tensors(const TensorMap& tensors, double scale, bool reverse, std::string_view origin);
DplrProblem problem_from_tensors(TensorMap&& tensors, double scale, bool reverse, std::string_view origin);

// Checks shapes, cu_seqlens and finiteness; throws InputError naming `origin`, the tensor and what was
// expected. A problem built by hand should pass this before it is run.
void validate_problem(const DplrProblem& problem, std::string_view origin);

// Input tensors of the problem by contract name ("q", ..., "dht"); nullptr when absent.
const Tensor* find_input(const DplrProblem& problem, std::string_view name);
Tensor* find_input(DplrProblem& problem, std::string_view name);

// The problem of sequences [first, first + count) of `problem`, every head: a contiguous slice of each tensor (batch
// rows, or with cu_seqlens the sequences' tokens, cu_seqlens shifted to start at 0). For streaming the reference.
DplrProblem sequences_of(const DplrProblem& problem, std::int64_t first, std::int64_t count);

// Writes the problem's tensors under the contract's names (cu_seqlens as I64).
TensorMap problem_to_tensors(const DplrProblem& problem);

}  // namespace dplr
