// What the chunk-form stages share: Eigen matrices over the scalar type S (one chunk's tokens are the
// rows), the causal masks, elementwise exp, and the decayed products that the A stage (forward and
// backward) is made of:
//
//     P[r,s] = sum_d x_rd y_sd exp(gx_rd - gy_sd)      s <= r (inclusive) or s < r (strict), 0 above.
//
// The decay factor can be evaluated as exp of the difference (the stable way: for gk <= 0 and s <= r the
// exponent is <= 0 up to the one-token shift of ge) or factored as exp(gx_rd) * exp(-gy_sd), which is
// what a tensor-core kernel wants and what overflows float once -gy passes about 88.7 (ln FLT_MAX).
// See docs/chunk-backward.md.
#pragma once
#include <Eigen/Core>
#include <cmath>
#include <cstdint>

#include "reference/chunk_stages.hpp"

namespace dplr::chunk {

using dplr::DecayEvaluation;

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

// The decay factor exp(gx_rd - gy_sd) in either evaluation. Factored keeps exp(gx) and exp(-gy) tables.
template <class S>
class PairDecay {
 public:
  PairDecay(const Mat<S>& gx, const Mat<S>& gy, DecayEvaluation evaluation)
      : gx_(gx), gy_(gy), evaluation_(evaluation) {
    if (evaluation_ == DecayEvaluation::Factored) {
      exp_gx_ = exp_of<S>(gx);
      exp_neg_gy_ = exp_of<S>(-gy);
    }
  }
  S operator()(Eigen::Index r, Eigen::Index s, Eigen::Index d) const {
    using std::exp;
    if (evaluation_ == DecayEvaluation::Difference) return exp(gx_(r, d) - gy_(s, d));
    return exp_gx_(r, d) * exp_neg_gy_(s, d);
  }

 private:
  const Mat<S>& gx_;
  const Mat<S>& gy_;
  DecayEvaluation evaluation_;
  Mat<S> exp_gx_, exp_neg_gy_;
};

// Two decayed products that share x, gx and gy (so one exp per (r, s, d) serves both):
//   P1[r,s] = sum_d x_rd y1_sd exp(gx_rd - gy_sd),  P2 likewise with y2.
template <class S>
void decayed_products(const Mat<S>& x, const Mat<S>& gx, const Mat<S>& gy, const Mat<S>& y1, const Mat<S>& y2,
                      Causal causal, DecayEvaluation evaluation, Mat<S>& p1, Mat<S>& p2) {
  const Eigen::Index L = x.rows(), D = x.cols();
  const PairDecay<S> decay(gx, gy, evaluation);
  p1 = Mat<S>::Zero(L, L);
  p2 = Mat<S>::Zero(L, L);
  S weight;
  for (Eigen::Index r = 0; r < L; ++r)
    for (Eigen::Index s = 0; s < L && in_mask(r, s, causal); ++s)
      for (Eigen::Index d = 0; d < D; ++d) {
        weight = x(r, d) * decay(r, s, d);
        p1(r, s) += weight * y1(s, d);
        p2(r, s) += weight * y2(s, d);
      }
}

// Reverse mode of decayed_products: accumulates dx += dP1 and dP2 through y1, y2, and dy1, dy2 through x.
// (The gradients with respect to gx and gy are not formed here: they follow from the identity in
// chunk_cumsum_bwd.hpp.)
template <class S>
void decayed_products_bwd(const Mat<S>& dp1, const Mat<S>& dp2, const Mat<S>& x, const Mat<S>& gx,
                          const Mat<S>& gy, const Mat<S>& y1, const Mat<S>& y2, Causal causal,
                          DecayEvaluation evaluation, Mat<S>& dx, Mat<S>& dy1, Mat<S>& dy2) {
  const Eigen::Index L = x.rows(), D = x.cols();
  const PairDecay<S> decay(gx, gy, evaluation);
  S e, g1, g2;
  for (Eigen::Index r = 0; r < L; ++r)
    for (Eigen::Index s = 0; s < L && in_mask(r, s, causal); ++s)
      for (Eigen::Index d = 0; d < D; ++d) {
        e = decay(r, s, d);
        g1 = dp1(r, s) * e;
        g2 = dp2(r, s) * e;
        dx(r, d) += g1 * y1(s, d);
        dx(r, d) += g2 * y2(s, d);
        dy1(s, d) += g1 * x(r, d);
        dy2(s, d) += g2 * x(r, d);
      }
}

}  // namespace dplr::chunk
