#include "verify/verify_case.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "core/error.hpp"

#include "verify/case_info.hpp"
#include "verify/compare.hpp"

namespace dplr {

namespace {

// Metadata values are strings; each must parse whole, or the case is refused (no silent default).
double metadata_scale(const TensorFile& file, std::string_view origin) {
  auto it = file.metadata.find("scale");
  if (it == file.metadata.end()) return std::numeric_limits<double>::quiet_NaN();
  const std::string& text = it->second;
  double scale = 0.0;
  std::size_t used = 0;
  try {
    scale = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || !std::isfinite(scale))
    throw InputError(fmt::format("{}: metadata 'scale' = '{}', expected a finite number (e.g. 0.125)", origin, text));
  return scale;
}

bool metadata_reverse(const TensorFile& file, std::string_view origin) {
  auto it = file.metadata.find("reverse");
  if (it == file.metadata.end()) return false;
  const std::string& text = it->second;
  if (text == "true" || text == "True" || text == "1") return true;
  if (text == "false" || text == "False" || text == "0") return false;
  throw InputError(fmt::format("{}: metadata 'reverse' = '{}', expected true, false, True, False, 1 or 0", origin, text));
}

}  // namespace

DplrProblem problem_from_file(const TensorFile& file, std::string_view origin) {
  return problem_from_tensors(file.tensors, metadata_scale(file, origin), metadata_reverse(file, origin), origin);
}

CaseResult verify_case(TensorFile recorded, const TolerancePolicy& policy, const VerifyCaseOptions& o,
                       std::string_view origin, ReferenceResult* exact_out) {
  ContractView view = to_contract(std::move(recorded), o.convention, origin);
  TensorMap& tensors = view.file.tensors;
  bool has_gradients = false;
  for (auto name : kGradientNames) has_gradients = has_gradients || tensors.count(std::string(name));
  bool has_outputs = false;
  for (auto name : kOutputNames) has_outputs = has_outputs || tensors.count(std::string(name));
  std::map<std::string, DType> dtypes;
  for (const auto& [name, tensor] : tensors) dtypes[name] = tensor.dtype;
  const std::optional<DType> working = working_dtype_of(tensors);
  // The inputs move into the problem (a training-scale recording's are gigabytes); the rest is compared.
  TensorMap inputs;
  for (auto name : kInputNames)
    if (auto node = tensors.extract(std::string(name))) inputs.insert(std::move(node));
  std::vector<std::string> input_names;
  for (const auto& [name, tensor] : inputs) input_names.push_back(name);
  const DplrProblem problem =
      problem_from_tensors(std::move(inputs), metadata_scale(view.file, origin), metadata_reverse(view.file, origin), origin);
  if (!has_outputs && !has_gradients)
    throw InputError(fmt::format("{}: holds no output (o, ht) or gradient (dq ... dh0) to verify", origin));
  if (has_gradients && !problem.grad_o)
    throw InputError(fmt::format("{}: holds gradients but no 'do' to compute the exact ones from", origin));

  ReferenceOptions options;
  options.precision = o.precision;
  options.backward = has_gradients;
  options.threads = o.threads;
  options.origin = std::string(origin);
  options.estimate = o.estimate;
  // The certified reference streams (a few sequences at a time), so a training-scale recording's expansions are
  // never all held: of each exact element the comparison reads the correctly rounded double, a decay convention's
  // dw two parts (exact_to_file_convention).
  options.kept_limbs = view.decay ? 2 : 1;
  ReferenceResult exact = o.rigorous ? run_rigorous_reference(problem, options, *o.rigorous)
                         : o.certify ? run_certified_reference(problem, options)
                                     : run_reference(problem, options);

  CaseResult c = describe_case(problem, std::string(origin));
  for (const auto& [name, dtype] : dtypes) c.dtypes[name] = dtype;
  if (auto it = view.file.metadata.find("producer"); it != view.file.metadata.end())
    c.notes.push_back("producer: " + it->second);
  c.notes.insert(c.notes.end(), exact.notes.begin(), exact.notes.end());
  c.reference = reference_info(exact);
  // Judged against the exact tensors as they are, unless the file's convention needs them converted (a copy:
  // `exact_out` receives them in the contract's names).
  std::optional<ExactTensorMap> converted;
  if (view.decay) {
    converted = exact.tensors;
    exact_to_file_convention(*converted, view);
  }
  c.comparison = compare(tensors, converted ? *converted : exact.tensors, policy,
                         {.working_dtype = working, .cu_seqlens = problem.cu_seqlens, .block_tokens = o.block_tokens,
                          .threads = o.threads});
  // The inputs were not compared: listed as before they moved into the problem.
  auto& not_compared = c.comparison.only_in_actual;
  not_compared.insert(not_compared.end(), input_names.begin(), input_names.end());
  std::sort(not_compared.begin(), not_compared.end());
  c.working_dtype = working;
  name_as_file(c, view);
  if (exact_out) *exact_out = std::move(exact);
  return c;
}

}  // namespace dplr
