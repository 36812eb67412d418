// Stage "A" of the chunk form, for one chunk (q already multiplied by scale):
//
//     A_qk[r,s] = sum_d q_rd k_sd exp(gi_rd - gi_sd),   s <= r
//     A_qb[r,s] = sum_d q_rd b_sd exp(gi_rd - gi_sd),   s <= r
//     A_ak[r,s] = sum_d a_rd k_sd exp(ge_rd - gi_sd),   s <  r
//     A_ab[r,s] = sum_d a_rd b_sd exp(ge_rd - gi_sd),   s <  r
//
// Each is [L, L], zero above its mask. Since ge_r = gi_{r-1}, all four read one table of
// exp(gi_r - gi_s) (ChunkDecay in chunk_common.hpp). `evaluation` chooses exp of the difference (stable)
// or the factored exp(gi_r) * exp(-gi_s) of tensor-core kernels (overflows float past a summed decay of
// about -88.72).
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct AResult {
  Mat<S> qk, qb, ak, ab;
};

template <class S>
AResult<S> chunk_A(const Mat<S>& q, const Mat<S>& k, const Mat<S>& a, const Mat<S>& b, const Mat<S>& gi,
                   DecayEvaluation evaluation) {
  const ChunkDecay<S> decay(gi, evaluation);
  AResult<S> out;
  decayed_products<S>(q, decay, k, b, Causal::Inclusive, out.qk, out.qb);
  decayed_products<S>(a, decay, k, b, Causal::Strict, out.ak, out.ab);
  return out;
}

}  // namespace dplr::chunk
