// The recurrence instantiated for td_real, compiled with FMA (reference/CMakeLists.txt); one scalar type per translation unit.
#include "reference/triple_double.hpp"
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<td_real>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                                const td_real*, td_real*);
template double central_difference<td_real>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<td_real>(const DplrProblem&, const InputDirection&, double, int);
}  // namespace dplr
