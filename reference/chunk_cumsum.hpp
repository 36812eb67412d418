// Stage "cumsum" of the chunk form (shared spec DPLR.md, "The chunk form"), for one chunk of L tokens:
//
//     gi_r = sum_{s <= r} gk_s        inclusive cumulative decay, [L, K]
//     ge_r = sum_{s <  r} gk_s        exclusive (= gi_r - gk_r; ge_0 = 0)
//
// Both come from one running sum, so ge_r is bit for bit gi_{r-1} in every arithmetic. Natural log
// base (fla's Triton kernels keep gi in base 2, scaled by 1/ln 2; the stored tensors differ by that
// factor). The sums restart at every chunk, and chunks restart at every sequence start.
#pragma once
#include "reference/chunk_common.hpp"

namespace dplr::chunk {

template <class S>
struct CumsumResult {
  Mat<S> gi, ge;
};

template <class S>
CumsumResult<S> chunk_cumsum(const Mat<S>& gk) {
  CumsumResult<S> out{Mat<S>(gk.rows(), gk.cols()), Mat<S>(gk.rows(), gk.cols())};
  for (Eigen::Index d = 0; d < gk.cols(); ++d) {
    S running(0);
    for (Eigen::Index r = 0; r < gk.rows(); ++r) {
      out.ge(r, d) = running;
      running += gk(r, d);
      out.gi(r, d) = running;
    }
  }
  return out;
}

}  // namespace dplr::chunk
