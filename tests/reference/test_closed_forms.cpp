// Closed forms the recurrence must reduce to: plain causal linear attention (a = b = 0, gk = 0), the
// scalar recurrence (K = V = 1), and a single token (T = 1).
#include "helpers.hpp"

namespace dplr {
namespace {

using testing::run;

CaseSpec small_spec(std::int64_t T, std::int64_t K, std::int64_t V) {
  CaseSpec spec;
  spec.shape = {2, T, 2, K, V};
  spec.dtype = DType::F64;
  spec.gk_dtype = DType::F64;
  spec.seed = 7;
  return spec;
}

TEST(ClosedForms, ZeroLowRankAndZeroDecayIsCausalLinearAttention) {
  DplrProblem p = generate_case(small_spec(9, 4, 3));
  for (Tensor* t : {&p.a, &p.b, &p.gk}) std::fill(t->values.begin(), t->values.end(), 0.0);
  const auto result = run(p, "qd");
  const auto& s = p.shape;
  double worst = 0.0;
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t h = 0; h < s.H; ++h)
      for (std::int64_t t = 0; t < s.T; ++t)
        for (std::int64_t j = 0; j < s.V; ++j) {
          // o_t = scale (h0^T q_t + sum_{u <= t} (q_t . k_u) v_u)
          double expected = 0.0;
          for (std::int64_t i = 0; i < s.K; ++i)
            expected += p.q.values[p.token_index(b, t, h, i, s.K)] * p.h0->values[p.state_index(b, h, i, j)];
          for (std::int64_t u = 0; u <= t; ++u) {
            double qk = 0.0;
            for (std::int64_t i = 0; i < s.K; ++i)
              qk += p.q.values[p.token_index(b, t, h, i, s.K)] * p.k.values[p.token_index(b, u, h, i, s.K)];
            expected += qk * p.v.values[p.token_index(b, u, h, j, s.V)];
          }
          expected *= p.scale;
          const double got = result.tensors.at("o").value(p.token_index(b, t, h, j, s.V));
          worst = std::max(worst, std::fabs(got - expected) / std::max(1.0, std::fabs(expected)));
        }
  EXPECT_LT(worst, 1e-13);
}

TEST(ClosedForms, OneByOneStateIsAScalarRecurrence) {
  const DplrProblem p = generate_case(small_spec(17, 1, 1));
  const auto result = run(p, "qd");
  const auto& s = p.shape;
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t h = 0; h < s.H; ++h) {
      auto at = [&](const Tensor& x, std::int64_t t) { return x.values[p.token_index(b, t, h, 0, 1)]; };
      double state = p.h0->values[p.state_index(b, h, 0, 0)];
      double transition_product = 1.0, dh0 = 0.0;
      for (std::int64_t t = 0; t < s.T; ++t) {
        const double m = std::exp(at(p.gk, t)) + at(p.b, t) * at(p.a, t);
        state = m * state + at(p.k, t) * at(p.v, t);
        transition_product *= m;
        dh0 += p.scale * at(p.q, t) * at(*p.grad_o, t) * transition_product;
        const double o = result.tensors.at("o").value(p.token_index(b, t, h, 0, 1));
        EXPECT_NEAR(o, p.scale * at(p.q, t) * state, 1e-12 * std::max(1.0, std::fabs(o)));
      }
      dh0 += p.grad_ht->values[p.state_index(b, h, 0, 0)] * transition_product;
      EXPECT_NEAR(result.tensors.at("ht").value(p.state_index(b, h, 0, 0)), state, 1e-12 * std::max(1.0, std::fabs(state)));
      const double got_dh0 = result.tensors.at("dh0").value(p.state_index(b, h, 0, 0));
      EXPECT_NEAR(got_dh0, dh0, 1e-12 * std::max(1.0, std::fabs(dh0)));
    }
}

class SingleToken : public ::testing::TestWithParam<std::pair<std::int64_t, std::int64_t>> {};

// K = V = 256 is the largest head the reference promises; nothing in it is sized by K or V.
INSTANTIATE_TEST_SUITE_P(HeadSizes, SingleToken, ::testing::Values(std::pair<std::int64_t, std::int64_t>{3, 2},
                                                                   std::pair<std::int64_t, std::int64_t>{256, 256}));

TEST_P(SingleToken, MatchesTheClosedForm) {
  const DplrProblem p = generate_case(small_spec(1, GetParam().first, GetParam().second));
  const auto result = run(p, "qd");
  const auto& s = p.shape;
  for (std::int64_t b = 0; b < s.B; ++b)
    for (std::int64_t h = 0; h < s.H; ++h) {
      auto key = [&](const Tensor& x, std::int64_t i) { return x.values[p.token_index(b, 0, h, i, s.K)]; };
      auto h0 = [&](std::int64_t i, std::int64_t j) { return p.h0->values[p.state_index(b, h, i, j)]; };
      for (std::int64_t j = 0; j < s.V; ++j) {
        double x = 0.0;  // x = h0^T a
        for (std::int64_t i = 0; i < s.K; ++i) x += h0(i, j) * key(p.a, i);
        double o = 0.0;
        for (std::int64_t i = 0; i < s.K; ++i) {
          const double state = std::exp(key(p.gk, i)) * h0(i, j) + key(p.b, i) * x +
                               key(p.k, i) * p.v.values[p.token_index(b, 0, h, j, s.V)];
          EXPECT_NEAR(result.tensors.at("ht").value(p.state_index(b, h, i, j)), state, 1e-13);
          o += p.scale * key(p.q, i) * state;
        }
        EXPECT_NEAR(result.tensors.at("o").value(p.token_index(b, 0, h, j, s.V)), o, 1e-13);
      }
    }
}

}  // namespace
}  // namespace dplr
