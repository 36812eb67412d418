// run_chunk_stages: checks, the chunk grid, dispatch to the scalar type, and the stage table.
#include "reference/chunk_stages.hpp"

#include <chrono>

#include <fmt/format.h>

#include "core/error.hpp"
#include "core/memory.hpp"
#include "reference/dispatch.hpp"

namespace dplr {

ChunkGrid ChunkGrid::of(const DplrProblem& p, int chunk_size) {
  ChunkGrid grid;
  grid.chunk_size = chunk_size;
  const std::int64_t N = p.num_sequences();
  const bool varlen = !p.cu_seqlens.empty();
  grid.rows = varlen ? 1 : p.shape.B;
  std::int64_t next = 0;
  for (std::int64_t n = 0; n < N; ++n) {
    const SequenceSpan span = p.sequence(n);
    const std::int64_t chunks = (span.length() + chunk_size - 1) / chunk_size;
    grid.chunks.push_back(chunks);
    grid.row.push_back(varlen ? 0 : span.batch);
    grid.first_chunk.push_back(varlen ? next : 0);
    next += chunks;
  }
  grid.NT = varlen ? next : (p.shape.T + chunk_size - 1) / chunk_size;
  return grid;
}

ChunkStages run_chunk_stages(const DplrProblem& problem, int chunk_size, const Precision& precision,
                             const ChunkOptions& options) {
  if (chunk_size < 1) throw InputError(fmt::format("chunk size: expected a positive token count, got {}", chunk_size));
  if (problem.reverse)
    throw InputError("reverse: the chunk form processes tokens first to last; expected reverse = false");
  const auto start = std::chrono::steady_clock::now();
  const ChunkGrid grid = ChunkGrid::of(problem, chunk_size);
  {
    // The stage tensors (chunk_stages.hpp lists them): 9 of width C, 9 of width K, 5 of width V, h and dh.
    using U = std::uint64_t;
    const auto& s = problem.shape;
    const U tokens = saturating_product({U(s.B), U(s.T), U(s.H)});
    const U elements = saturating_sum({saturating_product({tokens, U(chunk_size), 9}), saturating_product({tokens, U(s.K), 9}),
                                       saturating_product({tokens, U(s.V), 5}),
                                       saturating_product({U(grid.rows), U(grid.NT), U(s.H), U(s.K), U(s.V), 2}),
                                       saturating_product({U(problem.num_sequences()), U(s.H), U(s.K), U(s.V), 2})});
    const int limbs = options.single_precision ? 1 : expansion_limbs(precision);
    require_memory(saturating_product({elements, U(limbs), sizeof(double)}), options.origin,
                   fmt::format("the exact chunk-form stages at chunk size {} (9 tensors of [B, T, H, C])", chunk_size));
  }
  ChunkStages result;
  result.chunk_size = chunk_size;
  result.decay = options.decay;
  result.gate_gradient = options.gate_gradient;
  if (options.single_precision) {
    result.arithmetic = "float";
    result.tensors = chunk_stages_as<float>(problem, grid, options);
  } else {
    auto run_at = [&](const Precision& at) {
      result.arithmetic = at.name();
      result.tensors = with_scalar(at, [&]<class S>(std::type_identity<S>) -> ExactTensorMap {
        if constexpr (std::is_same_v<S, td_real> || std::is_same_v<S, ball_real>)
          throw InputError(fmt::format("{}: the chunk-form stages are not built for {} (a recurrence-only "
                                       "arithmetic); use dd or qd", options.origin, at.name()));
        else
          return chunk_stages_as<S>(problem, grid, options);
      });
    };
    run_at(precision);
    const bool reference = options.decay == DecayEvaluation::Difference;
    auto overflow = reference ? first_non_finite(result.tensors) : std::nullopt;
    if (overflow && precision.arithmetic != Arithmetic::Mpfr) {
      run_at(precision.with_wide_exponent());
      result.notes.push_back(overflow_note(precision.name(), result.arithmetic, *overflow));
      overflow = first_non_finite(result.tensors);
    }
    if (overflow) refuse_beyond_double_range(options.origin, "exact stage tensor", *overflow);
  }
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

const std::vector<ChunkStageTensors>& chunk_stage_table() {
  static const std::vector<ChunkStageTensors> table{
      {"cumsum", {"gi", "ge"}},
      {"A", {"A_qk", "A_qb", "A_ak", "A_ab", "qg", "kg", "bg", "ag", "eg_last"}},
      {"WY", {"A_ab_inv", "w", "u"}},
      {"h", {"h", "v_new", "ht"}},
      {"o", {"o"}},
      {"o_bwd", {"dA_qk", "dA_qb"}},
      {"h_bwd", {"dh", "dv_new", "dw", "dh0"}},
      {"WY_bwd", {"dA_ab", "dA_ak", "dv"}},
      {"A_bwd", {"dq", "dk", "da", "db"}},
      {"cumsum_bwd", {"dgk"}},
  };
  return table;
}

std::vector<std::string> chunk_stage_order() {
  std::vector<std::string> order;
  for (const auto& stage : chunk_stage_table()) order.push_back(stage.stage);
  return order;
}

const std::string& chunk_stage_of(std::string_view tensor) {
  for (const auto& stage : chunk_stage_table())
    for (const auto& name : stage.tensors)
      if (name == tensor) return stage.stage;
  throw InputError(fmt::format("stage tensor '{}': expected one of the chunk stages' tensors (see chunk_stage_table)",
                               tensor));
}

}  // namespace dplr
