// Fused recurrent forward of the DPLR delta rule (inference), shared spec DPLR.md:
//     x_t = S_{t-1}^T a_t ;  S_t = diag(exp(gk_t)) S_{t-1} + b_t x_t^T + k_t v_t^T ;  o_t = scale * S_t^T q_t
// Each column j of S (K x V) evolves alone (x_j, o_j and the update of column j read only column j), so a
// block owns 32 columns of one (sequence, head): a warp holds 8 columns, 4 lanes split each column's K rows
// (row i = r * 4 + lane / 8, R rows a lane, state in registers, fp32). Tokens are staged through shared
// memory TT at a time (double-buffered) (a, k, b, exp(gk) packed as float4, q, and the block's v columns); the two reductions
// over K per token are 2 shuffles each. Varlen, h0, ht, reverse and T == 1 (decode) are handled here.
#include <cstdint>

#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kCols = 32;      // columns per block
constexpr int kThreads = 128;  // 4 warps x 8 columns x 4 row-lanes

struct RecArgs {
  const void *q, *k, *v, *a, *b, *gk;
  const float* h0;
  const std::int64_t* cu;
  void* o;
  float* ht;
  std::int64_t T, H;
  bool o_fp32;  // OutputMode::Fp32
  PlantedDefect planted;  // None but in a -DDPLR_PLANT_DEFECTS=ON build
  int K, V;
  float scale;
  bool reverse;
};

// TT tokens are staged per round, double-buffered: the global loads of the next round are issued into
// registers before the current round is computed, and land in the other buffer after it.
// (Capping decode's registers for more resident blocks spilled at 80 registers; left uncapped.)
template <typename T, typename G, int R, int TT>
__global__ void __launch_bounds__(kThreads) recurrent_fwd_kernel(RecArgs p) {
  constexpr int KP = 4 * R;                               // padded K
  constexpr int NE = (TT * KP + kThreads - 1) / kThreads;  // staged (token, row) pairs per thread
  constexpr int NV = (TT * kCols + kThreads - 1) / kThreads;
  __shared__ float4 akbe[2][TT][KP];
  __shared__ float qs[2][TT][KP];
  __shared__ float vs[2][TT][kCols];

  const std::int64_t n = blockIdx.z, h = blockIdx.y;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int ks = lane >> 3;
  const int cb = warp * 8 + (lane & 7);          // column inside the block
  const int col = blockIdx.x * kCols + cb;       // column of S
  const bool col_ok = col < p.V;
  std::int64_t bos, eos;
  if (p.cu) {
    bos = p.cu[n];
    eos = p.cu[n + 1];
  } else {
    bos = n * p.T;
    eos = bos + p.T;
  }
  const int K = p.K, V = p.V;
  const std::int64_t H = p.H;
  const std::int64_t len = eos - bos;
  auto token = [&](std::int64_t step) { return p.reverse ? eos - 1 - step : bos + step; };

  float4 ra[NE];
  float rq[NE], rv[NV];
  auto fetch = [&](std::int64_t t0) {  // global -> registers
#pragma unroll
    for (int j = 0; j < NE; ++j) {
      const int e = threadIdx.x + j * kThreads, tt = e / KP, i = e % KP;
      ra[j] = make_float4(0.f, 0.f, 0.f, 0.f);
      rq[j] = 0.f;
      if (e < TT * KP && t0 + tt < len && i < K) {
        const std::int64_t ix = tix(token(t0 + tt), h, H, i, K);
        // (The planted HeadStride: k's token stride K instead of H K, right only at H = 1.)
        const std::int64_t kx = planted(p.planted, PlantedDefect::HeadStride) ? (token(t0 + tt) + h) * K + i : ix;
        ra[j] = make_float4(ld<T>(p.a, ix), ld<T>(p.k, kx), ld<T>(p.b, ix), ld<G>(p.gk, ix));
        rq[j] = ld<T>(p.q, ix);
      }
    }
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int e = threadIdx.x + j * kThreads, tt = e / kCols, c = blockIdx.x * kCols + e % kCols;
      rv[j] = (e < TT * kCols && t0 + tt < len && c < V) ? ld<T>(p.v, tix(token(t0 + tt), h, H, c, V)) : 0.f;
    }
  };
  auto stash = [&](int buf) {  // registers -> shared (exp of gk, scale of q)
#pragma unroll
    for (int j = 0; j < NE; ++j) {
      const int e = threadIdx.x + j * kThreads;
      if (e < TT * KP) {
        float4 x = ra[j];
        x.w = expf(x.w);
        akbe[buf][e / KP][e % KP] = x;
        qs[buf][e / KP][e % KP] = rq[j] * p.scale;
      }
    }
#pragma unroll
    for (int j = 0; j < NV; ++j) {
      const int e = threadIdx.x + j * kThreads;
      if (e < TT * kCols) vs[buf][e / kCols][e % kCols] = rv[j];
    }
  };

  float S[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int i = r * 4 + ks;
    S[r] = (p.h0 && col_ok && i < K) ? p.h0[((n * H + h) * K + i) * V + col] : 0.f;
  }

  int buf = 0;
  if (len > 0) {
    fetch(0);
    stash(0);
  }
  __syncthreads();
  for (std::int64_t t0 = 0; t0 < len; t0 += TT) {
    const int nt = static_cast<int>(len - t0 < TT ? len - t0 : TT);
    const bool more = t0 + TT < len;
    if (more) fetch(t0 + TT);
    for (int tt = 0; tt < nt; ++tt) {
      float x = 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) x = fmaf(S[r], akbe[buf][tt][r * 4 + ks].x, x);
      x += __shfl_xor_sync(0xffffffffu, x, 8);
      x += __shfl_xor_sync(0xffffffffu, x, 16);
      const float vv = vs[buf][tt][cb];
      float o = 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float4 pk = akbe[buf][tt][r * 4 + ks];
        S[r] = fmaf(S[r], pk.w, fmaf(pk.z, x, pk.y * vv));
        if (planted(p.planted, PlantedDefect::Bf16State)) S[r] = __bfloat162float(__float2bfloat16_rn(S[r]));
        o = fmaf(S[r], qs[buf][tt][r * 4 + ks], o);
      }
      o += __shfl_xor_sync(0xffffffffu, o, 8);
      o += __shfl_xor_sync(0xffffffffu, o, 16);
      if (ks == 0 && col_ok) st_o<T>(p.o, tix(token(t0 + tt), h, H, col, V), o, p.o_fp32);
    }
    if (more) stash(buf ^ 1);
    __syncthreads();
    buf ^= 1;
  }
  if (p.ht && col_ok) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = r * 4 + ks;
      if (i < K) p.ht[((n * H + h) * K + i) * V + col] = S[r];
    }
  }
}

// Decode (T == 1, no varlen, V % 4 == 0, 16-byte aligned h0/ht): one block of 128 threads per (64 columns,
// head, sequence); thread t owns column group cg = t % 16 (4 columns, read and written as float4, so a warp
// moves 2 full 256-byte row segments an instruction) and rows rl + 8 m (rl = t / 16, m < KR). The state is
// read once and written once; the two reductions over K are a shuffle (2 row lanes a warp) and 4 warp
// partials through shared memory, summed in a fixed order. KR = 8 (K <= 64) keeps the kernel at <= 64
// registers, so all 1024 blocks of B64 H16 D64 are resident at once (8 blocks an SM).
constexpr int kDecCols = 64, kDecThreads = 128;

// The decode block's sum over its 8 row lanes for column group cg: a shuffle (2 row lanes a warp), then the 4
// warps' partials through red, added in a fixed order. Every thread gets its group's sum.
__device__ __forceinline__ float4 decode_row_sum(float4 v, float4 (*red)[16], int warp, int cg) {
  v.x += __shfl_xor_sync(0xffffffffu, v.x, 16);
  v.y += __shfl_xor_sync(0xffffffffu, v.y, 16);
  v.z += __shfl_xor_sync(0xffffffffu, v.z, 16);
  v.w += __shfl_xor_sync(0xffffffffu, v.w, 16);
  if ((threadIdx.x & 16) == 0) red[warp][cg] = v;
  __syncthreads();
  const float4 r0 = red[0][cg], r1 = red[1][cg], r2 = red[2][cg], r3 = red[3][cg];
  return make_float4((r0.x + r1.x) + (r2.x + r3.x), (r0.y + r1.y) + (r2.y + r3.y), (r0.z + r1.z) + (r2.z + r3.z),
                     (r0.w + r1.w) + (r2.w + r3.w));
}

template <typename T, typename G, int KR>
__global__ void __launch_bounds__(kDecThreads, KR <= 8 ? 8 : 4) decode_kernel(RecArgs p) {
  constexpr int KP = 8 * KR;
  __shared__ float4 akbe[KP];
  __shared__ float qs[KP];
  __shared__ __align__(16) float vs[kDecCols];
  __shared__ float4 redx[4][16], redo[4][16];
  const std::int64_t n = blockIdx.z, h = blockIdx.y, H = p.H;
  const int K = p.K, V = p.V;
  const int cg = threadIdx.x & 15, rl = threadIdx.x >> 4, warp = threadIdx.x >> 5;
  const int col = blockIdx.x * kDecCols + cg * 4;
  const bool col_ok = col < V;  // V % 4 == 0: a group is wholly inside or outside
  const std::int64_t sbase = (n * H + h) * K * V + col;
  const int rstride = 8 * V;  // floats between a thread's state rows
  float4 S[KR];
  {
    const float* hp = p.h0 ? p.h0 + sbase + rl * V : nullptr;
#pragma unroll
    for (int m = 0; m < KR; ++m)
      S[m] = (hp && col_ok && rl + 8 * m < K) ? __ldg(reinterpret_cast<const float4*>(hp + m * rstride))
                                              : make_float4(0.f, 0.f, 0.f, 0.f);
  }
  const std::int64_t tok = n;  // T == 1
  for (int e = threadIdx.x; e < KP; e += kDecThreads) {
    const bool ok = e < K;
    const std::int64_t ix = ok ? tix(tok, h, H, e, K) : 0;
    akbe[e] = ok ? make_float4(ld<T>(p.a, ix), ld<T>(p.k, ix), ld<T>(p.b, ix), expf(ld<G>(p.gk, ix)))
                 : make_float4(0.f, 0.f, 0.f, 0.f);
    qs[e] = ok ? ld<T>(p.q, ix) * p.scale : 0.f;
  }
  if (threadIdx.x < kDecCols) {
    const int c = blockIdx.x * kDecCols + threadIdx.x;
    vs[threadIdx.x] = c < V ? ld<T>(p.v, tix(tok, h, H, c, V)) : 0.f;
  }
  __syncthreads();
  float4 x = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int m = 0; m < KR; ++m) {
    const float a = akbe[rl + 8 * m].x;
    x.x = fmaf(S[m].x, a, x.x);
    x.y = fmaf(S[m].y, a, x.y);
    x.z = fmaf(S[m].z, a, x.z);
    x.w = fmaf(S[m].w, a, x.w);
  }
  x = decode_row_sum(x, redx, warp, cg);
  const float4 vv = *reinterpret_cast<const float4*>(vs + cg * 4);
  float4 o = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
  for (int m = 0; m < KR; ++m) {
    const int i = rl + 8 * m;
    const float4 pk = akbe[i];
    const float q = qs[i];
    S[m].x = fmaf(S[m].x, pk.w, fmaf(pk.z, x.x, pk.y * vv.x));
    S[m].y = fmaf(S[m].y, pk.w, fmaf(pk.z, x.y, pk.y * vv.y));
    S[m].z = fmaf(S[m].z, pk.w, fmaf(pk.z, x.z, pk.y * vv.z));
    S[m].w = fmaf(S[m].w, pk.w, fmaf(pk.z, x.w, pk.y * vv.w));
    o.x = fmaf(S[m].x, q, o.x);
    o.y = fmaf(S[m].y, q, o.y);
    o.z = fmaf(S[m].z, q, o.z);
    o.w = fmaf(S[m].w, q, o.w);
  }
  if (p.ht && col_ok) {
    float* hp = p.ht + sbase + rl * V;
#pragma unroll
    for (int m = 0; m < KR; ++m)
      if (rl + 8 * m < K) *reinterpret_cast<float4*>(hp + m * rstride) = S[m];
  }
  o = decode_row_sum(o, redo, warp, cg);
  if (threadIdx.x < 16 && col_ok) {
    const std::int64_t ix = tix(tok, h, H, col, V);
    st_o<T>(p.o, ix, o.x, p.o_fp32);
    st_o<T>(p.o, ix + 1, o.y, p.o_fp32);
    st_o<T>(p.o, ix + 2, o.z, p.o_fp32);
    st_o<T>(p.o, ix + 3, o.w, p.o_fp32);
  }
}

template <typename T, typename G, int R>
void launch_rec(const RecArgs& p, dim3 grid, bool short_seqs, cudaStream_t stream) {
  if (short_seqs)
    recurrent_fwd_kernel<T, G, R, 1><<<grid, kThreads, 0, stream>>>(p);
  else
    recurrent_fwd_kernel<T, G, R, 8><<<grid, kThreads, 0, stream>>>(p);
}

}  // namespace

void fused_recurrent_forward(const ForwardInputs& in, void* o, float* ht, bool reverse, cudaStream_t stream) {
  check_inputs(in);
  if (!o) throw Unsupported("dplr::gpu: fused_recurrent_forward needs an output pointer o");
  RecArgs p{in.q, in.k, in.v, in.a, in.b, in.gk, in.h0, in.cu_seqlens, o, ht,
            in.T, in.H, in.output == OutputMode::Fp32, in.planted, static_cast<int>(in.K), static_cast<int>(in.V),
            in.resolved_scale(), reverse};
  const std::int64_t N = in.N();
  if (N > 65535 || in.H > 65535) throw Unsupported("dplr::gpu: fused_recurrent_forward needs N, H <= 65535");
  dim3 grid(static_cast<unsigned>((in.V + kCols - 1) / kCols), static_cast<unsigned>(in.H), static_cast<unsigned>(N));
  // Decode (T == 1, no varlen) stages one token a round: fewer registers, more blocks resident.
  const bool short_seqs = !in.cu_seqlens && in.T <= 2;
  const bool aligned16 = (reinterpret_cast<std::uintptr_t>(in.h0) % 16 == 0) && (reinterpret_cast<std::uintptr_t>(ht) % 16 == 0);
  if (!in.cu_seqlens && in.T == 1 && in.V % 4 == 0 && aligned16) {
    dim3 dgrid(static_cast<unsigned>((in.V + kDecCols - 1) / kDecCols), static_cast<unsigned>(in.H), static_cast<unsigned>(N));
    dispatch_types(in.dtype, in.gk_dtype, [&](auto t, auto g) {
      using T = decltype(t);
      using G = decltype(g);
      if (in.K <= 32) decode_kernel<T, G, 4><<<dgrid, kDecThreads, 0, stream>>>(p);
      else if (in.K <= 64) decode_kernel<T, G, 8><<<dgrid, kDecThreads, 0, stream>>>(p);
      else decode_kernel<T, G, 16><<<dgrid, kDecThreads, 0, stream>>>(p);
    });
    DPLR_LAUNCHED("decode_kernel");
    return;
  }
  dispatch_types(in.dtype, in.gk_dtype, [&](auto t, auto g) {
    using T = decltype(t);
    using G = decltype(g);
    if (in.K <= 32) launch_rec<T, G, 8>(p, grid, short_seqs, stream);
    else if (in.K <= 64) launch_rec<T, G, 16>(p, grid, short_seqs, stream);
    else launch_rec<T, G, 32>(p, grid, short_seqs, stream);
  });
  DPLR_LAUNCHED("recurrent_fwd_kernel");
}

}  // namespace dplr::gpu
