// Stage "A" of the chunk form (shared spec DPLR.md); r, s are tokens of one chunk, q already scaled:
//     A_qk[r,s] = sum_d q_rd k_sd exp(gi_rd - gi_sd),  s <= r       A_qb: b in place of k
//     A_ak[r,s] = sum_d a_rd k_sd exp(ge_rd - gi_sd),  s <  r       A_ab: b in place of k
// Every factor is the exponential of a difference over s <= r (never exp(gi_r) * exp(-gi_s)), so it is <= 1
// for any gk <= 0. Since ge_r = gi_{r-1} inside a chunk, exp(ge_r - gi_s) is the A_qk factor of row r - 1:
// a thread's TT x TT tile computes TT + 1 rows of factors and uses them for all four matrices.
// One block (256 threads) per (chunk, head, batch row); K is walked in slabs of 32 columns through shared
// memory; plain fp32 FMA (no tensor cores), so fp32 inputs get fp32 arithmetic. It also writes the gated
// operands qg, kg, bg, ag, eg_last (dplr_gpu.hpp), so that no later stage needs a sum or an exponential.
// The inner-loop factors use one MUFU.EX2 (ex2_ftz: a factor below 2^-126 is flushed to zero) instead of
// exp2f's range-checked sequence (A C16 0.84 -> 0.73 ms, C64 4.13 -> 3.38 ms, run 2). At C = 16 the
// default (FAC) splits the chunk into 4 x 4 blocks and forms the off-diagonal blocks from pre-scaled operands
// (sub-block factoring with both factors <= 1, see FAC below), warps 0-1 on the diagonal blocks, 2-4 on the
// off-diagonal ones; AVariant::Direct (ForwardInputs::variant.a) selects the direct kernel. The fused path's A + WY for 16-bit inputs
// is chunk_A_WY.cu (tensor cores); this kernel is the staged stage and the fused path's fp32 / K > 64 fallback.

#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

// Slab rows are kLD floats: 16-byte aligned for float4 reads, and 8 rows read by 8 lanes land in distinct banks.
constexpr int kDS = 32, kLD = kDS + 4;

__device__ __forceinline__ float comp(const float4& v, int m) { return m == 0 ? v.x : m == 1 ? v.y : m == 2 ? v.z : v.w; }
__device__ __forceinline__ float4 ld4(const float* p) { return *reinterpret_cast<const float4*>(p); }

struct AArgs {
  const void *q, *k, *a, *b, *gk;
  ChunkGeom geo;
  std::int64_t H;
  int K;
  float scale;
  float *Aqk, *Aqb, *Aak, *Aab;
  GatedOperands g;
};

template <int C>
constexpr std::size_t a_smem() { return (6 * C * kLD + C * kDS) * sizeof(float); }
// FAC (C = 16 only): the sub-block factoring of the off-diagonal 4 x 4 blocks (R > S, m = the last row of S):
//   exp(gi_r - gi_s) = exp(gi_r - gi_m) exp(gi_m - gi_s),  exp(ge_r - gi_s) = exp(gi_{r-1} - gi_m) exp(gi_m - gi_s),
// both factors <= 1 for gk <= 0 (s <= m <= r - 1), so the off-diagonal cells are plain products of pre-scaled
// operands: kt = k exp(gi_m - gi) and bt (one per row, m of its own block), qt = q exp(gi - gi_m) and
// at = a exp(gi_{r-1} - gi_m) (one per row and earlier block: 12 + 8 + 4 = 24 rows). Extra floats per slab:
constexpr int kFacRows = 24;
template <int C>
constexpr int fac_floats() { return (2 * C + 2 * kFacRows) * kLD; }
template <int C, bool FAC>
constexpr std::size_t a_any_smem() { return a_smem<C>() + (FAC ? fac_floats<C>() * sizeof(float) : 0); }

template <typename T, typename G, int C, bool FAC = false>
__global__ void __launch_bounds__(256, C == 16 ? 6 : 1) chunk_A_kernel(AArgs p) {
  static_assert(!FAC || C == 16, "the factored A kernel is written for C = 16");
  constexpr int TT = C / 16;
  extern __shared__ __align__(16) float sm[];
  float* qs = sm;
  float* kk = qs + C * kLD;
  float* as = kk + C * kLD;
  float* bs = as + C * kLD;
  float* gh = bs + C * kLD;   // in-chunk sum of gk in log2 units, hi word
  float* gl_ = gh + C * kLD;  // lo word
  float* raw = gl_ + C * kLD;
  float* kt = raw + C * kDS;  // FAC only
  float* bt = kt + C * kLD;
  float* qt = bt + C * kLD;
  float* at = qt + kFacRows * kLD;

  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  int r0, s0;
  bool active;
  int role = 0;  // FAC: 0 diagonal block (warps 0-1), 1 off-diagonal below (warps 2-4), 2 above (zeros; warps 5-7)
  if constexpr (FAC) {
    // (R, S) of the 6 lower off-diagonal block pairs; the upper ones are their transposes.
    constexpr int kR[6] = {1, 2, 3, 2, 3, 3}, kS[6] = {0, 0, 0, 1, 1, 2};
    const int t = threadIdx.x, ci = (t % 16) / 4, cj = t % 4;
    if (t < 64) {
      role = 0;
      r0 = 4 * (t / 16) + ci;
      s0 = 4 * (t / 16) + cj;
    } else if (t < 160) {
      role = 1;
      const int pi = (t - 64) / 16;
      r0 = 4 * kR[pi] + ci;
      s0 = 4 * kS[pi] + cj;
    } else {
      role = 2;
      const int pi = (t - 160) / 16;
      r0 = 4 * kS[pi] + ci;
      s0 = 4 * kR[pi] + cj;
    }
    active = role != 2;
  } else {
    const int tr = threadIdx.x / 16, ts = threadIdx.x % 16;
    r0 = tr * TT;
    s0 = ts * TT;
    active = s0 <= r0 + TT - 1;
  }

  float qk[TT][TT], qb[TT][TT], ak[TT][TT], ab[TT][TT];
#pragma unroll
  for (int i = 0; i < TT; ++i)
#pragma unroll
    for (int j = 0; j < TT; ++j) qk[i][j] = qb[i][j] = ak[i][j] = ab[i][j] = 0.f;

  for (int d0 = 0; d0 < p.K; d0 += kDS) {
    __syncthreads();
    for (int e = threadIdx.x; e < C * kDS; e += blockDim.x) {
      const int r = e / kDS, dd = e % kDS, d = d0 + dd;
      const bool ok = r < ch.len && d < p.K;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, d, p.K) : 0;
      qs[r * kLD + dd] = ok ? ld<T>(p.q, ix) * p.scale : 0.f;
      kk[r * kLD + dd] = ok ? ld<T>(p.k, ix) : 0.f;
      as[r * kLD + dd] = ok ? ld<T>(p.a, ix) : 0.f;
      bs[r * kLD + dd] = ok ? ld<T>(p.b, ix) : 0.f;
      raw[r * kDS + dd] = ok ? ld<G>(p.gk, ix) : 0.f;
    }
    __syncthreads();
    if (threadIdx.x < kDS) {  // fp64 in-chunk sums, split hi + lo (common.cuh, split_log2)
      const int d = threadIdx.x;
      double acc = 0.0;
      for (int r = 0; r < C; ++r) {
        if (r < ch.len) acc += static_cast<double>(raw[r * kDS + d]);
        const float2 x = split_log2(acc);
        gh[r * kLD + d] = x.x;
        gl_[r * kLD + d] = x.y;
      }
    }
    __syncthreads();
    // The gated operands of this slab (every exponent a difference <= 0 of the split fp64 sums).
    for (int e = threadIdx.x; e < C * kDS; e += blockDim.x) {
      const int r = e / kDS, dd = e % kDS, d = d0 + dd;
      if (r >= ch.len || d >= p.K) continue;
      const std::int64_t ix = tix(ch.bos + r, h, H, d, p.K);
      const float2 gr = make_float2(gh[r * kLD + dd], gl_[r * kLD + dd]);
      const float2 gl = make_float2(gh[(ch.len - 1) * kLD + dd], gl_[(ch.len - 1) * kLD + dd]);
      // (The planted FactoredDecay: 2^gl 2^-gr, which overflows once -gr passes 128 in log2 units.)
      const float fl = planted(p.geo.planted, PlantedDefect::FactoredDecay) ? exp2_split(gl) * (1.0f / exp2_split(gr))
                                                                            : exp2_diff(gl, gr);
      p.g.qg[ix] = qs[r * kLD + dd] * exp2_split(gr);
      p.g.kg[ix] = kk[r * kLD + dd] * fl;
      p.g.bg[ix] = bs[r * kLD + dd] * fl;
      p.g.ag[ix] = r == 0 ? as[dd] : as[r * kLD + dd] * exp2_split(make_float2(gh[(r - 1) * kLD + dd], gl_[(r - 1) * kLD + dd]));
      if (r == ch.len - 1) p.g.eg_last[(ch.g * H + h) * p.K + d] = exp2_split(gl);
    }
    if constexpr (FAC) {  // the pre-scaled operands of the off-diagonal blocks (every exponent <= 0)
      for (int e = threadIdx.x; e < C * kDS; e += blockDim.x) {
        const int r = e / kDS, dd = e % kDS, R = r / 4;
        const float2 gr = make_float2(gh[r * kLD + dd], gl_[r * kLD + dd]);
        const int mo = 4 * R + 3;
        const float fk = exp2_diff(make_float2(gh[mo * kLD + dd], gl_[mo * kLD + dd]), gr);
        kt[r * kLD + dd] = kk[r * kLD + dd] * fk;
        bt[r * kLD + dd] = bs[r * kLD + dd] * fk;
        for (int S = 0; S < R; ++S) {
          const int m = 4 * S + 3;
          const float2 gm = make_float2(gh[m * kLD + dd], gl_[m * kLD + dd]);
          const int row = (S == 0 ? 0 : S == 1 ? 12 : 20) + r - 4 * (S + 1);
          qt[row * kLD + dd] = qs[r * kLD + dd] * exp2_diff(gr, gm);
          at[row * kLD + dd] = r - 1 == m ? as[r * kLD + dd]
                                          : as[r * kLD + dd] * exp2_diff(make_float2(gh[(r - 1) * kLD + dd], gl_[(r - 1) * kLD + dd]), gm);
        }
      }
      __syncthreads();
      if (role == 1) {
        const int S = s0 / 4;
        const int row = (S == 0 ? 0 : S == 1 ? 12 : 20) + r0 - 4 * (S + 1);
        for (int dd = 0; dd < kDS; dd += 4) {
          const float4 q4 = ld4(qt + row * kLD + dd), a4 = ld4(at + row * kLD + dd);
          const float4 k4 = ld4(kt + s0 * kLD + dd), b4 = ld4(bt + s0 * kLD + dd);
#pragma unroll
          for (int m = 0; m < 4; ++m) {
            const float q = comp(q4, m), a = comp(a4, m), kx = comp(k4, m), bx = comp(b4, m);
            qk[0][0] = fmaf(q, kx, qk[0][0]);
            qb[0][0] = fmaf(q, bx, qb[0][0]);
            ak[0][0] = fmaf(a, kx, ak[0][0]);
            ab[0][0] = fmaf(a, bx, ab[0][0]);
          }
        }
        continue;
      }
    }
    if (!active) continue;
    for (int dd = 0; dd < kDS; dd += 4) {  // 4 columns of the slab a step, as float4
      float4 grh[TT + 1], grl[TT + 1], gsh[TT], gsl[TT], kv[TT], bv[TT], qv[TT], av[TT];
#pragma unroll
      for (int i = 0; i <= TT; ++i) {
        const int r = max(r0 - 1 + i, 0);
        grh[i] = ld4(gh + r * kLD + dd);
        grl[i] = ld4(gl_ + r * kLD + dd);
      }
#pragma unroll
      for (int i = 0; i < TT; ++i) {
        qv[i] = ld4(qs + (r0 + i) * kLD + dd);
        av[i] = ld4(as + (r0 + i) * kLD + dd);
      }
#pragma unroll
      for (int j = 0; j < TT; ++j) {
        gsh[j] = ld4(gh + (s0 + j) * kLD + dd);
        gsl[j] = ld4(gl_ + (s0 + j) * kLD + dd);
        kv[j] = ld4(kk + (s0 + j) * kLD + dd);
        bv[j] = ld4(bs + (s0 + j) * kLD + dd);
      }
#pragma unroll
      for (int m = 0; m < 4; ++m) {
        float f[TT + 1][TT];  // f[i][j] = exp(gi_{r0-1+i} - gi_{s0+j}) where r0-1+i >= s0+j, else 0
#pragma unroll
        for (int i = 0; i <= TT; ++i)
#pragma unroll
          for (int j = 0; j < TT; ++j)
            f[i][j] = (r0 - 1 + i >= s0 + j)
                          ? ex2_ftz((comp(grh[i], m) - comp(gsh[j], m)) + (comp(grl[i], m) - comp(gsl[j], m)))
                          : 0.f;
#pragma unroll
        for (int i = 0; i < TT; ++i) {
          const float q = comp(qv[i], m), a = comp(av[i], m);
#pragma unroll
          for (int j = 0; j < TT; ++j) {
            const float qf = q * f[i + 1][j], af = a * f[i][j];
            const float kx = comp(kv[j], m), bx = comp(bv[j], m);
            qk[i][j] = fmaf(qf, kx, qk[i][j]);
            qb[i][j] = fmaf(qf, bx, qb[i][j]);
            ak[i][j] = fmaf(af, kx, ak[i][j]);
            ab[i][j] = fmaf(af, bx, ab[i][j]);
          }
        }
      }
    }
  }
#pragma unroll
  for (int i = 0; i < TT; ++i) {
    const int r = r0 + i;
    if (r >= ch.len) continue;
    const std::int64_t row = ((ch.bos + r) * H + h) * C;
#pragma unroll
    for (int j = 0; j < TT; ++j) {
      const int s = s0 + j;
      p.Aqk[row + s] = qk[i][j];
      p.Aqb[row + s] = qb[i][j];
      p.Aak[row + s] = ak[i][j];
      p.Aab[row + s] = ab[i][j];
    }
  }
}

// factored: the sub-block kernel (C = 16 only; chunk_A checked the request).
template <typename T, typename G, int C>
void launch_A(const AArgs& p, dim3 grid, bool factored, cudaStream_t stream) {
  if constexpr (C == 16) {
    if (factored) {
      constexpr std::size_t bytes = a_any_smem<C, true>();
      set_smem(chunk_A_kernel<T, G, C, true>, bytes);
      chunk_A_kernel<T, G, C, true><<<grid, 256, bytes, stream>>>(p);
      DPLR_LAUNCHED("chunk_A_kernel (factored)");
      return;
    }
  }
  set_smem(chunk_A_kernel<T, G, C>, a_smem<C>());
  chunk_A_kernel<T, G, C><<<grid, 256, a_smem<C>(), stream>>>(p);
  DPLR_LAUNCHED("chunk_A_kernel");
}
}  // namespace

void chunk_A(const ForwardInputs& in, int C, float* A_qk, float* A_qb, float* A_ak, float* A_ab,
             const GatedOperands& gated, cudaStream_t stream) {
  check_chunk(in, C);
  if (!A_qk || !A_qb || !A_ak || !A_ab) throw Unsupported("dplr::gpu: chunk_A needs A_qk, A_qb, A_ak and A_ab");
  if (!gated.qg || !gated.kg || !gated.bg || !gated.ag || !gated.eg_last)
    throw Unsupported("dplr::gpu: chunk_A needs every gated operand buffer (qg, kg, bg, ag, eg_last)");
  if (in.variant.a == AVariant::Factored && C != 16)
    throw Unsupported("dplr::gpu: chunk_A's factored variant needs chunk size 16 (got " + std::to_string(C) +
                      "); AVariant::Default picks the direct kernel there");
  const bool factored = in.variant.a == AVariant::Factored || (in.variant.a == AVariant::Default && C == 16);
  AArgs p{in.q, in.k, in.a, in.b, in.gk, chunk_geom(in, C), in.H, static_cast<int>(in.K),
          in.resolved_scale(), A_qk, A_qb, A_ak, A_ab, gated};
  const dim3 grid = chunk_grid(in, C);
  dispatch_types_and_chunk(in.dtype, in.gk_dtype, C, [&](auto t, auto g, auto c) {
    launch_A<decltype(t), decltype(g), decltype(c)::value>(p, grid, factored, stream);
  });
}

}  // namespace dplr::gpu
