// Catching regressions, not only failures: a run's gated figures against a stored report of the same cases
// (`--baseline REPORT.json` on check, verify, diff and stages; `--update-baseline` writes the new one).
//
// Cases match by id, tensors by (stage, name). The figures compared are the gated ones: floor ratio,
// rel RMSE, worst element (max_elem), worst block (local ratio) and the misrounded fraction. A figure
// regresses when
//     current > baseline x (1 + kBaselineRelativeMargin) + slack(figure)
// with the slack in the figure's own unit (below). Why these margins: the CPU part and our GPU kernels
// are deterministic for given inputs (thread counts change no bit), so a figure moves only when code,
// compiler or card changes; 25% lets a change of summation order or card pass, while a regression of half a
// floor or more of a tensor at its floor fails. The slack keeps figures at zero (a tensor computed exactly) from failing on
// one rounding: 0.05 floors, 0.1 local floors, 0.5 u for the worst element, 0.2 percentage points of
// misrounded elements, and rel RMSE 0.05 floors (0 where no floor was computed).
//
// Refused (InputError, exit 2): a file that is not a dplr-report.v2 (or v1: the fields a baseline reads are the same), a report of another command, and a
// tensor judged against another floor dtype in the baseline than now (the figures would not compare).
// Cases only in one of the two are listed, not failed: `--quick` and full sweeps share a baseline format.
#pragma once
#include <filesystem>
#include <string_view>

#include <nlohmann/json.hpp>

#include "reports/report.hpp"

namespace dplr {

inline constexpr double kBaselineRelativeMargin = 0.25;

// Reads and checks a stored report (schema name, JSON); throws InputError naming the file, after `role`
// ("baseline", "merge").
nlohmann::json read_report_file(const std::filesystem::path& path, std::string_view role = "baseline");

BaselineComparison compare_with_baseline(const Report& current, const nlohmann::json& baseline,
                                         const std::string& baseline_path);

// The table of regressions (or "no regression against ..."), for the terminal.
std::string format_baseline(const BaselineComparison& comparison);

}  // namespace dplr
