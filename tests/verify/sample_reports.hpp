// Reports of every shape the writer produces (every optional part present and absent), built through the
// real comparison code, for the report tests and for validate_reports.py (schema validation).
#pragma once
#include <string>
#include <utility>
#include <vector>

#include "reports/report.hpp"

namespace dplr::testing {

// (name, report) pairs: "verify_full", "verify_minimal", "diff", "input_error", "no_cases".
std::vector<std::pair<std::string, Report>> sample_reports();

// n standard normal values from a seeded mt19937_64 (test data for metrics and reports).
std::vector<double> normal_values(std::size_t n, unsigned seed);

}  // namespace dplr::testing
