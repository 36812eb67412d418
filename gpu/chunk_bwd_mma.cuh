// The tensor-core kernels of the backward stages o_bwd and WY_bwd (chunk_o_bwd_mma.cu, chunk_WY_bwd_mma.cu): the
// products of the FMA kernels (chunk_o_bwd.cu, chunk_WY_bwd.cu) on mma.sync m16n8k8 TF32, fp32 operands split
// hi + lo (3xTF32, gpu/mma.cuh), 16-bit inputs exact (2 MMAs with a split operand, 1 with two exact ones). One
// block of 4 warps per (chunk, head, batch row); C = 16, so a chunk is one 16-row tile. The stage files check the
// request and pick the kernel (BackwardVariant); these launchers take what those checks passed. Not part of the API.
#pragma once
#include <cstdint>
#include <type_traits>

#include "gpu/common.cuh"

namespace dplr::gpu::detail {

// What both kernels take (the stages' *_tensor_cores_supported): 16-bit inputs, C = 16, K and V multiples of 8 up
// to 128 (16-byte rows of every operand; m16n8k8 tiles with no partial k-step), v and gk 16-byte aligned.
bool bwd_mma_shape(const ForwardInputs& f, int C);
// Whether every pointer is 16-byte aligned (the kernels' cp.async copies and paired stores).
bool all_aligned16(std::initializer_list<const void*> ptrs);

// The chunk's rows of gk (G: fp32 or the 16-bit dtype; K * sizeof(G) a multiple of 16) into shared memory [len][K]
// by cp.async (the caller commits and waits): the in-chunk cumulative sums are then formed from shared memory
// (for_chunk_log2_cumsum on a chunk at bos 0 of a one-head tensor), not by one dependent global load a row.
// DM (>= K): the kernel's bound on K, so that a thread's pieces split by shifts, not by a runtime division; C: the
// chunk size (rows).
template <int DM, typename G, int C = 16>
__device__ __forceinline__ void stage_gk(G* gs, const G* gk, const Chunk& ch, std::int64_t h, std::int64_t H, int K) {
  constexpr int EPC = 16 / sizeof(G), PR = DM / EPC;  // 16-byte pieces a row (at K = DM)
  const std::int64_t row = ch.bos * H + h;
  for (int x = threadIdx.x; x < C * PR; x += blockDim.x) {
    const int r = x / PR, c = (x % PR) * EPC;
    if (r < ch.len && c < K) cp16(gs + r * K + c, gk + (row + r * H) * K + c, true);
  }
}

// The stages' kernel arguments, one struct a stage for both of its kernels (FMA and tensor cores).
struct OBwdArgs {
  const void *d_o, *v, *gk;
  const float *Aqk, *Aqb, *qg, *vnew, *h;
  float *dAqk, *dAqb, *dv, *dq_o, *dvnew_o, *dh_o;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};
struct WYBwdArgs {
  const void *v, *gk;
  const float *Ainv, *Aak, *w, *u, *dw, *du;
  const float* dv;    // the shares of o_bwd and h_bwd
  float *dAab, *dAak, *da_wy;
  float* dv_total;    // dv + A_ak^T du^ in fp32 (chunk_WY_bwd: dv itself, in place), or nullptr
  void* dv_rounded;   // or that total rounded once to the inputs' dtype (chunk_WY_bwd_rounding_dv)
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};
// chunk_WY_bwd for the driver: WY_bwd is dv's last writer, so dv's fp32 total (the sum chunk_WY_bwd forms) is
// rounded once to the inputs' dtype and written to dv_rounded (chunk_backward's out.dv, [B, T, H, V]); the fp32
// dv keeps the o_bwd + h_bwd shares. Bitwise the round_to_dtype of chunk_WY_bwd's dv.
void chunk_WY_bwd_rounding_dv(const BackwardInputs& in, int C, const float* A_ab_inv, const float* A_ak, const float* w,
                              const float* u, const float* dw, const float* dv_new, float* dA_ab, float* dA_ak,
                              const float* dv, void* dv_rounded, const GradientShares& shares, cudaStream_t stream);

// Calls launch(T, G, DM) for the 16-bit input types (T, and G the gk type) with DM = 64 where K and V are <= 64,
// else 128: the instantiations both tensor-core launchers take.
template <typename F>
void dispatch_bwd_mma(const ForwardInputs& f, F&& launch) {
  dispatch_types(f.dtype, f.gk_dtype, [&](auto t, auto g) {
    if constexpr (!std::is_same_v<decltype(t), float>) {
      if (f.K <= 64 && f.V <= 64) launch(t, g, std::integral_constant<int, 64>{});
      else launch(t, g, std::integral_constant<int, 128>{});
    }
  });
}

// Whether chunk_o_bwd's operands are aligned for its tensor-core kernel (16-byte copies; nullptr shares pass).
bool o_bwd_mma_aligned(const float* A_qk, const float* A_qb, const float* qg, const float* v_new, const float* h,
                       const float* dA_qk, const float* dA_qb, const float* dv, const GradientShares& shares);

void launch_o_bwd_mma(const OBwdArgs& p, const ForwardInputs& f, cudaStream_t stream);
void launch_WY_bwd_mma(const WYBwdArgs& p, const ForwardInputs& f, cudaStream_t stream);

}  // namespace dplr::gpu::detail
