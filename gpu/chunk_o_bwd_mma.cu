// The tensor-core kernel of stage "o_bwd" (chunk_o_bwd.cu has the equations, the checks and the FMA kernel):
//     dA_qk = tril(dO v^T)      1 MMA a k-step (both 16-bit, exact in TF32)
//     dA_qb = tril(dO v_new^T)  2 (v_new split)
//     dq_o  = (dO S^T) (.) exp(gi)   2 (S split)
//     dv    = A_qk^T dO,  dv_new_o = A_qb^T dO   2 (A split)
//     dh_o  = qg^T dO            2 (qg split)
// One block of 4 warps per (chunk, head, batch row), C = 16: every operand of the chunk lands in shared memory by
// 16-byte cp.async copies (rows padded so that the fragment reads are conflict-free), then each warp runs its
// share of the tiles from registers and stores its outputs directly (float2 pairs); one barrier. Products to about
// 2^-21 relative (the split of mma.cuh), fp32 accumulation, each output summed in a fixed order.
// Warp w: dA_qk (w = 0, 1) or dA_qb (w = 2, 3) for columns 8 (w % 2) ..; the n-tiles w, w + 4, .. of dq_o (K / 8
// of them), of dv and of dv_new_o (V / 8); the jobs w, w + 4, .. of dh_o (16 rows of K x 64 columns of V each).
// dv_new_o and dh_o are skipped, their operands A_qb and qg not loaded, where they are nullptr (chunk_backward's
// path: h_bwd's sequential tensor-core kernel forms them, with these MMAs in this order).
#include <initializer_list>
#include <type_traits>

#include "gpu/chunk_bwd_mma.cuh"
#include "gpu/mma.cuh"

namespace dplr::gpu::detail {

bool bwd_mma_shape(const ForwardInputs& f, int C) {
  return C == 16 && f.dtype != ElemType::F32 && f.K % 8 == 0 && f.V % 8 == 0 && f.K <= 128 && f.V <= 128 &&
         reinterpret_cast<std::uintptr_t>(f.v) % 16 == 0 && reinterpret_cast<std::uintptr_t>(f.gk) % 16 == 0;
}
bool all_aligned16(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs)
    if (reinterpret_cast<std::uintptr_t>(p) % 16 != 0) return false;
  return true;
}

namespace {

constexpr int kC = 16, kWarps = 4, kThreads = 32 * kWarps;

// Shared memory (floats) for K, V <= DM. Row pads: 16-bit rows of TP elements (TP / 2 words = 4 mod 32) and fp32
// rows read n-major of FP floats (= 4 mod 32) give conflict-free A and n-major B fragments; fp32 rows read
// transposed or k-major of QP floats (= 8 mod 32) and A_qk, A_qb of AP = 24 give conflict-free transposed reads.
template <int DM>
struct OL {
  static constexpr int TP = DM + 8, FP = DM + 4, QP = DM + 8, AP = kC + 8;
  static constexpr int dO = 0, Vv = dO + kC * TP / 2, Vn = Vv + kC * TP / 2, S = Vn + kC * FP, Qg = S + DM * FP,
                       Aqk = Qg + kC * QP, Aqb = Aqk + kC * AP, E = Aqb + kC * AP, Gk = E + kC * QP,
                       total = Gk + kC * DM;
  static constexpr std::size_t bytes = std::size_t(total) * sizeof(float);
};
static_assert(OL<64>::bytes <= 45 * 1024, "o_bwd mma: five blocks an SM at K, V <= 64");
static_assert(OL<128>::bytes <= 113 * 1024, "o_bwd mma: two blocks an SM at K, V <= 128");

template <typename T, typename G, int DM>
__global__ void __launch_bounds__(kThreads) chunk_o_bwd_mma_kernel(OBwdArgs p) {
  using L = OL<DM>;
  constexpr int C = kC, TP = L::TP, FP = L::FP, QP = L::QP, AP = L::AP, NQ = DM / 32, EPC = 16 / sizeof(T);
  const int K = p.K, V = p.V;
  extern __shared__ __align__(16) float sm[];
  T* dOs = reinterpret_cast<T*>(sm + L::dO);  // [C][TP] do, zero past the chunk
  T* Vs = reinterpret_cast<T*>(sm + L::Vv);   // [C][TP] v
  float* Vn = sm + L::Vn;                     // [C][FP] v_new
  float* Ss = sm + L::S;                      // [K][FP] S = h of the chunk
  float* Qg = sm + L::Qg;                     // [C][QP] qg, zero in columns K .. 16 ceil(K / 16) - 1
  float* Aqk = sm + L::Aqk;                   // [C][AP], zero outside s <= r < len
  float* Aqb = sm + L::Aqb;
  float* E = sm + L::E;                       // [C][QP] exp(gi)
  G* Gs = reinterpret_cast<G*>(sm + L::Gk);   // [C][K] gk rows (not the cumulative sums: every row a lane's)

  const Chunk ch = chunk_at(p.geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
  const std::int64_t h = blockIdx.y, H = p.H;
  const int len = ch.len, e = threadIdx.x;
  const int n16 = V / EPC, n4 = V / 4, KQ = (K + 15) / 16 * 16, nk4 = KQ / 4;
  for (int x = e; x < C * n16; x += kThreads) {
    const int r = x / n16, c = (x % n16) * EPC;
    const bool ok = r < len;
    const std::int64_t ix = ok ? tix(ch.bos + r, h, H, c, V) : 0;
    cp16(dOs + r * TP + c, static_cast<const T*>(p.d_o) + ix, ok);
    cp16(Vs + r * TP + c, static_cast<const T*>(p.v) + ix, ok);
  }
  for (int x = e; x < C * n4; x += kThreads) {
    const int r = x / n4, c = (x % n4) * 4;
    const bool ok = r < len;
    cp16(Vn + r * FP + c, p.vnew + (ok ? tix(ch.bos + r, h, H, c, V) : 0), ok);
  }
  const float* S = p.h + (ch.g * H + h) * std::int64_t(K) * V;
  for (int x = e; x < K * n4; x += kThreads) {
    const int i = x / n4, c = (x % n4) * 4;
    cp16(Ss + i * FP + c, S + std::int64_t(i) * V + c, true);
  }
  const bool dvnew_o = p.dvnew_o != nullptr, dh_o = p.dh_o != nullptr;  // nullptr: not formed (qg, A_qb not read)
  if (dh_o)
    for (int x = e; x < C * nk4; x += kThreads) {
      const int r = x / nk4, c = (x % nk4) * 4;
      const bool ok = r < len && c < K;
      cp16(Qg + r * QP + c, p.qg + (ok ? tix(ch.bos + r, h, H, c, K) : 0), ok);
    }
  for (int x = e; x < C * C; x += kThreads) {
    const int r = x / C, s = x % C;
    const bool ok = r < len && s <= r;
    const std::int64_t ix = ok ? ((ch.bos + r) * H + h) * C + s : 0;
    cp4(Aqk + r * AP + s, p.Aqk + ix, ok);  // 4-byte: above the diagonal A may hold anything
    if (dvnew_o) cp4(Aqb + r * AP + s, p.Aqb + ix, ok);
  }
  stage_gk<DM>(Gs, static_cast<const G*>(p.gk), ch, h, H, K);
  cp_commit();
  cp_wait<0>();
  __syncthreads();
  // exp(gi) from the staged gk (rows < len; only those are stored), as for_chunk_log2_cumsum forms it.
  for_chunk_log2_cumsum<G>(Gs, Chunk{0, len, 0, 0, true}, 0, 1, K, [&](int r, int d, float2 gi) { E[r * QP + d] = exp2_split(gi); });
  __syncthreads();

  const int warp = e / 32, lane = e % 32, g = lane >> 2, t = lane & 3, nK = K / 8, nV = V / 8;
  // A pair of adjacent outputs (rows g and g + 8 of the tile: hr = 0, 1), the accumulators added in a fixed order.
  auto sum = [](const float (&a)[4], const float (&b)[4], int q) { return a[q] + b[q]; };

  {  // dA_qk (warps 0, 1), dA_qb (warps 2, 3): columns s = n0 .. n0 + 7, all 16 rows, k over V
    const int n0 = 8 * (warp & 1);
    float acc[4] = {0.f, 0.f, 0.f, 0.f}, cor[4] = {0.f, 0.f, 0.f, 0.f};
    if (warp >= 2) {
      for (int k0 = 0; k0 < V; k0 += 8) {
        unsigned a[4], bh0, bl0, bh1, bl1;
        load_a_exact(dOs, TP, k0, g, t, a);
        load_bt_split(Vn, FP, k0, n0, g, t, bh0, bl0, bh1, bl1);
        mma_2xtf32_exact_a(acc, cor, a, bh0, bl0, bh1, bl1);
      }
    } else {
      for (int k0 = 0; k0 < V; k0 += 8) {  // two chains: even and odd k-steps
        unsigned a[4], b0, b1;
        load_a_exact(dOs, TP, k0, g, t, a);
        load_bt_exact(Vs, TP, k0, n0, g, t, b0, b1);
        if ((k0 / 8) % 2 == 0) mma_tf32(acc, a, b0, b1);
        else mma_tf32(cor, a, b0, b1);
      }
    }
    float* out = warp >= 2 ? p.dAqb : p.dAqk;
#pragma unroll
    for (int hr = 0; hr < 2; ++hr) {
      const int r = g + 8 * hr, s = n0 + 2 * t;
      if (r < len)
        *reinterpret_cast<float2*>(out + ((ch.bos + r) * H + h) * C + s) =
            make_float2(s <= r ? sum(acc, cor, 2 * hr) : 0.f, s + 1 <= r ? sum(acc, cor, 2 * hr + 1) : 0.f);
    }
  }
  {  // dq_o = (dO S^T) (.) exp(gi): n-tiles warp + 4 j of K, k over V
    float acc[NQ][4], cor[NQ][4];
#pragma unroll
    for (int j = 0; j < NQ; ++j)
#pragma unroll
      for (int q = 0; q < 4; ++q) acc[j][q] = cor[j][q] = 0.f;
    for (int k0 = 0; k0 < V; k0 += 8) {
      unsigned a[4];
      load_a_exact(dOs, TP, k0, g, t, a);
#pragma unroll
      for (int j = 0; j < NQ; ++j)
        if (warp + 4 * j < nK) {
          unsigned bh0, bl0, bh1, bl1;
          load_bt_split(Ss, FP, k0, 8 * (warp + 4 * j), g, t, bh0, bl0, bh1, bl1);
          mma_2xtf32_exact_a(acc[j], cor[j], a, bh0, bl0, bh1, bl1);
        }
    }
#pragma unroll
    for (int j = 0; j < NQ; ++j)
      if (warp + 4 * j < nK)
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          const int r = g + 8 * hr, i = 8 * (warp + 4 * j) + 2 * t;
          if (r < len)
            *reinterpret_cast<float2*>(p.dq_o + tix(ch.bos + r, h, H, i, K)) =
                make_float2(sum(acc[j], cor[j], 2 * hr) * E[r * QP + i], sum(acc[j], cor[j], 2 * hr + 1) * E[r * QP + i + 1]);
        }
  }
#pragma unroll 1
  for (int m = 0; m < (dvnew_o ? 2 : 1); ++m) {  // dv = A_qk^T dO (m = 0), dv_new_o = A_qb^T dO (m = 1): n-tiles warp + 4 j of V
    const float* A = m ? Aqb : Aqk;
    float* out = m ? p.dvnew_o : p.dv;
    unsigned ah[2][4], al[2][4];
#pragma unroll
    for (int kk = 0; kk < 2; ++kk) load_at_split(A, AP, 8 * kk, 0, g, t, ah[kk], al[kk]);
#pragma unroll
    for (int j = 0; j < NQ; ++j) {
      const int nt = warp + 4 * j;
      if (nt < nV) {
        float acc[4] = {0.f, 0.f, 0.f, 0.f}, cor[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int kk = 0; kk < 2; ++kk) {
          unsigned b0, b1;
          load_b_exact(dOs, TP, 8 * kk, 8 * nt, g, t, b0, b1);
          mma_2xtf32(acc, cor, ah[kk], al[kk], b0, b1);
        }
#pragma unroll
        for (int hr = 0; hr < 2; ++hr) {
          const int r = g + 8 * hr;
          if (r < len)
            *reinterpret_cast<float2*>(out + tix(ch.bos + r, h, H, 8 * nt + 2 * t, V)) =
                make_float2(sum(acc, cor, 2 * hr), sum(acc, cor, 2 * hr + 1));
        }
      }
    }
  }
  if (dh_o) {  // dh_o = qg^T dO: jobs of 16 rows (key channels) x 64 columns, k over the chunk's 16 rows
    float* dS = p.dh_o + (ch.g * H + h) * std::int64_t(K) * V;
    const int nG = (V + 63) / 64, jobs = (KQ / 16) * nG;
#pragma unroll 1
    for (int job = warp; job < jobs; job += kWarps) {
      const int m0 = 16 * (job / nG), c0 = 64 * (job % nG);
      unsigned ah[2][4], al[2][4];
#pragma unroll
      for (int kk = 0; kk < 2; ++kk) load_at_split(Qg, QP, 8 * kk, m0, g, t, ah[kk], al[kk]);
      float acc[8][4], cor[8][4];
#pragma unroll
      for (int j = 0; j < 8; ++j)
#pragma unroll
        for (int q = 0; q < 4; ++q) acc[j][q] = cor[j][q] = 0.f;
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (c0 + 8 * j < V)
#pragma unroll
          for (int kk = 0; kk < 2; ++kk) {
            unsigned b0, b1;
            load_b_exact(dOs, TP, 8 * kk, c0 + 8 * j, g, t, b0, b1);
            mma_2xtf32(acc[j], cor[j], ah[kk], al[kk], b0, b1);
          }
#pragma unroll
      for (int j = 0; j < 8; ++j)
        if (c0 + 8 * j < V)
#pragma unroll
          for (int hr = 0; hr < 2; ++hr) {
            const int i = m0 + g + 8 * hr;
            if (i < K)
              *reinterpret_cast<float2*>(dS + std::int64_t(i) * V + c0 + 8 * j + 2 * t) =
                  make_float2(sum(acc[j], cor[j], 2 * hr), sum(acc[j], cor[j], 2 * hr + 1));
          }
    }
  }
}

}  // namespace

void launch_o_bwd_mma(const OBwdArgs& p, const ForwardInputs& f, cudaStream_t stream) {
  dispatch_bwd_mma(f, [&](auto t, auto g, auto dm) {
    using T = decltype(t);
    using G = decltype(g);
    constexpr int DM = decltype(dm)::value;
    set_smem(chunk_o_bwd_mma_kernel<T, G, DM>, OL<DM>::bytes);
    chunk_o_bwd_mma_kernel<T, G, DM><<<chunk_grid(f, kC), kThreads, OL<DM>::bytes, stream>>>(p);
  });
  DPLR_LAUNCHED("chunk_o_bwd_mma_kernel");
}

}  // namespace dplr::gpu::detail
