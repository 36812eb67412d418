// Stage "WY" of the chunk form (shared spec DPLR.md), per chunk:
//     A_ab_inv = (I - A_ab)^-1  (unit lower triangular),   w = A_ab_inv ag,   u = A_ab_inv (A_ak v)
// with ag = a (.) exp(ge) from stage A (ge_r <= 0, so the factor is <= 1 for any gk <= 0).
// The inverse is formed by forward substitution, one column a thread, in registers (no barrier between rows);
// then M = A_ab_inv A_ak (C x C), and w = A_ab_inv ag, u = M v are formed 64 columns at a time.
// One block (256 threads) per (chunk, head, batch row); fp32 FMA throughout.
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kDS = 64;

struct WYArgs {
  const void* v;
  const float* ag;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
  const float *Aab, *Aak;
  float *Ainv, *w, *u;
};

template <int C>
constexpr std::size_t wy_smem() { return (4 * C * (C + 1) + 2 * C * kDS) * sizeof(float); }

template <typename T, int C>
__global__ void __launch_bounds__(256) chunk_WY_kernel(WYArgs p) {
  constexpr int LA = C + 1, CR = C / 4;
  extern __shared__ float sm[];
  float* Aab = sm;
  float* Aak = Aab + C * LA;
  float* Ainv = Aak + C * LA;
  float* M = Ainv + C * LA;
  float* X = M + C * LA;   // [C][kDS] ag
  float* Y = X + C * kDS;  // [C][kDS] v

  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;

  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int r = e / C, s = e % C;
    const bool ok = r < ch.len && s < r;
    const std::int64_t ix = ((ch.bos + r) * H + h) * C + s;
    Aab[r * LA + s] = ok ? p.Aab[ix] : 0.f;
    Aak[r * LA + s] = ok ? p.Aak[ix] : 0.f;
  }
  __syncthreads();
  if (threadIdx.x < C) unit_lower_inverse_column<C>(Aab, LA, Ainv, LA, threadIdx.x);
  __syncthreads();
  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {  // M = A_ab_inv A_ak (strictly lower)
    const int r = e / C, c = e % C;
    float acc = 0.f;
    for (int s = c + 1; s <= r; ++s) acc = fmaf(Ainv[r * LA + s], Aak[s * LA + c], acc);
    M[r * LA + c] = acc;
    if (r < ch.len) p.Ainv[((ch.bos + r) * H + h) * C + c] = Ainv[r * LA + c];
  }
  const int cc = threadIdx.x % kDS, rg = threadIdx.x / kDS;
  const int D = p.K > p.V ? p.K : p.V;
  for (int d0 = 0; d0 < D; d0 += kDS) {
    __syncthreads();
    for (int e = threadIdx.x; e < C * kDS; e += blockDim.x) {
      const int r = e / kDS, d = d0 + e % kDS;
      const bool okr = r < ch.len;
      X[e] = (okr && d < p.K) ? p.ag[tix(ch.bos + r, h, H, d, p.K)] : 0.f;
      Y[e] = (okr && d < p.V) ? ld<T>(p.v, tix(ch.bos + r, h, H, d, p.V)) : 0.f;
    }
    __syncthreads();
    float aw[CR], au[CR];
#pragma unroll
    for (int j = 0; j < CR; ++j) aw[j] = au[j] = 0.f;
#pragma unroll 4
    for (int s = 0; s < C; ++s) {
      const float xs = X[s * kDS + cc], ys = Y[s * kDS + cc];
#pragma unroll
      for (int j = 0; j < CR; ++j) {
        const int r = rg + 4 * j;
        aw[j] = fmaf(Ainv[r * LA + s], xs, aw[j]);  // zero above the diagonal
        au[j] = fmaf(M[r * LA + s], ys, au[j]);
      }
    }
    const int d = d0 + cc;
#pragma unroll
    for (int j = 0; j < CR; ++j) {
      const int r = rg + 4 * j;
      if (r >= ch.len) continue;
      if (d < p.K) p.w[tix(ch.bos + r, h, H, d, p.K)] = aw[j];
      if (d < p.V) p.u[tix(ch.bos + r, h, H, d, p.V)] = au[j];
    }
  }
}

template <typename T, int C>
void launch_wy(const WYArgs& p, dim3 grid, cudaStream_t stream) {
  set_smem(chunk_WY_kernel<T, C>, wy_smem<C>());
  chunk_WY_kernel<T, C><<<grid, 256, wy_smem<C>(), stream>>>(p);
}

}  // namespace

void chunk_WY(const ForwardInputs& in, int C, const float* A_ab, const float* A_ak, const float* ag, float* A_ab_inv,
              float* w, float* u, cudaStream_t stream) {
  check_chunk(in, C);
  if (!A_ab || !A_ak || !ag || !A_ab_inv || !w || !u)
    throw Unsupported("dplr::gpu: chunk_WY needs A_ab, A_ak, ag, A_ab_inv, w and u");
  WYArgs p{in.v, ag, chunk_geom(in, C), in.H, static_cast<int>(in.K), static_cast<int>(in.V), A_ab, A_ak, A_ab_inv, w, u};
  const dim3 grid = chunk_grid(in, C);
  dispatch_types_and_chunk(in.dtype, in.gk_dtype, C, [&](auto t, auto, auto c) {
    launch_wy<decltype(t), decltype(c)::value>(p, grid, stream);
  });
  DPLR_LAUNCHED("chunk_WY_kernel");
}

}  // namespace dplr::gpu
