#include "core/tensor.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace dplr {

std::string shape_string(const std::vector<std::int64_t>& shape) { return fmt::format("[{}]", fmt::join(shape, ", ")); }

}  // namespace dplr
