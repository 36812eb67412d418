// verify/gradcheck.hpp: our analytic backward passes its own finite-difference check; recorded gradients pass when
// they are the exact ones rounded to double and fail when one of them is off by 10%; a recording without a
// gradient skips it; a problem without `do` is refused.
#include <gtest/gtest.h>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/reference.hpp"
#include "verify/gradcheck.hpp"

namespace dplr {
namespace {

DplrProblem small_case() {
  CaseSpec spec;
  spec.shape = {1, 6, 1, 3, 2};
  spec.seed = 3;
  return generate_case(spec);
}

GradcheckOptions fast_options() {
  GradcheckOptions o;
  o.precision = Precision{Arithmetic::DoubleDouble, 0};
  o.directions = 2;
  o.threads = 1;
  return o;
}

TEST(Gradcheck, OurBackwardPassesDirectionalAndPerElement) {
  const DplrProblem p = small_case();
  GradcheckOptions o = fast_options();
  const GradcheckResult directional = check_gradients(p, o);
  EXPECT_TRUE(directional.all_pass());
  EXPECT_GE(directional.gradients.size(), 6u);  // dq, dk, dv, da, db, dgk (and dh0 with h0)
  for (const auto& g : directional.gradients) EXPECT_LE(g.error, directional.tolerance) << g.gradient;
  o.per_element = true;
  const GradcheckResult per_element = check_gradients(p, o);
  EXPECT_TRUE(per_element.all_pass());
  for (const auto& g : per_element.gradients) EXPECT_GT(g.checks, 1) << g.gradient;
}

TEST(Gradcheck, RecordedGradientsPassWhenExactAndFailWhenOff) {
  const DplrProblem p = small_case();
  ReferenceOptions ro;
  ro.precision = Precision{Arithmetic::DoubleDouble, 0};
  const ReferenceResult exact = run_reference(p, ro);
  TensorMap recorded;
  for (const auto& [name, t] : exact.tensors)
    if (name.size() > 1 && name[0] == 'd') recorded[name] = Tensor{DType::F64, t.shape, t.rounded()};
  const GradcheckOptions o = fast_options();
  EXPECT_TRUE(check_gradients(p, o, &recorded).all_pass());

  for (double& x : recorded.at("dk").values) x *= 1.1;
  recorded.erase("dv");
  const GradcheckResult r = check_gradients(p, o, &recorded);
  EXPECT_FALSE(r.all_pass());
  for (const auto& g : r.gradients) {
    if (g.gradient == "dk") EXPECT_FALSE(g.pass) << "dk off by 10%: error " << g.error;
    else if (g.gradient == "dv") EXPECT_FALSE(g.in_recording) << "dv is not in the recording";
    else EXPECT_TRUE(g.pass) << g.gradient << ": error " << g.error;
  }
}

TEST(Gradcheck, NeedsTheUpstreamGradient) {
  DplrProblem p = small_case();
  p.grad_o.reset();
  EXPECT_THROW(check_gradients(p, fast_options()), InputError);
}

}  // namespace
}  // namespace dplr
