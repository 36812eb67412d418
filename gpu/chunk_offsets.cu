// The chunk form's request checks (check_chunk_shape, check_chunk), its chunk count (num_chunks) and, with
// cu_seqlens, its chunk numbering on the device (prepare_chunk_offsets): chunk_offsets[0] = 0,
// chunk_offsets[n + 1] = chunk_offsets[n] + ceil(len_n / C), fla's chunk_offsets.
#include <string>

#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

// chunk_offsets[n + 1] = sum_{i <= n} ceil(len_i / C), chunk_offsets[0] = 0: one block walks the sequences in
// tiles of kScanThreads * kScanItems (each thread kScanItems consecutive ones), a block-wide scan per tile and
// the running total carried from tile to tile. One block is enough for the sequence counts of packed batches
// (a tile covers 4096 sequences).
constexpr int kScanThreads = 1024, kScanItems = 4;

__global__ void __launch_bounds__(kScanThreads)
    chunk_offsets_kernel(const std::int64_t* cu_seqlens, std::int64_t N, int C, std::int32_t* chunk_offsets) {
  __shared__ std::int32_t warp_total[kScanThreads / 32];
  __shared__ std::int32_t carry;  // chunks of all earlier tiles
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (threadIdx.x == 0) {
    chunk_offsets[0] = 0;
    carry = 0;
  }
  for (std::int64_t base = 0; base < N; base += kScanThreads * kScanItems) {
    const std::int64_t first = base + static_cast<std::int64_t>(threadIdx.x) * kScanItems;
    std::int32_t count[kScanItems], mine = 0;
#pragma unroll
    for (int i = 0; i < kScanItems; ++i) {
      const std::int64_t n = first + i;
      const std::int64_t len = n < N ? cu_seqlens[n + 1] - cu_seqlens[n] : 0;
      count[i] = len > 0 ? static_cast<std::int32_t>((len + C - 1) / C) : 0;
      mine += count[i];
    }
    std::int32_t x = mine;  // inclusive scan of the threads' totals: inside the warp, then over the warps
#pragma unroll
    for (int d = 1; d < 32; d <<= 1) {
      const std::int32_t y = __shfl_up_sync(0xffffffffu, x, d);
      if (lane >= d) x += y;
    }
    if (lane == 31) warp_total[warp] = x;
    __syncthreads();  // also publishes carry
    if (warp == 0) {
      std::int32_t w = warp_total[lane];
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const std::int32_t y = __shfl_up_sync(0xffffffffu, w, d);
        if (lane >= d) w += y;
      }
      warp_total[lane] = w;
    }
    __syncthreads();
    std::int32_t run = carry + (warp > 0 ? warp_total[warp - 1] : 0) + x - mine;
#pragma unroll
    for (int i = 0; i < kScanItems; ++i) {
      run += count[i];
      if (first + i < N) chunk_offsets[first + i + 1] = run;
    }
    __syncthreads();  // every thread has read carry and warp_total
    if (threadIdx.x == kScanThreads - 1) carry = run;
  }
}

}  // namespace

void detail::check_chunk_shape(const ForwardInputs& in, int C) {
  check_inputs(in);
  if (C != 16 && C != 32 && C != 64) refuse("chunk size must be 16, 32 or 64 (got " + std::to_string(C) + ")");
  if (num_chunks(in, C) > 2147483647 || in.H > 65535 || in.B > 65535)
    refuse("the chunk form needs B, H <= 65535 and fewer than 2^31 chunks (T / C + N with cu_seqlens)");
}

void check_chunk(const ForwardInputs& in, int C) {
  check_chunk_shape(in, C);
  if (in.cu_seqlens && (!in.chunk_offsets || in.chunk_offsets_C != C)) {
    const std::string got = !in.chunk_offsets ? "chunk_offsets is null"
                                              : "chunk_offsets_C is " + std::to_string(in.chunk_offsets_C);
    refuse("with cu_seqlens the chunk stages need in.chunk_offsets, a device int32 [N + 1] buffer filled by "
           "prepare_chunk_offsets(in, " + std::to_string(C) + ", buffer), and in.chunk_offsets_C = " + std::to_string(C) +
           " (" + got + "); chunk_forward and chunk_forward_fused fill it themselves");
  }
}

std::int64_t num_chunks(const ForwardInputs& in, int C) {
  // With cu_seqlens: sum_n ceil(len_n / C) <= sum_n (floor(len_n / C) + 1) <= T / C + N.
  return in.cu_seqlens ? in.T / C + in.N() : (in.T + C - 1) / C;
}

void prepare_chunk_offsets(const ForwardInputs& in, int C, std::int32_t* chunk_offsets, cudaStream_t stream) {
  check_chunk_shape(in, C);
  if (!in.cu_seqlens) refuse("prepare_chunk_offsets needs cu_seqlens (without it chunk c of batch row b is b * NT + c)");
  if (!chunk_offsets) refuse("prepare_chunk_offsets needs chunk_offsets, a device buffer of N + 1 int32");
  chunk_offsets_kernel<<<1, kScanThreads, 0, stream>>>(in.cu_seqlens, in.N(), C, chunk_offsets);
  DPLR_LAUNCHED("chunk_offsets_kernel");
}

}  // namespace dplr::gpu
