// The CUDA runtime calls of the host harness (verify/gpu_harness.cpp, gpu_runner.cpp) on host memory, so that the
// real GPU tests and `dplr gradcheck --gpu` run against the emulated kernels (README.md). One "device", named
// "EMULATED (CPU)"; the forward and chunk entry points, which are not emulated, throw gpu::Unsupported.
#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>

#include "gpu/dplr_gpu.hpp"

extern "C" {
cudaError_t cudaMalloc(void** p, size_t bytes) {
  *p = std::aligned_alloc(256, (bytes + 255) / 256 * 256);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t cudaFree(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, enum cudaMemcpyKind) {
  std::memcpy(dst, src, bytes);
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp* prop, int) {
  std::memset(prop, 0, sizeof(*prop));
  std::strcpy(prop->name, "EMULATED (CPU)");
  prop->major = 9;
  prop->multiProcessorCount = 1;
  return cudaSuccess;
}
const char* cudaGetErrorName(cudaError_t) { return "cudaErrorEmulated"; }
const char* cudaGetErrorString(cudaError_t) { return "emulated CUDA runtime"; }
}

namespace dplr::gpu {
namespace {
[[noreturn]] void not_emulated(const char* what) { throw Unsupported(std::string(what) + " is not emulated"); }
}  // namespace
void fused_recurrent_forward(const ForwardInputs&, void*, float*, bool, cudaStream_t) { not_emulated("fused_recurrent_forward"); }
ChunkWorkspaceSizes chunk_workspace_floats(const ForwardInputs&, int) { not_emulated("chunk_workspace_floats"); }
ChunkWorkspace carve_chunk_workspace(const ForwardInputs&, int, float*) { not_emulated("carve_chunk_workspace"); }
void chunk_forward(const ForwardInputs&, int, const ChunkWorkspace&, void*, float*, cudaStream_t) { not_emulated("chunk_forward"); }
void chunk_forward_fused(const ForwardInputs&, int, const ChunkWorkspace&, void*, float*, cudaStream_t) {
  not_emulated("chunk_forward_fused");
}
}  // namespace dplr::gpu
