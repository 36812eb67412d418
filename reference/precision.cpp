#include "reference/precision.hpp"

#include <fmt/format.h>

#include <boost/multiprecision/detail/digits.hpp>
#include <algorithm>
#include <charconv>

#include "core/error.hpp"
#include "reference/dispatch.hpp"

namespace dplr {

Precision Precision::parse(std::string_view text) {
  if (text == "double" || text == "53") return {Arithmetic::Double, 0};
  if (text == "dd" || text == "double-double") return {Arithmetic::DoubleDouble, 0};
  if (text == "td" || text == "triple-double") return {Arithmetic::TripleDouble, 0};
  if (text == "qd" || text == "quad-double") return {Arithmetic::QuadDouble, 0};
  const bool ball = text.starts_with("ball");
  if (ball) text.remove_prefix(4);
  if (text.starts_with("mpfr")) text.remove_prefix(4);
  int bits = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), bits);
  if (error != std::errc() || end != text.data() + text.size() || bits < 24 || bits > 100000)
    throw InputError(fmt::format("precision '{}' is not one of double, dd, td, qd, a bit count from 24 to 100000 (MPFR) or ball and such a count (Arb)",
                                 text));
  return {ball ? Arithmetic::Ball : Arithmetic::Mpfr, bits};
}

std::string Precision::name() const {
  switch (arithmetic) {
    case Arithmetic::Double: return "double";
    case Arithmetic::DoubleDouble: return "dd";
    case Arithmetic::TripleDouble: return "td";
    case Arithmetic::QuadDouble: return "qd";
    case Arithmetic::Mpfr: return fmt::format("mpfr{}", mpfr_bits);
    case Arithmetic::Ball: return fmt::format("ball{}", mpfr_bits);
  }
  return "?";
}

static int mpfr_digits10_for_bits(int bits) { return static_cast<int>(boost::multiprecision::detail::digits2_2_10(bits)); }

int Precision::significand_bits() const {
  switch (arithmetic) {
    case Arithmetic::Double: return 53;
    case Arithmetic::DoubleDouble: return 106;
    case Arithmetic::TripleDouble: return 150;
    case Arithmetic::QuadDouble: return 212;
    case Arithmetic::Mpfr:
      // What Boost really asks MPFR for: bits -> decimal digits -> bits rounds up a little.
      return static_cast<int>(boost::multiprecision::detail::digits10_2_2(mpfr_digits10_for_bits(mpfr_bits)));
    case Arithmetic::Ball: return mpfr_bits;
  }
  return 0;
}

Precision Precision::certifier() const {
  switch (arithmetic) {
    case Arithmetic::Double: return {Arithmetic::DoubleDouble, 0};
    // td: 44 bits above dd, at 1.7x dd's CPU time (B1 T4096 H2 K=V=64 fwd+bwd, one thread; docs/reference-cost.md);
    // tests/reference/test_precision.cpp checks the estimate against MPFR-400 on every distribution.
    case Arithmetic::DoubleDouble: return {Arithmetic::TripleDouble, 0};
    case Arithmetic::TripleDouble: return {Arithmetic::QuadDouble, 0};
    case Arithmetic::QuadDouble: return {Arithmetic::Mpfr, 320};
    case Arithmetic::Mpfr: return {Arithmetic::Mpfr, mpfr_bits + std::max(64, mpfr_bits / 2)};
    case Arithmetic::Ball: return *this;
  }
  return *this;
}

std::optional<Precision> Precision::extrapolation_base() const {
  // tests/reference/test_precision.cpp (Precision.ExtrapolatedBitsTellTheTruth) checks td's bits extrapolated from
  // dd, and dd's from double, against MPFR-400 on every distribution and several shapes.
  if (arithmetic == Arithmetic::TripleDouble) return Precision{Arithmetic::DoubleDouble, 0};
  if (arithmetic == Arithmetic::DoubleDouble) return Precision{Arithmetic::Double, 0};
  return std::nullopt;
}

void require_fma(const Precision& precision) {
  if (!__builtin_cpu_supports("fma"))
    throw InputError(fmt::format("precision {} needs a CPU with FMA instructions, which this one lacks "
                                 "(reference/CMakeLists.txt builds it with -mfma); use qd or MPFR bits", precision.name()));
}

void refuse_without_arb() {
  throw InputError("the rigorous mode (ball arithmetic) is not in this build of dplr: Arb (Debian "
                   "libflint-arb-dev) was not found when it was configured, or the build links statically "
                   "(DPLR_STATIC_DEPS), for which Debian ships no static Arb");
}

Precision Precision::with_wide_exponent() const {
  if (arithmetic == Arithmetic::Mpfr || arithmetic == Arithmetic::Ball) return *this;  // Arb's exponents are unbounded
  // Boost asks MPFR for decimal digits, which can round the bits down: ask for more until they suffice.
  Precision wide{Arithmetic::Mpfr, significand_bits()};
  while (wide.significand_bits() < significand_bits()) ++wide.mpfr_bits;
  return wide;
}

}  // namespace dplr
