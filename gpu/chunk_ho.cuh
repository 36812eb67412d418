// The fused h+o stage's two kernels (chunk_h_o, chunk_ho.cu): the fp32 FMA kernel (chunk_ho_fma.cu) and the
// tensor-core one (chunk_ho_mma.cu). Both run one block of kThreads threads per (kVT columns of V, head, sequence)
// on the same arguments; chunk_ho.cu checks the request and picks one (HOVariant). Not part of the API.
#pragma once
#include <cstdint>

#include "gpu/common.cuh"

namespace dplr::gpu::detail::ho {

constexpr int kVT = 32, kThreads = 256;

struct HOArgs {
  const void* v;
  const float *kg, *bg, *egl, *h0, *w, *u, *qg, *Aqk, *Aqb;
  void* o;
  bool o_fp32;  // OutputMode::Fp32: o is float*, 8-byte aligned
  float* ht;
  ChunkGeom geo;
  std::int64_t H;
  int K, V;
  float *h, *vnew;  // the tensor-core kernel's states mode only (HOStates): the state before each chunk, v_new
};

// Whether the FMA kernel's shared memory holds two cp.async stages at chunk size C (16, 32, 64) and this K.
bool fma_fits(int C, std::int64_t K);
// The FMA kernel with TC (1 or 2) columns of V a thread; vec: 16-byte copies (K % 4 == 0, V a multiple of 16
// bytes of v, 16-byte aligned operands), else 4-byte ones. Needs fma_fits(C, K).
void launch_fma(const HOArgs& p, ElemType dtype, int C, int TC, bool vec, dim3 grid, cudaStream_t stream);
// The tensor-core kernel: 16-bit dtype, C = 16, K <= 128, 16-byte copies, 4-byte aligned o. states (HOStates, the
// chunk backward's recompute): h and v_new written (p.h, p.vnew, 8-byte aligned), o's products skipped.
void launch_mma(const HOArgs& p, ElemType dtype, dim3 grid, bool states, cudaStream_t stream);

}  // namespace dplr::gpu::detail::ho
