// The tensor-core kernels of stage h_bwd (chunk_h_bwd, chunk_h_bwd.cu; 16-bit inputs, C = 16, K, V <= 128 and
// multiples of 4): the same quantities as the FMA pair (chunk_h_bwd.cu has the formulas), the products on mma.sync
// m16n8k8 TF32 with fp32 operands split hi + lo (3xTF32, mma.cuh: each product to about 2^-21 relative, fp32
// accumulation) and the 16-bit v exact in TF32 (2 MMAs). Not bitwise the FMA pair: other summation orders.
//
// Sequential kernel: the backward mirror of chunk_ho_mma.cu. One block of NW warps (8: seq_warps; 16 is
// measured slower) per (32 columns of V, head, sequence) walks the chunks from the last; the K x 32 tile of dS' lives in MMA
// accumulator registers (TPW = KM / (4 NW) tiles of 16 x 8 a warp: two, rows 16 (w / 2), columns 16 (w % 2) .. + 15;
// four at KM = 128 with 8 warps, rows 16 w, all 32 columns) and is mirrored once a chunk to shared memory (padded rows)
// as the B operand of the next chunk. Per chunk:
//     dh    = dS'                                      (from the registers)
//     phase 1, warp w, columns 8 (w % 4) .. + 7, K part w / 8:  dv_new = dv_new_o + bg dS'  (w % 8 < 4),
//                                                              dv += kg dS'  (w % 8 >= 4)
//     barrier (dv_new in shared memory; with 16 warps the K halves' parts, added where read, dv's second half too,
//              which warps 4-7 add to theirs and store)
//     dS    = diag(exp(gl)) dS' + dh_o + w^T dv_new    (every warp its TPW tiles)
// At 8 warps every product and sum is as before NW existed (bitwise); at 16 the halves change the order of dv_new's
// and dv's sums at K > 64.
// Operands (kg, bg, w rows, exp(gl), the tile's dv_new_o, dv and dh_o) arrive by cp.async in a ring of three
// stages, two chunks ahead. KM = 64: 99 KB, two blocks an SM; KM = 128: one.
// Where o_bwd's shares are nullptr (FORM; chunk_backward's path) the kernel forms them from the chunk's qg rows,
// A_qb and the tile's do rows, which the ring brings instead of the dv_new_o and dh_o tiles (qg 4 KB and do 1 KB a
// chunk and V tile against dh_o's 8 KB, at K = 64), with chunk_o_bwd_mma_kernel's MMAs in its order, so the values
// are bitwise those o_bwd writes: dv_new_o = A_qb^T dO (4 MMAs) by warps 0-3 before their phase 1, dh_o = qg^T dO
// (4 TPW MMAs) by every warp before the barrier (neither on the dS' chain). KM = 64: 83 KB; KM = 128: 143 KB.
//
// Per-chunk kernel: one block of 8 warps per (chunk, head, batch row), the products that sum over all of V:
//     dw = dv_new S^T,  dkg = v dS'^T,  dbg = v_new dS'^T     (16 x KM outputs, warp w the 8-column tiles w, w + 8)
//     d_chunk_decay = exp(gl) (.) rowsum(S (.) dS')            (fp32 FMA, one thread a key channel, j in order)
// V in slabs of 32 columns (S, dS', dv_new, v_new, v of the chunk) through a cp.async ring (K <= 64: 3 stages, of
// which V = 64 needs 2: 61 KB, three blocks an SM; K > 64: 2 stages, 110 KB, two), the chunk's gk rows with the
// first slab (no dependent global loads in the fp64 sums); then dk_h = dkg (.) exp(gl - gi), db_h = dbg (.) exp(gl -
// gi), each factor the exponential of a difference of the fp64 in-chunk sums of gk (exp2_diff_exact_scale, as the
// FMA kernel).
#include <cstdint>
#include <type_traits>

#include "gpu/chunk_h_bwd.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu::detail::hbwd {
namespace {

// The sequential kernel's shared memory, in floats: NS stages of [kg | bg | w rows (C x KP) | exp(gl) (KM) | dv tile
// (C x LS) | o_bwd's shares: dv_new_o tile (C x LS), dh_o tile (KM x LS) -- or, where the kernel forms them (FORM),
// their operands: qg rows (C x QP), A_qb (C x AP), the tile's do rows (C x LT 16-bit values)], then dS' (KM x LS) and
// dv_new (C x LS). Rows of kg, bg, w (read as A fragments, or A^T) are 4 mod 32 floats apart, rows of the V tiles 8
// mod 32, of qg and A_qb (A^T) 8 mod 32, of do 20 mod 32 words: conflict-free fragments but for w's (2-way).
// Warps a block of the sequential kernel: 8 at every K. NW = 16 (K in halves, for K = 128: one block an SM there,
// and B4 H8 gives 128 blocks) measured slower (H100, session 16, same call: h_bwd 1.189 ms against 1.135 at B4 T4096
// H8 K = V = 128), so it is not instantiated.
template <int KMAX>
constexpr int seq_warps() { return 8; }

template <int KMAX, bool FORM, int NW = seq_warps<KMAX>()>
struct SeqM {
  static constexpr int C = 16, KM = KMAX, KP = KM + 4, QP = KM + 8, AP = C + 8, LS = kVT + 8, LT = kVT + 8, NS = 3;
  static constexpr int kT = 32 * NW;
  static constexpr int Kg = 0, Bg = C * KP, W = 2 * C * KP, E = 3 * C * KP, Dv = E + KM, Dvo = Dv + C * LS,
                       Dho = Dvo + C * LS, Qg = Dv + C * LS, Aqb = Qg + C * QP, dO = Aqb + C * AP,
                       Aqk = Dv,  // FORM_DV: A_qk (C x AP) in the dv tile's place
                       stage = FORM ? dO + C * LT / 2 : Dho + KM * LS;
  static constexpr int TPW = KM / (4 * NW), WPR = 4 / TPW;  // state tiles (16 x 8) a warp; warps a 16-row tile
  // Phase 1's K parts (8 warps a part): each part's dv_new to its own buffer (added where read, sum_of_parts), dv's parts
  // past the first to theirs; the first part's warps add them and store both.
  static constexpr int KSPLIT = NW / 8, KSPAN = KM / KSPLIT;
  static constexpr std::size_t bytes =
      (std::size_t(NS) * stage + KM * LS + (2 * KSPLIT - 1) * C * LS) * sizeof(float);
  static_assert(TPW * WPR == 4 && (KSPLIT == 1 || KSPLIT == 2) && KSPAN % 16 == 0, "h_bwd sequential mma: warps");
};
static_assert(SeqM<64, false>::bytes <= 110 * 1024 && SeqM<64, true>::bytes <= 110 * 1024,
              "h_bwd sequential mma: two blocks an SM at K <= 64");
static_assert(SeqM<128, false>::bytes <= 227 * 1024 && SeqM<128, true>::bytes <= 227 * 1024,
              "h_bwd sequential mma: one block an SM at K <= 128");

static_assert(SeqM<64, false>::stage % 4 == 0 && SeqM<128, false>::stage % 4 == 0 && SeqM<64, true>::stage % 4 == 0 &&
                  SeqM<128, true>::stage % 4 == 0 && SeqM<64, true>::Qg % 4 == 0 && SeqM<128, true>::Qg % 4 == 0,
              "16-byte stage rows");

// T: the 16-bit input type (do, read where FORM). FORM_DV (with FORM; chunk_backward's fused o_bwd + h_bwd): dv's
// first share A_qk^T dO is formed too (warps 4-7, as warps 0-3 form dv_new_o), from A_qk instead of the dv tile,
// and dv = A_qk^T dO + kg dS' is written (o_bwd's MMAs, then the same chain: the staged bits). KM = 64 keeps two
// blocks an SM (<= 128 registers a thread).
// Phase 1's result rows g, g + 8 at column col (and col + 1) of the chunk: dv (mat 1) or dv_new (mat 0), 8-byte stores.
__device__ __forceinline__ void store_phase1(const HBwdArgs& p, const Chunk& ch, std::int64_t h, std::int64_t H, int col,
                                             int V, int g, int mat, const float (&acc)[4]) {
  if (col >= V) return;  // V even, so col < V means col + 1 < V
  float* out = mat ? p.dv : p.dvnew;
#pragma unroll
  for (int q = 0; q < 4; q += 2) {
    const int r = g + (q >= 2 ? 8 : 0);
    if (r < ch.len) *reinterpret_cast<float2*>(out + tix(ch.bos + r, h, H, col, V)) = make_float2(acc[q], acc[q + 1]);
  }
}

template <typename T, int KMAX, bool FORM, bool FORM_DV, int NW>
__global__ void __launch_bounds__(32 * NW, KMAX <= 64 ? 2 : 1) chunk_h_bwd_seq_mma_kernel(HBwdArgs p) {
  static_assert(FORM || !FORM_DV, "dv's share is formed only with dv_new_o's and dh_o's");
  using L = SeqM<KMAX, FORM, NW>;
  constexpr int NS = L::NS, C = L::C, KP = L::KP, LS = L::LS, TPW = L::TPW, kT = L::kT, KSPLIT = L::KSPLIT;
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* Ss = sm + NS * L::stage;  // [KM][LS] dS' of the chunk being processed
  float* Vn = Ss + L::KM * LS;     // [KSPLIT][C][LS] its dv_new, by K part
  float* Dp = Vn + KSPLIT * C * LS; // [KSPLIT - 1][C][LS] dv's K parts past the first

  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const std::int64_t count = seq.count, nh = seq.n * H + h;
  const int c0 = vtile_of_block(p.geo) * kVT;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;

  // Stage x of the walk is chunk count - 1 - x. Each thread's copies are fixed pieces of the chunk's rows: their
  // offsets from the chunk's first row of head h (kp: row r of the K-wide tensors, column d; offV: of the V tile;
  // offA: of A_qb, A_qk) are computed once here, so that a chunk's indices are one int64 multiply-add a width plus
  // one add a piece (tix's ((bos + r) H + h) D + d a piece, and the row and column splits, cost the walk about a fifth
  // of its instructions: ncu source counters, H200, B8 T4096 H16 D64). Same addresses as before.
  const int e = threadIdx.x;
  const RowPieces<C, L::KM, kT> kp(H * K);  // kp.off: the K-wide rows' pieces (kg, bg, w, qg)
  const int vr = e / (kVT / 4), vx = (e % (kVT / 4)) * 4;  // e < C kVT / 4: a 16-byte piece of a V tile row
  const std::int64_t offV = vr * H * V + c0 + vx;
  const int ar = e / C, as = e % C;  // FORM: A_qb (A_qk) element (ar, as)
  const std::int64_t offA = ar * H * C + as;
  const int dr = e / (kVT / 2), dx = (e % (kVT / 2)) * 2;  // FORM: two 16-bit values of a do row
  const std::int64_t offD = dr * H * V + c0 + dx;
  auto load = [&](std::int64_t x, int slot) {
    float* sg = sm + slot * L::stage;
    const Chunk ch = chunk_in(seq, count - 1 - x, C);
    const std::int64_t row = ch.bos * H + h, rowK = row * K, rowV = row * V, rowA = row * C;
#pragma unroll
    for (int j = 0; j < kp.N; ++j) {
      const int r = kp.r[j], d = kp.d[j];
      const bool ok = r < ch.len && d < K;
      const std::int64_t ix = ok ? rowK + kp.off[j] : 0;
      const int o = r * KP + d;
      cp16(sg + L::Kg + o, p.kg + ix, ok);
      cp16(sg + L::Bg + o, p.bg + ix, ok);
      cp16(sg + L::W + o, p.w + ix, ok);
      if constexpr (FORM) cp16(sg + L::Qg + r * L::QP + d, p.qg + ix, ok);
    }
    if (e < L::KM / 4) {
      const bool ok = 4 * e < K;
      cp16(sg + L::E + 4 * e, p.egl + (ok ? (ch.g * H + h) * K + 4 * e : 0), ok);
    }
    if (e < C * kVT / 4) {
      const bool ok = vr < ch.len && c0 + vx < V;
      const std::int64_t ix = ok ? rowV + offV : 0;
      if constexpr (!FORM_DV) cp16(sg + L::Dv + vr * LS + vx, p.dv + ix, ok);
      if constexpr (!FORM) cp16(sg + L::Dvo + vr * LS + vx, p.dvnew_o + ix, ok);
    }
    if constexpr (FORM) {
      static_assert(C * C <= kT && C * kVT / 2 <= kT, "at most one 4-byte copy of A_qb and of do a thread");
      if (e < C * C) {  // A_qb (and A_qk), zero outside s <= r < len (above the diagonal they may hold anything)
        const bool ok = ar < ch.len && as <= ar;
        const std::int64_t ix = ok ? rowA + offA : 0;
        cp4(sg + L::Aqb + ar * L::AP + as, p.Aqb + ix, ok);
        if constexpr (FORM_DV) cp4(sg + L::Aqk + ar * L::AP + as, p.Aqk + ix, ok);
      }
      if (e < C * kVT / 2) {  // do, two 16-bit values a copy (V even)
        const bool ok = dr < ch.len && c0 + dx < V;
        T* dO = reinterpret_cast<T*>(sg + L::dO);
        cp4(dO + dr * L::LT + dx, static_cast<const T*>(p.d_o) + (ok ? rowV + offD : 0), ok);
      }
    } else {
      const std::int64_t base = (ch.g * H + h) * K * V;
      for (int y = e; y < L::KM * kVT / 4; y += kT) {
        const int i = y / (kVT / 4), cx = (y % (kVT / 4)) * 4;
        const bool ok = i < K && c0 + cx < V;
        cp16(sg + L::Dho + i * LS + cx, p.dh_o + (ok ? base + i * V + c0 + cx : 0), ok);
      }
    }
  };

  const int mt = warp / L::WPR, nb0 = (warp % L::WPR) * TPW;  // state tiles: rows 16 mt .., columns 8 (nb0 + j) ..
  float sa[TPW][4];
#pragma unroll
  for (int j = 0; j < TPW; ++j)
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int i = 16 * mt + g + (q >= 2 ? 8 : 0), col = 8 * (nb0 + j) + 2 * t + (q & 1);
      sa[j][q] = (p.dht && i < K && c0 + col < V) ? p.dht[(nh * K + i) * V + c0 + col] : 0.f;
      Ss[i * LS + col] = sa[j][q];
    }
  ring_start<NS>(count, load);
  // phase 1: dv_new (mat 0) or dv (mat 1), columns 8 nt .., over K part kpart
  const int mat = (warp >> 2) & 1, nt = warp & 3, kpart = warp >> 3;
  for (std::int64_t x = 0; x < count; ++x) {  // an empty sequence (cu_seqlens) has none: dh0 = dht
    ring_advance<NS>(x, count, load);  // chunk x's stage landed; dS' in Ss; the later chunk's Vn no longer read
    const Chunk ch = chunk_in(seq, count - 1 - x, C);
    const float* sg = sm + ring_slot<NS>(x) * L::stage;
    {  // dh of this chunk: dS', the gradient at its end (V even, so col < V means col + 1 < V)
      const std::int64_t base = (ch.g * H + h) * K * V;
#pragma unroll
      for (int j = 0; j < TPW; ++j) {
        const int col = c0 + 8 * (nb0 + j) + 2 * t;
#pragma unroll
        for (int q = 0; q < 4; q += 2) {
          const int i = 16 * mt + g + (q >= 2 ? 8 : 0);
          if (i < K && col < V)
            *reinterpret_cast<float2*>(p.dh + base + i * V + col) = make_float2(sa[j][q], sa[j][q + 1]);
        }
      }
    }
    const T* dOt = reinterpret_cast<const T*>(sg + L::dO);  // FORM: the tile's do rows
    float own[4];  // this warp's phase-1 result (with K parts: its part)
    {  // phase 1: dv_new = dv_new_o + bg dS' (mat 0), dv += kg dS' (mat 1)
      const float* M = sg + (mat ? L::Kg : L::Bg);
      const int cn = 8 * nt + 2 * t;
      float acc[4], acc2[4] = {0.f, 0.f, 0.f, 0.f}, cor[4] = {0.f, 0.f, 0.f, 0.f}, cor2[4] = {0.f, 0.f, 0.f, 0.f};
      if (kpart > 0) {  // a later K part: from zero
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[q] = 0.f;
      } else if (FORM && (mat == 0 || FORM_DV)) {  // dv_new_o = A_qb^T dO (dv's share A_qk^T dO): chunk_o_bwd_mma_kernel's
        float o[4] = {0.f, 0.f, 0.f, 0.f}, oc[4] = {0.f, 0.f, 0.f, 0.f};  // products in its order (its bits)
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          unsigned ah[4], al[4], b0, b1;
          load_at_split(sg + (mat ? L::Aqk : L::Aqb), L::AP, 8 * kk, 0, g, t, ah, al);
          load_b_exact(dOt, L::LT, 8 * kk, 8 * nt, g, t, b0, b1);
          mma_2xtf32(o, oc, ah, al, b0, b1);
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[q] = o[q] + oc[q];
      } else {
        const float* init = sg + (mat ? L::Dv : L::Dvo);
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[q] = init[(g + (q >= 2 ? 8 : 0)) * LS + cn + (q & 1)];
      }
#pragma unroll
      for (int kk = 0; kk < L::KSPAN; kk += 8) {
        const int k0 = kpart * L::KSPAN + kk;
        unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
        load_a_split(M, KP, k0, g, t, ah, al);
        load_b_split(Ss, LS, k0, 8 * nt, g, t, bh0, bl0, bh1, bl1);
        if ((kk / 8) % 2 == 0) mma_3xtf32(acc, cor, cor2, ah, al, bh0, bl0, bh1, bl1);
        else mma_3xtf32(acc2, cor, cor2, ah, al, bh0, bl0, bh1, bl1);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] = (acc[q] + acc2[q]) + (cor[q] + cor2[q]);
      if constexpr (KSPLIT == 1) store_phase1(p, ch, h, H, c0 + cn, V, g, mat, acc);
#pragma unroll
      for (int q = 0; q < 4; ++q) own[q] = acc[q];
      // dv_new's part (rows past the chunk and columns past V are zero: their operands were zero-filled), or dv's
      // part past the first
      if (mat == 0 || kpart > 0) {
        float* X = mat == 0 ? Vn + kpart * C * LS : Dp + (kpart - 1) * C * LS;
        *reinterpret_cast<float2*>(X + g * LS + cn) = make_float2(acc[0], acc[1]);
        *reinterpret_cast<float2*>(X + (g + 8) * LS + cn) = make_float2(acc[2], acc[3]);
      }
    }
    float dho[TPW][4];  // FORM: this warp's tiles of dh_o = qg^T dO (off the dS' chain: before the barrier)
    if constexpr (FORM) {  // chunk_o_bwd_mma_kernel's products in its order (its bits)
      unsigned ah[2][4], al[2][4];
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) load_at_split(sg + L::Qg, L::QP, 8 * kk, 16 * mt, g, t, ah[kk], al[kk]);
#pragma unroll
      for (int j = 0; j < TPW; ++j) {
        float o[4] = {0.f, 0.f, 0.f, 0.f}, oc[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          unsigned b0, b1;
          load_b_exact(dOt, L::LT, 8 * kk, 8 * (nb0 + j), g, t, b0, b1);
          mma_2xtf32(o, oc, ah[kk], al[kk], b0, b1);
        }
#pragma unroll
        for (int q = 0; q < 4; ++q) dho[j][q] = o[q] + oc[q];
      }
    } else {
#pragma unroll
      for (int j = 0; j < TPW; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q)
          dho[j][q] = sg[L::Dho + (16 * mt + g + (q >= 2 ? 8 : 0)) * LS + 8 * (nb0 + j) + 2 * t + (q & 1)];
    }
    __syncthreads();
    if constexpr (KSPLIT > 1) {  // the first part's warps: dv_new and dv, their parts added, out
      if (kpart == 0) {
        const int cn = 8 * nt + 2 * t;
        float tot[4];  // dv_new: as the state update adds its parts; dv: this warp's part (in registers) + the next
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          const int i = (g + (q >= 2 ? 8 : 0)) * LS + cn + (q & 1);
          tot[q] = mat == 0 ? sum_of_parts<KSPLIT>(Vn, C * LS, i) : own[q] + Dp[i];
        }
        store_phase1(p, ch, h, H, c0 + cn, V, g, mat, tot);
      }
    }
    {  // dS = diag(exp(gl)) dS' + dh_o + w^T dv_new, TPW tiles of 16 x 8 a warp
      const float* W = sg + L::W;
      const float* egl = sg + L::E;
      const float e0 = egl[16 * mt + g], e1 = egl[16 * mt + g + 8];
      float cs[TPW][4];  // hi*lo and lo*hi apart from hi*hi: chains of 4 and 2
#pragma unroll
      for (int j = 0; j < TPW; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          sa[j][q] = fmaf(q >= 2 ? e1 : e0, sa[j][q], dho[j][q]);
          cs[j][q] = 0.f;
        }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4];
        load_at_split(W, KP, k0, 16 * mt, g, t, ah, al);
#pragma unroll
        for (int j = 0; j < TPW; ++j) {
          unsigned bh0, bl0, bh1, bl1;
          load_b_split_parts<KSPLIT>(Vn, C * LS, LS, k0, 8 * (nb0 + j), g, t, bh0, bl0, bh1, bl1);
          mma_3xtf32(sa[j], cs[j], cs[j], ah, al, bh0, bl0, bh1, bl1);
        }
      }
#pragma unroll
      for (int j = 0; j < TPW; ++j) {
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          sa[j][q] += cs[j][q];
          if (planted(p.geo.planted, PlantedDefect::BwdStateBf16)) sa[j][q] = __bfloat162float(__float2bfloat16_rn(sa[j][q]));
        }
        const int cn = 8 * (nb0 + j) + 2 * t;
        *reinterpret_cast<float2*>(Ss + (16 * mt + g) * LS + cn) = make_float2(sa[j][0], sa[j][1]);
        *reinterpret_cast<float2*>(Ss + (16 * mt + g + 8) * LS + cn) = make_float2(sa[j][2], sa[j][3]);
      }
    }
  }
  cp_wait<0>();
  if (p.dh0)
#pragma unroll
    for (int j = 0; j < TPW; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        const int i = 16 * mt + g + (q >= 2 ? 8 : 0), col = c0 + 8 * (nb0 + j) + 2 * t + (q & 1);
        if (i < K && col < V) p.dh0[(nh * K + i) * V + col] = sa[j][q];
      }
}

// The per-chunk kernel's shared memory, in floats: the split in-chunk sums of gk (hi, lo: C x KM each) and the
// chunk's rows of gk as loaded (C x KM values of G), then up to NS slab stages of [S, dS' (KM x LB: key channel i's
// 32 columns, read n-major as B fragments) | dv_new, v_new rows (C x LB, A fragments) | v rows (C x LV 16-bit
// values) | (O) do rows (C x LV 16-bit values)]; a launch allocates min(NS, slabs) stages (V = 64: two, both in
// flight at once). LB = 4 mod 32 floats, LV = 20 mod 32 words: conflict-free fragments.
template <int KMAX, bool O>
struct ChunkM {
  static constexpr int C = 16, KM = KMAX, VS = 32, LB = VS + 4, LV = VS + 8, NS = KM <= 64 ? 3 : 2;
  static constexpr int Gh = 0, Gl = C * KM, Gs = 2 * C * KM, stages = 3 * C * KM;
  static constexpr int S = 0, dS = KM * LB, Dvn = 2 * KM * LB, Vn = Dvn + C * LB, Vv = Vn + C * LB,
                       Do = Vv + C * LV / 2, stage = Do + (O ? C * LV / 2 : 0);
  static constexpr std::size_t bytes(int slabs) {
    return (std::size_t(stages) + std::size_t(slabs < NS ? slabs : NS) * stage) * sizeof(float);
  }
};
static_assert(ChunkM<64, true>::bytes(2) <= 64 * 1024 && ChunkM<64, true>::bytes(3) <= 110 * 1024 &&
                  ChunkM<128, true>::bytes(4) <= 110 * 1024,
              "h_bwd per-chunk mma: three blocks an SM at K, V <= 64, two elsewhere");
static_assert(ChunkM<64, false>::stage % 4 == 0 && ChunkM<128, false>::stage % 4 == 0 && ChunkM<64, true>::stage % 4 == 0 &&
                  ChunkM<128, true>::stage % 4 == 0 && ChunkM<64, false>::Vv % 4 == 0,
              "16-byte rows");

// O (chunk_backward's fused o_bwd + h_bwd): also o_bwd's per-chunk products over V from the same slabs (S, v, v_new)
// and the chunk's do rows: dq_o = (dO S^T) (.) exp(gi) (the S^T fragments of dw), dA_qk = tril(dO v^T) (warps 0, 1),
// dA_qb = tril(dO v_new^T) (warps 2, 3), with chunk_o_bwd_mma_kernel's MMAs in its order (its bits; k-steps past V
// skipped as it stops there), so h (537 MB at B8 T4096 H16 K = V = 64) is read once. Blocks an SM: three at K <= 64
// (<= 80 registers; with O ptxas spills 32 bytes a thread, yet the kernel ran 963 -> 862 us against two blocks at 123
// registers: it waits on its loads, H200, session 15), two at K <= 128 (O: 24-48 bytes spilled, ptxas 13).
template <typename T, typename G, int KMAX, bool O>
__global__ void __launch_bounds__(kThreads, KMAX <= 64 ? 3 : 2) chunk_h_bwd_chunk_mma_kernel(HBwdChunkArgs p) {
  using L = ChunkM<KMAX, O>;
  constexpr int NS = L::NS, C = L::C, LB = L::LB, LV = L::LV, VS = L::VS, NTW = KMAX / 64;  // n-tiles a warp
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* gh = sm + L::Gh;  // [C][K] in-chunk sums of gk, log2 units, hi word
  float* gl = sm + L::Gl;  // lo word
  G* gs = reinterpret_cast<G*>(sm + L::Gs);  // [C][K] gk as loaded
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int len = ch.len, slabs = (V + VS - 1) / VS;
  const std::int64_t base = (ch.g * H + h) * K * V;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;

  // Each thread's copies are fixed pieces of a slab (offsets from the chunk's first row of head h, or from h's state
  // of the chunk, computed once here), so that slab x's indices are one add a piece: tix's multiply-adds and the row and
  // column splits a piece cost the kernel's loads most of their instructions (ncu source counters, H200). The gk rows
  // go one warp a row, without the runtime division by K. Same addresses as before.
  const int e = threadIdx.x;
  constexpr int SR = L::KM * VS / 4 / kThreads;  // 16-byte pieces of S and of dS' a thread
  static_assert(L::KM * VS / 4 % kThreads == 0, "whole pieces a thread");
  int s_i[SR], s_x[SR];
#pragma unroll
  for (int j = 0; j < SR; ++j) {
    const int y = e + j * kThreads;
    s_i[j] = y / (VS / 4);
    s_x[j] = (y % (VS / 4)) * 4;
  }
  const int nr = e / (VS / 4), nx = (e % (VS / 4)) * 4;  // e < C VS / 4: a 16-byte piece of dv_new's, v_new's rows
  const int vr = e / (VS / 2), vx = (e % (VS / 2)) * 2;  // two 16-bit values of v's (and do's) rows
  const std::int64_t row = ch.bos * H + h, rowV = row * V;
  const std::int64_t offN = rowV + nr * H * V + nx, offV = rowV + vr * H * V + vx;
  auto load = [&](std::int64_t x, int slot) {
    float* sg = sm + L::stages + slot * L::stage;
    const int jt = static_cast<int>(x) * VS;
    if (x == 0) {  // the chunk's rows of gk with the first slab: 4-byte copies (K even), warp w rows w, w + 8
      constexpr int EPC = 4 / sizeof(G);
      for (int r = warp; r < len; r += kThreads / 32)
        for (int d = EPC * lane; d < K; d += 32 * EPC)
          cp4(gs + r * K + d, static_cast<const G*>(p.gk) + (row + r * H) * K + d, true);
    }
#pragma unroll
    for (int j = 0; j < SR; ++j) {
      const int i = s_i[j], cx = s_x[j];
      const bool ok = i < K && jt + cx < V;
      const std::int64_t ix = ok ? base + i * V + jt + cx : 0;
      cp16(sg + L::S + i * LB + cx, p.h + ix, ok);
      cp16(sg + L::dS + i * LB + cx, p.dh + ix, ok);
    }
    if (e < C * VS / 4) {
      const bool ok = nr < len && jt + nx < V;
      const std::int64_t ix = ok ? offN + jt : 0;
      cp16(sg + L::Dvn + nr * LB + nx, p.dvnew + ix, ok);
      cp16(sg + L::Vn + nr * LB + nx, p.vnew + ix, ok);
    }
    static_assert(C * VS / 2 == kThreads, "one 4-byte copy of v (and of do) (two 16-bit values) a thread");
    {
      const bool ok = vr < len && jt + vx < V;  // V even
      const std::int64_t ix = ok ? offV + jt : 0;
      T* vv = reinterpret_cast<T*>(sg + L::Vv);
      cp4(vv + vr * LV + vx, static_cast<const T*>(p.v) + ix, ok);
      if constexpr (O) cp4(reinterpret_cast<T*>(sg + L::Do) + vr * LV + vx, static_cast<const T*>(p.d_o) + ix, ok);
    }
  };

  ring_start<NS>(slabs, load);
  // Accumulators of the warp's n-tiles (key channels 8 (warp + 8 m) ..): hi*hi apart from the cross terms.
  float dw[NTW][4], dwc[NTW][4], dk[NTW][4], dkc[NTW][4], db[NTW][4], dbc[NTW][4];
#pragma unroll
  for (int m = 0; m < NTW; ++m)
#pragma unroll
    for (int q = 0; q < 4; ++q) dw[m][q] = dwc[m][q] = dk[m][q] = dkc[m][q] = db[m][q] = dbc[m][q] = 0.f;
  float dq[NTW][4], dqc[NTW][4], qa[4] = {0.f, 0.f, 0.f, 0.f}, qc[4] = {0.f, 0.f, 0.f, 0.f};  // O: dq_o; dA_qk or dA_qb
#pragma unroll
  for (int m = 0; m < NTW; ++m)
#pragma unroll
    for (int q = 0; q < 4; ++q) dq[m][q] = dqc[m][q] = 0.f;
  // The work besides the MMAs goes to the warps without dA's products (warps 0-3 have those): d_chunk_decay's row
  // sums to warps 4-7 (thread 128 + i sums channel i), the fp64 cumsum of gk to the last warps (thread 255 - d sums
  // column d). With both on warps 0-1 barrier stalls were the largest stall reason (ncu, H200: 2.09 of 7.7 cycles an
  // instruction); moved, the kernel took 958 instead of 1000 us (B8 T4096 H16 K = V = 64 bf16). Same sums, same order.
  const int dcd_channel = static_cast<int>(threadIdx.x) - kThreads / 2;
  float dcd = 0.f;  // thread 128 + i, i < K: sum_j S[i][j] dS'[i][j], j in order
  for (int x = 0; x < slabs; ++x) {
    ring_advance<NS>(x, slabs, load);  // slab x landed (the first one with gk)
    if (x == 0)  // for_chunk_log2_cumsum's sums (fp64, one thread a column, r in order), from the staged rows
      for (int d = kThreads - 1 - static_cast<int>(threadIdx.x); d < K; d += kThreads) {
        double acc = 0.0;
        for (int r = 0; r < len; ++r) {
          acc += static_cast<double>(to_f(gs[r * K + d]));
          const float2 sp = split_log2(acc);
          gh[r * K + d] = sp.x;
          gl[r * K + d] = sp.y;
        }
      }
    const float* sg = sm + L::stages + ring_slot<NS>(x) * L::stage;
    const float* St = sg + L::S;
    const float* dSt = sg + L::dS;
    const T* vv = reinterpret_cast<const T*>(sg + L::Vv);
    const T* dOs = reinterpret_cast<const T*>(sg + L::Do);
#pragma unroll
    for (int k0 = 0; k0 < VS; k0 += 8) {
      unsigned dvh[4], dvl[4], vnh[4], vnl[4], va[4], da[4];  // dv_new, v_new split; v, do exact
      load_a_split(sg + L::Dvn, LB, k0, g, t, dvh, dvl);
      load_a_split(sg + L::Vn, LB, k0, g, t, vnh, vnl);
      load_a_exact(vv, LV, k0, g, t, va);
      const bool o_step = O && x * VS + k0 < V;  // o_bwd's k-steps (V a multiple of 8)
      if (o_step) load_a_exact(dOs, LV, k0, g, t, da);
#pragma unroll
      for (int m = 0; m < NTW; ++m) {
        const int n0 = 8 * (warp + 8 * m);
        unsigned sh0, sl0, sh1, sl1, eh0, el0, eh1, el1;  // S^T, dS'^T split
        load_bt_split(St, LB, k0, n0, g, t, sh0, sl0, sh1, sl1);
        load_bt_split(dSt, LB, k0, n0, g, t, eh0, el0, eh1, el1);
        mma_3xtf32(dw[m], dwc[m], dwc[m], dvh, dvl, sh0, sl0, sh1, sl1);
        mma_2xtf32_exact_a(dk[m], dkc[m], va, eh0, el0, eh1, el1);
        mma_3xtf32(db[m], dbc[m], dbc[m], vnh, vnl, eh0, el0, eh1, el1);
        if (o_step) mma_2xtf32_exact_a(dq[m], dqc[m], da, sh0, sl0, sh1, sl1);
      }
      if (o_step && warp < 4) {  // dA_qk (warps 0, 1: two chains, even and odd k-steps), dA_qb (2, 3); columns n0 ..
        const int n0 = 8 * (warp & 1);
        if (warp >= 2) {
          unsigned bh0, bl0, bh1, bl1;
          load_bt_split(sg + L::Vn, LB, k0, n0, g, t, bh0, bl0, bh1, bl1);
          mma_2xtf32_exact_a(qa, qc, da, bh0, bl0, bh1, bl1);
        } else {
          unsigned b0, b1;
          load_bt_exact(vv, LV, k0, n0, g, t, b0, b1);
          if ((k0 / 8) % 2 == 0) mma_tf32(qa, da, b0, b1);  // VS / 8 even: the parity of o_bwd's k-step over V
          else mma_tf32(qc, da, b0, b1);
        }
      }
    }
    if (dcd_channel >= 0 && dcd_channel < K) {
      const int i = dcd_channel;
#pragma unroll
      for (int j = 0; j < VS; j += 4) {
        const float4 s = *reinterpret_cast<const float4*>(St + i * LB + j);
        const float4 d = *reinterpret_cast<const float4*>(dSt + i * LB + j);
        dcd = fmaf(s.x, d.x, dcd);
        dcd = fmaf(s.y, d.y, dcd);
        dcd = fmaf(s.z, d.z, dcd);
        dcd = fmaf(s.w, d.w, dcd);
      }
    }
  }
  cp_wait<0>();
  __syncthreads();  // gh / gl of every column written
  const int last = len - 1;
#pragma unroll
  for (int m = 0; m < NTW; ++m) {
    const int i = 8 * (warp + 8 * m) + 2 * t;
    if (i >= K) continue;  // K even: i + 1 < K too
#pragma unroll
    for (int q = 0; q < 4; q += 2) {
      const int r = g + (q >= 2 ? 8 : 0);
      if (r >= len) continue;
      float te[2];
#pragma unroll
      for (int u = 0; u < 2; ++u)
        te[u] = exp2_diff_exact_scale(make_float2(gh[last * K + i + u], gl[last * K + i + u]),
                                      make_float2(gh[r * K + i + u], gl[r * K + i + u]));
      const std::int64_t ix = tix(ch.bos + r, h, H, i, K);
      *reinterpret_cast<float2*>(p.dw + ix) = make_float2(dw[m][q] + dwc[m][q], dw[m][q + 1] + dwc[m][q + 1]);
      *reinterpret_cast<float2*>(p.dk_h + ix) =
          make_float2((dk[m][q] + dkc[m][q]) * te[0], (dk[m][q + 1] + dkc[m][q + 1]) * te[1]);
      *reinterpret_cast<float2*>(p.db_h + ix) =
          make_float2((db[m][q] + dbc[m][q]) * te[0], (db[m][q + 1] + dbc[m][q + 1]) * te[1]);
    }
  }
  if (dcd_channel >= 0 && dcd_channel < K) {
    const int i = dcd_channel;
    p.dcd[(ch.g * H + h) * K + i] = dcd * exp2_split(make_float2(gh[last * K + i], gl[last * K + i]));
  }
  if constexpr (O) {  // o_bwd's stores: dq_o (.) exp(gi) as it forms exp(gi); dA_qk, dA_qb lower triangles
#pragma unroll
    for (int m = 0; m < NTW; ++m) {
      const int i = 8 * (warp + 8 * m) + 2 * t;
      if (i >= K) continue;
#pragma unroll
      for (int q = 0; q < 4; q += 2) {
        const int r = g + (q >= 2 ? 8 : 0);
        if (r >= len) continue;
        const float e0 = exp2_split(make_float2(gh[r * K + i], gl[r * K + i]));
        const float e1 = exp2_split(make_float2(gh[r * K + i + 1], gl[r * K + i + 1]));
        *reinterpret_cast<float2*>(p.dq_o + tix(ch.bos + r, h, H, i, K)) =
            make_float2((dq[m][q] + dqc[m][q]) * e0, (dq[m][q + 1] + dqc[m][q + 1]) * e1);
      }
    }
    if (warp < 4) {
      float* out = warp >= 2 ? p.dAqb : p.dAqk;
#pragma unroll
      for (int hr = 0; hr < 2; ++hr) {
        const int r = g + 8 * hr, s = 8 * (warp & 1) + 2 * t;
        if (r < len)
          *reinterpret_cast<float2*>(out + ((ch.bos + r) * H + h) * C + s) =
              make_float2(s <= r ? qa[2 * hr] + qc[2 * hr] : 0.f, s + 1 <= r ? qa[2 * hr + 1] + qc[2 * hr + 1] : 0.f);
      }
    }
  }
}

}  // namespace

void launch_mma(const HBwdArgs& seq, const HBwdChunkArgs& chunk, ElemType dtype, ElemType gk_dtype, dim3 seq_grid,
                dim3 chunk_grid, cudaStream_t stream) {
  auto by_k = [&](auto&& go) {
    if (seq.K <= 64) go(std::integral_constant<int, 64>{});
    else go(std::integral_constant<int, 128>{});
  };
  auto by_form = [&](auto&& go) {  // (FORM, FORM_DV)
    if (seq.dh_o) go(std::false_type{}, std::false_type{});
    else if (!seq.Aqk) go(std::true_type{}, std::false_type{});
    else go(std::true_type{}, std::true_type{});
  };
  dispatch_types(dtype, gk_dtype, [&](auto tt, auto) {
    using T = decltype(tt);
    if constexpr (!std::is_same_v<T, float>) {
      by_k([&](auto km) {
        by_form([&](auto form, auto form_dv) {
          constexpr int KM = decltype(km)::value;
          constexpr bool FORM = decltype(form)::value, FORM_DV = decltype(form_dv)::value;
          constexpr int NW = seq_warps<KM>();
          using L = SeqM<KM, FORM, NW>;
          set_smem(chunk_h_bwd_seq_mma_kernel<T, KM, FORM, FORM_DV, NW>, L::bytes);
          chunk_h_bwd_seq_mma_kernel<T, KM, FORM, FORM_DV, NW><<<seq_grid, L::kT, L::bytes, stream>>>(seq);
        });
      });
    }
  });
  DPLR_LAUNCHED("chunk_h_bwd_seq_mma_kernel");
  dispatch_types(dtype, gk_dtype, [&](auto tt, auto gg) {
    using T = decltype(tt);
    using G = decltype(gg);
    if constexpr (!std::is_same_v<T, float>) {
      by_k([&](auto km) {
        auto go = [&](auto o) {
          constexpr int KM = decltype(km)::value;
          constexpr bool O = decltype(o)::value;
          using L = ChunkM<KM, O>;
          const std::size_t bytes = L::bytes((chunk.V + L::VS - 1) / L::VS);
          set_smem(chunk_h_bwd_chunk_mma_kernel<T, G, KM, O>, bytes);
          chunk_h_bwd_chunk_mma_kernel<T, G, KM, O><<<chunk_grid, kThreads, bytes, stream>>>(chunk);
        };
        if (chunk.d_o) go(std::true_type{});
        else go(std::false_type{});
      });
    }
  });
  DPLR_LAUNCHED("chunk_h_bwd_chunk_mma_kernel");
}

}  // namespace dplr::gpu::detail::hbwd
