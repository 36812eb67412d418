// `dplr check`: the default accuracy sweep (verify/sweep.hpp) — the main job. Runs what this machine
// can (the CPU part always; the GPU part where a CUDA device is present), prints one line per case and
// the full table of any case that did not pass, writes the JSON report, and says what it skipped.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>

#include "cli/commands.hpp"
#include "cli/html_report.hpp"
#include "cli/report_options.hpp"
#include "core/error.hpp"
#include "verify/gpu_runner.hpp"
#include "verify/sweep.hpp"

namespace dplr::cli {
namespace {

struct CheckOptions {
  SweepOptions sweep;
  ReportOptions report;
  HtmlOptions html;
};

std::string summary_of(const CaseResult& c) {
  double worst_floor = 0.0, worst_rel = 0.0, worst_local = 0.0, worst_elem = 0.0;
  for (const auto& t : c.comparison.tensors) {
    if (t.metrics.floor) worst_floor = std::max(worst_floor, t.metrics.floor->ratio);
    worst_rel = std::max(worst_rel, t.metrics.rel_rmse);
    if (t.metrics.locality) worst_local = std::max(worst_local, t.metrics.locality->worst_block.local_ratio);
    if (t.metrics.elem_unit > 0.0) worst_elem = std::max(worst_elem, t.metrics.max_elem.error);
  }
  std::string text;
  if (c.error) text = "error: " + *c.error;
  if (!c.comparison.tensors.empty())
    text = fmt::format("rel RMSE <= {:.2e}, floor ratio <= {:.3g}, worst block <= {:.3g}, worst element <= {:.3g} u",
                       worst_rel, worst_floor, worst_local, worst_elem);
  if (c.stages) text += fmt::format(", first diverging stage: {}", c.stages->first_diverging_stage.value_or("none"));
  for (const auto& note : c.notes) text += (text.empty() ? "" : "; ") + note;
  return text;
}

int run_check(const CheckOptions& o) {
  const int code = run_reported("check", o.report, [&](Report& report, const TolerancePolicy& policy) {
    if (o.sweep.planted_defect != "none") {
      const auto names = gpu_planted_defect_names();
      if (!gpu_planted_defects_built())
        throw InputError(fmt::format("--plant-defect {}: this dplr was built without planted defects (configure a "
                                     "separate build with -DDPLR_PLANT_DEFECTS=ON)",
                                     o.sweep.planted_defect));
      if (std::find(names.begin(), names.end(), o.sweep.planted_defect) == names.end())
        throw InputError(fmt::format("--plant-defect {}: unknown (one of: {})", o.sweep.planted_defect,
                                     fmt::join(names, ", ")));
      fmt::print("dplr check: GPU kernels with the PLANTED defect '{}'\n", o.sweep.planted_defect);
    }
    fmt::print("dplr check: {} sweep; GPU kernels judged by policy '{}' (floors of the {} dtype)\n",
               o.sweep.quick ? "quick" : "default", policy.preset_name(), floor_basis_name(policy.floor_basis()));
    const SweepOutcome outcome = run_sweep(o.sweep, policy, report, [](const CaseResult& c) {
      const Verdict verdict = c.verdict();
      fmt::print("[{:<5}] {}\n        {}\n", verdict_name(verdict), c.id, summary_of(c));
      if (verdict != Verdict::Pass) fmt::print("{}", format_table(c));
      std::fflush(stdout);
    });
    for (const auto& skipped : outcome.skipped) fmt::print("skipped: {}\n", skipped);
    if (outcome.skipped.empty()) fmt::print("skipped: nothing\n");
    for (const auto& c : report.cases)
      for (const auto& failure : c.failures) fmt::print("failed: {}: {}\n", c.id, failure);
  });
  if (!o.html.path.empty()) {
    write_html_report(o.report.report_path, o.html);
    fmt::print("html: {}\n", o.html.path);
  }
  return code;
}

}  // namespace

void add_check_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<CheckOptions>();
  auto* command = app.add_subcommand("check", "The default accuracy sweep: kernels against the exact reference");
  command->add_flag("--quick", options->sweep.quick, "Fewer, smaller cases");
  auto* cpu_only = command->add_flag("--cpu-only", options->sweep.cpu_only, "Skip the GPU kernels even where a device is present");
  command->add_flag("--gpu-only", options->sweep.gpu_only, "Skip the CPU part (the reference's self-checks, the chunk oracles)")
      ->excludes(cpu_only);
  command->add_option("--threads", options->sweep.threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->add_option("--seed", options->sweep.seed,
                      "Seed of every generated case (default: the committed sweep's, 2024 CPU and 7 GPU)");
  command->add_option("--plant-defect", options->sweep.planted_defect,
                      "Run the GPU kernels with a planted defect (a -DDPLR_PLANT_DEFECTS=ON build only): head-stride, "
                      "sequence-start, drop-last-chunk, missing-barrier, bf16-state, factored-decay");
  add_report_options(*command, options->report, "out/check-report.json", "strict");
  add_html_options(*command, options->html);
  command->callback([options, &selected] { selected = [options] { return run_check(*options); }; });
}

}  // namespace dplr::cli
