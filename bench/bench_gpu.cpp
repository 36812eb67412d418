// dplr_bench_gpu: times our CUDA forward kernels with CUDA events (warm-up, then every repeat timed alone,
// median reported), rotating among input sets so that the inputs are not cache-resident, on the shapes:
//   chunk fwd B8 T4096 H16 D64 bf16 (C = 16, 32, 64), chunk fwd B4 T4096 H8 D128 bf16,
//   decode T=1 B64 H16 D64 bf16 (h0 in, ht out), fused recurrent T4096 B8 H16 D64 bf16 (and D128 B4 H8),
//   and training (forward + backward) B8 T4096 H16 D64 and B4 T4096 H8 D128 bf16: chunk and recurrent.
// Each chunk shape is timed on the staged path (chunk_forward) and the fused one (chunk_forward_fused), with the
// fused stages (A+WY, h+o) alone and their kernel variants (ForwardInputs::variant: AVariant, HOVariant).
// The training steps also time each stage of the chunk backward alone (the recomputed forward stages A, WY, h, then
// o_bwd, h_bwd, WY_bwd, A_bwd, cumsum_bwd), on the workspace the step just filled.
// Usage: dplr_bench_gpu [out.json [part]], or `dplr bench --gpu [--gpu-part all|forward|training] [--json out.json]`
// Validates what it times (llm.c's dev/cuda habit): before timing a shape, the kernel runs once on input set 0 and
// a sample of its heads is checked against the exact reference (double) on those heads alone; a wrong result
// throws and no time is printed for it. Inputs are contractive as in fla's tests: k and a unit-norm per (token,
// head), b = -a; q, v uniform in [-1, 1], gk logsigmoid of a uniform [-4, 4] (bench/bench_fill.cu).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_fill.hpp"
#include "bench/gpu_bench.hpp"
#include "core/dtype.hpp"
#include "gpu/dplr_gpu.hpp"
#include "reference/reference.hpp"
#include "verify/gpu_harness.hpp"

namespace g = dplr::gpu;
namespace fill = dplr::bench;
using dplr::DeviceBuffer;

namespace {

#define CK(call) DPLR_CHECK_CUDA(call)  // throws dplr::gpu::CudaError naming the call

struct InputSet {
  std::vector<DeviceBuffer> bufs;
  g::ForwardInputs in;
};

InputSet make_set(long long B, long long T, long long H, long long K, long long V, bool h0, unsigned seed) {
  InputSet s;
  s.in.B = B, s.in.T = T, s.in.H = H, s.in.K = K, s.in.V = V;
  s.in.dtype = s.in.gk_dtype = g::ElemType::BF16;
  const long long nk = B * T * H * K, nv = B * T * H * V;
  auto take = [&](long long bytes) {
    s.bufs.emplace_back(static_cast<std::size_t>(bytes));
    return s.bufs.back().get();
  };
  void *q = take(nk * 2), *k = take(nk * 2), *v = take(nv * 2), *a = take(nk * 2), *b = take(nk * 2), *gk = take(nk * 2);
  fill::fill_uniform_bf16(q, nk, seed * 7 + 0);
  fill::fill_unit_rows_bf16(k, B * T * H, static_cast<int>(K), seed * 7 + 1);
  fill::fill_uniform_bf16(v, nv, seed * 7 + 2);
  fill::fill_unit_rows_bf16(a, B * T * H, static_cast<int>(K), seed * 7 + 3);
  fill::negate_bf16(b, a, nk);
  fill::fill_logsigmoid_bf16(gk, nk, seed * 7 + 5);
  s.in.q = q, s.in.k = k, s.in.v = v, s.in.a = a, s.in.b = b, s.in.gk = gk;
  if (h0) {
    auto* p = static_cast<float*>(take(B * H * K * V * 4));
    fill::fill_uniform_f32(p, B * H * K * V, seed * 7 + 6);
    s.in.h0 = p;
  }
  CK(cudaDeviceSynchronize());
  return s;
}

// ---- validation against the exact reference -----------------------------------------------------------------
// Head h of batch row b of a [B, T, H, D] bf16 device tensor, as doubles.
std::vector<double> head_rows(const void* p, const g::ForwardInputs& in, long long D, long long b, long long h) {
  std::vector<std::uint16_t> host(static_cast<std::size_t>(in.T * D));
  const auto* base = static_cast<const std::uint16_t*>(p) + ((b * in.T) * in.H + h) * D;
  CK(cudaMemcpy2D(host.data(), D * 2, base, in.H * D * 2, D * 2, in.T, cudaMemcpyDeviceToHost));
  std::vector<double> x(host.size());
  for (std::size_t i = 0; i < host.size(); ++i) x[i] = dplr::bf16_bits_to_double(host[i]);
  return x;
}
std::vector<double> state_of(const float* p, const g::ForwardInputs& in, long long b, long long h) {
  std::vector<float> host(static_cast<std::size_t>(in.K * in.V));
  CK(cudaMemcpy(host.data(), p + (b * in.H + h) * in.K * in.V, host.size() * 4, cudaMemcpyDeviceToHost));
  return {host.begin(), host.end()};
}
using dplr::rel_rmse;

// Head h of batch row b of the device inputs (bf16, h0 fp32 where present) as a problem of its own.
dplr::DplrProblem head_problem(const g::ForwardInputs& in, long long b, long long h) {
  dplr::DplrProblem p;
  p.shape = {1, in.T, 1, in.K, in.V};
  p.scale = in.resolved_scale();
  auto tensor = [&](const void* dev, long long D) {
    return dplr::Tensor{dplr::DType::BF16, {1, in.T, 1, D}, head_rows(dev, in, D, b, h)};
  };
  p.q = tensor(in.q, in.K), p.k = tensor(in.k, in.K), p.v = tensor(in.v, in.V);
  p.a = tensor(in.a, in.K), p.b = tensor(in.b, in.K), p.gk = tensor(in.gk, in.K);
  if (in.h0) p.h0 = dplr::Tensor{dplr::DType::F32, {1, 1, in.K, in.V}, state_of(in.h0, in, b, h)};
  return p;
}

// Runs `launch` once on set s, then checks o and ht of a few heads (first and last batch row and head, and one in
// the middle) against the exact reference of each head alone: o within 1.3x the bf16 floor (the reference
// rounded once to bf16), ht within 1e-5 relative RMSE. Throws std::runtime_error otherwise.
void validate(const std::string& what, const InputSet& s, const void* o, const float* ht,
              const std::function<void()>& launch) {
  launch();
  CK(cudaDeviceSynchronize());
  const g::ForwardInputs& in = s.in;
  const std::vector<std::pair<long long, long long>> heads = {{0, 0}, {in.B / 2, in.H / 2}, {in.B - 1, in.H - 1}};
  for (const auto& [b, h] : heads) {
    const dplr::DplrProblem p = head_problem(in, b, h);
    dplr::ReferenceOptions opts{dplr::Precision{dplr::Arithmetic::Double, 0}};
    opts.backward = false;
    const dplr::ReferenceResult r = dplr::run_reference(p, opts);
    const std::vector<double> eo = r.tensors.at("o").rounded(), eht = r.tensors.at("ht").rounded();
    std::vector<double> floor = eo;
    for (double& x : floor) x = dplr::round_to_dtype(x, dplr::DType::BF16);
    const double err_o = rel_rmse(head_rows(o, in, in.V, b, h), eo), bar = 1.3 * rel_rmse(floor, eo);
    const double err_ht = rel_rmse(state_of(ht, in, b, h), eht);
    if (!(err_o <= bar) || !(err_ht <= 1e-5))
      throw std::runtime_error("dplr bench --gpu: " + what + " gives a wrong result on head (b " + std::to_string(b) +
                               ", h " + std::to_string(h) + "): o rel RMSE " + std::to_string(err_o) + " (bar " +
                               std::to_string(bar) + "), ht rel RMSE " + std::to_string(err_ht) +
                               " (bar 1e-5) against the exact reference; no time printed");
  }
  std::printf("  validated %-30s %zu heads against the exact reference\n", what.c_str(), heads.size());
}

// Runs `launch` once on set s (forward and backward with cotangents do, dht), then checks the gradients of three
// heads against the exact reference's backward of each head alone: dq, dk, dv, da, db (bf16) within 2x the bf16
// floor, dgk (fp32) within 1e-4 relative RMSE: bars of a sanity check, looser than the tests', so that a time is
// never printed for a wrong result. Throws std::runtime_error otherwise.
void validate_backward(const std::string& what, const InputSet& s, const void* d_o, const float* dht,
                       const g::BackwardOutputs& out, const std::function<void()>& launch) {
  launch();
  CK(cudaDeviceSynchronize());
  const g::ForwardInputs& in = s.in;
  const std::vector<std::pair<long long, long long>> heads = {{0, 0}, {in.B / 2, in.H / 2}, {in.B - 1, in.H - 1}};
  for (const auto& [b, h] : heads) {
    dplr::DplrProblem p = head_problem(in, b, h);
    p.grad_o = dplr::Tensor{dplr::DType::BF16, {1, in.T, 1, in.V}, head_rows(d_o, in, in.V, b, h)};
    p.grad_ht = dplr::Tensor{dplr::DType::F32, {1, 1, in.K, in.V}, state_of(dht, in, b, h)};
    const dplr::ReferenceResult r = dplr::run_reference(p, dplr::ReferenceOptions{dplr::Precision{dplr::Arithmetic::Double, 0}});
    const std::pair<const char*, const void*> bf16_grads[] = {
        {"dq", out.dq}, {"dk", out.dk}, {"dv", out.dv}, {"da", out.da}, {"db", out.db}};
    std::string bad;
    for (const auto& [name, dev] : bf16_grads) {
      const std::vector<double> e = r.tensors.at(name).rounded();
      std::vector<double> floor = e;
      for (double& x : floor) x = dplr::round_to_dtype(x, dplr::DType::BF16);
      const double err = rel_rmse(head_rows(dev, in, std::string(name) == "dv" ? in.V : in.K, b, h), e);
      const double bar = 2.0 * rel_rmse(floor, e);
      if (!(err <= bar)) bad.append(" ").append(name).append(" ").append(std::to_string(err)).append(" (bar ")
                             .append(std::to_string(bar)).append(")");
    }
    std::vector<float> g32(static_cast<std::size_t>(in.T * in.K));
    CK(cudaMemcpy2D(g32.data(), in.K * 4, out.dgk + (b * in.T * in.H + h) * in.K, in.H * in.K * 4, in.K * 4, in.T,
                    cudaMemcpyDeviceToHost));
    const double err_gk = rel_rmse({g32.begin(), g32.end()}, r.tensors.at("dgk").rounded());
    if (!(err_gk <= 1e-4)) bad += " dgk " + std::to_string(err_gk) + " (bar 1e-4)";
    if (!bad.empty())
      throw std::runtime_error("dplr bench --gpu: " + what + " gives wrong gradients on head (b " + std::to_string(b) +
                               ", h " + std::to_string(h) + "):" + bad + " against the exact reference; no time printed");
  }
  std::printf("  validated %-30s %zu heads' gradients against the exact reference\n", what.c_str(), heads.size());
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

int dplr::run_gpu_benchmarks(const char* json_path, const std::string& part) {
  if (part != "all" && part != "forward" && part != "training")
    throw std::invalid_argument("dplr bench --gpu: unknown part '" + part + "' (expected all, forward or training)");
  const bool forward_part = part != "training", training_part = part != "forward";
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
    DeviceBuffer wsbuf(sz.total() * 4), obuf(B * T * H * D * 2), htbuf(B * H * D * D * 4);
    g::ChunkWorkspace ws = g::carve_chunk_workspace(sets[0].in, C, wsbuf.f());
    ws.gi = ws.ge = nullptr;  // the forward does not need the cumsum stage
    void* o = obuf.get();
    float* ht = htbuf.f();
    char shape[96];
    std::snprintf(shape, sizeof shape, "B%lld T%lld H%lld D%lld C%d", B, T, H, D, C);
    validate(std::string("chunk_fwd ") + shape, sets[0], o, ht, [&] { g::chunk_forward(sets[0].in, C, ws, o, ht); });
    auto ts = time_it(2, 3, 20, [&](int s) { g::chunk_forward(sets[s].in, C, ws, o, ht); });
    record("chunk_fwd bf16", shape, ts, goal, fla);
    {  // the fused path (A, WY, then h and o in one kernel where chunk_fused_ho), same workspace
      g::ChunkWorkspace wsf = ws;
      const bool fused = g::chunk_fused_ho(sets[0].in, C);
      if (fused) wsf.h = wsf.v_new = nullptr;
      validate(std::string("chunk_fwd_fused ") + shape, sets[0], o, ht,
               [&] { g::chunk_forward_fused(sets[0].in, C, wsf, o, ht); });
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
  };
  // ---- recurrent ----
  auto bench_rec = [&](const char* name, long long B, long long T, long long H, long long D, int nsets, double goal, double fla) {
    std::vector<InputSet> sets;
    for (int i = 0; i < nsets; ++i) sets.push_back(make_set(B, T, H, D, D, true, 101 + i));
    std::vector<DeviceBuffer> obufs, htbufs;
    std::vector<void*> os(nsets);
    std::vector<float*> hts(nsets);
    for (int i = 0; i < nsets; ++i) {
      os[i] = obufs.emplace_back(B * T * H * D * 2).get();
      hts[i] = htbufs.emplace_back(B * H * D * D * 4).f();
    }
    char shape[96];
    std::snprintf(shape, sizeof shape, "B%lld T%lld H%lld D%lld", B, T, H, D);
    validate(std::string(name) + " " + shape, sets[0], os[0], hts[0],
             [&] { g::fused_recurrent_forward(sets[0].in, os[0], hts[0], false); });
    auto ts = time_it(nsets, 5, T == 1 ? 200 : 20, [&](int s) { g::fused_recurrent_forward(sets[s].in, os[s], hts[s], false); });
    record(name, shape, ts, goal, fla);
    if (T == 1)  // decode is a ~10 us kernel: also without launch gaps (graph replay of 64 calls)
      record(std::string(name) + " (graph)", shape, time_graph(nsets, 64, 50, [&](int s, cudaStream_t st) {
               g::fused_recurrent_forward(sets[s].in, os[s], hts[s], false, st);
             }), goal, fla);
  };

  if (forward_part) {
    bench_rec("decode T=1 bf16", 64, 1, 16, 64, 16, 0.017, 0.050);
    bench_rec("fused_recurrent bf16", 8, 4096, 16, 64, 2, 3.5, 5.34);
    bench_rec("fused_recurrent bf16", 4, 4096, 8, 128, 2, 0, 0);
    for (int C : {64, 32, 16}) bench_chunk(8, 4096, 16, 64, C, 0.8, 2.01);
    bench_chunk(4, 4096, 8, 128, 64, 0, 1.39);
    bench_chunk(4, 4096, 8, 128, 32, 0, 1.39);
    bench_chunk(4, 4096, 8, 128, 16, 0, 1.39);
  }

  // ---- training: forward + backward (issue 12's shapes; fla's forward + backward is timed in the same device call
  // by bench/fla_peer.py). Our step: the fused chunk forward (C16) and the staged chunk backward (which recomputes
  // the forward's intermediates: nothing but o and ht is held between the two, as fla), or the fused recurrent
  // forward and backward. Validated first: dq, dk, dv, da, db and dgk of three heads against the exact reference.
  auto bench_training = [&](long long B, long long T, long long H, long long D, double fla) {
    std::vector<InputSet> sets;
    for (int i = 0; i < 2; ++i) sets.push_back(make_set(B, T, H, D, D, false, 201 + i));
    const long long nk = B * T * H * D, ns = B * H * D * D;
    DeviceBuffer dobuf(nk * 2), dhtbuf(ns * 4), obuf(nk * 2), htbuf(ns * 4);
    fill::fill_uniform_bf16(dobuf.get(), nk, 901);
    fill::fill_uniform_f32(dhtbuf.f(), ns, 902);
    DeviceBuffer dq(nk * 2), dk(nk * 2), dv(nk * 2), da(nk * 2), db(nk * 2), dgk(nk * 4);
    void* o = obuf.get();
    float* ht = htbuf.f();
    const int C = 16;
    const g::ChunkWorkspaceSizes fs = g::chunk_workspace_floats(sets[0].in, C);
    DeviceBuffer fwsbuf(fs.total() * 4);
    g::ChunkWorkspace fws = g::carve_chunk_workspace(sets[0].in, C, fwsbuf.f());
    fws.gi = fws.ge = nullptr;
    if (g::chunk_fused_ho(sets[0].in, C)) fws.h = fws.v_new = nullptr;
    const g::BackwardInputs bin0{sets[0].in, dobuf.get(), dhtbuf.f(), {}};
    // The training step on the pieces the driver uses (the Driver scope, what a training step allocates); the
    // stage lines below on every stage's pieces (Stages).
    const g::BackwardWorkspaceSizes ds = g::chunk_backward_workspace_floats(bin0, C, g::BackwardWorkspaceScope::Driver);
    DeviceBuffer dwsbuf(ds.total() * 4);
    const g::BackwardWorkspace dws = g::carve_backward_workspace(bin0, C, dwsbuf.f(), g::BackwardWorkspaceScope::Driver);
    const g::BackwardWorkspaceSizes bs = g::chunk_backward_workspace_floats(bin0, C);
    DeviceBuffer bwsbuf(bs.total() * 4);
    const g::BackwardWorkspace bws = g::carve_backward_workspace(bin0, C, bwsbuf.f());
    const g::BackwardOutputs out{dq.get(), dk.get(), dv.get(), da.get(), db.get(), dgk.f(), nullptr};
    char shape[96];
    std::snprintf(shape, sizeof shape, "B%lld T%lld H%lld D%lld", B, T, H, D);
    auto chunk_step = [&](int s) {
      g::chunk_forward_fused(sets[s].in, C, fws, o, ht);
      g::chunk_backward(g::BackwardInputs{sets[s].in, dobuf.get(), dhtbuf.f(), {}}, C, dws, out);
    };
    validate_backward(std::string("chunk fwd+bwd C16 ") + shape, sets[0], dobuf.get(), dhtbuf.f(), out, [&] { chunk_step(0); });
    record("chunk fwd+bwd bf16 C16", shape, time_it(2, 2, 10, chunk_step), 0.6 * fla, fla);
    const auto bwd = time_it(2, 2, 10, [&](int s) {
      g::chunk_backward(g::BackwardInputs{sets[s].in, dobuf.get(), dhtbuf.f(), {}}, C, dws, out);
    });
    record("  chunk bwd alone C16", shape, bwd, 0, 0);
    {  // The backward's stages, each timed alone on the Stages workspace, which one driver run fills first (the
       // stages that add to a total, dv += and the like, only grow it over the repeats: the times do not depend on
       // the values).
      g::chunk_backward(bin0, C, bws, out);
      const g::ChunkWorkspace& w = bws.forward;
      const g::GatedOperands& gt = w.gated;
      const g::GradientShares& sh = bws.shares;
      auto bin = [&](int s) { return g::BackwardInputs{sets[s].in, dobuf.get(), dhtbuf.f(), {}}; };
      double sum = 0;
      auto stage = [&](const std::string& name, const std::function<void(int)>& fn) {
        const auto ts = time_it(2, 2, 10, fn);
        sum += ts[ts.size() / 2];
        record("  bwd stage " + name, shape, ts, 0, 0);
      };
      stage("recompute (the driver's)", [&](int s) { g::chunk_backward_recompute(bin(s), C, w); });
      stage("recompute A (FMA)", [&](int s) { g::chunk_A(sets[s].in, C, w.A_qk, w.A_qb, w.A_ak, w.A_ab, gt); });
      stage("recompute WY (FMA)", [&](int s) { g::chunk_WY(sets[s].in, C, w.A_ab, w.A_ak, gt.ag, w.A_ab_inv, w.w, w.u); });
      stage("recompute h (FMA)", [&](int s) {
        g::chunk_h(sets[s].in, C, gt.kg, gt.bg, gt.eg_last, w.w, w.u, w.h, w.v_new, nullptr);
      });
      stage("o_bwd", [&](int s) {
        g::chunk_o_bwd(bin(s), C, w.A_qk, w.A_qb, gt.qg, w.v_new, w.h, bws.dA_qk, bws.dA_qb, bws.dv, sh);
      });
      stage("h_bwd (2 kernels)", [&](int s) {
        g::chunk_h_bwd(bin(s), C, gt.kg, gt.bg, gt.eg_last, w.w, w.h, w.v_new, bws.dh, bws.dv_new, bws.dw, bws.dv,
                       nullptr, sh);
      });
      stage("WY_bwd", [&](int s) {
        g::chunk_WY_bwd(bin(s), C, w.A_ab_inv, w.A_ak, w.w, w.u, bws.dw, bws.dv_new, bws.dA_ab, bws.dA_ak, bws.dv, sh);
      });
      stage("A_bwd", [&](int s) {
        g::chunk_A_bwd(bin(s), C, bws.dA_qk, bws.dA_qb, bws.dA_ak, bws.dA_ab, bws.dq, bws.dk, bws.da, bws.db, sh);
      });
      stage("cumsum_bwd", [&](int s) { g::chunk_cumsum_bwd(bin(s), C, out.dgk, sh); });
      // The driver's A_bwd + cumsum_bwd (one kernel writing 16-bit dq, dk, da, db and dgk): not in the sum, which has
      // the two stages above.
      record("  bwd A_bwd + cumsum_bwd (the driver's)", shape, time_it(2, 2, 10, [&](int s) {
               g::chunk_A_cumsum_bwd(bin(s), C, bws.dA_qk, bws.dA_qb, bws.dA_ak, bws.dA_ab, out.dq, out.dk, out.da,
                                     out.db, out.dgk, sh, g::ABwdTotals{bws.dq, bws.dk, bws.da, bws.db});
             }), 0, 0);
      std::printf("  bwd stages: sum of the medians %.4f ms, whole backward %.4f ms (the stage lines time each stage "
                  "alone; the driver fuses o_bwd into h_bwd and A_bwd with cumsum_bwd where they run on tensor cores)\n", sum, double(bwd[bwd.size() / 2]));
    }
    std::printf("  memory: held between forward and backward: o and ht (%.1f MiB; the backward recomputes); "
                "forward workspace %.1f MiB, backward workspace %.1f MiB (the driver's pieces; every stage's: %.1f MiB)\n",
                (nk * 2 + ns * 4) / 1048576.0, fs.total() * 4 / 1048576.0, ds.total() * 4 / 1048576.0,
                bs.total() * 4 / 1048576.0);
    const g::RecurrentBackwardWorkspaceSizes rs = g::fused_recurrent_backward_workspace(sets[0].in);
    DeviceBuffer rwsbuf(rs.total() * 4);
    g::RecurrentBackwardArgs args;
    args.grad_o = dobuf.get(), args.dht = dhtbuf.f();
    args.dq = dq.get(), args.dk = dk.get(), args.dv = dv.get(), args.da = da.get(), args.db = db.get(), args.dgk = dgk.f();
    args.workspace = rwsbuf.f();
    auto rec_step = [&](int s) {
      g::fused_recurrent_forward(sets[s].in, o, ht, false);
      g::fused_recurrent_backward(sets[s].in, args);
    };
    validate_backward(std::string("recurrent fwd+bwd ") + shape, sets[0], dobuf.get(), dhtbuf.f(), out, [&] { rec_step(0); });
    record("recurrent fwd+bwd bf16", shape, time_it(2, 2, 10, rec_step), 0, fla);
    std::printf("  memory: recurrent backward workspace %.1f MiB\n", rs.total() * 4 / 1048576.0);
  };
  if (training_part) {
    bench_training(8, 4096, 16, 64, 7.23);  // fla: session 6, call 1 (H200)
    bench_training(4, 4096, 8, 128, 4.91);
  }

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
