// RapidCheck generators for DPLR case specs: shapes, varlen splits, h0 present or not, dtype,
// distribution and seed. Sizes grow with RapidCheck's size parameter and shrink toward the smallest
// failing case (B = H = 1, short T, K = V = 1, no varlen, no h0).
#pragma once
#include <rapidcheck.h>

#include <algorithm>

#include "generators/distributions.hpp"

namespace dplr {

struct CaseLimits {
  std::int64_t max_B = 2, max_T = 12, max_H = 2, max_K = 5, max_V = 5;
  bool allow_varlen = true;
  bool allow_reverse = true;
  std::vector<DType> dtypes{DType::F64, DType::F32, DType::F16, DType::BF16};
};

// Splits T into 1..4 sequences (some may be empty, as packing allows).
inline rc::Gen<std::vector<std::int64_t>> gen_cu_seqlens(std::int64_t T) {
  return rc::gen::exec([T] {
    const auto cuts = *rc::gen::inRange<std::int64_t>(0, 4);
    std::vector<std::int64_t> cu{0};
    for (std::int64_t c = 0; c < cuts; ++c) cu.push_back(*rc::gen::inRange<std::int64_t>(0, T + 1));
    cu.push_back(T);
    std::sort(cu.begin(), cu.end());
    return cu;
  });
}

inline rc::Gen<CaseSpec> gen_case_spec(CaseLimits limits = {}) {
  return rc::gen::exec([limits] {
    CaseSpec spec;
    const bool varlen = limits.allow_varlen && *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
    spec.shape.B = varlen ? 1 : *rc::gen::inRange<std::int64_t>(1, limits.max_B + 1);
    spec.shape.T = *rc::gen::inRange<std::int64_t>(1, limits.max_T + 1);
    spec.shape.H = *rc::gen::inRange<std::int64_t>(1, limits.max_H + 1);
    spec.shape.K = *rc::gen::inRange<std::int64_t>(1, limits.max_K + 1);
    spec.shape.V = *rc::gen::inRange<std::int64_t>(1, limits.max_V + 1);
    if (varlen) spec.cu_seqlens = *gen_cu_seqlens(spec.shape.T);
    spec.dtype = *rc::gen::elementOf(limits.dtypes);
    spec.distribution = *rc::gen::elementOf(distribution_names());
    spec.seed = *rc::gen::arbitrary<std::uint32_t>();
    spec.with_h0 = *rc::gen::arbitrary<bool>();
    spec.reverse = limits.allow_reverse && *rc::gen::weightedElement<bool>({{3, false}, {1, true}});
    return spec;
  });
}

}  // namespace dplr

namespace rc {
template <>
struct Arbitrary<dplr::CaseSpec> {
  static Gen<dplr::CaseSpec> arbitrary() { return dplr::gen_case_spec(); }
};
}  // namespace rc
