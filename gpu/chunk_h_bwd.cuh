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
  // Where dvnew_o and dh_o are nullptr (the tensor-core kernel only): do and the forward's qg, A_qb they are formed from;
  // Aqk (with them; nullptr: dv holds o_bwd's share A_qk^T do, read) to form dv's first share too.
  const void* d_o;
  const float *qg, *Aqb, *Aqk;
};

struct HBwdChunkArgs {  // the per-chunk kernel
  const void *v, *gk;
  const float *h, *dh, *vnew, *dvnew;
  float *dw, *dk_h, *db_h, *dcd;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
  // The tensor-core kernel only, where d_o is not nullptr: o_bwd's per-chunk products dA_qk, dA_qb, dq_o too.
  const void* d_o;
  float *dAqk, *dAqb, *dq_o;
};

// The tensor-core pair, one after the other on `stream`: 16-bit dtype, C = 16, K, V <= 128, K and V multiples of 4,
// v, gk and do 4-byte aligned and the fp32 tensors 16-byte aligned (chunk_h_bwd checks; chunk_h_bwd_tensor_cores_supported).
// The sequential kernel forms dv_new_o and dh_o itself where seq.dh_o is nullptr (then seq.dvnew_o is too).
void launch_mma(const HBwdArgs& seq, const HBwdChunkArgs& chunk, ElemType dtype, ElemType gk_dtype, dim3 seq_grid,
                dim3 chunk_grid, cudaStream_t stream);

// The driver's question (chunk_backward): whether chunk_h_bwd, called on the workspace `ws` with o_bwd's shares
// dh_o and dv_new_o nullptr and ws.forward's qg, A_qb, runs its tensor-core pair, which then forms those shares.
bool forms_o_shares(const BackwardInputs& in, int C, const BackwardWorkspace& ws);
// The same question of the request alone, for a workspace carve_backward_workspace lays out (every piece 256-byte
// aligned, so the alignment half holds): what its Driver scope sizes by.
bool forms_o_shares_on_carved(const BackwardInputs& in, int C);
// chunk_backward's o_bwd + h_bwd where forms_o_shares(in, C, ws): no o_bwd kernel; the sequential tensor-core kernel
// forms dv_new_o, dh_o and dv's first share A_qk^T do, the per-chunk one o_bwd's dA_qk, dA_qb, dq_o. Writes every
// tensor chunk_o_bwd then chunk_h_bwd write into ws (and dh0) but dv_new_o, dh_o, with the same MMAs in the same
// orders (their bits).
void o_h_bwd(const BackwardInputs& in, int C, const BackwardWorkspace& ws, float* dh0, cudaStream_t stream);

}  // namespace dplr::gpu::detail::hbwd
