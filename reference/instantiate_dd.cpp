// The recurrence instantiated for dd_real; one scalar type per translation unit keeps builds parallel and lean.
// Compiled with -mfma (reference/CMakeLists.txt): QD_FMS, which QD's inline two_prod uses where it is defined, makes
// each error-free product one FMA instead of Dekker's splits. Both are exact, so the results are the same bits
// (compared equal on B1 T4096 H2 K=V=64, fwd+bwd); one thread there, 1.62 s user against 2.99 s without.
#ifndef __FMA__
#error "reference/instantiate_dd.cpp needs hardware FMA: compile with -mfma (reference/CMakeLists.txt does)"
#endif
#define QD_FMS(a, b, c) __builtin_fma(a, b, -(c))
#include "reference/recurrent_impl.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<dd_real>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                                const dd_real*, dd_real*);
template double central_difference<dd_real>(const DplrProblem&, const InputDirection&, double, int);
template DirectionalCheck directional_gradient_check<dd_real>(const DplrProblem&, const InputDirection&, double, int);
}  // namespace dplr
