// Which arithmetic a reference run uses, chosen at run time ("double", "dd", "td", "qd", or a bit count for
// MPFR), and how to call a template with the matching scalar type.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace dplr {

// Ball: Arb's midpoint-radius arithmetic (reference/ball.hpp), the rigorous mode; where Arb was found.
enum class Arithmetic { Double, DoubleDouble, TripleDouble, QuadDouble, Mpfr, Ball };

struct Precision {
  Arithmetic arithmetic = Arithmetic::DoubleDouble;
  int mpfr_bits = 0;  // requested bits for Arithmetic::Mpfr, the working precision for Arithmetic::Ball

  static Precision ball(int bits) { return {Arithmetic::Ball, bits}; }
  bool encloses() const { return arithmetic == Arithmetic::Ball; }

  static Precision parse(std::string_view text);  // "double" | "dd" | "td" | "qd" | "<bits>" | "ball<bits>"; throws InputError
  std::string name() const;                       // "double", "dd", "td", "qd", "mpfr256", "ball256"
  int significand_bits() const;                   // 53, 106, 150, 212, or the bits MPFR really uses
  // The precision a self-certifying run repeats itself at: clearly above this one (a ball: itself, it needs none).
  Precision certifier() const;
  // The cheaper precision whose agreement with this one, plus the gap in significand bits, estimates this one's
  // bits (EstimateMethod::Extrapolated, reference/reference.hpp): dd for td. None for the others (not validated).
  std::optional<Precision> extrapolation_base() const;
  // MPFR at this precision's significand bits: the same accuracy without double's exponent range (a ball: itself).
  Precision with_wide_exponent() const;
};

}  // namespace dplr
