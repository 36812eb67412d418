// Host emulation of the CUDA subset gpu/*.cu uses (for run.sh): one std::thread per CUDA thread, blocks one after
// another (so a static __shared__ array is one block's), __syncthreads a std::barrier (a thread that returns drops
// out of it), dynamic shared memory one NaN-poisoned buffer a block; device pointers are host pointers. Launch
// errors and attributes (cudaGetLastError, cudaFuncSetAttribute) are no-ops; nothing checks bounds or races.
// Warp collectives (__shfl_*_sync, __syncwarp, mma.sync m16n8k8 TF32) exchange through per-warp slots between two
// waits on a per-warp std::barrier, so every lane of the warp must take part, as CUDA's full-mask forms require.
// The emulated mma reads the top 19 bits of each operand (as the tensor core does), forms the products and their
// sum with the accumulator in double and rounds once: the hardware's own order and truncation of the sum are not
// reproduced, so an mma kernel's results are close to, not bitwise, the device's.
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
#include <cstdint>
#include <cstdlib>
#include <memory>

using std::max;
using std::min;

namespace emu {
inline thread_local uint3 tIdx, bIdx;
inline dim3 bDim, gDim;
inline std::barrier<>* bar = nullptr;
inline std::vector<unsigned char> smem_buf;
inline long long launches = 0;
struct WarpSlots {
  alignas(16) unsigned char lane[32][64];
};
inline std::vector<WarpSlots> warp_slots;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_bars;
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
        const unsigned nw = (nt + 31) / 32;
        warp_slots.assign(nw, WarpSlots{});
        warp_bars.clear();
        for (unsigned w = 0; w < nw; ++w) warp_bars.emplace_back(std::make_unique<std::barrier<>>(std::min(32u, nt - 32 * w)));
        std::vector<std::thread> ts;
        ts.reserve(nt);
        for (unsigned t = 0; t < nt; ++t)
          ts.emplace_back([&, t] {
            tIdx = make_uint3(t % block.x, (t / block.x) % block.y, t / (block.x * block.y));
            bIdx = make_uint3(bx, by, bz);
            f();
            bar->arrive_and_drop();
            warp_bars[t / 32]->arrive_and_drop();
          });
        for (auto& th : ts) th.join();
      }
}
template <typename T>
T* dyn_smem() { return reinterpret_cast<T*>(smem_buf.data()); }
inline unsigned cvta(const void* p) { return static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(p)); }
inline unsigned flat_thread() { return tIdx.x + bDim.x * (tIdx.y + bDim.y * tIdx.z); }
inline void syncwarp() { warp_bars[flat_thread() / 32]->arrive_and_wait(); }
// Every lane posts x; each reads the value of lane src(lane) (its own where src is outside the segment).
template <typename T, typename Src>
T shfl_exchange(T x, Src src) {
  static_assert(sizeof(T) <= 64);
  const unsigned t = flat_thread(), w = t / 32, lane = t % 32;
  std::memcpy(warp_slots[w].lane[lane], &x, sizeof(T));
  syncwarp();
  T y;
  std::memcpy(&y, warp_slots[w].lane[src(static_cast<int>(lane))], sizeof(T));
  syncwarp();
  return y;
}
template <typename T> T shfl_xor(unsigned, T x, int m, int width = 32) {
  return shfl_exchange(x, [&](int l) { const int s = l ^ m; return (s / width == l / width) ? s : l; });
}
template <typename T> T shfl_idx(unsigned, T x, int src, int width = 32) {
  return shfl_exchange(x, [&](int l) { return (l / width) * width + (src % width); });
}
template <typename T> T shfl_up(unsigned, T x, int d, int width = 32) {
  return shfl_exchange(x, [&](int l) { return (l % width) >= d ? l - d : l; });
}
template <typename T> T shfl_down(unsigned, T x, int d, int width = 32) {
  return shfl_exchange(x, [&](int l) { return (l % width) + d < width ? l + d : l; });
}
// Whether the emulated mma models the tensor core's truncating accumulation (DPLR_EMULATE_MMA_TRUNCATE=bits, the
// significand bits kept below the largest term's leading bit; 23 is an fp32 significand, no extra bits) instead
// of an exact sum rounded once. The model is an assumption about the hardware (published measurements describe
// V100 / A100 tensor cores that align to the largest exponent and truncate), not a statement of it.
inline const int mma_alignment_bits = [] {
  const char* v = std::getenv("DPLR_EMULATE_MMA_TRUNCATE");
  return v ? std::atoi(v) : 0;
}();
inline const bool mma_truncating = mma_alignment_bits > 0;
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32, d += a b, fragments as gpu/mma.cuh documents them.
inline void mma_tf32(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
  struct Frag { unsigned a[4], b[2]; };
  const unsigned t = flat_thread(), w = t / 32, lane = t % 32;
  Frag mine{{a[0], a[1], a[2], a[3]}, {b0, b1}};
  std::memcpy(warp_slots[w].lane[lane], &mine, sizeof mine);
  syncwarp();
  Frag all[32];
  for (int l = 0; l < 32; ++l) std::memcpy(&all[l], warp_slots[w].lane[l], sizeof(Frag));
  syncwarp();
  auto tf32 = [](unsigned bits) { float f; bits &= 0xffffe000u; std::memcpy(&f, &bits, 4); return static_cast<double>(f); };
  auto A = [&](int r, int k) { return tf32(all[(r % 8) * 4 + k % 4].a[(r >= 8 ? 1 : 0) + (k >= 4 ? 2 : 0)]); };
  auto B = [&](int k, int n) { return tf32(all[n * 4 + k % 4].b[k >= 4 ? 1 : 0]); };
  const int g = static_cast<int>(lane) / 4, q = static_cast<int>(lane) % 4;
  for (int e = 0; e < 4; ++e) {
    const int r = g + (e >= 2 ? 8 : 0), n = 2 * q + (e & 1);
    if (!mma_truncating) {
      double acc = d[e];
      for (int k = 0; k < 8; ++k) acc += A(r, k) * B(k, n);
      d[e] = static_cast<float>(acc);
      continue;
    }
    // The truncating model: the 8 products (exact in double: 11 x 11 bits) and the accumulator aligned to the
    // largest exponent among them, each cut to `mma_alignment_bits` bits below that leading bit (toward zero), the
    // sum exact, the result cut to fp32 toward zero.
    double terms[9];
    terms[8] = d[e];
    for (int k = 0; k < 8; ++k) terms[k] = A(r, k) * B(k, n);
    int emax = -100000;
    for (double x : terms)
      if (x != 0) emax = std::max(emax, std::ilogb(x));
    if (emax == -100000) { d[e] = 0.f; continue; }
    const double quantum = std::ldexp(1.0, emax - mma_alignment_bits);
    double acc = 0;
    for (double x : terms) acc += std::trunc(x / quantum) * quantum;
    const float rn = static_cast<float>(acc);
    d[e] = (std::fabs(static_cast<double>(rn)) > std::fabs(acc)) ? std::nextafter(rn, 0.f) : rn;
  }
}
}  // namespace emu

// Bit casts the device code uses (device intrinsics, not declared for host code).
inline unsigned __float_as_uint(float x) { unsigned u; std::memcpy(&u, &x, 4); return u; }
inline float __uint_as_float(unsigned u) { float x; std::memcpy(&x, &u, 4); return x; }
inline int __float_as_int(float x) { int u; std::memcpy(&u, &x, 4); return u; }
inline float __int_as_float(int u) { float x; std::memcpy(&x, &u, 4); return x; }

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
#define __shfl_up_sync(...) ::emu::shfl_up(__VA_ARGS__)
#define __shfl_down_sync(...) ::emu::shfl_down(__VA_ARGS__)
#define __shfl_xor_sync(...) ::emu::shfl_xor(__VA_ARGS__)
#define __shfl_sync(...) ::emu::shfl_idx(__VA_ARGS__)
#define __syncwarp(...) ::emu::syncwarp()
#define cudaFuncSetAttribute(...) cudaSuccess
#define cudaGetLastError() cudaSuccess
