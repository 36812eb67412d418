// What the report-writing commands (check, verify, diff, stages) share: the tolerance policy options, the
// report and JUnit paths, and filling a report's case from a problem and a reference run.
#pragma once
#include <CLI/CLI.hpp>

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
};

void add_report_options(CLI::App& command, ReportOptions& options, const std::string& default_report);
TolerancePolicy build_policy(const ReportOptions& options);

// argv as main received it (for the report's command line).
void set_command_line(int argc, char** argv);
Report start_report(std::string command, const TolerancePolicy& policy);
// Stamps the duration, prints the verdict, writes the JSON report (and JUnit XML if asked), and returns
// the exit code: 0 pass, 1 accuracy failure.
int finish_report(Report& report, const ReportOptions& options);

}  // namespace dplr::cli
