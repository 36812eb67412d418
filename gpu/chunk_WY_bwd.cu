// Stage "WY_bwd" of the chunk backward (reference/chunk_WY_bwd.hpp), per chunk; M = A_ab_inv, du = dv_new:
//     dag   = M^T dw,     du^ = M^T du
//     dA_ab = strictly_lower(dag w^T + du^ u^T)
//     dA_ak = strictly_lower(du^ v^T)
//     dv   += A_ak^T du^                 (completes dv)
//     da_wy = dag (.) exp(ge)
// exp(ge_r) = exp(gi_{r-1}) is re-formed from gk in fp64 and taken as chunk_A takes it for ag (1 on a chunk's
// first row). Two kernels (BackwardVariant::wy): the tensor-core one (chunk_WY_bwd_mma.cu; 16-bit inputs, C = 16,
// K and V multiples of 8, 16-byte aligned operands), the default where it applies, and the FMA one here (any
// request): one block (256 threads) per (chunk, head, batch row); M, A_ak, dag, du^ and the rows of w, u, v in
// shared memory (session 7: w, u, v were read from global memory, lanes on up to 16 rows a load); every output
// element is one thread's fp32 FMA sum in a fixed order. Both kernels write dv's total in fp32 (chunk_WY_bwd, in
// place) or rounded once to the inputs' dtype (chunk_WY_bwd_rounding_dv, the driver's out.dv).
#include "gpu/chunk_bwd_mma.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

// Shared memory: M, A_ak, dag, du^, and the chunk's rows of w, u, v (padded by one float a row: the dA_ab, dA_ak
// products read one column of them with lanes on different rows, conflict-free).
std::size_t wy_bwd_smem(int C, int K, int V) {
  return (2 * std::size_t(C) * C + std::size_t(C) * K + std::size_t(C) * V + std::size_t(C) * (K + 1) +
          2 * std::size_t(C) * (V + 1)) * sizeof(float);
}

template <typename T, typename G, int C>
__global__ void __launch_bounds__(256) chunk_WY_bwd_kernel(WYBwdArgs p) {
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* M = sm;              // [C][C], zero outside s <= r < len
  float* Aak = M + C * C;     // [C][C], zero outside s < r < len
  float* dag = Aak + C * C;   // [C][K]
  float* duh = dag + C * K;   // [C][V]
  float* ws = duh + C * V;    // [C][K + 1] w rows
  float* us = ws + C * (K + 1);  // [C][V + 1] u rows
  float* vs = us + C * (V + 1);  // [C][V + 1] v rows
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int L = ch.len;
  // (The planted BwdHeadOffset: A_ab_inv and A_ak read at head 0 for every head.)
  const std::int64_t a_head = planted(p.geo.planted, PlantedDefect::BwdHeadOffset) ? 0 : h;
  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int r = e / C, s = e % C;
    const std::int64_t ix = ((ch.bos + r) * H + a_head) * C + s;
    M[e] = (r < L && s <= r) ? p.Ainv[ix] : 0.f;
    Aak[e] = (r < L && s < r) ? p.Aak[ix] : 0.f;
  }
  for (int e = threadIdx.x; e < L * K; e += blockDim.x) ws[(e / K) * (K + 1) + e % K] = p.w[tix(ch.bos + e / K, h, H, e % K, K)];
  for (int e = threadIdx.x; e < L * V; e += blockDim.x) {
    const int r = e / V, j = e % V;
    const std::int64_t ix = tix(ch.bos + r, h, H, j, V);
    us[r * (V + 1) + j] = p.u[ix];
    vs[r * (V + 1) + j] = ld<T>(p.v, ix);
  }
  __syncthreads();
  for (int e = threadIdx.x; e < C * K; e += blockDim.x) {  // dag = M^T dw
    const int s = e / K, i = e % K;
    float acc = 0.f;
    for (int r = s; r < L; ++r) acc = fmaf(M[r * C + s], p.dw[tix(ch.bos + r, h, H, i, K)], acc);
    dag[e] = acc;
  }
  for (int e = threadIdx.x; e < C * V; e += blockDim.x) {  // du^ = M^T du
    const int s = e / V, j = e % V;
    float acc = 0.f;
    for (int r = s; r < L; ++r) acc = fmaf(M[r * C + s], p.du[tix(ch.bos + r, h, H, j, V)], acc);
    duh[e] = acc;
  }
  __syncthreads();
  for (int e = threadIdx.x; e < L * C; e += blockDim.x) {  // dA_ab, dA_ak: every column of the chunk's rows
    const int r = e / C, s = e % C;
    float ab = 0.f, ak = 0.f;
    if (s < r) {
      float from_w = 0.f, from_u = 0.f;
      for (int i = 0; i < K; ++i) from_w = fmaf(dag[r * K + i], ws[s * (K + 1) + i], from_w);
      for (int j = 0; j < V; ++j) {
        from_u = fmaf(duh[r * V + j], us[s * (V + 1) + j], from_u);
        ak = fmaf(duh[r * V + j], vs[s * (V + 1) + j], ak);
      }
      ab = from_w + from_u;
    }
    const std::int64_t out = ((ch.bos + r) * H + h) * C + s;
    p.dAab[out] = ab;
    p.dAak[out] = ak;
  }
  for (int e = threadIdx.x; e < L * V; e += blockDim.x) {  // dv += A_ak^T du^
    const int r = e / V, j = e % V;
    float acc = 0.f;
    for (int t = r + 1; t < L; ++t) acc = fmaf(Aak[t * C + r], duh[t * V + j], acc);
    const std::int64_t ix = tix(ch.bos + r, h, H, j, V);
    const float total = p.dv[ix] + acc;
    if (p.dv_rounded) st<T>(p.dv_rounded, ix, total);
    else p.dv_total[ix] = total;
  }
  // da_wy = dag (.) exp(ge): row r takes the sum of rows 0 .. r - 1, i.e. the cumulative sum before gk_r.
  float* da = p.da_wy;
  for_chunk_log2_cumsum<G>(p.gk, ch, h, H, K, [&](int r, int d, float2 gi) {
    if (r == 0) da[tix(ch.bos, h, H, d, K)] = dag[d];
    if (r + 1 < L) da[tix(ch.bos + r + 1, h, H, d, K)] = dag[(r + 1) * K + d] * exp2_split(gi);
  });
}

}  // namespace

bool chunk_WY_bwd_tensor_cores_supported(const BackwardInputs& in, int C) { return bwd_mma_shape(in.fwd, C); }

namespace {
// Both entries: dv_total (fp32, the stage's own layout) or dv_rounded (the inputs' dtype, the driver's) is written.
void wy_bwd(const BackwardInputs& in, int C, const float* A_ab_inv, const float* A_ak, const float* w, const float* u,
            const float* dw, const float* dv_new, float* dA_ab, float* dA_ak, const float* dv, float* dv_total,
            void* dv_rounded, const GradientShares& shares, cudaStream_t stream) {
  check_backward(in, C);
  if (!A_ab_inv || !A_ak || !w || !u) refuse("chunk_WY_bwd needs the forward's A_ab_inv, A_ak, w and u");
  if (!dw || !dv_new) refuse("chunk_WY_bwd needs h_bwd's dw and dv_new");
  if (!dA_ab || !dA_ak || !dv || !shares.da_wy)
    refuse("chunk_WY_bwd needs dA_ab, dA_ak, dv (the o_bwd and h_bwd shares in it) and the share da_wy");
  if (!dv_total && !dv_rounded) refuse("chunk_backward needs out.dv (chunk_WY_bwd_rounding_dv writes it)");
  bool tensor_cores = use_tensor_cores(in.variant.wy, chunk_WY_bwd_tensor_cores_supported(in, C), "chunk_WY_bwd");
  // dv_rounded: stored as pairs of 16-bit values (4 bytes).
  if (tensor_cores && (!all_aligned16({A_ab_inv, A_ak, w, u, dw, dv_new, dA_ab, dA_ak, dv, shares.da_wy}) ||
                       reinterpret_cast<std::uintptr_t>(dv_rounded) % 4 != 0)) {
    if (in.variant.wy == BwdKernel::TensorCores)
      refuse("chunk_WY_bwd's tensor-core kernel needs 16-byte aligned A_ab_inv, A_ak, w, u, dw, dv_new, dA_ab, "
             "dA_ak, dv and da_wy (16-byte copies; carve_backward_workspace's pieces are) and a 4-byte aligned "
             "rounded dv (chunk_backward's out.dv)");
    tensor_cores = false;  // Default: the FMA kernel takes any alignment
  }
  const ForwardInputs& f = in.fwd;
  const int K = static_cast<int>(f.K), V = static_cast<int>(f.V);
  const WYBwdArgs p{f.v, f.gk, A_ab_inv, A_ak, w, u, dw, dv_new, dv, dA_ab, dA_ak, shares.da_wy, dv_total, dv_rounded,
                    chunk_geom(f, C), f.H, K, V};
  if (tensor_cores) {
    launch_WY_bwd_mma(p, f, stream);
    return;
  }
  const std::size_t bytes = wy_bwd_smem(C, K, V);
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto g, auto c) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int CC = decltype(c)::value;
    set_smem(chunk_WY_bwd_kernel<T, G, CC>, bytes);
    chunk_WY_bwd_kernel<T, G, CC><<<chunk_grid(f, C), 256, bytes, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_WY_bwd_kernel");
}
}  // namespace

void chunk_WY_bwd(const BackwardInputs& in, int C, const float* A_ab_inv, const float* A_ak, const float* w,
                  const float* u, const float* dw, const float* dv_new, float* dA_ab, float* dA_ak, float* dv,
                  const GradientShares& shares, cudaStream_t stream) {
  wy_bwd(in, C, A_ab_inv, A_ak, w, u, dw, dv_new, dA_ab, dA_ak, dv, dv, nullptr, shares, stream);
}

namespace detail {
void chunk_WY_bwd_rounding_dv(const BackwardInputs& in, int C, const float* A_ab_inv, const float* A_ak, const float* w,
                              const float* u, const float* dw, const float* dv_new, float* dA_ab, float* dA_ak,
                              const float* dv, void* dv_rounded, const GradientShares& shares, cudaStream_t stream) {
  wy_bwd(in, C, A_ab_inv, A_ak, w, u, dw, dv_new, dA_ab, dA_ak, dv, nullptr, dv_rounded, shares, stream);
}
}  // namespace detail

}  // namespace dplr::gpu
