// The recurrence instantiated for double; one scalar type per translation unit keeps builds parallel and lean.
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<double>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                                const double*, double*);
template double central_difference<double>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<double>(const DplrProblem&, const InputDirection&, double, int);
}  // namespace dplr
