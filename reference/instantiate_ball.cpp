// The recurrence instantiated for ball_real (Arb); built only where Arb is found (reference/CMakeLists.txt).
#include "reference/ball.hpp"
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<ball_real>(const DplrProblem&, const RecurrentOptions&,
                                                       const InputDirection*, const ball_real*, ball_real*);
template double central_difference<ball_real>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<ball_real>(const DplrProblem&, const InputDirection&, double, int);

namespace {
int& ball_precision_bits() {
  static int bits = 128;
  return bits;
}
}  // namespace

int ball_precision() { return ball_precision_bits(); }
BallPrecisionScope::BallPrecisionScope(int bits) : previous_bits_(ball_precision_bits()) { ball_precision_bits() = bits; }
BallPrecisionScope::~BallPrecisionScope() { ball_precision_bits() = previous_bits_; }

double ScalarTraits<ball_real>::to_double(const ball_real& x) { return arf_get_d(arb_midref(x.get()), ARF_RND_NEAR); }

// Successive round-to-nearest peels of the midpoint, each subtraction exact (ARF_PREC_EXACT): parts[0] is
// the midpoint correctly rounded to double.
void ScalarTraits<ball_real>::to_parts(const ball_real& x, double* parts) {
  arf_t rest, part;
  arf_init(rest), arf_init(part);
  arf_set(rest, arb_midref(x.get()));
  for (int i = 0; i < limbs(); ++i) {
    parts[i] = arf_get_d(rest, ARF_RND_NEAR);
    arf_set_d(part, parts[i]);
    arf_sub(rest, rest, part, ARF_PREC_EXACT, ARF_RND_DOWN);
  }
  arf_clear(rest), arf_clear(part);
}

// radius + |midpoint - sum of parts|, rounded up to double (inf for an unbounded ball or a non-finite part).
double ScalarTraits<ball_real>::radius_upper(const ball_real& x, const double* parts) {
  for (int i = 0; i < limbs(); ++i)
    if (!std::isfinite(parts[i])) return INFINITY;
  if (!arb_is_finite(x.get())) return INFINITY;
  arf_t rest, part;
  mag_t bound, left;
  arf_init(rest), arf_init(part), mag_init(bound), mag_init(left);
  arf_set(rest, arb_midref(x.get()));
  for (int i = 0; i < limbs(); ++i) {
    arf_set_d(part, parts[i]);
    arf_sub(rest, rest, part, ARF_PREC_EXACT, ARF_RND_DOWN);
  }
  arf_get_mag(left, rest);  // an upper bound of |rest|
  mag_add(bound, arb_radref(x.get()), left);  // rounds up
  arf_set_mag(rest, bound);
  const double radius = arf_get_d(rest, ARF_RND_UP);
  arf_clear(rest), arf_clear(part), mag_clear(bound), mag_clear(left);
  return radius;
}
}  // namespace dplr
