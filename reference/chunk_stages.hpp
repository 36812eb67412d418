// The exact chunk form, stage by stage (shared spec DPLR.md, "The chunk form"; derivation of the
// backward in docs/chunk-backward.md): every intermediate tensor a chunked kernel computes, so a kernel's
// own intermediates can be compared stage by stage and the first stage that went wrong named.
//
// Stages, forward then backward (files reference/chunk_<stage>.hpp, one template over the scalar type):
//   cumsum -> A -> WY -> h -> o  ->  o_bwd -> h_bwd -> WY_bwd -> A_bwd -> cumsum_bwd
//
// Tensor layouts (fla's; natural-log gates, q already multiplied by scale inside A_qk and A_qb):
//   gi, ge, w, dw, dq, dk, da, db, dgk    [B, T, H, K]
//   qg, kg, bg, ag                        [B, T, H, K]   stage A's gated operands (the kernels' GatedOperands):
//                                                        scale q exp(gi), k exp(gl - gi), b exp(gl - gi), a exp(ge)
//   eg_last                               [B', NT, H, K]  exp(gl), gl = gi of the chunk's last token
//   u, v_new, dv_new, o, dv               [B, T, H, V]
//   A_qk, A_qb, A_ak, A_ab, A_ab_inv,     [B, T, H, C]   row r of a chunk's C x C matrix sits at the chunk's
//   dA_qk, dA_qb, dA_ak, dA_ab                           token r; columns past a short last chunk are zero
//   h                                     [B', NT, H, K, V]  the state before each chunk
//   dh                                    [B', NT, H, K, V]  dL/dS at the END of each chunk (fla's dh:
//                                                            dht for a sequence's last chunk)
//   ht, dh0                               [N, H, K, V]
// fla differences: fla's gi, ge are base 2 (ours / ln 2); fla's dA_qk, dA_qb are scale times ours.
// Without cu_seqlens B' = B and NT = ceil(T / C); with cu_seqlens B' = 1 and NT = sum_n ceil(len_n / C),
// sequence n's chunks at NT indices first_chunk[n] .. first_chunk[n] + ceil(len_n / C) - 1 (fla's
// chunk_offsets). Chunks restart at every sequence start; an empty sequence has no chunk (ht = h0,
// dh0 = dht).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "reference/exact_tensor.hpp"
#include "reference/precision.hpp"
#include "reference/problem.hpp"

namespace dplr {

// How the A stage evaluates exp(gx_r - gy_s): see reference/chunk_common.hpp.
enum class DecayEvaluation {
  Difference,  // exp of the difference: stable for any decay
  Factored,    // exp(gx_r) * exp(-gy_s), as tensor-core kernels do: overflows float past ~-88 summed decay
};

// How stage cumsum_bwd forms dgk: see reference/chunk_cumsum_bwd.hpp.
enum class GateGradient {
  Direct,    // each stage's share, summed over the decay factors that contain gk_t: no cancellation
  Identity,  // fla's dgi = q dq - k dk - b db and a reverse cumsum: loses ~|gk| / ln 2 bits under decay
};

struct ChunkOptions {
  DecayEvaluation decay = DecayEvaluation::Difference;
  GateGradient gate_gradient = GateGradient::Direct;
  bool backward = true;  // computed when the problem has `do`
  // Study only: compute in float (inputs rounded to float once), ignoring the Precision argument. Shows
  // what float arithmetic does to the chunk form; never a reference.
  bool single_precision = false;
  int threads = 0;  // 0: all cores
  std::string origin = "case";  // names the case (a file) in error messages
};

struct ChunkStages {
  int chunk_size = 0;
  std::string arithmetic;  // "float", "double", "dd", "qd", "mpfr128", ...
  DecayEvaluation decay = DecayEvaluation::Difference;
  GateGradient gate_gradient = GateGradient::Direct;
  ExactTensorMap tensors;  // every stage's tensors by the names below
  double seconds = 0.0;
  std::vector<std::string> notes;  // e.g. why the run moved to MPFR
};

// Runs every stage of the chunk form over all (sequence, head) pairs, on all cores. Throws InputError
// for chunk_size < 1 or a problem with `reverse` (the chunk form runs forward only). The problem should
// have passed validate_problem. As run_reference does (reference/reference.hpp), a reference run (not
// single_precision, decay Difference) that overflows double's exponent range is repeated in MPFR at the
// same bits, and refused with an InputError where an exact stage tensor itself lies beyond double's range.
// Studies (float, Factored) keep their overflows: showing them is their purpose.
ChunkStages run_chunk_stages(const DplrProblem& problem, int chunk_size, const Precision& precision,
                             const ChunkOptions& options = {});

struct ChunkStageTensors {
  std::string stage;
  std::vector<std::string> tensors;  // the tensors this stage completes
};
// Stages in the order they run, each with the tensors it completes (a gradient accumulated over several
// stages is listed under the last): cumsum {gi, ge}, A {A_qk, A_qb, A_ak, A_ab, qg, kg, bg, ag,
// eg_last}, WY {A_ab_inv, w, u},
// h {h, v_new, ht}, o {o}, o_bwd {dA_qk, dA_qb}, h_bwd {dh, dv_new, dw, dh0}, WY_bwd {dA_ab, dA_ak, dv},
// A_bwd {dq, dk, da, db}, cumsum_bwd {dgk}.
const std::vector<ChunkStageTensors>& chunk_stage_table();
std::vector<std::string> chunk_stage_order();
// The stage that completes `tensor`; throws InputError for a name no stage produces.
const std::string& chunk_stage_of(std::string_view tensor);

// Where each sequence's chunks sit along the NT axis of h and dh.
struct ChunkGrid {
  int chunk_size = 0;
  std::int64_t rows = 0;  // B' (leading dimension of h, dh)
  std::int64_t NT = 0;
  std::vector<std::int64_t> chunks;       // per sequence: ceil(len / C)
  std::vector<std::int64_t> first_chunk;  // per sequence: NT index of its first chunk
  std::vector<std::int64_t> row;          // per sequence: its B' index

  static ChunkGrid of(const DplrProblem& problem, int chunk_size);
};

// The scalar-typed driver behind run_chunk_stages, instantiated per scalar type in
// reference/chunk_instantiate_<type>.cpp (float, double, dd_real, qd_real, mp_real).
template <class S>
ExactTensorMap chunk_stages_as(const DplrProblem& problem, const ChunkGrid& grid, const ChunkOptions& options);

}  // namespace dplr
