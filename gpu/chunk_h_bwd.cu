// Stage "h_bwd" of the chunk backward (reference/chunk_h_bwd.hpp). dS' = dL/dS at the end of a chunk (dht for a
// sequence's last chunk), S = h of the chunk (the state before it), gl = gi of the chunk's last token:
//     dv_new = dv_new_o + bg dS'                  (= du: v_new = u + w S)
//     dv    += kg dS'
//     dS     = diag(exp(gl)) dS' + w^T dv_new + dh_o     (dL/dS at the chunk's start = dS' of the chunk before;
//                                                         dh0 at a sequence's first chunk)
//     dw     = dv_new S^T
//     dk_h   = (v dS'^T) (.) exp(gl - gi),   db_h = (v_new dS'^T) (.) exp(gl - gi)
//     d_chunk_decay = exp(gl) (.) rowsum(S (.) dS')
// Two kernels. The sequential one walks a sequence's chunks from the last, one block (256 threads) per (32
// columns of V, head, sequence), the K x 32 tile of dS in shared memory (as chunk_h's state), and writes dh,
// dv_new, dv and dh0; the gated operands kg, bg, exp(gl) come from stage A. The per-chunk one forms the
// products that sum over all of V (dw, dk_h, db_h, d_chunk_decay) from the stored dh, so that no V tile
// needs another's partial sums: one block (256 threads) per (chunk, head, batch row), exp(gl - gi) from the
// fp64 in-chunk sums of gk (for_chunk_log2_cumsum), each factor the exponential of a difference.
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kVT = 32, kThreads = 256, kRG = kThreads / kVT;  // 8 row groups, one warp each

struct HBwdArgs {
  const float *kg, *bg, *egl, *w, *dvnew_o, *dh_o, *dht;
  float *dh, *dvnew, *dv, *dh0;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

// Thread (rg, cc) of 8 x 32: column cc of the tile; dv_new rows rg + 8 j, dS rows rg + 8 m. rg is the warp, so the
// rows of kg, bg and w a warp reads are one address (broadcasts).
template <int C, int KMAX>
__global__ void __launch_bounds__(kThreads) chunk_h_bwd_kernel(HBwdArgs p) {
  constexpr int LS = kVT + 1, KR = KMAX / kRG, CR = C / kRG;
  __shared__ float dS[KMAX * LS];  // dS' of the chunk being processed
  __shared__ float Dvn[C * kVT];   // its dv_new
  const int K = p.K, V = p.V;
  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const int cc = threadIdx.x % kVT, rg = threadIdx.x / kVT;
  const int col = vtile_of_block(p.geo) * kVT + cc;
  const bool colok = col < V;
  const std::int64_t nh = seq.n * H + h;

  float st[KR];  // this thread's rows of dS, mirrored in shared memory for the dv_new products
#pragma unroll
  for (int m = 0; m < KR; ++m) {
    const int i = rg + kRG * m;
    st[m] = (p.dht && i < K && colok) ? p.dht[(nh * K + i) * V + col] : 0.f;
    dS[i * LS + cc] = st[m];
  }
  for (std::int64_t c = seq.count - 1; c >= 0; --c) {  // an empty sequence (cu_seqlens) has none: dh0 = dht
    const Chunk ch = chunk_in(seq, c, C);
    const std::int64_t base = (ch.g * H + h) * K * V;
    __syncthreads();  // dS' of this chunk complete; the later chunk's Dvn no longer read
    if (colok)
#pragma unroll
      for (int m = 0; m < KR; ++m)
        if (rg + kRG * m < K) p.dh[base + (rg + kRG * m) * V + col] = st[m];
#pragma unroll
    for (int j = 0; j < CR; ++j) {  // dv_new = dv_new_o + bg dS', dv += kg dS'
      const int r = rg + kRG * j;
      float dvn = 0.f;
      if (r < ch.len) {
        const std::int64_t row = (ch.bos + r) * H + h;
        float dvk = 0.f;
        for (int i = 0; i < K; ++i) {
          const float s = dS[i * LS + cc];
          dvn = fmaf(p.bg[row * K + i], s, dvn);
          dvk = fmaf(p.kg[row * K + i], s, dvk);
        }
        if (colok) {
          const std::int64_t ix = row * V + col;
          dvn = p.dvnew_o[ix] + dvn;
          p.dvnew[ix] = dvn;
          p.dv[ix] += dvk;
        } else {
          dvn = 0.f;
        }
      }
      Dvn[r * kVT + cc] = dvn;
    }
    __syncthreads();
#pragma unroll
    for (int m = 0; m < KR; ++m) {  // dS = diag(exp(gl)) dS' + w^T dv_new + dh_o
      const int i = rg + kRG * m;
      if (i >= K) continue;
      float acc = p.egl[(ch.g * H + h) * K + i] * st[m];
      for (int r = 0; r < ch.len; ++r) acc = fmaf(p.w[((ch.bos + r) * H + h) * K + i], Dvn[r * kVT + cc], acc);
      if (colok) acc += p.dh_o[base + i * V + col];
      st[m] = acc;
      dS[i * LS + cc] = acc;
    }
  }
  if (p.dh0 && colok)
#pragma unroll
    for (int m = 0; m < KR; ++m)
      if (rg + kRG * m < K) p.dh0[(nh * K + rg + kRG * m) * V + col] = st[m];
}

struct HBwdChunkArgs {
  const void *v, *gk;
  const float *h, *dh, *vnew, *dvnew;
  float *dw, *dk_h, *db_h, *dcd;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

std::size_t h_bwd_chunk_smem(int C, int K) { return 2 * std::size_t(C) * K * sizeof(float); }

template <typename T, typename G, int C>
__global__ void __launch_bounds__(256) chunk_h_bwd_chunk_kernel(HBwdChunkArgs p) {
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* gh = sm;          // [C][K] in-chunk sums of gk, log2 units, hi word
  float* gl = gh + C * K;  // lo word
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int L = ch.len;
  for_chunk_log2_cumsum<G>(p.gk, ch, h, H, K, [&](int r, int d, float2 g) {
    gh[r * K + d] = g.x;
    gl[r * K + d] = g.y;
  });
  __syncthreads();
  const std::int64_t base = (ch.g * H + h) * K * V;
  const float* S = p.h + base;
  const float* dSp = p.dh + base;
  for (int e = threadIdx.x; e < L * K; e += blockDim.x) {
    const int r = e / K, i = e % K;
    float dw = 0.f, dkg = 0.f, dbg = 0.f;
    for (int j = 0; j < V; ++j) {
      const std::int64_t ix = tix(ch.bos + r, h, H, j, V);
      dw = fmaf(p.dvnew[ix], S[i * V + j], dw);
      dkg = fmaf(ld<T>(p.v, ix), dSp[i * V + j], dkg);
      dbg = fmaf(p.vnew[ix], dSp[i * V + j], dbg);
    }
    const float to_end = exp2_diff_exact_scale(make_float2(gh[(L - 1) * K + i], gl[(L - 1) * K + i]),
                                   make_float2(gh[r * K + i], gl[r * K + i]));
    const std::int64_t ix = tix(ch.bos + r, h, H, i, K);
    p.dw[ix] = dw;
    p.dk_h[ix] = dkg * to_end;
    p.db_h[ix] = dbg * to_end;
  }
  for (int i = threadIdx.x; i < K; i += blockDim.x) {
    float acc = 0.f;
    for (int j = 0; j < V; ++j) acc = fmaf(S[i * V + j], dSp[i * V + j], acc);
    p.dcd[(ch.g * H + h) * K + i] = acc * exp2_split(make_float2(gh[(L - 1) * K + i], gl[(L - 1) * K + i]));
  }
}

}  // namespace

void chunk_h_bwd(const BackwardInputs& in, int C, const float* kg, const float* bg, const float* eg_last,
                 const float* w, const float* h, const float* v_new, float* dh, float* dv_new, float* dw, float* dv,
                 float* dh0, const GradientShares& shares, cudaStream_t stream) {
  check_backward(in, C);
  if (!kg || !bg || !eg_last || !w || !h || !v_new)
    refuse("chunk_h_bwd needs the forward's kg, bg, eg_last, w, h and v_new");
  if (!shares.dv_new_o || !shares.dh_o) refuse("chunk_h_bwd needs o_bwd's shares dv_new_o and dh_o");
  if (!dh || !dv_new || !dw || !dv || !shares.dk_h || !shares.db_h || !shares.d_chunk_decay)
    refuse("chunk_h_bwd needs dh, dv_new, dw, dv (o_bwd's share in it) and the shares dk_h, db_h, d_chunk_decay");
  const ForwardInputs& f = in.fwd;
  const int K = static_cast<int>(f.K), V = static_cast<int>(f.V);
  const ChunkGeom geo = chunk_geom(f, C);
  const HBwdArgs p{kg, bg, eg_last, w, shares.dv_new_o, shares.dh_o, in.dht, dh, dv_new, dv, dh0, geo, f.H, K, V};
  const dim3 grid = sequential_grid(f, (V + kVT - 1) / kVT);
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto, auto, auto c) {
    constexpr int CC = decltype(c)::value;
    if (K <= 64) chunk_h_bwd_kernel<CC, 64><<<grid, kThreads, 0, stream>>>(p);
    else chunk_h_bwd_kernel<CC, 128><<<grid, kThreads, 0, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_h_bwd_kernel");
  const HBwdChunkArgs q{f.v, f.gk, h, dh, v_new, dv_new, dw, shares.dk_h, shares.db_h, shares.d_chunk_decay, geo, f.H, K, V};
  const std::size_t bytes = h_bwd_chunk_smem(C, K);
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto g, auto c) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int CC = decltype(c)::value;
    set_smem(chunk_h_bwd_chunk_kernel<T, G, CC>, bytes);
    chunk_h_bwd_chunk_kernel<T, G, CC><<<chunk_grid(f, C), 256, bytes, stream>>>(q);
  });
  DPLR_LAUNCHED("chunk_h_bwd_chunk_kernel");
}

}  // namespace dplr::gpu
