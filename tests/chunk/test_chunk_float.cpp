// What float does to the chunk form (the same stage code instantiated for float): the factored decay
// exp(gi_r) * exp(-gi_s) overflows once a chunk's summed decay passes ln(FLT_MAX) = 88.72, sharply, while
// the difference exp(gi_r - gi_s) stays accurate. The exact answer is the quad-double chunk form on the
// same (float-exact) inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>

#include "helpers.hpp"

namespace dplr {
namespace {

using chunk_testing::all_finite;
using chunk_testing::relative_rmse;

ChunkStages run_float(const DplrProblem& p, int chunk_size, DecayEvaluation decay) {
  ChunkOptions options;
  options.single_precision = true;
  options.decay = decay;
  return run_chunk_stages(p, chunk_size, Precision::parse("double"), options);
}

// One chunk of 16 tokens with every gate pinned at g: the chunk's summed decay is 16 g.
DplrProblem pinned_gate_case(double g) {
  CaseSpec spec;
  spec.shape = {1, 16, 2, 8, 8};
  spec.seed = 2;
  DplrProblem p = generate_case(spec);
  for (auto& x : p.gk.values) x = g;
  return p;
}

TEST(ChunkFloat, FactoredDecayOverflowsRightPastLnFltMax) {
  // 16 * 5.5 = 88.0 < 88.72 < 16 * 5.625 = 90.0 (both gates exact in float).
  const DplrProblem below = pinned_gate_case(-5.5), above = pinned_gate_case(-5.625);
  EXPECT_TRUE(all_finite(run_float(below, 16, DecayEvaluation::Factored).tensors.at("o")));
  const ChunkStages overflowed = run_float(above, 16, DecayEvaluation::Factored);
  EXPECT_FALSE(all_finite(overflowed.tensors.at("A_qk")));
  EXPECT_FALSE(all_finite(overflowed.tensors.at("o")));
  EXPECT_FALSE(all_finite(overflowed.tensors.at("dq")));
  for (const DplrProblem* p : {&below, &above}) {
    const ChunkStages exact = run_chunk_stages(*p, 16, Precision::parse("qd"));
    const ChunkStages stable = run_float(*p, 16, DecayEvaluation::Difference);
    for (const char* name : {"o", "ht", "dq", "dk", "dv", "da", "db", "dh0"})
      EXPECT_LT(relative_rmse(stable.tensors.at(name), exact.tensors.at(name)), 1e-5) << name;
  }
}

// Strong decay (gk in [-30, -5]) at chunk 64: the summed decay reaches about -1100, every factored chunk
// overflows; the stable evaluation keeps o and the state gradients to float accuracy.
TEST(ChunkFloat, StrongDecayFactoredIsNaNAndStableIsAccurate) {
  CaseSpec spec;
  spec.shape = {1, 100, 2, 8, 8};
  spec.distribution = "strong-decay";
  spec.seed = 4;
  const DplrProblem p = generate_case(spec);
  const ChunkStages exact = run_chunk_stages(p, 64, Precision::parse("qd"));
  const ChunkStages factored = run_float(p, 64, DecayEvaluation::Factored);
  const ChunkStages stable = run_float(p, 64, DecayEvaluation::Difference);
  EXPECT_FALSE(all_finite(factored.tensors.at("o")));
  for (const auto& name : chunk_testing::shared_outputs()) {
    const double err = relative_rmse(stable.tensors.at(name), exact.tensors.at(name));
    std::printf("strong-decay C64 float stable %-4s rel RMSE %.2e\n", name.c_str(), err);
    EXPECT_TRUE(all_finite(stable.tensors.at(name))) << name;
    EXPECT_LT(err, name == "dgk" ? 1e-3 : 1e-5) << name;
  }
}

// On fla's distribution the summed decay stays far from -88 and both evaluations are finite.
TEST(ChunkFloat, FlaDistributionBothEvaluationsFinite) {
  CaseSpec spec;
  spec.shape = {1, 64, 2, 8, 8};
  spec.seed = 6;
  const DplrProblem p = generate_case(spec);
  const ChunkStages exact = run_chunk_stages(p, 64, Precision::parse("qd"));
  for (auto decay : {DecayEvaluation::Difference, DecayEvaluation::Factored}) {
    const ChunkStages f = run_float(p, 64, decay);
    for (const auto& name : chunk_testing::shared_outputs())
      EXPECT_LT(relative_rmse(f.tensors.at(name), exact.tensors.at(name)), 1e-4) << name;
  }
}

// The two formulations of dgk agree in exact arithmetic; under strong decay fla's identity cancels and
// loses about |gk| / ln 2 bits, visible at quad-double already and ruinous in float.
TEST(ChunkFloat, GateGradientIdentityCancelsUnderStrongDecay) {
  CaseSpec spec;
  spec.shape = {1, 40, 2, 4, 4};
  spec.distribution = "strong-decay";
  spec.seed = 8;
  const DplrProblem p = generate_case(spec);
  ChunkOptions identity;
  identity.gate_gradient = GateGradient::Identity;
  const ChunkStages direct_qd = run_chunk_stages(p, 32, Precision::parse("qd"));
  const ChunkStages identity_qd = run_chunk_stages(p, 32, Precision::parse("qd"), identity);
  const double bits = agreement_bits(identity_qd.tensors.at("dgk"), direct_qd.tensors.at("dgk"), 212);
  EXPECT_GT(bits, 212 - 30 / std::log(2.0) - 20);  // exact up to the cancellation
  EXPECT_LT(bits, 212 - 5 / std::log(2.0));        // and the cancellation is really there
  identity.single_precision = true;
  const double direct_err =
      relative_rmse(run_float(p, 32, DecayEvaluation::Difference).tensors.at("dgk"), direct_qd.tensors.at("dgk"));
  const double identity_err =
      relative_rmse(run_chunk_stages(p, 32, Precision::parse("double"), identity).tensors.at("dgk"),
                    direct_qd.tensors.at("dgk"));
  std::printf("float dgk rel RMSE: direct %.2e, identity %.2e (qd agreement %.1f bits)\n", direct_err, identity_err,
              bits);
  EXPECT_GT(identity_err, 10 * direct_err);
}

}  // namespace
}  // namespace dplr
