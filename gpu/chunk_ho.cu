// Stages "h" and "o" fused (chunk_h_o; the fused chunk path, chunk_forward_fused), chunk after chunk of one
// (sequence, head, 32 columns of V); S is the state before the chunk:
//     v_new = u + w S
//     o     = qg S + A_qk v + A_qb v_new                          (stage o, with S in shared memory)
//     S'    = diag(exp(gl)) S + kg^T v + bg^T v_new              (stage h)
// fp32 FMA; v_new and S' in chunk_h's order (ht is bitwise the staged ht); o sums qg S first (its reads of S
// are shared with v_new's), so it may differ from the staged o in the last bit. The state h of every chunk is
// never written (nor v_new): no 537 MB round trip of h at B8 T4096 H16 D64 C16.
// Every chunk operand (w, kg, bg, qg, u, v, A_qk, A_qb, exp(gl)) comes through an NS-deep ring of shared
// memory stages filled by cp.async NS - 1 chunks ahead (16-byte copies where K, V and the pointers allow,
// else 4-byte ones; zero-filled out of range; A always 4-byte, since above its diagonal it may hold anything).
// One block (256 threads) per (32 columns of V, head, sequence: batch row, or cu_seqlens' sequence). Needs V
// even when v is 16-bit.
#include <cstdint>
#include <string>
#include <type_traits>

#include "gpu/common.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kVT = 32, kThreads = 256;

struct HOArgs {
  const void* v;
  const float *kg, *bg, *egl, *h0, *w, *u, *qg, *Aqk, *Aqb;
  void* o;
  float* ht;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

__device__ __forceinline__ void cp4(void* smem, const void* gmem, bool ok) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp16(void* smem, const void* gmem, bool ok) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 16 : 0) : "memory");
}
template <int N>
__device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// Shared memory, in floats: NS stages of the chunk operands, then the state (double-buffered) and v_new.
template <int C, int KMAX>
struct HOLayout {
  static constexpr int W = 0, Kd = C * KMAX, Bd = 2 * C * KMAX, Qg = 3 * C * KMAX, U = 4 * C * KMAX;
  static constexpr int Vv = U + C * kVT;  // [C][kVT] of the input type (room for fp32)
  static constexpr int Aqk = Vv + C * kVT, Aqb = Aqk + C * C, E = Aqb + C * C, stage = E + KMAX;
  static constexpr int LS = kVT + 1;
  static constexpr int fixed = 2 * KMAX * LS + C * kVT;
  static constexpr std::size_t budget = (KMAX == 64 && C == 16) ? 110 * 1024 : 200 * 1024;  // 2 blocks an SM at C16 K64
  static constexpr int ns_fit = static_cast<int>((budget / 4 - fixed) / stage);
  static constexpr int NS = ns_fit > 4 ? 4 : ns_fit;
  static constexpr std::size_t bytes = (std::size_t(NS) * stage + fixed) * sizeof(float);
};

// VEC: 16-byte copies (K % 4 == 0, V a multiple of 16 bytes of v, 16-byte aligned operands): a quarter of the
// copy instructions and their index arithmetic. TC: columns a thread (1: thread (rg, cc) of 8 x 32 owns column
// cc; 2: thread (rg, cc) of 16 x 16 owns columns cc and cc + 16, so each row operand read from shared memory
// (w, qg, kg, bg, A) serves two columns: fewer shared-memory reads per FMA).
template <typename T, int C, int KMAX, bool VEC, int TC>
__global__ void __launch_bounds__(kThreads) chunk_ho_kernel(HOArgs p) {
  using L = HOLayout<C, KMAX>;
  constexpr int NS = L::NS;
  static_assert(NS >= 2, "chunk_ho: no room for two stages");
  constexpr int NCT = kVT / TC;        // column threads
  constexpr int RG = kThreads / NCT;   // row groups
  constexpr int KR = KMAX / RG;        // state rows per thread
  constexpr int CR = C / RG;           // v_new / o rows per thread
  static_assert(KR % 4 == 0 && CR >= 1, "chunk_ho: tile");
  constexpr int LS = L::LS;
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* Sb = sm + NS * L::stage;  // [2][KMAX][LS]
  float* Vn = Sb + 2 * KMAX * LS;  // [C][kVT]

  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const int c0 = vtile_of_block(p.geo) * kVT;
  const int cc = threadIdx.x % NCT, rg = threadIdx.x / NCT;
  const std::int64_t nh = seq.n * H + h;

  auto load = [&](std::int64_t c, int slot) {
    float* sg = sm + slot * L::stage;
    const Chunk ch = chunk_in(seq, c, C);
    if constexpr (VEC) {
      for (int e = threadIdx.x; e < C * KMAX / 4; e += kThreads) {
        const int r = e / (KMAX / 4), d = (e % (KMAX / 4)) * 4;
        const bool ok = r < ch.len && d < K;
        const std::int64_t ix = ok ? tix(ch.bos + r, h, H, d, K) : 0;
        cp16(sg + L::W + 4 * e, p.w + ix, ok);
        cp16(sg + L::Kd + 4 * e, p.kg + ix, ok);
        cp16(sg + L::Bd + 4 * e, p.bg + ix, ok);
        cp16(sg + L::Qg + 4 * e, p.qg + ix, ok);
      }
      for (int e = threadIdx.x; e < C * kVT / 4; e += kThreads) {
        const int r = e / (kVT / 4), cx = (e % (kVT / 4)) * 4;
        const bool ok = r < ch.len && c0 + cx < V;
        const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0;
        cp16(sg + L::U + 4 * e, p.u + ix, ok);
      }
      constexpr int EPC = 16 / sizeof(T);  // elements of v per 16-byte copy
      for (int e = threadIdx.x; e < C * kVT / EPC; e += kThreads) {
        const int r = e / (kVT / EPC), cx = (e % (kVT / EPC)) * EPC;
        const bool ok = r < ch.len && c0 + cx < V;
        const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0;
        cp16(sg + L::Vv + 4 * e, static_cast<const T*>(p.v) + ix, ok);
      }
      for (int e = threadIdx.x; e < KMAX / 4; e += kThreads) {
        const bool ok = 4 * e < K;
        cp16(sg + L::E + 4 * e, p.egl + (ok ? (ch.g * H + h) * K + 4 * e : 0), ok);
      }
    } else {
    for (int e = threadIdx.x; e < C * KMAX; e += kThreads) {
      const int r = e / KMAX, d = e % KMAX;
      const bool ok = r < ch.len && d < K;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, d, K) : 0;
      cp4(sg + L::W + e, p.w + ix, ok);
      cp4(sg + L::Kd + e, p.kg + ix, ok);
      cp4(sg + L::Bd + e, p.bg + ix, ok);
      cp4(sg + L::Qg + e, p.qg + ix, ok);
    }
    for (int e = threadIdx.x; e < C * kVT; e += kThreads) {
      const int r = e / kVT, cx = e % kVT;
      const bool ok = r < ch.len && c0 + cx < V;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0;
      cp4(sg + L::U + e, p.u + ix, ok);
    }
    constexpr int PER = 4 / sizeof(T);  // elements of v per 4-byte copy (V even when 2)
    for (int e = threadIdx.x; e < C * kVT / PER; e += kThreads) {
      const int r = e / (kVT / PER), cx = (e % (kVT / PER)) * PER;
      const bool ok = r < ch.len && c0 + cx < V;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0;
      cp4(sg + L::Vv + e, static_cast<const T*>(p.v) + ix, ok);
    }
    for (int e = threadIdx.x; e < KMAX; e += kThreads) {
      const bool ok = e < K;
      cp4(sg + L::E + e, p.egl + (ok ? (ch.g * H + h) * K + e : 0), ok);
    }
    }
    for (int e = threadIdx.x; e < C * C; e += kThreads) {
      const int r = e / C, s = e % C;
      const bool ok = r < ch.len && s <= r;
      const std::int64_t ix = ok ? ((ch.bos + r) * H + h) * C + s : 0;
      cp4(sg + L::Aqk + e, p.Aqk + ix, ok);
      cp4(sg + L::Aqb + e, p.Aqb + ix, ok);  // 4-byte: above the diagonal A may hold anything
    }
  };

  float stv[TC][KR];
#pragma unroll
  for (int t = 0; t < TC; ++t)
#pragma unroll
    for (int m = 0; m < KR; ++m) {
      const int i = rg * KR + m, col = c0 + cc + t * NCT;
      stv[t][m] = (p.h0 && i < K && col < V) ? p.h0[(nh * K + i) * V + col] : 0.f;
      Sb[i * LS + cc + t * NCT] = stv[t][m];
    }
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < seq.count) load(s, s);
    cp_commit();
  }
  for (std::int64_t c = 0; c < seq.count; ++c) {
    cp_wait<NS - 2>();
    __syncthreads();  // chunk c's stage landed for every thread; chunk c - 1 fully done
    {
      const std::int64_t nc = c + NS - 1;
      if (nc < seq.count) load(nc, static_cast<int>(nc % NS));
      cp_commit();
    }
    const Chunk ch = chunk_in(seq, c, C);
    const float* sg = sm + static_cast<int>(c % NS) * L::stage;
    const float* W = sg + L::W;
    const float* Kd = sg + L::Kd;
    const float* Bd = sg + L::Bd;
    const float* Qg = sg + L::Qg;
    const float* U = sg + L::U;
    const T* Vv = reinterpret_cast<const T*>(sg + L::Vv);
    const float* Aqk = sg + L::Aqk;
    const float* Aqb = sg + L::Aqb;
    const float* egl = sg + L::E;
    const float* S = Sb + (c & 1) * KMAX * LS;
    float* Snext = Sb + ((c + 1) & 1) * KMAX * LS;
    float acc[CR][TC];  // o: qg S first (sharing the reads of S with v_new), then A_qk v + A_qb v_new
    {  // v_new = u + w S (chunk_h's order)
      float av[CR][TC];
#pragma unroll
      for (int j = 0; j < CR; ++j)
#pragma unroll
        for (int t = 0; t < TC; ++t) {
          av[j][t] = U[(rg + j * RG) * kVT + cc + t * NCT];
          acc[j][t] = 0.f;
        }
#pragma unroll 4
      for (int i = 0; i < KMAX; i += 4) {
        float sv[TC][4];
#pragma unroll
        for (int t = 0; t < TC; ++t)
#pragma unroll
          for (int q = 0; q < 4; ++q) sv[t][q] = S[(i + q) * LS + cc + t * NCT];
#pragma unroll
        for (int j = 0; j < CR; ++j) {
          const float4 w4 = *reinterpret_cast<const float4*>(W + (rg + j * RG) * KMAX + i);
          const float4 q = *reinterpret_cast<const float4*>(Qg + (rg + RG * j) * KMAX + i);
#pragma unroll
          for (int t = 0; t < TC; ++t) {
            av[j][t] = fmaf(w4.x, sv[t][0], fmaf(w4.y, sv[t][1], fmaf(w4.z, sv[t][2], fmaf(w4.w, sv[t][3], av[j][t]))));
            acc[j][t] = fmaf(q.x, sv[t][0], fmaf(q.y, sv[t][1], fmaf(q.z, sv[t][2], fmaf(q.w, sv[t][3], acc[j][t]))));
          }
        }
      }
#pragma unroll
      for (int j = 0; j < CR; ++j)
#pragma unroll
        for (int t = 0; t < TC; ++t) Vn[(rg + j * RG) * kVT + cc + t * NCT] = av[j][t];
    }
    __syncthreads();
    {
#pragma unroll 2
      for (int s = 0; s < C; s += 4) {
        float vs[TC][4], vn[TC][4];
#pragma unroll
        for (int t = 0; t < TC; ++t)
#pragma unroll
          for (int m = 0; m < 4; ++m) {
            vs[t][m] = to_f(Vv[(s + m) * kVT + cc + t * NCT]);
            vn[t][m] = Vn[(s + m) * kVT + cc + t * NCT];
          }
#pragma unroll
        for (int j = 0; j < CR; ++j) {
          const int r = rg + RG * j;
          const float4 a = *reinterpret_cast<const float4*>(Aqk + r * C + s);
          const float4 bq = *reinterpret_cast<const float4*>(Aqb + r * C + s);
#pragma unroll
          for (int t = 0; t < TC; ++t) {
            acc[j][t] = fmaf(a.x, vs[t][0], fmaf(a.y, vs[t][1], fmaf(a.z, vs[t][2], fmaf(a.w, vs[t][3], acc[j][t]))));
            acc[j][t] = fmaf(bq.x, vn[t][0], fmaf(bq.y, vn[t][1], fmaf(bq.z, vn[t][2], fmaf(bq.w, vn[t][3], acc[j][t]))));
          }
        }
      }
#pragma unroll
      for (int t = 0; t < TC; ++t) {
        const int col = c0 + cc + t * NCT;
        if (col < V) {
#pragma unroll
          for (int j = 0; j < CR; ++j) {
            const int r = rg + RG * j;
            if (r < ch.len) st<T>(p.o, tix(ch.bos + r, h, H, col, V), acc[j][t]);
          }
        }
      }
    }
    {  // S' = diag(exp(gl)) S + kg^T v + bg^T v_new (chunk_h's order), into the other state buffer
#pragma unroll
      for (int m = 0; m < KR; ++m) {
        const float e = egl[rg * KR + m];
#pragma unroll
        for (int t = 0; t < TC; ++t) stv[t][m] *= e;
      }
#pragma unroll 2
      for (int r = 0; r < C; ++r) {
        float vv[TC], vn[TC];
#pragma unroll
        for (int t = 0; t < TC; ++t) {
          vv[t] = to_f(Vv[r * kVT + cc + t * NCT]);
          vn[t] = Vn[r * kVT + cc + t * NCT];
        }
#pragma unroll
        for (int m = 0; m < KR; m += 4) {
          const float4 k4 = *reinterpret_cast<const float4*>(Kd + r * KMAX + rg * KR + m);
          const float4 b4 = *reinterpret_cast<const float4*>(Bd + r * KMAX + rg * KR + m);
#pragma unroll
          for (int t = 0; t < TC; ++t) {
            stv[t][m] = fmaf(k4.x, vv[t], fmaf(b4.x, vn[t], stv[t][m]));
            stv[t][m + 1] = fmaf(k4.y, vv[t], fmaf(b4.y, vn[t], stv[t][m + 1]));
            stv[t][m + 2] = fmaf(k4.z, vv[t], fmaf(b4.z, vn[t], stv[t][m + 2]));
            stv[t][m + 3] = fmaf(k4.w, vv[t], fmaf(b4.w, vn[t], stv[t][m + 3]));
          }
        }
      }
#pragma unroll
      for (int t = 0; t < TC; ++t)
#pragma unroll
        for (int m = 0; m < KR; ++m) Snext[(rg * KR + m) * LS + cc + t * NCT] = stv[t][m];
    }
  }
  cp_wait<0>();
  if (p.ht)
#pragma unroll
    for (int t = 0; t < TC; ++t) {
      const int col = c0 + cc + t * NCT;
      if (col < V)
#pragma unroll
        for (int m = 0; m < KR; ++m)
          if (rg * KR + m < K) p.ht[(nh * K + rg * KR + m) * V + col] = stv[t][m];
    }
}


// ---- Tensor-core variant (16-bit inputs, C = 16, K <= 128, 16-byte copies): the same four products as
// chunk_ho_kernel on mma.sync m16n8k8 TF32 with the fp32 operands split in two (x = hi + lo, hi rounded to
// TF32, lo truncated by the tensor core, see split_tf32; "3xTF32": hi*hi + hi*lo + lo*hi, the lo*lo term below
// 2^-22 of the product dropped), products exact in fp32, fp32 accumulation. v (16-bit) is exact in TF32 (<= 11
// significant bits), so its products take 2 MMAs.
// Why: the FMA kernel delivers ~557 KB of shared memory to registers per chunk and block (1 float per FMA;
// LDS.128 broadcasts still cost 4 cycles of the 128 B/clk path), 8.7k cycles per chunk an SM = the measured
// 8.4k; the fragments here deliver each operand element to one lane once (~100 KB per chunk and block).
// Warps: phase 1, warp w: v_new (w < 4) or qg S (w >= 4) for columns 8 (w % 4) .. + 7, K in KM / 8 steps;
// phase 2: warps 4-7 add A_qk v + A_qb v_new to their qg S and store o; every warp updates TPW = KM / 32 tiles
// of 16 x 8 of the state (KM = 64: rows 16 (w / 2), columns 16 (w % 2) .. + 15; KM = 128: rows 16 w, all 32
// columns), held in registers as MMA accumulators. KM = 64 fits two blocks an SM, KM = 128 one.
template <int KMAX>
struct HOM {
  static constexpr int C = 16, KM = KMAX, KP = KM + 4, AP = C + 4, LS = kVT + 8;  // padded rows: conflict-free fragments
  static constexpr int W = 0, Kd = C * KP, Bd = 2 * C * KP, Qg = 3 * C * KP, U = 4 * C * KP;
  static constexpr int Vv = U + C * kVT, Aqk = Vv + C * kVT, Aqb = Aqk + C * AP, E = Aqb + C * AP, stage = E + KM;
  static constexpr int NS = 4;
  static constexpr int TPW = KM / 32, WPR = 128 / KM;  // state tiles a warp; warps a 16-row tile
  static constexpr std::size_t bytes = (std::size_t(NS) * stage + KM * LS + C * LS) * sizeof(float);
};
static_assert(HOM<64>::bytes <= 110 * 1024, "chunk_ho mma: two blocks an SM at K <= 64");
static_assert(HOM<128>::bytes <= 227 * 1024, "chunk_ho mma: one block an SM at K <= 128");

// Two adjacent 16-bit outputs in one 4-byte store (each rounded to nearest, as st<T>).
template <typename T>
__device__ __forceinline__ void st2(void* o, std::int64_t i, float x, float y) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *reinterpret_cast<__nv_bfloat162*>(static_cast<T*>(o) + i) = __floats2bfloat162_rn(x, y);
  else
    *reinterpret_cast<__half2*>(static_cast<T*>(o) + i) = __floats2half2_rn(x, y);
}

template <typename T, int KMAX>
__global__ void __launch_bounds__(kThreads) chunk_ho_mma_kernel(HOArgs p) {
  using L = HOM<KMAX>;
  constexpr int NS = L::NS, C = L::C, KP = L::KP, AP = L::AP, LS = L::LS, TPW = L::TPW;
  static_assert(C * L::KM / 4 % kThreads == 0 && C * C == kThreads, "chunk_ho mma: whole copies a thread");
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  float* Ss = sm + NS * L::stage;  // [KM][LS], the state before the chunk
  float* Vn = Ss + L::KM * LS;     // [C][LS]

  const std::int64_t h = blockIdx.y, H = p.H;
  const SeqChunks seq = seq_chunks(p.geo, sequence_of_block(p.geo));
  const int c0 = vtile_of_block(p.geo) * kVT;
  const std::int64_t nh = seq.n * H + h;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t = lane & 3;

  auto load = [&](std::int64_t c, int slot) {
    float* sg = sm + slot * L::stage;
    const Chunk ch = chunk_in(seq, c, C);
    const int e = threadIdx.x;
    for (int x = e; x < C * L::KM / 4; x += kThreads) {
      const int r = x / (L::KM / 4), d = (x % (L::KM / 4)) * 4;
      const bool ok = r < ch.len && d < K;
      const std::int64_t ix = ok ? tix(ch.bos + r, h, H, d, K) : 0;
      const int o = r * KP + d;
      cp16(sg + L::W + o, p.w + ix, ok);
      cp16(sg + L::Kd + o, p.kg + ix, ok);
      cp16(sg + L::Bd + o, p.bg + ix, ok);
      cp16(sg + L::Qg + o, p.qg + ix, ok);
    }
    if (e < C * kVT / 4) {
      const int r = e / (kVT / 4), cx = (e % (kVT / 4)) * 4;
      const bool ok = r < ch.len && c0 + cx < V;
      cp16(sg + L::U + 4 * e, p.u + (ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0), ok);
    }
    constexpr int EPC = 16 / sizeof(T);
    if (e < C * kVT / EPC) {
      const int r = e / (kVT / EPC), cx = (e % (kVT / EPC)) * EPC;
      const bool ok = r < ch.len && c0 + cx < V;
      cp16(sg + L::Vv + 4 * e, static_cast<const T*>(p.v) + (ok ? tix(ch.bos + r, h, H, c0 + cx, V) : 0), ok);
    }
    if (e < L::KM / 4) {
      const bool ok = 4 * e < K;
      cp16(sg + L::E + 4 * e, p.egl + (ok ? (ch.g * H + h) * K + 4 * e : 0), ok);
    }
    {
      const int r = e / C, s = e % C;
      const bool ok = r < ch.len && s <= r;
      const std::int64_t ix = ok ? ((ch.bos + r) * H + h) * C + s : 0;
      cp4(sg + L::Aqk + r * AP + s, p.Aqk + ix, ok);
      cp4(sg + L::Aqb + r * AP + s, p.Aqb + ix, ok);  // 4-byte: above the diagonal A may hold anything
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
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < seq.count) load(s, s);
    cp_commit();
  }
  const int mat = warp >> 2, nt = warp & 3;  // phase 1: v_new (mat 0) or qg S (mat 1), columns 8 nt ..
  for (std::int64_t c = 0; c < seq.count; ++c) {
    cp_wait<NS - 2>();
    __syncthreads();  // chunk c's stage landed for every thread; chunk c - 1 fully done (state written)
    {
      const std::int64_t nc = c + NS - 1;
      if (nc < seq.count) load(nc, static_cast<int>(nc % NS));
      cp_commit();
    }
    const Chunk ch = chunk_in(seq, c, C);
    const float* sg = sm + static_cast<int>(c % NS) * L::stage;
    const float* Kd = sg + L::Kd;
    const float* Bd = sg + L::Bd;
    const float* U = sg + L::U;
    const T* Vv = reinterpret_cast<const T*>(sg + L::Vv);
    const float* Aqk = sg + L::Aqk;
    const float* Aqb = sg + L::Aqb;
    const float* egl = sg + L::E;
    // Four accumulators a tile (hi*hi of even / odd k-steps, hi*lo, lo*hi): dependent MMA chains of 4 and 8, not 24.
    float acc[4], acc2[4] = {0.f, 0.f, 0.f, 0.f}, cor[4] = {0.f, 0.f, 0.f, 0.f}, cor2[4] = {0.f, 0.f, 0.f, 0.f};
    {  // phase 1: v_new = u + w S (mat 0), qg S (mat 1)
      const float* M = sg + (mat ? L::Qg : L::W);
      const int cn = 8 * nt + 2 * t;
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[q] = mat ? 0.f : U[(g + (q >= 2 ? 8 : 0)) * kVT + cn + (q & 1)];
#pragma unroll
      for (int k0 = 0; k0 < L::KM; k0 += 8) {
        unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
        split_tf32(M[g * KP + k0 + t], ah[0], al[0]);
        split_tf32(M[(g + 8) * KP + k0 + t], ah[1], al[1]);
        split_tf32(M[g * KP + k0 + t + 4], ah[2], al[2]);
        split_tf32(M[(g + 8) * KP + k0 + t + 4], ah[3], al[3]);
        split_tf32(Ss[(k0 + t) * LS + 8 * nt + g], bh0, bl0);
        split_tf32(Ss[(k0 + t + 4) * LS + 8 * nt + g], bh1, bl1);
        mma_tf32(cor, ah, bl0, bl1);
        mma_tf32(cor2, al, bh0, bh1);
        if ((k0 / 8) % 2 == 0) mma_tf32(acc, ah, bh0, bh1);
        else mma_tf32(acc2, ah, bh0, bh1);
      }
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        acc[q] = (acc[q] + acc2[q]) + (cor[q] + cor2[q]);
        acc2[q] = cor[q] = cor2[q] = 0.f;
      }
      if (mat == 0) {
        *reinterpret_cast<float2*>(Vn + g * LS + cn) = make_float2(acc[0], acc[1]);
        *reinterpret_cast<float2*>(Vn + (g + 8) * LS + cn) = make_float2(acc[2], acc[3]);
      }
    }
    __syncthreads();
    if (mat == 1) {  // o = qg S + A_qk v + A_qb v_new, columns 8 nt ..
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4];
        split_tf32(Aqk[g * AP + k0 + t], ah[0], al[0]);
        split_tf32(Aqk[(g + 8) * AP + k0 + t], ah[1], al[1]);
        split_tf32(Aqk[g * AP + k0 + t + 4], ah[2], al[2]);
        split_tf32(Aqk[(g + 8) * AP + k0 + t + 4], ah[3], al[3]);
        const unsigned b0 = __float_as_uint(to_f(Vv[(k0 + t) * kVT + 8 * nt + g]));
        const unsigned b1 = __float_as_uint(to_f(Vv[(k0 + t + 4) * kVT + 8 * nt + g]));
        mma_tf32(cor, al, b0, b1);
        mma_tf32(acc2, ah, b0, b1);
      }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4], bh0, bl0, bh1, bl1;
        split_tf32(Aqb[g * AP + k0 + t], ah[0], al[0]);
        split_tf32(Aqb[(g + 8) * AP + k0 + t], ah[1], al[1]);
        split_tf32(Aqb[g * AP + k0 + t + 4], ah[2], al[2]);
        split_tf32(Aqb[(g + 8) * AP + k0 + t + 4], ah[3], al[3]);
        split_tf32(Vn[(k0 + t) * LS + 8 * nt + g], bh0, bl0);
        split_tf32(Vn[(k0 + t + 4) * LS + 8 * nt + g], bh1, bl1);
        mma_tf32(cor2, ah, bl0, bl1);
        mma_tf32(cor, al, bh0, bh1);
        mma_tf32(acc, ah, bh0, bh1);
      }
      const int col = c0 + 8 * nt + 2 * t;
      if (col < V) {  // V even here (16-byte copies of v), so col + 1 < V too; o 4-byte aligned (checked)
#pragma unroll
        for (int q = 0; q < 4; q += 2) {
          const int r = g + (q >= 2 ? 8 : 0);
          if (r < ch.len)
            st2<T>(p.o, tix(ch.bos + r, h, H, col, V), (acc[q] + acc2[q]) + (cor[q] + cor2[q]),
                   (acc[q + 1] + acc2[q + 1]) + (cor[q + 1] + cor2[q + 1]));
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
        split_tf32(Kd[(k0 + t) * KP + 16 * mt + g], ah[0], al[0]);
        split_tf32(Kd[(k0 + t) * KP + 16 * mt + g + 8], ah[1], al[1]);
        split_tf32(Kd[(k0 + t + 4) * KP + 16 * mt + g], ah[2], al[2]);
        split_tf32(Kd[(k0 + t + 4) * KP + 16 * mt + g + 8], ah[3], al[3]);
#pragma unroll
        for (int j = 0; j < TPW; ++j) {
          const unsigned b0 = __float_as_uint(to_f(Vv[(k0 + t) * kVT + 8 * (nb0 + j) + g]));
          const unsigned b1 = __float_as_uint(to_f(Vv[(k0 + t + 4) * kVT + 8 * (nb0 + j) + g]));
          mma_tf32(cs[j], al, b0, b1);
          mma_tf32(sa[j], ah, b0, b1);
        }
      }
#pragma unroll
      for (int k0 = 0; k0 < C; k0 += 8) {
        unsigned ah[4], al[4];
        split_tf32(Bd[(k0 + t) * KP + 16 * mt + g], ah[0], al[0]);
        split_tf32(Bd[(k0 + t) * KP + 16 * mt + g + 8], ah[1], al[1]);
        split_tf32(Bd[(k0 + t + 4) * KP + 16 * mt + g], ah[2], al[2]);
        split_tf32(Bd[(k0 + t + 4) * KP + 16 * mt + g + 8], ah[3], al[3]);
#pragma unroll
        for (int j = 0; j < TPW; ++j) {
          unsigned bh0, bl0, bh1, bl1;
          split_tf32(Vn[(k0 + t) * LS + 8 * (nb0 + j) + g], bh0, bl0);
          split_tf32(Vn[(k0 + t + 4) * LS + 8 * (nb0 + j) + g], bh1, bl1);
          mma_tf32(cs2[j], ah, bl0, bl1);
          mma_tf32(cs[j], al, bh0, bh1);
          mma_tf32(hh[j], ah, bh0, bh1);
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

template <int C, int KMAX>
constexpr bool ho_fits() { return HOLayout<C, KMAX>::NS >= 2; }

template <typename T, int C, int KMAX, int TC>
void launch_ho_tc(const HOArgs& p, dim3 grid, bool vec, cudaStream_t stream) {
  constexpr std::size_t bytes = HOLayout<C, KMAX>::bytes;
  if (vec) {
    set_smem(chunk_ho_kernel<T, C, KMAX, true, TC>, bytes);
    chunk_ho_kernel<T, C, KMAX, true, TC><<<grid, kThreads, bytes, stream>>>(p);
  } else {
    set_smem(chunk_ho_kernel<T, C, KMAX, false, TC>, bytes);
    chunk_ho_kernel<T, C, KMAX, false, TC><<<grid, kThreads, bytes, stream>>>(p);
  }
}
// The kernel of a variant (chunk_h_o resolved HOVariant::Default and checked that TensorCores applies).
template <typename T, int C, int KMAX>
void launch_ho(const HOArgs& p, dim3 grid, bool vec, HOVariant variant, cudaStream_t stream) {
  if constexpr (ho_fits<C, KMAX>()) {
    static_assert(C >= 2 * kThreads / kVT, "TC = 2 needs C >= 16");
    if constexpr (C == 16 && !std::is_same_v<T, float>) {
      if (variant == HOVariant::TensorCores) {
        set_smem(chunk_ho_mma_kernel<T, KMAX>, HOM<KMAX>::bytes);
        chunk_ho_mma_kernel<T, KMAX><<<grid, kThreads, HOM<KMAX>::bytes, stream>>>(p);
        return;
      }
    }
    if (variant == HOVariant::Fma1) launch_ho_tc<T, C, KMAX, 1>(p, grid, vec, stream);
    else launch_ho_tc<T, C, KMAX, 2>(p, grid, vec, stream);
  }
}

template <int C>
bool fits_for(std::int64_t K) { return K <= 64 ? ho_fits<C, 64>() : ho_fits<C, 128>(); }

}  // namespace

bool chunk_fused_ho(const ForwardInputs& in, int C) {
  check_chunk_shape(in, C);
  if (in.dtype != ElemType::F32 && in.V % 2 != 0) return false;
  if (reinterpret_cast<std::uintptr_t>(in.v) % 4 != 0) return false;
  return C == 16 ? fits_for<16>(in.K) : C == 32 ? fits_for<32>(in.K) : fits_for<64>(in.K);
}

void chunk_h_o(const ForwardInputs& in, int C, const float* A_qk, const float* A_qb, const float* qg, const float* kg,
               const float* bg, const float* eg_last, const float* w, const float* u, void* o, float* ht,
               cudaStream_t stream) {
  check_chunk(in, C);
  if (!chunk_fused_ho(in, C))
    throw Unsupported("dplr::gpu: chunk_h_o does not take this request (V odd with 16-bit inputs, or C = " +
                      std::to_string(C) + " with K = " + std::to_string(in.K) + " does not fit two stages)");
  if (!A_qk || !A_qb || !qg || !kg || !bg || !eg_last || !w || !u || !o)
    throw Unsupported("dplr::gpu: chunk_h_o needs A_qk, A_qb, qg, kg, bg, eg_last, w, u and o");
  HOArgs p{in.v, kg, bg, eg_last, in.h0, w, u, qg, A_qk, A_qb, o, ht, chunk_geom(in, C), in.H, static_cast<int>(in.K),
           static_cast<int>(in.V)};
  const dim3 grid = sequential_grid(in, (in.V + kVT - 1) / kVT);
  auto a16 = [](const void* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; };
  const bool vec = in.K % 4 == 0 && in.V % (16 / static_cast<std::int64_t>(elem_size(in.dtype))) == 0 && a16(in.v) &&
                   a16(kg) && a16(bg) && a16(eg_last) && a16(w) && a16(u) && a16(qg);
  // The tensor-core kernel: 16-bit inputs at C = 16 with 16-byte copies and 4-byte aligned o (bf16x2 stores).
  const bool tensor_cores = C == 16 && in.dtype != ElemType::F32 && vec && reinterpret_cast<std::uintptr_t>(o) % 4 == 0;
  HOVariant variant = in.variant.ho;
  if (variant == HOVariant::Default) variant = tensor_cores ? HOVariant::TensorCores : HOVariant::Fma2;
  if (variant == HOVariant::TensorCores && !tensor_cores)
    throw Unsupported("dplr::gpu: chunk_h_o's tensor-core variant needs 16-bit inputs, C = 16, K a multiple of 4, V a "
                      "multiple of 8, 16-byte aligned v, kg, bg, eg_last, w, u, qg and 4-byte aligned o (got " +
                      std::string(elem_type_name(in.dtype)) + ", C = " + std::to_string(C) + ", K = " +
                      std::to_string(in.K) + ", V = " + std::to_string(in.V) + ")");
  dispatch_types(in.dtype, in.gk_dtype, [&](auto t, auto) {
    using T = decltype(t);
    auto go = [&](auto cst) {
      constexpr int CC = decltype(cst)::value;
      if (in.K <= 64) launch_ho<T, CC, 64>(p, grid, vec, variant, stream);
      else launch_ho<T, CC, 128>(p, grid, vec, variant, stream);
    };
    if (C == 16) go(std::integral_constant<int, 16>{});
    else if (C == 32) go(std::integral_constant<int, 32>{});
    else go(std::integral_constant<int, 64>{});
  });
  DPLR_LAUNCHED("chunk_ho_kernel");
}

}  // namespace dplr::gpu
