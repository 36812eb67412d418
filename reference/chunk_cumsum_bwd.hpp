// Stage "cumsum_bwd": dgk of one chunk, from every stage's share of the gates' gradient. gk_t enters
// through the cumulative sums: exp(+gi_r) on q_r (stage o, r >= t), exp(+ge_r) on a_r (stage WY, r > t),
// exp(g - gi_r) on k_r and b_r (stage h, r < t), exp(g) on the state (stage h, every t), and the A
// entries whose exponent spans t (stage A, formed in chunk_A_bwd). So, per key channel:
//
//     dgk_t = dgk_A_t + sum_{r >= t} q_r dq_o_r + sum_{r > t} a_r da_wy_r
//                     + sum_{r < t} (k_r dk_h_r + b_r db_h_r) + exp(g) rowsum(S (.) dS')
//
// with q scaled, dq_o the o stage's dq (wrt scaled q), da_wy the WY stage's da, dk_h, db_h the h stage's.
// Every term carries the decay it differentiates, so nothing cancels: under strong decay (gk ~ -30) dgk
// is as accurate as the other gradients.
//
// GateGradient::Identity is fla's formulation (chunk_A_bwd + chunk_dplr_bwd_dgk_kernel): with the
// totals dq, dk, da, db of the chunk,
//
//     dgi_r = q_r dq_r - k_r dk_r - b_r db_r  (+ exp(g) rowsum(S (.) dS') + sum_r (k dk_h + b db_h) on r = L-1)
//     dge_r = a_r da_r,     dgk_t = sum_{r >= t} dgi_r + sum_{r > t} dge_r
//
// equal in exact arithmetic, but the entries that do not span t (the undecayed diagonal of A_qk above
// all) enter with both signs and cancel: the relative error of dgk grows like exp(|gk|) (about 2^43 at
// gk = -30). Kept so the float study can show it.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

// One chunk's gradient shares, by stage (q is the scaled q; dq_* are gradients wrt it).
template <class S>
struct GateGradientShares {
  const Mat<S>&q, &k, &a, &b;
  const Mat<S>&dq_o, &dq_A;
  const Mat<S>&da_wy, &da_A;
  const Mat<S>&dk_h, &dk_A;
  const Mat<S>&db_h, &db_A;
  const Mat<S>& dgk_A;
  const Row<S>& d_chunk_decay;
};

template <class S>
Mat<S> chunk_cumsum_bwd(const GateGradientShares<S>& g, GateGradient formulation) {
  const Eigen::Index L = g.q.rows(), K = g.q.cols();
  Mat<S> dgk(L, K);
  if (formulation == GateGradient::Direct) {
    const Mat<S> from_o = g.q.cwiseProduct(g.dq_o), from_wy = g.a.cwiseProduct(g.da_wy);
    const Mat<S> from_h = g.k.cwiseProduct(g.dk_h) + g.b.cwiseProduct(g.db_h);
    for (Eigen::Index d = 0; d < K; ++d) {
      S later(0), earlier(0);  // sum_{r >= t} from_o + sum_{r > t} from_wy;  sum_{r < t} from_h
      for (Eigen::Index t = L - 1; t >= 0; --t) {
        later += from_o(t, d);
        dgk(t, d) = g.dgk_A(t, d) + later + g.d_chunk_decay(d);
        later += from_wy(t, d);
      }
      for (Eigen::Index t = 0; t < L; ++t) {
        dgk(t, d) += earlier;
        earlier += from_h(t, d);
      }
    }
    return dgk;
  }
  const Mat<S> dq = g.dq_o + g.dq_A, dk = g.dk_h + g.dk_A, da = g.da_wy + g.da_A, db = g.db_h + g.db_A;
  Mat<S> dgi = g.q.cwiseProduct(dq) - g.k.cwiseProduct(dk) - g.b.cwiseProduct(db);
  dgi.row(L - 1) += g.d_chunk_decay + (g.k.cwiseProduct(g.dk_h) + g.b.cwiseProduct(g.db_h)).colwise().sum();
  const Mat<S> dge = g.a.cwiseProduct(da);
  for (Eigen::Index d = 0; d < K; ++d) {
    S running(0);  // sum_{r > t} (dgi_r + dge_r)
    for (Eigen::Index t = L - 1; t >= 0; --t) {
      dgk(t, d) = running + dgi(t, d);
      running += dgi(t, d);
      running += dge(t, d);
    }
  }
  return dgk;
}

}  // namespace dplr::chunk
