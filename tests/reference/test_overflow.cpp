// Issue 11 item 1: double, double-double and quad-double share double's exponent range. An overflow is
// never certified; the run moves to MPFR where the exact answer fits in double, and is refused where it
// does not. Growth (gk > 0) stays valid input.
#include <cmath>
#include <limits>
#include <string>

#include "core/error.hpp"
#include "helpers.hpp"
#include "reference/chunk_stages.hpp"

namespace dplr {
namespace {

CaseSpec small_case(bool backward) {
  CaseSpec spec;
  spec.shape = {1, 32, 2, 8, 8};
  spec.with_backward = backward;
  spec.seed = 7;
  return spec;
}

std::string refusal_of(const DplrProblem& p, const char* precision) {
  ReferenceOptions options;
  options.precision = Precision::parse(precision);
  options.origin = "g.safetensors";
  try {
    run_certified_reference(p, options);
  } catch (const InputError& e) {
    return e.what();
  }
  return "";
}

TEST(Overflow, NonFiniteResultsAreNeverCertified) {
  ExactTensor nan_tensor({3}, 2), same({3}, 2);
  nan_tensor.parts = {1.0, 0.0, std::numeric_limits<double>::quiet_NaN(), 0.0, 2.0, 0.0};
  same.parts = nan_tensor.parts;
  EXPECT_EQ(agreement_bits(nan_tensor, same, 106), 0.0);
  ExactTensor infinite({1}, 1);
  infinite.parts = {std::numeric_limits<double>::infinity()};
  EXPECT_EQ(agreement_bits(infinite, infinite, 53), 0.0);
}

TEST(Overflow, HugeFiniteValuesAreStillJudged) {
  // Squares of 1e300 overflow double: the RMS floor must not become infinite and certify anything.
  ExactTensor x({2}, 1), y({2}, 1);
  y.parts = {1e300, -1e300};
  x.parts = {1e300 * (1 + 0x1p-20), -1e300};
  EXPECT_NEAR(agreement_bits(x, y, 53), 20.0, 0.5);
}

// The case: every gk = +50 over 32 tokens, exp(50 * 32) is far past 2^1024.
TEST(Overflow, GrowthBeyondDoubleRangeIsRefusedNamingFileAndTensor) {
  DplrProblem p = generate_case(small_case(true));
  for (double& g : p.gk.values) g = 50.0;
  for (const char* precision : {"double", "dd", "qd"}) {
    const std::string message = refusal_of(p, precision);
    EXPECT_NE(message.find("g.safetensors"), std::string::npos) << precision << ": " << message;
    EXPECT_NE(message.find("beyond double's range"), std::string::npos) << precision << ": " << message;
    EXPECT_NE(message.find("the exact '"), std::string::npos) << precision << ": " << message;
  }
  ChunkOptions chunk;
  chunk.origin = "g.safetensors";
  try {
    run_chunk_stages(p, 16, Precision::parse("dd"), chunk);
    ADD_FAILURE() << "stages of an overflowing case were not refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("exact stage tensor"), std::string::npos) << e.what();
  }
}

// An overflow only double-double suffers: exp(800) is infinite in double's range, and 0 * inf is NaN, but
// with no h0 the first token's decay multiplies a zero state, so the exact outputs are those of gk = 0 there.
TEST(Overflow, IntermediateOverflowMovesToMpfrAndIsCertified) {
  DplrProblem p = generate_case([] {
    CaseSpec spec = small_case(false);
    spec.with_h0 = false;
    return spec;
  }());
  DplrProblem same = p;
  const std::int64_t K = p.shape.K;
  for (std::int64_t h = 0; h < p.shape.H; ++h)
    for (std::int64_t i = 0; i < K; ++i) {
      p.gk.values[p.token_index(0, 0, h, i, K)] = 800.0;
      same.gk.values[same.token_index(0, 0, h, i, K)] = 0.0;
    }
  ReferenceOptions options;
  options.precision = Precision::parse("dd");
  const ReferenceResult moved = run_certified_reference(p, options);
  EXPECT_EQ(moved.precision.arithmetic, Arithmetic::Mpfr);
  EXPECT_GE(moved.precision.significand_bits(), options.precision.significand_bits());
  ASSERT_EQ(moved.notes.size(), 1u);
  EXPECT_NE(moved.notes[0].find("overflowed"), std::string::npos) << moved.notes[0];
  EXPECT_GT(moved.min_estimated_bits(), 90.0);
  const ReferenceResult expected = run_reference(same, options);
  for (const auto& [name, tensor] : expected.tensors)
    EXPECT_LT(testing::max_relative_difference(moved.tensors.at(name), tensor), 1e-28) << name;
}

TEST(Overflow, ModerateGrowthIsComputedAtTheRequestedPrecision) {
  DplrProblem p = generate_case(small_case(true));
  for (double& g : p.gk.values) g = 0.5;
  ReferenceOptions options;
  options.precision = Precision::parse("dd");
  const ReferenceResult r = run_certified_reference(p, options);
  EXPECT_EQ(r.precision.arithmetic, Arithmetic::DoubleDouble);
  EXPECT_TRUE(r.notes.empty());
  EXPECT_GT(r.min_estimated_bits(), 60.0);
}

}  // namespace
}  // namespace dplr
