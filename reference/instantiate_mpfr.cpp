// The recurrence instantiated for mp_real; one scalar type per translation unit keeps builds parallel and lean.
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<mp_real>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                                const mp_real*, mp_real*);
template double central_difference<mp_real>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<mp_real>(const DplrProblem&, const InputDirection&, double, int);
}  // namespace dplr

namespace dplr {
MpfrPrecisionScope::MpfrPrecisionScope(int bits) : previous_digits10_(mp_real::default_precision()) {
  mp_real::default_precision(boost::multiprecision::detail::digits2_2_10(bits));
}
MpfrPrecisionScope::~MpfrPrecisionScope() { mp_real::default_precision(previous_digits10_); }
}  // namespace dplr
