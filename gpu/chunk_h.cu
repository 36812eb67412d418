// Stage "h" of the chunk form (shared spec DPLR.md), chunk after chunk of one (sequence, head); S is the
// state before the chunk, gl = gi_last:
//     v_new = u + w S                      (v_new_r is exactly x_r of the recurrence)
//     S'    = diag(exp(gl)) S + (k (.) exp(gl - gi))^T v + (b (.) exp(gl - gi))^T v_new
// The gated operands kg = k (.) exp(gl - gi), bg = b (.) exp(gl - gi) and exp(gl) come from stage A
// (exponents <= 0 for gk <= 0), so this sequential stage holds only products.
// One block (256 threads) per (32 columns of V, head, sequence: batch row, or cu_seqlens' sequence); the state
// tile K x 32 lives in shared memory in fp32; h (the state before each chunk) and the final state are written
// from it. The next chunk's operands are fetched into registers while the current chunk is computed.
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kVT = 32, kThreads = 256;  // 16 columns a block (twice the blocks) measured slower: notes

struct HArgs {
  const void* v;
  const float *kg, *bg, *egl, *h0, *w, *u;
  float *h, *vnew, *ht;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

template <int C, int KMAX>
constexpr std::size_t h_smem() {
  return (std::size_t(KMAX) * (kVT + 1) + 3 * std::size_t(C) * KMAX + 3 * std::size_t(C) * kVT + KMAX) * sizeof(float);
}

// Thread (rg, cc) of 8 x 32: column cc of the tile; v_new rows rg + 8 j; state rows rg * KR .. + KR. Rows of
// the K-wide operands are KMAX long in shared memory (zero past K) and read as float4 (the same address
// across a warp: broadcasts).
template <typename T, int C, int KMAX>
__global__ void __launch_bounds__(kThreads, KMAX == 64 ? 2 : 1) chunk_h_kernel(HArgs p) {
  constexpr int RG = kThreads / kVT;       // 8 row groups
  constexpr int KR = KMAX / RG;            // state rows per thread
  constexpr int CR = C / RG;               // v_new rows per thread
  constexpr int NK = C * KMAX / kThreads;  // (row, i) pairs of a K-wide chunk operand per thread
  constexpr int NVv = C * kVT / kThreads;  // (row, column) pairs of a V-tile operand per thread
  constexpr bool kPrefetch = NK <= 16;     // C = 64 with K > 64 would need too many registers
  constexpr int LS = kVT + 1;
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* W = sm;                  // [C][KMAX]
  float* Kd = W + C * KMAX;       // [C][KMAX]
  float* Bd = Kd + C * KMAX;      // [C][KMAX]
  float* S = Bd + C * KMAX;       // [KMAX][LS]
  float* U = S + KMAX * LS;       // [C][kVT]
  float* Vv = U + C * kVT;        // [C][kVT]
  float* Vn = Vv + C * kVT;       // [C][kVT]
  float* egl = Vn + C * kVT;      // [KMAX]

  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const std::int64_t count = walked_chunks(p.geo, seq, C);
  const int c0 = vtile_of_block(p.geo) * kVT;
  const int cc = threadIdx.x % kVT, rg = threadIdx.x / kVT;
  const int col = c0 + cc;
  const std::int64_t nh = seq.n * H + h;

  float rw[NK], rk[NK], rb[NK], ru[NVv], rv[NVv], re = 0.f;
  auto fetch = [&](std::int64_t c) {
    const Chunk ch = chunk_in(seq, c, C);
#pragma unroll
    for (int j = 0; j < NK; ++j) {
      const int e = threadIdx.x + j * kThreads, r = e / KMAX, d = e % KMAX;
      const bool ok = r < ch.len && d < K;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, d, K) : 0;
      rw[j] = ok ? p.w[ix] : 0.f;
      rk[j] = ok ? p.kg[ix] : 0.f;
      rb[j] = ok ? p.bg[ix] : 0.f;
    }
#pragma unroll
    for (int j = 0; j < NVv; ++j) {
      const int e = threadIdx.x + j * kThreads, r = e / kVT, cx = e % kVT;
      const bool ok = r < ch.len && c0 + cx < V;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0;
      ru[j] = ok ? p.u[ix] : 0.f;
      rv[j] = ok ? ld<T>(p.v, ix) : 0.f;
    }
    if (threadIdx.x < KMAX) re = threadIdx.x < K ? p.egl[(ch.g * H + h) * K + threadIdx.x] : 0.f;
  };
  auto stash = [&]() {
#pragma unroll
    for (int j = 0; j < NK; ++j) {
      const int e = threadIdx.x + j * kThreads;
      W[e] = rw[j];
      Kd[e] = rk[j];
      Bd[e] = rb[j];
    }
#pragma unroll
    for (int j = 0; j < NVv; ++j) {
      const int e = threadIdx.x + j * kThreads;
      U[e] = ru[j];
      Vv[e] = rv[j];
    }
    if (threadIdx.x < KMAX) egl[threadIdx.x] = re;
  };

  float st[KR];  // this thread's state rows, also mirrored in S for the v_new products
#pragma unroll
  for (int m = 0; m < KR; ++m) {
    const int i = rg * KR + m;
    st[m] = (p.h0 && i < K && col < V) ? p.h0[(nh * K + i) * V + col] : 0.f;
    S[i * LS + cc] = st[m];
  }
  if (kPrefetch && count > 0) fetch(0);  // an empty sequence (cu_seqlens) has no chunk: ht = h0
  for (std::int64_t c = 0; c < count; ++c) {
    const Chunk ch = chunk_in(seq, c, C);
    if (!kPrefetch) fetch(c);
    __syncthreads();  // S final for chunk c; the previous chunk's operands no longer read
    stash();
    if (p.h && col < V) {
      float* hc = p.h + (ch.g * H + h) * K * V;
#pragma unroll
      for (int m = 0; m < KR; ++m)
        if (rg * KR + m < K) hc[(rg * KR + m) * V + col] = st[m];
    }
    __syncthreads();
    if (kPrefetch && c + 1 < count) fetch(c + 1);
    {  // v_new = u + w S
      float acc[CR];
#pragma unroll
      for (int j = 0; j < CR; ++j) acc[j] = U[(rg + j * RG) * kVT + cc];
#pragma unroll 4
      for (int i = 0; i < KMAX; i += 4) {
        const float s0 = S[i * LS + cc], s1 = S[(i + 1) * LS + cc], s2 = S[(i + 2) * LS + cc], s3 = S[(i + 3) * LS + cc];
#pragma unroll
        for (int j = 0; j < CR; ++j) {
          const float4 w4 = *reinterpret_cast<const float4*>(W + (rg + j * RG) * KMAX + i);
          acc[j] = fmaf(w4.x, s0, fmaf(w4.y, s1, fmaf(w4.z, s2, fmaf(w4.w, s3, acc[j]))));
        }
      }
#pragma unroll
      for (int j = 0; j < CR; ++j) {
        const int r = rg + j * RG;
        Vn[r * kVT + cc] = acc[j];
        if (r < ch.len && col < V) p.vnew[tix(ch.bos + r, h, H, col, V)] = acc[j];
      }
    }
    __syncthreads();
    {  // S' = diag(exp(gl)) S + kg^T v + bg^T v_new
#pragma unroll
      for (int m = 0; m < KR; ++m) st[m] *= egl[rg * KR + m];
#pragma unroll 2
      for (int r = 0; r < C; ++r) {
        const float vv = Vv[r * kVT + cc], vn = Vn[r * kVT + cc];
#pragma unroll
        for (int m = 0; m < KR; m += 4) {
          const float4 k4 = *reinterpret_cast<const float4*>(Kd + r * KMAX + rg * KR + m);
          const float4 b4 = *reinterpret_cast<const float4*>(Bd + r * KMAX + rg * KR + m);
          st[m] = fmaf(k4.x, vv, fmaf(b4.x, vn, st[m]));
          st[m + 1] = fmaf(k4.y, vv, fmaf(b4.y, vn, st[m + 1]));
          st[m + 2] = fmaf(k4.z, vv, fmaf(b4.z, vn, st[m + 2]));
          st[m + 3] = fmaf(k4.w, vv, fmaf(b4.w, vn, st[m + 3]));
        }
      }
#pragma unroll
      for (int m = 0; m < KR; ++m) S[(rg * KR + m) * LS + cc] = st[m];
    }
  }
  if (p.ht && col < V)
#pragma unroll
    for (int m = 0; m < KR; ++m)
      if (rg * KR + m < K) p.ht[(nh * K + rg * KR + m) * V + col] = st[m];
}

template <typename T, int C>
void launch_h(const HArgs& p, dim3 grid, cudaStream_t stream) {
  if (p.K <= 64) {
    set_smem(chunk_h_kernel<T, C, 64>, h_smem<C, 64>());
    chunk_h_kernel<T, C, 64><<<grid, kThreads, h_smem<C, 64>(), stream>>>(p);
  } else {
    set_smem(chunk_h_kernel<T, C, 128>, h_smem<C, 128>());
    chunk_h_kernel<T, C, 128><<<grid, kThreads, h_smem<C, 128>(), stream>>>(p);
  }
}

}  // namespace

void chunk_h(const ForwardInputs& in, int C, const float* kg, const float* bg, const float* eg_last, const float* w,
             const float* u, float* h, float* v_new, float* ht, cudaStream_t stream) {
  check_chunk(in, C);
  if (!kg || !bg || !eg_last || !w || !u || !v_new)
    throw Unsupported("dplr::gpu: chunk_h needs kg, bg, eg_last, w, u and v_new");
  HArgs p{in.v, kg, bg, eg_last, in.h0, w, u, h, v_new, ht, chunk_geom(in, C), in.H, static_cast<int>(in.K),
          static_cast<int>(in.V)};
  const dim3 grid = sequential_grid(in, (in.V + kVT - 1) / kVT);
  dispatch_types_and_chunk(in.dtype, in.gk_dtype, C, [&](auto t, auto, auto c) {
    launch_h<decltype(t), decltype(c)::value>(p, grid, stream);
  });
  DPLR_LAUNCHED("chunk_h_kernel");
}

}  // namespace dplr::gpu
