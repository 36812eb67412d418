// The tensor-core kernel of stage "WY_bwd" (chunk_WY_bwd.cu has the equations, the checks and the FMA kernel),
// M = A_ab_inv, du = dv_new:
//     phase 1: dag = M^T dw, du^ = M^T du                      3 MMAs a k-step (both split); da_wy = dag (.) exp(ge)
//     phase 2: dA_ab = strictly_lower(dag w^T + du^ u^T)       3
//              dA_ak = strictly_lower(du^ v^T)                 2 (v exact)
//              dv   += A_ak^T du^                              3
// One block of 4 warps per (chunk, head, batch row), C = 16: the chunk's operands land in shared memory by cp.async
// (rows padded for conflict-free fragment reads), exp(ge) is formed while they fly; phase 1 writes dag and du^ to
// shared memory (and da_wy from its registers), one barrier, phase 2 reads them. Products to about 2^-21 relative
// (the split of mma.cuh), fp32 accumulation, each output summed in a fixed order.
// Warps: phase 1, the n-tiles w, w + 4, .. of [dag | du^] (K / 8 + V / 8 of them); phase 2, dA_ab's columns 0-7
// (warp 0) and 8-15 (warp 1), dA_ak (warp 2), dv (warp 3).
#include <type_traits>

#include "gpu/chunk_bwd_mma.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu::detail {
namespace {

constexpr int kC = 16, kWarps = 4, kThreads = 32 * kWarps;

// Shared memory (floats) for K, V <= DM. Row pads (as chunk_o_bwd_mma.cu): AP = 24 for the transposed reads of M and
// A_ak, KP (= 8 mod 32) for the k-major reads of dw, du, FP (= 4 mod 32) for the n-major reads of w, u and the
// row-major reads of dag, du^ (du^'s k-major reads in dv are 2-way), TP (16-bit, TP / 2 = 4 mod 32 words) for v.
template <int DM>
struct WL {
  static constexpr int AP = kC + 8, KP = DM + 8, FP = DM + 4, TP = DM + 8;
  static constexpr int M = 0, Aak = M + kC * AP, Dw = Aak + kC * AP, Du = Dw + kC * KP, W = Du + kC * KP,
                       U = W + kC * FP, Vv = U + kC * FP, Dag = Vv + kC * TP / 2, Duh = Dag + kC * FP,
                       E = Duh + kC * FP, Gk = E + kC * KP, total = Gk + kC * DM;
  static constexpr std::size_t bytes = std::size_t(total) * sizeof(float);
};
static_assert(WL<64>::bytes <= 40 * 1024, "WY_bwd mma: five blocks an SM at K, V <= 64");
static_assert(WL<128>::bytes <= 75 * 1024, "WY_bwd mma: three blocks an SM at K, V <= 128");

template <typename T, typename G, int DM>
__global__ void __launch_bounds__(kThreads) chunk_WY_bwd_mma_kernel(WYBwdArgs p) {
  using L = WL<DM>;
  constexpr int C = kC, AP = L::AP, KP = L::KP, FP = L::FP, TP = L::TP, N1 = DM / 16, EPC = 16 / sizeof(T);
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* Ms = sm + L::M;      // [C][AP], zero outside s <= r < len
  float* Aaks = sm + L::Aak;  // [C][AP], zero outside s < r < len
  float* Dw = sm + L::Dw;     // [C][KP] dw, zero past the chunk
  float* Du = sm + L::Du;     // [C][KP] du
  float* Ws = sm + L::W;      // [C][FP] w
  float* Us = sm + L::U;      // [C][FP] u
  T* Vs = reinterpret_cast<T*>(sm + L::Vv);  // [C][TP] v
  float* Dag = sm + L::Dag;   // [C][FP] dag (phase 1)
  float* Duh = sm + L::Duh;   // [C][FP] du^ (phase 1)
  float* E = sm + L::E;       // [C][KP] exp(ge): 1 on row 0, exp(gi_{r-1}) on row r
  G* Gs = reinterpret_cast<G*>(sm + L::Gk);  // [C][K] gk rows

  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int len = ch.len, e = threadIdx.x;
  for (int x = e; x < C * C; x += kThreads) {
    const int r = x / C, s = x % C;
    const std::int64_t ix = r < len ? ((ch.bos + r) * H + h) * C + s : 0;
    cp4(Ms + r * AP + s, p.Ainv + ix, r < len && s <= r);  // 4-byte: outside the mask A may hold anything
    cp4(Aaks + r * AP + s, p.Aak + ix, r < len && s < r);
  }
  const int nk4 = K / 4, nv4 = V / 4, n16 = V / EPC;
  for (int x = e; x < C * nk4; x += kThreads) {
    const int r = x / nk4, c = (x % nk4) * 4;
    const bool ok = r < len;
    const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c, K) : 0;
    cp16(Dw + r * KP + c, p.dw + ix, ok);
    cp16(Ws + r * FP + c, p.w + ix, ok);
  }
  for (int x = e; x < C * nv4; x += kThreads) {
    const int r = x / nv4, c = (x % nv4) * 4;
    const bool ok = r < len;
    const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c, V) : 0;
    cp16(Du + r * KP + c, p.du + ix, ok);
    cp16(Us + r * FP + c, p.u + ix, ok);
  }
  for (int x = e; x < C * n16; x += kThreads) {
    const int r = x / n16, c = (x % n16) * EPC;
    const bool ok = r < len;
    cp16(Vs + r * TP + c, static_cast<const T*>(p.v) + (ok ? tix(ch.bos + r, h, H, c, V) : 0), ok);
  }
  stage_gk(Gs, static_cast<const G*>(p.gk), ch, h, H, K);
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  // exp(ge) from the staged gk: row r + 1 takes the sum of rows 0 .. r (rows < len; only those are stored).
  for_chunk_log2_cumsum<G>(Gs, Chunk{0, len, 0, 0, true}, 0, 1, K, [&](int r, int d, float2 gi) {
    if (r == 0) E[d] = 1.f;
    if (r + 1 < len) E[(r + 1) * KP + d] = exp2_split(gi);
  });
  __syncthreads();

  const int warp = e / 32, lane = e % 32, g = lane >> 2, t = lane & 3, nK = K / 8, nV = V / 8;
  auto sum = [](const float (&a)[4], const float (&b)[4], int q) { return a[q] + b[q]; };
  {  // phase 1: tile j of [dag | du^] = M^T [dw | du], k over the chunk's 16 rows
    unsigned mh[2][4], ml[2][4];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) load_at_split(Ms, AP, 8 * kk, 0, g, t, mh[kk], ml[kk]);
    float acc[N1][4], cor[N1][4];
#pragma unroll
    for (int j = 0; j < N1; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[j][q] = cor[j][q] = 0.f;
#pragma unroll
    for (int j = 0; j < N1; ++j) {
      const int tile = warp + kWarps * j;
      if (tile < nK + nV) {
        const float* B = tile < nK ? Dw : Du;
        const int n0 = 8 * (tile < nK ? tile : tile - nK);
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          unsigned bh0, bl0, bh1, bl1;
          load_b_split(B, KP, 8 * kk, n0, g, t, bh0, bl0, bh1, bl1);
          mma_3xtf32(acc[j], cor[j], cor[j], mh[kk], ml[kk], bh0, bl0, bh1, bl1);
        }
      }
    }
#pragma unroll
    for (int j = 0; j < N1; ++j) {
      const int tile = warp + kWarps * j;
      if (tile < nK + nV) {
        const bool isk = tile < nK;
        const int c = 8 * (isk ? tile : tile - nK) + 2 * t;
        float* X = isk ? Dag : Duh;
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          const int r = g + 8 * hr;
          const float x0 = sum(acc[j], cor[j], 2 * hr), x1 = sum(acc[j], cor[j], 2 * hr + 1);
          *reinterpret_cast<float2*>(X + r * FP + c) = make_float2(x0, x1);
          if (isk && r < len)
            *reinterpret_cast<float2*>(p.da_wy + tix(ch.bos + r, h, H, c, K)) =
                make_float2(x0 * E[r * KP + c], x1 * E[r * KP + c + 1]);
        }
      }
    }
  }
  __syncthreads();
  if (warp < 2) {  // dA_ab, columns s = n0 .. n0 + 7: dag w^T (k over K) + du^ u^T (k over V)
    const int n0 = 8 * warp;
    float hw[4] = {0.f, 0.f, 0.f, 0.f}, hu[4] = {0.f, 0.f, 0.f, 0.f}, cw[4] = {0.f, 0.f, 0.f, 0.f},
          cu[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k0 = 0; k0 < K; k0 += 8) {
      unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
      load_a_split(Dag, FP, k0, g, t, ah, al);
      load_bt_split(Ws, FP, k0, n0, g, t, bh0, bl0, bh1, bl1);
      mma_3xtf32(hw, cw, cw, ah, al, bh0, bl0, bh1, bl1);
    }
    for (int k0 = 0; k0 < V; k0 += 8) {
      unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
      load_a_split(Duh, FP, k0, g, t, ah, al);
      load_bt_split(Us, FP, k0, n0, g, t, bh0, bl0, bh1, bl1);
      mma_3xtf32(hu, cu, cu, ah, al, bh0, bl0, bh1, bl1);
    }
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int r = g + 8 * hr, s = n0 + 2 * t;
      if (r < len)
        *reinterpret_cast<float2*>(p.dAab + ((ch.bos + r) * H + h) * C + s) =
            make_float2(s < r ? (hw[2 * hr] + hu[2 * hr]) + (cw[2 * hr] + cu[2 * hr]) : 0.f,
                        s + 1 < r ? (hw[2 * hr + 1] + hu[2 * hr + 1]) + (cw[2 * hr + 1] + cu[2 * hr + 1]) : 0.f);
    }
  } else if (warp == 2) {  // dA_ak = du^ v^T, both column tiles, k over V
    float acc[2][4], cor[2][4];
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[j][q] = cor[j][q] = 0.f;
    for (int k0 = 0; k0 < V; k0 += 8) {
      unsigned ah[4], al[4];
      load_a_split(Duh, FP, k0, g, t, ah, al);
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        unsigned b0, b1;
        load_bt_exact(Vs, TP, k0, 8 * j, g, t, b0, b1);
        mma_2xtf32(acc[j], cor[j], ah, al, b0, b1);
      }
    }
#pragma unroll
    for (int j = 0; j < 2; ++j)
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int r = g + 8 * hr, s = 8 * j + 2 * t;
        if (r < len)
          *reinterpret_cast<float2*>(p.dAak + ((ch.bos + r) * H + h) * C + s) =
              make_float2(s < r ? sum(acc[j], cor[j], 2 * hr) : 0.f, s + 1 < r ? sum(acc[j], cor[j], 2 * hr + 1) : 0.f);
      }
  } else {  // dv += A_ak^T du^, groups of 8 column tiles, k over the chunk's 16 rows
    unsigned ah[2][4], al[2][4];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) load_at_split(Aaks, AP, 8 * kk, 0, g, t, ah[kk], al[kk]);
#pragma unroll 1
    for (int c0 = 0; c0 < nV; c0 += 8) {
      float acc[8][4], cor[8][4];
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[j][q] = cor[j][q] = 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (c0 + j < nV)
#pragma unroll
          for (int kk = 0; kk < 2; ++kk) {
            unsigned bh0, bl0, bh1, bl1;
            load_b_split(Duh, FP, 8 * kk, 8 * (c0 + j), g, t, bh0, bl0, bh1, bl1);
            mma_3xtf32(acc[j], cor[j], cor[j], ah[kk], al[kk], bh0, bl0, bh1, bl1);
          }
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (c0 + j < nV)
#pragma unroll
          for (int hr = 0; hr < 2; ++hr) {
            const int r = g + 8 * hr;
            if (r < len) {
              float2* o = reinterpret_cast<float2*>(p.dv + tix(ch.bos + r, h, H, 8 * (c0 + j) + 2 * t, V));
              const float2 before = *o;
              *o = make_float2(before.x + sum(acc[j], cor[j], 2 * hr), before.y + sum(acc[j], cor[j], 2 * hr + 1));
            }
          }
    }
  }
}

}  // namespace

void launch_WY_bwd_mma(const WYBwdArgs& p, const ForwardInputs& f, cudaStream_t stream) {
  dispatch_bwd_mma(f, [&](auto t, auto g, auto dm) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int DM = decltype(dm)::value;
    set_smem(chunk_WY_bwd_mma_kernel<T, G, DM>, WL<DM>::bytes);
    chunk_WY_bwd_mma_kernel<T, G, DM><<<chunk_grid(f, kC), kThreads, WL<DM>::bytes, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_WY_bwd_mma_kernel");
}

}  // namespace dplr::gpu::detail
