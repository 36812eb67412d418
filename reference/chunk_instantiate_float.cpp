// The chunk-form stages instantiated for float: the float study only (what float does to the chunk form).
#include "reference/chunk_stages_impl.hpp"

namespace dplr {
template ExactTensorMap chunk_stages_as<float>(const DplrProblem&, const ChunkGrid&, const ChunkOptions&);
}  // namespace dplr
