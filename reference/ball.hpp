// ball_real: an Arb ball (midpoint-radius interval, FLINT/Arb's arb_t) as a scalar type of the reference
// template, so the same recurrence, forward and backward, yields rigorous enclosures: every operation's
// result ball contains the exact result of the same operation on any values inside its operands' balls.
// The inputs are doubles, so they enter as exact balls (radius 0), and the computed ball of every output
// element contains the exact value of the contract's recurrence on those inputs.
//
// The working precision (bits of the midpoints) is process-wide, set by BallPrecisionScope before worker
// threads start, like MPFR's. Only the translation units built when Arb is found (DPLR_HAVE_ARB) include
// this header; scalar.hpp declares what the rest of the build needs.
//
// Comparisons: whether two balls are ordered is not decidable in general, so ball_real offers only
// "certainly equal" (both exact and identical); the template branches on a value once, in
// directional_gradient_check (denominator == 0), where a ball that merely contains zero then gives an
// unbounded (honestly uninformative) relative difference instead of a wrong branch.
#pragma once
#include <arb.h>

#include <utility>

#include "reference/scalar.hpp"

namespace dplr {

class ball_real;
// a * b not yet formed: `acc += a * b` becomes one arb_addmul (one rounding, no temporary).
struct ball_product {
  const ball_real& a;
  const ball_real& b;
};

class ball_real {
 public:
  ball_real() { arb_init(v_); }
  ball_real(double d) {  // NOLINT: implicit like the other scalar types, for `acc = 0.0`; exact
    arb_init(v_);
    arb_set_d(v_, d);
  }
  ball_real(const ball_product& p) {  // NOLINT: a product reads as a value
    arb_init(v_);
    arb_mul(v_, p.a.v_, p.b.v_, ball_precision());
  }
  ball_real(const ball_real& o) {
    arb_init(v_);
    arb_set(v_, o.v_);
  }
  ball_real(ball_real&& o) noexcept {
    arb_init(v_);
    arb_swap(v_, o.v_);
  }
  ~ball_real() { arb_clear(v_); }
  ball_real& operator=(const ball_real& o) {
    arb_set(v_, o.v_);
    return *this;
  }
  ball_real& operator=(ball_real&& o) noexcept {
    arb_swap(v_, o.v_);
    return *this;
  }
  ball_real& operator=(double d) {
    arb_set_d(v_, d);
    return *this;
  }

  ball_real& operator+=(const ball_real& b) {
    arb_add(v_, v_, b.v_, ball_precision());
    return *this;
  }
  ball_real& operator-=(const ball_real& b) {
    arb_sub(v_, v_, b.v_, ball_precision());
    return *this;
  }
  ball_real& operator*=(const ball_real& b) {
    arb_mul(v_, v_, b.v_, ball_precision());
    return *this;
  }
  ball_real& operator/=(const ball_real& b) {
    arb_div(v_, v_, b.v_, ball_precision());
    return *this;
  }
  ball_real& operator+=(const ball_product& p) {
    arb_addmul(v_, p.a.v_, p.b.v_, ball_precision());
    return *this;
  }

  ball_real operator-() const {
    ball_real r;
    arb_neg(r.v_, v_);
    return r;
  }
  friend ball_real operator+(ball_real a, const ball_real& b) { return a += b; }
  friend ball_real operator-(ball_real a, const ball_real& b) { return a -= b; }
  friend ball_product operator*(const ball_real& a, const ball_real& b) { return {a, b}; }
  friend ball_real operator/(ball_real a, const ball_real& b) { return a /= b; }
  // Certainly equal: both balls exact (radius 0) with equal midpoints.
  friend bool operator==(const ball_real& a, const ball_real& b) {
    return arb_is_exact(a.v_) && arb_is_exact(b.v_) && arb_equal(a.v_, b.v_);
  }

  friend ball_real abs(const ball_real& a) {
    ball_real r;
    arb_abs(r.v_, a.v_);
    return r;
  }
  friend ball_real exp(const ball_real& a) {
    ball_real r;
    arb_exp(r.v_, a.v_, ball_precision());
    return r;
  }
  friend ball_real ldexp(const ball_real& a, int e) {
    ball_real r;
    arb_mul_2exp_si(r.v_, a.v_, e);
    return r;
  }

  const arb_struct* get() const { return v_; }
  arb_struct* get() { return v_; }

 private:
  arb_t v_;
};

}  // namespace dplr
