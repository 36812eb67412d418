// What the report-writing commands (check, verify, diff, stages) share: the tolerance policy options, the
// report and JUnit paths, and filling a report's case from a problem and a reference run.
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

#include "reference/problem.hpp"
#include "reference/reference.hpp"
#include "reports/report.hpp"
#include "verify/case_info.hpp"
#include "verify/tolerance.hpp"

namespace dplr::cli {

struct ReportOptions {
  std::string preset = "default";
  std::vector<std::string> policy_files;
  std::vector<std::string> overrides;
  std::string report_path;
  std::string junit_path;
  std::string baseline_path;     // --baseline: fail on figures that grew past reports/baseline.hpp's margins
  bool update_baseline = false;  // --update-baseline: (compare, then) write this run's report there
};

// `default_preset` is the policy the command uses when --policy is not given; the help shows it.
void add_report_options(CLI::App& command, ReportOptions& options, const std::string& default_report,
                        const std::string& default_preset);
TolerancePolicy build_policy(const ReportOptions& options);

// argv as main received it (for the report's command line).
void set_command_line(int argc, char** argv);
const std::vector<std::string>& command_line();

// Runs a report-writing command: removes the report (and JUnit file) a previous run left at the paths, so
// a run that dies leaves none to be read as a pass; builds the policy; runs `body`, which fills the
// report's cases; then writes the report whatever happened: an InputError (also from the policy) becomes
// `input_error` (exit 2), any other exception `internal_error` (exit 3), both printed on stderr. Compares
// with the baseline where asked. Returns the exit code: 0 pass, 1 accuracy failure or regression, 2, 3.
int run_reported(const std::string& command, const ReportOptions& options,
                 const std::function<void(Report&, const TolerancePolicy&)>& body);

}  // namespace dplr::cli
