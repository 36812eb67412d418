#include "verify/gpu_runner.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"

#ifdef DPLR_HAVE_CUDA
#include "gpu/dplr_gpu.hpp"
#include "reference/chunk_stages.hpp"
#include "verify/gpu_harness.hpp"
#endif

namespace dplr {

#ifndef DPLR_HAVE_CUDA

GpuDevice gpu_device() { return {false, "", "built without CUDA (no nvcc at configure time, or DPLR_ENABLE_CUDA=OFF)"}; }
std::vector<std::string> gpu_planted_defect_names() { return {}; }
bool gpu_planted_defects_built() { return false; }
TensorMap run_gpu_recurrent(const DplrProblem&, const GpuRunOptions&) {
  throw InputError("GPU kernels: " + gpu_device().reason);
}
TensorMap run_gpu_chunk(const DplrProblem&, int, const GpuRunOptions&) {
  throw InputError("GPU kernels: " + gpu_device().reason);
}
TensorMap run_gpu_chunk_fused(const DplrProblem&, int, const GpuRunOptions&) {
  throw InputError("GPU kernels: " + gpu_device().reason);
}

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

namespace {
constexpr gpu::PlantedDefect kPlantedDefects[] = {
    gpu::PlantedDefect::HeadStride,     gpu::PlantedDefect::SequenceStart, gpu::PlantedDefect::DropLastChunk,
    gpu::PlantedDefect::MissingBarrier, gpu::PlantedDefect::Bf16State,     gpu::PlantedDefect::FactoredDecay};

gpu::PlantedDefect planted_defect(const std::string& name) {
  if (name == "none") return gpu::PlantedDefect::None;
  for (gpu::PlantedDefect d : kPlantedDefects)
    if (name == gpu::planted_defect_name(d)) return d;
  throw InputError(fmt::format("unknown planted defect '{}' (one of: {})", name,
                               fmt::join(gpu_planted_defect_names(), ", ")));
}

// The user's inputs with the run's options applied.
gpu::ForwardInputs with_options(gpu::ForwardInputs in, const GpuRunOptions& options) {
  in.output = options.output == GpuOutput::Fp32 ? gpu::OutputMode::Fp32 : gpu::OutputMode::Rounded;
  in.planted = planted_defect(options.planted_defect);
  if (in.planted != gpu::PlantedDefect::None && !gpu::planted_defects_built())
    throw InputError(fmt::format("planted defect '{}' needs a build configured with -DDPLR_PLANT_DEFECTS=ON",
                                 options.planted_defect));
  return in;
}
}  // namespace

std::vector<std::string> gpu_planted_defect_names() {
  std::vector<std::string> names;
  for (gpu::PlantedDefect d : kPlantedDefects) names.emplace_back(gpu::planted_defect_name(d));
  return names;
}
bool gpu_planted_defects_built() { return gpu::planted_defects_built(); }

TensorMap run_gpu_recurrent(const DplrProblem& p, const GpuRunOptions& options) {
  DeviceProblem d(p);
  const auto& s = p.shape;
  const DType o_dtype = options.output == GpuOutput::Fp32 ? DType::F32 : d.dtype();
  void* o = d.output(s.B * s.T * s.H * s.V, o_dtype);
  auto* ht = static_cast<float*>(d.output(p.num_sequences() * s.H * s.K * s.V, DType::F32));
  gpu::fused_recurrent_forward(with_options(d.inputs(), options), o, ht, p.reverse);
  TensorMap out;
  out["o"] = d.download(o, o_dtype, {s.B, s.T, s.H, s.V});
  out["ht"] = d.download(ht, DType::F32, {p.num_sequences(), s.H, s.K, s.V});
  return out;
}

namespace {
// The chunk forward, staged (each stage its own kernel; every intermediate returned) or fused (the fastest
// path: o and ht only).
TensorMap run_chunk_forward(const DplrProblem& p, int C, bool fused, const GpuRunOptions& options) {
  if (p.reverse) throw InputError("the chunk form runs forward only; reverse is for the recurrent kernel");
  DeviceProblem d(p);
  const auto& s = p.shape;
  // With cu_seqlens when the problem has them (the drivers number the chunks).
  const gpu::ForwardInputs in = with_options(d.inputs(), options);
  const DType o_dtype = options.output == GpuOutput::Fp32 ? DType::F32 : d.dtype();
  // h as the stage oracles lay it out: [B, NT, ...], or with cu_seqlens [1, sum_n ceil(len_n / C), ...], the leading
  // rows of the kernels' h (sized by gpu::num_chunks' upper bound).
  const ChunkGrid grid = ChunkGrid::of(p, C);
  const std::vector<std::int64_t> key{s.B, s.T, s.H, s.K}, value{s.B, s.T, s.H, s.V}, a_shape{s.B, s.T, s.H, C},
      h_shape{grid.rows, grid.NT, s.H, s.K, s.V}, state{p.num_sequences(), s.H, s.K, s.V};
  auto count = [](const std::vector<std::int64_t>& shape) {
    std::int64_t n = 1;
    for (auto x : shape) n *= x;
    return n;
  };
  // One NaN-poisoned buffer carved into every intermediate (gi and ge included), so an element a stage
  // fails to write shows up.
  const gpu::ChunkWorkspaceSizes sizes = gpu::chunk_workspace_floats(in, C);
  auto* buffer = static_cast<float*>(d.output(sizes.total(), DType::F32));
  const gpu::ChunkWorkspace ws = gpu::carve_chunk_workspace(in, C, buffer);
  auto* ht = static_cast<float*>(d.output(count(state), DType::F32));
  void* o = d.output(count(value), o_dtype);
  if (fused) gpu::chunk_forward_fused(in, C, ws, o, ht);
  else gpu::chunk_forward(in, C, ws, o, ht);  // cumsum, A, WY, h, o, each its own kernel
  TensorMap out;
  out["o"] = d.download(o, o_dtype, value);
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

TensorMap run_gpu_chunk(const DplrProblem& p, int C, const GpuRunOptions& options) {
  return run_chunk_forward(p, C, false, options);
}
TensorMap run_gpu_chunk_fused(const DplrProblem& p, int C, const GpuRunOptions& options) {
  return run_chunk_forward(p, C, true, options);
}

#endif

}  // namespace dplr
