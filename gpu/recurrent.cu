// Fused recurrent forward of the DPLR delta rule (inference), shared spec DPLR.md:
//     x_t = S_{t-1}^T a_t ;  S_t = diag(exp(gk_t)) S_{t-1} + b_t x_t^T + k_t v_t^T ;  o_t = scale * S_t^T q_t
// Each column j of S (K x V) evolves alone (x_j, o_j and the update of column j read only column j), so a
// block owns 32 columns of one (sequence, head): a warp holds 8 columns, 4 lanes split each column's K rows
// (row i = r * 4 + lane / 8, R rows a lane, state in registers, fp32). Tokens are staged through shared
// memory TT at a time (double-buffered) (a, k, b, exp(gk) packed as float4, q, and the block's v columns); the two reductions
// over K per token are 2 shuffles each. Varlen, h0, ht, reverse and T == 1 (decode) are handled here.
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
        ra[j] = make_float4(ld<T>(p.a, ix), ld<T>(p.k, ix), ld<T>(p.b, ix), ld<G>(p.gk, ix));
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
        o = fmaf(S[r], qs[buf][tt][r * 4 + ks], o);
      }
      o += __shfl_xor_sync(0xffffffffu, o, 8);
      o += __shfl_xor_sync(0xffffffffu, o, 16);
      if (ks == 0 && col_ok) st<T>(p.o, tix(token(t0 + tt), h, H, col, V), o);
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
            in.T, in.H, static_cast<int>(in.K), static_cast<int>(in.V), in.resolved_scale(), reverse};
  const std::int64_t N = in.N();
  if (N > 65535 || in.H > 65535) throw Unsupported("dplr::gpu: fused_recurrent_forward needs N, H <= 65535");
  dim3 grid(static_cast<unsigned>((in.V + kCols - 1) / kCols), static_cast<unsigned>(in.H), static_cast<unsigned>(N));
  // Decode (T == 1, no varlen) stages one token a round: fewer registers, more blocks resident.
  const bool short_seqs = !in.cu_seqlens && in.T <= 2;
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
