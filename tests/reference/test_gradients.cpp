// The analytic backward against directional finite differences at >= 200 bits, for each of the seven
// gradients, over random shapes and options.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <rapidcheck/gtest.h>

#include "generators/rapidcheck.hpp"
#include "reference/dispatch.hpp"
#include "reference/recurrent.hpp"

namespace dplr {
namespace {

// A direction that moves only the input `name` (random normal entries).
InputDirection direction_in(const DplrProblem& p, const std::string& name, std::uint64_t seed) {
  RandomStream random(seed);
  InputDirection d;
  auto& values = d.by_name[name];
  values.resize(find_input(p, name)->values.size());
  for (auto& x : values) x = random.normal();
  return d;
}

DirectionalCheck check(const DplrProblem& p, const InputDirection& d, const char* precision) {
  const Precision prec = Precision::parse(precision);
  const double epsilon_log2 = prec.arithmetic == Arithmetic::QuadDouble ? -70 : -90;
  return with_scalar(prec, [&]<class S>(std::type_identity<S>) {
    return directional_gradient_check<S>(p, d, epsilon_log2, 1);
  });
}

RC_GTEST_PROP(Gradients, DirectionalFiniteDifferencesAgreeTo30Digits, ()) {
  CaseLimits limits;
  limits.max_T = 8, limits.max_K = 4, limits.max_V = 4;
  const CaseSpec spec = *gen_case_spec(limits);
  const DplrProblem p = generate_case(spec);
  for (const char* name : {"q", "k", "v", "a", "b", "gk", "h0"}) {
    if (!find_input(p, name)) continue;
    const auto result = check(p, direction_in(p, name, spec.seed + 1), "qd");
    RC_LOG() << describe(spec) << " d" << name << ": fd " << result.finite_difference << " analytic "
             << result.analytic << " rel " << result.relative_difference << "\n";
    // Relative to the gradient, or to 1e-12 where the gradient is smaller: strong decay makes dgk ~3e-15, where the
    // finite difference's own error (~1e-44 absolute at qd) is 2e-30 of it (seed 24, B1 T2 K1 V1; session 7).
    const double scale = std::max(1.0, 1e-12 / std::max(std::fabs(result.analytic), 1e-300));
    RC_ASSERT(result.relative_difference <= 1e-30 * scale);
  }
}

TEST(Gradients, EveryGradientAt256BitsMpfr) {
  CaseSpec spec;
  spec.shape = {1, 9, 2, 3, 2};
  spec.cu_seqlens = {0, 4, 9};
  spec.distribution = "edge-of-stability";
  spec.seed = 21;
  const DplrProblem p = generate_case(spec);
  for (const char* name : {"q", "k", "v", "a", "b", "gk", "h0"}) {
    const auto result = check(p, direction_in(p, name, 99), "256");
    EXPECT_LE(result.relative_difference, 1e-40) << name << " fd " << result.finite_difference << " analytic "
                                                 << result.analytic;
  }
}

}  // namespace
}  // namespace dplr
