// The double path against the multiprecision path, and whether self-certification tells the truth.
#include <algorithm>
#include <ranges>

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
  EXPECT_EQ(Precision::parse("td").extrapolation_base()->name(), "dd");
  EXPECT_EQ(Precision::parse("dd").extrapolation_base()->name(), "double");
  EXPECT_FALSE(Precision::parse("qd").extrapolation_base().has_value());  // not validated: no claim
  EXPECT_EQ(parse_estimate_method("extrapolated"), EstimateMethod::Extrapolated);
  EXPECT_THROW(parse_estimate_method("guess"), InputError);
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

// The validation's judgement: the tensors whose claimed bits exceed their true bits (against MPFR-400) by more
// than 2.
std::vector<std::string> overclaimed(const std::map<std::string, double>& claimed, const std::map<std::string, double>& truth) {
  std::vector<std::string> names;
  for (const auto& [name, bits] : claimed)
    if (bits > truth.at(name) + 2.0) names.push_back(name);
  return names;
}

// td's bits extrapolated from dd (EstimateMethod::Extrapolated) must not exceed its real bits by more than 2 on
// every distribution, at several shapes (a varlen one with an empty sequence among them).
TEST(Precision, ExtrapolatedBitsTellTheTruth) {
  std::vector<CaseSpec> specs;
  for (const auto& distribution : distribution_names()) {
    CaseSpec spec = spec_for(distribution);
    specs.push_back(spec);
    spec.shape = {1, 96, 1, 16, 16}, spec.seed = 9;
    specs.push_back(spec);
    spec.shape = {1, 70, 2, 4, 12}, spec.cu_seqlens = {0, 30, 30, 70}, spec.seed = 13;
    specs.push_back(spec);
  }
  // Both validated pairs: td from dd, and dd from double (the cheap training-scale mode: >= 80 bits at dd's cost).
  const std::pair<const char*, const char*> pairs[] = {{"td", "dd"}, {"dd", "double"}};
  for (const auto& [answer_name, base_name] : pairs) {
    double least_margin = 1e9;
    for (const CaseSpec& spec : specs) {
      const DplrProblem p = generate_case(spec);
      ReferenceOptions options;
      options.precision = Precision::parse(answer_name);
      options.estimate = EstimateMethod::Extrapolated;
      const auto answer = run_certified_reference(p, options);
      ASSERT_EQ(answer.estimated_against->name(), base_name);
      const auto truth = certify(answer, run(p, "400"));
      EXPECT_TRUE(overclaimed(answer.estimated_bits, truth).empty()) << answer_name << " " << describe(spec);
      const double minimum = extrapolation_minimum_bits(*answer.estimated_against);
      for (const auto& [name, bits] : answer.estimated_bits) {
        least_margin = std::min(least_margin, truth.at(name) - bits);
        EXPECT_LE(bits, options.precision.significand_bits());
        // Not uselessly timid either: within 16 bits of the truth where the model is relied on.
        if (bits >= minimum + 40) {
          EXPECT_GE(bits, truth.at(name) - 16.0) << describe(spec) << " " << name;
        }
      }
      if (spec.distribution == "fla") {
        EXPECT_GE(answer.min_estimated_bits(), std::string(answer_name) == "td" ? 120.0 : 80.0) << describe(spec);
      }
      std::printf("%-60s %s extrapolated from %s %.1f bits, true %.1f (worst tensors)\n", describe(spec).c_str(),
                  answer_name, base_name, answer.min_estimated_bits(), std::ranges::min(truth | std::views::values));
    }
    std::printf("%s from %s: least margin (true - claimed): %.1f bits\n", answer_name, base_name, least_margin);
  }
}

// The validation above can fail: a precision that loses bits, claimed as td (MPFR at 120 bits, extrapolated from
// dd with td's 44-bit gap), is caught; the same run claimed with its own gap is not.
TEST(Precision, ExtrapolationValidationCatchesAPlantedLoss) {
  const DplrProblem p = generate_case(spec_for("fla"));
  const auto base = run(p, "dd"), lossy = run(p, "120"), truth_run = run(p, "400");
  const auto agreement = certify(base, lossy);
  const auto truth = certify(lossy, truth_run);
  EXPECT_FALSE(overclaimed(extrapolate_bits(agreement, 44, 150, 53, nullptr), truth).empty());
  const double own_gap = lossy.precision.significand_bits() - base.precision.significand_bits();
  EXPECT_TRUE(overclaimed(extrapolate_bits(agreement, own_gap, lossy.precision.significand_bits(), 53, nullptr), truth).empty());
}

// Where the two runs agree on too few bits for the first-order model (or none: a non-finite run gives 0), only
// the agreement is claimed, with a note naming the tensor; elsewhere the gap is added, up to the cap.
TEST(Precision, ExtrapolationClaimsOnlyTheAgreementBelowItsMinimum) {
  std::vector<std::string> notes;
  const auto bits = extrapolate_bits({{"o", 40.0}, {"dq", 0.0}, {"dk", 90.0}, {"dv", 120.0}}, 44, 150, 53, &notes);
  EXPECT_EQ(bits.at("o"), 40.0);
  EXPECT_EQ(bits.at("dq"), 0.0);
  EXPECT_EQ(bits.at("dk"), 90.0 + 44 - kExtrapolationMarginBits);
  EXPECT_EQ(bits.at("dv"), 150.0);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[0].find("'dq'"), std::string::npos) << notes[0];
  EXPECT_NE(notes[1].find("'o'"), std::string::npos) << notes[1];
}

TEST(Precision, ExtrapolatedEstimateIsRefusedWhereNotValidated) {
  ReferenceOptions options;
  options.precision = Precision::parse("qd");
  options.estimate = EstimateMethod::Extrapolated;
  EXPECT_THROW(run_certified_reference(generate_case(spec_for("fla")), options), InputError);
}

// The streamed certified run (kept_limbs: a batch of sequences at a time) keeps the same leading parts and the
// same bits as the whole run, on batch rows and on varlen sequences (an empty one among them), both methods.
TEST(Precision, StreamedRunKeepsTheWholeRunsPartsAndBits) {
  CaseSpec rows = spec_for("mixed-decay");
  rows.shape = {3, 20, 2, 4, 5};
  CaseSpec packed = spec_for("fla");
  packed.shape = {1, 50, 2, 6, 4}, packed.cu_seqlens = {0, 12, 12, 31, 50};
  for (const CaseSpec& spec : {rows, packed})
    for (const EstimateMethod method : {EstimateMethod::Repeat, EstimateMethod::Extrapolated}) {
      const DplrProblem p = generate_case(spec);
      ReferenceOptions whole_options;
      whole_options.precision = Precision::parse(method == EstimateMethod::Repeat ? "dd" : "td");
      whole_options.estimate = method;
      whole_options.threads = 1;  // two pairs a batch: one sequence of two heads
      const auto whole = run_certified_reference(p, whole_options);
      ReferenceOptions streamed_options = whole_options;
      streamed_options.kept_limbs = 2;
      const auto streamed = run_certified_reference(p, streamed_options);
      ASSERT_EQ(streamed.tensors.size(), whole.tensors.size());
      for (const auto& [name, tensor] : whole.tensors) {
        const ExactTensor& kept = streamed.tensors.at(name);
        ASSERT_EQ(kept.shape, tensor.shape) << name;
        ASSERT_EQ(kept.limbs, 2) << name;
        for (std::int64_t i = 0; i < tensor.numel(); ++i)
          for (int l = 0; l < 2; ++l) ASSERT_EQ(kept.parts[i * 2 + l], tensor.parts[i * tensor.limbs + l]) << name << " " << i;
        // Repeat: the streamed floor is the answer's RMS, the whole run's the certifier's (2^-80 apart).
        EXPECT_NEAR(streamed.estimated_bits.at(name), whole.estimated_bits.at(name), 1e-9) << name;
      }
      EXPECT_EQ(streamed.estimated_against->name(), whole.estimated_against->name());
      EXPECT_EQ(streamed.estimate_method, method);
    }
}

}  // namespace
}  // namespace dplr
