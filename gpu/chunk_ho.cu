// Stages "h" and "o" fused (chunk_h_o; the fused chunk path, chunk_forward_fused), chunk after chunk of one
// (sequence, head, 32 columns of V); S is the state before the chunk:
//     v_new = u + w S
//     o     = qg S + A_qk v + A_qb v_new                          (stage o, with S in shared memory)
//     S'    = diag(exp(gl)) S + kg^T v + bg^T v_new              (stage h)
// The state h of every chunk is never written (nor v_new): no 537 MB round trip of h at B8 T4096 H16 D64 C16.
// This file checks the request and picks the kernel (HOVariant): chunk_ho_fma.cu (fp32 FMA, any dtype) or
// chunk_ho_mma.cu (tensor cores, 16-bit inputs at C = 16).
#include <cstdint>
#include <string>

#include "gpu/chunk_ho.cuh"

namespace dplr::gpu {
using namespace detail;

bool chunk_fused_ho(const ForwardInputs& in, int C) {
  check_chunk_shape(in, C);
  if (in.dtype != ElemType::F32 && in.V % 2 != 0) return false;
  if (reinterpret_cast<std::uintptr_t>(in.v) % 4 != 0) return false;
  return ho::fma_fits(C, in.K);
}

namespace {
bool a16(const void* q) { return reinterpret_cast<std::uintptr_t>(q) % 16 == 0; }
// Whether the tensor-core kernel takes the request's shape and inputs (its operands are checked apart).
bool mma_takes(const ForwardInputs& in, int C) {
  return C == 16 && in.dtype != ElemType::F32 && in.K % 4 == 0 &&
         in.V % (16 / static_cast<std::int64_t>(elem_size(in.dtype))) == 0 && a16(in.v);
}
}  // namespace

void chunk_h_o(const ForwardInputs& in, int C, const float* A_qk, const float* A_qb, const float* qg, const float* kg,
               const float* bg, const float* eg_last, const float* w, const float* u, void* o, float* ht,
               cudaStream_t stream, const HOStates& states) {
  check_chunk(in, C);
  if (!chunk_fused_ho(in, C))
    throw Unsupported("dplr::gpu: chunk_h_o does not take this request (V odd with 16-bit inputs, or C = " +
                      std::to_string(C) + " with K = " + std::to_string(in.K) + " does not fit two stages)");
  const bool keep = states.h || states.v_new;
  if (keep) {
    if (!states.h || !states.v_new) throw Unsupported("dplr::gpu: chunk_h_o's HOStates needs both h and v_new");
    if (A_qk || A_qb || qg || o)
      throw Unsupported("dplr::gpu: chunk_h_o with HOStates skips o: A_qk, A_qb, qg and o must be nullptr");
    if (reinterpret_cast<std::uintptr_t>(states.h) % 8 != 0 || reinterpret_cast<std::uintptr_t>(states.v_new) % 8 != 0)
      throw Unsupported("dplr::gpu: chunk_h_o's HOStates h and v_new must be 8-byte aligned");
    if (!kg || !bg || !eg_last || !w || !u)
      throw Unsupported("dplr::gpu: chunk_h_o with HOStates needs kg, bg, eg_last, w and u");
  } else if (!A_qk || !A_qb || !qg || !kg || !bg || !eg_last || !w || !u || !o) {
    throw Unsupported("dplr::gpu: chunk_h_o needs A_qk, A_qb, qg, kg, bg, eg_last, w, u and o");
  }
  ho::HOArgs p{in.v, kg, bg, eg_last, in.h0, w, u, qg, A_qk, A_qb, o, in.output == OutputMode::Fp32, ht,
               chunk_geom(in, C), in.H, static_cast<int>(in.K), static_cast<int>(in.V), states.h, states.v_new};
  const dim3 grid = sequential_grid(in, (in.V + ho::kVT - 1) / ho::kVT);
  const bool vec = in.K % 4 == 0 && in.V % (16 / static_cast<std::int64_t>(elem_size(in.dtype))) == 0 && a16(in.v) &&
                   a16(kg) && a16(bg) && a16(eg_last) && a16(w) && a16(u) && a16(qg);
  // The tensor-core kernel: 16-bit inputs at C = 16 with 16-byte copies and o aligned for its pair stores (bf16x2:
  // 4 bytes; float2 in the fp32-output mode: 8).
  const std::uintptr_t o_pair = in.output == OutputMode::Fp32 ? 8 : 4;
  const bool tensor_cores =
      C == 16 && in.dtype != ElemType::F32 && vec && reinterpret_cast<std::uintptr_t>(o) % o_pair == 0;
  HOVariant variant = in.variant.ho;
  if (variant == HOVariant::Default) variant = tensor_cores || keep ? HOVariant::TensorCores : HOVariant::Fma2;
  if (variant == HOVariant::TensorCores && !tensor_cores)
    throw Unsupported("dplr::gpu: chunk_h_o's tensor-core variant needs 16-bit inputs, C = 16, K a multiple of 4, V a "
                      "multiple of 8, 16-byte aligned v, kg, bg, eg_last, w, u, qg and o aligned to 4 bytes (8 in the fp32-output mode) (got " +
                      std::string(elem_type_name(in.dtype)) + ", C = " + std::to_string(C) + ", K = " +
                      std::to_string(in.K) + ", V = " + std::to_string(in.V) + ")" +
                      (keep ? "; HOStates runs on the tensor-core kernel only" : ""));
  if (keep && variant != HOVariant::TensorCores)
    throw Unsupported(std::string("dplr::gpu: chunk_h_o's HOStates runs on the tensor-core kernel only (variant.ho = ") +
                      variant_name(variant) + ")");
  if (variant == HOVariant::TensorCores) ho::launch_mma(p, in.dtype, grid, keep, stream);
  else ho::launch_fma(p, in.dtype, C, variant == HOVariant::Fma1 ? 1 : 2, vec, grid, stream);
  DPLR_LAUNCHED("chunk_ho_kernel");
}

bool chunk_recompute_tensor_cores_supported(const BackwardInputs& in, int C) {
  // chunk_A_WY with its backward tensors, then the tensor-core h+o kernel with HOStates on the workspace's operands
  // (carve_chunk_workspace aligns every piece to 256 bytes).
  return chunk_A_WY_supported(in.fwd, C) && chunk_fused_ho(in.fwd, C) && mma_takes(in.fwd, C);
}

}  // namespace dplr::gpu
