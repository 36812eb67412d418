#include "verify/case_info.hpp"

#include <fmt/format.h>

namespace dplr {

CaseResult describe_case(const DplrProblem& p, std::string id) {
  CaseResult c;
  c.id = std::move(id);
  c.shape = CaseShape{p.shape.B, p.shape.T, p.shape.H, p.shape.K, p.shape.V, p.num_sequences()};
  for (auto name : kInputNames)
    if (const Tensor* t = find_input(p, name)) c.dtypes[std::string(name)] = t->dtype;
  dplr::CaseOptions options;
  options.scale = p.scale;
  options.reverse = p.reverse;
  options.cu_seqlens = !p.cu_seqlens.empty();
  options.h0 = p.h0.has_value();
  options.dht = p.grad_ht.has_value();
  options.backward = p.grad_o.has_value();
  c.options = options;
  std::int64_t growth = 0;
  for (double g : p.gk.values) growth += g > 0.0;
  if (growth)
    c.notes.push_back(fmt::format("gk > 0 in {} element(s): growth, outside the intended domain (gk <= 0)", growth));
  return c;
}

ReferenceInfo reference_info(const ReferenceResult& r) {
  ReferenceInfo info;
  info.precision = r.precision.name();
  info.significand_bits = r.precision.significand_bits();
  if (r.estimated_against) {
    info.estimated_against = r.estimated_against->name();
    info.estimate_method = std::string(estimate_method_name(r.estimate_method));
  }
  info.estimated_bits = r.estimated_bits;
  info.proven_bits = r.proven_bits;
  info.seconds = r.seconds;
  return info;
}

}  // namespace dplr
