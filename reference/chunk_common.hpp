// What the chunk-form stages share: Eigen matrices over the scalar type S (one chunk's tokens are the
// rows), the causal masks, elementwise exp, and the decayed products that the A stage (forward and
// backward) is made of:
//
//     P[r,s] = sum_d x_rd y_sd exp(gi_{r'}d - gi_sd)     r' = r, s <= r (Inclusive: A_qk, A_qb)
//                                                        r' = r-1, s < r (Strict: A_ak, A_ab; ge_r = gi_{r-1})
//
// The decay factor exp(gi_r - gi_s), s <= r, is evaluated once per chunk as exp of the difference (the
// stable way: the exponent is <= 0 for a decay) or factored as exp(gi_r) * exp(-gi_s), which is what a
// tensor-core kernel wants and what overflows float once -gi passes about 88.72 (ln FLT_MAX).
// See docs/chunk-backward.md.
#pragma once
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "reference/chunk_stages.hpp"

namespace dplr::chunk {

using dplr::DecayEvaluation;
using dplr::GateGradient;

template <class S>
using Mat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic>;
template <class S>
using Row = Eigen::Matrix<S, 1, Eigen::Dynamic>;

enum class Causal { Inclusive, Strict };  // s <= r, or s < r

inline bool in_mask(Eigen::Index r, Eigen::Index s, Causal causal) {
  return causal == Causal::Inclusive ? s <= r : s < r;
}

// Zeroes the entries the causal mask excludes (above the diagonal, and the diagonal itself if Strict).
template <class S>
void apply_mask(Mat<S>& m, Causal causal) {
  for (Eigen::Index s = 0; s < m.cols(); ++s)
    for (Eigen::Index r = 0; r < m.rows(); ++r)
      if (!in_mask(r, s, causal)) m(r, s) = S(0);
}

template <class S>
Mat<S> exp_of(const Mat<S>& x) {
  using std::exp;
  Mat<S> e(x.rows(), x.cols());
  for (Eigen::Index j = 0; j < x.cols(); ++j)
    for (Eigen::Index i = 0; i < x.rows(); ++i) e(i, j) = exp(x(i, j));
  return e;
}

// exp(gi_last - gi_r) row by row: the decay from just after token r to the end of the chunk (<= 1).
template <class S>
Mat<S> decay_to_chunk_end(const Mat<S>& gi) {
  Mat<S> shifted = (-gi).rowwise() + gi.row(gi.rows() - 1);
  return exp_of(shifted);
}

// exp(gi_rd - gi_sd) for s <= r and every key channel d, in either evaluation: L (L + 1) / 2 x K values,
// one exp each (Difference) or 2 L K exps and a product each (Factored). Both A groups read it: A_ak and
// A_ab need exp(ge_r - gi_s) = exp(gi_{r-1} - gi_s), the same value bit for bit since the cumsum stage
// makes ge_r exactly gi_{r-1}.
template <class S>
class ChunkDecay {
 public:
  ChunkDecay(const Mat<S>& gi, DecayEvaluation evaluation) : table_(gi.rows() * (gi.rows() + 1) / 2, gi.cols()) {
    using std::exp;
    const Eigen::Index L = gi.rows();
    Mat<S> exp_gi, exp_neg_gi;
    if (evaluation == DecayEvaluation::Factored) exp_gi = exp_of<S>(gi), exp_neg_gi = exp_of<S>(-gi);
    for (Eigen::Index d = 0; d < gi.cols(); ++d)
      for (Eigen::Index r = 0; r < L; ++r)
        for (Eigen::Index s = 0; s <= r; ++s)
          table_(index(r, s), d) = evaluation == DecayEvaluation::Difference ? S(exp(gi(r, d) - gi(s, d)))
                                                                             : S(exp_gi(r, d) * exp_neg_gi(s, d));
  }
  const S& operator()(Eigen::Index r, Eigen::Index s, Eigen::Index d) const { return table_(index(r, s), d); }

 private:
  static Eigen::Index index(Eigen::Index r, Eigen::Index s) { return r * (r + 1) / 2 + s; }
  Mat<S> table_;
};

// Row r of a Strict product reads the decay of row r - 1 (ge_r = gi_{r-1}).
inline Eigen::Index decay_row(Eigen::Index r, Causal causal) { return causal == Causal::Inclusive ? r : r - 1; }

// Two decayed products that share x and the mask:
//   P1[r,s] = sum_d x_rd y1_sd decay(r', s, d),  P2 likewise with y2  (r' = decay_row(r, causal)).
template <class S>
void decayed_products(const Mat<S>& x, const ChunkDecay<S>& decay, const Mat<S>& y1, const Mat<S>& y2, Causal causal,
                      Mat<S>& p1, Mat<S>& p2) {
  const Eigen::Index L = x.rows(), D = x.cols();
  p1 = Mat<S>::Zero(L, L);
  p2 = Mat<S>::Zero(L, L);
  S weight;
  for (Eigen::Index r = 0; r < L; ++r)
    for (Eigen::Index s = 0; s < L && in_mask(r, s, causal); ++s)
      for (Eigen::Index d = 0; d < D; ++d) {
        weight = x(r, d) * decay(decay_row(r, causal), s, d);
        p1(r, s) += weight * y1(s, d);
        p2(r, s) += weight * y2(s, d);
      }
}

// Reverse mode of decayed_products: accumulates dx += dP1 and dP2 through y1, y2, and dy1, dy2 through x,
// and the gradient with respect to the gates gk of the chunk, formed directly:
//
//   each entry's term T[r,s,d] = (dP1[r,s] y1_sd + dP2[r,s] y2_sd) x_rd decay(r', s, d) depends on
//   gk_td for the tokens t its exponent sums over: s < t <= r (Inclusive) or s < t < r (Strict);
//   so dgk_td += sum_{s < t} sum_{r >= t + shift} T[r,s,d], shift 0 or 1.
//
// Summing only the pairs that span t keeps dgk free of cancellation: the pairs that do not span t
// (the diagonal above all, with no decay at all) never enter. Suffix sums over r make it O(L^2 K).
template <class S>
void decayed_products_bwd(const Mat<S>& dp1, const Mat<S>& dp2, const Mat<S>& x, const ChunkDecay<S>& decay,
                          const Mat<S>& y1, const Mat<S>& y2, Causal causal, Mat<S>& dx, Mat<S>& dy1, Mat<S>& dy2,
                          Mat<S>& dgk) {
  const Eigen::Index L = x.rows(), D = x.cols();
  const Eigen::Index shift = causal == Causal::Inclusive ? 0 : 1;
  Mat<S> term = Mat<S>::Zero(L, L);  // T[r, s] of one channel d
  S e, g1, g2, running;
  for (Eigen::Index d = 0; d < D; ++d) {
    for (Eigen::Index r = 0; r < L; ++r)
      for (Eigen::Index s = 0; s < L && in_mask(r, s, causal); ++s) {
        e = decay(decay_row(r, causal), s, d);
        g1 = dp1(r, s) * e;
        g2 = dp2(r, s) * e;
        dy1(s, d) += g1 * x(r, d);
        dy2(s, d) += g2 * x(r, d);
        g1 *= y1(s, d);
        g1 += g2 * y2(s, d);  // the entry's contribution to dx_rd
        dx(r, d) += g1;
        term(r, s) = g1 * x(r, d);
      }
    for (Eigen::Index s = 0; s + 1 < L; ++s) {
      running = S(0);  // sum_{r >= t + shift} T[r, s]
      for (Eigen::Index t = L - 1; t > s; --t) {
        if (t + shift < L) running += term(t + shift, s);
        dgk(t, d) += running;
      }
    }
  }
}

}  // namespace dplr::chunk
