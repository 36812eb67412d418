// Replayable case files: what a failing sweep or property case leaves behind, and what `dplr check --case
// FILE` and the regression corpus (tests/data/regressions/) replay.
//
// A case file is a .safetensors file with the contract's input names (q k v a b gk, h0, cu_seqlens, do, dht)
// and this metadata (all strings, as safetensors holds them):
//   scale, reverse   as every case file (problem_from_file reads them)
//   kernel           what it failed on: "chunk" (staged), "chunk-fused", "recurrent", "chunk-bwd", "recurrent-bwd"
//                    (GPU kernels, verify/sweep.hpp; the backward ones need do), or "cpu" (the CPU part alone:
//                    the certified reference and the chunk-form oracles)
//   chunk_size       the kernel's chunk size (16, 32, 64); "0" for recurrent(-bwd); for cpu 0 or the chunk
//                    size of the oracle that failed (replayed beside the sweep's C = 16 and 64)
//   generator, seed  the distribution and seed the inputs were drawn from
//   spec             the (shrunk) case parameters as JSON: shape, cu_seqlens, dtype, gk_dtype, distribution,
//                    seed, with_h0, with_backward, gate_normalizer, scale, reverse
//   failed           what failed, in one line (the case id and its verdict)
//   producer         "dplr check" (or "dplr check --property")
// The tensors are replayed as stored, not regenerated: a change of the generators cannot change a replay.
#pragma once
#include <filesystem>
#include <string>

#include "generators/distributions.hpp"
#include "reference/problem.hpp"

namespace dplr {

inline constexpr const char* kCaseKernels[] = {"chunk", "chunk-fused", "recurrent", "chunk-bwd", "recurrent-bwd", "cpu"};

struct CaseFile {
  DplrProblem problem;
  CaseSpec spec;          // the parameters (shape, dtypes, cu_seqlens from the tensors)
  std::string kernel;     // one of kCaseKernels
  int chunk_size = 0;     // 0 for recurrent (and cpu, unless an oracle's chunk size)
  std::string failed;     // what failed when it was written
  std::string producer;
};

// Writes `problem` as a case file named after `stem` (made file-name safe) in `folder`, creating it; returns
// the path. InputError when it cannot be written.
std::filesystem::path write_case_file(const std::filesystem::path& folder, const std::string& stem,
                                      const DplrProblem& problem, const CaseSpec& spec, const std::string& kernel,
                                      int chunk_size, const std::string& failed, const std::string& producer);

// Reads a case file; InputError naming the file and the field when it is not one (a missing or unknown
// kernel, a chunk size that is not 16, 32 or 64 for a chunk kernel, malformed spec JSON, bad tensors).
CaseFile read_case_file(const std::filesystem::path& path);

// The one-line command that replays a case file.
std::string replay_command(const std::filesystem::path& path);

}  // namespace dplr
