#include "cli/report_options.hpp"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>

namespace dplr::cli {

namespace {
std::vector<std::string>& stored_command_line() {
  static std::vector<std::string> line;
  return line;
}
}  // namespace

void set_command_line(int argc, char** argv) { stored_command_line().assign(argv, argv + argc); }

void add_report_options(CLI::App& command, ReportOptions& o, const std::string& default_report) {
  o.report_path = default_report;
  std::vector<std::string> presets;
  for (auto name : TolerancePolicy::preset_names()) presets.emplace_back(name);
  command.add_option("--policy", o.preset, "Tolerance preset")->check(CLI::IsMember(presets))->capture_default_str();
  command.add_option("--policy-file", o.policy_files, "JSON tolerance policy files, applied in order");
  command.add_option("--tol", o.overrides, "Tolerance overrides, e.g. o=1.5,dgk:rel_rmse=1e-2 (see verify/tolerance.hpp)");
  command.add_option("--report", o.report_path, "JSON report path")->capture_default_str();
  command.add_option("--junit", o.junit_path, "Also write JUnit XML here");
}

TolerancePolicy build_policy(const ReportOptions& o) {
  TolerancePolicy policy = TolerancePolicy::preset(o.preset);
  for (const auto& file : o.policy_files) policy.add_file(file);
  for (const auto& text : o.overrides) policy.add_overrides(text);
  return policy;
}

Report start_report(std::string command, const TolerancePolicy& policy) {
  Report report;
  report.command = std::move(command);
  report.command_line = stored_command_line();
  report.host = HostInfo::current();
  report.policy_preset = policy.preset_name();
  report.policy_sources = policy.sources();
  report.start_time = std::chrono::system_clock::now();
  return report;
}

int finish_report(Report& report, const ReportOptions& o) {
  report.duration_seconds =
      std::chrono::duration<double>(std::chrono::system_clock::now() - report.start_time).count();
  if (!o.report_path.empty()) {
    write_report(o.report_path, report);
    fmt::print("report: {}\n", std::filesystem::absolute(o.report_path).string());
  }
  if (!o.junit_path.empty()) {
    write_junit(o.junit_path, report);
    fmt::print("junit: {}\n", std::filesystem::absolute(o.junit_path).string());
  }
  const int code = report.exit_code();
  fmt::print("verdict: {} (exit {})\n", verdict_name(report.verdict()), code);
  return code;
}

}  // namespace dplr::cli
