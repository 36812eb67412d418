// Stage "o_bwd": reverse mode of stage o for one chunk, given dO = do (rows of the chunk):
//
//     dA_qk = tril(dO v^T),  dA_qb = tril(dO v_new^T)          (diagonal included)
//     dq   += (dO S^T) (.) exp(gi)          (q is the scaled q; the driver multiplies by scale at the end)
//     dv   += A_qk^T dO
//     dv_new += A_qb^T dO                   (the part of dv_new local to the chunk; h_bwd adds the rest)
//     dS   += (q (.) exp(gi))^T dO          (this chunk's share of dL/dS at its start)
//
// Needs nothing from later chunks, so every chunk's o_bwd can run at once.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct OGrads {
  Mat<S> dA_qk, dA_qb, dq, dv, dv_new, d_state_before;
};

template <class S>
OGrads<S> chunk_o_bwd(const Mat<S>& d_o, const Mat<S>& q, const Mat<S>& gi, const Mat<S>& v, const Mat<S>& v_new,
                      const Mat<S>& A_qk, const Mat<S>& A_qb, const Mat<S>& state_before) {
  const Mat<S> exp_gi = exp_of<S>(gi);
  OGrads<S> out;
  out.dA_qk = d_o * v.transpose();
  out.dA_qb = d_o * v_new.transpose();
  apply_mask<S>(out.dA_qk, Causal::Inclusive);
  apply_mask<S>(out.dA_qb, Causal::Inclusive);
  out.dq = (d_o * state_before.transpose()).cwiseProduct(exp_gi);
  out.dv = A_qk.transpose() * d_o;
  out.dv_new = A_qb.transpose() * d_o;
  out.d_state_before = q.cwiseProduct(exp_gi).transpose() * d_o;
  return out;
}

}  // namespace dplr::chunk
