// Stage "o_bwd" of the chunk backward (reference/chunk_o_bwd.hpp), per chunk; q is the scaled q, S = h of the
// chunk (the state before it), dO = do:
//     dA_qk = tril(dO v^T),  dA_qb = tril(dO v_new^T)          (diagonal included)
//     dq_o  = (dO S^T) (.) exp(gi)                             (with respect to the scaled q)
//     dv    = A_qk^T dO                                        (dv's first share; h_bwd and WY_bwd add theirs)
//     dv_new_o = A_qb^T dO
//     dh_o  = (q (.) exp(gi))^T dO = qg^T dO                   (the chunk's share of dL/dS at its start)
// exp(gi) is re-formed from gk in fp64 (for_chunk_log2_cumsum) and taken as chunk_A takes it for qg. Needs
// nothing from other chunks. Two kernels (BackwardVariant::o): the tensor-core one (chunk_o_bwd_mma.cu; 16-bit
// inputs, C = 16, K and V multiples of 8, 16-byte aligned operands), the default where it applies, and the FMA one
// here (any request): one block (256 threads) per (chunk, head, batch row); dO, A_qk, A_qb, exp(gi), qg and tiles of
// v, v_new, S in shared memory; every output element is one thread's fp32 FMA sum in a fixed order. Both kernels
// skip the shares dv_new_o and dh_o where they are nullptr (chunk_backward, where h_bwd's tensor-core kernels form
// them: dh_o is a per-chunk state, 16 KB a chunk-head at K = V = 64).
#include "gpu/chunk_bwd_mma.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

// Shared memory: do, A_qk, A_qb, exp(gi) and qg of the chunk whole, and one tile of kJT columns of V of v and v_new
// (rows of the chunk) and of S (one padded row a key channel), so that lanes reading different rows of one column
// do not conflict.
constexpr int kJT = 32, kLS = kJT + 1;
std::size_t o_bwd_smem(int C, int KMAX, int K, int V) {
  return (std::size_t(C) * V + 2 * std::size_t(C) * C + 2 * std::size_t(C) * K + 2 * std::size_t(C) * kLS +
          std::size_t(KMAX) * kLS) * sizeof(float);
}

// dA_qk, dA_qb: element e = tid + 256 m of the chunk's C x C (r = e / C, s = e % C); dq_o: thread (rq, i) of
// (256 / KMAX) x KMAX, key channel i, rows rq + RG m (a warp shares its row: broadcasts). Every output is the same
// fp32 FMA chain, in the same order, as one thread summing over all of V: the tiles only stage the operands
// (session 7: the first version read S and v, v_new from global memory with lanes on different rows, up to 32
// cache lines a load).
template <typename T, typename G, int C, int KMAX>
__global__ void __launch_bounds__(256) chunk_o_bwd_kernel(OBwdArgs p) {
  constexpr int EA = C * C / 256 > 0 ? C * C / 256 : 1, RG = 256 / KMAX, EPT = C / RG;
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* dO = sm;              // [C][V], zero past the chunk
  float* Aqk = dO + C * V;     // [C][C], zero outside s <= r < len
  float* Aqb = Aqk + C * C;    // [C][C]
  float* egi = Aqb + C * C;    // [C][K] exp(gi)
  float* qg = egi + C * K;     // [C][K]
  float* Vt = qg + C * K;      // [C][kLS] v[s][jt + j]
  float* VNt = Vt + C * kLS;   // [C][kLS] v_new[s][jt + j]
  float* St = VNt + C * kLS;   // [KMAX][kLS] S[i][jt + j]

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
  for (int e = threadIdx.x; e < L * K; e += blockDim.x) qg[e] = p.qg[tix(ch.bos + e / K, h, H, e % K, K)];
  for_chunk_log2_cumsum<G>(p.gk, ch, h, H, K, [&](int r, int d, float2 gi) { egi[r * K + d] = exp2_split(gi); });

  const float* S = p.h + (ch.g * H + h) * K * V;
  const int i = threadIdx.x % KMAX, rq = threadIdx.x / KMAX;
  float qk[EA], qb[EA], dq[EPT];
#pragma unroll
  for (int m = 0; m < EA; ++m) qk[m] = qb[m] = 0.f;
#pragma unroll
  for (int m = 0; m < EPT; ++m) dq[m] = 0.f;
  for (int jt = 0; jt < V; jt += kJT) {
    const int jn = min(kJT, V - jt);
    __syncthreads();  // the previous tile no longer read (the first time: the whole-chunk operands written)
    for (int x = threadIdx.x; x < L * kJT; x += blockDim.x) {
      const int r = x / kJT, j = x % kJT;
      if (j < jn) {
        const std::int64_t ix = tix(ch.bos + r, h, H, jt + j, V);
        Vt[r * kLS + j] = ld<T>(p.v, ix);
        VNt[r * kLS + j] = p.vnew[ix];
      }
    }
    for (int x = threadIdx.x; x < K * kJT; x += blockDim.x) {
      const int ii = x / kJT, j = x % kJT;
      if (j < jn) St[ii * kLS + j] = S[ii * V + jt + j];
    }
    __syncthreads();
#pragma unroll
    for (int m = 0; m < EA; ++m) {  // dA_qk, dA_qb
      const int e = threadIdx.x + 256 * m, r = e / C, s = e % C;
      if (e < C * C && r < L && s <= r)
        for (int j = 0; j < jn; ++j) {
          const float d = dO[r * V + jt + j];
          qk[m] = fmaf(d, Vt[s * kLS + j], qk[m]);
          qb[m] = fmaf(d, VNt[s * kLS + j], qb[m]);
        }
    }
    if (i < K)
      for (int j = 0; j < jn; ++j) {  // dq_o before its decay factor
        const float sv = St[i * kLS + j];
#pragma unroll
        for (int m = 0; m < EPT; ++m) {
          const int r = rq + RG * m;
          if (r < L) dq[m] = fmaf(dO[r * V + jt + j], sv, dq[m]);
        }
      }
  }
#pragma unroll
  for (int m = 0; m < EA; ++m) {
    const int e = threadIdx.x + 256 * m, r = e / C, s = e % C;
    if (e < C * C && r < L) {
      const std::int64_t out = ((ch.bos + r) * H + h) * C + s;
      p.dAqk[out] = qk[m];
      p.dAqb[out] = qb[m];
    }
  }
  if (i < K)
#pragma unroll
    for (int m = 0; m < EPT; ++m) {
      const int r = rq + RG * m;
      if (r < L) p.dq_o[tix(ch.bos + r, h, H, i, K)] = dq[m] * egi[r * K + i];
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
    if (p.dvnew_o) p.dvnew_o[ix] = dvn;
  }
  if (!p.dh_o) return;  // not formed (h_bwd's tensor-core kernels form it)
  float* dS = p.dh_o + (ch.g * H + h) * K * V;
  for (int e = threadIdx.x; e < K * V; e += blockDim.x) {  // dh_o = qg^T dO
    const int ii = e / V, j = e % V;
    float acc = 0.f;
    for (int r = 0; r < L; ++r) acc = fmaf(qg[r * K + ii], dO[r * V + j], acc);
    dS[e] = acc;
  }
}

}  // namespace

bool chunk_o_bwd_tensor_cores_supported(const BackwardInputs& in, int C) {
  return bwd_mma_shape(in.fwd, C) && all_aligned16({in.d_o});
}

namespace detail {
bool o_bwd_mma_aligned(const float* A_qk, const float* A_qb, const float* qg, const float* v_new, const float* h,
                       const float* dA_qk, const float* dA_qb, const float* dv, const GradientShares& shares) {
  return all_aligned16({A_qk, A_qb, qg, v_new, h, dA_qk, dA_qb, dv, shares.dq_o, shares.dv_new_o, shares.dh_o});
}
}  // namespace detail

void chunk_o_bwd(const BackwardInputs& in, int C, const float* A_qk, const float* A_qb, const float* qg,
                 const float* v_new, const float* h, float* dA_qk, float* dA_qb, float* dv, const GradientShares& shares,
                 cudaStream_t stream) {
  check_backward(in, C);
  if (!A_qk || !A_qb || !qg || !v_new || !h)
    refuse("chunk_o_bwd needs the forward's A_qk, A_qb, qg, v_new and h");
  if (!dA_qk || !dA_qb || !dv || !shares.dq_o)
    refuse("chunk_o_bwd needs dA_qk, dA_qb, dv and the share dq_o (dv_new_o, dh_o: nullptr is not formed)");
  bool tensor_cores = use_tensor_cores(in.variant.o, chunk_o_bwd_tensor_cores_supported(in, C), "chunk_o_bwd");
  if (tensor_cores && !o_bwd_mma_aligned(A_qk, A_qb, qg, v_new, h, dA_qk, dA_qb, dv, shares)) {
    if (in.variant.o == BwdKernel::TensorCores)
      refuse("chunk_o_bwd's tensor-core kernel needs 16-byte aligned A_qk, A_qb, qg, v_new, h, dA_qk, dA_qb, dv, "
             "dq_o, dv_new_o and dh_o (16-byte copies); carve_backward_workspace's pieces are");
    tensor_cores = false;  // Default: the FMA kernel takes any alignment
  }
  const ForwardInputs& f = in.fwd;
  const int K = static_cast<int>(f.K), V = static_cast<int>(f.V);
  const OBwdArgs p{in.d_o, f.v, f.gk, A_qk, A_qb, qg, v_new, h, dA_qk, dA_qb, dv, shares.dq_o, shares.dv_new_o,
                   shares.dh_o, chunk_geom(f, C), f.H, K, V};
  if (tensor_cores) {
    launch_o_bwd_mma(p, f, stream);
    return;
  }
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto g, auto c) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int CC = decltype(c)::value;
    auto go = [&](auto km) {
      constexpr int KM = decltype(km)::value;
      const std::size_t bytes = o_bwd_smem(CC, KM, K, V);
      set_smem(chunk_o_bwd_kernel<T, G, CC, KM>, bytes);
      chunk_o_bwd_kernel<T, G, CC, KM><<<chunk_grid(f, C), 256, bytes, stream>>>(p);
    };
    if (K <= 64) go(std::integral_constant<int, 64>{});
    else go(std::integral_constant<int, 128>{});
  });
  DPLR_LAUNCHED("chunk_o_bwd_kernel");
}

}  // namespace dplr::gpu
