// The staged chunk forward: a thin orchestrator over the stages, in fla's order (chunk.py):
//   cumsum (optional: stage A re-forms the sums in fp64 from gk) -> A (A_qk, A_qb, A_ak, A_ab and the gated
//   operands qg, kg, bg, ag, eg_last, fp32)
//   -> WY (A_ab_inv, w, u, fp32) -> h (h, v_new fp32; ht fp32) -> o (input dtype).
// With cu_seqlens both drivers first number the chunks (prepare_chunk_offsets, into the workspace).
#include "gpu/common.cuh"

namespace dplr::gpu {
ForwardInputs detail::with_chunk_offsets(const ForwardInputs& in, int C, std::int32_t* chunk_offsets, const char* driver,
                                         cudaStream_t stream) {
  if (!in.cu_seqlens) return in;
  if (!chunk_offsets)
    throw Unsupported(std::string("dplr::gpu: ") + driver +
                      " with cu_seqlens needs a chunk_offsets buffer (int32 [N + 1]; the workspace carve sets it)");
  prepare_chunk_offsets(in, C, chunk_offsets, stream);
  ForwardInputs x = in;
  x.chunk_offsets = chunk_offsets;
  x.chunk_offsets_C = C;
  return x;
}

ChunkWorkspaceSizes chunk_workspace_floats(const ForwardInputs& in, int C) {
  detail::check_chunk_shape(in, C);
  ChunkWorkspaceSizes s;
  const std::int64_t rows = in.B * in.T * in.H;
  s.A = rows * C;
  s.w = rows * in.K;
  s.u = rows * in.V;
  s.v_new = rows * in.V;
  s.h = in.B * num_chunks(in, C) * in.H * in.K * in.V;
  s.gi = rows * in.K;
  s.kdim = rows * in.K;
  s.eg_last = in.B * num_chunks(in, C) * in.H * in.K;
  s.chunk_offsets = in.cu_seqlens ? in.N() + 1 : 0;
  return s;
}

ChunkWorkspace carve_chunk_workspace(const ForwardInputs& in, int C, float* buffer) {
  const ChunkWorkspaceSizes s = chunk_workspace_floats(in, C);
  if (!buffer) throw Unsupported("dplr::gpu: carve_chunk_workspace needs a buffer");
  ChunkWorkspace ws;
  detail::WorkspaceCarver carver(buffer);
  auto take = [&carver](std::int64_t n) { return carver.take(n); };
  ws.A_qk = take(s.A);
  ws.A_qb = take(s.A);
  ws.A_ak = take(s.A);
  ws.A_ab = take(s.A);
  ws.A_ab_inv = take(s.A);
  ws.gated.qg = take(s.kdim);
  ws.gated.kg = take(s.kdim);
  ws.gated.bg = take(s.kdim);
  ws.gated.ag = take(s.kdim);
  ws.gated.eg_last = take(s.eg_last);
  ws.w = take(s.w);
  ws.u = take(s.u);
  ws.v_new = take(s.v_new);
  ws.h = take(s.h);
  ws.gi = take(s.gi);
  ws.ge = take(s.gi);
  if (s.chunk_offsets > 0) ws.chunk_offsets = reinterpret_cast<std::int32_t*>(take(s.chunk_offsets));
  return ws;
}

void chunk_forward(const ForwardInputs& user_in, int C, const ChunkWorkspace& ws, void* o, float* ht,
                   cudaStream_t stream) {
  detail::check_chunk_shape(user_in, C);
  if (!o) throw Unsupported("dplr::gpu: chunk_forward needs an output pointer o");
  const GatedOperands& gg = ws.gated;
  if (!ws.A_qk || !ws.A_qb || !ws.A_ak || !ws.A_ab || !ws.A_ab_inv || !ws.w || !ws.u || !ws.v_new || !ws.h || !gg.qg ||
      !gg.kg || !gg.bg || !gg.ag || !gg.eg_last)
    throw Unsupported("dplr::gpu: chunk_forward needs every workspace buffer but gi/ge (see carve_chunk_workspace)");
  const ForwardInputs in = detail::with_chunk_offsets(user_in, C, ws.chunk_offsets, "chunk_forward", stream);
  if (ws.gi && ws.ge) chunk_cumsum(in, C, ws.gi, ws.ge, stream);
  const GatedOperands& g = ws.gated;
  chunk_A(in, C, ws.A_qk, ws.A_qb, ws.A_ak, ws.A_ab, g, stream);
  chunk_WY(in, C, ws.A_ab, ws.A_ak, g.ag, ws.A_ab_inv, ws.w, ws.u, stream);
  chunk_h(in, C, g.kg, g.bg, g.eg_last, ws.w, ws.u, ws.h, ws.v_new, ht, stream);
  chunk_o(in, C, ws.A_qk, ws.A_qb, g.qg, ws.v_new, ws.h, o, stream);
}

void chunk_forward_fused(const ForwardInputs& user_in, int C, const ChunkWorkspace& ws, void* o, float* ht,
                         cudaStream_t stream) {
  detail::check_chunk_shape(user_in, C);
  if (!o) throw Unsupported("dplr::gpu: chunk_forward_fused needs an output pointer o");
  const GatedOperands& g = ws.gated;
  if (!ws.A_qk || !ws.A_qb || !ws.A_ak || !ws.A_ab || !ws.A_ab_inv || !ws.w || !ws.u || !g.qg || !g.kg || !g.bg ||
      !g.ag || !g.eg_last)
    throw Unsupported("dplr::gpu: chunk_forward_fused needs the A, WY and gated-operand workspace buffers");
  const bool fused = chunk_fused_ho(user_in, C);
  if (!fused && (!ws.v_new || !ws.h))
    throw Unsupported("dplr::gpu: chunk_forward_fused falls back to the staged h and o here and needs v_new and h");
  const ForwardInputs in = detail::with_chunk_offsets(user_in, C, ws.chunk_offsets, "chunk_forward_fused", stream);
  if (chunk_A_WY_supported(in, C)) {
    chunk_A_WY(in, C, ws.A_qk, ws.A_qb, g, ws.w, ws.u, stream);
  } else {
    chunk_A(in, C, ws.A_qk, ws.A_qb, ws.A_ak, ws.A_ab, g, stream);
    chunk_WY(in, C, ws.A_ab, ws.A_ak, g.ag, ws.A_ab_inv, ws.w, ws.u, stream);
  }
  if (fused) {
    chunk_h_o(in, C, ws.A_qk, ws.A_qb, g.qg, g.kg, g.bg, g.eg_last, ws.w, ws.u, o, ht, stream);
  } else {
    chunk_h(in, C, g.kg, g.bg, g.eg_last, ws.w, ws.u, ws.h, ws.v_new, ht, stream);
    chunk_o(in, C, ws.A_qk, ws.A_qb, g.qg, ws.v_new, ws.h, o, stream);
  }
}

}  // namespace dplr::gpu
