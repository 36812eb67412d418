// Filling a report's case from a DPLR problem and a reference run (shared by every command and the sweep).
#pragma once
#include <string>

#include "reference/problem.hpp"
#include "reference/reference.hpp"
#include "reports/report.hpp"

namespace dplr {

// Shape, storage dtypes and options, plus notes on inputs outside the intended domain (gk > 0).
CaseResult describe_case(const DplrProblem& problem, std::string id);
ReferenceInfo reference_info(const ReferenceResult& result);

}  // namespace dplr
