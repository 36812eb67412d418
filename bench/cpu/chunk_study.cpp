// chunk_study: what float and double arithmetic do to the chunk form. Runs the exact stage code in
// float and double, with the decay evaluated as a difference (stable) and factored (exp(gi) exp(-gi)),
// on fla's distribution and on strong decay, and prints the relative RMSE of every output and gradient
// against the exact (quad-double) chunk form on the same inputs (float-exact inputs, so only the
// arithmetic differs). "inf/nan" marks a tensor with a non-finite element. The last column is dgk formed
// by fla's identity (GateGradient::Identity) instead of the direct sums.
//
//   build/bench/cpu/chunk_study [T] [K]        (defaults: T = 256, K = V = 32, H = 2)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tests/chunk/helpers.hpp"  // the case builders the chunk tests use

using namespace dplr;

int main(int argc, char** argv) {
  const std::int64_t T = argc > 1 ? std::atoll(argv[1]) : 256, K = argc > 2 ? std::atoll(argv[2]) : 32;
  const auto& names = chunk_testing::shared_outputs();
  std::printf("| distribution | C | min summed decay | arithmetic | decay eval |");
  for (const auto& n : names) std::printf(" %s |", n.c_str());
  std::printf(" dgk (fla identity) |\n|---|---|---|---|---|");
  for (std::size_t i = 0; i <= names.size(); ++i) std::printf("---|");
  std::printf("\n");
  // The third case is strong decay with every gate on a 2^-8 grid: its chunk cumsums are exact in float
  // (|gi| < 2^11 needs 19 significand bits), which isolates what rounding gi costs dgk.
  for (const std::string case_name : {"fla", "strong-decay", "strong-decay, gk on 2^-8 grid"}) {
    CaseSpec spec;
    spec.shape = {1, T, 2, K, K};
    spec.distribution = case_name == "fla" ? "fla" : "strong-decay";
    spec.seed = 1;
    DplrProblem p = generate_case(spec);
    if (case_name.find("grid") != std::string::npos)
      for (auto& g : p.gk.values) g = std::ldexp(std::round(std::ldexp(g, 8)), -8);
    const char* distribution = case_name.c_str();
    for (int C : {16, 64}) {
      const ChunkStages exact = run_chunk_stages(p, C, Precision::parse("qd"));
      double min_decay = 0.0;  // the most negative gi of any chunk: what exp(-gi) must survive
      const ExactTensor& gi = exact.tensors.at("gi");
      for (std::int64_t i = 0; i < gi.numel(); ++i) min_decay = std::min(min_decay, gi.value(i));
      for (bool single : {true, false})
        for (auto decay : {DecayEvaluation::Difference, DecayEvaluation::Factored}) {
          ChunkOptions options;
          options.single_precision = single;
          options.decay = decay;
          const ChunkStages run = run_chunk_stages(p, C, Precision::parse("double"), options);
          std::printf("| %s | %d | %.0f | %s | %s |", distribution, C, min_decay, run.arithmetic.c_str(),
                      decay == DecayEvaluation::Difference ? "difference" : "factored");
          auto print_error = [](const ExactTensor& x, const ExactTensor& y) {
            const double err = chunk_testing::relative_rmse(x, y);
            if (std::isfinite(err))
              std::printf(" %.1e |", err);
            else
              std::printf(" inf/nan |");
          };
          for (const auto& n : names) print_error(run.tensors.at(n), exact.tensors.at(n));
          options.gate_gradient = GateGradient::Identity;
          const ChunkStages identity = run_chunk_stages(p, C, Precision::parse("double"), options);
          print_error(identity.tensors.at("dgk"), exact.tensors.at("dgk"));
          std::printf("\n");
        }
    }
  }
  return 0;
}
