#include "verify/gpu_harness.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/dtype.hpp"
#include "core/error.hpp"
#include "reference/problem.hpp"

namespace dplr {

void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw gpu::CudaError(fmt::format("{}: {} ({})", what, cudaGetErrorName(status), cudaGetErrorString(status)));
}

DeviceBuffer::DeviceBuffer(std::size_t bytes) : bytes_(bytes) {
  void* p = nullptr;
  check_cuda(cudaMalloc(&p, std::max<std::size_t>(bytes, 1)), "cudaMalloc");
  ptr_.reset(p);
}
void DeviceBuffer::Free::operator()(void* p) const { cudaFree(p); }
void DeviceBuffer::poison() { check_cuda(cudaMemset(get(), 0xff, std::max<std::size_t>(bytes_, 1)), "cudaMemset"); }

gpu::ElemType kernel_dtype(DType dtype) {
  switch (dtype) {
    case DType::F32: return gpu::ElemType::F32;
    case DType::F16: return gpu::ElemType::F16;
    case DType::BF16: return gpu::ElemType::BF16;
    default: throw InputError(fmt::format("GPU kernels take f32, f16 or bf16, not {}", dtype_name(dtype)));
  }
}
DType core_dtype(gpu::ElemType t) {
  return t == gpu::ElemType::F32 ? DType::F32 : t == gpu::ElemType::F16 ? DType::F16 : DType::BF16;
}

DeviceBuffer upload_values(const std::vector<double>& values, gpu::ElemType t) {
  const std::size_t size = gpu::elem_size(t);
  std::vector<unsigned char> host(values.size() * size);
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (t == gpu::ElemType::F32) {
      const float f = static_cast<float>(values[i]);
      std::memcpy(&host[4 * i], &f, 4);
    } else {
      const std::uint16_t h = t == gpu::ElemType::F16 ? double_to_fp16_bits(values[i]) : double_to_bf16_bits(values[i]);
      std::memcpy(&host[2 * i], &h, 2);
    }
  }
  DeviceBuffer d(host.size());
  check_cuda(cudaMemcpy(d.get(), host.data(), host.size(), cudaMemcpyHostToDevice), "cudaMemcpy to device");
  return d;
}

std::vector<double> download_values(const void* p, std::size_t count, gpu::ElemType t) {
  const std::size_t size = gpu::elem_size(t);
  std::vector<unsigned char> host(count * size);
  check_cuda(cudaDeviceSynchronize(), "kernel execution (cudaDeviceSynchronize)");
  check_cuda(cudaMemcpy(host.data(), p, host.size(), cudaMemcpyDeviceToHost), "cudaMemcpy to host");
  std::vector<double> x(count);
  for (std::size_t i = 0; i < count; ++i) {
    if (t == gpu::ElemType::F32) {
      float f;
      std::memcpy(&f, &host[4 * i], 4);
      x[i] = f;
    } else {
      std::uint16_t h;
      std::memcpy(&h, &host[2 * i], 2);
      x[i] = t == gpu::ElemType::F16 ? fp16_bits_to_double(h) : bf16_bits_to_double(h);
    }
  }
  return x;
}

double rel_rmse(const std::vector<double>& x, const std::vector<double>& ref) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

DeviceProblem::DeviceProblem(const DplrProblem& p) {
  // On the host, before anything is uploaded: the kernels read cu_seqlens without checking it (gpu/dplr_gpu.hpp).
  validate_problem(p, "GPU run");
  dtype_ = p.q.dtype;
  gk_dtype_ = p.gk.dtype == DType::F32 ? DType::F32 : dtype_;
  in_.B = p.shape.B, in_.T = p.shape.T, in_.H = p.shape.H, in_.K = p.shape.K, in_.V = p.shape.V;
  in_.dtype = kernel_dtype(dtype_);
  in_.gk_dtype = kernel_dtype(gk_dtype_);
  in_.scale = static_cast<float>(p.scale);
  for (auto name : {"k", "v", "a", "b"})
    if (find_input(p, name)->dtype != dtype_)
      throw InputError(fmt::format("GPU kernels need q, k, v, a, b in one dtype; q is {}, {} is {}", dtype_name(dtype_),
                                   name, dtype_name(find_input(p, name)->dtype)));
  in_.q = upload(p.q, dtype_), in_.k = upload(p.k, dtype_), in_.v = upload(p.v, dtype_);
  in_.a = upload(p.a, dtype_), in_.b = upload(p.b, dtype_), in_.gk = upload(p.gk, gk_dtype_);
  if (p.h0) in_.h0 = static_cast<const float*>(upload(*p.h0, DType::F32));
  // A do in another dtype is refused by backward_inputs() only, so that forward runs of such a problem still run.
  if (p.grad_o && p.grad_o->dtype == dtype_) d_o_ = upload(*p.grad_o, dtype_);
  else if (p.grad_o) no_backward_ = fmt::format("GPU kernels take do in the inputs' dtype; q is {}, do is {}",
                                               dtype_name(dtype_), dtype_name(p.grad_o->dtype));
  if (p.grad_ht) dht_ = static_cast<const float*>(upload(*p.grad_ht, DType::F32));
  if (!p.cu_seqlens.empty()) {
    buffers_.emplace_back(p.cu_seqlens.size() * 8);
    check_cuda(cudaMemcpy(buffers_.back().get(), p.cu_seqlens.data(), p.cu_seqlens.size() * 8, cudaMemcpyHostToDevice),
               "cudaMemcpy cu_seqlens");
    in_.cu_seqlens = static_cast<const std::int64_t*>(buffers_.back().get());
    in_.num_sequences = p.num_sequences();
  }
}

gpu::BackwardInputs DeviceProblem::backward_inputs() const {
  if (!d_o_) throw InputError(no_backward_);
  gpu::BackwardInputs b;
  b.fwd = in_;
  b.d_o = d_o_;
  b.dht = dht_;
  return b;
}

const void* DeviceProblem::upload(const Tensor& t, DType dtype) {
  buffers_.push_back(upload_values(t.values, kernel_dtype(dtype)));
  return buffers_.back().get();
}

void* DeviceProblem::output(std::int64_t count, DType dtype) {
  buffers_.emplace_back(static_cast<std::size_t>(count) * dtype_size(dtype));
  buffers_.back().poison();
  return buffers_.back().get();
}

Tensor DeviceProblem::download(const void* device, DType dtype, std::vector<std::int64_t> shape) const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return Tensor{dtype, std::move(shape), download_values(device, static_cast<std::size_t>(n), kernel_dtype(dtype))};
}

}  // namespace dplr
