// `dplr gradcheck`: finite differences at high precision against a backward (the algorithm: verify/gradcheck.hpp).
// This file parses the options, loads the case and prints the table. With --gpu the backward checked is our GPU
// kernel's: (a) against the exact analytic backward under a tolerance policy, then (b) by the finite differences.
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>

#include <cmath>
#include <limits>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "reports/report.hpp"
#include "verify/gradcheck.hpp"
#include "verify/gpu_runner.hpp"

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
  bool gpu = false;                  // check our GPU backward
  std::string kernel = "recurrent";  // which one
  bool kernel_given = false;
  int chunk_size = 64;               // the chunk kernel's
  bool chunk_size_given = false;
  std::string policy = "strict";     // (a)'s tolerance preset
  bool policy_given = false;
  std::vector<std::string> overrides;
};

// (a) of --gpu: the GPU gradients against the exact analytic backward, as `dplr verify` prints a case. Returns
// whether every tensor passed.
bool print_gpu_against_exact(const DplrProblem& problem, const TensorMap& gradients, const GradcheckCliOptions& o,
                             const GradcheckOptions& options, const std::string& description) {
  TolerancePolicy policy = TolerancePolicy::preset(o.policy);
  for (const auto& text : o.overrides) policy.add_overrides(text);
  CaseResult c;
  c.id = description;
  c.comparison = compare_with_exact_backward(problem, gradients, policy, options.precision, options.threads);
  for (const auto& name : policy.override_tensor_names()) {
    const bool judged = std::any_of(c.comparison.tensors.begin(), c.comparison.tensors.end(),
                                    [&](const TensorResult& t) { return t.name == name; });
    if (!judged) throw InputError(fmt::format("--tol names '{}', which this check does not judge", name));
  }
  fmt::print("(a) against the exact analytic backward at {}, policy '{}' (floors of the {} dtype)\n",
             options.precision.name(), policy.preset_name(), floor_basis_name(policy.floor_basis()));
  fmt::print("{}", format_table(c));
  fmt::print("{}\n", c.comparison.verdict == Verdict::Pass ? "every gradient within the policy" : "some gradients fail the policy");
  std::fflush(stdout);
  return c.comparison.verdict == Verdict::Pass;
}

int run_gradcheck(const GradcheckCliOptions& o) {
  if (o.gpu && o.recorded) throw InputError("gradcheck: --gpu and --recorded each name the backward to check; give one");
  if (!o.gpu && (o.kernel_given || o.chunk_size_given || o.policy_given || !o.overrides.empty()))
    throw InputError("gradcheck: --kernel, --chunk-size, --policy and --tol apply to --gpu only");
  if (o.gpu && o.chunk_size_given && o.kernel != "chunk")
    throw InputError(fmt::format("gradcheck: --chunk-size is for --kernel chunk, not {}", o.kernel));
  if (o.gpu) {
    require_gpu_backward_kernel(o.kernel);
    // Before anything is computed: without a device nothing of the check can run.
    const GpuDevice device = gpu_device();
    if (!device.available) throw InputError(fmt::format("gradcheck --gpu needs a CUDA device: {}", device.reason));
  }
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
  bool gpu_pass = true;
  if (o.gpu) {
    if (std::isnan(options.tolerance)) options.tolerance = gpu_gradient_tolerance(problem);
    fmt::print("dplr gradcheck: {}, our GPU {} backward on {}\n", description, o.kernel, gpu_device().name);
    recorded = run_gpu_backward(problem, o.kernel, o.chunk_size);
    gpu_pass = print_gpu_against_exact(problem, recorded, o, options, description);
  }
  const bool checks_given = o.recorded || o.gpu;
  const GradcheckResult settings = gradcheck_settings(options, checks_given);
  if (o.gpu)
    fmt::print("(b) finite differences of the exact forward at {} ({} bits), eps = 2^{}, {} mode, tolerance {:.1e}\n",
               options.precision.name(), settings.bits, settings.epsilon_log2,
               o.per_element ? "per-element" : "directional", settings.tolerance);
  else
    fmt::print("dplr gradcheck: {} at {} ({} bits), eps = 2^{}, {} backward, {} mode, tolerance {:.1e}\n", description,
               options.precision.name(), settings.bits, settings.epsilon_log2, o.recorded ? "recorded" : "our analytic",
               o.per_element ? "per-element" : "directional", settings.tolerance);
  fmt::print("{:<5} {:>12} {:>24} {:>24} {:>12}  {}\n", "grad", "checks", "finite difference", "backward",
             "rel error", "verdict");
  std::fflush(stdout);
  // One line per gradient as it is done, flushed, also into a pipe.
  const GradcheckResult r = check_gradients(problem, options, checks_given ? &recorded : nullptr, [](const GradientCheck& g) {
    if (!g.in_recording)
      fmt::print("{:<5} {:>12}  not in the file, skipped\n", g.gradient, "-");
    else
      fmt::print("{:<5} {:>12} {:>24.16e} {:>24.16e} {:>12.2e}  {}\n", g.gradient, g.checks, g.finite_difference,
                 g.backward, g.error, g.pass ? "pass" : "FAIL");
    std::fflush(stdout);
  });
  fmt::print("{}\n", r.all_pass() ? "all gradients within tolerance" : "some gradients exceed the tolerance");
  return r.all_pass() && gpu_pass ? 0 : 1;
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
  command->add_flag("--gpu", options->gpu,
                    "Check our GPU backward: against the exact analytic backward (--policy), then by the finite "
                    "differences (tolerance default 1e-5 for fp32 inputs, 1e-2 for 16-bit); needs a CUDA device");
  command->add_option("--kernel", options->kernel, "GPU backward kernel of --gpu")
      ->check(CLI::IsMember(gpu_backward_kernel_names()))
      ->capture_default_str()
      ->each([options](const std::string&) { options->kernel_given = true; });
  command->add_option("--chunk-size", options->chunk_size, "Chunk size of --kernel chunk")
      ->check(CLI::IsMember({16, 32, 64}))
      ->capture_default_str()
      ->each([options](const std::string&) { options->chunk_size_given = true; });
  command->add_option("--policy", options->policy, "Tolerance preset of --gpu's comparison with the exact backward")
      ->check(CLI::IsMember(std::vector<std::string>(TolerancePolicy::preset_names().begin(),
                                                     TolerancePolicy::preset_names().end())))
      ->capture_default_str()
      ->each([options](const std::string&) { options->policy_given = true; });
  command->add_option("--tol", options->overrides, "Tolerance overrides of --gpu's comparison (as dplr verify --tol)");
  command->callback([options, &selected] { selected = [options] { return run_gradcheck(*options); }; });
}

}  // namespace dplr::cli
