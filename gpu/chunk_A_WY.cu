// Stages "A" and "WY" fused (chunk_A_WY; the fused chunk path), for 16-bit inputs at C = 16, K, V <= 128: the
// same quantities as chunk_A then chunk_WY (see those files for the formulas), one warp per (chunk, head) for
// K, V <= 64, two (64 columns each) above; A_ak, A_ab, ag and A_ab_inv stay in shared memory.
//
// Why this shape: the FMA kernels of stage A read about one float of shared memory per FMA (every cell's sum
// over d re-reads its two rows), which bounds them near 0.7 ms at B8 T4096 H16 D64 on an H200. Here the sums
// over d run on tensor cores (mma.sync m16n8k8, 3xTF32: fp32-accurate products, see mma.cuh), which needs the
// decay factor exp(gi_r - gi_s) to factor into a row part and a column part. It does, with both parts <= 1 for
// any gk <= 0, when a reference token m with s <= m <= r is shared by a whole block of cells:
//     exp(gi_r - gi_s) = exp(gi_r - gi_m) exp(gi_m - gi_s),   exp(ge_r - gi_s) = exp(gi_{r-1} - gi_m) exp(gi_m - gi_s)
// The strictly lower triangle of the 16 x 16 chunk splits into such blocks level by level (block size Lb = 8, 4,
// 2, 1): at level Lb, rows r with r % 2Lb >= Lb meet columns s with s % 2Lb < Lb of the same 2Lb-block, with m the
// last row of that block's first half. Each level is one 8 x 8 product per matrix (its 8 rows against its 8
// columns, the cells of different 2Lb-blocks discarded): qt = q exp(gi_r - gi_m) and at = a exp(gi_{r-1} - gi_m)
// stacked as the 16 rows of the A operand, kt = k exp(gi_m - gi_s) and bt as two 8-column B tiles. The diagonal
// (r = s, factor 1) of A_qk and A_qb is a plain dot product of each lane's two columns, summed across the warp.
// Every factor, here and in the gated operands, is a product of per-token decays e_j = exp(gk_j) over the tokens
// between its two ends (exp(gi_r - gi_m) = e_{m+1} ... e_r), so it is <= 1 for gk <= 0 and needs neither a
// cumulative sum nor an exponential per cell: 32 exponentials a lane for the whole chunk. Relative error of a
// product of n factors: about n/2 ulp (n <= 16: ~1e-6 at worst), far below the 16-bit outputs' rounding; chunk_A's
// fp64 sums stay the reference path (and fp32 inputs use it).
// WY: A_ab_inv by forward substitution (16 lanes, one column each, as chunk_WY), then M = A_ab_inv A_ak,
// w = A_ab_inv ag and u = M v on tensor cores (v, 16-bit, is exact in TF32: 2 MMAs a product instead of 3).
// Each lane owns two adjacent columns d = 64 w + 2 lane, d + 1 of K (and V; w the warp's half, 0 for K, V <= 64):
// its loads are 4-byte pairs, its decay factors and gated operands need no other lane. About 240 registers a
// thread (every row of the chunk is held), so 8 warps an SM; capping registers for 12 warps spilled and measured
// slower (0.532 vs 0.495 ms at B8 T4096 H16 D64 on an H200; the first version, with fp64 sums, exponentials per
// level and v as fp32, 0.717).
// Accumulation: each k-step's hi*hi product starts from a zero accumulator and is added to the running sum in
// fp32. Tensor cores are reported to align the terms of an MMA to the largest and truncate (Fasi et al. 2021, V100
// / A100; assumed, not measured, for the H200); into a running sum that error has one sign, and the recurrence
// compounds it where the transition does not contract (property case 7-12, session 7: edge of stability, ht at
// 17.9 conditioning floors on the H200). Host emulation under that model (scripts/gpu-emulate,
// DPLR_EMULATE_MMA_TRUNCATE=25, edge-of-stability B1 T282 K126 V128 fp16 seed 1): o misrounded 4.97% -> 1.23% (the
// staged fp32 path: 1.17%), ht rel RMSE 2.43e-5 -> 6.1e-6; with exact emulated sums this version gives 0.45%, 8.7e-7.
#include <cstdint>
#include <string>
#include <type_traits>

#include "gpu/common.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kC = 16, kKM = 64, kWarps = 2;

// One warp's shared memory, in floats. Padded rows make the fragment reads conflict-free: rows read as A
// fragments (or as B fragments stored n-major) have a stride of 4 mod 32 floats, rows read k-major as B
// fragments 8 mod 32.
struct AWY {
  static constexpr int KP = kKM + 4, BP = kKM + 8, AP = kC + 4, BAP = kC + 8, VW = BP / 2;
  // region 1: the level operands QA (rows 0-7 qt, 8-15 at) and KB (rows 0-7 kt, 8-15 bt), [16][KP] each;
  //           after the levels: ag [16][BP] and A_ab_inv [16][AP]
  static constexpr int QA = 0, KB = QA + kC * KP, AG = 0, AINV = AG + kC * BP, R1 = 2 * kC * KP;
  static constexpr int VS = R1;  // v as loaded (16-bit pairs), [16][VW] words
  static constexpr int AQK = VS + kC * VW, AQB = AQK + kC * AP, AAB = AQB + kC * AP;  // [16][AP]; M replaces A_ab
  static constexpr int AAK = AAB + kC * AP;                                            // [16][BAP] (B fragments)
  static constexpr int total = AAK + kC * BAP;
};
static_assert(AWY::AINV + kC * AWY::AP <= AWY::R1, "ag and A_ab_inv overlay the level operands");
static_assert(AWY::total % 4 == 0 && AWY::AQK % 4 == 0 && AWY::AP % 4 == 0, "16-byte aligned rows of A_qk, A_qb");
static_assert(AWY::AAK % 4 == 0 && AWY::BAP % 4 == 0 && AWY::AINV % 4 == 0, "16-byte aligned rows of A_ak, A_ab_inv");

// Then, a warp's landing area for its next chunk's rows (cp.async; read into registers at that chunk's start, after
// which the chunk after it is put in flight), in 4-byte words: q, k, a, b as [16][32] (word `lane` of row r: the
// pair of columns 2 lane, 2 lane + 1 of the warp's 64), gk as [16][GW]. (v lands in VS, one chunk ahead as well.)
template <typename G>
struct AWYRows {
  static constexpr int GW = sizeof(G) == 4 ? 64 : 32;
  static constexpr int Q = 0, K = kC * 32, A = 2 * kC * 32, B = 3 * kC * 32, Gk = 4 * kC * 32, words = Gk + kC * GW;
  static constexpr int total = AWY::total + words;  // floats a warp
  static constexpr std::size_t bytes = std::size_t(kWarps) * total * sizeof(float);
};
// Four blocks (8 warps) an SM, as the registers allow: 4 x (bytes + 1 KB the driver reserves a block) <= 228 KB.
static_assert(4 * (AWYRows<float>::bytes + 1024) <= 228 * 1024 && 4 * (AWYRows<__half>::bytes + 1024) <= 228 * 1024,
              "chunk_A_WY: four blocks an SM");
static_assert(AWY::total % 4 == 0 && AWYRows<float>::GW % 4 == 0, "16-byte aligned landing rows");

struct AWYArgs {
  const void *q, *k, *a, *b, *gk, *v;
  ChunkGeom geo;
  std::int64_t H, NT;  // NT: chunks a batch row, or the bound on all chunks with cu_seqlens (num_chunks)
  int K, V;
  int cpw;  // consecutive chunks a warp (KW = 2: a block) walks
  float scale;
  float *Aqk, *Aqb;
  GatedOperands g;
  float *w, *u;
  float *Aak, *Ainv;  // BWD only (the chunk backward's recompute): A_ak and A_ab_inv out
};

// Two adjacent 16-bit elements (one 4-byte load) and their values.
template <typename T>
__device__ __forceinline__ unsigned ld_pair(const void* p, std::int64_t i) {
  return *reinterpret_cast<const unsigned*>(static_cast<const T*>(p) + i);
}
template <typename T>
__device__ __forceinline__ float2 unpack2(unsigned x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return make_float2(__uint_as_float(x << 16), __uint_as_float(x & 0xffff0000u));
  } else {
    __half2 hx;
    static_assert(sizeof(hx) == sizeof(x));
    memcpy(&hx, &x, sizeof(x));
    return __half22float2(hx);
  }
}
template <typename G>
__device__ __forceinline__ float2 ld_gk2(const void* p, std::int64_t i) {
  if constexpr (std::is_same_v<G, float>) return *reinterpret_cast<const float2*>(static_cast<const float*>(p) + i);
  else return unpack2<G>(ld_pair<G>(p, i));
}
// One element of a row of 16-bit pairs stored as loaded (n: its index in the row), as the bits of an fp32 (exact).
template <typename T>
__device__ __forceinline__ unsigned elem_bits(const unsigned* row, int n) {
  const unsigned x = row[n >> 1];
  if constexpr (std::is_same_v<T, __nv_bfloat16>) return (n & 1) ? (x & 0xffff0000u) : (x << 16);
  else return __float_as_uint((n & 1) ? unpack2<T>(x).y : unpack2<T>(x).x);
}
__device__ __forceinline__ float2 mul2(float2 x, float2 y) { return make_float2(x.x * y.x, x.y * y.y); }
__device__ __forceinline__ void st2f(float* p, float2 x) { *reinterpret_cast<float2*>(p) = x; }

// One round of a warp reduce-scatter of 2 OFF values a lane: lanes l and l ^ OFF exchange halves and add, so
// each keeps OFF sums (the lower lane the first half). After rounds 16, 8, 4, 2, 1 lane l holds the total of
// value l. A template so that every index is a constant (a runtime index would put the array on the stack).
template <int OFF>
__device__ __forceinline__ void reduce_scatter_round(float (&v)[32], int lane) {
  const bool upper = (lane & OFF) != 0;
#pragma unroll
  for (int j = 0; j < OFF; ++j) {
    const float send = upper ? v[j] : v[j + OFF];
    const float keep = upper ? v[j + OFF] : v[j];
    v[j] = keep + __shfl_xor_sync(0xffffffffu, send, OFF);
  }
}

// One level of the strictly lower triangle (block size Lb, a template so that every register index is a
// constant): the pre-scaled operands into QA / KB, the 8 x 8 products on tensor cores, the valid cells out.
struct LevelArgs {
  float *QA, *KB, *Aqk, *Aqb, *Aak, *Aab;
  float scale;
  int d, g, t;
};
template <typename T, int Lb>
__device__ __forceinline__ void level(const LevelArgs& la, const unsigned (&rq)[kC], const unsigned (&rk)[kC],
                                      const unsigned (&ra)[kC], const unsigned (&rb)[kC], const float2 (&e)[kC]) {
  constexpr int KP = AWY::KP, AP = AWY::AP, BAP = AWY::BAP;
  float *QA = la.QA, *KB = la.KB;
  const int d = la.d, g = la.g, t = la.t;
  __syncwarp();  // the previous level's fragment reads are done
#pragma unroll
  for (int blk = 0; blk < kC / (2 * Lb); ++blk) {
    const int b0 = 2 * Lb * blk, m = b0 + Lb - 1;
    float2 f = make_float2(1.f, 1.f);  // column role, s = m down to b0: kt, bt with exp(gi_m - gi_s) = e_{s+1} .. e_m
#pragma unroll
    for (int i = 0; i < Lb; ++i) {
      const int s = m - i, ci = Lb * blk + Lb - 1 - i;
      st2f(KB + ci * KP + d, mul2(unpack2<T>(rk[s]), f));
      st2f(KB + (8 + ci) * KP + d, mul2(unpack2<T>(rb[s]), f));
      f = mul2(f, e[s]);
    }
    f = make_float2(1.f, 1.f);  // row role, r = m + 1 ..: qt with exp(gi_r - gi_m), at with exp(gi_{r-1} - gi_m)
#pragma unroll
    for (int i = 0; i < Lb; ++i) {
      const int r = m + 1 + i, ri = Lb * blk + i;
      st2f(QA + (8 + ri) * KP + d, mul2(unpack2<T>(ra[r]), f));
      f = mul2(f, e[r]);
      const float2 q2 = unpack2<T>(rq[r]);
      st2f(QA + ri * KP + d, make_float2(q2.x * la.scale * f.x, q2.y * la.scale * f.y));
    }
  }
  __syncwarp();
  // hi*hi apart from the cross terms (shorter dependent MMA chains), and each k-step's hi*hi from a zero
  // accumulator, added in fp32 (round to nearest), so that the tensor core's alignment of the terms (assumed
  // truncating: the note at the top of the file) acts on one k-step's 8 products, not on the running sum.
  float acc[2][4] = {}, cor[2][4] = {};
#pragma unroll
  for (int k0 = 0; k0 < kKM; k0 += 8) {
    unsigned ah[4], al[4];
    load_a_split(QA, KP, k0, g, t, ah, al);
#pragma unroll
    for (int nt = 0; nt < 2; ++nt) {  // B (k = column d, n = the level's column index), KB stored n-major
      unsigned bh0, bl0, bh1, bl1;
      load_bt_split(KB, KP, k0, 8 * nt, g, t, bh0, bl0, bh1, bl1);
      float step[4] = {};
      mma_3xtf32(step, cor[nt], cor[nt], ah, al, bh0, bl0, bh1, bl1);
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[nt][q] += step[q];
    }
  }
#pragma unroll
  for (int nt = 0; nt < 2; ++nt)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int row = g + (q >= 2 ? 8 : 0), ri = row & 7, ci = 2 * t + (q & 1);
      if (ri / Lb != ci / Lb) continue;  // a row and a column of different blocks
      const int r = (ri / Lb) * 2 * Lb + Lb + ri % Lb, s = (ci / Lb) * 2 * Lb + ci % Lb;
      const float x = acc[nt][q] + cor[nt][q];
      if (row < 8) (nt == 0 ? la.Aqk : la.Aqb)[r * AP + s] = x;
      else if (nt == 0) la.Aak[r * BAP + s] = x;
      else la.Aab[r * AP + s] = x;
    }
}

// KW: warps a chunk. KW = 1 (K, V <= 64): each of the block's warps takes chunks of its own and no block-wide
// barrier is used. KW = 2 (K or V up to 128): the block's two warps take one chunk at a time, warp w its columns
// 64 w .. 64 w + 63 of K and V; each forms the A matrices' partial sums over its columns, the two are added
// (the same sum in both: a + b == b + a), then each runs WY for its own columns of w and u.
// A warp (KW = 2: the block) walks p.cpw consecutive chunks, the next one's rows in flight (cp.async into its
// AWYRows area, v into VS once u is formed) while it computes this one: one warp a chunk with every load issued up
// front waited on its inputs (ncu, H200, B8 T4096 H16 D64: long scoreboard the largest stall, 0.40 instructions a
// scheduler-cycle at 8 warps an SM). Every chunk's arithmetic is as before (bitwise).
// BWD (the chunk backward's recompute, AWYBackwardTensors): A_ak and A_ab_inv are also written, from the shared
// memory where the forward (BWD = false, the same instructions as before the flag) keeps them.
template <typename T, typename G, int KW, bool BWD>
__global__ void __launch_bounds__(32 * kWarps) chunk_A_WY_mma_kernel(AWYArgs p) {
  using L = AWY;
  using R = AWYRows<G>;
  constexpr int BP = L::BP, AP = L::AP, BAP = L::BAP, VW = L::VW;
  static_assert(KW == 1 || KW == kWarps, "a chunk takes one warp or the whole block");
  extern __shared__ __align__(16) float smem[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;
  const int half = KW == 1 ? 0 : warp;  // this warp's 64 columns of K and V
  const std::int64_t c_first = (KW == 1 ? std::int64_t(blockIdx.x) * kWarps + warp : std::int64_t(blockIdx.x)) * p.cpw;
  const std::int64_t c_end = c_first + p.cpw < p.NT ? c_first + p.cpw : p.NT;
  float* sm = smem + warp * R::total;
  float *Aqk = sm + L::AQK, *Aqb = sm + L::AQB, *Aab = sm + L::AAB, *Aak = sm + L::AAK;
  unsigned* rows = reinterpret_cast<unsigned*>(sm + L::total);
  unsigned* VS = reinterpret_cast<unsigned*>(sm + L::VS);  // v of the chunk, as loaded (16-bit pairs)
  const std::int64_t h = blockIdx.y, H = p.H;
  const int dl = 2 * lane, d = kKM * half + dl;  // this lane's columns d, d + 1 (dl in the warp's 64; K, V even)
  const bool dk = d < p.K, dv = d < p.V;
  const float scale = p.scale;
  // A chunk's rows into the lane's own words (zero past the chunk's end and past K, V): q, k, a, b, gk, and v.
  auto stage_rows = [&](const Chunk& ch) {
#pragma unroll
    for (int r = 0; r < kC; ++r) {
      const bool ok = r < ch.len && dk;
      const std::int64_t ik = ok ? tix(ch.bos + r, h, H, d, p.K) : 0;
      cp4(rows + R::Q + r * 32 + lane, static_cast<const T*>(p.q) + ik, ok);
      cp4(rows + R::K + r * 32 + lane, static_cast<const T*>(p.k) + ik, ok);
      cp4(rows + R::A + r * 32 + lane, static_cast<const T*>(p.a) + ik, ok);
      cp4(rows + R::B + r * 32 + lane, static_cast<const T*>(p.b) + ik, ok);
      if constexpr (std::is_same_v<G, float>) cp8(rows + R::Gk + r * R::GW + 2 * lane, static_cast<const G*>(p.gk) + ik, ok);
      else cp4(rows + R::Gk + r * R::GW + lane, static_cast<const G*>(p.gk) + ik, ok);
    }
  };
  auto stage_v = [&](const Chunk& ch) {
#pragma unroll
    for (int r = 0; r < kC; ++r) {
      const bool ok = r < ch.len && dv;
      cp4(VS + r * VW + lane, static_cast<const T*>(p.v) + (ok ? tix(ch.bos + r, h, H, d, p.V) : 0), ok);
    }
  };
  // Two commit groups a chunk, in this order: its rows, then its v (empty groups where there is no chunk), so that
  // cp_wait<1> at the top of a chunk means its rows, and before u its v.
  Chunk next{};
  next.valid = false;
  if (c_first < c_end) next = chunk_at(p.geo, blockIdx.z, c_first, kC);
  if (next.valid) stage_rows(next);
  cp_commit();
  if (next.valid) stage_v(next);
  cp_commit();
  for (std::int64_t c = c_first; c < c_end; ++c) {
    const Chunk ch = next;
    next.valid = false;
    if (c + 1 < c_end) next = chunk_at(p.geo, blockIdx.z, c + 1, kC);
    cp_wait<1>();  // this chunk's rows have landed (each lane reads only the words it copied)
    // Every input row of the chunk in registers, 16-bit pairs kept packed.
    unsigned rq[kC], rk[kC], ra[kC], rb[kC];
    float2 rg[kC];
#pragma unroll
    for (int r = 0; r < kC; ++r) {
      rq[r] = rows[R::Q + r * 32 + lane];
      rk[r] = rows[R::K + r * 32 + lane];
      ra[r] = rows[R::A + r * 32 + lane];
      rb[r] = rows[R::B + r * 32 + lane];
      if constexpr (std::is_same_v<G, float>) rg[r] = *reinterpret_cast<const float2*>(rows + R::Gk + r * R::GW + 2 * lane);
      else rg[r] = unpack2<G>(rows[R::Gk + r * R::GW + lane]);
    }
    __syncwarp();  // the reads are done before the next chunk's copies reuse the words
    if (next.valid) stage_rows(next);
    cp_commit();
    if (!ch.valid) {  // a varlen grid's bound past the last chunk: nothing to compute
      if (next.valid) stage_v(next);
      cp_commit();
      continue;
    }
    // The A matrices start at zero: above the diagonal, and in rows and columns past a short chunk's end.
    for (int e = lane; e < (L::total - L::AQK) / 4; e += 32)
      reinterpret_cast<float4*>(sm + L::AQK)[e] = make_float4(0.f, 0.f, 0.f, 0.f);
    // Per-token decays of the lane's two columns (1 past the chunk's end, where gk was staged as 0).
    float2 e[kC];
#pragma unroll
    for (int r = 0; r < kC; ++r)
      e[r] = make_float2(ex2_ftz(rg[r].x * static_cast<float>(kLog2e)), ex2_ftz(rg[r].y * static_cast<float>(kLog2e)));

    // The strictly lower triangle, level by level (see the top of the file).
    {
      const LevelArgs la{sm + L::QA, sm + L::KB, Aqk, Aqb, Aak, Aab, scale, dl, g, t};
      level<T, 8>(la, rq, rk, ra, rb, e);
      level<T, 4>(la, rq, rk, ra, rb, e);
      level<T, 2>(la, rq, rk, ra, rb, e);
      level<T, 1>(la, rq, rk, ra, rb, e);
    }

    // The gated operands (stage A's outputs) and ag for WY, which replaces the level operands:
    //   kg, bg = k, b exp(gl - gi_r) = k, b e_{r+1} .. e_15 (suffix products; e = 1 past the end, so gl is reached),
    //   qg = scale q exp(gi_r) = e_0 .. e_r, ag = a exp(gi_{r-1}) (prefix products), eg_last = e_0 .. e_15.
    __syncwarp();
    float* AG = sm + L::AG;
    float part[2 * kC];  // the diagonal's partial dot products (below), formed here where these registers die
    const std::int64_t row0 = tix(ch.bos, h, H, d, p.K), rstride = H * p.K;
    {
      float2 f = make_float2(1.f, 1.f);
  #pragma unroll
      for (int i = 0; i < kC; ++i) {  // r from the last row up (an increasing counter: the loop must unroll)
        const int r = kC - 1 - i;
        const float2 k2 = unpack2<T>(rk[r]), b2 = unpack2<T>(rb[r]);
        if (r < ch.len && dk) {
          st2f(p.g.kg + row0 + r * rstride, mul2(k2, f));
          st2f(p.g.bg + row0 + r * rstride, mul2(b2, f));
        }
        f = mul2(f, e[r]);
        const float2 q2 = unpack2<T>(rq[r]);
        const float qx = q2.x * scale, qy = q2.y * scale;
        part[r] = fmaf(qx, k2.x, qy * k2.y);
        part[kC + r] = fmaf(qx, b2.x, qy * b2.y);
      }
    }
    {
      float2 f = make_float2(1.f, 1.f);
  #pragma unroll
      for (int r = 0; r < kC; ++r) {
        st2f(AG + r * BP + dl, r < ch.len && dk ? mul2(unpack2<T>(ra[r]), f) : make_float2(0.f, 0.f));
        f = mul2(f, e[r]);
        const float2 q2 = unpack2<T>(rq[r]);
        if (r < ch.len && dk) st2f(p.g.qg + row0 + r * rstride, make_float2(q2.x * scale * f.x, q2.y * scale * f.y));
      }
      if (dk) st2f(p.g.eg_last + (ch.g * H + h) * p.K + d, f);
    }
    // Diagonal of A_qk and A_qb (factor 1): the lanes' two-column partials reduce-scattered across the warp (5
    // rounds, each halving the values a lane holds), which leaves the total of partial l in lane l.
    reduce_scatter_round<16>(part, lane);
    reduce_scatter_round<8>(part, lane);
    reduce_scatter_round<4>(part, lane);
    reduce_scatter_round<2>(part, lane);
    reduce_scatter_round<1>(part, lane);
    if (lane < kC) Aqk[lane * AP + lane] = part[0];
    else Aqb[(lane - kC) * AP + lane - kC] = part[0];
    __syncwarp();
    if constexpr (KW == 2) {  // each warp's A matrices += the other warp's (barrier, read, barrier, add)
      constexpr int N4 = (L::total - L::AQK) / 4, PER = (N4 + 31) / 32;
      __syncthreads();  // both warps' partial sums are written
      float4* mine = reinterpret_cast<float4*>(sm + L::AQK);
      const float4* theirs = reinterpret_cast<const float4*>(smem + (1 - warp) * R::total + L::AQK);
      float4 other[PER];
  #pragma unroll
      for (int i = 0; i < PER; ++i)
        if (lane + 32 * i < N4) other[i] = theirs[lane + 32 * i];
      __syncthreads();
  #pragma unroll
      for (int i = 0; i < PER; ++i)
        if (lane + 32 * i < N4) {
          const float4 m = mine[lane + 32 * i];
          mine[lane + 32 * i] = make_float4(m.x + other[i].x, m.y + other[i].y, m.z + other[i].z, m.w + other[i].w);
        }
      __syncwarp();
    }

    // WY. A_ab_inv = (I - A_ab)^-1 by forward substitution, one column a lane (chunk_WY's order).
    float* Ainv = sm + L::AINV;
    float* M = Aab;  // A_ab is dead once A_ab_inv is formed
    if (lane < kC) unit_lower_inverse_column<kC>(Aab, AP, Ainv, AP, lane);
    __syncwarp();
    unsigned ih[2][4], il[2][4];  // A_ab_inv as A fragments, k-steps 0 and 1
  #pragma unroll
    for (int ks = 0; ks < 2; ++ks) load_a_split(Ainv, AP, 8 * ks, g, t, ih[ks], il[ks]);
  #pragma unroll
    for (int nt = 0; nt < 2; ++nt) {  // M = A_ab_inv A_ak
      float acc[4] = {}, cor[4] = {};
  #pragma unroll
      for (int ks = 0; ks < 2; ++ks) {
        unsigned bh0, bl0, bh1, bl1;
        load_b_split(Aak, BAP, 8 * ks, 8 * nt, g, t, bh0, bl0, bh1, bl1);
        mma_3xtf32(acc, cor, cor, ih[ks], il[ks], bh0, bl0, bh1, bl1);
      }
      st2f(M + g * AP + 8 * nt + 2 * t, make_float2(acc[0] + cor[0], acc[1] + cor[1]));
      st2f(M + (g + 8) * AP + 8 * nt + 2 * t, make_float2(acc[2] + cor[2], acc[3] + cor[3]));
    }
    cp_wait<1>();  // this chunk's v has landed (the next chunk's rows may still be in flight)
    __syncwarp();  // M and every lane's v words visible to the warp
    unsigned mh[2][4], ml[2][4];
  #pragma unroll
    for (int ks = 0; ks < 2; ++ks) load_a_split(M, AP, 8 * ks, g, t, mh[ks], ml[ks]);
    // Rows g and g + 8 of w and u (the lane's two rows): their first elements, once (tix per store was 32 int64
    // multiply-adds a chunk); the columns add to these. (The column loop below runs as compiled since session 14,
    // when these lines separated it from its `#pragma unroll`, which nvcc then ignored; the timings since are of
    // that code. Unrolling it again is untried.)
    float* w_row = p.w + tix(ch.bos + g, h, H, 0, p.K);
    float* u_row = p.u + tix(ch.bos + g, h, H, 0, p.V);
    const std::int64_t w_down = 8 * H * p.K, u_down = 8 * H * p.V;  // row g to row g + 8
    for (int nt = 0; nt < kKM / 8; ++nt) {  // w = A_ab_inv ag and u = M v, 8 of the warp's columns at a time
      const int n0 = 8 * nt, col = kKM * half + n0 + 2 * t;
      const bool r0ok = g < ch.len, r1ok = g + 8 < ch.len;
      if (kKM * half + n0 < p.K) {
        float acc[4] = {}, cor[4] = {};
  #pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
          unsigned bh0, bl0, bh1, bl1;
          load_b_split(AG, BP, 8 * ks, n0, g, t, bh0, bl0, bh1, bl1);
          mma_3xtf32(acc, cor, cor, ih[ks], il[ks], bh0, bl0, bh1, bl1);
        }
        if (col < p.K) {
          if (r0ok) st2f(w_row + col, make_float2(acc[0] + cor[0], acc[1] + cor[1]));
          if (r1ok) st2f(w_row + w_down + col, make_float2(acc[2] + cor[2], acc[3] + cor[3]));
        }
      }
      if (kKM * half + n0 < p.V) {
        float acc[4] = {}, cor[4] = {};
  #pragma unroll
        for (int ks = 0; ks < 2; ++ks) {
          const unsigned b0 = elem_bits<T>(VS + (8 * ks + t) * VW, n0 + g);
          const unsigned b1 = elem_bits<T>(VS + (8 * ks + t + 4) * VW, n0 + g);
          mma_2xtf32(acc, cor, mh[ks], ml[ks], b0, b1);
        }
        if (col < p.V) {
          if (r0ok) st2f(u_row + col, make_float2(acc[0] + cor[0], acc[1] + cor[1]));
          if (r1ok) st2f(u_row + u_down + col, make_float2(acc[2] + cor[2], acc[3] + cor[3]));
        }
      }
    }
    __syncwarp();  // every lane's reads of v are done: the next chunk's v may land in VS
    if (next.valid) stage_v(next);
    cp_commit();

    // A_qk and A_qb rows out (all 16 columns: zero above the diagonal), 16-byte stores.
    if (half == 0) {
      const int r = lane >> 1, half = lane & 1;
      if (r < ch.len) {
        const std::int64_t row = ((ch.bos + r) * H + h) * kC + 8 * half;
        const float4* sq = reinterpret_cast<const float4*>(Aqk + r * AP + 8 * half);
        const float4* sb = reinterpret_cast<const float4*>(Aqb + r * AP + 8 * half);
        float4* dq = reinterpret_cast<float4*>(p.Aqk + row);
        float4* db = reinterpret_cast<float4*>(p.Aqb + row);
        dq[0] = sq[0];
        dq[1] = sq[1];
        db[0] = sb[0];
        db[1] = sb[1];
        if constexpr (BWD) {  // A_ak (strictly lower, zero elsewhere) and A_ab_inv (unit lower, zero above) rows out
          const float4* sk = reinterpret_cast<const float4*>(Aak + r * BAP + 8 * half);
          const float4* si = reinterpret_cast<const float4*>(Ainv + r * AP + 8 * half);
          float4* dk = reinterpret_cast<float4*>(p.Aak + row);
          float4* di = reinterpret_cast<float4*>(p.Ainv + row);
          dk[0] = sk[0];
          dk[1] = sk[1];
          di[0] = si[0];
          di[1] = si[1];
        }
      }
    }
  }
  cp_wait<0>();
}

bool aligned(const void* x, std::uintptr_t n) { return reinterpret_cast<std::uintptr_t>(x) % n == 0; }

}  // namespace

bool chunk_A_WY_supported(const ForwardInputs& in, int C) {
  check_chunk_shape(in, C);
  const std::uintptr_t ga = in.gk_dtype == ElemType::F32 ? 8 : 4;
  return C == kC && in.dtype != ElemType::F32 && in.K <= 2 * kKM && in.V <= 2 * kKM && in.K % 2 == 0 &&
         in.V % 2 == 0 && aligned(in.q, 4) && aligned(in.k, 4) && aligned(in.a, 4) && aligned(in.b, 4) &&
         aligned(in.v, 4) && aligned(in.gk, ga);
}

void chunk_A_WY(const ForwardInputs& in, int C, float* A_qk, float* A_qb, const GatedOperands& gated, float* w, float* u,
                cudaStream_t stream, const AWYBackwardTensors& keep) {
  check_chunk(in, C);
  if (!chunk_A_WY_supported(in, C))
    throw Unsupported("dplr::gpu: chunk_A_WY takes 16-bit inputs at chunk size 16 with K and V even and <= 128, "
                      "and 4-byte aligned inputs (got C = " + std::to_string(C) + ", K = " +
                      std::to_string(in.K) + ", V = " + std::to_string(in.V) + ", " + elem_type_name(in.dtype) +
                      "); use chunk_A and chunk_WY");
  if (!A_qk || !A_qb || !w || !u || !gated.qg || !gated.kg || !gated.bg || !gated.eg_last)
    throw Unsupported("dplr::gpu: chunk_A_WY needs A_qk, A_qb, w, u and the gated operands qg, kg, bg, eg_last");
  if (!aligned(A_qk, 16) || !aligned(A_qb, 16) || !aligned(w, 8) || !aligned(u, 8) || !aligned(gated.qg, 8) ||
      !aligned(gated.kg, 8) || !aligned(gated.bg, 8) || !aligned(gated.eg_last, 8))
    throw Unsupported("dplr::gpu: chunk_A_WY needs A_qk and A_qb 16-byte aligned, w, u, qg, kg, bg, eg_last 8-byte aligned");
  const bool bwd = keep.A_ak || keep.A_ab_inv;
  if (bwd && (!keep.A_ak || !keep.A_ab_inv))
    throw Unsupported("dplr::gpu: chunk_A_WY's AWYBackwardTensors needs both A_ak and A_ab_inv (or neither)");
  if (bwd && (!aligned(keep.A_ak, 16) || !aligned(keep.A_ab_inv, 16)))
    throw Unsupported("dplr::gpu: chunk_A_WY's AWYBackwardTensors A_ak and A_ab_inv must be 16-byte aligned");
  const std::int64_t NT = num_chunks(in, C);
  const bool wide = in.K > kKM || in.V > kKM;  // two warps a chunk
  // Chunks a warp walks: 8, or fewer where that would leave under 2048 blocks (about four waves of four blocks an SM
  // on a 132-SM H200), so that small problems keep their blocks; any choice computes the same bits.
  const std::int64_t units = (wide ? NT : (NT + kWarps - 1) / kWarps) * in.H * in.B;  // blocks at one chunk a warp
  int cpw = 8;
  while (cpw > 1 && units / cpw < 2048) cpw /= 2;
  const std::int64_t chunks_a_block = std::int64_t(cpw) * (wide ? 1 : kWarps);
  AWYArgs p{in.q, in.k, in.a, in.b, in.gk, in.v, chunk_geom(in, C), in.H, NT, static_cast<int>(in.K), static_cast<int>(in.V),
            cpw, in.resolved_scale(), A_qk, A_qb, gated, w, u, keep.A_ak, keep.A_ab_inv};
  dim3 grid(static_cast<unsigned>((NT + chunks_a_block - 1) / chunks_a_block), static_cast<unsigned>(in.H),
            static_cast<unsigned>(in.B));
  dispatch_types(in.dtype, in.gk_dtype, [&](auto tt, auto gg) {
    using T = decltype(tt);
    using G = decltype(gg);
    if constexpr (!std::is_same_v<T, float>) {
      auto go = [&](auto kw, auto b) {
        constexpr int KW = decltype(kw)::value;
        constexpr bool BWD = decltype(b)::value;
        constexpr std::size_t bytes = AWYRows<G>::bytes;
        set_smem(chunk_A_WY_mma_kernel<T, G, KW, BWD>, bytes);
        chunk_A_WY_mma_kernel<T, G, KW, BWD><<<grid, 32 * kWarps, bytes, stream>>>(p);
      };
      using One = std::integral_constant<int, 1>;
      using Two = std::integral_constant<int, kWarps>;
      if (wide) {
        if (bwd) go(Two{}, std::true_type{});
        else go(Two{}, std::false_type{});
      } else {
        if (bwd) go(One{}, std::true_type{});
        else go(One{}, std::false_type{});
      }
    }
  });
  DPLR_LAUNCHED("chunk_A_WY_mma_kernel");
}

}  // namespace dplr::gpu
