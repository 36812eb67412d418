// Stage "o" of the chunk form, for one chunk (q already multiplied by scale, S the state before it):
//
//     o = A_qk v + A_qb v_new + (q (.) exp(gi)) S      [L, V]
//
// exp(gi) <= 1 for a decay.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
Mat<S> chunk_o(const Mat<S>& q, const Mat<S>& gi, const Mat<S>& v, const Mat<S>& v_new, const Mat<S>& A_qk,
               const Mat<S>& A_qb, const Mat<S>& state_before) {
  Mat<S> o = A_qk * v;
  o.noalias() += A_qb * v_new;
  o.noalias() += q.cwiseProduct(exp_of<S>(gi)) * state_before;
  return o;
}

}  // namespace dplr::chunk
