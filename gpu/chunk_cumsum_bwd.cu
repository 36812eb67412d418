// Stage "cumsum_bwd" of the chunk backward (reference/chunk_cumsum_bwd.hpp, GateGradient::Direct): dgk of one
// chunk from every stage's share, per key channel (q is the scaled q):
//     dgk_t = dgk_A_t + sum_{r >= t} q_r dq_o_r + sum_{r > t} a_r da_wy_r
//                     + sum_{r < t} (k_r dk_h_r + b_r db_h_r) + d_chunk_decay
// Every term carries the decay it differentiates, so nothing cancels (fla's identity dgi = q dq - k dk - b db
// cancels under strong decay: docs/chunk-backward.md). The two running sums are in the oracle's order. One
// block (128 threads) per (chunk, head, batch row), one thread per key channel.
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

struct CumsumBwdArgs {
  const void *q, *k, *a, *b;
  const float *dq_o, *da_wy, *dk_h, *db_h, *dgk_A, *dcd;
  float* dgk;
  ChunkGeom geo;
  std::int64_t H;
  int K;
  float scale;
};

template <typename T, int C>
__global__ void __launch_bounds__(kMaxHeadDim) chunk_cumsum_bwd_kernel(CumsumBwdArgs p) {
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int K = p.K;
  for (int d = threadIdx.x; d < K; d += blockDim.x) {
    const float chunk_decay = p.dcd[(ch.g * H + h) * K + d];
    float later = 0.f;  // sum_{r >= t} q dq_o + sum_{r > t} a da_wy
    for (int t = ch.len - 1; t >= 0; --t) {
      const std::int64_t ix = tix(ch.bos + t, h, H, d, K);
      const float later_than_t = later;  // (the planted BwdDgkExclusive's sum: row t's q dq_o left out)
      later = fmaf(ld<T>(p.q, ix) * p.scale, p.dq_o[ix], later);
      p.dgk[ix] = p.dgk_A[ix] + (planted(p.geo.planted, PlantedDefect::BwdDgkExclusive) ? later_than_t : later) + chunk_decay;
      later = fmaf(ld<T>(p.a, ix), p.da_wy[ix], later);
    }
    float earlier = 0.f;  // sum_{r < t} (k dk_h + b db_h)
    for (int t = 0; t < ch.len; ++t) {
      const std::int64_t ix = tix(ch.bos + t, h, H, d, K);
      p.dgk[ix] += earlier;
      earlier += fmaf(ld<T>(p.k, ix), p.dk_h[ix], ld<T>(p.b, ix) * p.db_h[ix]);
    }
  }
}

}  // namespace

void chunk_cumsum_bwd(const BackwardInputs& in, int C, float* dgk, const GradientShares& shares, cudaStream_t stream) {
  check_backward(in, C);
  if (!shares.dq_o || !shares.da_wy || !shares.dk_h || !shares.db_h || !shares.dgk_A || !shares.d_chunk_decay)
    refuse("chunk_cumsum_bwd needs the shares dq_o, da_wy, dk_h, db_h, dgk_A and d_chunk_decay");
  if (!dgk) refuse("chunk_cumsum_bwd needs dgk");
  const ForwardInputs& f = in.fwd;
  const CumsumBwdArgs p{f.q, f.k, f.a, f.b, shares.dq_o, shares.da_wy, shares.dk_h, shares.db_h, shares.dgk_A,
                        shares.d_chunk_decay, dgk, chunk_geom(f, C), f.H, static_cast<int>(f.K), f.resolved_scale()};
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto, auto c) {
    chunk_cumsum_bwd_kernel<decltype(t), decltype(c)::value><<<chunk_grid(f, C), kMaxHeadDim, 0, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_cumsum_bwd_kernel");
}

}  // namespace dplr::gpu
