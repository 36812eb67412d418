// `dplr gradcheck`: finite differences at high precision against a backward (the algorithm: verify/gradcheck.hpp).
// This file parses the options, loads the case and prints the table.
#include <fmt/format.h>

#include <cstdio>

#include <cmath>
#include <limits>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "verify/gradcheck.hpp"

namespace dplr::cli {
namespace {

struct GradcheckCliOptions {
  CaseOptions input;
  std::string precision = "qd";
  int directions = 4;
  bool per_element = false;
  bool recorded = false;
  double tolerance = std::numeric_limits<double>::quiet_NaN();
  int threads = 0;
  std::int64_t max_elements = 4096;
};

int run_gradcheck(const GradcheckCliOptions& o) {
  if (o.recorded && o.input.file.empty())
    throw InputError("gradcheck --recorded needs a FILE holding the recorded gradients (dq ... dh0)");
  std::string description;
  const DplrProblem problem = load_case(o.input, &description);
  if (!problem.grad_o) throw InputError(fmt::format("{}: gradcheck needs the upstream gradient 'do'", description));
  GradcheckOptions options;
  options.precision = Precision::parse(o.precision);
  options.directions = o.directions;
  options.per_element = o.per_element;
  options.tolerance = o.tolerance;
  options.threads = o.threads;
  options.max_elements = o.max_elements;
  TensorMap recorded;
  if (o.recorded) recorded = read_tensor_file(o.input.file).tensors;
  options.origin = description;
  const GradcheckResult settings = gradcheck_settings(options, o.recorded);
  fmt::print("dplr gradcheck: {} at {} ({} bits), eps = 2^{}, {} backward, {} mode, tolerance {:.1e}\n", description,
             options.precision.name(), settings.bits, settings.epsilon_log2, o.recorded ? "recorded" : "our analytic",
             o.per_element ? "per-element" : "directional", settings.tolerance);
  fmt::print("{:<5} {:>12} {:>24} {:>24} {:>12}  {}\n", "grad", "checks", "finite difference", "backward",
             "rel error", "verdict");
  std::fflush(stdout);
  // One line per gradient as it is done, flushed, also into a pipe.
  const GradcheckResult r = check_gradients(problem, options, o.recorded ? &recorded : nullptr, [](const GradientCheck& g) {
    if (!g.in_recording)
      fmt::print("{:<5} {:>12}  not in the file, skipped\n", g.gradient, "-");
    else
      fmt::print("{:<5} {:>12} {:>24.16e} {:>24.16e} {:>12.2e}  {}\n", g.gradient, g.checks, g.finite_difference,
                 g.backward, g.error, g.pass ? "pass" : "FAIL");
    std::fflush(stdout);
  });
  fmt::print("{}\n", r.all_pass() ? "all gradients within tolerance" : "some gradients exceed the tolerance");
  return r.all_pass() ? 0 : 1;
}

}  // namespace

void add_gradcheck_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<GradcheckCliOptions>();
  auto* command = app.add_subcommand("gradcheck", "Finite differences at high precision against a backward");
  add_case_options(*command, options->input, true);
  command->add_option("--precision", options->precision, "qd or MPFR bits (>= 200 for 30-digit checks)")
      ->capture_default_str();
  command->add_option("--directions", options->directions, "Random directions per input")
      ->check(at_least(1))
      ->capture_default_str();
  command->add_flag("--per-element", options->per_element, "Check every element (small cases)");
  command->add_flag("--recorded", options->recorded, "Check the gradients FILE holds instead of ours");
  command->add_option("--tolerance", options->tolerance,
                      fmt::format("Largest relative difference (default 2^(-bits/2) for ours, {} recorded)",
                                  kRecordedGradientTolerance))
      ->check(finite_positive());
  command->add_option("--max-elements", options->max_elements, "Per-element limit per input")
      ->check(at_least(1))
      ->capture_default_str();
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->callback([options, &selected] { selected = [options] { return run_gradcheck(*options); }; });
}

}  // namespace dplr::cli
