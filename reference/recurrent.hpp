// The exact recurrence of the contract (shared spec DPLR.md), forward and analytic backward (BPTT),
// written once over the scalar type S and instantiated in reference/instantiate_<type>.cpp.
//
//   x_t = S_{t-1}^T a_t
//   S_t = diag(exp(gk_t)) S_{t-1} + b_t x_t^T + k_t v_t^T,    o_t = scale S_t^T q_t,    ht = S_T
//
//   G_T = dht;  for t = T..1:  G_t += scale q_t do_t^T;  dq_t = scale S_t do_t;  dk_t = G_t v_t;
//   dv_t = G_t^T k_t;  db_t = G_t x_t;  y_t = G_t^T b_t;  da_t = S_{t-1} y_t;
//   dgk_t = exp(gk_t) .* rowsum(G_t .* S_{t-1});  G_{t-1} = D_t G_t + a_t y_t^T;  dh0 = G_0
//
// The backward keeps the state every `checkpoint_interval` tokens and recomputes the states of one
// segment at a time, so its memory is O((T / interval + interval) K V) instead of O(T K V). By default
// (interval 0) it keeps every state where a sequence's states fit in kKeepAllStatesBytes per worker, and
// then recomputes nothing (at ceil(sqrt(T)) the recomputation is about 4 of the 19 element updates per token
// of fwd+bwd, by count), else keeps every ceil(sqrt(T))-th.
// The forward also keeps each step's x = S^T a and decay (O(T (K + V)) scalars) and gives dq.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/exact_tensor.hpp"
#include "reference/problem.hpp"

namespace dplr {

struct RecurrentOptions {
  bool backward = true;
  std::int64_t checkpoint_interval = 0;  // 0: resolve_checkpoint_interval's choice
  int threads = 0;
};

// Bytes one scalar of `limbs` doubles takes in a state (heap: MPFR's and Arb's limbs and their header).
inline std::uint64_t state_scalar_bytes(int limbs, bool heap) {
  return static_cast<std::uint64_t>(limbs) * 8 + (heap ? 48 : 0);
}
// Every state of a sequence is kept (interval 1) when they take at most this per worker: T4096 K=V=64 in td
// (384 MiB) fits; a 16-core device host holds 16 such workers (6 GiB).
inline constexpr std::uint64_t kKeepAllStatesBytes = std::uint64_t(512) << 20;
// The checkpoint interval of a sequence of `length` steps whose states have `state_elements` scalars of
// `scalar_bytes`: `requested` when > 0; else 1 when the states fit in kKeepAllStatesBytes, else ceil(sqrt(length)).
inline std::int64_t resolve_checkpoint_interval(std::int64_t requested, std::int64_t length, std::int64_t state_elements,
                                                std::uint64_t scalar_bytes) {
  if (requested > 0) return requested;
  const double bytes = double(length) * double(state_elements) * double(scalar_bytes);
  if (bytes <= double(kKeepAllStatesBytes)) return 1;
  return std::max<std::int64_t>(1, static_cast<std::int64_t>(std::ceil(std::sqrt(double(length)))));
}

// Inputs moved along a direction, x + epsilon * d, for finite differences. Tensors by contract name
// (q, k, v, a, b, gk, h0); a missing name is not moved.
struct InputDirection {
  std::map<std::string, std::vector<double>> by_name;
};

// The loss L = sum_t <o_t, do_t> + <ht, dht> is accumulated in S when `loss` is given (needs do).
template <class S>
ExactTensorMap recurrent_reference(const DplrProblem& problem, const RecurrentOptions& options,
                                   const InputDirection* direction = nullptr, const S* epsilon = nullptr,
                                   S* loss = nullptr);

// The central difference (L(x + eps d) - L(x - eps d)) / 2 eps in S, eps = 2^epsilon_log2, rounded to double.
// With eps = 2^(-bits/3) both the truncation and the rounding error are near 2^(-2 bits/3) relative.
template <class S>
double central_difference(const DplrProblem& problem, const InputDirection& direction, double epsilon_log2,
                          int threads);

// Directional derivative check in S: the central difference (L(x + eps d) - L(x - eps d)) / 2 eps
// against the analytic <grad L, d>. Values are returned rounded to double; `relative_difference`
// is |fd - analytic| / max(|analytic|, tiny), evaluated in S before rounding.
struct DirectionalCheck {
  double finite_difference = 0.0, analytic = 0.0, relative_difference = 0.0;
};
template <class S>
DirectionalCheck directional_gradient_check(const DplrProblem& problem, const InputDirection& direction,
                                            double epsilon_log2, int threads);

}  // namespace dplr
