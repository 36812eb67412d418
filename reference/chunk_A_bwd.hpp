// Stage "A_bwd": reverse mode of stage A for one chunk (q scaled), given dA_qk, dA_qb, dA_ak, dA_ab:
//
//     dq_rd += sum_{s<=r} (dA_qk[r,s] k_sd + dA_qb[r,s] b_sd) exp(gi_rd - gi_sd)
//     da_rd += sum_{s< r} (dA_ak[r,s] k_sd + dA_ab[r,s] b_sd) exp(ge_rd - gi_sd)
//     dk_sd += sum_{r>=s} dA_qk[r,s] q_rd exp(gi_rd - gi_sd) + sum_{r>s} dA_ak[r,s] a_rd exp(ge_rd - gi_sd)
//     db_sd += the same with dA_qb and dA_ab
//
// The gradients with respect to gi and ge need no extra sums: see chunk_cumsum_bwd.hpp. `evaluation`
// matches the forward's (factored: exp(gi_r) * exp(-gi_s), which overflows float like the forward).
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct AGrads {
  Mat<S> dq, dk, da, db;
};

template <class S>
AGrads<S> chunk_A_bwd(const Mat<S>& dA_qk, const Mat<S>& dA_qb, const Mat<S>& dA_ak, const Mat<S>& dA_ab,
                      const Mat<S>& q, const Mat<S>& k, const Mat<S>& a, const Mat<S>& b, const Mat<S>& gi,
                      const Mat<S>& ge, DecayEvaluation evaluation) {
  AGrads<S> out{Mat<S>::Zero(q.rows(), q.cols()), Mat<S>::Zero(k.rows(), k.cols()), Mat<S>::Zero(a.rows(), a.cols()),
                Mat<S>::Zero(b.rows(), b.cols())};
  decayed_products_bwd<S>(dA_qk, dA_qb, q, gi, gi, k, b, Causal::Inclusive, evaluation, out.dq, out.dk, out.db);
  decayed_products_bwd<S>(dA_ak, dA_ab, a, ge, gi, k, b, Causal::Strict, evaluation, out.da, out.dk, out.db);
  return out;
}

}  // namespace dplr::chunk
