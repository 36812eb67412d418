// The CPU emulation of a CUDA launch (README.md): the blocks of the grid one after another; in a block every thread
// a coroutine on this OS thread (a 6-register x86-64 context switch, below), 256 KiB of stack each. Warps run one at a
// time from one __syncthreads to the next, a warp's lanes one at a time from one shuffle to the next; EMU_ORDER
// picks the orders: 0 ascending, 1 descending, 2 shuffled (fixed seed per block). A block whose threads do not meet
// the same barriers, or a warp whose lanes do not all reach a shuffle, aborts with a message.
#include <cassert>
#include <cstring>
#include <stdexcept>
#include "gpu/common.cuh"

extern "C" void emu_switch(void** save_sp, void* new_sp);
asm(R"(
.text
.globl emu_switch
.type emu_switch,@function
emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
)");

namespace emu {
U3 g_block_idx, g_grid_dim, g_block_dim;
U3 g_thread_idx_of[1024];
int g_cur = 0;
namespace {
constexpr std::size_t kStack = 256 * 1024;
int g_threads = 0;
void* g_sched_sp = nullptr;
std::vector<void*> g_sp;
std::vector<char> g_stacks;
std::vector<int> g_done;
std::vector<long> g_barriers;
std::vector<float> g_slots(1024);
const std::function<void()>* g_body = nullptr;
[[noreturn]] void trampoline() {
  (*g_body)();
  g_done[g_cur] = 1;
  emu_switch(&g_sp[g_cur], g_sched_sp);
  std::abort();
}
}  // namespace
std::vector<int> g_kind;  // 1: stopped at a warp sync (a shuffle), 2: at __syncthreads
void barrier() {
  ++g_barriers[g_cur];
  g_kind[g_cur] = 2;
  emu_switch(&g_sp[g_cur], g_sched_sp);
}
void warp_sync() {
  g_kind[g_cur] = 1;
  emu_switch(&g_sp[g_cur], g_sched_sp);
}
float shfl_xor(float v, int mask) {
  g_slots[g_cur] = v;
  warp_sync();
  const float r = g_slots[g_cur ^ mask];
  warp_sync();
  return r;
}
void launch(dim3 grid, unsigned threads, const std::function<void()>& body) {
  g_threads = static_cast<int>(threads);
  g_grid_dim = {grid.x, grid.y, grid.z};
  g_block_dim = {threads, 1, 1};
  g_body = &body;
  g_sp.assign(threads, nullptr);
  g_stacks.resize(threads * kStack);
  for (unsigned t = 0; t < threads; ++t) g_thread_idx_of[t] = {t, 0, 0};
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) {
        g_block_idx = {x, y, z};
        g_done.assign(threads, 0);
        g_barriers.assign(threads, 0);
        for (unsigned t = 0; t < threads; ++t) {
          char* top = g_stacks.data() + (t + 1) * kStack;
          auto sp = reinterpret_cast<std::uintptr_t>(top) & ~std::uintptr_t(15);
          sp -= 64;  // 16-aligned: 6 registers, the return address, one slot of slack
          void** frame = reinterpret_cast<void**>(sp);
          for (int i = 0; i < 6; ++i) frame[i] = nullptr;
          frame[6] = reinterpret_cast<void*>(&trampoline);
          g_sp[t] = frame;
        }
        std::vector<int> order(g_threads);
        for (int t = 0; t < g_threads; ++t) order[t] = t;
        const char* env = std::getenv("EMU_ORDER");
        const int mode = env ? std::atoi(env) : 0;
        unsigned long long rng = 0x9e3779b97f4a7c15ull ^ (x * 131 + y * 17 + z);
        g_kind.assign(threads, 0);
        const int warps = (g_threads + 31) / 32;
        std::vector<int> worder(warps), lorder(32);
        for (int w = 0; w < warps; ++w) worder[w] = w;
        for (int l = 0; l < 32; ++l) lorder[l] = l;
        auto next = [&]() { rng = rng * 6364136223846793005ull + 1442695040888963407ull; return rng >> 33; };
        for (;;) {
          if (mode == 1) { for (int w = 0; w < warps; ++w) worder[w] = warps - 1 - w; for (int l = 0; l < 32; ++l) lorder[l] = 31 - l; }
          if (mode == 2) { for (int w = warps - 1; w > 0; --w) std::swap(worder[w], worder[next() % (w + 1)]); }
          // Each warp alone from one block barrier to the next (warps interleave only at __syncthreads here); its lanes
          // from one warp sync to the next.
          for (int w : worder) {
            for (;;) {
              if (mode == 2) for (int l = 31; l > 0; --l) std::swap(lorder[l], lorder[next() % (l + 1)]);
              int at_warp = 0, live = 0;
              for (int l : lorder) {
                const int t = w * 32 + l;
                if (t >= g_threads || g_done[t]) continue;
                g_cur = t;
                g_kind[t] = 0;
                emu_switch(&g_sched_sp, g_sp[t]);
              }
              for (int l = 0; l < 32; ++l) {
                const int t = w * 32 + l;
                if (t >= g_threads || g_done[t]) continue;
                ++live;
                at_warp += g_kind[t] == 1;
              }
              if (at_warp == 0) break;
              if (at_warp != live) { std::fprintf(stderr, "EMU: warp %d: lanes at a shuffle while others are not\n", w); std::abort(); }
            }
          }
          int done = 0;
          for (int t = 0; t < g_threads; ++t) done += g_done[t];
          for (int t = 1; t < g_threads; ++t)
            if (g_barriers[t] != g_barriers[0]) { std::fprintf(stderr, "EMU: barrier count mismatch block (%u,%u,%u) thread %d: %ld vs %ld\n", x, y, z, t, g_barriers[t], g_barriers[0]); std::abort(); }
          if (done == g_threads) break;
          if (done != 0) { std::fprintf(stderr, "EMU: some threads finished while others wait at a barrier\n"); std::abort(); }
        }
      }
}
}  // namespace emu
