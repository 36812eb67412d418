// `dplr verify --rigorous` as a library call (verify_case with options.rigorous): the case's reference is a
// ball run, its report carries proven bits (and no estimate), the proven bits are the ones the radii give,
// and the radii enclose the truth (MPFR at 400 bits). Planted: balls shrunk by 2^-40 stop enclosing it, and
// the report's bits would rise by the same 40, so a report whose bits did not come from the radii is caught.
// Built where Arb is (tests/verify/CMakeLists.txt).
#include <gtest/gtest.h>
#include <qd/qd_real.h>

#include <cmath>

#include "generators/distributions.hpp"
#include "io/tensor_io.hpp"
#include "reference/reference.hpp"
#include "verify/verify_case.hpp"

namespace dplr {
namespace {

// Elements of `ball` whose exact value (`truth`, an MPFR expansion) lies farther from the midpoint expansion
// than radius_factor x radius. Differences are summed in quad-double (212 bits, far below the radii).
std::int64_t outside(const ExactTensor& ball, const ExactTensor& truth, double radius_factor) {
  std::int64_t count = 0;
  for (std::int64_t i = 0; i < ball.numel(); ++i) {
    qd_real diff = 0.0;
    for (int l = 0; l < truth.limbs; ++l) diff += truth.parts[i * truth.limbs + l];
    for (int l = 0; l < ball.limbs; ++l) diff -= ball.parts[i * ball.limbs + l];
    if (std::fabs(to_double(diff)) > ball.radius[i] * radius_factor) ++count;
  }
  return count;
}

struct RigorousVerify : ::testing::Test {
  void SetUp() override {
    CaseSpec spec;
    spec.shape = {1, 24, 2, 8, 8};
    spec.dtype = DType::F32;
    spec.seed = 5;
    problem = generate_case(spec);
    // A perfect f32 kernel's results: the inputs and the exact answers rounded to f32.
    file.tensors = problem_to_tensors(problem);
    for (const auto& [name, t] : run_reference(problem, {.precision = Precision::parse("dd")}).tensors)
      file.tensors[name] = t.to_tensor(DType::F32);
    options.rigorous = RigorousOptions{.proven_bits = 60};
    c = verify_case(file, TolerancePolicy::preset("default"), options, "rigorous", &exact);
  }
  DplrProblem problem;
  TensorFile file;
  VerifyCaseOptions options;
  ReferenceResult exact;
  CaseResult c;
};

TEST_F(RigorousVerify, TheReportCarriesProvenBitsFromTheRadii) {
  ASSERT_TRUE(c.reference.has_value());
  EXPECT_TRUE(c.reference->precision.starts_with("ball")) << c.reference->precision;
  EXPECT_TRUE(c.reference->estimated_bits.empty());  // a ball run is not estimated
  EXPECT_FALSE(c.reference->estimated_against.has_value());
  ASSERT_EQ(c.reference->proven_bits.size(), exact.tensors.size());
  for (const auto& [name, tensor] : exact.tensors) {
    ASSERT_EQ(tensor.radius.size(), static_cast<std::size_t>(tensor.numel())) << name;
    const double bits = proven_bits(tensor, exact.precision.significand_bits());
    EXPECT_EQ(c.reference->proven_bits.at(name), bits) << name;
    EXPECT_GE(bits, 60.0) << name;
    // Planted: the balls shrunk by 2^-40 would report about 40 more bits.
    ExactTensor shrunk = tensor;
    for (double& r : shrunk.radius) r = std::ldexp(r, -40);
    EXPECT_GT(proven_bits(shrunk, 1000), bits + 30) << name;
  }
  EXPECT_EQ(c.verdict(), Verdict::Pass);
}

TEST_F(RigorousVerify, TheBallsEncloseTheTruthAndShrunkOnesDoNot) {
  const ReferenceResult truth = run_reference(problem, {.precision = Precision::parse("400")});
  std::int64_t planted_outside = 0;
  for (const auto& [name, tensor] : exact.tensors) {
    EXPECT_EQ(outside(tensor, truth.tensors.at(name), 1.0), 0) << name;
    planted_outside += outside(tensor, truth.tensors.at(name), std::ldexp(1.0, -40));
  }
  EXPECT_GT(planted_outside, 0);  // the planted shrink is caught
}

}  // namespace
}  // namespace dplr
