// The tensor-core kernels of the backward stages o_bwd and WY_bwd (chunk_o_bwd_mma.cu, chunk_WY_bwd_mma.cu): the
// products of the FMA kernels (chunk_o_bwd.cu, chunk_WY_bwd.cu) on mma.sync m16n8k8 TF32, fp32 operands split
// hi + lo (3xTF32, gpu/mma.cuh), 16-bit inputs exact (2 MMAs with a split operand, 1 with two exact ones). One
// block of 4 warps per (chunk, head, batch row); C = 16, so a chunk is one 16-row tile. The stage files check the
// request and pick the kernel (BackwardVariant); these launchers take what those checks passed. Not part of the API.
#pragma once
#include <cstdint>

#include "gpu/common.cuh"

namespace dplr::gpu::detail {

// What both kernels take (the stages' *_tensor_cores_supported): 16-bit inputs, C = 16, K and V multiples of 8 up
// to 128 (16-byte rows of every operand; m16n8k8 tiles with no partial k-step), v 16-byte aligned.
bool bwd_mma_shape(const ForwardInputs& f, int C);
// Whether every pointer is 16-byte aligned (the kernels' cp.async copies and paired stores).
bool all_aligned16(std::initializer_list<const void*> ptrs);

void launch_o_bwd_mma(const BackwardInputs& in, const float* A_qk, const float* A_qb, const float* qg,
                      const float* v_new, const float* h, float* dA_qk, float* dA_qb, float* dv,
                      const GradientShares& shares, cudaStream_t stream);
void launch_WY_bwd_mma(const BackwardInputs& in, const float* A_ab_inv, const float* A_ak, const float* w,
                       const float* u, const float* dw, const float* dv_new, float* dA_ab, float* dA_ak, float* dv,
                       const GradientShares& shares, cudaStream_t stream);

}  // namespace dplr::gpu::detail
