// The one host harness of our CUDA kernels: device buffers, uploads and downloads in a kernel dtype, a problem's
// inputs on the device, CUDA status checks that throw. Used by the `dplr check` sweep (verify/gpu_runner.cpp),
// the GPU tests (tests/gpu/) and the GPU bench (bench/), so that what is timed is what was checked.
// Needs CUDA (built only where gpu/ is); plain C++, no device code.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "gpu/dplr_gpu.hpp"
#include "reference/problem.hpp"

namespace dplr {

// Throws gpu::CudaError("<what>: <error name> (<message>)") unless status is cudaSuccess. `what` names the call.
void check_cuda(cudaError_t status, const char* what);
#define DPLR_CHECK_CUDA(call) ::dplr::check_cuda((call), #call)

// A device allocation of `bytes` (at least 1), freed on destruction.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(std::size_t bytes);
  void* get() const { return ptr_.get(); }
  float* f() const { return static_cast<float*>(ptr_.get()); }
  std::size_t bytes() const { return bytes_; }
  // All-ones bytes: NaN in fp32, fp16 and bf16, so that an element a kernel fails to write shows.
  void poison();

 private:
  struct Free {
    void operator()(void* p) const;
  };
  std::unique_ptr<void, Free> ptr_;
  std::size_t bytes_ = 0;
};

gpu::ElemType kernel_dtype(DType dtype);  // throws InputError for a dtype the kernels do not take
DType core_dtype(gpu::ElemType t);

// Values (exact in their own dtype, or rounded to nearest even into a narrower one) in the bytes of `t`.
DeviceBuffer upload_values(const std::vector<double>& values, gpu::ElemType t);
// `count` elements of type `t` at device pointer `p`, as doubles (exact). Synchronizes the device first, so a
// failed kernel is reported here as the CUDA error it raised.
std::vector<double> download_values(const void* p, std::size_t count, gpu::ElemType t);

// The relative RMSE of x against ref, ||x - ref|| / ||ref|| (||x - ref|| when ref is all zero): the one accuracy
// figure the GPU tests and the bench's validation compare with their bars.
double rel_rmse(const std::vector<double>& x, const std::vector<double>& ref);

// A problem's inputs on the device and the ForwardInputs pointing at them: q, k, v, a, b in q's dtype (they must
// share it), gk in its own dtype when that is fp32, else q's; h0 fp32; cu_seqlens int64. The upstream gradients
// too when the problem has them (BackwardInputs): do in q's dtype (it must have it), dht fp32. Outputs it
// allocates are poisoned (NaN) and owned by it.
class DeviceProblem {
 public:
  explicit DeviceProblem(const DplrProblem& problem);
  const gpu::ForwardInputs& inputs() const { return in_; }
  // The forward's inputs with do and dht; throws InputError when the problem has no do, or do in another dtype.
  gpu::BackwardInputs backward_inputs() const;
  DType dtype() const { return dtype_; }
  void* output(std::int64_t count, DType dtype);
  Tensor download(const void* device, DType dtype, std::vector<std::int64_t> shape) const;

 private:
  const void* upload(const Tensor& t, DType dtype);
  DType dtype_, gk_dtype_;
  gpu::ForwardInputs in_;
  const void* d_o_ = nullptr;
  const float* dht_ = nullptr;
  std::string no_backward_ = "a GPU backward run needs the problem's do (grad_o)";
  std::vector<DeviceBuffer> buffers_;
};

}  // namespace dplr
