// Stage "cumsum" of the chunk form (shared spec DPLR.md):
//     gi_r = sum_{s<=r} gk_s  (inclusive, inside the chunk),   ge_r = gi_r - gk_r  (exclusive)
// Summed in fp64 and rounded once to the fp32 outputs. Later stages do not read these tensors: stage A
// re-forms the same sums in fp64 from gk (split into hi + lo, common.cuh), because an fp32 gi of size |gi| loses
// |gi| * 2^-24 in every exp(gi_r - gi_s). One block per (chunk, head, batch row), one thread per column.
#include <string>

#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

template <typename G>
__global__ void chunk_cumsum_kernel(const void* gk, ChunkGeom geo, std::int64_t H, int K, int C, float* gi,
                                    float* ge) {
  const Chunk ch = chunk_at(geo, blockIdx.z, blockIdx.x, C);
  if (!ch.valid) return;
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

void chunk_cumsum(const ForwardInputs& in, int C, float* gi, float* ge, cudaStream_t stream) {
  check_chunk(in, C);
  if (!gi || !ge) refuse("chunk_cumsum needs gi and ge");
  const ChunkGeom geo = chunk_geom(in, C);
  dispatch_types(in.dtype, in.gk_dtype, [&](auto, auto g) {
    using G = decltype(g);
    chunk_cumsum_kernel<G><<<chunk_grid(in, C), 128, 0, stream>>>(in.gk, geo, in.H, static_cast<int>(in.K), C, gi, ge);
  });
  DPLR_LAUNCHED("chunk_cumsum_kernel");
}

}  // namespace dplr::gpu
