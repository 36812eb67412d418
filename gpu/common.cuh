// Shared device helpers for gpu/*.cu: typed loads/stores (to and from fp32) and the dtype dispatch, the chunk
// geometry (with and without cu_seqlens), the split (hi + lo) form of fp64 cumulative sums and its
// exponentials, and launch checking.
// No Boost/Eigen here.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <type_traits>

#include "gpu/dplr_gpu.hpp"

namespace dplr::gpu::detail {

void throw_cuda(cudaError_t err, const char* what, const char* file, int line);
#define DPLR_CUDA(call)                                                                      \
  do {                                                                                       \
    cudaError_t _e = (call);                                                                 \
    if (_e != cudaSuccess) ::dplr::gpu::detail::throw_cuda(_e, #call, __FILE__, __LINE__);   \
  } while (0)
#define DPLR_LAUNCHED(name) DPLR_CUDA(cudaGetLastError())

// Planted defects (PlantedDefect, dplr_gpu.hpp): only a -DDPLR_PLANT_DEFECTS=ON build tests them; elsewhere
// planted() is constant false and every planted branch compiles away.
#ifdef DPLR_PLANT_DEFECTS
constexpr bool kPlantedBuild = true;
#else
constexpr bool kPlantedBuild = false;
#endif
__host__ __device__ __forceinline__ bool planted(PlantedDefect have, PlantedDefect defect) {
  return kPlantedBuild && have == defect;
}

// Throws Unsupported("dplr::gpu: " + what): a request refused before anything is launched.
[[noreturn]] void refuse(const std::string& what);
// The chunk backward's choice for one stage (BackwardVariant): true to run its tensor-core kernel. Refuses an
// explicit TensorCores the stage does not support (`supported`); `stage` names it in the message.
bool use_tensor_cores(BwdKernel choice, bool supported, const char* stage);
// y[i] = x[i] rounded once to nearest in `dtype` (a copy for fp32), i < n: the chunk backward's fp32 totals to its
// outputs (chunk_backward.cu).
void round_to_dtype(ElemType dtype, const float* x, void* y, std::int64_t n, cudaStream_t stream);

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
// An element of o: rounded to T, or (the fp32-output mode, OutputMode::Fp32) the fp32 value itself. One uniform
// branch at the store; the arithmetic before it is the same in both modes.
template <typename T>
__device__ __forceinline__ void st_o(void* p, std::int64_t i, float x, bool fp32) {
  if (fp32) static_cast<float*>(p)[i] = x;
  else st<T>(p, i, x);
}

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

// Calls fn(T{}, G{}, std::integral_constant<int, C>{}) with the input types (dispatch_types) and the chunk size
// C as a constant (16, 32 or 64; check_chunk_shape refused any other).
template <typename Fn>
void dispatch_types_and_chunk(ElemType dt, ElemType gdt, int C, Fn&& fn) {
  dispatch_types(dt, gdt, [&](auto t, auto g) {
    if (C == 16) fn(t, g, std::integral_constant<int, 16>{});
    else if (C == 32) fn(t, g, std::integral_constant<int, 32>{});
    else fn(t, g, std::integral_constant<int, 64>{});
  });
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
// 2^(r - s) for two split sums to fp32 accuracy whatever the size of r - s (exp2_diff rounds the exponent to
// fp32 first, which costs |r - s| 2^-24 ln 2 relative: 1.8e-6 at one token of gk = -30). The difference of the hi
// words is formed exactly (two-sum), its nearest integer n becomes an exact scaling and exp2f sees only the
// remainder (|f| <= ~0.5). The backward stages take their decay factors from it: dgk is made of decayed terms only.
__device__ __forceinline__ float exp2_diff_exact_scale(float2 r, float2 s) {
  const float d = r.x - s.x;
  const float back = d - r.x;
  const float err = (r.x - (d - back)) + (-s.x - back);  // d + err = r.x - s.x exactly
  const float n = rintf(d);
  const float f = (d - n) + (err + (r.y - s.y));
  return ldexpf(exp2f(f), static_cast<int>(n));
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

// ---- cp.async (sm_80+): global -> shared copies that bypass registers, zero-filled where !ok --------------------
__device__ __forceinline__ void cp4(void* smem, const void* gmem, bool ok) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp8(void* smem, const void* gmem, bool ok) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 8 : 0) : "memory");
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
__device__ __forceinline__ void cp16(void* smem, const void* gmem, bool ok) {
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(ok ? 16 : 0) : "memory");
}
template <int N>
__device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory"); }

// An NS-deep ring of shared-memory stages filled by cp.async NS - 1 chunks ahead, for the kernels that walk the
// chunks c = 0 .. count - 1 of one sequence (h+o); load(c, slot) issues chunk c's copies into stage `slot`, one
// commit group a chunk (empty past the end, so that the wait counts stay fixed).
// Before the loop: chunks 0 .. NS - 2 in flight.
template <int NS, typename Load>
__device__ __forceinline__ void ring_start(std::int64_t count, Load& load) {
#pragma unroll
  for (int s = 0; s < NS - 1; ++s) {
    if (s < count) load(s, s);
    cp_commit();
  }
}
// At the top of chunk c: waits until chunk c's stage has landed for every thread (the barrier also means that chunk
// c - 1, whose slot chunk c + NS - 1 reuses, is done), then puts chunk c + NS - 1 in flight. Chunk c's stage is
// slot c % NS.
// A thread's 16-byte pieces of a chunk's C rows of KM floats (piece y = threadIdx.x + j THREADS): row r, column d
// and the offset r stride + d from the chunk's first row of head h (rows `stride` = H D elements apart), computed
// once before a chunk walk, so that a chunk's index is one multiply-add a width plus one add a piece.
template <int C, int KM, int THREADS>
struct RowPieces {
  static constexpr int N = C * KM / 4 / THREADS;
  static_assert(C * KM / 4 % THREADS == 0, "whole pieces a thread");
  int r[N], d[N];
  std::int64_t off[N];
  __device__ __forceinline__ explicit RowPieces(std::int64_t stride) {
#pragma unroll
    for (int j = 0; j < N; ++j) {
      const int y = static_cast<int>(threadIdx.x) + j * THREADS;
      r[j] = y / (KM / 4);
      d[j] = (y % (KM / 4)) * 4;
      off[j] = r[j] * stride + d[j];
    }
  }
};

// The ring slot of walk position c. In 32 bits: a walk has under 2^31 positions (a sequence of 2^31 chunks would be
// 2^35 tokens), and the 64-bit remainder costs a dozen instructions a chunk.
template <int NS>
__device__ __forceinline__ int ring_slot(std::int64_t c) { return static_cast<int>(c) % NS; }
template <int NS, typename Load>
__device__ __forceinline__ void ring_advance(std::int64_t c, std::int64_t count, Load& load) {
  cp_wait<NS - 2>();
  __syncthreads();
  const std::int64_t nc = c + NS - 1;
  if (nc < count) load(nc, ring_slot<NS>(nc));
  cp_commit();
}

// ---- Chunk geometry, with and without cu_seqlens ------------------------------------------------------------
// Without cu_seqlens batch row b is sequence n = b, with NT = ceil(T / C) chunks at global indices b NT + c.
// With cu_seqlens (B = 1) sequence n is tokens cu_seqlens[n] .. cu_seqlens[n + 1] - 1, chunked from its own
// start, its chunks at global indices chunk_offsets[n] .. chunk_offsets[n + 1] - 1 (prepare_chunk_offsets).
// Kernels take a ChunkGeom by value; without cu_seqlens no helper below reads global memory.
struct ChunkGeom {
  std::int64_t T;                      // tokens per batch row (all packed tokens with cu_seqlens)
  std::int64_t NT;                     // chunks per batch row (num_chunks; not used with cu_seqlens)
  std::int64_t N;                      // sequences
  const std::int64_t* cu_seqlens;      // nullptr: every batch row is one sequence
  const std::int32_t* chunk_offsets;   // [N + 1] with cu_seqlens
  PlantedDefect planted;               // None but in a -DDPLR_PLANT_DEFECTS=ON build
};
inline ChunkGeom chunk_geom(const ForwardInputs& in, int C) {
  return ChunkGeom{in.T, num_chunks(in, C), in.N(), in.cu_seqlens, in.chunk_offsets, in.planted};
}

// One chunk of one sequence (for every head).
struct Chunk {
  std::int64_t bos;  // flat token index of the chunk's first token
  int len;           // tokens in this chunk (<= C; 0 only for the chunk 0 of an empty sequence)
  std::int64_t n;    // sequence: h0 / ht rows n * H + h
  std::int64_t g;    // global chunk index: rows g * H + h of eg_last and h
  bool valid;        // false: a block of a per-chunk grid past the last chunk (cu_seqlens: the grid is a bound)
};
// The chunks of sequence n: the view of the sequential kernels (h, h+o), which walk c = 0 .. count - 1.
struct SeqChunks {
  std::int64_t n, bos, eos;  // tokens [bos, eos)
  std::int64_t g0, count;    // global index of its first chunk, and its number of chunks
};
__device__ __forceinline__ SeqChunks seq_chunks(const ChunkGeom& geo, std::int64_t n) {
  if (!geo.cu_seqlens) return SeqChunks{n, n * geo.T, n * geo.T + geo.T, n * geo.NT, geo.NT};
  const std::int64_t g0 = geo.chunk_offsets[n];
  const std::int64_t late = planted(geo.planted, PlantedDefect::SequenceStart) && n > 0 ? 1 : 0;
  return SeqChunks{n, geo.cu_seqlens[n] + late, geo.cu_seqlens[n + 1], g0, geo.chunk_offsets[n + 1] - g0};
}
// The chunks a sequential kernel (h, h+o) walks: all of them (the planted DropLastChunk: not a short last one).
__device__ __forceinline__ std::int64_t walked_chunks(const ChunkGeom& geo, const SeqChunks& s, int C) {
  if (planted(geo.planted, PlantedDefect::DropLastChunk) && s.count > 0 && (s.eos - s.bos) % C != 0) return s.count - 1;
  return s.count;
}
__device__ __forceinline__ Chunk chunk_in(const SeqChunks& s, std::int64_t c, int C) {
  Chunk ch;
  ch.bos = s.bos + c * C;
  const std::int64_t rest = s.eos - ch.bos;
  ch.len = rest < C ? static_cast<int>(rest) : C;
  ch.n = s.n;
  ch.g = s.g0 + c;
  ch.valid = true;
  return ch;
}
// The chunk of a block of a per-chunk (parallel) kernel, grid (chunks, H, B): x = blockIdx.x, b = blockIdx.z.
// Without cu_seqlens chunk x of batch row b; with, global chunk x, its sequence found by binary search over
// chunk_offsets (log N loads; empty sequences own no chunk). A block with !valid must return before any barrier.
__device__ __forceinline__ Chunk chunk_at(const ChunkGeom& geo, std::int64_t b, std::int64_t x, int C) {
  if (!geo.cu_seqlens) return chunk_in(seq_chunks(geo, b), x, C);
  const std::int32_t* off = geo.chunk_offsets;
  if (x >= off[geo.N]) {
    Chunk none{};
    none.valid = false;
    return none;
  }
  std::int64_t lo = 0, hi = geo.N - 1;  // the last sequence whose first chunk is <= x: off[lo] <= x < off[lo + 1]
  while (lo < hi) {
    const std::int64_t mid = (lo + hi + 1) / 2;
    if (off[mid] <= x) lo = mid;
    else hi = mid - 1;
  }
  const SeqChunks s = seq_chunks(geo, lo);
  return chunk_in(s, x - s.g0, C);
}
// The grid of the sequential kernels, one block per (V tile, head, sequence): (V tiles, H, B) without
// cu_seqlens; (N, H, V tiles) with, since N may pass grid z's 65535. sequence_of_block / vtile_of_block read it.
inline dim3 sequential_grid(const ForwardInputs& in, std::int64_t vtiles) {
  const auto h = static_cast<unsigned>(in.H), t = static_cast<unsigned>(vtiles);
  return in.cu_seqlens ? dim3(static_cast<unsigned>(in.N()), h, t) : dim3(t, h, static_cast<unsigned>(in.B));
}
__device__ __forceinline__ std::int64_t sequence_of_block(const ChunkGeom& geo) {
  return geo.cu_seqlens ? blockIdx.x : blockIdx.z;
}
__device__ __forceinline__ int vtile_of_block(const ChunkGeom& geo) {
  return static_cast<int>(geo.cu_seqlens ? blockIdx.z : blockIdx.x);
}
// The per-chunk grid: (chunks, H, B).
inline dim3 chunk_grid(const ForwardInputs& in, int C) {
  return dim3(static_cast<unsigned>(num_chunks(in, C)), static_cast<unsigned>(in.H), static_cast<unsigned>(in.B));
}
// Carves a workspace buffer into consecutive pieces, every piece 256-byte aligned (host code: the drivers' carves).
// With a null buffer it only counts (take returns nullptr), so a size and its carve can walk the same pieces.
class WorkspaceCarver {
 public:
  explicit WorkspaceCarver(float* buffer) : base_(buffer) {}
  float* take(std::int64_t floats) {
    float* piece = base_ ? base_ + used_ : nullptr;
    used_ += (floats + 63) / 64 * 64;
    return piece;
  }
  std::int64_t used() const { return used_; }  // floats taken so far, the pieces' alignment included

 private:
  float* base_;
  std::int64_t used_ = 0;
};

// check_chunk without its chunk_offsets requirement: for the calls that take the user's inputs before the
// offsets exist (workspace sizes, the drivers, chunk_fused_ho).
void check_chunk_shape(const ForwardInputs& in, int C);

// The inputs the chunk stages run on: `in` itself, or with cu_seqlens a copy pointing at `chunk_offsets`, filled
// here for chunk size C (launched on `stream` ahead of the stages). `driver` names the caller in the refusal.
ForwardInputs with_chunk_offsets(const ForwardInputs& in, int C, std::int32_t* chunk_offsets, const char* driver,
                                 cudaStream_t stream);

// Column j of (I - A)^-1 for a strictly lower triangular C x C matrix A (row stride lda; entries on and above
// the diagonal are not read), by forward substitution in registers, no barrier between rows:
// x_r = [r == j] + sum_{s < r} A[r, s] x_s, written to inv (row stride ldi). Stage WY's inverse (chunk_WY,
// chunk_A_WY), one column a thread.
template <int C>
__device__ __forceinline__ void unit_lower_inverse_column(const float* A, int lda, float* inv, int ldi, int j) {
  float x[C];
#pragma unroll
  for (int r = 0; r < C; ++r) {
    float acc = r == j ? 1.f : 0.f;
#pragma unroll
    for (int s = 0; s < r; ++s) acc = fmaf(A[r * lda + s], x[s], acc);
    x[r] = acc;
    inv[r * ldi + j] = acc;
  }
}

// Flat index of element (token, head, i) of a [*, H, D] tensor.
__device__ __forceinline__ std::int64_t tix(std::int64_t tok, std::int64_t h, std::int64_t H, int i, std::int64_t D) {
  return (tok * H + h) * D + i;
}

// The in-chunk cumulative sums of gk (stage cumsum) of one chunk and head, formed as chunk_A forms them: summed in
// fp64, one thread a column (the block's threads stride over the K columns), each split hi + lo (split_log2).
// Calls visit(r, d, sum) for r = 0 .. ch.len - 1 in order. The backward stages take their decay factors from these.
template <typename G, typename Visit>
__device__ __forceinline__ void for_chunk_log2_cumsum(const void* gk, const Chunk& ch, std::int64_t h, std::int64_t H,
                                                      int K, Visit&& visit) {
  for (int d = threadIdx.x; d < K; d += blockDim.x) {
    double acc = 0.0;
    for (int r = 0; r < ch.len; ++r) {
      acc += static_cast<double>(ld<G>(gk, tix(ch.bos + r, h, H, d, K)));
      visit(r, d, split_log2(acc));
    }
  }
}

template <typename Kernel>
void set_smem(Kernel k, std::size_t bytes) {
  if (bytes > 48 * 1024) DPLR_CUDA(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

}  // namespace dplr::gpu::detail
