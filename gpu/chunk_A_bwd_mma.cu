// Stage "A_bwd" on tensor cores (BwdKernel::TensorCores; the default where chunk_A_bwd_tensor_cores_supported is
// true: 16-bit inputs, C = 16, K <= 128), optionally fused with stage cumsum_bwd's in-chunk work (dgk complete, no
// dgk_A share written or read back; dq, dk, da, db written in the inputs' dtype, each rounded once from the fp32 total
// the stage call writes). The same quantities as chunk_A_bwd.cu's FMA kernel (formulas there).
//
// Decays, as chunk_A_WY.cu factors them: every strictly lower cell (r, s) of the 16 x 16 chunk belongs to exactly one
// level Lb = 8, 4, 2, 1 (the highest set bit of r ^ s): r is in the second half of its 2Lb-block and s in the first,
// and with m the last row of the first half
//     exp(gi_r - gi_s) = R_r Cf_s,   exp(ge_r - gi_s) = exp(gi_{r-1} - gi_s) = Ra_r Cf_s,
//     R_r = e_{m+1} .. e_r,   Ra_r = e_{m+1} .. e_{r-1},   Cf_s = e_{s+1} .. e_m,   e_j = exp(gk_j)
// (products of per-token decays, each <= 1 for gk <= 0: no overflow, no exponential of a long difference; each e_j
// from expf of the exact input gk_j). At each level the row-role rows ("ri", 8 of them) and the column-role rows
// ("ci") are packed as in chunk_A_WY, and two 16 x 32 x 16 products run on tensor cores (3xTF32, mma.cuh):
//     Prow = Alv [kt; bt]      rows ri: Z1 = dA_qk kt + dA_qb bt (dq_A, before R),  8 + ri: Z2 = dA_ak kt + dA_ab bt
//     Pcol = Alv^T [qt; at]    rows ci: W1 = dA_qk^T qt + dA_ak^T at (dk_A, before Cf), 8 + ci: W2 = dA_qb^T qt + dA_ab^T at
// with kt = k Cf, bt = b Cf, qt = q R, at = a Ra and Alv the level's 16 x 16 block of [dA_qk dA_qb; dA_ak dA_ab]
// (cells of different 2Lb-blocks zero). Then dq_A += R Z1, da_A += Ra Z2, dk_A += Cf W1, db_A += Cf W2, and
// dgk_A from the same products with no cancellation: a cell's exponent spans t exactly when s < t <= r (A_qk, A_qb)
// or s < t < r (A_ak, A_ab), so within a level block
//     t in the first half:  dgk_A[t] += sum_{s < t} (kt_s W1_s + bt_s W2_s)
//     t in the second half: dgk_A[t] += sum_{r >= t} qt_r Z1_r + sum_{r > t} at_r Z2_r
// (every term a product of the cells that span t, each with its own decay). The diagonal of A_qk, A_qb (factor 1)
// is elementwise.
// Layout: one warp per (chunk, 16 key channels), two lanes a channel (lane = 16 x half + channel; every sum above stays
// inside a channel), each with 8 rows of it: the lower half-warp rows 0-7, the upper rows 8-15. A lane keeps its rows of
// q, k, a, b (16-bit, two rows a register), e and its accumulators dq, da, dk, db, dgk in registers. Every
// 2Lb-block of levels 4, 2, 1 lies inside one lane's rows, so a lane forms its blocks' factors and in-block sums alone; at
// level 8 the lower half-warp takes the block's first half (column role) and the upper its second (row role). Per level a
// lane writes its rows of the B operands to shared memory, the warp runs the products (16 x 16 x 16, each stored over its
// operand) and the lane reads its rows of Prow, Pcol back. cumsum_bwd's running sums (fused) cross the halves: the upper
// half-warp's rows first for `later`, the lower's first for `earlier`, the running value handed over by one shuffle.
// A block is the ceil(K / 16) warps of one chunk (they share dA, loaded once); 8 KB of shared memory a warp. The shares
// dq_o, da_wy, dk_h, db_h are copied by cp.async into shared memory at the start, where stage A's shares are then added
// to them (the lane's own slots only, so no barrier).
// Deterministic: fixed sums, no atomics; every sum in the order of the one-lane-a-channel kernel of session 8 (bitwise).
#include <cstdint>
#include <type_traits>

#include "gpu/common.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu {
namespace detail {
namespace {

constexpr int kC = 16, kN = 16, kHalf = kC / 2;  // chunk size; key channels a warp; rows a lane
constexpr int AP = kC + 4;                        // dA rows
// A warp's shared memory: the operand tiles Brow, Bcol ([16][kN] each; each product is stored over its operand), then
// six lane-private tiles ([kHalf][32]: local row, lane): dq, da, dk, db (the shares, then the totals), later, earlier.
constexpr int kTile = kC * kN;
static_assert(kHalf * 32 == kTile, "a lane-private tile is an operand tile's size");
constexpr int kWarpFloats = 8 * kTile;
constexpr int kMaxWarps = kMaxHeadDim / kN;
// Blocks of 8 warps an SM the registers must allow: 2 caps a thread at 128 registers, so 16 warps an SM (K = 64: 4
// blocks of 4 warps, 37 KB of shared memory each; K = 128: 2 blocks of 8, 69 KB). 3 (85 registers) spills. With the
// accumulators in registers ptxas spills 8-20 bytes a thread at 128; unbounded it takes 165-168 (12 warps an SM at
// K = 64, 8 at K = 128).
constexpr int kMinBlocks = 2;

std::size_t mma_smem_bytes(int warps) { return (4 * kC * AP + std::size_t(warps) * kWarpFloats) * sizeof(float); }

// Element (row, col) of an operand / product tile: rows of kN floats, the column XOR-swizzled by bit 1 of the row, so
// that the k-major B fragments (rows t of an aligned four, columns g) and the product pairs (rows g, columns 2t, 2t + 1)
// hit 32 distinct banks.
__device__ __forceinline__ int op_ix(int row, int col) { return row * kN + (col ^ (((row >> 1) & 1) << 3)); }

struct ABwdMmaArgs {
  const void *q, *k, *a, *b, *gk;
  const float *dAqk, *dAqb, *dAak, *dAab;
  const float *dq_o, *da_wy, *dk_h, *db_h, *dcd;
  void *dq, *dk, *da, *db;  // fp32 totals, or (fused) the gradients in the inputs' dtype
  float* dgk;               // the share dgk_A, or (fused) dgk itself
  ChunkGeom geo;
  std::int64_t H;
  int K;
  float scale;
};

// A lane's rows of a 16-bit input, two rows a register (row 2j in the low half), and one row of it as fp32.
template <typename T>
__device__ __forceinline__ unsigned raw16(const void* p, std::int64_t i) {
  return static_cast<unsigned>(reinterpret_cast<const unsigned short*>(p)[i]);
}
template <typename T>
__device__ __forceinline__ float row_value(const unsigned (&col)[kHalf / 2], int j) {
  const unsigned x = (j & 1) ? (col[j >> 1] >> 16) : (col[j >> 1] & 0xffffu);
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __uint_as_float(x << 16);
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(x)));
  }
}

__device__ __forceinline__ void st_pair(float* p, float x, float y) { *reinterpret_cast<float2*>(p) = make_float2(x, y); }

// A total of dq, dk, da, db: fp32 (the stage's oracle layout), or (fused: the driver's call) rounded once to the
// inputs' dtype T from that same fp32 value, so bitwise round_to_dtype of what the stage writes.
template <typename T, bool kRounded>
__device__ __forceinline__ void st_total(void* p, std::int64_t i, float x) {
  if constexpr (kRounded) st<T>(p, i, x);
  else static_cast<float*>(p)[i] = x;
}

struct Column {  // the lane's rows (local j = 0 .. 7): q (unscaled), k, a, b packed, and the per-token decays
  unsigned q[kHalf / 2], k[kHalf / 2], a[kHalf / 2], b[kHalf / 2];
  float e[kHalf];
};
// The lane's accumulators, in registers: dq, da, dk, db (started from the shares prefetched into shared memory, then
// stage A's terms added) and dgk. Every index is a compile-time constant once the levels are unrolled. (Kept in
// shared memory until session 15: LDS + FADD + STS a term, LDS and STS 22% of the kernel's instructions; in registers
// the kernel ran 755 -> 659 us, ncu H200, B8 T4096 H16 K = 64 bf16.)
struct Accum {
  float v[4][kHalf];  // dq, da, dk, db: the lane's row j of accumulator i
  float dg[kHalf];
  __device__ __forceinline__ float& at(int i, int j) { return v[i][j]; }
};

// The factors of one 2Lb-block for the lane's channel, as running products away from the block's middle m (local rows):
// Cf_s (column role, s = j0 .. j0 + Lb - 1, m = j0 + Lb - 1), and R_r, Ra_r (row role, r = j0 .. j0 + Lb - 1, m = j0 - 1).
template <int Lb>
__device__ __forceinline__ void col_factors(const float (&e)[kHalf], int j0, float (&cf)[Lb]) {
  float f = 1.f;
#pragma unroll
  for (int i = 0; i < Lb; ++i) {  // s = m - i
    cf[Lb - 1 - i] = f;
    f *= e[j0 + Lb - 1 - i];
  }
}
template <int Lb>
__device__ __forceinline__ void row_factors(const float (&e)[kHalf], int j0, float (&rr)[Lb], float (&ra)[Lb]) {
  float f = 1.f;
#pragma unroll
  for (int i = 0; i < Lb; ++i) {  // r = m + 1 + i
    ra[i] = f;
    f *= e[j0 + i];
    rr[i] = f;
  }
}

// The B operands of one block's half, the lane's rows: Brow rows x0 + i: kt, 8 + x0 + i: bt (column role, local rows j0 +
// i); Bcol rows x0 + i: qt, 8 + x0 + i: at (row role).
template <typename T, int Lb>
__device__ __forceinline__ void col_operands(float* Brow, const Column& c, int j0, int x0, int ch) {
  float cf[Lb];
  col_factors<Lb>(c.e, j0, cf);
#pragma unroll
  for (int i = 0; i < Lb; ++i) {
    Brow[op_ix(x0 + i, ch)] = row_value<T>(c.k, j0 + i) * cf[i];
    Brow[op_ix(8 + x0 + i, ch)] = row_value<T>(c.b, j0 + i) * cf[i];
  }
}
template <typename T, int Lb>
__device__ __forceinline__ void row_operands(float* Bcol, const Column& c, int j0, int x0, int ch, float scale) {
  float rr[Lb], ra[Lb];
  row_factors<Lb>(c.e, j0, rr, ra);
#pragma unroll
  for (int i = 0; i < Lb; ++i) {
    Bcol[op_ix(x0 + i, ch)] = row_value<T>(c.q, j0 + i) * scale * rr[i];
    Bcol[op_ix(8 + x0 + i, ch)] = row_value<T>(c.a, j0 + i) * ra[i];
  }
}
// The lane's rows of the products, scaled into the accumulators, and dgk_A's in-block sums (the header's formulas).
template <typename T, int Lb>
__device__ __forceinline__ void col_readback(const float* Pcol, const Column& c, int j0, int x0, int ch, Accum& acc) {
  float cf[Lb];
  col_factors<Lb>(c.e, j0, cf);
  float run = 0.f;  // sum_{s' < s} (kt W1 + bt W2)
#pragma unroll
  for (int i = 0; i < Lb; ++i) {
    const int s = j0 + i;
    const float w1 = cf[i] * Pcol[op_ix(x0 + i, ch)], w2 = cf[i] * Pcol[op_ix(8 + x0 + i, ch)];
    acc.at(2, s) += w1;
    acc.at(3, s) += w2;
    acc.dg[s] += run;
    run = fmaf(row_value<T>(c.k, s), w1, fmaf(row_value<T>(c.b, s), w2, run));
  }
}
template <typename T, int Lb>
__device__ __forceinline__ void row_readback(const float* Prow, const Column& c, int j0, int x0, int ch, float scale,
                                             Accum& acc) {
  float rr[Lb], ra[Lb];
  row_factors<Lb>(c.e, j0, rr, ra);
  float run = 0.f;  // sum_{r' >= r} qt Z1 + sum_{r' > r} at Z2
#pragma unroll
  for (int i = Lb - 1; i >= 0; --i) {
    const int r = j0 + i;
    const float z1 = rr[i] * Prow[op_ix(x0 + i, ch)], z2 = ra[i] * Prow[op_ix(8 + x0 + i, ch)];
    acc.at(0, r) += z1;
    acc.at(1, r) += z2;
    run = fmaf(row_value<T>(c.q, r) * scale, z1, run);
    acc.dg[r] += run;
    run = fmaf(row_value<T>(c.a, r), z2, run);
  }
}

// One level (block size Lb): operands, the two products, and the lane's accumulation. The packed index of a block's
// i-th row pair is Lb x (its block) + i; a lane's blocks at Lb <= 4 are blocks 4 hf / Lb .. of the chunk, packed from
// 4 hf.
template <typename T, int Lb>
__device__ __forceinline__ void level(const float* sA, float* sw, int lane, float scale, const Column& c, Accum& acc) {
  // Each product is stored over its operand (Prow over Brow, Pcol over Bcol): a lane stores its part of a column strip
  // only after a __syncwarp that follows every lane's read of that strip.
  float *Brow = sw, *Bcol = sw + kTile, *Prow = Brow, *Pcol = Bcol;
  const int g = lane >> 2, t = lane & 3, ch = lane % kN, hf = lane / kN;
  constexpr int nloc = Lb == 8 ? 1 : kHalf / (2 * Lb);  // the lane's blocks
  if constexpr (Lb == 8) {
    if (hf == 0) col_operands<T, 8>(Brow, c, 0, 0, ch);
    else row_operands<T, 8>(Bcol, c, 0, 0, ch, scale);
  } else {
#pragma unroll
    for (int lb = 0; lb < nloc; ++lb) {
      col_operands<T, Lb>(Brow, c, 2 * Lb * lb, 4 * hf + Lb * lb, ch);
      row_operands<T, Lb>(Bcol, c, 2 * Lb * lb + Lb, 4 * hf + Lb * lb, ch, scale);
    }
  }
  __syncwarp();
  // A fragments of Alv (row ri | 8 + ri, column ci | 8 + ci) and of Alv^T, for the lane's two (ri, ci) pairs of each.
  // Alv[ri][ci] = dA_qk[r][s], [ri][8 + ci] = dA_qb, [8 + ri][ci] = dA_ak, [8 + ri][8 + ci] = dA_ab; zero across blocks.
  const float *qk = sA, *qb = sA + kC * AP, *ak = sA + 2 * kC * AP, *ab = sA + 3 * kC * AP;
  auto cell = [&](const float* M, int ri, int ci) {
    const int r = (ri / Lb) * 2 * Lb + Lb + ri % Lb, s = (ci / Lb) * 2 * Lb + ci % Lb;
    return ri / Lb == ci / Lb ? M[r * AP + s] : 0.f;
  };
  unsigned ah[2][4], al[2][4];
  // P = A B for the split A fragments ah / al (16 x 16) and B (16 x kN), into P (both op_ix tiles).
  auto product = [&](const float* B, float* P) {
#pragma unroll
    for (int nt = 0; nt < kN / 8; ++nt) {
      float d[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
      for (int ks = 0; ks < 2; ++ks) {
        unsigned bh0, bl0, bh1, bl1;
        split_tf32(B[op_ix(8 * ks + t, 8 * nt + g)], bh0, bl0);
        split_tf32(B[op_ix(8 * ks + t + 4, 8 * nt + g)], bh1, bl1);
        mma_3xtf32(d, d, d, ah[ks], al[ks], bh0, bl0, bh1, bl1);
      }
      // Every lane's read of strip nt before any lane's store over it: mma.sync's convergence orders them in practice,
      // but only __syncwarp orders shared memory in CUDA's model (racecheck reported these as WAR hazards).
      __syncwarp();
      st_pair(P + op_ix(g, 8 * nt + 2 * t), d[0], d[1]);
      st_pair(P + op_ix(g + 8, 8 * nt + 2 * t), d[2], d[3]);
    }
  };
  // Alv, k-step 0 (columns ci: qk, ak rows) and 1 (columns 8 + ci: qb, ab rows): a0 (g, t), a1 (g + 8, t), a2 (g, t + 4),
  // a3 (g + 8, t + 4).
  split_tf32(cell(qk, g, t), ah[0][0], al[0][0]);
  split_tf32(cell(ak, g, t), ah[0][1], al[0][1]);
  split_tf32(cell(qk, g, t + 4), ah[0][2], al[0][2]);
  split_tf32(cell(ak, g, t + 4), ah[0][3], al[0][3]);
  split_tf32(cell(qb, g, t), ah[1][0], al[1][0]);
  split_tf32(cell(ab, g, t), ah[1][1], al[1][1]);
  split_tf32(cell(qb, g, t + 4), ah[1][2], al[1][2]);
  split_tf32(cell(ab, g, t + 4), ah[1][3], al[1][3]);
  product(Brow, Prow);
  // Alv^T: row ci (dk) | 8 + ci (db), column ri (qt) | 8 + ri (at): [ci][ri] = Alv[ri][ci] = dA_qk, [8 + ci][ri] =
  // Alv[ri][8 + ci] = dA_qb, [ci][8 + ri] = Alv[8 + ri][ci] = dA_ak, [8 + ci][8 + ri] = dA_ab.
  split_tf32(cell(qk, t, g), ah[0][0], al[0][0]);
  split_tf32(cell(qb, t, g), ah[0][1], al[0][1]);
  split_tf32(cell(qk, t + 4, g), ah[0][2], al[0][2]);
  split_tf32(cell(qb, t + 4, g), ah[0][3], al[0][3]);
  split_tf32(cell(ak, t, g), ah[1][0], al[1][0]);
  split_tf32(cell(ab, t, g), ah[1][1], al[1][1]);
  split_tf32(cell(ak, t + 4, g), ah[1][2], al[1][2]);
  split_tf32(cell(ab, t + 4, g), ah[1][3], al[1][3]);
  product(Bcol, Pcol);
  __syncwarp();
  if constexpr (Lb == 8) {
    if (hf == 0) col_readback<T, 8>(Pcol, c, 0, 0, ch, acc);
    else row_readback<T, 8>(Prow, c, 0, 0, ch, scale, acc);
  } else {
#pragma unroll
    for (int lb = 0; lb < nloc; ++lb) {
      col_readback<T, Lb>(Pcol, c, 2 * Lb * lb, 4 * hf + Lb * lb, ch, acc);
      row_readback<T, Lb>(Prow, c, 2 * Lb * lb + Lb, 4 * hf + Lb * lb, ch, scale, acc);
    }
  }
  __syncwarp();  // the next level's operands overwrite these products
}

template <typename T, typename G, bool kFused>
__global__ void __launch_bounds__(32 * kMaxWarps, kMinBlocks) chunk_A_bwd_mma_kernel(ABwdMmaArgs p) {
  extern __shared__ __align__(16) float smem[];
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, kC);
  if (!ch.valid) return;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, hf = lane / kN, r0 = kHalf * hf;  // r0: the lane's first row
  const std::int64_t h = blockIdx.y, H = p.H;
  const int L = ch.len, K = p.K, d = kN * warp + lane % kN;  // this lane's key channel
  const bool dok = d < K;
  float* sA = smem;  // dA_qk, dA_qb, dA_ak, dA_ab [16][AP], zero outside the masks and the chunk
  float* sw = smem + 4 * kC * AP + warp * kWarpFloats;
  float* sh = sw + 2 * kTile;  // the shares dq_o, da_wy, dk_h, db_h: the lane's rows, Accum's layout
  const float* shares[4] = {p.dq_o, p.da_wy, p.dk_h, p.db_h};  // the order of Accum's tiles
  // The lane's rows r0 .. r0 + 7 of channel d are H K elements apart: one index stepped a row instead of tix's two
  // int64 multiply-adds a row and tensor (the loads' addressing was a sixth of the kernel's instructions: ncu, H200).
  const std::int64_t row_stride = H * K, lane_row0 = tix(ch.bos + r0, h, H, d, K);
  {
    std::int64_t ix = lane_row0;
#pragma unroll
    for (int jl = 0; jl < kHalf; ++jl, ix += row_stride) {
      const bool ok = r0 + jl < L && dok;
#pragma unroll
      for (int j = 0; j < 4; ++j) cp4(sh + (j * kHalf + jl) * 32 + lane, shares[j] + (ok ? ix : 0), ok);
    }
  }
  // dA by cp.async too (zero-filled outside the masks), so no thread waits on a load before its stores to shared
  // memory (long-scoreboard stalls were this kernel's largest, 1.98 of 7.2 cycles an instruction, ncu on the H200).
  // B8 T4096 H16 K = 64 bf16: the stage alone 0.922 -> 0.823 ms; the driver's fused call unchanged (0.948).
  const std::int64_t dA_row0 = (ch.bos * H + h) * kC;  // dA's rows of head h are H C elements apart
  for (int e = threadIdx.x; e < kC * kC; e += blockDim.x) {
    const int r = e / kC, s = e % kC;
    const bool incl = r < L && s <= r, strict = r < L && s < r;
    const std::int64_t ix = dA_row0 + r * H * kC + s;
    cp4(sA + r * AP + s, p.dAqk + (incl ? ix : 0), incl);
    cp4(sA + kC * AP + r * AP + s, p.dAqb + (incl ? ix : 0), incl);
    cp4(sA + 2 * kC * AP + r * AP + s, p.dAak + (strict ? ix : 0), strict);
    cp4(sA + 3 * kC * AP + r * AP + s, p.dAab + (strict ? ix : 0), strict);
  }
  cp_commit();
  // d_chunk_decay (fused: cumsum_bwd's term of dgk) loaded now, not after the levels where it is first used.
  const float chunk_decay = kFused && dok ? p.dcd[(ch.g * H + h) * K + d] : 0.f;
  Column c;
#pragma unroll
  for (int j = 0; j < kHalf / 2; ++j) {
    unsigned x[4][2];
#pragma unroll
    for (int u = 0; u < 2; ++u) {
      const int jl = 2 * j + u, r = r0 + jl;
      const bool ok = r < L && dok;
      const std::int64_t ix = lane_row0 + jl * row_stride;
      x[0][u] = ok ? raw16<T>(p.q, ix) : 0u;
      x[1][u] = ok ? raw16<T>(p.k, ix) : 0u;
      x[2][u] = ok ? raw16<T>(p.a, ix) : 0u;
      x[3][u] = ok ? raw16<T>(p.b, ix) : 0u;
      c.e[jl] = ok ? expf(ld<G>(p.gk, ix)) : 1.f;  // 1 past the chunk's end and past K
    }
    c.q[j] = x[0][0] | (x[0][1] << 16);
    c.k[j] = x[1][0] | (x[1][1] << 16);
    c.a[j] = x[2][0] | (x[2][1] << 16);
    c.b[j] = x[3][0] | (x[3][1] << 16);
  }
  cp_wait<0>();  // the lane reads and updates only the shares it copied
  __syncthreads();  // dA staged
  const float scale = p.scale;
  Accum acc;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
#pragma unroll
    for (int jl = 0; jl < kHalf; ++jl) acc.v[i][jl] = sh[(i * kHalf + jl) * 32 + lane];
  }
  // Fused: cumsum_bwd's running sums of the other stages' shares, formed now while the tiles hold the shares alone
  // and kept (the lane's rows of them) for the end, where they are added to dgk_A exactly as chunk_cumsum_bwd.cu adds
  // them, so that dgk is bitwise the stages' run one by one. Each sum runs over the chunk's 16 rows in
  // chunk_cumsum_bwd's order: one half-warp's rows, then (its running value handed over) the other's.
  float* sum = sh + 4 * kTile;  // [2][kHalf][32]: later, earlier
  if constexpr (kFused) {
    auto later_rows = [&](float later) {  // sum_{r' >= r} q dq_o + sum_{r' > r} a da_wy, rows 15 .. 0
#pragma unroll
      for (int jl = kHalf - 1; jl >= 0; --jl) {
        const float later_than_r = later;  // (the planted BwdDgkExclusive's sum: row r's q dq_o left out)
        later = fmaf(row_value<T>(c.q, jl) * scale, acc.at(0, jl), later);
        sum[jl * 32 + lane] = planted(p.geo.planted, PlantedDefect::BwdDgkExclusive) ? later_than_r : later;
        later = fmaf(row_value<T>(c.a, jl), acc.at(1, jl), later);
      }
      return later;
    };
    auto earlier_rows = [&](float earlier) {  // sum_{r' < r} (k dk_h + b db_h), rows 0 .. 15
#pragma unroll
      for (int jl = 0; jl < kHalf; ++jl) {
        sum[(kHalf + jl) * 32 + lane] = earlier;
        earlier += fmaf(row_value<T>(c.k, jl), acc.at(2, jl), row_value<T>(c.b, jl) * acc.at(3, jl));
      }
      return earlier;
    };
    const float upper_later = hf == 1 ? later_rows(0.f) : 0.f;
    const float later_in = __shfl_down_sync(0xffffffffu, upper_later, kN);  // the lower lane's: its upper partner's
    if (hf == 0) later_rows(later_in);
    const float lower_earlier = hf == 0 ? earlier_rows(0.f) : 0.f;
    const float earlier_in = __shfl_up_sync(0xffffffffu, lower_earlier, kN);
    if (hf == 1) earlier_rows(earlier_in);
  }
#pragma unroll
  for (int jl = 0; jl < kHalf; ++jl) acc.dg[jl] = 0.f;
#pragma unroll
  for (int jl = 0; jl < kHalf; ++jl) {  // the diagonal of A_qk, A_qb (factor 1)
    const int r = r0 + jl;
    const float qkd = sA[r * AP + r], qbd = sA[kC * AP + r * AP + r], qr = row_value<T>(c.q, jl) * scale;
    acc.at(0, jl) += fmaf(qkd, row_value<T>(c.k, jl), qbd * row_value<T>(c.b, jl));
    acc.at(2, jl) += qkd * qr;
    acc.at(3, jl) += qbd * qr;
  }
  level<T, 8>(sA, sw, lane, scale, c, acc);
  level<T, 4>(sA, sw, lane, scale, c, acc);
  level<T, 2>(sA, sw, lane, scale, c, acc);
  level<T, 1>(sA, sw, lane, scale, c, acc);
#pragma unroll
  for (int jl = 0; jl < kHalf; ++jl) {
    const int r = r0 + jl;
    if (r < L && dok) {
      const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
      st_total<T, kFused>(p.dq, ix, acc.at(0, jl) * scale);
      st_total<T, kFused>(p.da, ix, acc.at(1, jl));
      st_total<T, kFused>(p.dk, ix, acc.at(2, jl));
      st_total<T, kFused>(p.db, ix, acc.at(3, jl));
      if constexpr (kFused)
        p.dgk[ix] = acc.dg[jl] + sum[jl * 32 + lane] + chunk_decay + sum[(kHalf + jl) * 32 + lane];
      else p.dgk[ix] = acc.dg[jl];
    }
  }
}

}  // namespace
void chunk_A_bwd_mma(const BackwardInputs& in, int C, const float* dA_qk, const float* dA_qb, const float* dA_ak,
                     const float* dA_ab, void* dq, void* dk, void* da, void* db, float* dgk, bool fused,
                     const GradientShares& sh, cudaStream_t stream) {
  const ForwardInputs& f = in.fwd;
  if (C != kC || f.dtype == ElemType::F32 || f.K > kMaxHeadDim)
    refuse("chunk_A_bwd's tensor-core kernel takes 16-bit inputs at chunk size 16 with K <= 128");
  const int K = static_cast<int>(f.K), warps = (K + kN - 1) / kN;
  const ABwdMmaArgs p{f.q, f.k, f.a, f.b, f.gk, dA_qk, dA_qb, dA_ak, dA_ab, sh.dq_o, sh.da_wy, sh.dk_h, sh.db_h,
                      sh.d_chunk_decay, dq, dk, da, db, dgk, chunk_geom(f, C), f.H, K, f.resolved_scale()};
  const std::size_t bytes = mma_smem_bytes(warps);
  dispatch_types(f.dtype, f.gk_dtype, [&](auto tt, auto gg) {
    using T = decltype(tt);
    using G = decltype(gg);
    if constexpr (!std::is_same_v<T, float>) {
      if (fused) {
        set_smem(chunk_A_bwd_mma_kernel<T, G, true>, bytes);
        chunk_A_bwd_mma_kernel<T, G, true><<<chunk_grid(f, C), 32 * warps, bytes, stream>>>(p);
      } else {
        set_smem(chunk_A_bwd_mma_kernel<T, G, false>, bytes);
        chunk_A_bwd_mma_kernel<T, G, false><<<chunk_grid(f, C), 32 * warps, bytes, stream>>>(p);
      }
    }
  });
  DPLR_LAUNCHED("chunk_A_bwd_mma_kernel");
}

}  // namespace detail

bool chunk_A_bwd_tensor_cores_supported(const BackwardInputs& in, int C) {
  detail::check_chunk_shape(in.fwd, C);
  return C == detail::kC && in.fwd.dtype != ElemType::F32 && in.fwd.K <= kMaxHeadDim;
}

}  // namespace dplr::gpu
