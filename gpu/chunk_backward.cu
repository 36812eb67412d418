// The staged chunk backward: a thin orchestrator over the stages (docs/chunk-backward.md). It recomputes the
// forward tensors the backward reads (chunk_backward_recompute: the fused forward's tensor-core kernels chunk_A_WY
// and chunk_h_o with their backward options where they apply, else chunk_A, chunk_WY, chunk_h; fla too recomputes
// rather than keeping them), then runs o_bwd -> h_bwd -> WY_bwd -> A_bwd -> cumsum_bwd; each gradient's last writer
// rounds its fp32 total once to the inputs' dtype (dv: WY_bwd; dq, dk, da, db: chunk_A_cumsum_bwd, in the
// tensor-core A_bwd's stores). Also the backward's request checks and its workspace.
#include <string>

#include "gpu/chunk_bwd_mma.cuh"  // chunk_WY_bwd_rounding_dv
#include "gpu/chunk_h_bwd.cuh"
#include "gpu/common.cuh"

namespace dplr::gpu {
namespace {
using namespace detail;

template <typename T>
__global__ void __launch_bounds__(256) round_to_dtype_kernel(const float* x, void* y, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * std::int64_t(blockDim.x) + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    st<T>(y, i, x[i]);
}

}  // namespace

void detail::round_to_dtype(ElemType dtype, const float* x, void* y, std::int64_t n, cudaStream_t stream) {
  const unsigned blocks = static_cast<unsigned>(std::min<std::int64_t>((n + 255) / 256, 65535));
  dispatch_types(dtype, dtype, [&](auto t, auto) { round_to_dtype_kernel<decltype(t)><<<blocks, 256, 0, stream>>>(x, y, n); });
  DPLR_LAUNCHED("round_to_dtype_kernel");
}

void check_backward(const BackwardInputs& in, int C) {
  check_chunk(in.fwd, C);
  if (!in.d_o) refuse("the chunk backward needs do (BackwardInputs::d_o, [B, T, H, V] in the inputs' dtype)");
  const std::pair<const char*, BwdKernel> stages[] = {{"recompute", in.variant.recompute}, {"o", in.variant.o},
                                                      {"h", in.variant.h}, {"wy", in.variant.wy}, {"a", in.variant.a}};
  for (const auto& [name, v] : stages)
    if (std::string(variant_name(v)) == "unknown")
      refuse(std::string("variant.") + name + " must be BwdKernel::Default, TensorCores or Fma (got " +
             std::to_string(static_cast<int>(v)) + ")");
}

// Every stage's tensor-core predicate lives in its own file (recompute: chunk_ho.cu).

namespace {

// The pieces a scope holds beyond those every path reads (BackwardWorkspaceScope): all of them under Stages.
struct HeldPieces {
  bool fma_recompute = true;  // A_ab, ag: chunk_A and chunk_WY (the tensor-core recompute keeps them on chip)
  bool gi_ge = true;          // the staged forward's optional cumsum outputs (no backward stage reads them)
  bool o_shares = true;       // dv_new_o, dh_o: o_bwd's shares, unless h_bwd forms them itself
  bool totals = true;         // ws.dq .. ws.db: the FMA A_bwd's fp32 totals on 16-bit inputs, before rounding
  bool dgk_A = true;          // A_bwd's share of dgk: read by the unfused cumsum_bwd (the FMA A_bwd)
};

// What chunk_backward reads or writes for this request (Driver), its kernels chosen as the driver chooses them.
HeldPieces held_pieces(const BackwardInputs& in, int C, BackwardWorkspaceScope scope) {
  if (scope == BackwardWorkspaceScope::Stages) return {};
  if (scope != BackwardWorkspaceScope::Driver)
    refuse("BackwardWorkspaceScope must be Stages or Driver (got " + std::to_string(static_cast<int>(scope)) + ")");
  const bool recompute_tc =
      use_tensor_cores(in.variant.recompute, chunk_recompute_tensor_cores_supported(in, C), "chunk_recompute");
  const bool a_tc = use_tensor_cores(in.variant.a, chunk_A_bwd_tensor_cores_supported(in, C), "chunk_A_bwd");
  return {!recompute_tc, false, !hbwd::forms_o_shares_on_carved(in, C), !a_tc && in.fwd.dtype != ElemType::F32, !a_tc};
}

BackwardWorkspaceSizes piece_sizes(const BackwardInputs& in, int C) {
  check_chunk_shape(in.fwd, C);
  const ForwardInputs& f = in.fwd;
  BackwardWorkspaceSizes s;
  s.forward = chunk_workspace_floats(f, C);
  const std::int64_t rows = f.B * f.T * f.H, chunks = f.B * num_chunks(f, C);
  s.A = rows * C;
  s.kdim = rows * f.K;
  s.vdim = rows * f.V;
  s.state = chunks * f.H * f.K * f.V;
  s.chunk_kdim = chunks * f.H * f.K;
  return s;
}

// The layout: every held piece from a 256-byte boundary, in this order; returns its end in floats. The sizes
// (base nullptr: pointers stay nullptr) and the carve walk this one function, so they cannot disagree.
std::int64_t lay_out(const BackwardInputs& in, int C, BackwardWorkspaceScope scope, const BackwardWorkspaceSizes& s,
                     float* base, BackwardWorkspace& ws) {
  const ChunkWorkspaceSizes& f = s.forward;
  const HeldPieces held = held_pieces(in, C, scope);
  WorkspaceCarver carver(base);
  auto take = [&](std::int64_t n, bool hold = true) { return hold ? carver.take(n) : nullptr; };
  ChunkWorkspace& fw = ws.forward;
  GatedOperands& ga = fw.gated;
  fw.A_qk = take(f.A);
  fw.A_qb = take(f.A);
  fw.A_ak = take(f.A);
  fw.A_ab = take(f.A, held.fma_recompute);
  fw.A_ab_inv = take(f.A);
  ga.qg = take(f.kdim);
  ga.kg = take(f.kdim);
  ga.bg = take(f.kdim);
  ga.ag = take(f.kdim, held.fma_recompute);
  ga.eg_last = take(f.eg_last);
  fw.w = take(f.w);
  fw.u = take(f.u);
  fw.v_new = take(f.v_new);
  fw.h = take(f.h);
  fw.gi = take(f.gi, held.gi_ge);
  fw.ge = take(f.gi, held.gi_ge);
  if (f.chunk_offsets > 0) fw.chunk_offsets = reinterpret_cast<std::int32_t*>(take(f.chunk_offsets));
  ws.dA_qk = take(s.A);
  ws.dA_qb = take(s.A);
  ws.dA_ak = take(s.A);
  ws.dA_ab = take(s.A);
  ws.dh = take(s.state);
  ws.dv_new = take(s.vdim);
  ws.dw = take(s.kdim);
  ws.dv = take(s.vdim);
  ws.dq = take(s.kdim, held.totals);
  ws.dk = take(s.kdim, held.totals);
  ws.da = take(s.kdim, held.totals);
  ws.db = take(s.kdim, held.totals);
  GradientShares& g = ws.shares;
  g.dq_o = take(s.kdim);
  g.dv_new_o = take(s.vdim, held.o_shares);
  g.dh_o = take(s.state, held.o_shares);
  g.dk_h = take(s.kdim);
  g.db_h = take(s.kdim);
  g.d_chunk_decay = take(s.chunk_kdim);
  g.da_wy = take(s.kdim);
  g.dgk_A = take(s.kdim, held.dgk_A);
  return carver.used();
}

}  // namespace

BackwardWorkspaceSizes chunk_backward_workspace_floats(const BackwardInputs& in, int C, BackwardWorkspaceScope scope) {
  BackwardWorkspaceSizes s = piece_sizes(in, C);
  BackwardWorkspace unused;
  s.floats = lay_out(in, C, scope, s, nullptr, unused);
  return s;
}

BackwardWorkspace carve_backward_workspace(const BackwardInputs& in, int C, float* buffer, BackwardWorkspaceScope scope) {
  if (!buffer) refuse("carve_backward_workspace needs a buffer");
  BackwardWorkspace ws;
  lay_out(in, C, scope, piece_sizes(in, C), buffer, ws);
  return ws;
}

void chunk_backward_recompute(const BackwardInputs& in, int C, const ChunkWorkspace& fw, cudaStream_t stream) {
  check_chunk(in.fwd, C);
  if (std::string(variant_name(in.variant.recompute)) == "unknown")
    refuse("variant.recompute must be BwdKernel::Default, TensorCores or Fma (got " +
           std::to_string(static_cast<int>(in.variant.recompute)) + ")");
  const ForwardInputs& f = in.fwd;
  const GatedOperands& g = fw.gated;
  // The forward, recomputed: the tensors the backward stages read (o and ht are not needed).
  if (use_tensor_cores(in.variant.recompute, chunk_recompute_tensor_cores_supported(in, C), "chunk_recompute")) {
    // A_ab and ag stay in chunk_A_WY's shared memory (no backward stage reads them); o's products are skipped.
    chunk_A_WY(f, C, fw.A_qk, fw.A_qb, g, fw.w, fw.u, stream, AWYBackwardTensors{fw.A_ak, fw.A_ab_inv});
    chunk_h_o(f, C, nullptr, nullptr, nullptr, g.kg, g.bg, g.eg_last, fw.w, fw.u, nullptr, nullptr, stream,
              HOStates{fw.h, fw.v_new});
  } else {
    chunk_A(f, C, fw.A_qk, fw.A_qb, fw.A_ak, fw.A_ab, g, stream);
    chunk_WY(f, C, fw.A_ab, fw.A_ak, g.ag, fw.A_ab_inv, fw.w, fw.u, stream);
    chunk_h(f, C, g.kg, g.bg, g.eg_last, fw.w, fw.u, fw.h, fw.v_new, nullptr, stream);
  }
}

void chunk_backward(const BackwardInputs& user_in, int C, const BackwardWorkspace& ws, const BackwardOutputs& out,
                    cudaStream_t stream) {
  check_chunk_shape(user_in.fwd, C);
  if (!user_in.d_o) refuse("chunk_backward needs do (BackwardInputs::d_o)");
  if (!out.dq || !out.dk || !out.dv || !out.da || !out.db || !out.dgk)
    refuse("chunk_backward needs the outputs dq, dk, dv, da, db and dgk (dh0 may be nullptr)");
  const ChunkWorkspace& fw = ws.forward;
  const GatedOperands& g = fw.gated;
  if (!fw.A_qk || !fw.A_qb || !fw.A_ak || !fw.A_ab_inv || !fw.w || !fw.u || !fw.v_new || !fw.h || !g.qg || !g.kg ||
      !g.bg || !g.eg_last)
    refuse("chunk_backward needs the forward workspace buffers A_qk, A_qb, A_ak, A_ab_inv, w, u, v_new, h, qg, kg, bg "
           "and eg_last (see carve_backward_workspace)");
  const GradientShares& sh = ws.shares;
  if (!ws.dA_qk || !ws.dA_qb || !ws.dA_ak || !ws.dA_ab || !ws.dh || !ws.dv_new || !ws.dw || !ws.dv || !sh.dq_o ||
      !sh.dk_h || !sh.db_h || !sh.d_chunk_decay || !sh.da_wy)
    refuse("chunk_backward needs the backward workspace buffers dA_qk, dA_qb, dA_ak, dA_ab, dh, dv_new, dw, dv and the "
           "shares dq_o, dk_h, db_h, d_chunk_decay, da_wy (see carve_backward_workspace)");
  // The pieces only some kernels use (a Driver-scope workspace holds exactly these for this request).
  const HeldPieces need = held_pieces(user_in, C, BackwardWorkspaceScope::Driver);
  if (need.fma_recompute && (!fw.A_ab || !g.ag))
    refuse("chunk_backward needs the workspace buffers A_ab and ag here: the recompute runs chunk_A and chunk_WY");
  if (!hbwd::forms_o_shares(user_in, C, ws) && (!sh.dv_new_o || !sh.dh_o))
    refuse("chunk_backward needs the shares dv_new_o and dh_o here: o_bwd and h_bwd do not both run on tensor cores "
           "(an Fma variant, or a workspace not 256-byte aligned as carve_backward_workspace lays it out)");
  if (need.totals && (!ws.dq || !ws.dk || !ws.da || !ws.db))
    refuse("chunk_backward needs the fp32 totals dq, dk, da, db here: A_bwd runs its FMA kernel on 16-bit inputs");
  if (need.dgk_A && !sh.dgk_A) refuse("chunk_backward needs the share dgk_A here: A_bwd runs its FMA kernel");
  BackwardInputs in = user_in;
  in.fwd = with_chunk_offsets(user_in.fwd, C, fw.chunk_offsets, "chunk_backward", stream);
  chunk_backward_recompute(in, C, fw, stream);
  // The backward, stage by stage. Where o_bwd and h_bwd both run on tensor cores (hbwd::forms_o_shares) o_bwd is
  // folded into h_bwd's two kernels (hbwd::o_h_bwd): the sequential one forms o_bwd's shares dh_o (a per-chunk state:
  // 537 MB written and read again at B8 T4096 H16 K = V = 64) and dv_new_o and dv's first share A_qk^T do, the
  // per-chunk one dA_qk, dA_qb and dq_o from the slabs of h, v and v_new it reads anyway (h read once, not twice).
  // dv is summed in the staged order (A_qk^T do first, then kg dS'), and each product is o_bwd's MMAs in o_bwd's
  // order, so every tensor the driver returns is bitwise the stages' run alone (test_gpu_backward's
  // default-stages set and the emulator's backward_check compare them); ws.shares.dh_o, dv_new_o are not written.
  if (hbwd::forms_o_shares(in, C, ws)) {
    hbwd::o_h_bwd(in, C, ws, out.dh0, stream);
  } else {
    chunk_o_bwd(in, C, fw.A_qk, fw.A_qb, g.qg, fw.v_new, fw.h, ws.dA_qk, ws.dA_qb, ws.dv, sh, stream);
    chunk_h_bwd(in, C, g.kg, g.bg, g.eg_last, fw.w, fw.h, fw.v_new, ws.dh, ws.dv_new, ws.dw, ws.dv, out.dh0, sh, stream);
  }
  // WY_bwd is dv's last writer: it rounds dv's fp32 total once into out.dv itself (ws.dv keeps the o_bwd + h_bwd
  // shares; nothing later reads the total).
  chunk_WY_bwd_rounding_dv(in, C, fw.A_ab_inv, fw.A_ak, fw.w, fw.u, ws.dw, ws.dv_new, ws.dA_ab, ws.dA_ak, ws.dv, out.dv,
                           sh, stream);
  // dq, dk, da, db straight in the outputs' dtype (the tensor-core A_bwd fused with cumsum_bwd; elsewhere through the
  // fp32 totals ws.dq .. ws.db and a rounding pass each).
  chunk_A_cumsum_bwd(in, C, ws.dA_qk, ws.dA_qb, ws.dA_ak, ws.dA_ab, out.dq, out.dk, out.da, out.db, out.dgk, sh,
                     ABwdTotals{ws.dq, ws.dk, ws.da, ws.db}, stream);
}

}  // namespace dplr::gpu
