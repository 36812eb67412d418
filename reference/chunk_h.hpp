// Stage "h" of the chunk form: one step of the state across one chunk. S is the state before the chunk
// (K x V), g = gi_{L-1} the chunk's summed decay:
//
//     v_new = u + w S                                  [L, V]; row r is the recurrence's x_r = S_{r-1}^T a_r
//     S'    = diag(exp(g)) S + kg^T v + bg^T v_new     kg = k (.) exp(g - gi),  bg = b (.) exp(g - gi)
//
// exp(g - gi_r) <= 1 for a decay, so this stage needs no special evaluation. The driver keeps every S
// (fla's h: the state before each chunk) and the last S' (ht).
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct HStep {
  Mat<S> v_new, state_after;
};

template <class S>
HStep<S> chunk_h(const Mat<S>& k, const Mat<S>& b, const Mat<S>& v, const Mat<S>& gi, const Mat<S>& w,
                 const Mat<S>& u, const Mat<S>& state_before) {
  const Mat<S> to_end = decay_to_chunk_end<S>(gi);
  const Row<S> chunk_decay = exp_of<S>(gi.row(gi.rows() - 1));
  HStep<S> out;
  out.v_new = u + w * state_before;
  out.state_after = chunk_decay.transpose().asDiagonal() * state_before;
  out.state_after.noalias() += k.cwiseProduct(to_end).transpose() * v;
  out.state_after.noalias() += b.cwiseProduct(to_end).transpose() * out.v_new;
  return out;
}

}  // namespace dplr::chunk
