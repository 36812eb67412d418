// The fp32 FMA kernel of stages "h" and "o" fused (chunk_h_o, chunk_ho.cu), chunk after chunk of one
// (sequence, head, 32 columns of V); S is the state before the chunk:
//     v_new = u + w S
//     o     = qg S + A_qk v + A_qb v_new                          (stage o, with S in shared memory)
//     S'    = diag(exp(gl)) S + kg^T v + bg^T v_new              (stage h)
// fp32 FMA; v_new and S' in chunk_h's summation order; o sums qg S first (its reads of S
// are shared with v_new's), so it may differ from the staged o in the last bit. The state h of every chunk is
// never written (nor v_new): no 537 MB round trip of h at B8 T4096 H16 D64 C16.
// Every chunk operand (w, kg, bg, qg, u, v, A_qk, A_qb, exp(gl)) comes through an NS-deep ring of shared
// memory stages filled by cp.async NS - 1 chunks ahead (16-byte copies where K, V and the pointers allow,
// else 4-byte ones; zero-filled out of range; A always 4-byte, since above its diagonal it may hold anything).
// One block (256 threads) per (32 columns of V, head, sequence: batch row, or cu_seqlens' sequence). Needs V
// even when v is 16-bit.
#include <cstdint>
#include <type_traits>

#include "gpu/chunk_ho.cuh"

namespace dplr::gpu::detail::ho {

// Shared memory, in floats: NS stages of the chunk operands, then the state (double-buffered) and v_new.
// Outside the unnamed namespace below: there nvcc reports every offset a kernel does not use (#177-D).
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

namespace {

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
  const std::int64_t count = walked_chunks(p.geo, seq, C);
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
  ring_start<NS>(count, load);
  for (std::int64_t c = 0; c < count; ++c) {
    ring_advance<NS>(c, count, load);  // chunk c's stage landed; chunk c - 1 fully done
    const Chunk ch = chunk_in(seq, c, C);
    const float* sg = sm + ring_slot<NS>(c) * L::stage;
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
    if (!planted(p.geo.planted, PlantedDefect::MissingBarrier)) __syncthreads();
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
            if (r < ch.len) st_o<T>(p.o, tix(ch.bos + r, h, H, col, V), acc[j][t], p.o_fp32);
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

// Calls fn(std::integral_constant<int, KMAX>{}) with the kernel's K capacity, 64 or 128.
template <typename Fn>
void with_kmax(std::int64_t K, Fn&& fn) {
  if (K <= 64) fn(std::integral_constant<int, 64>{});
  else fn(std::integral_constant<int, 128>{});
}

}  // namespace

bool fma_fits(int C, std::int64_t K) {
  bool fits = false;
  dispatch_types_and_chunk(ElemType::F32, ElemType::F32, C, [&](auto, auto, auto c) {
    with_kmax(K, [&](auto km) { fits = ho_fits<decltype(c)::value, decltype(km)::value>(); });
  });
  return fits;
}

void launch_fma(const HOArgs& p, ElemType dtype, int C, int TC, bool vec, dim3 grid, cudaStream_t stream) {
  dispatch_types_and_chunk(dtype, dtype, C, [&](auto t, auto, auto c) {
    using T = decltype(t);
    constexpr int CC = decltype(c)::value;
    with_kmax(p.K, [&](auto km) {
      constexpr int KMAX = decltype(km)::value;
      if constexpr (ho_fits<CC, KMAX>()) {
        static_assert(CC >= 2 * kThreads / kVT, "TC = 2 needs C >= 16");
        if (TC == 1) launch_ho_tc<T, CC, KMAX, 1>(p, grid, vec, stream);
        else launch_ho_tc<T, CC, KMAX, 2>(p, grid, vec, stream);
      }
    });
  });
}

}  // namespace dplr::gpu::detail::ho
