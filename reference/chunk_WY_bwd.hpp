// Stage "WY_bwd": reverse mode of stage WY for one chunk, M = A_ab_inv, given dw and du (= dv_new):
//
//     dag   = M^T dw                 (gradient of ag = a (.) exp(ge))
//     du^   = M^T du                 (gradient of A_ak v)
//     dA_ab = strictly_lower(dag w^T + du^ u^T)
//     dA_ak = strictly_lower(du^ v^T)
//     dv   += A_ak^T du^
//     da   += dag (.) exp(ge)
//
// dA_ab follows from dM = M dA_ab M: <dw, dM ag> + <du, dM A_ak v> = <M^T dw (M ag)^T + M^T du (M A_ak v)^T,
// dA_ab>, and M ag = w, M A_ak v = u are already there, so no [L, L] product with M is needed
// (fla forms dM = dw ag^T + du (A_ak v)^T and then M^T dM M^T: two more L^3 products, same value).
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct WYGrads {
  Mat<S> dA_ab, dA_ak, dv, da;
};

template <class S>
WYGrads<S> chunk_WY_bwd(const Mat<S>& A_ab_inv, const Mat<S>& A_ak, const Mat<S>& w, const Mat<S>& u,
                        const Mat<S>& v, const Mat<S>& ge, const Mat<S>& dw, const Mat<S>& du) {
  const Mat<S> dag = A_ab_inv.transpose() * dw;
  const Mat<S> du_hat = A_ab_inv.transpose() * du;
  WYGrads<S> out;
  out.dA_ab = dag * w.transpose();
  out.dA_ab.noalias() += du_hat * u.transpose();
  apply_mask<S>(out.dA_ab, Causal::Strict);
  out.dA_ak = du_hat * v.transpose();
  apply_mask<S>(out.dA_ak, Causal::Strict);
  out.dv = A_ak.transpose() * du_hat;
  out.da = dag.cwiseProduct(exp_of<S>(ge));
  return out;
}

}  // namespace dplr::chunk
