#include "verify/compare.hpp"

#include <algorithm>
#include <span>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/parallel.hpp"
#include "reference/problem.hpp"

namespace dplr {
namespace {

std::int64_t numel_of(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

template <class Map>
std::vector<std::string> names_of(const Map& map) {
  std::vector<std::string> names;
  for (const auto& [name, tensor] : map) names.push_back(name);
  return names;
}

void check_actual(const std::string& name, const Tensor& tensor) {
  if (static_cast<std::int64_t>(tensor.values.size()) != tensor.numel())
    throw InputError(fmt::format("tensor '{}': shape {} needs {} values, the tensor holds {}", name,
                                 shape_string(tensor.shape), tensor.numel(), tensor.values.size()));
}

void check_shapes(const std::string& name, const std::vector<std::int64_t>& actual,
                  const std::vector<std::int64_t>& expected, std::string_view expected_name) {
  if (actual != expected)
    throw InputError(fmt::format("tensor '{}': the actual tensor has shape {}, the {} one has shape {}", name,
                                 shape_string(actual), expected_name, shape_string(expected)));
}

// The first part of every element's expansion: the element correctly rounded to double (exact_tensor.hpp). The
// parts themselves where each element has one; else copied into `storage`.
std::span<const double> rounded_values(const std::string& name, const ExactTensor& exact, std::vector<double>& storage) {
  const std::int64_t numel = numel_of(exact.shape);
  if (exact.limbs < 1 || static_cast<std::int64_t>(exact.parts.size()) != numel * exact.limbs)
    throw InputError(fmt::format("exact tensor '{}': shape {} with {} limbs needs {} parts, it holds {}", name,
                                 shape_string(exact.shape), exact.limbs, numel * exact.limbs, exact.parts.size()));
  if (exact.limbs == 1) return exact.parts;
  storage.resize(static_cast<std::size_t>(numel));
  for (std::int64_t i = 0; i < numel; ++i) storage[i] = exact.value(i);
  return storage;
}

DType judged_dtype(DType storage, const std::optional<DType>& working, FloorBasis basis) {
  if (basis == FloorBasis::Storage || !working) return storage;
  return lower_precision(storage, *working);
}

std::vector<std::int64_t> cu_seqlens_of(const std::optional<std::vector<std::int64_t>>& given,
                                        const TensorMap& tensors) {
  if (given) return *given;
  const auto it = tensors.find("cu_seqlens");
  if (it == tensors.end()) return {};
  std::vector<std::int64_t> cu;
  for (double x : it->second.values) cu.push_back(static_cast<std::int64_t>(x));
  return cu;
}

TensorResult judge_tensor(const std::string& name, const Tensor& actual, TensorMetrics metrics, DType judged_as,
                          const TolerancePolicy& policy, std::string_view expected_name) {
  TensorResult result;
  result.name = name;
  result.dtype = actual.dtype;
  result.judged_as = judged_as;
  result.metrics = std::move(metrics);
  result.tolerance = policy.resolve(name, judged_as);
  const Judgement judgement = judge(result.metrics, result.tolerance, expected_name);
  result.verdict = judgement.verdict;
  result.reason = judgement.reason;
  return result;
}

std::vector<std::string> shared_names(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> shared;
  std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(shared));
  return shared;
}

std::vector<std::string> difference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::string> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

// Sorted names of both sides (std::map keeps them sorted), the shared ones in contract order, compared on up to
// `threads` threads at once (each tensor alone on one; parallel_for rethrows the first error in contract order).
template <class ExpectedMap>
ComparisonResult compare_names(const TensorMap& actual, const ExpectedMap& expected, std::string_view expected_name,
                               bool require_shared, int threads, auto&& compare_one) {
  const auto actual_names = names_of(actual), expected_names = names_of(expected);
  const auto shared = shared_names(actual_names, expected_names);
  if (shared.empty() && require_shared)
    throw InputError(fmt::format("no tensor to compare: the actual tensors are [{}], the {} ones are [{}]",
                                 fmt::join(actual_names, ", "), expected_name, fmt::join(expected_names, ", ")));
  ComparisonResult out;
  out.only_in_actual = difference(actual_names, expected_names);
  out.only_in_expected = difference(expected_names, actual_names);
  const std::vector<std::string> names = contract_order(shared);
  out.tensors.resize(names.size());
  parallel_for(
      static_cast<std::int64_t>(names.size()), threads, [&](std::int64_t i) { out.tensors[i] = compare_one(names[i]); },
      Progress::None);
  for (const auto& result : out.tensors) out.verdict = worst_verdict(out.verdict, result.verdict);
  return out;
}

ComparisonResult compare_exact(const TensorMap& actual, const ExactTensorMap& exact, const TolerancePolicy& policy,
                               const CompareOptions& options, bool require_shared) {
  const auto working = options.working_dtype ? options.working_dtype : working_dtype_of(actual);
  const auto cu_seqlens = cu_seqlens_of(options.cu_seqlens, actual);
  return compare_names(actual, exact, "exact", require_shared, options.threads, [&](const std::string& name) {
    const Tensor& a = actual.at(name);
    const ExactTensor& e = exact.at(name);
    check_actual(name, a);
    check_shapes(name, a.shape, e.shape, "exact");
    const DType judged_as = judged_dtype(a.dtype, working, policy.floor_basis());
    std::optional<double> conditioning;
    if (options.conditioning)
      if (auto it = options.conditioning->find(name); it != options.conditioning->end()) conditioning = it->second;
    std::vector<double> storage, implementation_storage;
    const auto expected = rounded_values(name, e, storage);
    std::optional<double> implementation_misrounded;
    if (options.implementation && (a.dtype == DType::BF16 || a.dtype == DType::F16))
      if (auto it = options.implementation->find(name); it != options.implementation->end() && it->second.shape == e.shape)
        implementation_misrounded =
            misrounded_fraction_of(rounded_values(name, it->second, implementation_storage), expected, a.dtype);
    auto metrics = compute_metrics(a.values, expected, a.dtype, a.shape,
                                   {.floor_dtype = judged_as,
                                    .layout = layout_for(name, a.shape, cu_seqlens, options.block_tokens),
                                    .conditioning_rel_rmse = conditioning,
                                    .implementation_misrounded_fraction = implementation_misrounded});
    return judge_tensor(name, a, std::move(metrics), judged_as, policy, "exact");
  });
}

}  // namespace

ComparisonResult compare(const TensorMap& actual, const ExactTensorMap& exact, const TolerancePolicy& policy,
                         const CompareOptions& options) {
  return compare_exact(actual, exact, policy, options, /*require_shared=*/true);
}

ComparisonResult compare_diff(const TensorMap& a, const TensorMap& b, const TolerancePolicy& policy,
                              const DiffOptions& options) {
  const auto working = options.working_dtype ? options.working_dtype : working_dtype_of(a);
  const auto cu_seqlens = cu_seqlens_of(options.cu_seqlens, a);
  return compare_names(a, b, "B", /*require_shared=*/true, /*threads=*/1, [&](const std::string& name) {
    const Tensor& actual = a.at(name);
    const Tensor& expected = b.at(name);
    check_actual(name, actual);
    check_actual(name, expected);
    check_shapes(name, actual.shape, expected.shape, "B");
    const DType judged_as = judged_dtype(actual.dtype, working, policy.floor_basis());
    // Rounding B to the judged dtype measures a floor only where B holds more bits than that dtype.
    const bool b_more_precise = dtype_is_float(expected.dtype) && dtype_is_float(judged_as) &&
                                dtype_significand_bits(expected.dtype) > dtype_significand_bits(judged_as);
    auto metrics = compute_diff_metrics(
        actual.values, expected.values, actual.dtype, actual.shape,
        {.floor_dtype = judged_as,
         .compute_floor = true,
         .floor_source = b_more_precise ? FloorSource::Measured : FloorSource::Nominal,
         .layout = layout_for(name, actual.shape, cu_seqlens, options.block_tokens),
         .expected_is_exact = false});
    return judge_tensor(name, actual, std::move(metrics), judged_as, policy, "B");
  });
}

std::vector<StageResult> compare_stage(std::string_view stage, const TensorMap& actual, const ExactTensorMap& exact,
                                       const TolerancePolicy& policy, const CompareOptions& options) {
  std::vector<StageResult> out;
  for (auto& result : compare_exact(actual, exact, policy, options, /*require_shared=*/false).tensors)
    out.push_back({std::string(stage), std::move(result)});
  return out;
}

std::optional<std::string> first_diverging_stage(const std::vector<StageResult>& results) {
  for (const auto& r : results)
    if (r.result.verdict != Verdict::Pass) return r.stage;
  return std::nullopt;
}

std::optional<DType> working_dtype_of(const TensorMap& tensors) {
  std::optional<DType> lowest;
  auto consider = [&](const Tensor& t) {
    if (!dtype_is_float(t.dtype)) return;
    lowest = lowest ? lower_precision(*lowest, t.dtype) : t.dtype;
  };
  for (std::string_view name : {"q", "k", "v", "a", "b"})
    if (auto it = tensors.find(std::string(name)); it != tensors.end()) consider(it->second);
  if (lowest) return lowest;
  for (const auto& [name, tensor] : tensors) consider(tensor);
  return lowest;
}

std::optional<TensorLayout> layout_for(std::string_view name, const std::vector<std::int64_t>& shape,
                                       const std::vector<std::int64_t>& cu_seqlens, std::int64_t block_tokens) {
  TensorLayout layout;
  layout.block_tokens = block_tokens;
  for (std::string_view state : {"h0", "ht", "dht", "dh0"})
    if (name == state) {
      if (shape.size() != 4) return std::nullopt;
      layout.kind = TensorLayout::Kind::States;
      return layout;
    }
  if (name == "h" || name == "dh") {
    if (shape.size() != 5) return std::nullopt;
    layout.kind = TensorLayout::Kind::ChunkStates;
    return layout;
  }
  if (shape.size() != 4) return std::nullopt;
  if (!cu_seqlens.empty() && shape[0] == 1 && cu_seqlens.back() == shape[1]) layout.cu_seqlens = cu_seqlens;
  return layout;
}

std::vector<std::string> contract_order(std::vector<std::string> names) {
  // The contract's outputs then gradients (reference/problem.hpp); any other name ranks after them.
  auto rank = [](const std::string& name) {
    std::size_t r = 0;
    for (auto list : {std::span<const std::string_view>(kOutputNames), std::span<const std::string_view>(kGradientNames)})
      for (auto known : list) {
        if (known == name) return r;
        ++r;
      }
    return r;
  };
  std::sort(names.begin(), names.end(), [&](const std::string& x, const std::string& y) {
    const auto rx = rank(x), ry = rank(y);
    return rx != ry ? rx < ry : x < y;
  });
  return names;
}

}  // namespace dplr
