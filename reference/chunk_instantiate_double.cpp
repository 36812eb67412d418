// The chunk-form stages instantiated for double; one scalar type per translation unit keeps builds lean.
#include "reference/chunk_stages_impl.hpp"

namespace dplr {
template ExactTensorMap chunk_stages_as<double>(const DplrProblem&, const ChunkGrid&, const ChunkOptions&);
}  // namespace dplr
