// Stage "A" of the chunk form, for one chunk (q already multiplied by scale):
//
//     A_qk[r,s] = sum_d q_rd k_sd exp(gi_rd - gi_sd),   s <= r
//     A_qb[r,s] = sum_d q_rd b_sd exp(gi_rd - gi_sd),   s <= r
//     A_ak[r,s] = sum_d a_rd k_sd exp(ge_rd - gi_sd),   s <  r
//     A_ab[r,s] = sum_d a_rd b_sd exp(ge_rd - gi_sd),   s <  r
//
// Each is [L, L], zero above its mask. `evaluation` chooses exp of the difference (stable) or the
// factored exp(gi_r) * exp(-gi_s) of tensor-core kernels (overflows float past a summed decay of ~-88).
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct AResult {
  Mat<S> qk, qb, ak, ab;
};

template <class S>
AResult<S> chunk_A(const Mat<S>& q, const Mat<S>& k, const Mat<S>& a, const Mat<S>& b, const Mat<S>& gi,
                   const Mat<S>& ge, DecayEvaluation evaluation) {
  AResult<S> out;
  decayed_products<S>(q, gi, gi, k, b, Causal::Inclusive, evaluation, out.qk, out.qb);
  decayed_products<S>(a, ge, gi, k, b, Causal::Strict, evaluation, out.ak, out.ab);
  return out;
}

}  // namespace dplr::chunk
