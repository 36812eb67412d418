// The recurrence instantiated for dd_real; one scalar type per translation unit keeps builds parallel and lean.
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<dd_real>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                                const dd_real*, dd_real*);
template double central_difference<dd_real>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<dd_real>(const DplrProblem&, const InputDirection&, double, int);
}  // namespace dplr
