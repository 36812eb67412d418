// The recurrence instantiated for float: not a reference precision. It is the yardstick of what a plain fp32
// implementation of the recurrence achieves (verify/conditioning.hpp: the fp32-implementation floor our
// recurrent kernels are judged against where it exceeds the rounding floor).
#include "reference/recurrent_impl.hpp"
#include "reference/reference.hpp"

namespace dplr {
template ExactTensorMap recurrent_reference<float>(const DplrProblem&, const RecurrentOptions&, const InputDirection*,
                                               const float*, float*);

ExactTensorMap recurrent_in_float(const DplrProblem& problem, int threads) {
  return recurrent_reference<float>(problem, RecurrentOptions{true, 0, threads});
}
}  // namespace dplr
