// The tool's version and the git revision it was configured from (reports/CMakeLists.txt fills them in).
#pragma once
#include <string_view>

namespace dplr {

std::string_view tool_version();  // the CMake project version, e.g. "0.1.0"
std::string_view git_revision();  // `git rev-parse --short HEAD` at configure time; "unknown" outside a checkout

}  // namespace dplr
