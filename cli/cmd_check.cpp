// `dplr check`: the default accuracy sweep (verify/sweep.hpp) — the main job. Runs what this machine
// can (the CPU part always; the GPU part where a CUDA device is present), prints one line per case and
// the full table of any case that did not pass, writes the JSON report, and says what it skipped.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "cli/commands.hpp"
#include "cli/html_report.hpp"
#include "cli/report_options.hpp"
#include "core/error.hpp"
#include "verify/gpu_runner.hpp"
#include "verify/case_file.hpp"
#include "verify/property_sweep.hpp"
#include "verify/sweep.hpp"

#ifndef DPLR_REGRESSIONS_DIR
#define DPLR_REGRESSIONS_DIR ""
#endif

namespace dplr::cli {
namespace {

struct CheckOptions {
  SweepOptions sweep;
  ReportOptions report;
  HtmlOptions html;
  std::string shard;                     // --shard I/N
  std::string case_file;                 // --case FILE
  std::string regressions;               // --regressions DIR (empty: the source tree's corpus, where present)
  bool no_regressions = false;
  std::optional<std::int64_t> property;  // --property N: the RapidCheck sweep instead of the fixed one
  std::optional<double> time_budget;
  std::string plant;
  bool rigorous = false;
  RigorousOptions rigorous_options{.proven_bits = kMinReferenceBits};
};

// The regression corpus every check replays: --regressions DIR (which must exist), else the source tree's
// tests/data/regressions where this build can see it; a run without one says so.
std::vector<std::filesystem::path> regression_files(const CheckOptions& o, std::vector<std::string>& skipped) {
  if (o.no_regressions) {
    skipped.push_back("regression corpus: --no-regressions");
    return {};
  }
  const std::filesystem::path folder = o.regressions.empty() ? std::filesystem::path(DPLR_REGRESSIONS_DIR)
                                                             : std::filesystem::path(o.regressions);
  if (!std::filesystem::is_directory(folder)) {
    if (!o.regressions.empty())
      throw InputError(fmt::format("--regressions {}: not a folder (expected a folder of .safetensors case files)",
                                   o.regressions));
    skipped.push_back(fmt::format("regression corpus: {} is not on this machine (give --regressions DIR)",
                                  folder.empty() ? "<none compiled in>" : folder.string()));
    return {};
  }
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors") files.push_back(entry.path());
  std::sort(files.begin(), files.end());  // the list's order, and so the shards, must not depend on the file system
  return files;
}

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

void print_case(const CaseResult& c) {
  const Verdict verdict = c.verdict();
  fmt::print("[{:<5}] {}\n        {}\n", verdict_name(verdict), c.id, summary_of(c));
  if (verdict != Verdict::Pass) fmt::print("{}", format_table(c));
  std::fflush(stdout);
}

void print_written(const std::vector<WrittenCase>& written) {
  for (const auto& w : written)
    fmt::print("failed case written: {}\n  replay: {}\n", w.path.string(), replay_command(w.path));
}

// --property N: the RapidCheck-driven sweep (verify/property_sweep.hpp).
void run_property_check(const CheckOptions& o, Report& report, const TolerancePolicy& policy) {
  if (!o.sweep.seed) throw InputError("--property needs --seed S: the property sweep is the same for the same seed");
  if (!o.sweep.gpu_kernels.empty()) throw InputError("--gpu-kernels belongs to the fixed sweep, not --property");
  if (!o.case_file.empty()) throw InputError("--property and --case: give one (a sweep, or a replay)");
  if (o.sweep.quick) throw InputError("--property and --quick: give one (--property N sets the sweep's size)");
  PropertyOptions options;
  options.cases = *o.property;
  options.seed = *o.sweep.seed;
  options.time_budget_seconds = o.time_budget;
  options.cpu_only = o.sweep.cpu_only;
  options.threads = o.sweep.threads;
  options.planted = o.plant;
  options.gpu_planted_defect = o.sweep.planted_defect;
  options.conditioning_floor = o.sweep.conditioning_floor;
  if (!o.shard.empty()) options.shard = parse_shard(o.shard);
  if (!o.report.report_path.empty())
    options.failed_case_folder = std::filesystem::path(o.report.report_path).parent_path() / "failed-cases";
  fmt::print("dplr check --property {} --seed {}{}{}; GPU kernels judged by policy '{}'\n", options.cases, options.seed,
             options.shard.whole() ? "" : ", shard " + shard_name(options.shard),
             options.planted.empty() ? "" : ", planted defect " + options.planted, policy.preset_name());
  const PropertyOutcome outcome = run_property_sweep(options, policy, report, print_case);
  for (const auto& line : outcome.skipped) fmt::print("skipped: {}\n", line);
  fmt::print("skipped: regression corpus: replayed by `dplr check` without --property\n");
  fmt::print("positions run: {} (of {}, shard {})\n", outcome.positions_run, options.cases, shard_name(options.shard));
  for (const auto& c : report.cases)
    for (const auto& failure : c.failures) fmt::print("failed: {}: {}\n", c.id, failure);
  print_written(outcome.written);
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
    if (o.property && o.rigorous)
      throw InputError("--rigorous and --property N: the property sweep's reference has no rigorous mode; "
                       "give --rigorous to the fixed sweep (dplr check) or a replay (--case)");
    if (o.property) return run_property_check(o, report, policy);
    if (o.time_budget || !o.plant.empty()) throw InputError("--time-budget and --plant belong to --property N");
    if (o.sweep.cpu_only && !o.sweep.gpu_kernels.empty())
      throw InputError("--gpu-kernels and --cpu-only: --cpu-only runs no GPU kernel");
    SweepOptions sweep = o.sweep;
    if (o.rigorous) {
      if (o.rigorous_options.proven_bits < kMinReferenceBits)
        throw InputError(fmt::format("--proven-bits {}: the check's reference gate needs at least {:.0f}",
                                     o.rigorous_options.proven_bits, kMinReferenceBits));
      if (o.sweep.gpu_only)
        throw InputError("--rigorous and --gpu-only: --rigorous is the CPU part's reference, which --gpu-only skips");
      sweep.rigorous = o.rigorous_options;
      fmt::print("dplr check: the CPU part's reference in ball arithmetic (Arb), {:.0f} bits proven on every tensor\n",
                 o.rigorous_options.proven_bits);
    }
    std::vector<std::string> skipped;
    if (!o.shard.empty()) sweep.shard = parse_shard(o.shard);
    if (!o.case_file.empty()) {
      sweep.replays = {o.case_file};
      sweep.replays_only = true;
    } else {
      sweep.replays = regression_files(o, skipped);
    }
    if (!o.report.report_path.empty())
      sweep.failed_case_folder = std::filesystem::path(o.report.report_path).parent_path() / "failed-cases";
    fmt::print("dplr check: {}{}; GPU kernels judged by policy '{}' (floors of the {} dtype)\n",
               !o.case_file.empty() ? "replaying " + o.case_file : o.sweep.quick ? "quick sweep" : "default sweep",
               sweep.shard.whole() ? "" : ", shard " + shard_name(sweep.shard), policy.preset_name(),
               floor_basis_name(policy.floor_basis()));
    if (!sweep.replays.empty() && o.case_file.empty())
      fmt::print("replaying {} case files of the regression corpus\n", sweep.replays.size());
    const SweepOutcome outcome = run_sweep(sweep, policy, report, print_case);
    skipped.insert(skipped.end(), outcome.skipped.begin(), outcome.skipped.end());
    for (const auto& line : skipped) fmt::print("skipped: {}\n", line);
    if (skipped.empty()) fmt::print("skipped: nothing\n");
    if (report.sweep && !sweep.shard.whole())
      fmt::print("shard {}: positions i mod {} == {} of the sweep's {}\n", shard_name(sweep.shard), sweep.shard.count,
                 sweep.shard.index, report.sweep->cases_total);
    print_written(outcome.written);
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
  add_rigorous_options(*command, options->rigorous, options->rigorous_options,
                       "the CPU part's reference, gated on proven instead of estimated bits,");
  command->add_option("--seed", options->sweep.seed,
                      "Seed of every generated case (default: the committed sweep's, 2024 CPU and 7 GPU)");
  command->add_option("--plant-defect", options->sweep.planted_defect,
                      "Run the GPU kernels, forward and backward, with a planted defect (a -DDPLR_PLANT_DEFECTS=ON "
                      "build only): the forward's head-stride, sequence-start, drop-last-chunk, missing-barrier, "
                      "bf16-state, factored-decay; the backward's bwd-head-offset, bwd-state-bf16, bwd-dgk-exclusive, "
                      "recurrent-bwd-state-bf16");
  command->add_flag("!--rounding-floor-only", options->sweep.conditioning_floor,
                    "Judge GPU tensors against their correctly rounded floor alone (default: the larger of it and the "
                    "conditioning floor, the exact answer's change under a perturbation of the inputs at fp32's u)");
  command->add_option("--gpu-kernels", options->sweep.gpu_kernels,
                      "Run only the GPU cases (fixed and replayed) of these kernels, comma-separated: chunk, "
                      "chunk-fused, recurrent (forwards), chunk-bwd, chunk-bwd-fma, recurrent-bwd (backwards); default all")
      ->delimiter(',')
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kGpuSweepKernels), std::end(kGpuSweepKernels))));
  command->add_option("--shard", options->shard,
                      "Run shard I of N (0 <= I < N): the positions i of the case list with i mod N == I; "
                      "`dplr report merge` combines the N reports");
  command->add_option("--case", options->case_file,
                      "Replay one case file (a failing case's .safetensors) instead of the sweep")
      ->check(CLI::ExistingFile);
  command->add_option("--regressions", options->regressions,
                      fmt::format("Folder of case files every check replays (default: {})",
                                  *DPLR_REGRESSIONS_DIR ? DPLR_REGRESSIONS_DIR : "none compiled in"));
  command->add_flag("--no-regressions", options->no_regressions, "Do not replay the regression corpus");
  command->add_option("--property", options->property,
                      "Run N RapidCheck-drawn cases (with --seed S) instead of the fixed sweep: CPU properties "
                      "always, the GPU kernels where a device is present; failures are shrunk and written")
      ->check(CLI::PositiveNumber);
  command->add_option("--time-budget", options->time_budget,
                      "--property: start no new case (nor shrink step) after this many seconds");
  command->add_option("--plant", options->plant,
                      "--property: plant a defect in the CPU properties (dropped-partial-chunk, head-mixup) to see the "
                      "sweep find and shrink it (for the GPU kernels' planted defects: --plant-defect)");
  add_report_options(*command, options->report, "out/check-report.json", "strict");
  add_html_options(*command, options->html);
  command->callback([options, &selected] { selected = [options] { return run_check(*options); }; });
}

}  // namespace dplr::cli
