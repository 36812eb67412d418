#include "verify/gpu_runner.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/dtype.hpp"
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
TensorMap run_gpu_recurrent_backward(const DplrProblem&, const GpuRunOptions&) {
  throw InputError("GPU kernels: " + gpu_device().reason);
}
TensorMap run_gpu_chunk_backward(const DplrProblem&, int, const GpuRunOptions&) { throw InputError("GPU kernels: " + gpu_device().reason); }
TensorMap run_gpu_chunk_stages(const DplrProblem&, int, const GpuRunOptions&) { throw InputError("GPU kernels: " + gpu_device().reason); }

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
    gpu::PlantedDefect::MissingBarrier, gpu::PlantedDefect::Bf16State,     gpu::PlantedDefect::FactoredDecay,
    gpu::PlantedDefect::BwdHeadOffset,  gpu::PlantedDefect::BwdStateBf16,  gpu::PlantedDefect::BwdDgkExclusive,
    gpu::PlantedDefect::RecurrentBwdStateBf16};

gpu::PlantedDefect planted_defect(const std::string& name) {
  if (name == "none") return gpu::PlantedDefect::None;
  for (gpu::PlantedDefect d : kPlantedDefects)
    if (name == gpu::planted_defect_name(d)) return d;
  throw InputError(fmt::format("unknown planted defect '{}' (one of: {})", name,
                               fmt::join(gpu_planted_defect_names(), ", ")));
}

// The run's planted defect, refused (InputError) by a build without them.
gpu::PlantedDefect planted_of(const GpuRunOptions& options) {
  const gpu::PlantedDefect d = planted_defect(options.planted_defect);
  if (d != gpu::PlantedDefect::None && !gpu::planted_defects_built())
    throw InputError(fmt::format("planted defect '{}' needs a build configured with -DDPLR_PLANT_DEFECTS=ON",
                                 options.planted_defect));
  return d;
}

// The user's inputs with the run's options applied.
gpu::ForwardInputs with_options(gpu::ForwardInputs in, const GpuRunOptions& options) {
  in.output = options.output == GpuOutput::Fp32 ? gpu::OutputMode::Fp32 : gpu::OutputMode::Rounded;
  in.planted = planted_of(options);
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
std::int64_t count(const std::vector<std::int64_t>& shape) {
  std::int64_t n = 1;
  for (auto x : shape) n *= x;
  return n;
}

// The tensor shapes of the chunk form's runs: key [B, T, H, K], value [B, T, H, V], A rows [B, T, H, C], the
// per-chunk states as the stage oracles lay them out ([B, NT, ...], or with cu_seqlens [1, sum_n ceil(len_n / C),
// ...], the leading rows of the kernels' buffers, sized by gpu::num_chunks' upper bound) and the final states.
struct ChunkShapes {
  std::vector<std::int64_t> key, value, a_rows, chunk_states, state;
  static ChunkShapes of(const DplrProblem& p, int C) {
    const auto& s = p.shape;
    const ChunkGrid grid = ChunkGrid::of(p, C);
    return {{s.B, s.T, s.H, s.K}, {s.B, s.T, s.H, s.V}, {s.B, s.T, s.H, C}, {grid.rows, grid.NT, s.H, s.K, s.V},
            {p.num_sequences(), s.H, s.K, s.V}};
  }
};

// The staged forward's stage tensors in `ws` (fp32), named and laid out as the oracles name them: gi, ge, A_qk,
// A_qb, A_ak, A_ab, A_ab_inv, w, u, h, v_new, and with `gated` stage A's gated operands qg, kg, bg, ag, eg_last too.
void download_forward_stages(const DeviceProblem& d, const gpu::ChunkWorkspace& ws, const ChunkShapes& shapes, bool gated,
                             TensorMap& out) {
  const auto& [key, value, a_shape, h_shape, state] = shapes;
  std::vector<std::int64_t> chunk_key = h_shape;  // eg_last [B', NT, H, K]: the per-chunk states' leading dims
  chunk_key.pop_back();
  const std::pair<const char*, std::pair<const float*, const std::vector<std::int64_t>*>> stages[] = {
      {"gi", {ws.gi, &key}},         {"ge", {ws.ge, &key}},         {"A_qk", {ws.A_qk, &a_shape}},
      {"A_qb", {ws.A_qb, &a_shape}}, {"A_ak", {ws.A_ak, &a_shape}}, {"A_ab", {ws.A_ab, &a_shape}},
      {"A_ab_inv", {ws.A_ab_inv, &a_shape}}, {"w", {ws.w, &key}},   {"u", {ws.u, &value}},
      {"h", {ws.h, &h_shape}},       {"v_new", {ws.v_new, &value}}};
  for (const auto& [name, buffer_and_shape] : stages)
    out[name] = d.download(buffer_and_shape.first, DType::F32, *buffer_and_shape.second);
  if (!gated) return;
  const gpu::GatedOperands& g = ws.gated;
  for (const auto& [name, ptr] : {std::pair<const char*, const float*>{"qg", g.qg}, {"kg", g.kg}, {"bg", g.bg}, {"ag", g.ag}})
    out[name] = d.download(ptr, DType::F32, key);
  out["eg_last"] = d.download(g.eg_last, DType::F32, chunk_key);
}

// The chunk forward, staged (each stage its own kernel; every intermediate returned) or fused (the fastest
// path: o and ht only).
TensorMap run_chunk_forward(const DplrProblem& p, int C, bool fused, const GpuRunOptions& options) {
  if (p.reverse) throw InputError("the chunk form runs forward only; reverse is for the recurrent kernel");
  DeviceProblem d(p);
  // With cu_seqlens when the problem has them (the drivers number the chunks).
  const gpu::ForwardInputs in = with_options(d.inputs(), options);
  const DType o_dtype = options.output == GpuOutput::Fp32 ? DType::F32 : d.dtype();
  const ChunkShapes shapes = ChunkShapes::of(p, C);
  // One NaN-poisoned buffer carved into every intermediate (gi and ge included), so an element a stage
  // fails to write shows up.
  const gpu::ChunkWorkspaceSizes sizes = gpu::chunk_workspace_floats(in, C);
  auto* buffer = static_cast<float*>(d.output(sizes.total(), DType::F32));
  const gpu::ChunkWorkspace ws = gpu::carve_chunk_workspace(in, C, buffer);
  auto* ht = static_cast<float*>(d.output(count(shapes.state), DType::F32));
  void* o = d.output(count(shapes.value), o_dtype);
  if (fused) gpu::chunk_forward_fused(in, C, ws, o, ht);
  else gpu::chunk_forward(in, C, ws, o, ht);  // cumsum, A, WY, h, o, each its own kernel
  TensorMap out;
  out["o"] = d.download(o, o_dtype, shapes.value);
  out["ht"] = d.download(ht, DType::F32, shapes.state);
  if (fused) return out;
  download_forward_stages(d, ws, shapes, false, out);
  return out;
}
}  // namespace

namespace {
// Refuses (naming the tensor) unless every value of `t` is exact in `dtype`: rounded on upload, the kernel would
// run another problem than the one the exact reference is given.
void require_exact(const Tensor& t, DType dtype, std::string_view name) {
  for (std::size_t i = 0; i < t.values.size(); ++i)
    if (round_to_dtype(t.values[i], dtype) != t.values[i])
      throw InputError(fmt::format("GPU backward: '{}' element {} = {} is not exact in {}, the dtype the kernel takes "
                                   "'{}' in; round it to {} first",
                                   name, i, t.values[i], dtype_name(dtype), name, dtype_name(dtype)));
}
}  // namespace

TensorMap run_gpu_recurrent_backward(const DplrProblem& p, const GpuRunOptions& options) {
  if (!p.grad_o) throw InputError("the GPU backward needs the upstream gradient 'do'");
  require_exact(*p.grad_o, p.q.dtype, "do");
  if (p.grad_ht) require_exact(*p.grad_ht, DType::F32, "dht");
  const gpu::PlantedDefect planted = planted_of(options);  // refused before any device work
  DeviceProblem d(p);
  const auto& s = p.shape;
  gpu::ForwardInputs in = d.inputs();
  in.planted = planted;
  const DeviceBuffer grad_o = upload_values(p.grad_o->values, in.dtype);
  DeviceBuffer dht;
  gpu::RecurrentBackwardArgs args;
  args.grad_o = grad_o.get();
  if (p.grad_ht) {
    dht = upload_values(p.grad_ht->values, gpu::ElemType::F32);
    args.dht = dht.f();
  }
  args.reverse = p.reverse;
  const std::int64_t N = p.num_sequences(), key = s.B * s.T * s.H * s.K;
  args.dq = d.output(key, d.dtype()), args.dk = d.output(key, d.dtype());
  args.da = d.output(key, d.dtype()), args.db = d.output(key, d.dtype());
  args.dv = d.output(s.B * s.T * s.H * s.V, d.dtype());
  args.dgk = static_cast<float*>(d.output(key, DType::F32));
  args.dh0 = static_cast<float*>(d.output(N * s.H * s.K * s.V, DType::F32));
  args.workspace = static_cast<float*>(d.output(gpu::fused_recurrent_backward_workspace(in).total(), DType::F32));
  gpu::fused_recurrent_backward(in, args);
  const std::vector<std::int64_t> key_shape{s.B, s.T, s.H, s.K};
  TensorMap out;
  out["dq"] = d.download(args.dq, d.dtype(), key_shape);
  out["dk"] = d.download(args.dk, d.dtype(), key_shape);
  out["dv"] = d.download(args.dv, d.dtype(), {s.B, s.T, s.H, s.V});
  out["da"] = d.download(args.da, d.dtype(), key_shape);
  out["db"] = d.download(args.db, d.dtype(), key_shape);
  out["dgk"] = d.download(args.dgk, DType::F32, key_shape);
  if (args.dh0) out["dh0"] = d.download(args.dh0, DType::F32, {N, s.H, s.K, s.V});
  return out;
}

TensorMap run_gpu_chunk(const DplrProblem& p, int C, const GpuRunOptions& options) {
  return run_chunk_forward(p, C, false, options);
}
TensorMap run_gpu_chunk_fused(const DplrProblem& p, int C, const GpuRunOptions& options) {
  return run_chunk_forward(p, C, true, options);
}

namespace {
gpu::BwdKernel to_gpu(GpuKernelChoice c) {
  return c == GpuKernelChoice::TensorCores ? gpu::BwdKernel::TensorCores
         : c == GpuKernelChoice::Fma       ? gpu::BwdKernel::Fma
                                           : gpu::BwdKernel::Default;
}
gpu::BackwardVariant to_gpu(const GpuBackwardKernels& k) {
  return {to_gpu(k.recompute), to_gpu(k.o), to_gpu(k.h), to_gpu(k.wy), to_gpu(k.a)};
}
}  // namespace

TensorMap run_gpu_chunk_backward(const DplrProblem& p, int C, const GpuRunOptions& options) {
  if (p.reverse) throw InputError("the chunk form runs forward only; reverse is for the recurrent kernel");
  const gpu::PlantedDefect planted = planted_of(options);  // refused before any device work
  DeviceProblem d(p);
  gpu::BackwardInputs in = d.backward_inputs();  // the driver numbers the chunks itself with cu_seqlens
  in.variant = to_gpu(options.backward);
  in.fwd.planted = planted;
  const auto [key, value, a_shape, h_shape, state] = ChunkShapes::of(p, C);
  // One NaN-poisoned buffer carved into every intermediate, so an element a stage fails to write shows up; only the
  // pieces the driver uses for this request (the Driver scope, as a training step would allocate it).
  constexpr gpu::BackwardWorkspaceScope scope = gpu::BackwardWorkspaceScope::Driver;
  const gpu::BackwardWorkspaceSizes sizes = gpu::chunk_backward_workspace_floats(in, C, scope);
  auto* buffer = static_cast<float*>(d.output(sizes.total(), DType::F32));
  const gpu::BackwardWorkspace ws = gpu::carve_backward_workspace(in, C, buffer, scope);
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

TensorMap run_gpu_chunk_stages(const DplrProblem& p, int C, const GpuRunOptions& options) {
  if (p.reverse) throw InputError("the chunk form runs forward only; reverse is for the recurrent kernel");
  DeviceProblem d(p);
  gpu::BackwardInputs in = d.backward_inputs();
  in.variant = to_gpu(options.backward);
  in.fwd.planted = planted_of(options);  // the forward's stages and the backward's
  const ChunkShapes shapes = ChunkShapes::of(p, C);
  const auto& [key, value, a_shape, h_shape, state] = shapes;
  // One NaN-poisoned buffer carved into every intermediate, so an element a stage fails to write shows up.
  auto* buffer = static_cast<float*>(d.output(gpu::chunk_backward_workspace_floats(in, C).total(), DType::F32));
  const gpu::BackwardWorkspace ws = gpu::carve_backward_workspace(in, C, buffer);
  const gpu::ChunkWorkspace& fw = ws.forward;
  const gpu::GatedOperands& g = fw.gated;
  auto* ht = static_cast<float*>(d.output(count(state), DType::F32));
  void* o = d.output(count(value), d.dtype());
  auto* dh0 = static_cast<float*>(d.output(count(state), DType::F32));
  auto* dgk = static_cast<float*>(d.output(count(key), DType::F32));
  // The forward, staged: cumsum, A, WY, h, o (with cu_seqlens it fills fw.chunk_offsets, which the backward stages
  // then read).
  gpu::chunk_forward(in.fwd, C, fw, o, ht);
  if (in.fwd.cu_seqlens) {
    in.fwd.chunk_offsets = fw.chunk_offsets;
    in.fwd.chunk_offsets_C = C;
  }
  // The backward, one stage a call, on the forward's tensors.
  const gpu::GradientShares& sh = ws.shares;
  gpu::chunk_o_bwd(in, C, fw.A_qk, fw.A_qb, g.qg, fw.v_new, fw.h, ws.dA_qk, ws.dA_qb, ws.dv, sh);
  gpu::chunk_h_bwd(in, C, g.kg, g.bg, g.eg_last, fw.w, fw.h, fw.v_new, ws.dh, ws.dv_new, ws.dw, ws.dv, dh0, sh);
  gpu::chunk_WY_bwd(in, C, fw.A_ab_inv, fw.A_ak, fw.w, fw.u, ws.dw, ws.dv_new, ws.dA_ab, ws.dA_ak, ws.dv, sh);
  gpu::chunk_A_bwd(in, C, ws.dA_qk, ws.dA_qb, ws.dA_ak, ws.dA_ab, ws.dq, ws.dk, ws.da, ws.db, sh);
  gpu::chunk_cumsum_bwd(in, C, dgk, sh);
  TensorMap t;
  t["o"] = d.download(o, d.dtype(), value);
  t["ht"] = d.download(ht, DType::F32, state);
  download_forward_stages(d, fw, shapes, true, t);
  const std::pair<const char*, std::pair<const float*, const std::vector<std::int64_t>*>> stages[] = {
      {"dA_qk", {ws.dA_qk, &a_shape}}, {"dA_qb", {ws.dA_qb, &a_shape}}, {"dA_ak", {ws.dA_ak, &a_shape}},
      {"dA_ab", {ws.dA_ab, &a_shape}}, {"dh", {ws.dh, &h_shape}},       {"dv_new", {ws.dv_new, &value}},
      {"dw", {ws.dw, &key}},           {"dv", {ws.dv, &value}},         {"dq", {ws.dq, &key}},
      {"dk", {ws.dk, &key}},           {"da", {ws.da, &key}},           {"db", {ws.db, &key}},
      {"dgk", {dgk, &key}},            {"dh0", {dh0, &state}}};
  for (const auto& [name, buffer_and_shape] : stages)
    t[name] = d.download(buffer_and_shape.first, DType::F32, *buffer_and_shape.second);
  return t;
}

#endif

}  // namespace dplr
