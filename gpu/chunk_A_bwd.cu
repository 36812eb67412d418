// Stage "A_bwd" of the chunk backward (reference/chunk_A_bwd.hpp and decayed_products_bwd in
// reference/chunk_common.hpp), per chunk; q is the scaled q, e[r,s,d] = exp(gi_rd - gi_sd) for A_qk, A_qb
// (s <= r) and exp(ge_rd - gi_sd) = exp(gi_{r-1,d} - gi_sd) for A_ak, A_ab (s < r):
//     dq_A[r] = sum_{s<=r} (dA_qk[r,s] k_s + dA_qb[r,s] b_s) (.) e[r,s]
//     da_A[r] = sum_{s< r} (dA_ak[r,s] k_s + dA_ab[r,s] b_s) (.) e[r,s]
//     dk_A[s] = sum_{r>=s} dA_qk[r,s] q_r (.) e[r,s] + sum_{r>s} dA_ak[r,s] a_r (.) e[r,s];   db_A likewise
//     dgk_A[t] = sum over the entries whose exponent contains gk_t (s < t <= r for A_qk, A_qb; s < t < r for
//                A_ak, A_ab) of the entry's term dA[r,s] x_r (.) y_s (.) e[r,s]
// and the fp32 totals dq = scale (dq_o + dq_A), dk = dk_h + dk_A, da = da_wy + da_A, db = db_h + db_A.
// dgk_A sums only the entries that span t (suffix sums over r of each column s, as the oracle), so nothing
// cancels under strong decay. Each factor is the exponential of a difference of the fp64 in-chunk sums
// (for_chunk_log2_cumsum), never exp(gi_r) * exp(-gi_s).
// One block per (chunk, head, batch row), one thread per key channel d (every sum above stays inside a
// channel): the four dA matrices and the sums in shared memory, the thread's own column of the accumulators dx
// and dgk_A in shared memory too; dk and db are accumulated in their global rows by their own thread (the
// A_qk/A_qb group first, then A_ak/A_ab, then the h stage's share), so every sum has a fixed order.
// At C = 16 with 16-bit inputs the default is the tensor-core kernel of chunk_A_bwd_mma.cu (BackwardVariant::a);
// chunk_A_cumsum_bwd, the driver's call, runs it fused with stage cumsum_bwd (dgk written directly) and writes dq, dk,
// da, db in the inputs' dtype (no fp32 totals, no rounding passes).
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace detail {
// chunk_A_bwd_mma.cu: the tensor-core kernel (dgk is the share dgk_A, or with `fused` dgk itself).
// With `fused`, dq, dk, da, db are written in the inputs' dtype (else the fp32 totals).
void chunk_A_bwd_mma(const BackwardInputs& in, int C, const float* dA_qk, const float* dA_qb, const float* dA_ak,
                     const float* dA_ab, void* dq, void* dk, void* da, void* db, float* dgk, bool fused,
                     const GradientShares& shares, cudaStream_t stream);
}  // namespace detail
namespace {
using namespace detail;

constexpr int kThreads = kMaxHeadDim;  // one thread a key channel

struct ABwdArgs {
  const void *q, *k, *a, *b, *gk;
  const float *dAqk, *dAqb, *dAak, *dAab;
  const float *dq_o, *dk_h, *db_h, *da_wy;
  float *dq, *dk, *da, *db, *dgk_A;
  ChunkGeom geo;
  std::int64_t H;
  int K;
  float scale;
};

std::size_t a_bwd_smem(int C, int K) { return (4 * std::size_t(C) * C + 4 * std::size_t(C) * K) * sizeof(float); }

// One causal group of decayed_products_bwd for channel d: x = q (scaled; Inclusive, shift 0) or a (Strict,
// shift 1), y1 = k, y2 = b. Adds to dx (shared, [C][K]), dgk (shared, [C][K]) and the global rows dy1, dy2
// (stored when `first`, else added).
template <typename T, int C, int kShift>
__device__ void decayed_products_bwd_column(const ABwdArgs& p, const Chunk& ch, std::int64_t h, int d, const void* x,
                                            float x_scale, const float* dp1, const float* dp2, const float* gh,
                                            const float* gl, float* dx, float* dgk, bool first) {
  const int K = p.K, L = ch.len;
  const std::int64_t H = p.H;
  for (int s = 0; s < L; ++s) {
    const std::int64_t is = tix(ch.bos + s, h, H, d, K);
    const float y1 = ld<T>(p.k, is), y2 = ld<T>(p.b, is);
    const float2 gs = make_float2(gh[s * K + d], gl[s * K + d]);
    float dy1 = 0.f, dy2 = 0.f, running = 0.f;  // running: sum_{r' >= r} term[r', s]
    for (int r = L - 1; r >= s + kShift; --r) {
      const int rd = r - kShift;  // the decay row: gi_r, or ge_r = gi_{r-1}
      const float e = exp2_diff_exact_scale(make_float2(gh[rd * K + d], gl[rd * K + d]), gs);
      const float xr = ld<T>(x, tix(ch.bos + r, h, H, d, K)) * x_scale;
      float g1 = dp1[r * C + s] * e;
      const float g2 = dp2[r * C + s] * e;
      dy1 = fmaf(g1, xr, dy1);
      dy2 = fmaf(g2, xr, dy2);
      g1 *= y1;
      g1 = fmaf(g2, y2, g1);  // the entry's contribution to dx_r
      dx[r * K + d] += g1;
      running = fmaf(g1, xr, running);
      if (rd > s) dgk[rd * K + d] += running;  // t = r - shift spans s < t <= r - shift
    }
    if (first) {
      p.dk[is] = dy1;
      p.db[is] = dy2;
    } else {
      p.dk[is] += dy1;
      p.db[is] += dy2;
    }
  }
}

// The same group for C = 16 with the thread's column in registers (gi hi / lo, x, dx, dgk: loops unrolled over
// the chunk's 16 rows, L guarding them): the operations and their order are decayed_products_bwd_column's, without
// its shared-memory read-modify-writes and reloads of x (session 7).
template <int C, int kShift>
__device__ __forceinline__ void decayed_products_bwd_regs(const ABwdArgs& p, const Chunk& ch, std::int64_t h, int d,
                                                          const float (&x)[C], const float* dp1, const float* dp2,
                                                          const float (&gh)[C], const float (&gl)[C], const float (&y1s)[C],
                                                          const float (&y2s)[C], float (&dx)[C], float (&dgk)[C],
                                                          bool first) {
  const int L = ch.len;
  const std::int64_t H = p.H;
#pragma unroll
  for (int s = 0; s < C; ++s) {
    if (s >= L) break;
    const std::int64_t is = tix(ch.bos + s, h, H, d, p.K);
    const float y1 = y1s[s], y2 = y2s[s];
    const float2 gs = make_float2(gh[s], gl[s]);
    float dy1 = 0.f, dy2 = 0.f, running = 0.f;
#pragma unroll
    for (int r = C - 1; r >= s + kShift; --r) {
      if (r >= L) continue;
      const int rd = r - kShift;
      const float e = exp2_diff_exact_scale(make_float2(gh[rd], gl[rd]), gs);
      const float xr = x[r];
      float g1 = dp1[r * C + s] * e;
      const float g2 = dp2[r * C + s] * e;
      dy1 = fmaf(g1, xr, dy1);
      dy2 = fmaf(g2, xr, dy2);
      g1 *= y1;
      g1 = fmaf(g2, y2, g1);
      dx[r] += g1;
      running = fmaf(g1, xr, running);
      if (rd > s) dgk[rd] += running;
    }
    if (first) {
      p.dk[is] = dy1;
      p.db[is] = dy2;
    } else {
      p.dk[is] += dy1;
      p.db[is] += dy2;
    }
  }
}

template <typename T, typename G, int C>
__global__ void __launch_bounds__(kThreads) chunk_A_bwd_kernel(ABwdArgs p) {
  const int K = p.K;
  extern __shared__ __align__(16) float sm[];
  float* dAqk = sm;            // [C][C], zero outside the masks and the chunk
  float* dAqb = dAqk + C * C;
  float* dAak = dAqb + C * C;
  float* dAab = dAak + C * C;
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int L = ch.len;
  for (int e = threadIdx.x; e < C * C; e += blockDim.x) {
    const int r = e / C, s = e % C;
    const bool incl = r < L && s <= r, strict = r < L && s < r;
    const std::int64_t ix = ((ch.bos + r) * H + h) * C + s;
    dAqk[e] = incl ? p.dAqk[ix] : 0.f;
    dAqb[e] = incl ? p.dAqb[ix] : 0.f;
    dAak[e] = strict ? p.dAak[ix] : 0.f;
    dAab[e] = strict ? p.dAab[ix] : 0.f;
  }
  if constexpr (C == 16) {  // the column in registers
    __syncthreads();
    for (int d = threadIdx.x; d < K; d += blockDim.x) {
      float gh[C], gl[C], xq[C], xa[C], y1[C], y2[C], dx[C], dgk[C];
      double acc = 0.0;  // for_chunk_log2_cumsum's sums, in its order
#pragma unroll
      for (int r = 0; r < C; ++r) {
        gh[r] = gl[r] = xq[r] = xa[r] = y1[r] = y2[r] = dx[r] = dgk[r] = 0.f;
        if (r < L) {
          const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
          acc += static_cast<double>(ld<G>(p.gk, ix));
          const float2 g = split_log2(acc);
          gh[r] = g.x;
          gl[r] = g.y;
          xq[r] = ld<T>(p.q, ix) * p.scale;
          xa[r] = ld<T>(p.a, ix) * 1.f;
          y1[r] = ld<T>(p.k, ix);
          y2[r] = ld<T>(p.b, ix);
        }
      }
      decayed_products_bwd_regs<C, 0>(p, ch, h, d, xq, dAqk, dAqb, gh, gl, y1, y2, dx, dgk, true);
#pragma unroll
      for (int r = 0; r < C; ++r) {
        if (r >= L) break;
        const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
        p.dq[ix] = (p.dq_o[ix] + dx[r]) * p.scale;
        dx[r] = 0.f;
      }
      decayed_products_bwd_regs<C, 1>(p, ch, h, d, xa, dAak, dAab, gh, gl, y1, y2, dx, dgk, false);
#pragma unroll
      for (int r = 0; r < C; ++r) {
        if (r >= L) break;
        const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
        p.da[ix] = p.da_wy[ix] + dx[r];
        p.dk[ix] = p.dk_h[ix] + p.dk[ix];
        p.db[ix] = p.db_h[ix] + p.db[ix];
        p.dgk_A[ix] = dgk[r];
      }
    }
    return;
  }
  float* gh = dAab + C * C;    // [C][K] in-chunk sums of gk, log2 units, hi word
  float* gl = gh + C * K;      // lo word
  float* dx = gl + C * K;      // [C][K] dq_A, then da_A
  float* dgk = dx + C * K;     // [C][K] dgk_A
  for_chunk_log2_cumsum<G>(p.gk, ch, h, H, K, [&](int r, int d, float2 g) {
    gh[r * K + d] = g.x;
    gl[r * K + d] = g.y;
    dx[r * K + d] = 0.f;
    dgk[r * K + d] = 0.f;
  });
  __syncthreads();
  for (int d = threadIdx.x; d < K; d += blockDim.x) {  // the accumulators' column d is this thread's alone
    decayed_products_bwd_column<T, C, 0>(p, ch, h, d, p.q, p.scale, dAqk, dAqb, gh, gl, dx, dgk, true);
    for (int r = 0; r < L; ++r) {
      const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
      p.dq[ix] = (p.dq_o[ix] + dx[r * K + d]) * p.scale;
      dx[r * K + d] = 0.f;
    }
    decayed_products_bwd_column<T, C, 1>(p, ch, h, d, p.a, 1.f, dAak, dAab, gh, gl, dx, dgk, false);
    for (int r = 0; r < L; ++r) {
      const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
      p.da[ix] = p.da_wy[ix] + dx[r * K + d];
      p.dk[ix] = p.dk_h[ix] + p.dk[ix];
      p.db[ix] = p.db_h[ix] + p.db[ix];
      p.dgk_A[ix] = dgk[r * K + d];
    }
  }
}

}  // namespace

void chunk_A_bwd(const BackwardInputs& in, int C, const float* dA_qk, const float* dA_qb, const float* dA_ak,
                 const float* dA_ab, float* dq, float* dk, float* da, float* db, const GradientShares& shares,
                 cudaStream_t stream) {
  check_backward(in, C);
  if (!dA_qk || !dA_qb || !dA_ak || !dA_ab) refuse("chunk_A_bwd needs dA_qk, dA_qb (o_bwd) and dA_ak, dA_ab (WY_bwd)");
  if (!shares.dq_o || !shares.dk_h || !shares.db_h || !shares.da_wy)
    refuse("chunk_A_bwd needs the shares dq_o (o_bwd), dk_h, db_h (h_bwd) and da_wy (WY_bwd)");
  if (!dq || !dk || !da || !db || !shares.dgk_A) refuse("chunk_A_bwd needs dq, dk, da, db and the share dgk_A");
  if (use_tensor_cores(in.variant.a, chunk_A_bwd_tensor_cores_supported(in, C), "chunk_A_bwd")) {
    chunk_A_bwd_mma(in, C, dA_qk, dA_qb, dA_ak, dA_ab, dq, dk, da, db, shares.dgk_A, false, shares, stream);
    return;
  }
  const ForwardInputs& f = in.fwd;
  const int K = static_cast<int>(f.K);
  const ABwdArgs p{f.q, f.k, f.a, f.b, f.gk, dA_qk, dA_qb, dA_ak, dA_ab, shares.dq_o, shares.dk_h, shares.db_h,
                   shares.da_wy, dq, dk, da, db, shares.dgk_A, chunk_geom(f, C), f.H, K, f.resolved_scale()};
  // C = 16 keeps a thread's column in registers and needs only the dA matrices in shared memory; one thread a key
  // channel, 64 threads a block where K <= 64.
  const std::size_t bytes = C == 16 ? 4 * std::size_t(C) * C * sizeof(float) : a_bwd_smem(C, K);
  const int threads = C == 16 && K <= 64 ? 64 : kThreads;
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto g, auto c) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int CC = decltype(c)::value;
    set_smem(chunk_A_bwd_kernel<T, G, CC>, bytes);
    chunk_A_bwd_kernel<T, G, CC><<<chunk_grid(f, C), threads, bytes, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_A_bwd_kernel");
}

void chunk_A_cumsum_bwd(const BackwardInputs& in, int C, const float* dA_qk, const float* dA_qb, const float* dA_ak,
                        const float* dA_ab, void* dq, void* dk, void* da, void* db, float* dgk,
                        const GradientShares& shares, const ABwdTotals& totals, cudaStream_t stream) {
  check_backward(in, C);
  if (!dq || !dk || !da || !db || !dgk) refuse("chunk_A_cumsum_bwd needs dq, dk, da, db and dgk");
  const ForwardInputs& f = in.fwd;
  if (!use_tensor_cores(in.variant.a, chunk_A_bwd_tensor_cores_supported(in, C), "chunk_A_bwd")) {
    if (f.dtype == ElemType::F32) {  // the fp32 totals are the gradients
      chunk_A_bwd(in, C, dA_qk, dA_qb, dA_ak, dA_ab, static_cast<float*>(dq), static_cast<float*>(dk),
                  static_cast<float*>(da), static_cast<float*>(db), shares, stream);
    } else {
      if (!totals.dq || !totals.dk || !totals.da || !totals.db)
        refuse("chunk_A_cumsum_bwd needs fp32 totals dq, dk, da, db (ABwdTotals) where A_bwd runs its FMA kernel on "
               "16-bit inputs");
      chunk_A_bwd(in, C, dA_qk, dA_qb, dA_ak, dA_ab, totals.dq, totals.dk, totals.da, totals.db, shares, stream);
      const std::int64_t n = f.B * f.T * f.H * f.K;
      round_to_dtype(f.dtype, totals.dq, dq, n, stream);
      round_to_dtype(f.dtype, totals.dk, dk, n, stream);
      round_to_dtype(f.dtype, totals.da, da, n, stream);
      round_to_dtype(f.dtype, totals.db, db, n, stream);
    }
    chunk_cumsum_bwd(in, C, dgk, shares, stream);
    return;
  }
  if (!dA_qk || !dA_qb || !dA_ak || !dA_ab)
    refuse("chunk_A_cumsum_bwd needs dA_qk, dA_qb (o_bwd) and dA_ak, dA_ab (WY_bwd)");
  if (!shares.dq_o || !shares.dk_h || !shares.db_h || !shares.da_wy || !shares.d_chunk_decay)
    refuse("chunk_A_cumsum_bwd needs the shares dq_o (o_bwd), dk_h, db_h, d_chunk_decay (h_bwd) and da_wy (WY_bwd)");
  chunk_A_bwd_mma(in, C, dA_qk, dA_qb, dA_ak, dA_ab, dq, dk, da, db, dgk, true, shares, stream);
}

}  // namespace dplr::gpu
