#include "cli/report_options.hpp"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <set>

#include <fmt/ranges.h>

#include "core/error.hpp"
#include "reports/baseline.hpp"

namespace dplr::cli {

namespace {
std::vector<std::string>& stored_command_line() {
  static std::vector<std::string> line;
  return line;
}

void remove_stale(const std::string& path) {
  if (path.empty()) return;
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (ec) throw InputError(fmt::format("report {}: an older file there cannot be removed: {}", path, ec.message()));
}

// A --tol entry that names a tensor no comparison of this run judged gated nothing: most likely a typo.
void refuse_unmatched_overrides(const Report& report, const TolerancePolicy& policy) {
  std::set<std::string> judged;
  for (const auto& c : report.cases) {
    for (const auto& t : c.comparison.tensors) judged.insert(t.name);
    if (c.stages)
      for (const auto& s : c.stages->results) judged.insert(s.result.name);
  }
  if (judged.empty()) return;  // nothing was compared (e.g. every case refused): no name to hold them to
  for (const auto& name : policy.override_tensor_names())
    if (!judged.count(name))
      throw InputError(fmt::format("--tol names tensor '{}', which this run does not judge; it judged [{}]", name,
                                   fmt::join(judged, ", ")));
}

Report start_report(const std::string& command) {
  Report report;
  report.command = command;
  report.command_line = stored_command_line();
  report.host = HostInfo::current();
  report.start_time = std::chrono::system_clock::now();
  return report;
}

// Stamps the duration, compares with the baseline, writes the JSON report (and JUnit XML if asked), prints
// the verdict; returns the exit code.
int finish_report(Report& report, const ReportOptions& o) {
  // --update-baseline accepts this run's figures: it writes them, and compares nothing.
  if (!o.baseline_path.empty() && !o.update_baseline && !report.input_error && !report.internal_error) {
    try {
      report.baseline = compare_with_baseline(report, read_report_file(o.baseline_path), o.baseline_path);
      fmt::print("{}", format_baseline(*report.baseline));
    } catch (const InputError& e) {
      report.input_error = e.what();
      fmt::print(stderr, "dplr: error: {}\n", e.what());
    }
  }
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
  if (o.update_baseline && !report.input_error && !report.internal_error) {
    Report stored = report;
    stored.baseline.reset();  // a baseline holds figures, not the comparison that preceded it
    write_report(o.baseline_path, stored, /*compact=*/true);
    fmt::print("baseline written: {}\n", std::filesystem::absolute(o.baseline_path).string());
  }
  const int code = report.exit_code();
  fmt::print("verdict: {} (exit {})\n", verdict_name(report.verdict()), code);
  return code;
}
}  // namespace

void set_command_line(int argc, char** argv) { stored_command_line().assign(argv, argv + argc); }
const std::vector<std::string>& command_line() { return stored_command_line(); }

void add_report_options(CLI::App& command, ReportOptions& o, const std::string& default_report,
                        const std::string& default_preset) {
  o.report_path = default_report;
  o.preset = default_preset;
  std::vector<std::string> presets;
  for (auto name : TolerancePolicy::preset_names()) presets.emplace_back(name);
  command.add_option("--policy", o.preset, "Tolerance preset")->check(CLI::IsMember(presets))->capture_default_str();
  command.add_option("--policy-file", o.policy_files, "JSON tolerance policy files, applied in order");
  command.add_option("--tol", o.overrides,
                     "Tolerance overrides, e.g. o=1.5,dgk:rel_rmse=1e-2,dq:local=8 (see verify/tolerance.hpp)");
  command.add_option("--report", o.report_path, "JSON report path (written on every exit)")->capture_default_str();
  command.add_option("--junit", o.junit_path, "Also write JUnit XML here");
  command.add_option("--baseline", o.baseline_path,
                     "A stored report of the same cases: fail (exit 1) when a gated figure grew past its margin");
  command.add_flag("--update-baseline", o.update_baseline,
                   "Write this run's report to the --baseline path (accepting its figures: no comparison)");
}

TolerancePolicy build_policy(const ReportOptions& o) {
  TolerancePolicy policy = TolerancePolicy::preset(o.preset);
  for (const auto& file : o.policy_files) policy.add_file(file);
  for (const auto& text : o.overrides) policy.add_overrides(text);
  return policy;
}

int run_reported(const std::string& command, const ReportOptions& o,
                 const std::function<void(Report&, const TolerancePolicy&)>& body) {
  if (o.update_baseline && o.baseline_path.empty())
    throw InputError("--update-baseline needs --baseline PATH (where to write the baseline)");
  remove_stale(o.report_path);
  remove_stale(o.junit_path);
  Report report = start_report(command);
  try {
    const TolerancePolicy policy = build_policy(o);
    report.policy_preset = policy.preset_name();
    report.policy_sources = policy.sources();
    report.floor_basis = policy.floor_basis();
    body(report, policy);
    refuse_unmatched_overrides(report, policy);
  } catch (const InputError& e) {
    report.input_error = e.what();
    fmt::print(stderr, "dplr: error: {}\n", e.what());
  } catch (const std::exception& e) {
    report.internal_error = e.what();
    fmt::print(stderr, "dplr: internal error: {}\n", e.what());
  }
  if (report.policy_preset.empty()) report.policy_preset = o.preset;
  return finish_report(report, o);
}

}  // namespace dplr::cli
