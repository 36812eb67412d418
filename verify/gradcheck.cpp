#include "verify/gradcheck.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>

#include "core/error.hpp"
#include "generators/distributions.hpp"  // RandomStream: the directions
#include "reference/dispatch.hpp"
#include "reference/recurrent.hpp"
#include "reference/reference.hpp"
#include "verify/gpu_runner.hpp"

namespace dplr {

bool GradcheckResult::all_pass() const {
  return std::all_of(gradients.begin(), gradients.end(), [](const GradientCheck& g) { return !g.in_recording || g.pass; });
}

GradcheckResult gradcheck_settings(const GradcheckOptions& o, bool recorded) {
  GradcheckResult result;
  result.bits = o.precision.significand_bits();
  result.epsilon_log2 = -std::floor(result.bits / 3.0);
  result.tolerance = !std::isnan(o.tolerance) ? o.tolerance
                     : recorded                ? kRecordedGradientTolerance
                                               : std::ldexp(1.0, -result.bits / 2);
  return result;
}

GradcheckResult check_gradients(const DplrProblem& problem, const GradcheckOptions& o, const TensorMap* recorded_map,
                                const std::function<void(const GradientCheck&)>& on_gradient) {
  if (!problem.grad_o) throw InputError("gradcheck needs the upstream gradient 'do'");
  const bool is_recorded = recorded_map != nullptr;
  const Precision precision = o.precision;
  GradcheckResult result = gradcheck_settings(o, is_recorded);
  const double epsilon_log2 = result.epsilon_log2;
  const double tolerance = result.tolerance;
  // The gradients under test, rounded to double (ours are far more precise than any comparison here needs
  // in per-element mode; in directional mode ours are checked in full precision by directional_gradient_check).
  const TensorMap empty;
  const TensorMap& recorded = is_recorded ? *recorded_map : empty;
  ExactTensorMap ours;
  if (!is_recorded && o.per_element) {
    ReferenceOptions options;
    options.precision = precision;
    options.threads = o.threads;
    options.origin = o.origin;
    ours = run_reference(problem, options).tensors;
  }
  auto finite_difference = [&](const InputDirection& d) {
    return with_scalar(precision, [&]<class S>(std::type_identity<S>) {
      return central_difference<S>(problem, d, epsilon_log2, o.threads);
    });
  };

  int checked = 0;
  for (auto input : kDifferentiableInputs) {
    const Tensor* x = find_input(problem, input);
    if (!x) continue;
    const std::string grad = gradient_name(input);
    const Tensor* rec = nullptr;
    if (is_recorded) {
      auto it = recorded.find(grad);
      if (it == recorded.end()) {
        GradientCheck missing;
        missing.gradient = grad;
        missing.in_recording = false;
        result.gradients.push_back(missing);
        if (on_gradient) on_gradient(missing);
        continue;
      }
      if (it->second.shape != x->shape)
        throw InputError(fmt::format("recorded tensor '{}' has shape {}, expected {} (the shape of '{}')", grad,
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
    GradientCheck c;
    c.gradient = grad;
    c.checks = checks;
    c.finite_difference = shown_fd;
    c.backward = shown_backward;
    c.error = error;
    c.pass = error <= tolerance;
    result.gradients.push_back(c);
    if (on_gradient) on_gradient(c);
  }
  if (checked == 0) throw InputError("gradcheck: the problem has no gradient to check");
  return result;
}

namespace {
// The GPU backward kernels built in this tree. Another is one line here (a planned name that is built is no longer
// refused nor listed twice).
struct GpuBackwardKernel {
  std::string_view name;
  TensorMap (*run)(const DplrProblem& problem, int chunk_size);
};
constexpr GpuBackwardKernel kGpuBackwardKernels[] = {
    {"recurrent", [](const DplrProblem& p, int) { return run_gpu_recurrent_backward(p); }},
    {"chunk",
     [](const DplrProblem& p, int chunk_size) {
       TensorMap all = run_gpu_chunk_backward(p, chunk_size), gradients;  // the gradients, not the stage tensors
       for (std::string_view name : kGradientNames)
         if (auto it = all.find(std::string(name)); it != all.end()) gradients[it->first] = std::move(it->second);
       return gradients;
     }},
};
// Named by the CLI, not built yet: refused with that reason instead of an unknown-name error.
constexpr std::array<std::string_view, 0> kPlannedGpuBackward{};
}  // namespace

std::vector<std::string> gpu_backward_kernel_names() {
  std::vector<std::string> names;
  for (const auto& k : kGpuBackwardKernels) names.emplace_back(k.name);
  for (auto name : kPlannedGpuBackward)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.emplace_back(name);
  return names;
}

bool gpu_backward_kernel_built(std::string_view kernel) {
  return std::any_of(std::begin(kGpuBackwardKernels), std::end(kGpuBackwardKernels),
                     [&](const GpuBackwardKernel& k) { return k.name == kernel; });
}

void require_gpu_backward_kernel(std::string_view kernel) {
  if (gpu_backward_kernel_built(kernel)) return;
  for (auto name : kPlannedGpuBackward)
    if (name == kernel)
      throw InputError(fmt::format("the GPU {} backward is not built yet (no run_gpu_{}_backward in verify/gpu_runner); "
                                   "--kernel recurrent is",
                                   kernel, kernel));
  throw InputError(fmt::format("unknown GPU backward kernel '{}'", kernel));
}

TensorMap run_gpu_backward(const DplrProblem& problem, std::string_view kernel, int chunk_size) {
  require_gpu_backward_kernel(kernel);
  const GpuDevice device = gpu_device();
  if (!device.available) throw InputError(fmt::format("the GPU {} backward needs a CUDA device: {}", kernel, device.reason));
  for (const auto& k : kGpuBackwardKernels)
    if (k.name == kernel) return k.run(problem, chunk_size);
  throw InputError(fmt::format("unknown GPU backward kernel '{}'", kernel));  // not reached: required above
}

double gpu_gradient_tolerance(const DplrProblem& problem) {
  return problem.q.dtype == DType::F32 ? kGpuFp32GradientTolerance : kRecordedGradientTolerance;
}

ComparisonResult compare_with_exact_backward(const DplrProblem& problem, const TensorMap& gradients,
                                             const TolerancePolicy& policy, const Precision& precision, int threads) {
  ReferenceOptions options;
  options.precision = precision;
  options.threads = threads;
  options.origin = "gradcheck --gpu";
  const ExactTensorMap exact = run_reference(problem, options).tensors;
  CompareOptions compare_options;
  compare_options.working_dtype = problem.q.dtype;
  if (!problem.cu_seqlens.empty()) compare_options.cu_seqlens = problem.cu_seqlens;
  return compare(gradients, exact, policy, compare_options);
}

}  // namespace dplr
