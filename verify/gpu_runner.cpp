#include "verify/gpu_runner.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

#ifdef DPLR_HAVE_CUDA
#include "gpu/dplr_gpu.hpp"
#include "reference/chunk_stages.hpp"
#include "verify/gpu_harness.hpp"
#endif

namespace dplr {

#ifndef DPLR_HAVE_CUDA

GpuDevice gpu_device() { return {false, "", "built without CUDA (no nvcc at configure time, or DPLR_ENABLE_CUDA=OFF)"}; }
TensorMap run_gpu_recurrent(const DplrProblem&) { throw InputError("GPU kernels: " + gpu_device().reason); }
TensorMap run_gpu_chunk(const DplrProblem&, int) { throw InputError("GPU kernels: " + gpu_device().reason); }
TensorMap run_gpu_chunk_fused(const DplrProblem&, int) { throw InputError("GPU kernels: " + gpu_device().reason); }
TensorMap run_gpu_chunk_backward(const DplrProblem&, int) { throw InputError("GPU kernels: " + gpu_device().reason); }

#else

GpuDevice gpu_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess)
    return {false, "", fmt::format("no usable CUDA device (cudaGetDeviceCount: {})", cudaGetErrorString(status))};
  if (count == 0) return {false, "", "no CUDA device"};
  cudaDeviceProp prop{};
  check_cuda(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
  return {true, fmt::format("{} (sm_{}{}, {} SMs)", prop.name, prop.major, prop.minor, prop.multiProcessorCount), ""};
}

TensorMap run_gpu_recurrent(const DplrProblem& p) {
  DeviceProblem d(p);
  const auto& s = p.shape;
  void* o = d.output(s.B * s.T * s.H * s.V, d.dtype());
  auto* ht = static_cast<float*>(d.output(p.num_sequences() * s.H * s.K * s.V, DType::F32));
  gpu::fused_recurrent_forward(d.inputs(), o, ht, p.reverse);
  TensorMap out;
  out["o"] = d.download(o, d.dtype(), {s.B, s.T, s.H, s.V});
  out["ht"] = d.download(ht, DType::F32, {p.num_sequences(), s.H, s.K, s.V});
  return out;
}

namespace {
std::int64_t count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto x : shape) n *= x;
  return n;
}

// The chunk forward, staged (each stage its own kernel; every intermediate returned) or fused (the fastest
// path: o and ht only).
TensorMap run_chunk_forward(const DplrProblem& p, int C, bool fused) {
  if (p.reverse) throw InputError("the chunk form runs forward only; reverse is for the recurrent kernel");
  DeviceProblem d(p);
  const auto& s = p.shape;
  const gpu::ForwardInputs& in = d.inputs();  // with cu_seqlens when the problem has them (the drivers number the chunks)
  // h as the stage oracles lay it out: [B, NT, ...], or with cu_seqlens [1, sum_n ceil(len_n / C), ...], the leading
  // rows of the kernels' h (sized by gpu::num_chunks' upper bound).
  const ChunkGrid grid = ChunkGrid::of(p, C);
  const std::vector<std::int64_t> key{s.B, s.T, s.H, s.K}, value{s.B, s.T, s.H, s.V}, a_shape{s.B, s.T, s.H, C},
      h_shape{grid.rows, grid.NT, s.H, s.K, s.V}, state{p.num_sequences(), s.H, s.K, s.V};
  // One NaN-poisoned buffer carved into every intermediate (gi and ge included), so an element a stage
  // fails to write shows up.
  const gpu::ChunkWorkspaceSizes sizes = gpu::chunk_workspace_floats(in, C);
  auto* buffer = static_cast<float*>(d.output(sizes.total(), DType::F32));
  const gpu::ChunkWorkspace ws = gpu::carve_chunk_workspace(in, C, buffer);
  auto* ht = static_cast<float*>(d.output(count(state), DType::F32));
  void* o = d.output(count(value), d.dtype());
  if (fused) gpu::chunk_forward_fused(in, C, ws, o, ht);
  else gpu::chunk_forward(in, C, ws, o, ht);  // cumsum, A, WY, h, o, each its own kernel
  TensorMap out;
  out["o"] = d.download(o, d.dtype(), value);
  out["ht"] = d.download(ht, DType::F32, state);
  if (fused) return out;
  const std::pair<const char*, std::pair<const float*, const std::vector<std::int64_t>*>> stages[] = {
      {"gi", {ws.gi, &key}},         {"ge", {ws.ge, &key}},         {"A_qk", {ws.A_qk, &a_shape}},
      {"A_qb", {ws.A_qb, &a_shape}}, {"A_ak", {ws.A_ak, &a_shape}}, {"A_ab", {ws.A_ab, &a_shape}},
      {"A_ab_inv", {ws.A_ab_inv, &a_shape}}, {"w", {ws.w, &key}},   {"u", {ws.u, &value}},
      {"h", {ws.h, &h_shape}},       {"v_new", {ws.v_new, &value}}};
  for (const auto& [name, buffer_and_shape] : stages)
    out[name] = d.download(buffer_and_shape.first, DType::F32, *buffer_and_shape.second);
  return out;
}
}  // namespace

TensorMap run_gpu_chunk(const DplrProblem& p, int C) { return run_chunk_forward(p, C, false); }
TensorMap run_gpu_chunk_fused(const DplrProblem& p, int C) { return run_chunk_forward(p, C, true); }

TensorMap run_gpu_chunk_backward(const DplrProblem& p, int C) {
  if (p.reverse) throw InputError("the chunk form runs forward only; reverse is for the recurrent kernel");
  DeviceProblem d(p);
  const gpu::BackwardInputs in = d.backward_inputs();  // the driver numbers the chunks itself with cu_seqlens
  const auto& s = p.shape;
  const ChunkGrid grid = ChunkGrid::of(p, C);
  const std::vector<std::int64_t> key{s.B, s.T, s.H, s.K}, value{s.B, s.T, s.H, s.V}, a_shape{s.B, s.T, s.H, C},
      h_shape{grid.rows, grid.NT, s.H, s.K, s.V}, state{p.num_sequences(), s.H, s.K, s.V};
  // One NaN-poisoned buffer carved into every intermediate, so an element a stage fails to write shows up.
  const gpu::BackwardWorkspaceSizes sizes = gpu::chunk_backward_workspace_floats(in, C);
  auto* buffer = static_cast<float*>(d.output(sizes.total(), DType::F32));
  const gpu::BackwardWorkspace ws = gpu::carve_backward_workspace(in, C, buffer);
  gpu::BackwardOutputs out;
  out.dq = d.output(count(key), d.dtype()), out.dk = d.output(count(key), d.dtype());
  out.da = d.output(count(key), d.dtype()), out.db = d.output(count(key), d.dtype());
  out.dv = d.output(count(value), d.dtype());
  out.dgk = static_cast<float*>(d.output(count(key), DType::F32));
  out.dh0 = static_cast<float*>(d.output(count(state), DType::F32));
  gpu::chunk_backward(in, C, ws, out);
  TensorMap t;
  for (const auto& [name, ptr] : {std::pair<const char*, void*>{"dq", out.dq}, {"dk", out.dk}, {"da", out.da}, {"db", out.db}})
    t[name] = d.download(ptr, d.dtype(), key);
  t["dv"] = d.download(out.dv, d.dtype(), value);
  t["dgk"] = d.download(out.dgk, DType::F32, key);
  t["dh0"] = d.download(out.dh0, DType::F32, state);
  const std::pair<const char*, std::pair<const float*, const std::vector<std::int64_t>*>> stages[] = {
      {"dA_qk", {ws.dA_qk, &a_shape}}, {"dA_qb", {ws.dA_qb, &a_shape}}, {"dA_ak", {ws.dA_ak, &a_shape}},
      {"dA_ab", {ws.dA_ab, &a_shape}}, {"dh", {ws.dh, &h_shape}},       {"dv_new", {ws.dv_new, &value}},
      {"dw", {ws.dw, &key}}};
  for (const auto& [name, buffer_and_shape] : stages)
    t[name] = d.download(buffer_and_shape.first, DType::F32, *buffer_and_shape.second);
  return t;
}

#endif

}  // namespace dplr
