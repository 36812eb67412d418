// Stage h_bwd's two pairs of kernels (chunk_h_bwd, chunk_h_bwd.cu): the fp32 FMA pair (chunk_h_bwd.cu, any dtype and
// chunk size) and the tensor-core pair (chunk_h_bwd_mma.cu; 16-bit inputs, C = 16). Both pairs take the same
// arguments: a sequential kernel over a sequence's chunks from the last, one block of kThreads threads per (kVT
// columns of V, head, sequence), and a per-chunk kernel, grid (chunks, H, B). chunk_h_bwd.cu checks the request and
// picks the pair (BackwardVariant::h). Not part of the API.
#pragma once
#include <cstdint>

#include "gpu/common.cuh"

namespace dplr::gpu::detail::hbwd {

constexpr int kVT = 32, kThreads = 256;

struct HBwdArgs {  // the sequential kernel
  const float *kg, *bg, *egl, *w, *dvnew_o, *dh_o, *dht;
  float *dh, *dvnew, *dv, *dh0;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

struct HBwdChunkArgs {  // the per-chunk kernel
  const void *v, *gk;
  const float *h, *dh, *vnew, *dvnew;
  float *dw, *dk_h, *db_h, *dcd;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
};

// The tensor-core pair, one after the other on `stream`: 16-bit dtype, C = 16, K, V <= 128, K and V multiples of 4,
// v and gk 4-byte aligned and the fp32 tensors 16-byte aligned (chunk_h_bwd checks; chunk_h_bwd_tensor_cores_supported).
void launch_mma(const HBwdArgs& seq, const HBwdChunkArgs& chunk, ElemType dtype, ElemType gk_dtype, dim3 seq_grid,
                dim3 chunk_grid, cudaStream_t stream);

}  // namespace dplr::gpu::detail::hbwd
