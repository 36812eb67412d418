// Shared device helpers for gpu/*.cu: typed loads/stores (to and from fp32) and the dtype dispatch, the chunk
// geometry, the split (hi + lo) form of fp64 cumulative sums and its exponentials, and launch checking.
// No Boost/Eigen here.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>

#include "gpu/dplr_gpu.hpp"

namespace dplr::gpu::detail {

void throw_cuda(cudaError_t err, const char* what, const char* file, int line);
#define DPLR_CUDA(call)                                                                      \
  do {                                                                                       \
    cudaError_t _e = (call);                                                                 \
    if (_e != cudaSuccess) ::dplr::gpu::detail::throw_cuda(_e, #call, __FILE__, __LINE__);   \
  } while (0)
#define DPLR_LAUNCHED(name) DPLR_CUDA(cudaGetLastError())

// Typed loads/stores: the kernels are templates over the input type T and the gk type G, so loads are plain
// (no per-element dtype branch) and the compiler can keep several in flight.
__device__ __forceinline__ float to_f(float x) { return x; }
__device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
__device__ __forceinline__ float ld(const void* p, std::int64_t i) { return to_f(static_cast<const T*>(p)[i]); }
__device__ __forceinline__ void from_f(float x, float* d) { *d = x; }
__device__ __forceinline__ void from_f(float x, __half* d) { *d = __float2half_rn(x); }
__device__ __forceinline__ void from_f(float x, __nv_bfloat16* d) { *d = __float2bfloat16_rn(x); }
template <typename T>
__device__ __forceinline__ void st(void* p, std::int64_t i, float x) { from_f(x, static_cast<T*>(p) + i); }

// Calls fn(T{}, G{}) with the C++ types of the inputs' dtype and gk's dtype (gk is that dtype or fp32).
template <typename Fn>
void dispatch_types(ElemType dt, ElemType gdt, Fn&& fn) {
  auto with_g = [&](auto t) {
    using T = decltype(t);
    if (gdt == ElemType::F32) fn(T{}, float{});
    else fn(T{}, T{});
  };
  switch (dt) {
    case ElemType::F32: with_g(float{}); break;
    case ElemType::F16: with_g(__half{}); break;
    default: with_g(__nv_bfloat16{}); break;
  }
}

// log2(e), and ln(2).
constexpr double kLog2e = 1.4426950408889634;
constexpr float kLn2f = 0.69314718055994531f;

// A cumulative sum in log2 units kept as hi + lo (hi = fp32(x), lo = fp32(x - hi)): the difference of two
// such sums is (hi_r - hi_s) + (lo_r - lo_s), accurate to fp32 relative to the difference itself, not to
// |gi| (an fp32 gi of size 1000 would otherwise cost 6e-5 in every factor).
__device__ __forceinline__ float2 split_log2(double g) {
  double x = g * kLog2e;
  float hi = static_cast<float>(x);
  return make_float2(hi, static_cast<float>(x - static_cast<double>(hi)));
}
// 2^(r - s) for two split sums; the caller guarantees r - s <= 0 in the intended domain (gk <= 0).
__device__ __forceinline__ float exp2_diff(float2 r, float2 s) {
  return exp2f((r.x - s.x) + (r.y - s.y));
}
// 2^x as one MUFU.EX2 (exp2f adds a range check and two scalings so that results below 2^-126 stay
// subnormal); results below 2^-126 flush to zero, a change below 1e-38 of a factor that is <= 1. Used for the
// in-chunk factors of stage A's inner loop only.
__device__ __forceinline__ float ex2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ float exp2_split(float2 r) { return exp2f(r.x) * (1.0f + r.y * kLn2f); }

// One chunk of one (batch row, head) in the non-varlen layout.
struct Chunk {
  std::int64_t bos;  // flat token index (b * T + t) of the chunk's first token
  int len;           // tokens in this chunk (<= C)
  std::int64_t b, c;
};
__device__ __forceinline__ Chunk chunk_of(std::int64_t b, std::int64_t c, std::int64_t T, int C) {
  Chunk ch;
  ch.b = b;
  ch.c = c;
  ch.bos = b * T + c * C;
  std::int64_t rest = T - c * C;
  ch.len = rest < C ? static_cast<int>(rest) : C;
  return ch;
}
// Flat index of element (token, head, i) of a [*, H, D] tensor.
__device__ __forceinline__ std::int64_t tix(std::int64_t tok, std::int64_t h, std::int64_t H, int i, std::int64_t D) {
  return (tok * H + h) * D + i;
}

template <typename Kernel>
void set_smem(Kernel k, std::size_t bytes) {
  if (bytes > 48 * 1024) DPLR_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace dplr::gpu::detail
