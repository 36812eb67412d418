// Stage "cumsum" of the chunk form (shared spec DPLR.md):
//     gi_r = sum_{s<=r} gk_s  (inclusive, inside the chunk),   ge_r = gi_r - gk_r  (exclusive)
// Summed in fp64 and rounded once to the fp32 outputs. Later stages do not read these tensors: stage A
// re-forms the same sums in fp64 from gk (split into hi + lo, common.cuh), because an fp32 gi of size |gi| loses
// |gi| * 2^-24 in every exp(gi_r - gi_s). One block per (chunk, head, batch row), one thread per column.
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

template <typename G>
__global__ void chunk_cumsum_kernel(const void* gk, std::int64_t T, std::int64_t H, int K, int C,
                                    float* gi, float* ge) {
  const Chunk ch = chunk_of(blockIdx.z, blockIdx.x, T, C);
  const std::int64_t h = blockIdx.y;
  for (int d = threadIdx.x; d < K; d += blockDim.x) {
    double acc = 0.0;
    for (int r = 0; r < ch.len; ++r) {
      const std::int64_t ix = tix(ch.bos + r, h, H, d, K);
      const double g = ld<G>(gk, ix);
      acc += g;
      gi[ix] = static_cast<float>(acc);
      ge[ix] = static_cast<float>(acc - g);
    }
  }
}

}  // namespace

void check_chunk(const ForwardInputs& in, int chunk_size) {
  check_inputs(in);
  if (chunk_size != 16 && chunk_size != 32 && chunk_size != 64)
    throw Unsupported("dplr::gpu: chunk size must be 16, 32 or 64 (got " + std::to_string(chunk_size) + ")");
  if (in.cu_seqlens) throw Unsupported("dplr::gpu: the chunk form does not take cu_seqlens yet (use fused_recurrent_forward)");
  if (num_chunks(in, chunk_size) > 2147483647 || in.H > 65535 || in.B > 65535)
    throw Unsupported("dplr::gpu: the chunk form needs B, H <= 65535");
}

std::int64_t num_chunks(const ForwardInputs& in, int chunk_size) { return (in.T + chunk_size - 1) / chunk_size; }

void chunk_cumsum(const ForwardInputs& in, int C, float* gi, float* ge, cudaStream_t stream) {
  check_chunk(in, C);
  if (!gi || !ge) throw Unsupported("dplr::gpu: chunk_cumsum needs gi and ge");
  dim3 grid(static_cast<unsigned>(num_chunks(in, C)), static_cast<unsigned>(in.H), static_cast<unsigned>(in.B));
  dispatch_types(in.dtype, in.gk_dtype, [&](auto, auto g) {
    using G = decltype(g);
    chunk_cumsum_kernel<G><<<grid, 128, 0, stream>>>(in.gk, in.T, in.H, static_cast<int>(in.K), C, gi, ge);
  });
  DPLR_LAUNCHED("chunk_cumsum_kernel");
}

}  // namespace dplr::gpu
