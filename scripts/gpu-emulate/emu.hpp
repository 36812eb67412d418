// Host emulation of the CUDA subset gpu/*.cu uses (for run.sh): one std::thread per CUDA thread, blocks one after
// another (so a static __shared__ array is one block's), __syncthreads a std::barrier (a thread that returns drops
// out of it), dynamic shared memory one NaN-poisoned buffer a block; device pointers are host pointers. Launch
// errors and attributes (cudaGetLastError, cudaFuncSetAttribute) are no-ops; nothing checks bounds or races.
#pragma once
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#include <barrier>
#include <cmath>
#include <cstring>
#include <thread>
#include <vector>
#include <algorithm>
#include <cstdio>

using std::max;
using std::min;

namespace emu {
inline thread_local uint3 tIdx, bIdx;
inline dim3 bDim, gDim;
inline std::barrier<>* bar = nullptr;
inline std::vector<unsigned char> smem_buf;
inline long long launches = 0;
// Bytes past the end of every emulated allocation: none under a sanitizer, so that it sees an overrun.
#ifdef DPLR_EMULATE_EXACT_BUFFERS
inline constexpr std::size_t kSlack = 0;
#else
inline constexpr std::size_t kSlack = 16;
#endif
template <typename F>
void launch(F&& f, dim3 grid, dim3 block, std::size_t smem = 0, cudaStream_t = 0) {
  ++launches;
  bDim = block;
  gDim = grid;
  const unsigned nt = block.x * block.y * block.z;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        smem_buf.assign(smem + kSlack, 0xff);  // NaN-poisoned, as uninitialised shared memory may be anything
        std::barrier<> b(nt);
        bar = &b;
        std::vector<std::thread> ts;
        ts.reserve(nt);
        for (unsigned t = 0; t < nt; ++t)
          ts.emplace_back([&, t] {
            tIdx = make_uint3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            bIdx = make_uint3(bx, by, bz);
            f();
            bar->arrive_and_drop();
          });
        for (auto& th : ts) th.join();
      }
}
template <typename T>
T* dyn_smem() { return reinterpret_cast<T*>(smem_buf.data()); }
inline unsigned cvta(const void* p) { return static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(p)); }
template <typename T> T shfl_dummy(unsigned, T x, int) { return x; }
}  // namespace emu

#undef __device__
#undef __global__
#undef __forceinline__
#define __device__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define threadIdx ::emu::tIdx
#define blockIdx ::emu::bIdx
#define blockDim ::emu::bDim
#define gridDim ::emu::gDim
#define __syncthreads() ::emu::bar->arrive_and_wait()
#define __cvta_generic_to_shared(p) ::emu::cvta(p)
#define __shfl_up_sync(m, x, d) ::emu::shfl_dummy(m, x, d)
#define cudaFuncSetAttribute(...) cudaSuccess
#define cudaGetLastError() cudaSuccess
