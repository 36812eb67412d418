// Stage "WY" of the chunk form, for one chunk:
//
//     A_ab_inv = (I - A_ab)^-1        unit lower triangular (A_ab is strictly lower)
//     w = A_ab_inv (a (.) exp(ge))    [L, K]
//     u = A_ab_inv (A_ak v)           [L, V]
//
// so that the recurrence's x_r = S_{r-1}^T a_r of every token of the chunk is row r of u + w S, where S
// is the state before the chunk: x = ag S + A_ab x + A_ak v, hence (I - A_ab) x = ag S + A_ak v.
// The inverse is formed (by a unit-lower triangular solve against I) because the GPU kernels form it.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct WYResult {
  Mat<S> A_ab_inv, w, u;
};

template <class S>
WYResult<S> chunk_WY(const Mat<S>& A_ab, const Mat<S>& A_ak, const Mat<S>& a, const Mat<S>& ge, const Mat<S>& v) {
  const Eigen::Index L = A_ab.rows();
  const Mat<S> identity = Mat<S>::Identity(L, L);
  const Mat<S> i_minus_A = identity - A_ab;
  WYResult<S> out;
  out.A_ab_inv = i_minus_A.template triangularView<Eigen::UnitLower>().solve(identity);
  const Mat<S> ag = a.cwiseProduct(exp_of<S>(ge));
  out.w = out.A_ab_inv * ag;
  out.u = out.A_ab_inv * (A_ak * v);
  return out;
}

}  // namespace dplr::chunk
