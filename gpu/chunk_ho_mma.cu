// The tensor-core kernel of stages "h" and "o" fused (chunk_h_o, chunk_ho.cu; 16-bit inputs, C = 16, K <= 128,
// 16-byte copies): the same four products as the FMA kernel (chunk_ho_fma.cu) on mma.sync m16n8k8 TF32 with the
// fp32 operands split in two (x = hi + lo, hi rounded to TF32, lo truncated by the tensor core, see split_tf32;
// "3xTF32": hi*hi + hi*lo + lo*hi, the lo*lo term below 2^-22 of the product dropped), each product to about
// 2^-21 relative (fp32-like, not exact), fp32 accumulation; measured (H200): ht within 8.3e-8 relative RMSE of the
// exact state, 16-bit o 1.00x its correctly rounded floor. v (16-bit) is exact in TF32 (<= 11
// significant bits), so its products take 2 MMAs.
// Why: the FMA kernel delivers ~557 KB of shared memory to registers per chunk and block (1 float per FMA;
// LDS.128 broadcasts still cost 4 cycles of the 128 B/clk path), 8.7k cycles per chunk an SM = the measured
// 8.4k; the fragments here deliver each operand element to one lane once (~100 KB per chunk and block).
// Warps (NW = 8: ho_warps; 16 is measured slower): phase 1, warp w: v_new (w % 8 < 4) or qg S (w % 8 >= 4) for
// columns 8 (w % 4) .. + 7, over K part w / 8 (NW = 16: two halves of K, each part's v_new and qg S to its own
// shared-memory buffer, added where read); phase 2: warps 4-7 add qg S's other part, then A_qk v + A_qb v_new, and
// store o; every warp updates TPW = KM / (4 NW) tiles of 16 x 8 of the state (two: rows 16 (w / 2), columns 16 (w % 2)
// .. + 15; KM = 128 with 8 warps, four: rows 16 w, all 32 columns), held in registers as MMA accumulators. KM = 64
// fits two blocks an SM, KM = 128 one (B4 H8 K = V = 128: 128 blocks, one an SM).
// STATES (HOStates, the chunk backward's recompute): no o, so no qg S; phase 1 is v_new alone, its K split in NW / 4
// parts between warps w, w + 4, .. (columns 8 (w % 4) ..: fewer dependent k-steps), the parts added where they are
// read (v_new = (u + w[:, :KM/2] S[:KM/2]) + w[:, KM/2:] S[KM/2:] at two parts, (p0 + p1) + (p2 + p3) at four: the
// same fp32 sum for the state update and the stored v_new); every warp stores its state tiles at the top of each
// chunk (h) and the block stores v_new. A stage holds neither qg nor A_qk, A_qb. STATES = false is the forward's
// kernel. At NW = 8 every product and sum is as before NW existed (bitwise); at 16 the K parts change the summation
// order of v_new and qg S at K > 64.
#include <cstdint>
#include <type_traits>

#include "gpu/chunk_ho.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu::detail::ho {
namespace {

// Warps a block: 8 at every K. The kernel takes NW = 16 too (phase 1's K in halves, meant for K = 128, where B4 H8
// gives 128 blocks of 8 warps, one an SM); measured slower there (H100, session 16, same call: the backward's
// recompute 0.869 ms against 0.774 at B4 T4096 H8 K = V = 128), so it is not instantiated.
template <int KMAX>
constexpr int ho_warps() { return 8; }

template <int KMAX, bool STATES, int NW = ho_warps<KMAX>()>
struct HOM {
  static constexpr int C = 16, KM = KMAX, KP = KM + 4, AP = C + 4, LS = kVT + 8;  // padded rows: conflict-free fragments
  static constexpr int kT = 32 * NW;
  static constexpr int W = 0, Kd = C * KP, Bd = 2 * C * KP, Qg = 3 * C * KP, U = (STATES ? 3 : 4) * C * KP;
  static constexpr int Vv = U + C * kVT, Aqk = Vv + C * kVT, Aqb = Aqk + (STATES ? 0 : C * AP);
  static constexpr int E = Aqb + (STATES ? 0 : C * AP), stage = E + KM;
  static constexpr int NS = 4;
  static constexpr int TPW = KM / (4 * NW), WPR = 4 / TPW;  // state tiles (16 x 8) a warp; warps a 16-row tile
  // Phase 1's K parts: 8 warps (v_new and qg S, 4 column tiles each) a part in the forward, 4 (v_new) in the states
  // mode; each part's v_new (and, past the first part, qg S) goes to its own buffer and the parts are added where
  // they are read, in a fixed order (sum_of_parts).
  static constexpr int KSPLIT = STATES ? NW / 4 : NW / 8, KSPAN = KM / KSPLIT;
  static constexpr int VN = KSPLIT, QN = STATES ? 0 : KSPLIT - 1;  // v_new buffers; qg S buffers
  static constexpr std::size_t bytes = (std::size_t(NS) * stage + KM * LS + (VN + QN) * C * LS) * sizeof(float);
  static_assert(TPW * WPR == 4 && KSPLIT >= 1 && (KSPLIT & (KSPLIT - 1)) == 0 && KSPAN % 8 == 0, "chunk_ho mma: warps");
};
static_assert(HOM<64, false>::bytes <= 110 * 1024 && HOM<64, true>::bytes <= 110 * 1024,
              "chunk_ho mma: two blocks an SM at K <= 64");
static_assert(HOM<128, false>::bytes <= 227 * 1024 && HOM<128, true>::bytes <= 227 * 1024,
              "chunk_ho mma: one block an SM at K <= 128");

// Two adjacent outputs in one store: 16-bit, each rounded to nearest as st<T> (4 bytes), or fp32 in the fp32-output
// mode (8 bytes; i is even and o 8-byte aligned, checked by chunk_h_o).
template <typename T>
__device__ __forceinline__ void st2(void* o, std::int64_t i, float x, float y, bool fp32) {
  if (fp32)
    *reinterpret_cast<float2*>(static_cast<float*>(o) + i) = make_float2(x, y);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *reinterpret_cast<__nv_bfloat162*>(static_cast<T*>(o) + i) = __floats2bfloat162_rn(x, y);
  else
    *reinterpret_cast<__half2*>(static_cast<T*>(o) + i) = __floats2half2_rn(x, y);
}

template <typename T, int KMAX, bool STATES, int NW>
__global__ void __launch_bounds__(32 * NW) chunk_ho_mma_kernel(HOArgs p) {
  using L = HOM<KMAX, STATES, NW>;
  constexpr int NS = L::NS, C = L::C, KP = L::KP, AP = L::AP, LS = L::LS, TPW = L::TPW, kT = L::kT;
  static_assert(C * L::KM / 4 % kT == 0 && C * C <= kT, "chunk_ho mma: whole copies a thread");
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* Ss = sm + NS * L::stage;  // [KM][LS], the state before the chunk
  float* Vn = Ss + L::KM * LS;     // [VN][C][LS]: v_new's K parts
  float* Qs = Vn + L::VN * C * LS; // [QN][C][LS]: qg S's K parts past the first (the forward at 16 warps)

  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const std::int64_t count = walked_chunks(p.geo, seq, C);
  const int c0 = vtile_of_block(p.geo) * kVT;
  const std::int64_t nh = seq.n * H + h;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;

  // Each thread's copies are fixed pieces of the chunk's rows: their offsets from the chunk's first row of head h
  // (kp: the K-wide rows, offU: u's V tile, offV: v's, offA: A_qk, A_qb) are computed once here, so that a chunk's
  // indices are one int64 multiply-add a width plus one add a piece instead of tix's two a piece. Same addresses.
  const int e = threadIdx.x;
  const RowPieces<C, L::KM, kT> kp(H * K);  // kp.off: the K-wide rows' pieces (kg, bg, w, qg)
  const int ur = e / (kVT / 4), ux = (e % (kVT / 4)) * 4;  // e < C kVT / 4: a 16-byte piece of u's tile
  const std::int64_t offU = ur * H * V + c0 + ux;
  constexpr int EPC = 16 / sizeof(T);
  const int vr = e / (kVT / EPC), vx = (e % (kVT / EPC)) * EPC;  // e < C kVT / EPC: of v's
  const std::int64_t offV = vr * H * V + c0 + vx;
  const int ar = e / C, as = e % C;
  const std::int64_t offA = ar * H * C + as;
  auto load = [&](std::int64_t c, int slot) {
    float* sg = sm + slot * L::stage;
    const Chunk ch = chunk_in(seq, c, C);
    const std::int64_t row = ch.bos * H + h, rowK = row * K, rowV = row * V;
#pragma unroll
    for (int j = 0; j < kp.N; ++j) {
      const int r = kp.r[j], d = kp.d[j];
      const bool ok = r < ch.len && d < K;
      const std::int64_t ix = ok ? rowK + kp.off[j] : 0;
      const int o = r * KP + d;
      cp16(sg + L::W + o, p.w + ix, ok);
      cp16(sg + L::Kd + o, p.kg + ix, ok);
      cp16(sg + L::Bd + o, p.bg + ix, ok);
      if constexpr (!STATES) cp16(sg + L::Qg + o, p.qg + ix, ok);
    }
    if (e < C * kVT / 4) {
      const bool ok = ur < ch.len && c0 + ux < V;
      cp16(sg + L::U + 4 * e, p.u + (ok ? rowV + offU : 0), ok);
    }
    if (e < C * kVT / EPC) {
      const bool ok = vr < ch.len && c0 + vx < V;
      cp16(sg + L::Vv + 4 * e, static_cast<const T*>(p.v) + (ok ? rowV + offV : 0), ok);
    }
    if (e < L::KM / 4) {
      const bool ok = 4 * e < K;
      cp16(sg + L::E + 4 * e, p.egl + (ok ? (ch.g * H + h) * K + 4 * e : 0), ok);
    }
    if (!STATES && e < C * C) {
      const bool ok = ar < ch.len && as <= ar;
      const std::int64_t ix = ok ? row * C + offA : 0;
      cp4(sg + L::Aqk + ar * AP + as, p.Aqk + ix, ok);
      cp4(sg + L::Aqb + ar * AP + as, p.Aqb + ix, ok);  // 4-byte: above the diagonal A may hold anything
    }
  };

  const int mt = warp / L::WPR, nb0 = (warp % L::WPR) * TPW;  // state tiles: rows 16 mt .., columns 8 (nb0 + j) ..
  float sa[TPW][4];
#pragma unroll
  for (int j = 0; j < TPW; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int i = 16 * mt + g + (q >= 2 ? 8 : 0), col = 8 * (nb0 + j) + 2 * t + (q & 1);
      sa[j][q] = (p.h0 && i < K && c0 + col < V) ? p.h0[(nh * K + i) * V + c0 + col] : 0.f;
      Ss[i * LS + col] = sa[j][q];
    }
  ring_start<NS>(count, load);
  // phase 1: v_new (mat 0) or qg S (mat 1, the forward), columns 8 nt .., over K part kpart
  const int nt = warp & 3, kpart = STATES ? warp >> 2 : warp >> 3, mat = STATES ? 0 : (warp >> 2) & 1;
  constexpr int KSPAN = L::KSPAN;  // the k-steps a phase-1 warp runs
  const int kbase = kpart * KSPAN;
  for (std::int64_t c = 0; c < count; ++c) {
    ring_advance<NS>(c, count, load);  // chunk c's stage landed; chunk c - 1 fully done (state written)
    const Chunk ch = chunk_in(seq, c, C);
    const float* sg = sm + ring_slot<NS>(c) * L::stage;
    const float* Kd = sg + L::Kd;
    const float* Bd = sg + L::Bd;
    const float* U = sg + L::U;
    const T* Vv = reinterpret_cast<const T*>(sg + L::Vv);
    const float* Aqk = sg + L::Aqk;
    const float* Aqb = sg + L::Aqb;
    const float* egl = sg + L::E;
    if constexpr (STATES) {  // h: the state before this chunk, from the accumulators (8-byte stores)
      float* hc = p.h + (ch.g * H + h) * K * V;
#pragma unroll
      for (int j = 0; j < TPW; ++j)
#pragma unroll
        for (int q = 0; q < 4; q += 2) {
          const int i = 16 * mt + g + (q >= 2 ? 8 : 0), col = c0 + 8 * (nb0 + j) + 2 * t;
          if (i < K && col < V) *reinterpret_cast<float2*>(hc + i * V + col) = make_float2(sa[j][q], sa[j][q + 1]);
        }
    }
    // Four accumulators a tile (hi*hi of even / odd k-steps, hi*lo, lo*hi): dependent MMA chains of 4 and 8, not 24.
    float acc[4], acc2[4] = {0.f, 0.f, 0.f, 0.f}, cor[4] = {0.f, 0.f, 0.f, 0.f}, cor2[4] = {0.f, 0.f, 0.f, 0.f};
    {  // phase 1: v_new = u + w S (mat 0), qg S (mat 1)
      const float* M = sg + (mat && !STATES ? L::Qg : L::W);
      const int cn = 8 * nt + 2 * t;
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] = mat || kpart > 0 ? 0.f : U[(g + (q >= 2 ? 8 : 0)) * kVT + cn + (q & 1)];
#pragma unroll
      for (int kk = 0; kk < KSPAN; kk += 8) {
        const int k0 = kbase + kk;
        unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
        load_a_split(M, KP, k0, g, t, ah, al);
        load_b_split(Ss, LS, k0, 8 * nt, g, t, bh0, bl0, bh1, bl1);
        if ((kk / 8) % 2 == 0) mma_3xtf32(acc, cor, cor2, ah, al, bh0, bl0, bh1, bl1);
        else mma_3xtf32(acc2, cor, cor2, ah, al, bh0, bl0, bh1, bl1);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        acc[q] = (acc[q] + acc2[q]) + (cor[q] + cor2[q]);
        acc2[q] = cor[q] = cor2[q] = 0.f;
      }
      if (mat == 0 || kpart > 0) {  // v_new's part kpart, or (mat 1) qg S's past the first
        float* Vd = mat == 0 ? Vn + kpart * C * LS : Qs + (kpart - 1) * C * LS;
        *reinterpret_cast<float2*>(Vd + g * LS + cn) = make_float2(acc[0], acc[1]);
        *reinterpret_cast<float2*>(Vd + (g + 8) * LS + cn) = make_float2(acc[2], acc[3]);
      }
    }
    __syncthreads();
    if constexpr (STATES) {  // v_new out: its K parts added (as the state update adds them), 8-byte stores
      static_assert(C * kVT % 2 == 0, "chunk_ho mma: v_new element pairs");
      for (int x = threadIdx.x; x < C * kVT / 2; x += kT) {
        const int r = x / (kVT / 2), cx = 2 * (x % (kVT / 2));
        if (r < ch.len && c0 + cx < V)
          *reinterpret_cast<float2*>(p.vnew + tix(ch.bos + r, h, H, c0 + cx, V)) =
              make_float2(sum_of_parts<L::VN>(Vn, C * LS, r * LS + cx), sum_of_parts<L::VN>(Vn, C * LS, r * LS + cx + 1));
      }
    } else if (mat == 1 && kpart == 0) {  // o = qg S + A_qk v + A_qb v_new, columns 8 nt ..
      if constexpr (L::QN > 0) {  // qg S's other K parts, in order
        const int cn = 8 * nt + 2 * t;
#pragma unroll
        for (int j = 0; j < L::QN; ++j)
#pragma unroll
          for (int q = 0; q < 4; ++q) acc[q] += Qs[j * C * LS + (g + (q >= 2 ? 8 : 0)) * LS + cn + (q & 1)];
      }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4], b0, b1;
        load_a_split(Aqk, AP, k0, g, t, ah, al);
        load_b_exact(Vv, kVT, k0, 8 * nt, g, t, b0, b1);
        mma_2xtf32(acc2, cor, ah, al, b0, b1);
      }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
        load_a_split(Aqb, AP, k0, g, t, ah, al);
        load_b_split_parts<L::VN>(Vn, C * LS, LS, k0, 8 * nt, g, t, bh0, bl0, bh1, bl1);
        mma_3xtf32(acc, cor2, cor, ah, al, bh0, bl0, bh1, bl1);
      }
      const int col = c0 + 8 * nt + 2 * t;
      if (col < V) {  // V even here (16-byte copies of v), so col + 1 < V too; o 4-byte aligned (checked)
#pragma unroll
        for (int q = 0; q < 4; q += 2) {
          const int r = g + (q >= 2 ? 8 : 0);
          if (r < ch.len)
            st2<T>(p.o, tix(ch.bos + r, h, H, col, V), (acc[q] + acc2[q]) + (cor[q] + cor2[q]),
                   (acc[q + 1] + acc2[q + 1]) + (cor[q + 1] + cor2[q + 1]), p.o_fp32);
        }
      }
    }
    {  // S' = diag(exp(gl)) S + kg^T v + bg^T v_new, TPW tiles of 16 x 8 a warp
      const float e0 = egl[16 * mt + g], e1 = egl[16 * mt + g + 8];
      float cs[TPW][4], cs2[TPW][4], hh[TPW][4];  // lo*hi, hi*lo and bg^T v_new's hi*hi apart: chains of 4, 2, 2, 2
#pragma unroll
      for (int j = 0; j < TPW; ++j) {
        sa[j][0] *= e0;
        sa[j][1] *= e0;
        sa[j][2] *= e1;
        sa[j][3] *= e1;
#pragma unroll
        for (int q = 0; q < 4; ++q) cs[j][q] = cs2[j][q] = hh[j][q] = 0.f;
      }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4];
        load_at_split(Kd, KP, k0, 16 * mt, g, t, ah, al);
#pragma unroll
        for (int j = 0; j < TPW; ++j) {
          unsigned b0, b1;
          load_b_exact(Vv, kVT, k0, 8 * (nb0 + j), g, t, b0, b1);
          mma_2xtf32(sa[j], cs[j], ah, al, b0, b1);
        }
      }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4];
        load_at_split(Bd, KP, k0, 16 * mt, g, t, ah, al);
#pragma unroll
        for (int j = 0; j < TPW; ++j) {
          unsigned bh0, bl0, bh1, bl1;
          load_b_split_parts<L::VN>(Vn, C * LS, LS, k0, 8 * (nb0 + j), g, t, bh0, bl0, bh1, bl1);
          mma_3xtf32(hh[j], cs2[j], cs[j], ah, al, bh0, bl0, bh1, bl1);
        }
      }
#pragma unroll
      for (int j = 0; j < TPW; ++j) {
#pragma unroll
        for (int q = 0; q < 4; ++q) sa[j][q] = (sa[j][q] + hh[j][q]) + (cs[j][q] + cs2[j][q]);
        const int cn = 8 * (nb0 + j) + 2 * t;
        *reinterpret_cast<float2*>(Ss + (16 * mt + g) * LS + cn) = make_float2(sa[j][0], sa[j][1]);
        *reinterpret_cast<float2*>(Ss + (16 * mt + g + 8) * LS + cn) = make_float2(sa[j][2], sa[j][3]);
      }
    }
  }
  cp_wait<0>();
  if (p.ht)
#pragma unroll
    for (int j = 0; j < TPW; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int i = 16 * mt + g + (q >= 2 ? 8 : 0), col = c0 + 8 * (nb0 + j) + 2 * t + (q & 1);
        if (i < K && col < V) p.ht[(nh * K + i) * V + col] = sa[j][q];
      }
}

}  // namespace

void launch_mma(const HOArgs& p, ElemType dtype, dim3 grid, bool states, cudaStream_t stream) {
  dispatch_types(dtype, dtype, [&](auto t, auto) {
    using T = decltype(t);
    if constexpr (!std::is_same_v<T, float>) {
      auto go = [&](auto km, auto st) {
        constexpr int KMAX = decltype(km)::value;
        constexpr bool STATES = decltype(st)::value;
        constexpr int NW = ho_warps<KMAX>();
        using L = HOM<KMAX, STATES, NW>;
        set_smem(chunk_ho_mma_kernel<T, KMAX, STATES, NW>, L::bytes);
        chunk_ho_mma_kernel<T, KMAX, STATES, NW><<<grid, L::kT, L::bytes, stream>>>(p);
      };
      auto with_k = [&](auto st) {
        if (p.K <= 64) go(std::integral_constant<int, 64>{}, st);
        else go(std::integral_constant<int, 128>{}, st);
      };
      if (states) with_k(std::true_type{});
      else with_k(std::false_type{});
    }
  });
}

}  // namespace dplr::gpu::detail::ho
