// `dplr gradcheck`: finite differences at high precision against a backward.
//
// The backward checked is ours (the analytic BPTT of reference/recurrent.hpp) or, with --recorded, the
// gradients a file holds (dq ... dh0 from any kernel), so a foreign backward can be checked without ours.
// Directional mode compares <g, d> with (L(x + eps d) - L(x - eps d)) / 2 eps for random normal d per
// input and reports sqrt(sum (fd - <g,d>)^2 / sum fd^2) over the directions, an estimate of the gradient's
// relative RMSE; per-element mode (small cases) compares every element and reports the worst relative
// error (floored at the gradient's RMS). eps = 2^(-bits/3) of the working precision.
#include <fmt/format.h>

#include <cmath>
#include <cstdio>
#include <limits>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "reference/dispatch.hpp"
#include "reference/recurrent.hpp"
#include "reference/reference.hpp"

namespace dplr::cli {
namespace {

struct GradcheckOptions {
  CaseOptions input;
  std::string precision = "qd";
  int directions = 4;
  bool per_element = false;
  bool recorded = false;
  double tolerance = std::numeric_limits<double>::quiet_NaN();
  int threads = 0;
  std::int64_t max_elements = 4096;
};

constexpr double kRecordedTolerance = 1e-2;

int run_gradcheck(const GradcheckOptions& o) {
  if (o.recorded && o.input.file.empty())
    throw InputError("gradcheck --recorded needs a FILE holding the recorded gradients (dq ... dh0)");
  std::string description;
  const DplrProblem problem = load_case(o.input, &description);
  if (!problem.grad_o) throw InputError(fmt::format("{}: gradcheck needs the upstream gradient 'do'", description));
  const Precision precision = Precision::parse(o.precision);
  const int bits = precision.significand_bits();
  const double epsilon_log2 = -std::floor(bits / 3.0);
  const double tolerance = !std::isnan(o.tolerance) ? o.tolerance : o.recorded ? kRecordedTolerance : std::ldexp(1.0, -bits / 2);

  // The gradients under test, rounded to double (ours are far more precise than any comparison here needs
  // in per-element mode; in directional mode ours are checked in full precision by directional_gradient_check).
  TensorMap recorded;
  if (o.recorded) recorded = read_tensor_file(o.input.file).tensors;
  ExactTensorMap ours;
  if (!o.recorded && o.per_element) {
    ReferenceOptions options;
    options.precision = precision;
    options.threads = o.threads;
    options.origin = description;
    ours = run_reference(problem, options).tensors;
  }
  auto finite_difference = [&](const InputDirection& d) {
    return with_scalar(precision, [&]<class S>(std::type_identity<S>) {
      return central_difference<S>(problem, d, epsilon_log2, o.threads);
    });
  };

  fmt::print("dplr gradcheck: {} at {} ({} bits), eps = 2^{}, {} backward, {} mode, tolerance {:.1e}\n", description,
             precision.name(), bits, epsilon_log2, o.recorded ? "recorded" : "our analytic",
             o.per_element ? "per-element" : "directional", tolerance);
  fmt::print("{:<5} {:>12} {:>24} {:>24} {:>12}  {}\n", "grad", "checks", "finite difference", "backward",
             "rel error", "verdict");
  std::fflush(stdout);
  bool all_pass = true;
  int checked = 0;
  for (auto input : kDifferentiableInputs) {
    const Tensor* x = find_input(problem, input);
    if (!x) continue;
    const std::string grad = gradient_name(input);
    const Tensor* rec = nullptr;
    if (o.recorded) {
      auto it = recorded.find(grad);
      if (it == recorded.end()) {
        fmt::print("{:<5} {:>12}  not in the file, skipped\n", grad, "-");
        continue;
      }
      if (it->second.shape != x->shape)
        throw InputError(fmt::format("{}: tensor '{}' has shape {}, expected {} (the shape of '{}')", o.input.file, grad,
                                     shape_string(it->second.shape), shape_string(x->shape), input));
      rec = &it->second;
    }
    double error = 0.0, shown_fd = 0.0, shown_backward = 0.0;
    int checks = 0;
    if (o.per_element) {
      if (x->numel() > o.max_elements)
        throw InputError(fmt::format("per-element gradcheck of '{}' would take {} finite differences (limit {}); use a "
                                     "smaller case, directional mode, or --max-elements",
                                     input, x->numel(), o.max_elements));
      const std::vector<double> g = rec ? rec->values : ours.at(grad).rounded();
      double rms = 0.0;
      for (double v : g) rms += v * v;
      rms = std::sqrt(rms / std::max<std::size_t>(1, g.size()));
      InputDirection d;
      auto& unit = d.by_name[std::string(input)];
      unit.assign(x->values.size(), 0.0);
      for (std::size_t i = 0; i < unit.size(); ++i) {
        unit[i] = 1.0;
        const double fd = finite_difference(d);
        unit[i] = 0.0;
        const double relative = std::fabs(fd - g[i]) / std::max({std::fabs(fd), rms, 1e-300});
        if (relative >= error) error = relative, shown_fd = fd, shown_backward = g[i];
        ++checks;
      }
    } else {
      // Over m random normal directions d_i: sqrt(sum (fd_i - b_i)^2) / sqrt(sum fd_i^2), with b_i = <g, d_i>.
      // E[<e, d>^2] = |e|^2 for d ~ N(0, I), so this estimates |g - g_exact| / |g_exact|, the gradient's
      // relative RMSE, without the heavy tails of one direction's ratio <e, d> / <g, d>.
      double squared_error = 0.0, squared_fd = 0.0;
      for (int r = 0; r < o.directions; ++r) {
        RandomStream random(0x9e3779b97f4a7c15ull * (r + 1) + checked);
        InputDirection d;
        auto& values = d.by_name[std::string(input)];
        for (std::size_t i = 0; i < x->values.size(); ++i) values.push_back(random.normal());
        double fd, backward;
        if (rec) {
          fd = finite_difference(d);
          long double dot = 0.0L;
          for (std::size_t i = 0; i < values.size(); ++i) dot += static_cast<long double>(rec->values[i]) * values[i];
          backward = static_cast<double>(dot);
          squared_error += (fd - backward) * (fd - backward);
        } else {
          // Ours is checked in full precision: the difference is formed before rounding to double.
          const DirectionalCheck c = with_scalar(precision, [&]<class S>(std::type_identity<S>) {
            return directional_gradient_check<S>(problem, d, epsilon_log2, o.threads);
          });
          fd = c.finite_difference, backward = c.analytic;
          squared_error += std::pow(c.relative_difference * c.analytic, 2);
        }
        squared_fd += fd * fd;
        if (r == 0) shown_fd = fd, shown_backward = backward;
        ++checks;
      }
      error = squared_fd > 0.0 ? std::sqrt(squared_error / squared_fd) : std::sqrt(squared_error);
    }
    ++checked;
    const bool pass = error <= tolerance;
    all_pass = all_pass && pass;
    fmt::print("{:<5} {:>12} {:>24.16e} {:>24.16e} {:>12.2e}  {}\n", grad, checks, shown_fd, shown_backward, error,
               pass ? "pass" : "FAIL");
    std::fflush(stdout);  // one line per gradient as it is done, also into a pipe
  }
  if (checked == 0) throw InputError(fmt::format("{}: no gradient to check", description));
  fmt::print("{}\n", all_pass ? "all gradients within tolerance" : "some gradients exceed the tolerance");
  return all_pass ? 0 : 1;
}

}  // namespace

void add_gradcheck_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<GradcheckOptions>();
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
                                  kRecordedTolerance))
      ->check(finite_positive());
  command->add_option("--max-elements", options->max_elements, "Per-element limit per input")
      ->check(at_least(1))
      ->capture_default_str();
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->callback([options, &selected] { selected = [options] { return run_gradcheck(*options); }; });
}

}  // namespace dplr::cli
