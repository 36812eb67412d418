// dplr_bench_gpu: times our CUDA forward kernels with CUDA events (warm-up, then every repeat timed alone,
// median reported), rotating among input sets so that the inputs are not cache-resident, on the issue's shapes:
//   chunk fwd B8 T4096 H16 D64 bf16 (C = 16, 32, 64), chunk fwd B4 T4096 H8 D128 bf16,
//   decode T=1 B64 H16 D64 bf16 (h0 in, ht out), fused recurrent T4096 B8 H16 D64 bf16 (and D128 B4 H8).
// Each chunk shape is timed on the staged path (chunk_forward) and the fused one (chunk_forward_fused), with the
// fused stages (A+WY, h+o) alone and their kernel variants (ForwardInputs::variant: AVariant, HOVariant).
// Usage: dplr_bench_gpu [out.json], or `dplr bench --gpu [--json out.json]`
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "bench/gpu_bench.hpp"
#include "gpu/dplr_gpu.hpp"

namespace g = dplr::gpu;

namespace {

#define CK(x)                                                                                  \
  do {                                                                                         \
    cudaError_t e_ = (x);                                                                      \
    if (e_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                                            \
    }                                                                                          \
  } while (0)

__device__ float hash01(unsigned long long i, unsigned seed) {
  unsigned long long x = i * 0x9E3779B97F4A7C15ull + seed * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return ((x >> 40) + 0.5f) / 16777216.0f;
}
// kind 0: uniform [-1, 1]; 1: logsigmoid of a uniform [-4, 4] (fla-like decay, in (-4.02, 0)).
__global__ void fill_bf16(__nv_bfloat16* p, long long n, unsigned seed, int kind) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    float u = hash01(i, seed);
    float x = kind == 0 ? 2.f * u - 1.f : -log1pf(expf(-(8.f * u - 4.f)));
    p[i] = __float2bfloat16(x);
  }
}
__global__ void fill_f32(float* p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x)
    p[i] = 2.f * hash01(i, seed) - 1.f;
}

struct InputSet {
  std::vector<void*> bufs;
  g::ForwardInputs in;
};

InputSet make_set(long long B, long long T, long long H, long long K, long long V, bool h0, unsigned seed) {
  InputSet s;
  s.in.B = B, s.in.T = T, s.in.H = H, s.in.K = K, s.in.V = V;
  s.in.dtype = s.in.gk_dtype = g::ElemType::BF16;
  const void** ptrs[6] = {&s.in.q, &s.in.k, &s.in.v, &s.in.a, &s.in.b, &s.in.gk};
  for (int t = 0; t < 6; ++t) {
    long long n = B * T * H * (t == 2 ? V : K);
    void* p;
    CK(cudaMalloc(&p, n * 2));
    fill_bf16<<<1024, 256>>>(static_cast<__nv_bfloat16*>(p), n, seed * 7 + t, t == 5 ? 1 : 0);
    *ptrs[t] = p;
    s.bufs.push_back(p);
  }
  if (h0) {
    long long n = B * H * K * V;
    void* p;
    CK(cudaMalloc(&p, n * 4));
    fill_f32<<<1024, 256>>>(static_cast<float*>(p), n, seed * 7 + 6);
    s.in.h0 = static_cast<float*>(p);
    s.bufs.push_back(p);
  }
  CK(cudaGetLastError());
  return s;
}

struct Result {
  std::string name, shape;
  double median_ms, min_ms, max_ms, goal_ms, fla_ms;
  int reps;
};

// Times fn(set) over `reps` repeats cycling through the sets; returns sorted per-call times.
std::vector<float> time_it(int nsets, int warm, int reps, const std::function<void(int)>& fn) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < warm; ++i) fn(i % nsets);
  CK(cudaDeviceSynchronize());
  std::vector<float> ts;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    fn(i % nsets);
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    ts.push_back(ms);
  }
  CK(cudaGetLastError());
  std::sort(ts.begin(), ts.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return ts;
}

// Times back-to-back launches without the host's launch gaps (METHOD.md: for short kernels, time graph
// replays): `per_graph` calls of fn(set, stream), cycling through the sets, captured once in a CUDA graph; each
// replay (on the default stream, as time_it) is timed and divided by per_graph. Returns sorted per-call times.
std::vector<float> time_graph(int nsets, int per_graph, int reps, const std::function<void(int, cudaStream_t)>& fn) {
  cudaStream_t st;  // capture needs a stream other than the legacy default one
  CK(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  for (int i = 0; i < nsets; ++i) fn(i, st);  // warm-up outside the capture
  CK(cudaStreamSynchronize(st));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < per_graph; ++i) fn(i % nsets, st);
  CK(cudaStreamEndCapture(st, &graph));
  CK(cudaGraphInstantiate(&exec, graph, 0));
  std::vector<float> ts = time_it(1, 3, reps, [&](int) { CK(cudaGraphLaunch(exec, 0)); });
  for (float& t : ts) t /= per_graph;
  CK(cudaGraphExecDestroy(exec));
  CK(cudaGraphDestroy(graph));
  CK(cudaStreamDestroy(st));
  return ts;
}

}  // namespace

int dplr::run_gpu_benchmarks(const char* json_path) {
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs, L2 %d MB\n", prop.name, prop.multiProcessorCount, prop.l2CacheSize >> 20);
  std::vector<Result> results;
  auto record = [&](const std::string& name, const std::string& shape, std::vector<float> ts, double goal, double fla) {
    Result r{name, shape, ts[ts.size() / 2], ts.front(), ts.back(), goal, fla, static_cast<int>(ts.size())};
    std::printf("%-34s %-24s median %8.4f ms  (min %.4f, max %.4f, n=%d)  goal %.3f  fla(H200 note) %.3f\n", name.c_str(),
                shape.c_str(), r.median_ms, r.min_ms, r.max_ms, r.reps, goal, fla);
    std::fflush(stdout);
    results.push_back(r);
  };

  // ---- chunk forward ----
  auto bench_chunk = [&](long long B, long long T, long long H, long long D, int C, double goal, double fla) {
    std::vector<InputSet> sets;
    for (int i = 0; i < 2; ++i) sets.push_back(make_set(B, T, H, D, D, false, 11 + i));
    const g::ChunkWorkspaceSizes sz = g::chunk_workspace_floats(sets[0].in, C);
    float* wsbuf;
    CK(cudaMalloc(&wsbuf, sz.total() * 4));
    g::ChunkWorkspace ws = g::carve_chunk_workspace(sets[0].in, C, wsbuf);
    ws.gi = ws.ge = nullptr;  // the forward does not need the cumsum stage
    void* o;
    float* ht;
    CK(cudaMalloc(&o, B * T * H * D * 2));
    CK(cudaMalloc(&ht, B * H * D * D * 4));
    auto ts = time_it(2, 3, 20, [&](int s) { g::chunk_forward(sets[s].in, C, ws, o, ht); });
    char shape[96];
    std::snprintf(shape, sizeof shape, "B%lld T%lld H%lld D%lld C%d", B, T, H, D, C);
    record("chunk_fwd bf16", shape, ts, goal, fla);
    {  // the fused path (A, WY, then h and o in one kernel where chunk_fused_ho), same workspace
      g::ChunkWorkspace wsf = ws;
      const bool fused = g::chunk_fused_ho(sets[0].in, C);
      if (fused) wsf.h = wsf.v_new = nullptr;
      auto tf = time_it(2, 3, 20, [&](int s) { g::chunk_forward_fused(sets[s].in, C, wsf, o, ht); });
      record(fused ? "chunk_fwd_fused bf16" : "chunk_fwd_fused(fallback) bf16", shape, tf, goal, fla);
      if (g::chunk_A_WY_supported(sets[0].in, C))
        record("  stage A+WY (tensor cores)", shape, time_it(2, 2, 10, [&](int s) {
                 g::chunk_A_WY(sets[s].in, C, ws.A_qk, ws.A_qb, ws.gated, ws.w, ws.u);
               }), 0, 0);
      if (C == 16)
        for (g::AVariant av : {g::AVariant::Factored, g::AVariant::Direct}) {  // the staged A kernel (factored: C16's default)
          record(std::string("  stage A ") + g::variant_name(av), shape, time_it(2, 2, 10, [&](int s) {
                   g::ForwardInputs in = sets[s].in;
                   in.variant.a = av;
                   g::chunk_A(in, C, ws.A_qk, ws.A_qb, ws.A_ak, ws.A_ab, ws.gated);
                 }), 0, 0);
        }
      if (fused)  // default (tensor cores where they apply), FMA 2 / 1 columns a thread
        for (g::HOVariant hv : {g::HOVariant::Default, g::HOVariant::Fma2, g::HOVariant::Fma1}) {
          record(std::string("  stage h+o ") + g::variant_name(hv), shape, time_it(2, 2, 10, [&](int s) {
                   g::ForwardInputs in = sets[s].in;
                   in.variant.ho = hv;
                   g::chunk_h_o(in, C, ws.A_qk, ws.A_qb, ws.gated.qg, ws.gated.kg, ws.gated.bg, ws.gated.eg_last,
                                ws.w, ws.u, o, ht);
                 }), 0, 0);
        }
    }
    // Per stage, same workspace.
    const auto& in = sets[0].in;
    const g::GatedOperands& gt = ws.gated;
    record("  stage A", shape, time_it(2, 2, 10, [&](int s) { g::chunk_A(sets[s].in, C, ws.A_qk, ws.A_qb, ws.A_ak, ws.A_ab, gt); }), 0, 0);
    record("  stage WY", shape, time_it(2, 2, 10, [&](int s) { g::chunk_WY(sets[s].in, C, ws.A_ab, ws.A_ak, gt.ag, ws.A_ab_inv, ws.w, ws.u); }), 0, 0);
    record("  stage h", shape, time_it(2, 2, 10, [&](int s) { g::chunk_h(sets[s].in, C, gt.kg, gt.bg, gt.eg_last, ws.w, ws.u, ws.h, ws.v_new, ht); }), 0, 0);
    record("  stage o", shape, time_it(2, 2, 10, [&](int s) { g::chunk_o(sets[s].in, C, ws.A_qk, ws.A_qb, gt.qg, ws.v_new, ws.h, o); }), 0, 0);
    (void)in;
    CK(cudaFree(wsbuf));
    CK(cudaFree(o));
    CK(cudaFree(ht));
    for (auto& s : sets)
      for (void* p : s.bufs) CK(cudaFree(p));
  };
  // ---- recurrent ----
  auto bench_rec = [&](const char* name, long long B, long long T, long long H, long long D, int nsets, double goal, double fla) {
    std::vector<InputSet> sets;
    for (int i = 0; i < nsets; ++i) sets.push_back(make_set(B, T, H, D, D, true, 101 + i));
    std::vector<void*> os(nsets);
    std::vector<float*> hts(nsets);
    for (int i = 0; i < nsets; ++i) {
      CK(cudaMalloc(&os[i], B * T * H * D * 2));
      CK(cudaMalloc(&hts[i], B * H * D * D * 4));
    }
    auto ts = time_it(nsets, 5, T == 1 ? 200 : 20, [&](int s) { g::fused_recurrent_forward(sets[s].in, os[s], hts[s], false); });
    char shape[96];
    std::snprintf(shape, sizeof shape, "B%lld T%lld H%lld D%lld", B, T, H, D);
    record(name, shape, ts, goal, fla);
    if (T == 1)  // decode is a ~10 us kernel: also without launch gaps (graph replay of 64 calls)
      record(std::string(name) + " (graph)", shape, time_graph(nsets, 64, 50, [&](int s, cudaStream_t st) {
               g::fused_recurrent_forward(sets[s].in, os[s], hts[s], false, st);
             }), goal, fla);
    for (int i = 0; i < nsets; ++i) {
      CK(cudaFree(os[i]));
      CK(cudaFree(hts[i]));
    }
    for (auto& s : sets)
      for (void* p : s.bufs) CK(cudaFree(p));
  };

  bench_rec("decode T=1 bf16", 64, 1, 16, 64, 16, 0.017, 0.050);
  bench_rec("fused_recurrent bf16", 8, 4096, 16, 64, 2, 3.5, 5.34);
  bench_rec("fused_recurrent bf16", 4, 4096, 8, 128, 2, 0, 0);
  for (int C : {64, 32, 16}) bench_chunk(8, 4096, 16, 64, C, 0.8, 2.01);
  bench_chunk(4, 4096, 8, 128, 64, 0, 1.39);
  bench_chunk(4, 4096, 8, 128, 32, 0, 1.39);
  bench_chunk(4, 4096, 8, 128, 16, 0, 1.39);

  if (json_path) {
    FILE* f = std::fopen(json_path, "w");
    if (!f) {
      std::perror(json_path);
      return 1;
    }
    std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"timing\": \"CUDA events, warm-up, median of repeats, 2+ rotated input sets\",\n  \"results\": [\n", prop.name);
    for (std::size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::fprintf(f, "    {\"name\": \"%s\", \"shape\": \"%s\", \"median_ms\": %.5f, \"min_ms\": %.5f, \"max_ms\": %.5f, \"reps\": %d, \"goal_ms\": %.3f}%s\n",
                   r.name.c_str(), r.shape.c_str(), r.median_ms, r.min_ms, r.max_ms, r.reps, r.goal_ms,
                   i + 1 < results.size() ? "," : "");
    }
    std::fprintf(f, "  ]\n}\n");
    std::fclose(f);
  }
  return 0;
}
