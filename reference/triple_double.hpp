// td_real: a triple-double, x = x0 + x1 + x2 (three doubles of decreasing magnitude), about 150 bits of
// significand with double's exponent range. It exists for speed: the everyday exact answer needs more than
// double-double's 106 bits (on the bench case the worst elements, at 2^-16 of a tensor's RMS, keep 88 of
// them). Built on hardware FMA (QD's double-double splits operands, Dekker, as Debian's QD and this build
// target baseline x86-64), a td update `acc += a * b` costs about what QD's dd one does although it does
// twice the work: measured on one (sequence, head) pair of T1024 K=V=64, fwd+bwd, one thread, CPU time
// 0.71-0.73 s for td against 0.66-0.73 s for dd; on the bench case with two threads td took 1.2x dd's time
// (a loaded machine).
//
// The operations are the error-free transformations two_sum / two_prod (FMA) followed by a renormalisation;
// terms below about 2^-150 of the result are dropped, so an operation's relative error is a small multiple
// of 2^-150 (addition: relative to |a| + |b|, as in any floating-point sum). Only reference/instantiate_td.cpp
// includes this header, compiled with -mfma; everything else sees only the declarations of recurrent.hpp.
#pragma once
#include <array>
#include <cmath>

#include "reference/scalar.hpp"

#ifndef __FMA__
#error "reference/triple_double.hpp needs hardware FMA: compile with -mfma (reference/CMakeLists.txt does)"
#endif

namespace dplr {

namespace td_detail {
// Always inlined: called out of line, the reference's loops spent a fifth of their time in calls.
[[gnu::always_inline]] inline double two_sum(double a, double b, double& error) {
  const double s = a + b, bb = s - a;
  error = (a - (s - bb)) + (b - bb);
  return s;
}
// Exact when |a| >= |b| (or a == 0).
[[gnu::always_inline]] inline double fast_two_sum(double a, double b, double& error) {
  const double s = a + b;
  error = b - (s - a);
  return s;
}
[[gnu::always_inline]] inline double two_prod(double a, double b, double& error) {
  const double p = a * b;
  error = __builtin_fma(a, b, -p);
  return p;
}
}  // namespace td_detail

struct td_real;
// a * b, not yet rounded: `acc += a * b` adds it with one renormalisation instead of two (the
// reference's inner loops are such updates); anywhere else it converts to the rounded product.
struct td_product {
  const td_real& a;
  const td_real& b;
  operator td_real() const;  // NOLINT: implicit, so that a product reads as a value
};

struct td_real {
  double x[3] = {0.0, 0.0, 0.0};

  td_real() = default;
  td_real(double d) : x{d, 0.0, 0.0} {}  // NOLINT: implicit, like dd_real's, for `acc = 0.0`
  td_real(double a, double b, double c) : x{a, b, c} {}

  // Renormalises a + b + c, roughly ordered by magnitude, to three non-overlapping parts.
  [[gnu::always_inline]] static td_real renormalised(double a, double b, double c) {
    using namespace td_detail;
    double e1, e2, e3;
    const double s = two_sum(a, b, e1);      // s + e1 = a + b
    const double t = two_sum(e1, c, e2);     // t + e2 = e1 + c
    const double r0 = fast_two_sum(s, t, e3);  // |t| <= ulp(s) unless s cancelled to zero
    const double r1 = fast_two_sum(e3, e2, e1);
    return {r0, r1, e1};
  }

  [[gnu::always_inline]] td_real& operator+=(const td_real& b) {
    using namespace td_detail;
    double e0, e1, f1;
    const double s0 = two_sum(x[0], b.x[0], e0);
    const double s1 = two_sum(x[1], b.x[1], e1);
    const double t1 = two_sum(s1, e0, f1);
    const double t2 = (x[2] + b.x[2]) + (e1 + f1);
    return *this = renormalised(s0, t1, t2);
  }
  td_real& operator-=(const td_real& b) { return *this += -b; }
  // this + a * b: the product's three leading terms exactly (two_prod), the sum and one renormalisation.
  [[gnu::always_inline]] td_real& operator+=(const td_product& p) {
    using namespace td_detail;
    const double* a = p.a.x;
    const double* b = p.b.x;
    double e0, e1, e2, f0, f1, f2, f3, f4;
    const double p0 = two_prod(a[0], b[0], e0);
    const double p1 = two_prod(a[0], b[1], e1);
    const double p2 = two_prod(a[1], b[0], e2);
    const double s0 = two_sum(x[0], p0, f0);
    const double m = two_sum(two_sum(p1, p2, f1), e0, f2);
    const double s1 = two_sum(two_sum(x[1], m, f3), f0, f4);
    const double low = x[2] + (a[0] * b[2] + a[1] * b[1] + a[2] * b[0]) + ((e1 + e2) + (f1 + f2) + (f3 + f4));
    return *this = renormalised(s0, s1, low);
  }
  [[gnu::always_inline]] td_real& operator*=(const td_real& b) {
    using namespace td_detail;
    double e0, e1, e2, f1, f2;
    const double p0 = two_prod(x[0], b.x[0], e0);
    const double p1 = two_prod(x[0], b.x[1], e1);
    const double p2 = two_prod(x[1], b.x[0], e2);
    const double m = two_sum(p1, p2, f1);
    const double m2 = two_sum(m, e0, f2);
    const double low = (x[0] * b.x[2] + x[1] * b.x[1] + x[2] * b.x[0]) + (e1 + e2) + (f1 + f2);
    return *this = renormalised(p0, m2, low);
  }
  // Long division: three quotient digits, each from the leading parts of the remainder.
  td_real& operator/=(const td_real& b) {
    const double q0 = x[0] / b.x[0];
    td_real r = *this - td_real(b * td_real(q0));
    const double q1 = r.x[0] / b.x[0];
    r -= td_real(b * td_real(q1));
    const double q2 = r.x[0] / b.x[0];
    return *this = renormalised(q0, q1, q2);
  }

  td_real operator-() const { return {-x[0], -x[1], -x[2]}; }
  friend td_real operator+(td_real a, const td_real& b) { return a += b; }
  friend td_real operator-(td_real a, const td_real& b) { return a -= b; }
  friend td_product operator*(const td_real& a, const td_real& b) { return {a, b}; }
  friend td_real operator/(td_real a, const td_real& b) { return a /= b; }

  // Exact comparisons of normalised values: the leading parts decide unless they are equal.
  friend bool operator==(const td_real& a, const td_real& b) {
    return a.x[0] == b.x[0] && a.x[1] == b.x[1] && a.x[2] == b.x[2];
  }
  friend bool operator<(const td_real& a, const td_real& b) {
    if (a.x[0] != b.x[0]) return a.x[0] < b.x[0];
    if (a.x[1] != b.x[1]) return a.x[1] < b.x[1];
    return a.x[2] < b.x[2];
  }
  friend bool operator>(const td_real& a, const td_real& b) { return b < a; }

  friend td_real abs(const td_real& a) { return a.x[0] < 0.0 ? -a : a; }
  friend td_real ldexp(const td_real& a, int e) { return {std::ldexp(a.x[0], e), std::ldexp(a.x[1], e), std::ldexp(a.x[2], e)}; }
  friend td_real exp(const td_real& a);
};

namespace td_detail {
// ln 2 to about 160 bits, as three doubles.
inline const td_real kLn2{6.93147180559945286e-01, 2.31904681384629956e-17, 5.70770843841621207e-34};
}  // namespace td_detail

// exp(a) = 2^k exp(r)^(2^10) with a = k ln2 + 2^10 r, |r| <= ln2 / 2^11: a Taylor polynomial of degree 13 in r
// (its remainder is below 2^-155 relative), then ten squarings and the power of two. Overflow and
// underflow go to inf and 0, as double's exp does.
inline td_real exp(const td_real& a) {
  constexpr int kSquarings = 10, kDegree = 13;
  if (a.x[0] > 709.8) return td_real(INFINITY);
  if (a.x[0] < -745.2) return td_real(0.0);
  if (a.x[0] == 0.0) return td_real(1.0);
  static const auto inverse_factorials = [] {
    std::array<td_real, kDegree + 1> c;
    c[0] = td_real(1.0);
    for (int n = 1; n <= kDegree; ++n) c[n] = c[n - 1] / td_real(static_cast<double>(n));
    return c;
  }();
  const double k = std::nearbyint(a.x[0] / td_detail::kLn2.x[0]);
  const td_real r = ldexp(a - td_real(td_detail::kLn2 * td_real(k)), -kSquarings);
  td_real sum = inverse_factorials[kDegree];
  for (int n = kDegree - 1; n >= 0; --n) {
    sum *= r;
    sum += inverse_factorials[n];
  }
  for (int i = 0; i < kSquarings; ++i) sum *= sum;
  return ldexp(sum, static_cast<int>(k));
}

inline td_product::operator td_real() const {
  td_real product = a;
  return product *= b;
}

inline double to_double(const td_real& a) { return a.x[0] + (a.x[1] + a.x[2]); }

}  // namespace dplr

// What scalar.hpp declares for td_real.
namespace dplr {
inline td_real ScalarTraits<td_real>::from_double(double x) { return td_real(x); }
inline double ScalarTraits<td_real>::to_double(const td_real& x) { return dplr::to_double(x); }
// Renormalised parts are non-overlapping, so parts[0] is the value rounded to double (barring ties).
inline void ScalarTraits<td_real>::to_parts(const td_real& x, double* parts) {
  for (int i = 0; i < 3; ++i) parts[i] = x.x[i];
}
}  // namespace dplr
