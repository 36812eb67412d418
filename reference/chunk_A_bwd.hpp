// Stage "A_bwd": reverse mode of stage A for one chunk (q scaled), given dA_qk, dA_qb, dA_ak, dA_ab:
//
//     dq_rd += sum_{s<=r} (dA_qk[r,s] k_sd + dA_qb[r,s] b_sd) exp(gi_rd - gi_sd)
//     da_rd += sum_{s< r} (dA_ak[r,s] k_sd + dA_ab[r,s] b_sd) exp(ge_rd - gi_sd)
//     dk_sd += sum_{r>=s} dA_qk[r,s] q_rd exp(gi_rd - gi_sd) + sum_{r>s} dA_ak[r,s] a_rd exp(ge_rd - gi_sd)
//     db_sd += the same with dA_qb and dA_ab
//     dgk_td += sum over the entries whose exponent contains gk_td (s < t <= r for A_qk, A_qb;
//               s < t < r for A_ak, A_ab) of the entry's term dA[r,s] x_rd y_sd exp(...)
//
// dgk here is the A stage's own share of the gate gradient, formed from the spanning entries only (see
// decayed_products_bwd in chunk_common.hpp); chunk_cumsum_bwd adds the other stages' shares.
// `evaluation` matches the forward's (factored: exp(gi_r) * exp(-gi_s), which overflows float too).
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct AGrads {
  Mat<S> dq, dk, da, db, dgk;
};

template <class S>
AGrads<S> chunk_A_bwd(const Mat<S>& dA_qk, const Mat<S>& dA_qb, const Mat<S>& dA_ak, const Mat<S>& dA_ab,
                      const Mat<S>& q, const Mat<S>& k, const Mat<S>& a, const Mat<S>& b, const Mat<S>& gi,
                      DecayEvaluation evaluation) {
  const Eigen::Index L = q.rows(), K = q.cols();
  const ChunkDecay<S> decay(gi, evaluation);  // recomputed, as a kernel would, rather than kept per chunk
  AGrads<S> out{Mat<S>::Zero(L, K), Mat<S>::Zero(L, K), Mat<S>::Zero(L, K), Mat<S>::Zero(L, K), Mat<S>::Zero(L, K)};
  decayed_products_bwd<S>(dA_qk, dA_qb, q, decay, k, b, Causal::Inclusive, out.dq, out.dk, out.db, out.dgk);
  decayed_products_bwd<S>(dA_ak, dA_ab, a, decay, k, b, Causal::Strict, out.da, out.dk, out.db, out.dgk);
  return out;
}

}  // namespace dplr::chunk
