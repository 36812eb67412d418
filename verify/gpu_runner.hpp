// Runs our CUDA kernels (gpu/dplr_gpu.hpp) on a DplrProblem from the host: inputs converted to the
// kernel's dtype exactly as the problem holds them, outputs and stage tensors copied back as Tensors named
// as the exact reference and stage oracles name them. Built without CUDA, gpu_device() says why none.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.hpp"
#include "reference/problem.hpp"

namespace dplr {

struct GpuDevice {
  bool available = false;
  std::string name;    // "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs)"
  std::string reason;  // why not available: "built without CUDA", "no CUDA device: ..."
};
GpuDevice gpu_device();

// How the kernels write o: in the input dtype (the contract), or in fp32 before that final rounding (the
// fp32-output mode, gpu::OutputMode::Fp32), which shows the 16-bit paths' internal accuracy.
enum class GpuOutput { Rounded, Fp32 };
// The chunk backward's kernel per stage (gpu::BackwardVariant, mirrored here so that g++ code needs no CUDA
// header): Default is each stage's tensor-core kernel where it takes the request, else its fp32-FMA kernel.
enum class GpuKernelChoice { Default, TensorCores, Fma };
struct GpuBackwardKernels {
  GpuKernelChoice recompute = GpuKernelChoice::Default, o = GpuKernelChoice::Default, h = GpuKernelChoice::Default,
                  wy = GpuKernelChoice::Default, a = GpuKernelChoice::Default;
  static GpuBackwardKernels all(GpuKernelChoice c) { return {c, c, c, c, c}; }
};
struct GpuRunOptions {
  GpuOutput output = GpuOutput::Rounded;
  GpuBackwardKernels backward;  // the chunk backward's kernels (run_gpu_chunk_backward, run_gpu_chunk_stages)
  // A planted defect by name (gpu::PlantedDefect: "head-stride", "bwd-state-bf16", ...; "none"), for every run here,
  // forward and backward: only a -DDPLR_PLANT_DEFECTS=ON build runs one, any other refuses it (InputError).
  std::string planted_defect = "none";
};
// The names of the planted defects ("head-stride", ..., "bwd-head-offset", ...), and whether this build can run them.
std::vector<std::string> gpu_planted_defect_names();
bool gpu_planted_defects_built();

// The fused recurrent forward: o (the input dtype, or F32), ht (F32).
TensorMap run_gpu_recurrent(const DplrProblem& problem, const GpuRunOptions& options = {});
// The staged chunk forward: o, ht and every stage tensor (gi, ge, A_qk, A_qb, A_ak, A_ab, A_ab_inv, w, u,
// h, v_new), each stage run alone in pipeline order; h laid out as the stage oracles lay it (ChunkGrid). Both
// chunk runs take cu_seqlens.
TensorMap run_gpu_chunk(const DplrProblem& problem, int chunk_size, const GpuRunOptions& options = {});
// The fused chunk forward (gpu::chunk_forward_fused, the fast path): o and ht.
TensorMap run_gpu_chunk_fused(const DplrProblem& problem, int chunk_size, const GpuRunOptions& options = {});
// The fused recurrent backward (gpu::fused_recurrent_backward) of the problem's do and dht (dht zero when absent):
// dq, dk, dv, da, db (the input dtype), dgk (F32), and dh0 (F32; dL/dh0 is defined without h0). Needs do; do and dht
// must be exactly representable in the kernel's dtypes (do in the inputs', dht in fp32), else InputError: the
// kernel would run another problem than the one the exact reference is given.
// options.planted_defect only (the output mode and the chunk kernels do not apply).
TensorMap run_gpu_recurrent_backward(const DplrProblem& problem, const GpuRunOptions& options = {});
// The staged chunk backward (gpu::chunk_backward; the problem needs do, and may have dht, h0, cu_seqlens): the
// gradients as the exact reference names them, dq, dk, dv, da, db in the input dtype, dgk and dh0 fp32 (dh0
// always: dL/dh0 is defined without h0), and the backward stage tensors the oracles add to them, dA_qk, dA_qb,
// dA_ak, dA_ab, dh, dv_new, dw (fp32; dh laid out as the oracles lay it, ChunkGrid). As run_gpu_chunk does for o,
// dq, dk, dv, da, db are the rounded gradients, not the stages' fp32 totals.
TensorMap run_gpu_chunk_backward(const DplrProblem& problem, int chunk_size, const GpuRunOptions& options = {});
// The chunk form's stages one kernel at a time, forward then backward, in pipeline order (`dplr stages --gpu`, and the
// stage checks of `dplr check`'s chunk-bwd cases): the staged forward (gpu::chunk_forward: cumsum, A, WY, h, o), then
// o_bwd, h_bwd, WY_bwd, A_bwd, cumsum_bwd called one by one on the forward's own tensors, each stage on its
// predecessors' outputs, so that a wrong stage shows first in its own tensors. Returns every stage tensor the oracles
// name (reference/chunk_stages.hpp), in their layouts: gi, ge, A_qk, A_qb, A_ak, A_ab, qg, kg, bg, ag, eg_last,
// A_ab_inv, w, u, h, v_new, ht, o (the input dtype), dA_qk, dA_qb, dh, dv_new, dw, dh0, dA_ab, dA_ak, and the fp32
// totals dv, dq, dk, da, db (not rounded: the stages' own outputs) and dgk. The problem needs do. The backward
// stages run options.backward's kernels (its `recompute` does not apply: the forward here is the staged one).
TensorMap run_gpu_chunk_stages(const DplrProblem& problem, int chunk_size, const GpuRunOptions& options = {});

}  // namespace dplr
