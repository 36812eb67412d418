// Named input distributions for DPLR cases, reproducible from a seed (a portable mt19937_64 +
// Box-Muller stream, so the same seed gives the same case with any standard library).
//
//   fla               fla's test distribution: q, k, v ~ N(0,1); a = normalize(U[0,1)); b = -a;
//                     gk = logsigmoid(N(0,1)) / gate_normalizer; h0 ~ N(0,1)
//   strong-decay      as fla, gk ~ U[-30, -5]
//   mixed-decay       as fla, each key channel either strong (U[-30,-5]) or near zero (U[-1e-3, 0])
//   near-zero-decay   as fla, gk ~ U[-1e-4, 0] (meant for long T: the state barely forgets)
//   edge-of-stability as fla, b = -2a (fla's b = -2a test). Without decay D + b a^T = I - 2 a a^T is a
//                     reflection (modulus 1 on a); with fla's gates it is not: a^T (D + b a^T) a =
//                     a^T D a - 2, modulus up to 2 - e^gk (K = 1: 1.05 to 1.95 a token), so the state can grow
//                     past fp32's range (session 9: ht ~1e53 at T = 300; the sweeps report such cases as out
//                     of the kernels' range, verify/sweep.hpp beyond_kernel_range)
//   free-ab           as fla, a and b ~ N(0, 1/K) independently (the transition may grow)
//   large-norm-keys   as fla, k ~ N(0, 30^2)
//
// Values are drawn in double, then rounded once to the case's dtype (gk and h0 to gk_dtype / F32, as
// fla keeps them), so the stored case is exactly what a kernel sees.
#pragma once
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "reference/problem.hpp"

namespace dplr {

struct CaseSpec {
  DplrShape shape{1, 64, 2, 16, 16};
  std::vector<std::int64_t> cu_seqlens;  // optional varlen packing (B must be 1)
  DType dtype = DType::F32;              // q, k, v, a, b (and do, dht)
  DType gk_dtype = DType::F32;           // gk, h0
  std::string distribution = "fla";
  std::uint64_t seed = 0;
  bool with_h0 = true;
  bool with_backward = true;  // draw do and dht ~ N(0,1)
  double gate_normalizer = 1.0;
  double scale = 0.0;  // 0: K^-1/2
  bool reverse = false;
};

const std::vector<std::string>& distribution_names();
// Throws InputError for an unknown distribution or a bad shape.
DplrProblem generate_case(const CaseSpec& spec);
std::string describe(const CaseSpec& spec);  // "fla B1 T64 H2 K16 V16 F32 seed 0 h0 ..."

// A portable random stream: uniform doubles in [0, 1) from mt19937_64, normals by Box-Muller.
class RandomStream {
 public:
  explicit RandomStream(std::uint64_t seed);
  double uniform();
  double normal();

 private:
  std::mt19937_64 engine_;  // its output sequence is fixed by the standard
  double spare_normal_ = 0.0;
  bool has_spare_ = false;
};

}  // namespace dplr
