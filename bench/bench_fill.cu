// The GPU bench's device-side input fills (bench/bench_fill.hpp). Throws dplr::gpu::CudaError on a launch error.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>

#include "bench/bench_fill.hpp"
#include "gpu/dplr_gpu.hpp"

namespace dplr::bench {
namespace {

__device__ float hash01(unsigned long long i, unsigned seed) {
  unsigned long long x = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return ((x >> 40) + 0.5f) / 16777216.0f;
}
// kind 0: uniform [-1, 1]; 1: logsigmoid of a uniform [-4, 4].
__global__ void fill_bf16(__nv_bfloat16* p, long long n, unsigned seed, int kind) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float u = hash01(i, seed);
    float x = kind == 0 ? 2.f * u - 1.f : -log1pf(expf(-(8.f * u - 4.f)));
    p[i] = __float2bfloat16(x);
  }
}
// One row of K a thread (K <= 128): uniform values scaled to unit norm.
__global__ void fill_unit_rows(__nv_bfloat16* p, long long rows, int K, unsigned seed) {
  for (long long r = blockIdx.x * (long long)blockDim.x + threadIdx.x; r < rows; r += (long long)gridDim.x * blockDim.x) {
    float norm2 = 0.f;
    for (int i = 0; i < K; ++i) {
      const float x = 2.f * hash01(r * K + i, seed) - 1.f;
      norm2 += x * x;
    }
    const float inv = rsqrtf(norm2);
    for (int i = 0; i < K; ++i) p[r * K + i] = __float2bfloat16((2.f * hash01(r * K + i, seed) - 1.f) * inv);
  }
}
__global__ void negate(__nv_bfloat16* d, const __nv_bfloat16* s, long long n) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    d[i] = __hneg(s[i]);
}
__global__ void fill_f32(float* p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    p[i] = 2.f * hash01(i, seed) - 1.f;
}

void launched(const char* what) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    throw gpu::CudaError(std::string(what) + ": " + cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ")");
}

}  // namespace

void fill_uniform_bf16(void* p, std::int64_t n, unsigned seed) {
  fill_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed, 0);
  launched("fill_bf16 (uniform)");
}
void fill_logsigmoid_bf16(void* p, std::int64_t n, unsigned seed) {
  fill_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed, 1);
  launched("fill_bf16 (logsigmoid)");
}
void fill_unit_rows_bf16(void* p, std::int64_t rows, int K, unsigned seed) {
  fill_unit_rows<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), rows, K, seed);
  launched("fill_unit_rows");
}
void negate_bf16(void* dst, const void* src, std::int64_t n) {
  negate<<<1024, 256>>>(static_cast<__nv_bfloat16*>(dst), static_cast<const __nv_bfloat16*>(src), n);
  launched("negate");
}
void fill_uniform_f32(float* p, std::int64_t n, unsigned seed) {
  fill_f32<<<1024, 256>>>(p, n, seed);
  launched("fill_f32");
}

}  // namespace dplr::bench
