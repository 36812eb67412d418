// The chunk-form stages instantiated for dd_real; one scalar type per translation unit keeps builds lean.
#include "reference/chunk_stages_impl.hpp"

namespace dplr {
template ExactTensorMap chunk_stages_as<dd_real>(const DplrProblem&, const ChunkGrid&, const ChunkOptions&);
}  // namespace dplr
