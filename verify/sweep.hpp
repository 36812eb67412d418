// `dplr check`: the default accuracy sweep. What the CPU can do always runs; the GPU part runs where a
// CUDA device is present, and the report says what was skipped and why.
//
// CPU part, per distribution (fla, strong-decay, mixed-decay, edge-of-stability, near-zero-decay):
//   reference     the exact recurrence at double-double, its bits estimated against triple-double (with
//                 --rigorous: in ball arithmetic, its bits proven); the case fails if any tensor's estimated
//                 (proven) bits are fewer than kMinReferenceBits
//   chunk-oracle  the exact chunk-form stages (C = 16, 64) against the recurrence, both at double-double:
//                 o, ht and all seven gradients must agree to kMinReferenceBits (they reach ~90-100), and
//                 rounded to double they are compared under the fp64 rule (rel RMSE 1e-12)
//   chunk-float   the same stages in float (stable decay evaluation) against the exact answer:
//                 reported, not gated: the yardstick GPU kernels are measured by
// GPU part (our kernels, gpu/), forward: the staged chunk forward (C = 16, 32, 64; every stage checked), the fused
// chunk forward (o and ht) and the fused recurrent forward in bf16, fp16 and fp32, on fla and strong decay (gk in
// [-30, -5]), K = V = 64 and 128 (60 and 100 too), T not a multiple of the chunk, H > 1, h0, varlen, reverse, decode
// (T = 1); o and ht against the exact recurrence and every stage tensor against its oracle, under the policy
// (default "strict": issue 5's targets), with the first diverging stage named.
// Backward (issue 12): the staged chunk backward (chunk-bwd, C = 16, 32, 64) and the fused recurrent backward
// (recurrent-bwd) in bf16, fp16 and fp32, fla and strong decay, K = V = 64 and 128, K = 60 with V = 100, T = 100 and
// 70 (no multiple of any chunk size), H = 2 (heads drawn apart), h0 and dht always, varlen with an empty sequence,
// reverse (recurrent): dq, dk, dv, da, db, dgk, dh0 against the exact backward of the recurrence, and for chunk-bwd
// a second run of every stage one kernel at a time (run_gpu_chunk_stages), each stage tensor, forward and backward,
// against the exact chunk-form stages, the first diverging stage named (verify/stage_check.hpp).
#pragma once
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "generators/distributions.hpp"
#include "reference/reference.hpp"
#include "reports/report.hpp"
#include "verify/gpu_runner.hpp"
#include "verify/shard.hpp"
#include "verify/tolerance.hpp"

namespace dplr {

inline constexpr double kMinReferenceBits = 80.0;

// Why a GPU kernel cannot be judged on a case whose exact answer it cannot represent: where an exact output or
// gradient of `exact` (kOutputNames, kGradientNames) exceeds the kernels' fp32 arithmetic's largest finite value
// (3.4e38), the account ("the exact ht reaches 1.2e+53 at [0, 0, 0, 0], beyond F32's finite range (3.4e+38): no
// fp32 kernel can represent it"); empty otherwise. Growth comes from transitions of modulus > 1 (edge-of-stability
// with decay: K = 1 gives 2 - e^gk, up to 1.95 a token; property case 23-26, session 9: ht ~1e53 at T = 300). A
// kernel that returns NaN or infinity where the exact answer is finite in fp32 is still judged (and fails).
std::optional<std::string> beyond_kernel_range(const ExactTensorMap& exact);

// The chunk-form oracle's agreement with the exact recurrence (the identity the oracle claims), per tensor of
// `names` found in both, as bits (reference/exact_tensor.hpp agreement_bits, capped at `cap_bits`).
//
// The chunk form is less well conditioned than the recurrence where transitions nearly cancel (near-zero decay,
// K = 1, b = -a: e^g - 1 ~ -1e-4): there its own dd rounding, not a mismatch of the two forms, can sit below
// kMinReferenceBits (property cases 21-56 and 23-47, session 9: dh0 at 79.8 and 79.0 bits against the recurrence
// and against the recurrence at td alike, where dd's recurrence is good to 93 bits; the oracle at qd agrees with
// it to 93 bits, with td's recurrence to 139). So where the oracle falls short, `wider_oracle` (the chunk form at
// qd) is run and the identity is judged there: it holds when the wider oracle agrees to kMinReferenceBits. A
// mismatch of the forms (a wrong stage) shows at every precision and still fails; the dd oracle's own shortfall
// is reported beside it.
struct OracleAgreement {
  bool holds = false;
  std::string text;  // "agrees with the recurrence to 95.2 bits (worst: o)", or the wider run's account
};
OracleAgreement chunk_oracle_agreement(const ExactTensorMap& oracle, const ExactTensorMap& exact,
                                       const std::vector<std::string>& names, double cap_bits,
                                       const std::function<ExactTensorMap()>& wider_oracle);

struct SweepOptions {
  bool quick = false;     // fewer and smaller cases (CI)
  bool cpu_only = false;  // skip the GPU part even where a device is present
  bool gpu_only = false;  // skip the CPU part (the reference's self-checks), e.g. for runs of planted defects
  int threads = 0;
  // Seed of every generated case; unset: the committed sweep's seeds (2024 for the CPU part, 7 for the GPU part).
  std::optional<std::uint64_t> seed;
  std::string planted_defect = "none";  // GPU kernels with a planted defect (a -DDPLR_PLANT_DEFECTS=ON build only)
  // GPU tensors judged against the larger of their rounding floor and their conditioning floor
  // (verify/conditioning.hpp); false: the rounding floor alone.
  bool conditioning_floor = true;
  // Only the GPU cases (fixed and replayed) of these kernels (kGpuSweepKernels); empty: all of them.
  std::vector<std::string> gpu_kernels;
  // Which positions of the case list this process runs (verify/shard.hpp). The list: the CPU part's cases,
  // the replays' CPU parts, then (without --cpu-only) the GPU cases and the replays' GPU kernels.
  Shard shard;
  // Case files replayed after the fixed cases (verify/case_file.hpp): the regression corpus, or --case.
  std::vector<std::filesystem::path> replays;
  bool replays_only = false;  // --case: the replays and nothing else
  // --rigorous: the CPU part's reference in ball arithmetic (Arb; refused by a build without it), gated on the
  // bits its radii prove (at least kMinReferenceBits are asked) instead of the estimate.
  std::optional<RigorousOptions> rigorous;
  // Where a failing generated case's file is written (empty: nowhere).
  std::filesystem::path failed_case_folder;
};

// A failing case's file, and the command that replays it.
struct WrittenCase {
  std::string case_id;
  std::filesystem::path path;
};

struct SweepOutcome {
  std::vector<std::string> skipped;   // what did not run, and why
  std::vector<std::string> failures;  // gates outside the tensor comparisons (estimated, proven or agreement bits)
  std::vector<WrittenCase> written;   // case files of failing cases (options.failed_case_folder)
};

// The GPU kernels of the sweep, as its cases and case files name them: "chunk" (the staged forward, every stage
// checked), "chunk-fused" (o, ht), "recurrent" (the fused recurrent forward), "chunk-bwd" (the staged chunk backward:
// its gradients, and every stage of a staged run against its oracle, on the default kernels: each stage's tensor-core
// kernel where it takes the case), "chunk-bwd-fma" (the same on every stage's fp32-FMA kernel, for the cases where
// chunk-bwd runs tensor cores: 16-bit inputs at C = 16), "recurrent-bwd" (the fused recurrent backward).
inline constexpr const char* kGpuSweepKernels[] = {"chunk", "chunk-fused", "recurrent", "chunk-bwd", "chunk-bwd-fma",
                                                   "recurrent-bwd"};
bool is_backward_kernel(std::string_view kernel);  // chunk-bwd, chunk-bwd-fma, recurrent-bwd
// Throws InputError naming the known kernels unless each of `kernels` is one of kGpuSweepKernels.
void require_gpu_sweep_kernels(const std::vector<std::string>& kernels);

// One fixed case of the GPU part.
struct GpuSweepCase {
  std::string kernel;  // one of kGpuSweepKernels
  int chunk_size = 0;  // 16, 32, 64 for the chunk kernels, 0 for the recurrent ones
  CaseSpec spec;       // spec.with_backward (do, dht) for the backward kernels
  GpuOutput output = GpuOutput::Rounded;  // Fp32: o before its final rounding, judged against fp32 bars
};
// The GPU part's fixed cases in list order (the forward's, then the backward's), before --gpu-kernels filters them.
std::vector<GpuSweepCase> gpu_sweep_cases(bool quick, std::uint64_t seed);
// The fixed GPU cases a run with `options` holds (its quick and seed): gpu_sweep_cases less the kernels --gpu-kernels
// leaves out (a planted defect runs on every case, forward and backward).
std::vector<GpuSweepCase> selected_gpu_cases(const SweepOptions& options);

// Runs the sweep, appending one CaseResult per case to `report` and calling `on_case` after each (for
// the terminal table). `gpu_policy` judges the GPU kernels.
// Also sets report.sweep (name "check", the options that choose the list, its length, the shard).
SweepOutcome run_sweep(const SweepOptions& options, const TolerancePolicy& gpu_policy, Report& report,
                       const std::function<void(const CaseResult&)>& on_case);

// One GPU kernel run as the sweep runs it (a name of kGpuSweepKernels), judged
// against `exact` under `policy` into `c` (the property sweep reuses it). Throws what the kernel throws.
void run_gpu_kernel_case(const std::string& kernel, int chunk_size, const CaseSpec& spec, const DplrProblem& problem,
                         const ReferenceResult& exact, int threads, const TolerancePolicy& policy, CaseResult& c,
                         const std::string& planted_defect = "none", bool conditioning_floor = true);

}  // namespace dplr
