// The scalar types the exact reference is written over, and what the generic code needs to know of each.
//
//   float              24 bits   chunk-form studies only: what float arithmetic does
//   double             53 bits   the everyday fast path, and the path whose error we want to see
//   dd_real  (QD)     106 bits   extended precision: 88 estimated bits on the bench case (its smallest elements)
//   td_real          ~150 bits   triple-double on hardware FMA (reference/triple_double.hpp): 134 estimated
//                               bits on the bench case where dd keeps 88, in less CPU time than dd (bench case,
//                               one thread, loaded machine: td 2.0 s, dd 2.9 s user; see recurrent_impl.hpp)
//   qd_real  (QD)     212 bits   certifies dd_real; finite differences for gradient checks
//   mp_real  (MPFR)   any        precision chosen at run time (Boost.Multiprecision's mpfr_float)
//   ball_real (Arb)   any        rigorous enclosures (reference/ball.hpp), where Arb is found (DPLR_HAVE_ARB)
//
// Generic code uses ADL (`using std::exp; exp(x)`) and in-place updates (`acc += a * b`), which for
// mp_real become one mpfr_fma through Boost's expression templates, with no temporary.
#pragma once
#include <qd/dd_real.h>
#include <qd/qd_real.h>

#include <boost/multiprecision/mpfr.hpp>
#include <cmath>
#include <string>
#include <string_view>

#include <Eigen/Core>

namespace dplr {

using mp_real = boost::multiprecision::mpfr_float;
struct td_real;  // reference/triple_double.hpp, included only where it is compiled with FMA
class ball_real;  // reference/ball.hpp, included only where Arb is found

// The working precision of ball_real operations, in bits (process-wide; set before worker threads start).
int ball_precision();
class BallPrecisionScope {
 public:
  explicit BallPrecisionScope(int bits);
  ~BallPrecisionScope();
  BallPrecisionScope(const BallPrecisionScope&) = delete;
  BallPrecisionScope& operator=(const BallPrecisionScope&) = delete;

 private:
  int previous_bits_;
};

template <class S>
struct ScalarTraits;

// float: only to show what finite precision does to the chunk form (not a reference precision).
template <>
struct ScalarTraits<float> {
  static constexpr std::string_view name = "float";
  static int bits() { return 24; }
  static int limbs() { return 1; }
  static float from_double(double x) { return static_cast<float>(x); }
  static double to_double(const float& x) { return x; }
  static void to_parts(const float& x, double* parts) { parts[0] = x; }
};

template <>
struct ScalarTraits<double> {
  static constexpr std::string_view name = "double";
  static int bits() { return 53; }
  static int limbs() { return 1; }
  static double from_double(double x) { return x; }
  static double to_double(const double& x) { return x; }
  static void to_parts(const double& x, double* parts) { parts[0] = x; }
};

template <>
struct ScalarTraits<dd_real> {
  static constexpr std::string_view name = "double-double";
  static int bits() { return 106; }
  static int limbs() { return 2; }
  static dd_real from_double(double x) { return dd_real(x); }
  static double to_double(const dd_real& x) { return ::to_double(x); }
  static void to_parts(const dd_real& x, double* parts) { parts[0] = x.x[0], parts[1] = x.x[1]; }
};

// Defined in reference/triple_double.hpp; the rest of the build only needs the sizes.
template <>
struct ScalarTraits<td_real> {
  static constexpr std::string_view name = "triple-double";
  static int bits() { return 150; }  // per operation, relative: measured 147 to 157 bits against qd_real
  static int limbs() { return 3; }
  static td_real from_double(double x);
  static double to_double(const td_real& x);
  static void to_parts(const td_real& x, double* parts);
};

template <>
struct ScalarTraits<qd_real> {
  static constexpr std::string_view name = "quad-double";
  static int bits() { return 212; }
  static int limbs() { return 4; }
  static qd_real from_double(double x) { return qd_real(x); }
  static double to_double(const qd_real& x) { return ::to_double(x); }
  static void to_parts(const qd_real& x, double* parts) {
    for (int i = 0; i < 4; ++i) parts[i] = x[i];
  }
};

template <>
struct ScalarTraits<mp_real> {
  static constexpr std::string_view name = "mpfr";
  static int bits() { return static_cast<int>(mpfr_get_prec(mp_real(0.0).backend().data())); }
  static int limbs() { return bits() / 53 + 2; }
  static mp_real from_double(double x) { return mp_real(x); }
  static double to_double(const mp_real& x) { return static_cast<double>(x); }
  // Successive round-to-nearest peels: parts[0] is x correctly rounded to double, the rest the remainder.
  static void to_parts(const mp_real& x, double* parts) {
    mp_real rest = x;
    const int n = limbs();
    for (int i = 0; i < n; ++i) {
      parts[i] = static_cast<double>(rest);
      rest -= parts[i];
    }
  }
};

// ball_real's midpoint is stored as an expansion (to_parts, like mp_real's) and its radius beside it:
// radius_upper(x, parts) is an upper bound, as a double, of |exact - (parts[0] + ... )|, the ball's radius
// plus what the expansion leaves of the midpoint. Defined in reference/instantiate_ball.cpp.
template <>
struct ScalarTraits<ball_real> {
  static constexpr std::string_view name = "ball";
  static int bits() { return ball_precision(); }
  static int limbs() { return bits() / 53 + 2; }
  static double to_double(const ball_real& x);
  static void to_parts(const ball_real& x, double* parts);
  static double radius_upper(const ball_real& x, const double* parts);
};

// Scalar types whose values are enclosures: their tensors carry a radius per element.
template <class S>
concept Enclosure = requires(const S& x, const double* parts) { ScalarTraits<S>::radius_upper(x, parts); };

// Sets MPFR's working precision for the values created while it lives (Boost 1.74 keeps one global
// default, in decimal digits); restores the previous one on exit. Set before worker threads start.
class MpfrPrecisionScope {
 public:
  explicit MpfrPrecisionScope(int bits);
  ~MpfrPrecisionScope();
  MpfrPrecisionScope(const MpfrPrecisionScope&) = delete;
  MpfrPrecisionScope& operator=(const MpfrPrecisionScope&) = delete;

 private:
  unsigned previous_digits10_;
};

}  // namespace dplr

// Eigen needs NumTraits for the QD types (Boost provides them for mp_real in boost/multiprecision/eigen.hpp).
namespace Eigen {
template <class QD, int Bits>
struct QdNumTraits : GenericNumTraits<QD> {
  using Real = QD;
  using NonInteger = QD;
  using Nested = QD;
  using Literal = QD;
  enum { IsComplex = 0, IsInteger = 0, IsSigned = 1, RequireInitialization = 1, ReadCost = 2, AddCost = 20, MulCost = 30 };
  static inline Real epsilon() { return QD(std::ldexp(1.0, -Bits)); }
  static inline Real dummy_precision() { return QD(std::ldexp(1.0, -Bits + 10)); }
  static inline int digits10() { return static_cast<int>(Bits * 0.30103); }
  static inline Real highest() { return QD(1.7e308); }
  static inline Real lowest() { return QD(-1.7e308); }
};
template <>
struct NumTraits<dd_real> : QdNumTraits<dd_real, 104> {};
template <>
struct NumTraits<qd_real> : QdNumTraits<qd_real, 208> {};
}  // namespace Eigen
#include <boost/multiprecision/eigen.hpp>
