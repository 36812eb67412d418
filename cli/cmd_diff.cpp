// `dplr diff A B`: two recordings tensor by tensor (by name, or mapped with --map a=b), the same metrics
// and report as verify, with B as the expected side and no reference.
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/report_options.hpp"
#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "reports/sha256.hpp"

namespace dplr::cli {
namespace {

struct DiffCommandOptions {
  std::string a, b;
  std::vector<std::string> maps;  // "nameA=nameB"
  bool floor_ratio = false;
  ReportOptions report;
};

int run_diff(const DiffCommandOptions& o) {
  const TolerancePolicy policy = build_policy(o.report);
  Report report = start_report("diff", policy);
  TensorFile a = read_tensor_file(o.a);
  const TensorFile b = read_tensor_file(o.b);
  for (const auto& map : o.maps) {
    const auto eq = map.find('=');
    if (eq == std::string::npos) throw InputError(fmt::format("--map '{}' must be NAME_IN_A=NAME_IN_B", map));
    const std::string from = map.substr(0, eq), to = map.substr(eq + 1);
    auto node = a.tensors.extract(from);
    if (node.empty()) throw InputError(fmt::format("{}: --map names tensor '{}', which the file lacks", o.a, from));
    node.key() = to;
    a.tensors.insert(std::move(node));
  }
  DiffOptions options;
  options.floor_ratio = o.floor_ratio;
  CaseResult c;
  c.id = fmt::format("{} vs {}", o.a, o.b);
  c.baseline = "file";
  for (const auto& [name, tensor] : a.tensors) c.dtypes[name] = tensor.dtype;
  c.source.files.push_back({"actual", o.a, sha256_file(o.a)});
  c.source.files.push_back({"expected", o.b, sha256_file(o.b)});
  c.comparison = compare_diff(a.tensors, b.tensors, policy, options);
  c.working_dtype = working_dtype_of(a.tensors);
  fmt::print("dplr diff: {} (actual) against {} (expected)\n{}", o.a, o.b, format_table(c));
  report.cases.push_back(std::move(c));
  return finish_report(report, o.report);
}

}  // namespace

void add_diff_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<DiffCommandOptions>();
  auto* command = app.add_subcommand("diff", "Compare two recordings tensor by tensor (B is the expected side)");
  command->add_option("a", options->a, "Actual tensors")->required();
  command->add_option("b", options->b, "Expected tensors")->required();
  command->add_option("--map", options->maps, "Compare A's tensor NAME_A with B's NAME_B: NAME_A=NAME_B");
  command->add_flag("--floor-ratio", options->floor_ratio, "Compute floor ratios from B (when B is more precise)");
  add_report_options(*command, options->report, "out/diff-report.json");
  options->report.preset = "report-only";
  // The help shows the preset this command really starts from.
  command->get_option("--policy")->default_str(options->report.preset);
  command->callback([options, &selected] { selected = [options] { return run_diff(*options); }; });
}

}  // namespace dplr::cli
