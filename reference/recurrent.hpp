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
// segment at a time, so its memory is O((T / interval + interval) K V) instead of O(T K V).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/exact_tensor.hpp"
#include "reference/problem.hpp"

namespace dplr {

struct RecurrentOptions {
  bool backward = true;
  std::int64_t checkpoint_interval = 0;  // 0: ceil(sqrt(sequence length))
  int threads = 0;
};

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
