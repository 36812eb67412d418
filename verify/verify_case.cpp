#include "verify/verify_case.hpp"

#include <fmt/format.h>

#include <limits>

#include "core/error.hpp"

#include "verify/case_info.hpp"
#include "verify/compare.hpp"

namespace dplr {

DplrProblem problem_from_file(const TensorFile& file, std::string_view origin) {
  double scale = std::numeric_limits<double>::quiet_NaN();
  bool reverse = false;
  if (auto it = file.metadata.find("scale"); it != file.metadata.end()) {
    try {
      scale = std::stod(it->second);
    } catch (const std::exception&) {
      throw InputError(fmt::format("{}: metadata 'scale' = '{}' is not a number", origin, it->second));
    }
  }
  if (auto it = file.metadata.find("reverse"); it != file.metadata.end())
    reverse = it->second == "true" || it->second == "1" || it->second == "True";
  return problem_from_tensors(file.tensors, scale, reverse, origin);
}

CaseResult verify_case(const TensorFile& recorded, const TolerancePolicy& policy, const VerifyCaseOptions& o,
                       std::string_view origin, ReferenceResult* exact_out) {
  const ContractView view = to_contract(recorded, o.convention, origin);
  const TensorFile& file = view.file;
  const DplrProblem problem = problem_from_file(file, origin);
  bool has_gradients = false;
  for (auto name : kGradientNames) has_gradients = has_gradients || file.tensors.count(std::string(name));
  bool has_outputs = false;
  for (auto name : kOutputNames) has_outputs = has_outputs || file.tensors.count(std::string(name));
  if (!has_outputs && !has_gradients)
    throw InputError(fmt::format("{}: holds no output (o, ht) or gradient (dq ... dh0) to verify", origin));
  if (has_gradients && !problem.grad_o)
    throw InputError(fmt::format("{}: holds gradients but no 'do' to compute the exact ones from", origin));

  ReferenceOptions options;
  options.precision = o.precision;
  options.backward = has_gradients;
  options.threads = o.threads;
  ReferenceResult exact = o.certify ? run_certified_reference(problem, options) : run_reference(problem, options);

  CaseResult c = describe_case(problem, std::string(origin));
  for (const auto& [name, tensor] : file.tensors) c.dtypes[name] = tensor.dtype;
  if (auto it = file.metadata.find("producer"); it != file.metadata.end()) c.notes.push_back("producer: " + it->second);
  c.reference = reference_info(exact);
  ExactTensorMap expected = exact.tensors;
  exact_to_file_convention(expected, view);
  c.comparison = compare(file.tensors, expected, policy);
  c.working_dtype = working_dtype_of(file.tensors);
  name_as_file(c, view);
  if (exact_out) *exact_out = std::move(exact);
  return c;
}

}  // namespace dplr
