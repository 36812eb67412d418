#include "verify/gpu_runner.hpp"

#include <fmt/format.h>

#include "core/error.hpp"

#ifdef DPLR_HAVE_CUDA
#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>

#include "gpu/dplr_gpu.hpp"
#include "reference/chunk_stages.hpp"
#endif

namespace dplr {

#ifndef DPLR_HAVE_CUDA

GpuDevice gpu_device() { return {false, "", "built without CUDA (no nvcc at configure time, or DPLR_ENABLE_CUDA=OFF)"}; }
TensorMap run_gpu_recurrent(const DplrProblem&) { throw InputError("GPU kernels: " + gpu_device().reason); }
TensorMap run_gpu_chunk(const DplrProblem&, int) { throw InputError("GPU kernels: " + gpu_device().reason); }
TensorMap run_gpu_chunk_fused(const DplrProblem&, int) { throw InputError("GPU kernels: " + gpu_device().reason); }

#else

namespace {

void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw gpu::CudaError(fmt::format("{}: {}", what, cudaGetErrorString(status)));
}

struct DeviceFree {
  void operator()(void* p) const { cudaFree(p); }
};
using DeviceBuffer = std::unique_ptr<void, DeviceFree>;

DeviceBuffer device_alloc(std::size_t bytes) {
  void* p = nullptr;
  check(cudaMalloc(&p, std::max<std::size_t>(bytes, 1)), "cudaMalloc");
  return DeviceBuffer(p);
}

gpu::ElemType elem_type(DType dtype, std::string_view tensor) {
  switch (dtype) {
    case DType::F32: return gpu::ElemType::F32;
    case DType::F16: return gpu::ElemType::F16;
    case DType::BF16: return gpu::ElemType::BF16;
    default:
      throw InputError(fmt::format("GPU kernels take f32, f16 or bf16; tensor '{}' is {}", tensor, dtype_name(dtype)));
  }
}

// The tensor's values in `dtype`'s bytes; the values are exact in their own dtype, so converting to a
// dtype at least as wide is exact and to a narrower one rounds to nearest even.
std::vector<std::byte> encode(const Tensor& t, DType dtype) {
  std::vector<std::byte> bytes(t.values.size() * dtype_size(dtype));
  for (std::size_t i = 0; i < t.values.size(); ++i) {
    if (dtype == DType::F32) {
      const float f = static_cast<float>(round_to_dtype(t.values[i], DType::F32));
      std::memcpy(&bytes[i * 4], &f, 4);
    } else {
      const std::uint16_t h = dtype == DType::F16 ? double_to_fp16_bits(t.values[i]) : double_to_bf16_bits(t.values[i]);
      std::memcpy(&bytes[i * 2], &h, 2);
    }
  }
  return bytes;
}

Tensor decode(const std::vector<std::byte>& bytes, DType dtype, std::vector<std::int64_t> shape) {
  Tensor t{dtype, std::move(shape), {}};
  t.values.resize(bytes.size() / dtype_size(dtype));
  for (std::size_t i = 0; i < t.values.size(); ++i) {
    if (dtype == DType::F32) {
      float f;
      std::memcpy(&f, &bytes[i * 4], 4);
      t.values[i] = f;
    } else {
      std::uint16_t h;
      std::memcpy(&h, &bytes[i * 2], 2);
      t.values[i] = dtype == DType::F16 ? fp16_bits_to_double(h) : bf16_bits_to_double(h);
    }
  }
  return t;
}

// The problem's inputs on the device, and the ForwardInputs pointing at them.
class DeviceProblem {
 public:
  explicit DeviceProblem(const DplrProblem& p) : problem_(p) {
    // On the host, before anything is uploaded: the kernels read cu_seqlens without checking it (gpu/dplr_gpu.hpp).
    validate_problem(p, "GPU run");
    dtype_ = p.q.dtype;
    gk_dtype_ = p.gk.dtype == DType::F32 ? DType::F32 : dtype_;
    in_.B = p.shape.B, in_.T = p.shape.T, in_.H = p.shape.H, in_.K = p.shape.K, in_.V = p.shape.V;
    in_.dtype = elem_type(dtype_, "q");
    in_.gk_dtype = elem_type(gk_dtype_, "gk");
    in_.scale = static_cast<float>(p.scale);
    for (auto name : {"k", "v", "a", "b"})
      if (find_input(p, name)->dtype != dtype_)
        throw InputError(fmt::format("GPU kernels need q, k, v, a, b in one dtype; q is {}, {} is {}", dtype_name(dtype_),
                                     name, dtype_name(find_input(p, name)->dtype)));
    in_.q = upload(p.q, dtype_), in_.k = upload(p.k, dtype_), in_.v = upload(p.v, dtype_);
    in_.a = upload(p.a, dtype_), in_.b = upload(p.b, dtype_), in_.gk = upload(p.gk, gk_dtype_);
    if (p.h0) in_.h0 = static_cast<const float*>(upload(*p.h0, DType::F32));
    if (!p.cu_seqlens.empty()) {
      buffers_.push_back(device_alloc(p.cu_seqlens.size() * 8));
      check(cudaMemcpy(buffers_.back().get(), p.cu_seqlens.data(), p.cu_seqlens.size() * 8, cudaMemcpyHostToDevice),
            "cudaMemcpy cu_seqlens");
      in_.cu_seqlens = static_cast<const std::int64_t*>(buffers_.back().get());
      in_.num_sequences = p.num_sequences();
    }
  }
  const gpu::ForwardInputs& inputs() const { return in_; }
  DType dtype() const { return dtype_; }

  // A device buffer of `count` elements of `dtype`, filled with NaN so unwritten elements show.
  void* output(std::int64_t count, DType dtype) {
    const std::size_t bytes = static_cast<std::size_t>(count) * dtype_size(dtype);
    buffers_.push_back(device_alloc(bytes));
    check(cudaMemset(buffers_.back().get(), 0xff, bytes), "cudaMemset");  // all-ones bits: NaN in every float dtype
    return buffers_.back().get();
  }
  Tensor download(const void* device, DType dtype, std::vector<std::int64_t> shape) {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<std::byte> bytes(static_cast<std::size_t>(n) * dtype_size(dtype));
    check(cudaDeviceSynchronize(), "kernel execution");
    check(cudaMemcpy(bytes.data(), device, bytes.size(), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
    return decode(bytes, dtype, std::move(shape));
  }

 private:
  const void* upload(const Tensor& t, DType dtype) {
    const auto bytes = encode(t, dtype);
    buffers_.push_back(device_alloc(bytes.size()));
    check(cudaMemcpy(buffers_.back().get(), bytes.data(), bytes.size(), cudaMemcpyHostToDevice), "cudaMemcpy to device");
    return buffers_.back().get();
  }
  const DplrProblem& problem_;
  DType dtype_, gk_dtype_;
  gpu::ForwardInputs in_;
  std::vector<DeviceBuffer> buffers_;
};

}  // namespace

GpuDevice gpu_device() {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess)
    return {false, "", fmt::format("no usable CUDA device (cudaGetDeviceCount: {})", cudaGetErrorString(status))};
  if (count == 0) return {false, "", "no CUDA device"};
  cudaDeviceProp prop{};
  check(cudaGetDeviceProperties(&prop, 0), "cudaGetDeviceProperties");
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

#endif

}  // namespace dplr
