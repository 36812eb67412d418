// Calls a generic function with the scalar type a run-time Precision names:
//   with_scalar(precision, [&]<class S>(std::type_identity<S>) { ... });
// For MPFR, the working precision is set for the call's duration (one precision at a time per process).
#pragma once
#include <type_traits>

#include "reference/precision.hpp"
#include "reference/scalar.hpp"

namespace dplr {

// The dd_real and td_real translation units are compiled with -mfma: refuses `precision` (InputError) on a CPU
// without FMA.
void require_fma(const Precision& precision);
// Throws the InputError of a ball precision asked of a build without Arb.
[[noreturn]] void refuse_without_arb();

template <class F>
decltype(auto) with_scalar(const Precision& precision, F&& f) {
  switch (precision.arithmetic) {
    case Arithmetic::Double: return f(std::type_identity<double>{});
    case Arithmetic::DoubleDouble:
      require_fma(precision);
      return f(std::type_identity<dd_real>{});
    case Arithmetic::TripleDouble:
      require_fma(precision);
      return f(std::type_identity<td_real>{});
    case Arithmetic::QuadDouble: return f(std::type_identity<qd_real>{});
    case Arithmetic::Mpfr: break;
    case Arithmetic::Ball: {
#ifdef DPLR_HAVE_ARB
      BallPrecisionScope scope(precision.mpfr_bits);
      return f(std::type_identity<ball_real>{});
#else
      refuse_without_arb();
#endif
    }
  }
  MpfrPrecisionScope scope(precision.mpfr_bits);
  return f(std::type_identity<mp_real>{});
}

// Doubles per element of an ExactTensor computed at `precision`.
inline int expansion_limbs(const Precision& precision) {
  return with_scalar(precision, []<class S>(std::type_identity<S>) { return ScalarTraits<S>::limbs(); });
}

}  // namespace dplr
