// Stage "o" of the chunk form (shared spec DPLR.md), per chunk (q already scaled, S = h of the chunk):
//     o = A_qk v + A_qb v_new + (q (.) exp(gi)) S
// qg = scale q (.) exp(gi) comes from stage A (exp(gi_r) <= 1). One block (256 threads) per (chunk, head, batch
// row); V in slabs of 64 columns, K in slabs of 32; fp32 FMA; o is rounded once to the input dtype (or
// written in fp32: OutputMode::Fp32).
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kVS = 64, kDS = 32;

struct OArgs {
  const void* v;
  const float *qg, *Aqk, *Aqb, *vnew, *h;
  void* o;
  bool o_fp32;  // OutputMode::Fp32
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

template <int C>
constexpr std::size_t o_smem() { return (2 * C * C + 2 * C * kVS + C * kDS + kDS * kVS) * sizeof(float); }

// Thread (rg, cc) of 4 x 64: column cc of the V slab, rows rg + 4 j (C / 4 of them). Rows of A and qg are read
// as float4 (one address across a warp: broadcasts).
template <typename T, int C>
__global__ void __launch_bounds__(256) chunk_o_kernel(OArgs p) {
  constexpr int CR = C / 4;
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* Aqk = sm;               // [C][C]
  float* Aqb = Aqk + C * C;      // [C][C]
  float* Vs = Aqb + C * C;       // [C][kVS]
  float* Vn = Vs + C * kVS;      // [C][kVS]
  float* Qg = Vn + C * kVS;      // [C][kDS]
  float* Sh = Qg + C * kDS;      // [kDS][kVS]

  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int cc = threadIdx.x % kVS, rg = threadIdx.x / kVS;
  const float* S = p.h + (ch.g * H + h) * K * V;

  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int r = e / C, s = e % C;
    const bool ok = r < ch.len && s <= r;
    const std::int64_t ix = ((ch.bos + r) * H + h) * C + s;
    Aqk[e] = ok ? p.Aqk[ix] : 0.f;
    Aqb[e] = ok ? p.Aqb[ix] : 0.f;
  }
  for (int v0 = 0; v0 < V; v0 += kVS) {
    float acc[CR];
#pragma unroll
    for (int j = 0; j < CR; ++j) acc[j] = 0.f;
    __syncthreads();
    for (int e = threadIdx.x; e < C * kVS; e += blockDim.x) {
      const int r = e / kVS, c = v0 + e % kVS;
      const bool ok = r < ch.len && c < V;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c, V) : 0;
      Vs[e] = ok ? ld<T>(p.v, ix) : 0.f;
      Vn[e] = ok ? p.vnew[ix] : 0.f;
    }
    __syncthreads();
#pragma unroll 2
    for (int s = 0; s < C; s += 4) {
      float vs[4], vn[4];
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        vs[m] = Vs[(s + m) * kVS + cc];
        vn[m] = Vn[(s + m) * kVS + cc];
      }
#pragma unroll
      for (int j = 0; j < CR; ++j) {
        const int r = rg + 4 * j;
        const float4 a = *reinterpret_cast<const float4*>(Aqk + r * C + s);
        const float4 bq = *reinterpret_cast<const float4*>(Aqb + r * C + s);
        acc[j] = fmaf(a.x, vs[0], fmaf(a.y, vs[1], fmaf(a.z, vs[2], fmaf(a.w, vs[3], acc[j]))));
        acc[j] = fmaf(bq.x, vn[0], fmaf(bq.y, vn[1], fmaf(bq.z, vn[2], fmaf(bq.w, vn[3], acc[j]))));
      }
    }
    for (int d0 = 0; d0 < K; d0 += kDS) {
      __syncthreads();
      for (int e = threadIdx.x; e < C * kDS; e += blockDim.x) {
        const int r = e / kDS, d = d0 + e % kDS;
        Qg[e] = (r < ch.len && d < K) ? p.qg[tix(ch.bos + r, h, H, d, K)] : 0.f;
      }
      for (int e = threadIdx.x; e < kDS * kVS; e += blockDim.x) {
        const int i = d0 + e / kVS, c = v0 + e % kVS;
        Sh[e] = (i < K && c < V) ? S[i * V + c] : 0.f;
      }
      __syncthreads();
#pragma unroll 2
      for (int i = 0; i < kDS; i += 4) {
        const float s0 = Sh[i * kVS + cc], s1 = Sh[(i + 1) * kVS + cc], s2 = Sh[(i + 2) * kVS + cc], s3 = Sh[(i + 3) * kVS + cc];
#pragma unroll
        for (int j = 0; j < CR; ++j) {
          const float4 q = *reinterpret_cast<const float4*>(Qg + (rg + 4 * j) * kDS + i);
          acc[j] = fmaf(q.x, s0, fmaf(q.y, s1, fmaf(q.z, s2, fmaf(q.w, s3, acc[j]))));
        }
      }
    }
    const int c = v0 + cc;
    if (c < V) {
#pragma unroll
      for (int j = 0; j < CR; ++j) {
        const int r = rg + 4 * j;
        if (r < ch.len) st_o<T>(p.o, tix(ch.bos + r, h, H, c, V), acc[j], p.o_fp32);
      }
    }
  }
}

template <typename T, int C>
void launch_o(const OArgs& p, dim3 grid, cudaStream_t stream) {
  set_smem(chunk_o_kernel<T, C>, o_smem<C>());
  chunk_o_kernel<T, C><<<grid, 256, o_smem<C>(), stream>>>(p);
}

}  // namespace

void chunk_o(const ForwardInputs& in, int C, const float* A_qk, const float* A_qb, const float* qg, const float* v_new,
             const float* h, void* o, cudaStream_t stream) {
  check_chunk(in, C);
  if (!A_qk || !A_qb || !qg || !v_new || !h || !o)
    throw Unsupported("dplr::gpu: chunk_o needs A_qk, A_qb, qg, v_new, h and o");
  OArgs p{in.v, qg, A_qk, A_qb, v_new, h, o, in.output == OutputMode::Fp32, chunk_geom(in, C), in.H,
          static_cast<int>(in.K), static_cast<int>(in.V)};
  const dim3 grid = chunk_grid(in, C);
  dispatch_types_and_chunk(in.dtype, in.gk_dtype, C, [&](auto t, auto, auto c) {
    launch_o<decltype(t), decltype(c)::value>(p, grid, stream);
  });
  DPLR_LAUNCHED("chunk_o_kernel");
}

}  // namespace dplr::gpu
