// The tensor-core kernel of stage "WY_bwd" (chunk_WY_bwd.cu has the equations, the checks and the FMA kernel),
// M = A_ab_inv, du = dv_new:
//     phase 1: dag = M^T dw, du^ = M^T du                      3 MMAs a k-step (both split); da_wy = dag (.) exp(ge)
//     phase 2: dA_ab = strictly_lower(dag w^T + du^ u^T)       3
//              dA_ak = strictly_lower(du^ v^T)                 2 (v exact)
//              dv   += A_ak^T du^                              3
// A block of 4 warps takes one chunk, or walks consecutive chunks of one (head, batch row) (WYPipe), C = 16: each
// chunk's operands land in a shared-memory stage by cp.async (rows padded for conflict-free fragment reads; the
// incoming dv too, so that dv's update is no dependent global load), with more than one stage the next chunk's in
// flight while this one is computed; phase 1 writes dag and du^ to shared memory, one barrier, then da_wy (exp(ge)
// formed from the staged gk, one thread a column, as it goes) and phase 2 read them. dv's total goes to the
// fp32 dv (the stage) or, rounded once, to the inputs' dtype (the driver: chunk_WY_bwd_rounding_dv). Products to about
// 2^-21 relative (the split of mma.cuh), fp32 accumulation, each output summed in a fixed order (the one-chunk-a-block
// kernel's: bitwise).
// Warps: phase 1, the n-tiles w, w + 4, .. of [dag | du^] (K / 8 + V / 8 of them); phase 2, dA_ab's columns 0-7
// (warp 0) and 8-15 (warp 1), dA_ak (warp 2), dv (warp 3).
#include <type_traits>

#include "gpu/chunk_bwd_mma.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu::detail {
namespace {

constexpr int kC = 16, kWarps = 4, kThreads = 32 * kWarps;

// Chunks a block and shared-memory stages (WYPipe<DM>). With more than one stage a block walks `chunks` consecutive
// chunks of its (head, batch row), chunk c + 1's operands in flight by cp.async while chunk c is computed. Both sizes
// now take one chunk a block (1 stage): at K, V <= 64 four blocks an SM (45 KB, 126 registers) ran 481 us against 538
// for 2 stages x 4 chunks at three blocks an SM (H200, B8 T4096 H16 bf16, session 15): the kernel waits on latency,
// and more resident warps hide more of it than the prefetch did. At K, V <= 128 two stages would leave one block an
// SM; one stage gives two, and three since exp(ge) is not kept in shared memory.
template <int DM>
struct WYPipe {
  static constexpr int stages = 1, chunks = 1, min_blocks = DM <= 64 ? 4 : 3;
};

// Shared memory (floats) for K, V <= DM. Row pads (as chunk_o_bwd_mma.cu): AP = 24 for the transposed reads of M and
// A_ak, KP (= 8 mod 32) for the k-major reads of dw, du, FP (= 4 mod 32) for the n-major reads of w, u, the
// row-major reads of dag, du^ and dv's float2 reads (du^'s k-major reads in dv are 2-way), TP (16-bit, TP / 2 = 4
// mod 32 words) for v. One stage holds a chunk's operands (M .. the incoming dv); dag and du^ are the block's,
// once.
template <int DM, typename G>
struct WL {
  static constexpr int AP = kC + 8, KP = DM + 8, FP = DM + 4, TP = DM + 8, GW = kC * DM * int(sizeof(G)) / 4;
  static constexpr int M = 0, Aak = M + kC * AP, Dw = Aak + kC * AP, Du = Dw + kC * KP, W = Du + kC * KP,
                       U = W + kC * FP, Vv = U + kC * FP, Gk = Vv + kC * TP / 2, Dv = Gk + GW, stage = Dv + kC * FP;
  static constexpr int Dag = WYPipe<DM>::stages * stage, Duh = Dag + kC * FP, total = Duh + kC * FP;
  static constexpr std::size_t bytes = std::size_t(total) * sizeof(float);
};
static_assert(4 * (WL<64, float>::bytes + 1024) <= 228 * 1024, "WY_bwd mma: four blocks an SM at K, V <= 64");
static_assert(3 * (WL<128, float>::bytes + 1024) <= 228 * 1024, "WY_bwd mma: three blocks an SM at K, V <= 128");

// Two values of dv's total in the inputs' dtype (each rounded once to nearest, as round_to_dtype), one 4-byte store.
template <typename T>
__device__ __forceinline__ void store_rounded_pair(void* out, std::int64_t i, float x, float y) {
  T two[2];
  from_f(x, &two[0]);
  from_f(y, &two[1]);
  *reinterpret_cast<unsigned*>(static_cast<T*>(out) + i) = *reinterpret_cast<const unsigned*>(two);
}

template <typename T, typename G, int DM>
__global__ void __launch_bounds__(kThreads, WYPipe<DM>::min_blocks) chunk_WY_bwd_mma_kernel(WYBwdArgs p) {
  using L = WL<DM, G>;
  constexpr int C = kC, AP = L::AP, KP = L::KP, FP = L::FP, TP = L::TP, N1 = DM / 16, EPC = 16 / sizeof(T);
  constexpr int NS = WYPipe<DM>::stages, CPB = WYPipe<DM>::chunks;
  static_assert(DM <= kThreads, "exp(ge) and da_wy: one thread a column");
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  // Stage s: sm + s * L::stage + L::X. M [C][AP] zero outside s <= r < len; A_ak [C][AP] zero outside s < r < len;
  // dw, du [C][KP], w, u [C][FP], v [C][TP], incoming dv [C][FP] (zero past the chunk); gk rows [len][K].
  float* Dag = sm + L::Dag;  // [C][FP] dag (phase 1)
  float* Duh = sm + L::Duh;  // [C][FP] du^ (phase 1)

  // Chunks x0 .. x0 + count - 1 of batch row blockIdx.z (with cu_seqlens: global chunks, any sequences).
  const std::int64_t x0 = std::int64_t(blockIdx.x) * CPB;
  const std::int64_t chunks = p.geo.cu_seqlens ? p.geo.chunk_offsets[p.geo.N] : p.geo.NT;
  const int count = static_cast<int>(x0 + CPB < chunks ? CPB : chunks - x0);
  if (count <= 0) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  // (The planted BwdHeadOffset: A_ab_inv and A_ak read at head 0 for every head.)
  const std::int64_t a_head = planted(p.geo.planted, PlantedDefect::BwdHeadOffset) ? 0 : h;
  const int e = threadIdx.x;
  // Every loop below runs over the pieces of a DM-wide row (shifts, no runtime division by K or V); pieces past K or
  // V are zero-filled (before, the loops stopped at K, V and left those columns as they were). Row indices: the
  // chunk's first row of head h plus r H D, one multiply-add a chunk and width.
  auto load = [&](std::int64_t c, int slot) {  // chunk x0 + c's operands into stage `slot` (not committed)
    const Chunk ch = chunk_at(p.geo, blockIdx.z, x0 + c, C);
    const int len = ch.len;
    float* buf = sm + slot * L::stage;
    const std::int64_t row = ch.bos * H + h, rowK = row * K, rowV = row * V, arow = (ch.bos * H + a_head) * C;
#pragma unroll
    for (int x = e; x < C * C; x += kThreads) {
      const int r = x / C, s = x % C;
      const std::int64_t ix = r < len ? arow + r * H * C + s : 0;
      cp4(buf + L::M + r * AP + s, p.Ainv + ix, r < len && s <= r);  // 4-byte: outside the mask A may hold anything
      cp4(buf + L::Aak + r * AP + s, p.Aak + ix, r < len && s < r);
    }
#pragma unroll
    for (int x = e; x < C * (DM / 4); x += kThreads) {
      const int r = x / (DM / 4), c4 = (x % (DM / 4)) * 4;
      const bool ok = r < len && c4 < K;
      const std::int64_t ix = ok ? rowK + r * H * K + c4 : 0;
      cp16(buf + L::Dw + r * KP + c4, p.dw + ix, ok);
      cp16(buf + L::W + r * FP + c4, p.w + ix, ok);
    }
#pragma unroll
    for (int x = e; x < C * (DM / 4); x += kThreads) {
      const int r = x / (DM / 4), c4 = (x % (DM / 4)) * 4;
      const bool ok = r < len && c4 < V;
      const std::int64_t ix = ok ? rowV + r * H * V + c4 : 0;
      cp16(buf + L::Du + r * KP + c4, p.du + ix, ok);
      cp16(buf + L::U + r * FP + c4, p.u + ix, ok);
      cp16(buf + L::Dv + r * FP + c4, p.dv + ix, ok);
    }
    T* Vs = reinterpret_cast<T*>(buf + L::Vv);
#pragma unroll
    for (int x = e; x < C * (DM / EPC); x += kThreads) {
      const int r = x / (DM / EPC), c8 = (x % (DM / EPC)) * EPC;
      const bool ok = r < len && c8 < V;
      cp16(Vs + r * TP + c8, static_cast<const T*>(p.v) + (ok ? rowV + r * H * V + c8 : 0), ok);
    }
    stage_gk<DM>(reinterpret_cast<G*>(buf + L::Gk), static_cast<const G*>(p.gk), ch, h, H, K);
  };

  const int warp = e / 32, lane = e % 32, g = lane >> 2, t = lane & 3, nK = K / 8, nV = V / 8;
  auto sum = [](const float (&a)[4], const float (&b)[4], int q) { return a[q] + b[q]; };
  if constexpr (NS > 1) ring_start<NS>(count, load);
#pragma unroll 1
  for (int c = 0; c < count; ++c) {
    // Chunk c's stage landed for every thread; with NS > 1 chunk c + 1's copies are issued behind it (the barrier
    // also ends chunk c - 1, whose stage they reuse, and its reads of dag and du^).
    if constexpr (NS > 1) {
      ring_advance<NS>(c, count, load);
    } else {
      load(c, 0);
      cp_commit();
      cp_wait<0>();
      __syncthreads();
    }
    const Chunk ch = chunk_at(p.geo, blockIdx.z, x0 + c, C);
    const int len = ch.len;
    const float* buf = sm + ring_slot<NS>(c) * L::stage;
    const float* Ms = buf + L::M;
    const float* Aaks = buf + L::Aak;
    const float* Dw = buf + L::Dw;
    const float* Du = buf + L::Du;
    const float* Ws = buf + L::W;
    const float* Us = buf + L::U;
    const T* Vs = reinterpret_cast<const T*>(buf + L::Vv);
    const float* Dvs = buf + L::Dv;
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
          const int col = 8 * (isk ? tile : tile - nK) + 2 * t;
          float* X = isk ? Dag : Duh;
#pragma unroll
          for (int hr = 0; hr < 2; ++hr)
            *reinterpret_cast<float2*>(X + (g + 8 * hr) * FP + col) =
                make_float2(sum(acc[j], cor[j], 2 * hr), sum(acc[j], cor[j], 2 * hr + 1));
        }
      }
    }
    __syncthreads();
    // da_wy = dag (.) exp(ge), thread d for column d: exp(ge) is 1 on row 0 and exp(gi_{r-1}) on row r, from the
    // staged gk (the stage is this chunk's until the block ends), formed here rather than kept as a C x DM tile: at
    // K, V <= 128 that tile's 8 KB left two blocks an SM by shared memory (three now).
    {
      float ege = 1.f;
      for_chunk_log2_cumsum<G>(buf + L::Gk, Chunk{0, len, 0, 0, true}, 0, 1, K, [&](int r, int d, float2 gi) {
        p.da_wy[tix(ch.bos + r, h, H, d, K)] = Dag[r * FP + d] * ege;
        ege = exp2_split(gi);
      });
    }
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
            *reinterpret_cast<float2*>(p.dAak + ((ch.bos + r) * H + h) * C + s) = make_float2(
                s < r ? sum(acc[j], cor[j], 2 * hr) : 0.f, s + 1 < r ? sum(acc[j], cor[j], 2 * hr + 1) : 0.f);
        }
    } else {  // dv = incoming dv + A_ak^T du^, groups of 8 column tiles, k over the chunk's 16 rows
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
              const int r = g + 8 * hr, col = 8 * (c0 + j) + 2 * t;
              if (r < len) {
                const float2 before = *reinterpret_cast<const float2*>(Dvs + r * FP + col);
                const float x = before.x + sum(acc[j], cor[j], 2 * hr), y = before.y + sum(acc[j], cor[j], 2 * hr + 1);
                const std::int64_t o = tix(ch.bos + r, h, H, col, V);
                if (p.dv_rounded) store_rounded_pair<T>(p.dv_rounded, o, x, y);
                else *reinterpret_cast<float2*>(p.dv_total + o) = make_float2(x, y);
              }
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
    using L = WL<DM, G>;
    dim3 grid = chunk_grid(f, kC);
    grid.x = (grid.x + WYPipe<DM>::chunks - 1) / WYPipe<DM>::chunks;
    set_smem(chunk_WY_bwd_mma_kernel<T, G, DM>, L::bytes);
    chunk_WY_bwd_mma_kernel<T, G, DM><<<grid, kThreads, L::bytes, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_WY_bwd_mma_kernel");
}

}  // namespace dplr::gpu::detail
