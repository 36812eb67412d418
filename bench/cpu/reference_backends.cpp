// Which multiprecision arithmetic should the exact reference use? Times the reference's forward step
// (one token of one head, K = V = 64, plain loops of in-place `acc += a * b`, the code the reference
// runs) for every candidate, so the choice is measured on this workload:
//   double, QD double-double and quad-double, Boost float128 (__float128), Boost cpp_bin_float (113 and
//   128 bits), Boost mpfr_float (113, 128, 256 bits).
// Usage: dplr_bench_backends [tokens]   (CPU only; prints a table)
#include <boost/multiprecision/cpp_bin_float.hpp>
#include <boost/multiprecision/float128.hpp>
#include <chrono>
#include <cstdio>
#include <string>

#include "generators/distributions.hpp"
#include "reference/recurrent_impl.hpp"

namespace dplr {

using float128 = boost::multiprecision::float128;
using bin113 = boost::multiprecision::cpp_bin_float_quad;
using bin128 = boost::multiprecision::number<boost::multiprecision::cpp_bin_float<128, boost::multiprecision::digit_base_2>>;

// Traits for the candidates the reference does not ship with: enough for the forward's storage.
template <class S>
struct BoostFixedTraits {
  static int bits() { return std::numeric_limits<S>::digits; }
  static int limbs() { return bits() / 53 + 2; }
  static double to_double(const S& x) { return static_cast<double>(x); }
  static void to_parts(const S& x, double* parts) {
    S rest = x;
    for (int i = 0; i < limbs(); ++i) {
      parts[i] = static_cast<double>(rest);
      rest -= parts[i];
    }
  }
};
template <>
struct ScalarTraits<float128> : BoostFixedTraits<float128> {};
template <>
struct ScalarTraits<bin113> : BoostFixedTraits<bin113> {};
template <>
struct ScalarTraits<bin128> : BoostFixedTraits<bin128> {};

template <class S>
double microseconds_per_token(const DplrProblem& p) {
  RecurrentOptions options{.backward = false, .checkpoint_interval = 0, .threads = 1};
  const auto start = std::chrono::steady_clock::now();
  recurrent_reference<S>(p, options);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return 1e6 * seconds / static_cast<double>(p.shape.T * p.shape.H);
}

}  // namespace dplr

int main(int argc, char** argv) {
  using namespace dplr;
  CaseSpec spec;
  spec.shape = {1, argc > 1 ? std::stoll(argv[1]) : 64, 1, 64, 64};
  spec.with_backward = false;
  const DplrProblem p = generate_case(spec);
  std::printf("forward, one token of one head, K = V = 64, one thread (%lld tokens)\n", (long long)spec.shape.T);
  std::printf("%-28s %8s %14s\n", "arithmetic", "bits", "us per token");
  auto row = [&](const char* name, int bits, double us) { std::printf("%-28s %8d %14.1f\n", name, bits, us); };
  row("double", 53, microseconds_per_token<double>(p));
  row("QD double-double", 106, microseconds_per_token<dd_real>(p));
  row("QD quad-double", 212, microseconds_per_token<qd_real>(p));
  row("Boost float128", 113, microseconds_per_token<float128>(p));
  row("Boost cpp_bin_float 113", 113, microseconds_per_token<bin113>(p));
  row("Boost cpp_bin_float 128", 128, microseconds_per_token<bin128>(p));
  for (int bits : {113, 128, 256}) {
    MpfrPrecisionScope scope(bits);
    row(("Boost mpfr_float " + std::to_string(bits)).c_str(), ScalarTraits<mp_real>::bits(), microseconds_per_token<mp_real>(p));
  }
}
