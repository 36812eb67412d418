// Stage "o_bwd" of the chunk backward (reference/chunk_o_bwd.hpp), per chunk; q is the scaled q, S = h of the
// chunk (the state before it), dO = do:
//     dA_qk = tril(dO v^T),  dA_qb = tril(dO v_new^T)          (diagonal included)
//     dq_o  = (dO S^T) (.) exp(gi)                             (with respect to the scaled q)
//     dv    = A_qk^T dO                                        (dv's first share; h_bwd and WY_bwd add theirs)
//     dv_new_o = A_qb^T dO
//     dh_o  = (q (.) exp(gi))^T dO = qg^T dO                   (the chunk's share of dL/dS at its start)
// exp(gi) is re-formed from gk in fp64 (for_chunk_log2_cumsum) and taken as chunk_A takes it for qg. Needs
// nothing from other chunks. One block (256 threads) per (chunk, head, batch row); dO, A_qk, A_qb and exp(gi)
// in shared memory; every output element is one thread's fp32 FMA sum in a fixed order.
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

struct OBwdArgs {
  const void *d_o, *v, *gk;
  const float *Aqk, *Aqb, *qg, *vnew, *h;
  float *dAqk, *dAqb, *dv, *dq_o, *dvnew_o, *dh_o;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

std::size_t o_bwd_smem(int C, int K, int V) {
  return (std::size_t(C) * V + 2 * std::size_t(C) * C + std::size_t(C) * K) * sizeof(float);
}

template <typename T, typename G, int C>
__global__ void __launch_bounds__(256) chunk_o_bwd_kernel(OBwdArgs p) {
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* dO = sm;              // [C][V], zero past the chunk
  float* Aqk = dO + C * V;     // [C][C], zero outside s <= r < len
  float* Aqb = Aqk + C * C;    // [C][C]
  float* egi = Aqb + C * C;    // [C][K] exp(gi)

  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int L = ch.len;
  for (int e = threadIdx.x; e < C * V; e += blockDim.x) {
    const int r = e / V, j = e % V;
    dO[e] = r < L ? ld<T>(p.d_o, tix(ch.bos + r, h, H, j, V)) : 0.f;
  }
  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int r = e / C, s = e % C;
    const bool ok = r < L && s <= r;
    const std::int64_t ix = ((ch.bos + r) * H + h) * C + s;
    Aqk[e] = ok ? p.Aqk[ix] : 0.f;
    Aqb[e] = ok ? p.Aqb[ix] : 0.f;
  }
  for_chunk_log2_cumsum<G>(p.gk, ch, h, H, K, [&](int r, int d, float2 gi) { egi[r * K + d] = exp2_split(gi); });
  __syncthreads();

  for (int e = threadIdx.x; e < L * C; e += blockDim.x) {  // dA_qk, dA_qb: every column of the chunk's rows
    const int r = e / C, s = e % C;
    float qk = 0.f, qb = 0.f;
    if (s <= r) {  // s < L since r < L
      for (int j = 0; j < V; ++j) {
        const std::int64_t ix = tix(ch.bos + s, h, H, j, V);
        qk = fmaf(dO[r * V + j], ld<T>(p.v, ix), qk);
        qb = fmaf(dO[r * V + j], p.vnew[ix], qb);
      }
    }
    const std::int64_t out = ((ch.bos + r) * H + h) * C + s;
    p.dAqk[out] = qk;
    p.dAqb[out] = qb;
  }
  const float* S = p.h + (ch.g * H + h) * K * V;
  for (int e = threadIdx.x; e < L * K; e += blockDim.x) {  // dq_o
    const int r = e / K, i = e % K;
    float acc = 0.f;
    for (int j = 0; j < V; ++j) acc = fmaf(dO[r * V + j], S[i * V + j], acc);
    p.dq_o[tix(ch.bos + r, h, H, i, K)] = acc * egi[r * K + i];
  }
  for (int e = threadIdx.x; e < L * V; e += blockDim.x) {  // dv = A_qk^T dO, dv_new_o = A_qb^T dO
    const int r = e / V, j = e % V;
    float dv = 0.f, dvn = 0.f;
    for (int t = r; t < L; ++t) {
      dv = fmaf(Aqk[t * C + r], dO[t * V + j], dv);
      dvn = fmaf(Aqb[t * C + r], dO[t * V + j], dvn);
    }
    const std::int64_t ix = tix(ch.bos + r, h, H, j, V);
    p.dv[ix] = dv;
    p.dvnew_o[ix] = dvn;
  }
  float* dS = p.dh_o + (ch.g * H + h) * K * V;
  for (int e = threadIdx.x; e < K * V; e += blockDim.x) {  // dh_o = qg^T dO
    const int i = e / V, j = e % V;
    float acc = 0.f;
    for (int r = 0; r < L; ++r) acc = fmaf(p.qg[tix(ch.bos + r, h, H, i, K)], dO[r * V + j], acc);
    dS[e] = acc;
  }
}

}  // namespace

void chunk_o_bwd(const BackwardInputs& in, int C, const float* A_qk, const float* A_qb, const float* qg,
                 const float* v_new, const float* h, float* dA_qk, float* dA_qb, float* dv, const GradientShares& shares,
                 cudaStream_t stream) {
  check_backward(in, C);
  if (!A_qk || !A_qb || !qg || !v_new || !h)
    refuse("chunk_o_bwd needs the forward's A_qk, A_qb, qg, v_new and h");
  if (!dA_qk || !dA_qb || !dv || !shares.dq_o || !shares.dv_new_o || !shares.dh_o)
    refuse("chunk_o_bwd needs dA_qk, dA_qb, dv and the shares dq_o, dv_new_o, dh_o");
  const ForwardInputs& f = in.fwd;
  const int K = static_cast<int>(f.K), V = static_cast<int>(f.V);
  OBwdArgs p{in.d_o, f.v, f.gk, A_qk, A_qb, qg, v_new, h, dA_qk, dA_qb, dv, shares.dq_o, shares.dv_new_o,
             shares.dh_o, chunk_geom(f, C), f.H, K, V};
  const std::size_t bytes = o_bwd_smem(C, K, V);
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto g, auto c) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int CC = decltype(c)::value;
    set_smem(chunk_o_bwd_kernel<T, G, CC>, bytes);
    chunk_o_bwd_kernel<T, G, CC><<<chunk_grid(f, C), 256, bytes, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_o_bwd_kernel");
}

}  // namespace dplr::gpu
