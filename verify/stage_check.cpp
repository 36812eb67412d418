#include "verify/stage_check.hpp"

#include <algorithm>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/problem.hpp"

namespace dplr {

const std::vector<std::string>& chunk_backward_stages() {
  static const std::vector<std::string> stages = [] {
    const std::vector<std::string> order = chunk_stage_order();
    const auto o = std::find(order.begin(), order.end(), "o");
    return std::vector<std::string>(o == order.end() ? order.end() : o + 1, order.end());
  }();
  return stages;
}

StageJudgement judge_stages(const TensorMap& kernel, const ExactTensorMap& oracle, const TolerancePolicy& policy,
                            const CompareOptions& options, const std::vector<std::string>& skip) {
  StageJudgement out;
  for (const auto& stage : chunk_stage_table()) {
    ExactTensorMap exact;
    for (const auto& t : stage.tensors) {
      if (std::find(skip.begin(), skip.end(), t) != skip.end()) continue;
      const auto it = oracle.find(t);
      if (it == oracle.end()) continue;
      if (!kernel.count(t)) out.missing.push_back(t);
      exact[t] = it->second;
    }
    for (auto& r : compare_stage(stage.stage, kernel, exact, policy, options)) out.section.results.push_back(std::move(r));
  }
  out.section.first_diverging_stage = first_diverging_stage(out.section.results);
  return out;
}

GradientJudgement judge_gradients(const TensorMap& kernel, const ExactTensorMap& exact, const TolerancePolicy& policy,
                                  const CompareOptions& options) {
  GradientJudgement out;
  TensorMap gradients;
  for (std::string_view g : kGradientNames) {
    const std::string name(g);
    if (!exact.count(name)) continue;  // dh0 without h0 where the exact side has none
    if (auto it = kernel.find(name); it != kernel.end()) gradients[name] = it->second;
    else out.missing.push_back(name);
  }
  if (gradients.empty())
    throw InputError(fmt::format("no gradient to judge: the exact side has {} of dq ... dh0, the kernel returned {}",
                                 exact.size(), kernel.size()));
  out.comparison = compare(gradients, exact, policy, options);
  return out;
}

void judge_backward_case(const TensorMap& gradients, const TensorMap* stages, const ExactTensorMap& exact,
                         const ExactTensorMap* oracle, const TolerancePolicy& policy, const CompareOptions& options,
                         CaseResult& c) {
  GradientJudgement g = judge_gradients(gradients, exact, policy, options);
  c.comparison = std::move(g.comparison);
  if (!g.missing.empty())
    c.failures.push_back(fmt::format("the kernel returned no {} (the exact reference has them)", fmt::join(g.missing, ", ")));
  if (!stages || !oracle) return;
  StageJudgement s = judge_stages(*stages, *oracle, policy, options);
  if (!s.missing.empty())
    c.failures.push_back(fmt::format("the staged run returned no {} (the stage oracles have them)", fmt::join(s.missing, ", ")));
  c.stages = std::move(s.section);
}

}  // namespace dplr
