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
// fp64 in-chunk sums of gk (for_chunk_log2_cumsum), each factor the exponential of a difference. It stages S, dS'
// and the chunk's rows in shared memory 32 columns of V at a time (session 7: the first version read S and dS'
// from global memory with lanes 64 floats apart, 32 cache lines a load); each output keeps its FMA chain and order.
// This file also holds the stage's entry point, which runs the tensor-core pair instead (chunk_h_bwd_mma.cu) where
// chunk_h_bwd_tensor_cores_supported (BackwardVariant::h, Default or TensorCores); only that pair takes o_bwd's
// shares dv_new_o, dh_o as nullptr (it forms them: chunk_backward's path), the FMA pair refuses them.
#include <cstdint>
#include <string>

#include "gpu/chunk_bwd_mma.cuh"
#include "gpu/chunk_h_bwd.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;
using namespace detail::hbwd;

constexpr int kRG = kThreads / kVT;  // 8 row groups, one warp each

// The sequential kernel's shared memory: a 2-deep ring of chunk stages filled by cp.async one chunk ahead (the rows
// of kg, bg and, where it fits, w; exp(gl); the tile's columns of dv_new_o, of dv (o_bwd's share) and of dh_o), the
// K x 32 tile of dS' (padded rows) and the chunk's dv_new. At C = 64, K > 64 w does not fit twice and is read
// from global memory (through L1, warp-wide broadcasts).
template <int C, int KMAX>
struct HBwdSeq {
  static constexpr int LS = kVT + 1, NS = 2;
  static constexpr std::size_t stage_floats(bool w) {
    return std::size_t(w ? 3 : 2) * C * KMAX + KMAX + 2 * C * kVT + KMAX * kVT;
  }
  static constexpr std::size_t fixed_floats = std::size_t(KMAX) * LS + C * kVT;
  static constexpr bool stage_w = (NS * stage_floats(true) + fixed_floats) * sizeof(float) <= 227 * 1024;
  static constexpr int Kg = 0, Bg = C * KMAX, W = 2 * C * KMAX, E = W + (stage_w ? C * KMAX : 0), Dvo = E + KMAX,
                       Dv = Dvo + C * kVT, Dho = Dv + C * kVT, stage = Dho + KMAX * kVT;
  static constexpr std::size_t bytes = (NS * std::size_t(stage) + fixed_floats) * sizeof(float);
};
static_assert(HBwdSeq<64, 128>::bytes <= 227 * 1024, "h_bwd sequential: shared memory at C = 64, K = 128");

// Thread (rg, cc) of 8 x 32: column cc of the tile; dv_new rows rg + 8 j, dS rows rg + 8 m. rg is the warp, so the
// rows of kg, bg and w a warp reads are one address (broadcasts). Each output is the same fp32 FMA chain, in the
// same order, as session 6's kernel (which read every operand from global memory inside the chain).
template <int C, int KMAX>
__global__ void __launch_bounds__(kThreads) chunk_h_bwd_kernel(HBwdArgs p) {
  using SQ = HBwdSeq<C, KMAX>;
  constexpr int LS = SQ::LS, NS = SQ::NS, KR = KMAX / kRG, CR = C / kRG;
  extern __shared__ __align__(16) float sm[];
  float* dS = sm + NS * SQ::stage;  // [KMAX][LS] dS' of the chunk being processed
  float* Dvn = dS + KMAX * LS;      // [C][kVT] its dv_new
  const int K = p.K, V = p.V;
  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const int cc = threadIdx.x % kVT, rg = threadIdx.x / kVT;
  const int c0 = vtile_of_block(p.geo) * kVT, col = c0 + cc;
  const bool colok = col < V;
  const std::int64_t nh = seq.n * H + h, count = seq.count;

  // Stage x of the walk is chunk count - 1 - x (the walk runs from the last chunk).
  auto load = [&](std::int64_t x, int slot) {
    float* sg = sm + slot * SQ::stage;
    const Chunk ch = chunk_in(seq, count - 1 - x, C);
    for (int e = threadIdx.x; e < C * KMAX; e += kThreads) {
      const int r = e / KMAX, i = e % KMAX;
      const bool ok = r < ch.len && i < K;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, i, K) : 0;
      cp4(sg + SQ::Kg + e, p.kg + ix, ok);
      cp4(sg + SQ::Bg + e, p.bg + ix, ok);
      if constexpr (SQ::stage_w) cp4(sg + SQ::W + e, p.w + ix, ok);
    }
    for (int e = threadIdx.x; e < KMAX; e += kThreads) {
      const bool ok = e < K;
      cp4(sg + SQ::E + e, p.egl + (ok ? (ch.g * H + h) * K + e : 0), ok);
    }
    for (int e = threadIdx.x; e < C * kVT; e += kThreads) {
      const int r = e / kVT, x2 = e % kVT;
      const bool ok = r < ch.len && c0 + x2 < V;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c0 + x2, V) : 0;
      cp4(sg + SQ::Dvo + e, p.dvnew_o + ix, ok);
      cp4(sg + SQ::Dv + e, p.dv + ix, ok);
    }
    const std::int64_t base = (ch.g * H + h) * K * V;
    for (int e = threadIdx.x; e < KMAX * kVT; e += kThreads) {
      const int i = e / kVT, x2 = e % kVT;
      const bool ok = i < K && c0 + x2 < V;
      cp4(sg + SQ::Dho + e, p.dh_o + (ok ? base + i * V + c0 + x2 : 0), ok);
    }
  };

  float st[KR];  // this thread's rows of dS, mirrored in shared memory for the dv_new products
#pragma unroll
  for (int m = 0; m < KR; ++m) {
    const int i = rg + kRG * m;
    st[m] = (p.dht && i < K && colok) ? p.dht[(nh * K + i) * V + col] : 0.f;
    dS[i * LS + cc] = st[m];
  }
  ring_start<NS>(count, load);
  for (std::int64_t x = 0; x < count; ++x) {  // an empty sequence (cu_seqlens) has none: dh0 = dht
    ring_advance<NS>(x, count, load);  // chunk x's stage landed; dS' complete; the later chunk's Dvn no longer read
    const Chunk ch = chunk_in(seq, count - 1 - x, C);
    const float* sg = sm + ring_slot<NS>(x) * SQ::stage;
    const float* kg = sg + SQ::Kg;
    const float* bg = sg + SQ::Bg;
    const std::int64_t base = (ch.g * H + h) * K * V;
    if (colok)
#pragma unroll
      for (int m = 0; m < KR; ++m)
        if (rg + kRG * m < K) p.dh[base + (rg + kRG * m) * V + col] = st[m];
    {  // dv_new = dv_new_o + bg dS', dv += kg dS'
      float dvn[CR], dvk[CR];
#pragma unroll
      for (int j = 0; j < CR; ++j) dvn[j] = dvk[j] = 0.f;
      int i = 0;
      for (; i + 4 <= K; i += 4) {  // 4 key channels a step, 16-byte reads of the kg, bg rows
        const float s0 = dS[i * LS + cc], s1 = dS[(i + 1) * LS + cc], s2 = dS[(i + 2) * LS + cc],
                    s3 = dS[(i + 3) * LS + cc];
#pragma unroll
        for (int j = 0; j < CR; ++j) {
          const int r = rg + kRG * j;
          const float4 b = *reinterpret_cast<const float4*>(bg + r * KMAX + i);
          const float4 k = *reinterpret_cast<const float4*>(kg + r * KMAX + i);
          dvn[j] = fmaf(b.x, s0, dvn[j]);
          dvn[j] = fmaf(b.y, s1, dvn[j]);
          dvn[j] = fmaf(b.z, s2, dvn[j]);
          dvn[j] = fmaf(b.w, s3, dvn[j]);
          dvk[j] = fmaf(k.x, s0, dvk[j]);
          dvk[j] = fmaf(k.y, s1, dvk[j]);
          dvk[j] = fmaf(k.z, s2, dvk[j]);
          dvk[j] = fmaf(k.w, s3, dvk[j]);
        }
      }
      for (; i < K; ++i) {
        const float s = dS[i * LS + cc];
#pragma unroll
        for (int j = 0; j < CR; ++j) {
          const int r = rg + kRG * j;
          dvn[j] = fmaf(bg[r * KMAX + i], s, dvn[j]);
          dvk[j] = fmaf(kg[r * KMAX + i], s, dvk[j]);
        }
      }
#pragma unroll
      for (int j = 0; j < CR; ++j) {
        const int r = rg + kRG * j;
        float v = 0.f;
        if (r < ch.len && colok) {
          const std::int64_t ix = tix(ch.bos + r, h, H, col, V);
          v = sg[SQ::Dvo + r * kVT + cc] + dvn[j];
          p.dvnew[ix] = v;
          p.dv[ix] = sg[SQ::Dv + r * kVT + cc] + dvk[j];
        }
        Dvn[r * kVT + cc] = v;
      }
    }
    __syncthreads();
    {  // dS = diag(exp(gl)) dS' + w^T dv_new + dh_o
      float acc[KR];
#pragma unroll
      for (int m = 0; m < KR; ++m) {
        const int i = rg + kRG * m;
        acc[m] = i < K ? sg[SQ::E + i] * st[m] : 0.f;
      }
      for (int r = 0; r < ch.len; ++r) {
        const float dv = Dvn[r * kVT + cc];
#pragma unroll
        for (int m = 0; m < KR; ++m) {
          const int i = rg + kRG * m;
          if (i < K) {
            float wv;
            if constexpr (SQ::stage_w) wv = sg[SQ::W + r * KMAX + i];
            else wv = p.w[((ch.bos + r) * H + h) * K + i];
            acc[m] = fmaf(wv, dv, acc[m]);
          }
        }
      }
#pragma unroll
      for (int m = 0; m < KR; ++m) {
        const int i = rg + kRG * m;
        if (i >= K) continue;
        if (colok) acc[m] += sg[SQ::Dho + i * kVT + cc];
        if (planted(p.geo.planted, PlantedDefect::BwdStateBf16)) acc[m] = __bfloat162float(__float2bfloat16_rn(acc[m]));
        st[m] = acc[m];
        dS[i * LS + cc] = acc[m];
      }
    }
  }
  cp_wait<0>();
  if (p.dh0 && colok)
#pragma unroll
    for (int m = 0; m < KR; ++m)
      if (rg + kRG * m < K) p.dh0[(nh * K + rg + kRG * m) * V + col] = st[m];
}

// The per-chunk kernel's shared memory: the in-chunk sums of gk (hi, lo words) and one tile of kJT columns of V of
// S and dS' (one padded row a key channel: lanes read consecutive channels of 4 columns, conflict-free) and of the
// chunk's rows of dv_new, v, v_new (read as warp-wide broadcasts).
constexpr int kJT = 32;
template <int C, int KMAX>
struct HBwdChunkSmem {
  static constexpr int LS = kJT + 4;  // 16-byte rows, conflict-free for 8 lanes' float4 reads
  static constexpr int gh = 0, gl = C * KMAX, S = 2 * C * KMAX, dS = S + KMAX * LS, dvn = dS + KMAX * LS,
                       vv = dvn + C * kJT, vn = vv + C * kJT, floats = vn + C * kJT;
  static constexpr std::size_t bytes = std::size_t(floats) * sizeof(float);
};
static_assert(HBwdChunkSmem<64, 128>::bytes <= 227 * 1024, "h_bwd per chunk: shared memory at C = 64, K = 128");

// Thread (rq, i) of (256 / KMAX) x KMAX: key channel i, rows rq + RG m of the chunk (a warp shares its rows, so the
// row operands are broadcasts). Every output is the same fp32 FMA chain, in the same order (j = 0 .. V - 1), as
// one thread summing over all of V: the tiles only stage the operands.
template <typename T, typename G, int C, int KMAX>
__global__ void __launch_bounds__(256) chunk_h_bwd_chunk_kernel(HBwdChunkArgs p) {
  using SM = HBwdChunkSmem<C, KMAX>;
  constexpr int RG = 256 / KMAX, EPT = C / RG, LS = SM::LS;
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* gh = sm + SM::gh;  // [C][K] in-chunk sums of gk, log2 units, hi word
  float* gl = sm + SM::gl;  // lo word
  float* St = sm + SM::S;   // [KMAX][LS]: S[i][jt + j]
  float* dSt = sm + SM::dS; // [KMAX][LS]: dS'[i][jt + j]
  float* dvn = sm + SM::dvn;  // [C][kJT] dv_new rows
  float* vv = sm + SM::vv;    // [C][kJT] v rows
  float* vn = sm + SM::vn;    // [C][kJT] v_new rows
  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int L = ch.len;
  for_chunk_log2_cumsum<G>(p.gk, ch, h, H, K, [&](int r, int d, float2 g) {
    gh[r * K + d] = g.x;
    gl[r * K + d] = g.y;
  });
  const std::int64_t base = (ch.g * H + h) * K * V;
  const float* S = p.h + base;
  const float* dSp = p.dh + base;
  const int i = threadIdx.x % KMAX, rq = threadIdx.x / KMAX;
  float dw[EPT], dkg[EPT], dbg[EPT], dcd = 0.f;
#pragma unroll
  for (int m = 0; m < EPT; ++m) dw[m] = dkg[m] = dbg[m] = 0.f;
  for (int jt = 0; jt < V; jt += kJT) {
    const int jn = min(kJT, V - jt);
    __syncthreads();  // the previous tile no longer read (and, the first time, gh / gl written)
    for (int x = threadIdx.x; x < K * kJT; x += blockDim.x) {
      const int ii = x / kJT, j = x % kJT;
      if (j < jn) {
        St[ii * LS + j] = S[ii * V + jt + j];
        dSt[ii * LS + j] = dSp[ii * V + jt + j];
      }
    }
    for (int x = threadIdx.x; x < L * kJT; x += blockDim.x) {
      const int r = x / kJT, j = x % kJT;
      if (j < jn) {
        const std::int64_t ix = tix(ch.bos + r, h, H, jt + j, V);
        dvn[x] = p.dvnew[ix];
        vv[x] = ld<T>(p.v, ix);
        vn[x] = p.vnew[ix];
      }
    }
    __syncthreads();
    if (i < K) {
      int j = 0;
      for (; j + 4 <= jn; j += 4) {  // 4 columns a step, 16-byte shared-memory reads
        const float4 s = *reinterpret_cast<const float4*>(St + i * LS + j);
        const float4 d = *reinterpret_cast<const float4*>(dSt + i * LS + j);
#pragma unroll
        for (int m = 0; m < EPT; ++m) {
          const int r = rq + RG * m;
          if (r < L) {
            const float4 a = *reinterpret_cast<const float4*>(dvn + r * kJT + j);
            const float4 b = *reinterpret_cast<const float4*>(vv + r * kJT + j);
            const float4 c = *reinterpret_cast<const float4*>(vn + r * kJT + j);
            dw[m] = fmaf(a.x, s.x, dw[m]);
            dw[m] = fmaf(a.y, s.y, dw[m]);
            dw[m] = fmaf(a.z, s.z, dw[m]);
            dw[m] = fmaf(a.w, s.w, dw[m]);
            dkg[m] = fmaf(b.x, d.x, dkg[m]);
            dkg[m] = fmaf(b.y, d.y, dkg[m]);
            dkg[m] = fmaf(b.z, d.z, dkg[m]);
            dkg[m] = fmaf(b.w, d.w, dkg[m]);
            dbg[m] = fmaf(c.x, d.x, dbg[m]);
            dbg[m] = fmaf(c.y, d.y, dbg[m]);
            dbg[m] = fmaf(c.z, d.z, dbg[m]);
            dbg[m] = fmaf(c.w, d.w, dbg[m]);
          }
        }
        if (rq == 0) {
          dcd = fmaf(s.x, d.x, dcd);
          dcd = fmaf(s.y, d.y, dcd);
          dcd = fmaf(s.z, d.z, dcd);
          dcd = fmaf(s.w, d.w, dcd);
        }
      }
      for (; j < jn; ++j) {  // the tile's last columns where V is not a multiple of 4
        const float s = St[i * LS + j], d = dSt[i * LS + j];
#pragma unroll
        for (int m = 0; m < EPT; ++m) {
          const int r = rq + RG * m;
          if (r < L) {
            dw[m] = fmaf(dvn[r * kJT + j], s, dw[m]);
            dkg[m] = fmaf(vv[r * kJT + j], d, dkg[m]);
            dbg[m] = fmaf(vn[r * kJT + j], d, dbg[m]);
          }
        }
        if (rq == 0) dcd = fmaf(s, d, dcd);
      }
    }
  }
  if (i >= K) return;
  const float2 g_end = make_float2(gh[(L - 1) * K + i], gl[(L - 1) * K + i]);
#pragma unroll
  for (int m = 0; m < EPT; ++m) {
    const int r = rq + RG * m;
    if (r >= L) continue;
    const float to_end = exp2_diff_exact_scale(g_end, make_float2(gh[r * K + i], gl[r * K + i]));
    const std::int64_t ix = tix(ch.bos + r, h, H, i, K);
    p.dw[ix] = dw[m];
    p.dk_h[ix] = dkg[m] * to_end;
    p.db_h[ix] = dbg[m] * to_end;
  }
  if (rq == 0) p.dcd[(ch.g * H + h) * K + i] = dcd * exp2_split(g_end);
}

bool aligned(const void* x, std::uintptr_t n) { return reinterpret_cast<std::uintptr_t>(x) % n == 0; }

// The alignment the tensor-core pair needs of the fp32 tensors: 16-byte copies, 8-byte stores (nullptr passes).
bool aligned_for_mma(const float* kg, const float* bg, const float* eg_last, const float* w, const float* h,
                     const float* v_new, const float* dh, const float* dv_new, const float* dw, const float* dv,
                     const GradientShares& shares, const OShareOperands& o) {
  return aligned(kg, 16) && aligned(bg, 16) && aligned(eg_last, 16) && aligned(w, 16) && aligned(h, 16) &&
         aligned(v_new, 16) && aligned(dh, 16) && aligned(dv_new, 16) && aligned(dv, 16) &&
         aligned(shares.dv_new_o, 16) && aligned(shares.dh_o, 16) && aligned(o.qg, 16) && aligned(o.A_qb, 4) &&
         aligned(dw, 8) && aligned(shares.dk_h, 8) && aligned(shares.db_h, 8);
}

}  // namespace

namespace detail::hbwd {
// Both stages on tensor cores (as chunk_o_bwd and chunk_h_bwd choose, without their refusals): the shares formed here
// are then bitwise o_bwd's, and an explicit Fma for o_bwd keeps its FMA kernel's shares.
bool forms_o_shares_on_carved(const BackwardInputs& in, int C) {
  return in.variant.o != BwdKernel::Fma && chunk_o_bwd_tensor_cores_supported(in, C) &&
         in.variant.h != BwdKernel::Fma && chunk_h_bwd_tensor_cores_supported(in, C);
}

bool forms_o_shares(const BackwardInputs& in, int C, const BackwardWorkspace& ws) {
  const ChunkWorkspace& fw = ws.forward;
  GradientShares sh = ws.shares;
  sh.dh_o = sh.dv_new_o = nullptr;
  return forms_o_shares_on_carved(in, C) &&
         o_bwd_mma_aligned(fw.A_qk, fw.A_qb, fw.gated.qg, fw.v_new, fw.h, ws.dA_qk, ws.dA_qb, ws.dv, sh) &&
         aligned_for_mma(fw.gated.kg, fw.gated.bg, fw.gated.eg_last, fw.w, fw.h, fw.v_new, ws.dh, ws.dv_new, ws.dw,
                         ws.dv, sh, OShareOperands{fw.gated.qg, fw.A_qb});
}

void o_h_bwd(const BackwardInputs& in, int C, const BackwardWorkspace& ws, float* dh0, cudaStream_t stream) {
  check_backward(in, C);  // as chunk_o_bwd and chunk_h_bwd check, before this stage's launches
  if (!forms_o_shares(in, C, ws))
    refuse("o_h_bwd: o_bwd and h_bwd do not both run on tensor cores here (forms_o_shares): call them one by one");
  const ForwardInputs& f = in.fwd;
  const ChunkWorkspace& fw = ws.forward;
  const GatedOperands& g = fw.gated;
  const GradientShares& sh = ws.shares;
  const int K = static_cast<int>(f.K), V = static_cast<int>(f.V);
  const ChunkGeom geo = chunk_geom(f, C);
  const HBwdArgs p{g.kg, g.bg, g.eg_last, fw.w, nullptr, nullptr, in.dht, ws.dh, ws.dv_new, ws.dv, dh0, geo, f.H, K,
                   V, in.d_o, g.qg, fw.A_qb, fw.A_qk};
  const HBwdChunkArgs q{f.v, f.gk, fw.h, ws.dh, fw.v_new, ws.dv_new, ws.dw, sh.dk_h, sh.db_h, sh.d_chunk_decay, geo,
                        f.H, K, V, in.d_o, ws.dA_qk, ws.dA_qb, sh.dq_o};
  launch_mma(p, q, f.dtype, f.gk_dtype, sequential_grid(f, (V + kVT - 1) / kVT), chunk_grid(f, C), stream);
}
}  // namespace detail::hbwd

// The tensor-core pair (chunk_h_bwd_mma.cu): 16-bit inputs (v exact in TF32), C = 16, K and V multiples of 4 (16-byte
// copies of the fp32 rows and tiles; K, V <= 128 by check_inputs), v, gk and do 4-byte aligned (4-byte copies).
bool chunk_h_bwd_tensor_cores_supported(const BackwardInputs& in, int C) {
  check_chunk_shape(in.fwd, C);
  const ForwardInputs& f = in.fwd;
  return C == 16 && f.dtype != ElemType::F32 && f.K % 4 == 0 && f.V % 4 == 0 && aligned(f.v, 4) &&
         aligned(f.gk, 4) && aligned(in.d_o, 4);
}

void chunk_h_bwd(const BackwardInputs& in, int C, const float* kg, const float* bg, const float* eg_last,
                 const float* w, const float* h, const float* v_new, float* dh, float* dv_new, float* dw, float* dv,
                 float* dh0, const GradientShares& shares, cudaStream_t stream, const OShareOperands& o) {
  check_backward(in, C);
  if (!kg || !bg || !eg_last || !w || !h || !v_new)
    refuse("chunk_h_bwd needs the forward's kg, bg, eg_last, w, h and v_new");
  const bool form = !shares.dh_o;
  if (!shares.dv_new_o != form)
    refuse("chunk_h_bwd needs o_bwd's shares dv_new_o and dh_o both (read) or neither (formed on its tensor-core "
           "kernels)");
  if (form && (!o.qg || !o.A_qb))
    refuse("chunk_h_bwd forms o_bwd's shares dv_new_o and dh_o (both nullptr) from qg and A_qb: OShareOperands "
           "needs both");
  if (!dh || !dv_new || !dw || !dv || !shares.dk_h || !shares.db_h || !shares.d_chunk_decay)
    refuse("chunk_h_bwd needs dh, dv_new, dw, dv (o_bwd's share in it) and the shares dk_h, db_h, d_chunk_decay");
  const ForwardInputs& f = in.fwd;
  const int K = static_cast<int>(f.K), V = static_cast<int>(f.V);
  const ChunkGeom geo = chunk_geom(f, C);
  const OShareOperands ops = form ? o : OShareOperands{};  // read only where formed
  const HBwdArgs p{kg, bg, eg_last, w, shares.dv_new_o, shares.dh_o, in.dht, dh, dv_new, dv, dh0, geo, f.H, K, V,
                   in.d_o, ops.qg, ops.A_qb, nullptr};
  const HBwdChunkArgs q{f.v, f.gk, h, dh, v_new, dv_new, dw, shares.dk_h, shares.db_h, shares.d_chunk_decay, geo, f.H, K, V,
                        nullptr, nullptr, nullptr, nullptr};
  const dim3 grid = sequential_grid(f, (V + kVT - 1) / kVT);
  // The tensor-core pair copies the fp32 tensors 16 bytes at a time and stores pairs (8 bytes); the workspace
  // (carve_backward_workspace) aligns every piece to 256 bytes. Default takes it only where the request's
  // pointers allow it; an explicit TensorCores with misaligned ones is refused.
  const bool a16 = aligned_for_mma(kg, bg, eg_last, w, h, v_new, dh, dv_new, dw, dv, shares, ops);
  const bool supported = chunk_h_bwd_tensor_cores_supported(in, C);
  if (in.variant.h == BwdKernel::TensorCores && supported && !a16)
    refuse("chunk_h_bwd's tensor-core kernels need kg, bg, eg_last, w, h, v_new, dh, dv_new, dv, dv_new_o, dh_o and "
           "qg 16-byte aligned, A_qb 4-byte and dw, dk_h, db_h 8-byte aligned (as carve_backward_workspace makes them)");
  if (use_tensor_cores(in.variant.h, supported && a16, "chunk_h_bwd")) {
    launch_mma(p, q, f.dtype, f.gk_dtype, grid, chunk_grid(f, C), stream);
    return;
  }
  if (form)
    refuse("chunk_h_bwd's FMA kernels read o_bwd's shares dv_new_o and dh_o (nullptr: formed by the tensor-core "
           "kernels only, which this request does not take; chunk_h_bwd_tensor_cores_supported)");
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto, auto, auto c) {
    constexpr int CC = decltype(c)::value;
    auto go = [&](auto km) {
      constexpr int KM = decltype(km)::value;
      constexpr std::size_t bytes = HBwdSeq<CC, KM>::bytes;
      set_smem(chunk_h_bwd_kernel<CC, KM>, bytes);
      chunk_h_bwd_kernel<CC, KM><<<grid, kThreads, bytes, stream>>>(p);
    };
    if (K <= 64) go(std::integral_constant<int, 64>{});
    else go(std::integral_constant<int, 128>{});
  });
  DPLR_LAUNCHED("chunk_h_bwd_kernel");
  dispatch_types_and_chunk(f.dtype, f.gk_dtype, C, [&](auto t, auto g, auto c) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int CC = decltype(c)::value;
    auto go = [&](auto km) {
      constexpr int KM = decltype(km)::value;
      constexpr std::size_t bytes = HBwdChunkSmem<CC, KM>::bytes;
      set_smem(chunk_h_bwd_chunk_kernel<T, G, CC, KM>, bytes);
      chunk_h_bwd_chunk_kernel<T, G, CC, KM><<<chunk_grid(f, C), 256, bytes, stream>>>(q);
    };
    if (K <= 64) go(std::integral_constant<int, 64>{});
    else go(std::integral_constant<int, 128>{});
  });
  DPLR_LAUNCHED("chunk_h_bwd_chunk_kernel");
}

}  // namespace dplr::gpu
