// The double path against the multiprecision path, and whether self-certification tells the truth.
#include "core/error.hpp"
#include "helpers.hpp"
#include "reference/scalar.hpp"

namespace dplr {
namespace {

using testing::max_relative_difference;
using testing::run;

CaseSpec spec_for(const std::string& distribution) {
  CaseSpec spec;
  spec.shape = {1, 48, 2, 8, 6};
  spec.distribution = distribution;
  spec.seed = 5;
  return spec;
}

TEST(Precision, DoubleAgreesWith128BitsOnBenignCases) {
  const DplrProblem p = generate_case(spec_for("fla"));
  const auto exact = run(p, "128"), fast = run(p, "double");
  for (const auto& [name, tensor] : exact.tensors)
    EXPECT_LT(max_relative_difference(fast.tensors.at(name), tensor), 1e-12) << name;
}

TEST(Precision, MpfrScopeSetsTheBitsItReports) {
  for (int bits : {64, 128, 200, 256}) {
    const Precision precision = Precision::parse(std::to_string(bits));
    MpfrPrecisionScope scope(bits);
    EXPECT_EQ(ScalarTraits<mp_real>::bits(), precision.significand_bits());
    EXPECT_GE(precision.significand_bits(), bits);
  }
}

TEST(Precision, ParseNamesAndRefusals) {
  EXPECT_EQ(Precision::parse("dd").significand_bits(), 106);
  EXPECT_EQ(Precision::parse("qd").name(), "qd");
  EXPECT_EQ(Precision::parse("td").name(), "td");
  EXPECT_EQ(Precision::parse("td").certifier().name(), "qd");
  EXPECT_EQ(Precision::parse("dd").certifier().name(), "td");  // 44 bits above, at a tenth of qd's cost
  EXPECT_EQ(Precision::parse("ball200").name(), "ball200");
  EXPECT_TRUE(Precision::parse("ball200").encloses());
  EXPECT_EQ(Precision::parse("mpfr256").name(), "mpfr256");
  EXPECT_THROW(Precision::parse("fast"), InputError);
  EXPECT_THROW(Precision::parse("8"), InputError);
}

// The certified bits of a run (against its certifier) must match the bits it really has (against a
// far more precise run), within a couple of bits, on every distribution, the hard ones included.
TEST(Precision, CertifiedBitsTellTheTruth) {
  for (const auto& distribution : distribution_names()) {
    const DplrProblem p = generate_case(spec_for(distribution));
    for (const char* precision : {"double", "dd", "td"}) {
      ReferenceOptions options;
      options.precision = Precision::parse(precision);
      const auto certified = run_certified_reference(p, options);
      const auto truth = certify(certified, run(p, "400"));
      for (const auto& [name, bits] : certified.estimated_bits) {
        EXPECT_NEAR(bits, truth.at(name), 2.0) << distribution << " " << precision << " " << name;
        EXPECT_GE(bits, 0.0);
        EXPECT_LE(bits, options.precision.significand_bits());
      }
      if (distribution == "fla") {
        const std::string name = precision;
        EXPECT_GE(certified.min_estimated_bits(), name == "td" ? 125 : name == "dd" ? 90 : 35);
      }
      std::printf("%-18s %-6s estimated %.1f bits (worst tensor)\n", distribution.c_str(), precision,
                  certified.min_estimated_bits());
    }
  }
}

}  // namespace
}  // namespace dplr
