// `dplr check --property N --seed S [--time-budget SEC] [--shard I/N]`: a RapidCheck-driven sweep. Position i
// of 0..N-1 draws its cases from a RapidCheck random stream keyed by (S, i), so a position is the same case in
// every run, shard and machine, and a shard draws only its own positions.
//
// At every position:
//   cpu   a small case (generators/rapidcheck.hpp gen_cpu_sweep_case) and the CPU properties:
//         chunk-oracle  the exact chunk-form stages at the case's chunk size (not for reverse, which the
//                       chunk form does not have) against the exact recurrence: o, ht and the gradients agree
//                       to kMinReferenceBits (at dd, or where dd's own rounding in the chunk form falls short,
//                       at qd: chunk_oracle_agreement, verify/sweep.hpp), and rounded to double pass the fp64
//                       rule of `strict`
//         permutation   the exact reference of the case with its heads reversed and its sequences reversed
//                       (batch rows, or varlen's packed sequences with h0 and dht) is, bitwise at double, the
//                       reference's outputs and gradients permuted the same way
//   gpu   where a CUDA device is present (and not --cpu-only): a case of the GPU kernels' range
//         (gen_gpu_sweep_case: the kernel, chunk size, shape, dtypes, distribution, ...) run as `dplr check`
//         runs its GPU cases (run_gpu_kernel_case) and judged against the exact recurrence under the policy
//         (the staged kernel stage by stage against the oracles, every tensor against the larger of its rounding
//         and conditioning floors, verify/conditioning.hpp); then run twice more: the two runs must be bitwise
//         the same (determinism run to run); then, with H > 1 or several sequences, on the problem with heads and
//         sequences reversed: its outputs must be, bitwise, the first run's outputs reversed the same way.
// A drawn case whose exact answer lies beyond double's range, or (GPU) whose exact outputs or gradients exceed
// fp32's finite range (beyond_kernel_range, verify/sweep.hpp: no fp32 kernel can represent them), is not judged:
// the outcome lists it under skipped ("out of the kernels' range"), and the sweep goes on.
// A failing case is shrunk (RapidCheck's shrink tree, greedily: the first smaller case that still fails,
// until none does, the step limit or the time budget), reported beside the original, and written as a case
// file (verify/case_file.hpp) under the report's folder with its one-line replay command.
//
// Planted defects (--plant, for testing the gates and the shrinking, never on by default):
//   dropped-partial-chunk  zeroes o on the last partial chunk of every sequence longer than one chunk before
//                          the chunk-oracle property judges it (the smallest failing case: T = C + 1)
//   head-mixup             swaps heads 0 and 1 of the permuted reference's outputs before the permutation
//                          property compares them (the smallest failing case: H = 2)
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "reports/report.hpp"
#include "verify/shard.hpp"
#include "verify/sweep.hpp"
#include "verify/tolerance.hpp"

namespace dplr {

inline constexpr const char* kPlantedDefects[] = {"dropped-partial-chunk", "head-mixup"};

struct PropertyOptions {
  std::int64_t cases = 0;  // N positions
  std::uint64_t seed = 0;
  std::optional<double> time_budget_seconds;  // no new position (nor shrink step) starts after it
  bool cpu_only = false;
  int threads = 0;
  Shard shard;
  std::filesystem::path failed_case_folder;  // empty: failing cases are not written
  std::string planted;                        // "" or one of kPlantedDefects
  std::string gpu_planted_defect = "none";    // the GPU kernels' planted defect (a -DDPLR_PLANT_DEFECTS=ON build)
  bool conditioning_floor = true;             // as SweepOptions::conditioning_floor
  int max_shrink_steps = 100;                 // successful shrink steps per failing case
};

struct PropertyOutcome {
  std::vector<std::string> skipped;
  std::vector<WrittenCase> written;
  std::int64_t positions_run = 0, positions_not_run = 0;  // of this shard's; not run: the time budget
};

// Appends the cases to `report` (sweep_index = position), calls `on_case` after each, sets report.sweep
// (name "property", parameters cases, seed, cpu_only, planted). InputError for N < 1 or an unknown defect.
PropertyOutcome run_property_sweep(const PropertyOptions& options, const TolerancePolicy& gpu_policy, Report& report,
                                   const std::function<void(const CaseResult&)>& on_case);

}  // namespace dplr
