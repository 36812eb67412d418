// Fused recurrent backward of the DPLR delta rule (shared spec DPLR.md, "The backward recurrence"); fla has
// none. It mirrors reference/recurrent_impl.hpp (run_pair's backward) step for step:
//     G_T = dht;  for t = T..1:  G_t += scale q_t do_t^T;  dq_t = scale S_t do_t;  dk_t = G_t v_t;
//     dv_t = G_t^T k_t;  db_t = G_t x_t;  y_t = G_t^T b_t;  da_t = S_{t-1} y_t;
//     dgk_t = exp(gk_t) (.) rowsum(G_t (.) S_{t-1});  G_{t-1} = D_t G_t + a_t y_t^T;  dh0 = G_0
// with x_t = S_{t-1}^T a_t.
//
// Layout. Column j of S and column j of G each evolve alone (x_j, y_j and both updates read only column j), so a
// block owns kCols = 64 columns of one (sequence, head): 8 warps x 8 columns, 4 lanes a column, lane ks holding rows
// i = 4 r + ks (r < R), S and G in registers, fp32. The K-vector gradients (dq, dk, db, da, dgk) are sums over all
// V columns: a fixed reduce-scatter tree over the warp's 8 columns (shuffles 4, 2, 1; each lane ends with an eighth
// of the sums), then the 8 warps through shared memory summed in warp order, then (V > 64 only) the V tiles'
// partials summed in tile order by a second kernel. dv, x and y are sums over K: shuffles 8, 16 inside the column's
// 4 lanes. No atomics: every sum has one fixed order, so a run gives the same bits as the last.
//
// S_{t-1} is needed at every step in reverse. Dividing by exp(gk) would be unstable (exp(-30) = 9e-14), so the
// states are recomputed: a forward pass keeps the state every P = kRecurrentBackwardCheckpointInterval tokens
// (workspace "checkpoints"); then, segment by segment from the last, the segment's P states are recomputed from
// its checkpoint into global scratch (each thread writes and later reads only its own elements, so no barrier
// guards them), and the reverse recurrence walks the segment, carrying S_t in registers (S_t of a segment's last
// step is S_{first} of the next segment, the last state it read). Tokens are staged through shared memory one a
// step, double-buffered: one barrier a forward step, two a reverse step (the cross-warp sum). gpu/NOTES.md has the
// workspace sizes and how this was checked (scripts/cuda-emulator).
#include <cstdint>

#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

constexpr int kCols = 64;                   // columns of S per block
constexpr int kWarps = kCols / 8;           // 8 columns a warp
constexpr int kThreads = kWarps * 32;       // 256
constexpr int kP = kRecurrentBackwardCheckpointInterval;
constexpr int kGradsK = 5;                  // dq, dk, db, da, dgk: the per-token K-vector gradients
enum GradK { kDq = 0, kDk = 1, kDb = 2, kDa = 3, kDgk = 4 };

struct BwdArgs {
  const void *q, *k, *v, *a, *b, *gk, *grad_o;
  const float *h0, *dht;
  const std::int64_t* cu;
  void *dq, *dk, *dv, *da, *db;
  float *dgk, *dh0;
  float* checkpoints;  // [slots][H][vtiles][R * kThreads]
  float* scratch;      // [scratch slots][H][vtiles][R * kThreads]
  float* partials;     // [vtiles][kGradsK][B * T * H * K], V tiles > 1 only; nullptr: the block stores the result
  std::int64_t T, H, total_tokens;
  int K, V, vtiles;
  std::int64_t segment_capacity;  // min(P, T): scratch states a block needs
  bool scratch_by_token;          // scratch slot base: the sequence's first token (varlen) or n * segment_capacity
  float scale;
  bool reverse;
  PlantedDefect planted;  // None but in a -DDPLR_PLANT_DEFECTS=ON build
};

// The per-token values a step reads, staged in shared memory: a, k, b, exp(gk), scale q (K of them) and the
// block's columns of v and do.
template <int KP>
struct TokenStage {
  float a[KP], k[KP], b[KP], decay[KP], sq[KP];
  float v[kCols], grad_o[kCols];
};

// Every thread loads its share of one token's values into registers (fetch), then stores them into a stage
// (stash); a barrier between stash and the reads. q and do are loaded only for the reverse steps.
template <typename T, typename G, int KP>
struct TokenLoader {
  static constexpr int kElems = 5 * KP + 2 * kCols;
  static constexpr int kPerThread = (kElems + kThreads - 1) / kThreads;
  float reg[kPerThread];

  __device__ __forceinline__ void fetch(const BwdArgs& p, std::int64_t token, std::int64_t h, int col0, bool with_grads) {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int e = threadIdx.x + j * kThreads;
      float x = 0.f;
      if (e < 5 * KP) {
        const int which = e / KP, i = e % KP;
        if (i < p.K && (which < 4 || with_grads)) {
          const std::int64_t ix = tix(token, h, p.H, i, p.K);
          const void* src = which == 0 ? p.a : which == 1 ? p.k : which == 2 ? p.b : which == 3 ? p.gk : p.q;
          x = which == 3 ? ld<G>(src, ix) : ld<T>(src, ix);
        }
      } else if (e < kElems) {
        const int which = (e - 5 * KP) / kCols, c = col0 + (e - 5 * KP) % kCols;
        if (c < p.V && (which == 0 || with_grads)) x = ld<T>(which == 0 ? p.v : p.grad_o, tix(token, h, p.H, c, p.V));
      }
      reg[j] = x;
    }
  }
  __device__ __forceinline__ void stash(const BwdArgs& p, TokenStage<KP>& s) const {
    float* flat = reinterpret_cast<float*>(&s);  // a, k, b, decay, sq, v, grad_o: contiguous floats
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) {
      const int e = threadIdx.x + j * kThreads;
      if (e >= kElems) continue;
      float x = reg[j];
      if (e >= 3 * KP && e < 4 * KP) x = expf(x);        // gk -> exp(gk): <= 1 for gk <= 0, never divided by
      else if (e >= 4 * KP && e < 5 * KP) x *= p.scale;  // q -> scale q
      flat[e] = x;
    }
  }
};

// Sum over the 4 row lanes of a column (lanes xor 8, 16): every lane of the column gets it.
__device__ __forceinline__ float column_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 8);
  x += __shfl_xor_sync(0xffffffffu, x, 16);
  return x;
}
// One halving step of a reduce-scatter over lanes xor `mask`: the lane with `upper` set keeps (and sums into
// v[0, Half)) the upper half v[Half, 2 Half), its partner the lower half; each sends the half it gives up.
template <int Half, int N>
__device__ __forceinline__ void reduce_scatter_step(float (&v)[N], bool upper, int mask) {
#pragma unroll
  for (int j = 0; j < Half; ++j) {
    const float give = upper ? v[j] : v[j + Half], keep = upper ? v[j + Half] : v[j];
    v[j] = keep + __shfl_xor_sync(0xffffffffu, give, mask);
  }
}
// Sums N values over the warp's 8 column lanes (c = lane & 7; lanes xor 4, 2, 1), each lane ending with N / 8 of the
// sums: v[j] = the sum of element b2 N/2 + b1 N/4 + b0 N/8 + j (bits b2 b1 b0 of c). 7N/8 shuffles instead of 3N for
// every lane summing every element; a fixed tree, so the same bits every run.
template <int N>
__device__ __forceinline__ void columns_reduce_scatter(float (&v)[N], int c) {
  static_assert(N % 8 == 0, "8 lanes share the sums");
  reduce_scatter_step<N / 2>(v, (c >> 2) & 1, 4);
  reduce_scatter_step<N / 4>(v, (c >> 1) & 1, 2);
  reduce_scatter_step<N / 8>(v, c & 1, 1);
}
__device__ __forceinline__ int reduce_scatter_first(int c, int N) {
  return ((c >> 2) & 1) * (N / 2) + ((c >> 1) & 1) * (N / 4) + (c & 1) * (N / 8);
}

template <typename T, typename G, int R>
__global__ void __launch_bounds__(kThreads) recurrent_bwd_kernel(BwdArgs p) {
  constexpr int KP = 4 * R;  // padded K
  __shared__ TokenStage<KP> stage[2];
  __shared__ float warp_sums[kWarps][kGradsK][KP];

  const ChunkGeom geo{p.T, 0, 0, p.cu, nullptr};  // only cu_seqlens is read (sequential_grid's block order)
  const std::int64_t n = sequence_of_block(geo), h = blockIdx.y;
  const int vt = vtile_of_block(geo);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, ks = lane >> 3;
  const int cb = warp * 8 + (lane & 7);  // column inside the block
  const int col0 = vt * kCols, col = col0 + cb;
  const bool col_ok = col < p.V;
  const int K = p.K, V = p.V;
  const std::int64_t H = p.H;
  const std::int64_t bos = p.cu ? p.cu[n] : n * p.T;
  const std::int64_t len = (p.cu ? p.cu[n + 1] : bos + p.T) - bos;
  auto token = [&](std::int64_t step) { return p.reverse ? bos + len - 1 - step : bos + step; };
  const std::int64_t state_base = (n * H + h) * K * V;  // h0, ht-shaped [N, H, K, V]
  // This thread's element r of a padded block state in the workspace layout [slot][H][vtiles][R][kThreads].
  auto slot_offset = [&](std::int64_t slot) {
    return ((slot * H + h) * p.vtiles + vt) * static_cast<std::int64_t>(R * kThreads) + threadIdx.x;
  };
  // Checkpoint c of this sequence: slot floor(bos / P) + n + c. Disjoint between sequences, since the packed
  // sequences tile the tokens and floor(bos / P) + ceil(len / P) <= floor((bos + len) / P) + 1; all below
  // floor(total_tokens / P) + N, the slots fused_recurrent_backward_workspace counts.
  const std::int64_t checkpoint_base = bos / kP + n;
  const std::int64_t scratch_base = p.scratch_by_token ? bos : n * p.segment_capacity;

  TokenLoader<T, G, KP> loader;
  int buf = 0;
  // One forward step: S <- D S + b x^T + k v^T with x = S^T a (before the decay), as the forward kernel. The step's
  // token is in the loader's registers (fetched one step ahead, so that its loads overlap the previous step);
  // next_step >= 0 fetches the next one once this one is staged.
  auto advance = [&](float (&S)[R], std::int64_t next_step) {
    loader.stash(p, stage[buf]);
    if (next_step >= 0) loader.fetch(p, token(next_step), h, col0, false);
    __syncthreads();
    const TokenStage<KP>& s = stage[buf];
    float x = 0.f;
#pragma unroll
    for (int r = 0; r < R; ++r) x = fmaf(S[r], s.a[r * 4 + ks], x);
    x = column_sum(x);
    const float vv = s.v[cb];
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = r * 4 + ks;
      S[r] = fmaf(S[r], s.decay[i], fmaf(s.b[i], x, s.k[i] * vv));
    }
    buf ^= 1;
  };

  float S[R], Gr[R];
  // Forward pass: the checkpoints. S ends as S_T, the S_t of the first reverse step.
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const int i = r * 4 + ks;
    S[r] = (p.h0 && col_ok && i < K) ? p.h0[state_base + i * V + col] : 0.f;
    Gr[r] = (p.dht && col_ok && i < K) ? p.dht[state_base + i * V + col] : 0.f;
  }
  if (len > 0) loader.fetch(p, token(0), h, col0, false);
  for (std::int64_t step = 0; step < len; ++step) {
    if (step % kP == 0) {
      float* ck = p.checkpoints + slot_offset(checkpoint_base + step / kP);
#pragma unroll
      for (int r = 0; r < R; ++r) ck[r * kThreads] = S[r];
    }
    advance(S, step + 1 < len ? step + 1 : -1);
  }
  float cur[R];  // S_t of the reverse step
#pragma unroll
  for (int r = 0; r < R; ++r) cur[r] = S[r];

  const std::int64_t segments = (len + kP - 1) / kP;
  for (std::int64_t c = segments - 1; c >= 0; --c) {
    const std::int64_t first = c * kP, last = first + kP < len ? first + kP : len;
    // Recompute the segment's states S_{first} .. S_{last - 1} (each the state before its step) into scratch.
    {
      const float* ck = p.checkpoints + slot_offset(checkpoint_base + c);
#pragma unroll
      for (int r = 0; r < R; ++r) S[r] = ck[r * kThreads];
    }
    // Steps first .. last - 2 only: the state after the segment's last step is not needed.
    if (first + 1 < last) loader.fetch(p, token(first), h, col0, false);
    for (std::int64_t step = first; step < last; ++step) {
      float* sc = p.scratch + slot_offset(scratch_base + (step - first));
#pragma unroll
      for (int r = 0; r < R; ++r) sc[r * kThreads] = S[r];
      if (step + 1 < last) advance(S, step + 2 < last ? step + 1 : -1);
    }
    // The reverse recurrence over the segment, each token fetched one step ahead as in advance.
    loader.fetch(p, token(last - 1), h, col0, true);
    for (std::int64_t step = last - 1; step >= first; --step) {
      const std::int64_t tok = token(step);
      loader.stash(p, stage[buf]);
      if (step > first) loader.fetch(p, token(step - 1), h, col0, true);
      float prev[R];  // S_{t-1}
      {
        const float* sc = p.scratch + slot_offset(scratch_base + (step - first));
#pragma unroll
        for (int r = 0; r < R; ++r) prev[r] = sc[r * kThreads];
      }
      __syncthreads();
      const TokenStage<KP>& s = stage[buf];
      const float dov = s.grad_o[cb], vv = s.v[cb];
      float x = 0.f, y = 0.f, dv = 0.f;
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const int i = r * 4 + ks;
        Gr[r] = fmaf(s.sq[i], dov, Gr[r]);  // G_t += scale q_t do_t^T
        x = fmaf(prev[r], s.a[i], x);
        y = fmaf(Gr[r], s.b[i], y);
        dv = fmaf(Gr[r], s.k[i], dv);
      }
      x = column_sum(x);
      y = column_sum(y);
      dv = column_sum(dv);
      if (ks == 0 && col_ok) st<T>(p.dv, tix(tok, h, H, col, V), dv);
      // The per-row products of the five K-vector gradients, 8 rows at a time (40 values, 5 a lane after the
      // column reduce-scatter), then G_{t-1} = D G_t + a y^T and S_t <- S_{t-1} for those rows.
      constexpr int kGroup = 8, kValues = kGradsK * kGroup;  // value m = q * kGroup + row in the group
      const int first_value = reduce_scatter_first(lane & 7, kValues);
#pragma unroll
      for (int rg = 0; rg < R / kGroup; ++rg) {
        float part[kValues];
#pragma unroll
        for (int rl = 0; rl < kGroup; ++rl) {
          const int r = rg * kGroup + rl, i = r * 4 + ks;
          part[kDq * kGroup + rl] = cur[r] * dov;     // (S_t do)_i, scaled after the sum
          part[kDk * kGroup + rl] = Gr[r] * vv;       // (G v)_i
          part[kDb * kGroup + rl] = Gr[r] * x;        // (G x)_i
          part[kDa * kGroup + rl] = prev[r] * y;      // (S_{t-1} y)_i
          part[kDgk * kGroup + rl] = Gr[r] * prev[r]; // rowsum(G (.) S_{t-1})_i, times exp(gk) after the sum
          Gr[r] = fmaf(Gr[r], s.decay[i], s.a[i] * y);  // G_{t-1} = D G_t + a y^T
          if (planted(p.planted, PlantedDefect::RecurrentBwdStateBf16)) Gr[r] = __bfloat162float(__float2bfloat16_rn(Gr[r]));
          cur[r] = prev[r];
        }
        columns_reduce_scatter(part, lane & 7);
#pragma unroll
        for (int j = 0; j < kValues / 8; ++j) {
          const int m = first_value + j, q = m / kGroup, r = rg * kGroup + m % kGroup;
          warp_sums[warp][q][r * 4 + ks] = part[j];
        }
      }
      __syncthreads();
      // The 8 warps' sums in warp order, then the scale (dq) or the decay (dgk).
      for (int e = threadIdx.x; e < kGradsK * KP; e += kThreads) {
        const int q = e / KP, i = e % KP;
        if (i >= K) continue;
        float total = warp_sums[0][q][i];
#pragma unroll
        for (int w = 1; w < kWarps; ++w) total += warp_sums[w][q][i];
        if (q == kDq) total *= p.scale;
        else if (q == kDgk) total *= s.decay[i];
        const std::int64_t ix = tix(tok, h, H, i, K);
        if (p.partials) {
          p.partials[(static_cast<std::int64_t>(vt) * kGradsK + q) * (p.total_tokens * H * K) + ix] = total;
        } else if (q == kDgk) {
          p.dgk[ix] = total;
        } else {
          st<T>(q == kDq ? p.dq : q == kDk ? p.dk : q == kDb ? p.db : p.da, ix, total);
        }
      }
      buf ^= 1;
    }
  }
  if (p.dh0 && col_ok) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int i = r * 4 + ks;
      if (i < K) p.dh0[state_base + i * V + col] = Gr[r];
    }
  }
}

// V > 64: the V tiles' partial sums of the K-vector gradients, added in tile order (deterministic), to the
// outputs' dtypes.
template <typename T>
__global__ void recurrent_bwd_sum_tiles_kernel(const float* partials, int vtiles, std::int64_t count, void* dq, void* dk,
                                               void* db, void* da, float* dgk) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t e = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; e < kGradsK * count; e += stride) {
    const int q = static_cast<int>(e / count);
    const std::int64_t ix = e % count;
    float total = partials[static_cast<std::int64_t>(q) * count + ix];
    for (int vt = 1; vt < vtiles; ++vt) total += partials[(static_cast<std::int64_t>(vt) * kGradsK + q) * count + ix];
    if (q == kDgk) dgk[ix] = total;
    else st<T>(q == kDq ? dq : q == kDk ? dk : q == kDb ? db : da, ix, total);
  }
}

int rows_per_lane(std::int64_t K) { return K <= 32 ? 8 : K <= 64 ? 16 : 32; }

struct BwdGeometry {
  std::int64_t N, vtiles, R, block_floats, checkpoint_slots, segment_capacity, scratch_slots, partial_floats;
  bool scratch_by_token;
};
BwdGeometry bwd_geometry(const ForwardInputs& in) {
  BwdGeometry g{};
  g.N = in.N();
  g.vtiles = (in.V + kCols - 1) / kCols;
  g.R = rows_per_lane(in.K);
  g.block_floats = g.R * kThreads;  // one padded state of one block: (4 R) rows x 64 columns
  const std::int64_t total_tokens = in.B * in.T;
  g.checkpoint_slots = total_tokens / kP + g.N;
  g.segment_capacity = in.T < kP ? in.T : kP;
  // With cu_seqlens a sequence's scratch may start at its first token (sequences are disjoint token ranges,
  // each needs min(P, len) <= len slots): T slots instead of N min(P, T), whichever is fewer.
  g.scratch_by_token = in.cu_seqlens && in.T < g.N * g.segment_capacity;
  g.scratch_slots = g.scratch_by_token ? in.T : g.N * g.segment_capacity;
  g.partial_floats = g.vtiles > 1 ? g.vtiles * kGradsK * total_tokens * in.H * in.K : 0;
  return g;
}

constexpr std::int64_t kAlignFloats = 64;  // 256 bytes
std::int64_t aligned(std::int64_t floats) { return (floats + kAlignFloats - 1) / kAlignFloats * kAlignFloats; }

}  // namespace

RecurrentBackwardWorkspaceSizes fused_recurrent_backward_workspace(const ForwardInputs& in) {
  check_inputs(in);
  const BwdGeometry g = bwd_geometry(in);
  RecurrentBackwardWorkspaceSizes sizes;
  sizes.checkpoints = g.checkpoint_slots * in.H * g.vtiles * g.block_floats;
  sizes.segment_states = g.scratch_slots * in.H * g.vtiles * g.block_floats;
  sizes.partials = g.partial_floats;
  return sizes;
}

void check_recurrent_backward(const ForwardInputs& in, const RecurrentBackwardArgs& args) {
  check_inputs(in);
  const std::int64_t N = in.N();
  if (in.H > 65535 || (!in.cu_seqlens && N > 65535) || N > 0x7fffffff)
    refuse("fused_recurrent_backward needs H <= 65535 and, without cu_seqlens, B <= 65535 (with, N < 2^31) (B=" +
           std::to_string(in.B) + " H=" + std::to_string(in.H) + " N=" + std::to_string(N) + ")");
  if (!args.grad_o) refuse("fused_recurrent_backward needs the upstream gradient do (grad_o), [B, T, H, V] in the inputs' dtype");
  if (!args.dq || !args.dk || !args.dv || !args.da || !args.db)
    refuse("fused_recurrent_backward needs the outputs dq, dk, dv, da and db (device pointers in the inputs' dtype)");
  if (!args.dgk) refuse("fused_recurrent_backward needs the output dgk (fp32 [B, T, H, K])");
  if (!args.workspace)
    refuse("fused_recurrent_backward needs a workspace of fused_recurrent_backward_workspace(in).total() floats");
}

void fused_recurrent_backward(const ForwardInputs& in, const RecurrentBackwardArgs& args, cudaStream_t stream) {
  check_recurrent_backward(in, args);
  const BwdGeometry g = bwd_geometry(in);
  const RecurrentBackwardWorkspaceSizes sizes = fused_recurrent_backward_workspace(in);
  float* checkpoints = args.workspace;
  float* scratch = checkpoints + aligned(sizes.checkpoints);
  float* partials = g.vtiles > 1 ? scratch + aligned(sizes.segment_states) : nullptr;
  BwdArgs p{in.q,    in.k,    in.v,  in.a,   in.b,   in.gk,  args.grad_o, in.h0, args.dht, in.cu_seqlens,
            args.dq, args.dk, args.dv, args.da, args.db, args.dgk, args.dh0, checkpoints, scratch, partials,
            in.T,    in.H,    in.B * in.T, static_cast<int>(in.K), static_cast<int>(in.V),
            static_cast<int>(g.vtiles), g.segment_capacity, g.scratch_by_token, in.resolved_scale(), args.reverse,
            in.planted};
  const dim3 grid = sequential_grid(in, g.vtiles);
  dispatch_types(in.dtype, in.gk_dtype, [&](auto t, auto gt) {
    using T = decltype(t);
    using G = decltype(gt);
    if (g.R == 8) recurrent_bwd_kernel<T, G, 8><<<grid, kThreads, 0, stream>>>(p);
    else if (g.R == 16) recurrent_bwd_kernel<T, G, 16><<<grid, kThreads, 0, stream>>>(p);
    else recurrent_bwd_kernel<T, G, 32><<<grid, kThreads, 0, stream>>>(p);
    DPLR_LAUNCHED("recurrent_bwd_kernel");
    if (partials) {
      const std::int64_t count = in.B * in.T * in.H * in.K;
      const std::int64_t blocks = (kGradsK * count + 255) / 256;
      recurrent_bwd_sum_tiles_kernel<T><<<static_cast<unsigned>(blocks < 4096 ? blocks : 4096), 256, 0, stream>>>(
          partials, static_cast<int>(g.vtiles), count, args.dq, args.dk, args.db, args.da, args.dgk);
      DPLR_LAUNCHED("recurrent_bwd_sum_tiles_kernel");
    }
  });
}

}  // namespace dplr::gpu
