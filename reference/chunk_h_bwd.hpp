// Stage "h_bwd": reverse mode of stage h for one chunk. dS' = dL/dS' is the gradient at the chunk's end
// (fla's dh of this chunk: dht for a sequence's last chunk, else the next chunk's dL/dS at its start);
// dv_new_o comes from o_bwd. With g = gi_{L-1}, kg = k (.) exp(g - gi), bg = b (.) exp(g - gi):
//
//     dv_new = dv_new_o + bg dS'                (= du: v_new = u + w S, so u receives the same gradient)
//     dw     = dv_new S^T
//     dS    += diag(exp(g)) dS' + w^T dv_new    (plus o_bwd's share: dL/dS at the chunk's start)
//     dk    += (v dS'^T) (.) exp(g - gi)
//     db    += (v_new dS'^T) (.) exp(g - gi)
//     dv    += kg dS'
//     d_chunk_decay = exp(g) (.) rowsum(S (.) dS')     (the gradient through diag(exp(g)) S)
//
// dk_h and db_h also carry the gates' gradient through kg and bg (chunk_cumsum_bwd.hpp turns them into
// dgk). This is the one sequential stage of the backward: chunk i needs dS' from chunk i+1.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct HGrads {
  Mat<S> dv_new, dw, d_state_before, dk, db, dv;
  Row<S> d_chunk_decay;
};

template <class S>
HGrads<S> chunk_h_bwd(const Mat<S>& k, const Mat<S>& b, const Mat<S>& v, const Mat<S>& gi, const Mat<S>& w,
                      const Mat<S>& v_new, const Mat<S>& state_before, const Mat<S>& d_state_after,
                      const Mat<S>& dv_new_o) {
  const Mat<S> to_end = decay_to_chunk_end<S>(gi);
  const Row<S> chunk_decay = exp_of<S>(gi.row(gi.rows() - 1));
  const Mat<S> kg = k.cwiseProduct(to_end), bg = b.cwiseProduct(to_end);
  HGrads<S> out;
  out.dv_new = dv_new_o + bg * d_state_after;
  out.dw = out.dv_new * state_before.transpose();
  out.d_state_before = chunk_decay.transpose().asDiagonal() * d_state_after;
  out.d_state_before.noalias() += w.transpose() * out.dv_new;
  const Mat<S> dkg = v * d_state_after.transpose(), dbg = v_new * d_state_after.transpose();
  out.dk = dkg.cwiseProduct(to_end);
  out.db = dbg.cwiseProduct(to_end);
  out.dv = kg * d_state_after;
  out.d_chunk_decay = state_before.cwiseProduct(d_state_after).rowwise().sum().transpose().cwiseProduct(chunk_decay);
  return out;
}

}  // namespace dplr::chunk
