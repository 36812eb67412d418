// HOST EMULATION of gpu/common.cuh (scripts/cuda-emulator/README.md): g++ compiles a kernel file against this instead,
// every CUDA thread a coroutine. Only what recurrent_bwd.cu uses is here. Warps run one at a time between __syncthreads,
// lanes between shuffles (emu.cpp). Catches logic and index errors and races that depend on the order of warps.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <type_traits>
#include <vector>

#include "gpu/dplr_gpu.hpp"

#undef __global__
#undef __device__
#undef __forceinline__
#undef __launch_bounds__
#undef __shared__
#define __global__
#define __device__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

namespace emu {
struct U3 { unsigned x = 0, y = 0, z = 0; };
extern U3 g_block_idx, g_grid_dim, g_block_dim;
extern U3 g_thread_idx_of[1024];
extern int g_cur;
void barrier();
float shfl_xor(float v, int mask);
void launch(dim3 grid, unsigned threads, const std::function<void()>& body);
}  // namespace emu
#define threadIdx (::emu::g_thread_idx_of[::emu::g_cur])
#define blockIdx (::emu::g_block_idx)
#define gridDim (::emu::g_grid_dim)
#define blockDim (::emu::g_block_dim)
inline void __syncthreads() { emu::barrier(); }
inline float __shfl_xor_sync(unsigned, float v, int m) { return emu::shfl_xor(v, m); }

namespace dplr::gpu::detail {
void throw_cuda(cudaError_t err, const char* what, const char* file, int line);
#define DPLR_CUDA(call) do { (void)(call); } while (0)
#define DPLR_LAUNCHED(name) do {} while (0)
[[noreturn]] void refuse(const std::string& what);
// gpu/common.cuh's planted defects: live where the emulation is compiled with -DDPLR_PLANT_DEFECTS (run.sh's PLANT).
#ifdef DPLR_PLANT_DEFECTS
constexpr bool kPlantedBuild = true;
#else
constexpr bool kPlantedBuild = false;
#endif
inline bool planted(PlantedDefect have, PlantedDefect defect) { return kPlantedBuild && have == defect; }

inline float to_f(float x) { return x; }
inline float to_f(__half x) { return __half2float(x); }
inline float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T>
inline float ld(const void* p, std::int64_t i) { return to_f(static_cast<const T*>(p)[i]); }
inline void from_f(float x, float* d) { *d = x; }
inline void from_f(float x, __half* d) { *d = __float2half_rn(x); }
inline void from_f(float x, __nv_bfloat16* d) { *d = __float2bfloat16_rn(x); }
template <typename T>
inline void st(void* p, std::int64_t i, float x) { from_f(x, static_cast<T*>(p) + i); }

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
struct ChunkGeom {
  std::int64_t T, NT, N;
  const std::int64_t* cu_seqlens;
  const std::int32_t* chunk_offsets;
};
inline dim3 sequential_grid(const ForwardInputs& in, std::int64_t vtiles) {
  const auto h = static_cast<unsigned>(in.H), t = static_cast<unsigned>(vtiles);
  return in.cu_seqlens ? dim3(static_cast<unsigned>(in.N()), h, t) : dim3(t, h, static_cast<unsigned>(in.B));
}
inline std::int64_t sequence_of_block(const ChunkGeom& geo) { return geo.cu_seqlens ? blockIdx.x : blockIdx.z; }
inline int vtile_of_block(const ChunkGeom& geo) { return static_cast<int>(geo.cu_seqlens ? blockIdx.z : blockIdx.x); }
inline std::int64_t tix(std::int64_t tok, std::int64_t h, std::int64_t H, int i, std::int64_t D) { return (tok * H + h) * D + i; }
}  // namespace dplr::gpu::detail
