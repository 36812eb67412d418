// Stage "cumsum_bwd": dgk of one chunk from the chunk's total gradients of q (scaled), k, a, b.
//
// Every place gi and ge enter the chunk form is a factor exp(+gi_r) on q_r, exp(+ge_r) on a_r, or
// exp(-gi_s) on k_s and b_s (in A_*, qg, ag, kg, bg), except the chunk end g = gi_{L-1} of stage h.
// So the derivative of L with respect to gi_rd (apart from g) is the sum of x_rd dx_rd with the sign
// of x's exponent, and the reverse cumulative sum turns those into dgk:
//
//     dgi_r = q_r (.) dq_r - k_r (.) dk_r - b_r (.) db_r      (+ dg on the last row, from h_bwd)
//     dge_r = a_r (.) da_r
//     dgk_s = sum_{r >= s} dgi_r + sum_{r > s} dge_r
//
// The same identity drives fla's chunk_A_bwd. It holds for the totals (all stages' contributions to dq,
// dk, da, db of this chunk), which is why it runs last. In floating point it subtracts products of
// similar size, the reason dgk is the touchiest gradient.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
Mat<S> chunk_cumsum_bwd(const Mat<S>& q, const Mat<S>& dq, const Mat<S>& k, const Mat<S>& dk, const Mat<S>& a,
                        const Mat<S>& da, const Mat<S>& b, const Mat<S>& db, const Row<S>& dg_last) {
  const Eigen::Index L = q.rows();
  Mat<S> dgi = q.cwiseProduct(dq) - k.cwiseProduct(dk) - b.cwiseProduct(db);
  dgi.row(L - 1) += dg_last;
  const Mat<S> dge = a.cwiseProduct(da);
  Mat<S> dgk(L, q.cols());
  for (Eigen::Index d = 0; d < q.cols(); ++d) {
    S running(0);  // sum_{r > s} (dgi_r + dge_r)
    for (Eigen::Index s = L - 1; s >= 0; --s) {
      dgk(s, d) = running + dgi(s, d);
      running += dgi(s, d);
      running += dge(s, d);
    }
  }
  return dgk;
}

}  // namespace dplr::chunk
