// The recurrence instantiated for qd_real; one scalar type per translation unit keeps builds parallel and lean.
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<qd_real>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                                const qd_real*, qd_real*);
template double central_difference<qd_real>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<qd_real>(const DplrProblem&, const InputDirection&, double, int);
}  // namespace dplr
