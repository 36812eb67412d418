#include "verify/sweep.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/reference.hpp"
#include "reports/sha256.hpp"
#include "verify/case_file.hpp"
#include "verify/case_info.hpp"
#include "verify/conditioning.hpp"
#include "verify/gpu_runner.hpp"
#include "verify/metrics.hpp"
#include "verify/stage_check.hpp"

namespace dplr {
namespace {

// A case file replayed by the sweep (the regression corpus, --case), read once.
struct Replay {
  std::filesystem::path path;
  std::string sha256;
  CaseFile file;
};

std::string replay_tag(const Replay& r) { return "replay " + r.path.filename().string(); }

CaseResult case_of(const DplrProblem& p, std::string id, const CaseSpec& spec, const Replay* replay = nullptr) {
  CaseResult c = describe_case(p, std::move(id));
  c.source.generator = GeneratorSource{spec.distribution, spec.seed};
  if (replay) c.source.files.push_back({"case", replay->path.string(), replay->sha256});
  return c;
}

// After one position of the list: stamps its cases with the position, and writes the case file of a generated
// case that did not pass (a replay is one already).
void finish_position(std::int64_t position, std::size_t first, const DplrProblem& p, const CaseSpec& spec,
                     const std::string& kernel, int chunk_size, const Replay* replay, const SweepOptions& o,
                     Report& report, SweepOutcome& outcome) {
  const CaseResult* failing = nullptr;
  for (std::size_t i = first; i < report.cases.size(); ++i) {
    report.cases[i].sweep_index = position;
    if (!failing && report.cases[i].verdict() != Verdict::Pass) failing = &report.cases[i];
  }
  if (!failing || replay || o.failed_case_folder.empty()) return;
  const auto path = write_case_file(o.failed_case_folder, fmt::format("{:03}-{}", position, failing->id), p, spec, kernel,
                                    chunk_size, fmt::format("{}: {}", failing->id, verdict_name(failing->verdict())),
                                    "dplr check");
  outcome.written.push_back({failing->id, path});
}

TensorMap as_tensors(const ExactTensorMap& exact, DType dtype, const std::vector<std::string>& names) {
  TensorMap out;
  for (const auto& name : names)
    if (auto it = exact.find(name); it != exact.end()) out[name] = it->second.to_tensor(dtype);
  return out;
}

// o, ht, then dq ... dh0: the contract's outputs and gradients.
const std::vector<std::string> kOutputsAndGradients = [] {
  std::vector<std::string> names(std::begin(kOutputNames), std::end(kOutputNames));
  names.insert(names.end(), std::begin(kGradientNames), std::end(kGradientNames));
  return names;
}();

ReferenceResult exact_of(const DplrProblem& p, bool certified, int threads) {
  ReferenceOptions options;
  options.precision = Precision::parse("dd");
  options.threads = threads;
  return certified ? run_certified_reference(p, options) : run_reference(p, options);
}

void cpu_part(const SweepOptions& o, const std::vector<Replay>& replays, std::int64_t& position, Report& report,
              SweepOutcome& outcome, const std::function<void(const CaseResult&)>& on_case) {
  const TolerancePolicy strict = TolerancePolicy::preset("strict");
  const TolerancePolicy report_only = TolerancePolicy::preset("report-only");
  std::vector<std::pair<CaseSpec, const Replay*>> inputs;
  for (const std::string distribution : {"fla", "strong-decay", "mixed-decay", "edge-of-stability", "near-zero-decay"}) {
    if (o.replays_only) break;
    CaseSpec spec;
    spec.distribution = distribution;
    spec.shape = o.quick ? DplrShape{1, 80, 2, 16, 16} : DplrShape{2, 200, 2, 32, 32};
    if (distribution == "near-zero-decay") spec.shape.T *= 2;
    spec.dtype = DType::F32;
    spec.seed = o.seed.value_or(2024);
    inputs.emplace_back(spec, nullptr);
  }
  for (const Replay& r : replays) inputs.emplace_back(r.file.spec, &r);
  for (const auto& [spec, replay] : inputs) {
    const std::int64_t at = position++;
    if (!o.shard.holds(at)) continue;
    const std::size_t first = report.cases.size();
    const DplrProblem p = replay ? replay->file.problem : generate_case(spec);
    const std::string tag = replay ? replay_tag(*replay) : describe(spec);
    const auto case_of = [&, replay = replay](std::string id) { return dplr::case_of(p, std::move(id), spec, replay); };

    const ReferenceResult exact = o.rigorous ? run_rigorous_reference(p, {.precision = {}, .threads = o.threads, .origin = tag}, *o.rigorous)
                                             : exact_of(p, true, o.threads);
    CaseResult reference = case_of("reference: " + tag);
    reference.reference = reference_info(exact);
    const char* kind = o.rigorous ? "proven" : "estimated";
    const double bits = o.rigorous ? exact.min_proven_bits() : exact.min_estimated_bits();
    if (bits < kMinReferenceBits) {
      const std::string failure = fmt::format("the reference has {:.1f} {} bits, below the {:.0f} required", bits, kind,
                                              kMinReferenceBits);
      outcome.failures.push_back(reference.id + ": " + failure);
      reference.failures.push_back(failure);
    } else {
      reference.notes.push_back(fmt::format("{:.1f} {} bits on every tensor (>= {:.0f} required)", bits, kind,
                                            kMinReferenceBits));
    }
    if (o.rigorous)  // the runs made, at growing working precision
      for (const auto& note : exact.notes) reference.notes.push_back(note);
    // A replay of the recurrent form's reverse: the chunk form runs forward only.
    if (p.reverse) reference.notes.push_back("reverse: no chunk-form oracle (the chunk form runs forward only)");
    report.cases.push_back(reference);
    on_case(report.cases.back());
    if (p.reverse) {
      finish_position(at, first, p, spec, "cpu", 0, replay, o, report, outcome);
      continue;
    }

    std::vector<int> chunk_sizes{16, 64};
    if (replay && replay->file.kernel == "cpu" && replay->file.chunk_size == 32) chunk_sizes.push_back(32);
    for (int C : chunk_sizes) {
      ChunkOptions chunk_options;
      chunk_options.threads = o.threads;
      const ChunkStages oracle = run_chunk_stages(p, C, Precision::parse("dd"), chunk_options);
      CaseResult c = case_of(fmt::format("chunk-oracle C{} (dd): {}", C, tag));
      c.comparison = compare(as_tensors(oracle.tensors, DType::F64, kOutputsAndGradients), exact.tensors, strict,
                             {.working_dtype = DType::F64, .block_tokens = C});
      // Rounded to double the two forms are usually identical; the bits they agree on say how close.
      const OracleAgreement agreement = chunk_oracle_agreement(
          oracle.tensors, exact.tensors, kOutputsAndGradients, exact.precision.significand_bits(),
          [&] { return run_chunk_stages(p, C, Precision::parse("qd"), chunk_options).tensors; });
      if (!agreement.holds) {
        outcome.failures.push_back(c.id + ": " + agreement.text);
        c.failures.push_back(agreement.text);
      } else {
        c.notes.push_back(agreement.text);
      }
      report.cases.push_back(std::move(c));
      on_case(report.cases.back());
    }
    ChunkOptions float_options;
    float_options.single_precision = true;
    float_options.threads = o.threads;
    const ChunkStages in_float = run_chunk_stages(p, 64, Precision::parse("double"), float_options);
    CaseResult c = case_of(fmt::format("chunk-float C64 (not gated): {}", tag));
    c.comparison = compare(as_tensors(in_float.tensors, DType::F32, kOutputsAndGradients), exact.tensors, report_only,
                           {.working_dtype = DType::F32, .block_tokens = 64});
    report.cases.push_back(std::move(c));
    on_case(report.cases.back());
    finish_position(at, first, p, spec, "cpu", 0, replay, o, report, outcome);
  }
}

struct GpuCase : GpuSweepCase {
  const Replay* replay = nullptr;  // a case file's tensors instead of generate_case(spec)
};

std::vector<GpuSweepCase> forward_cases(bool quick, std::uint64_t seed) {
  std::vector<GpuSweepCase> cases;
  const std::vector<DType> dtypes{DType::BF16, DType::F16, DType::F32};
  for (DType dtype : dtypes)
    for (const std::string distribution : {"fla", "strong-decay"}) {
      CaseSpec spec;
      spec.distribution = distribution;
      spec.dtype = dtype;
      spec.gk_dtype = DType::F32;
      spec.shape = quick ? DplrShape{1, 100, 2, 64, 64} : DplrShape{2, 300, 3, 64, 64};
      spec.with_backward = false;
      spec.seed = seed;
      for (int C : {16, 32, 64}) {
        if (quick && C == 32) continue;
        cases.push_back({"chunk", C, spec});
        cases.push_back({"chunk-fused", C, spec});
      }
      cases.push_back({"recurrent", 0, spec});
      // The fp32-output mode of the 16-bit paths: o as the kernel computed it, before the final rounding, so the
      // tensor-core kernels (chunk_A_WY, h+o at C = 16), the FMA ones and the recurrent one are gated on their
      // internal accuracy (the strict fp32 bars) rather than behind the 16-bit rounding.
      if (dtype != DType::F32) {
        cases.push_back({"chunk-fused", 16, spec, GpuOutput::Fp32});
        cases.push_back({"recurrent", 0, spec, GpuOutput::Fp32});
        if (!quick) {
          cases.push_back({"chunk", 16, spec, GpuOutput::Fp32});
          cases.push_back({"chunk-fused", 64, spec, GpuOutput::Fp32});
        }
      }
      if (quick) continue;
      for (auto [K, V] : {std::pair<std::int64_t, std::int64_t>{128, 128}, {60, 100}}) {
        CaseSpec wide = spec;
        wide.shape = {1, 200, 2, K, V};
        cases.push_back({"chunk", 64, wide});
        cases.push_back({"chunk-fused", 16, wide});  // 16-bit: the two-warp A+WY, and h+o with K up to 128
        cases.push_back({"recurrent", 0, wide});
      }
      CaseSpec decode = spec;
      decode.shape = {8, 1, 4, 64, 64};
      cases.push_back({"recurrent", 0, decode});
      CaseSpec reverse = spec;
      reverse.reverse = true;
      cases.push_back({"recurrent", 0, reverse});
      // Packed sequences: an empty one, lengths that are not multiples of any chunk size, h0 per sequence.
      CaseSpec varlen = spec;
      varlen.shape = {1, 300, 2, 64, 64};
      varlen.cu_seqlens = {0, 37, 37, 200, 300};
      varlen.with_h0 = true;
      cases.push_back({"recurrent", 0, varlen});
      for (int C : {16, 32, 64}) {
        cases.push_back({"chunk", C, varlen});
        cases.push_back({"chunk-fused", C, varlen});
      }
    }
  return cases;
}

// The backward's cases (verify/sweep.hpp lists what they cover). Every spec draws do and dht (with_backward) and
// has h0; T = 100 and 70 are multiples of no chunk size; heads differ (independent draws). The shapes are small so
// that the exact backward at double-double and the chunk-form oracles (the sweep's CPU cost) stay modest.
std::vector<GpuSweepCase> backward_cases(bool quick, std::uint64_t seed) {
  std::vector<GpuSweepCase> cases;
  for (DType dtype : {DType::BF16, DType::F16, DType::F32}) {
    CaseSpec spec;
    spec.distribution = "fla";
    spec.dtype = dtype;
    spec.gk_dtype = DType::F32;
    spec.shape = quick ? DplrShape{1, 100, 2, 64, 64} : DplrShape{2, 100, 2, 64, 64};
    spec.with_h0 = true;
    spec.with_backward = true;
    spec.seed = seed;
    const auto both = [&](const CaseSpec& s, std::initializer_list<int> chunk_sizes) {
      for (int C : chunk_sizes) {
        cases.push_back({"chunk-bwd", C, s});
        if (C == 16 && s.dtype != DType::F32) cases.push_back({"chunk-bwd-fma", C, s});
      }
      cases.push_back({"recurrent-bwd", 0, s});
    };
    if (quick) {
      both(spec, {16, 64});
      continue;
    }
    both(spec, {16, 32, 64});
    CaseSpec strong = spec;
    strong.distribution = "strong-decay";
    both(strong, {16, 64});
    CaseSpec wide = spec;
    wide.shape = {1, 70, 2, 128, 128};
    both(wide, {64});
    CaseSpec odd = strong;
    odd.shape = {1, 70, 2, 60, 100};
    both(odd, {32});
    // Packed sequences: an empty one, lengths that are multiples of no chunk size, h0 and dht per sequence.
    CaseSpec varlen = spec;
    varlen.shape = {1, 150, 2, 64, 64};
    varlen.cu_seqlens = {0, 37, 37, 100, 150};
    both(varlen, {16, 32, 64});
    CaseSpec reverse = spec;
    reverse.reverse = true;
    cases.push_back({"recurrent-bwd", 0, reverse});
  }
  return cases;
}

// One GPU case: the kernel's o and ht (and, staged, every stage tensor) against the exact answer; a backward
// kernel's gradients (and, chunk-bwd, every stage of a staged run).
void run_gpu_case(const GpuCase& g, const DplrProblem& p, const ReferenceResult& exact, const SweepOptions& o,
                  const TolerancePolicy& policy, CaseResult& c) {
  const bool chunk_kernel = g.chunk_size > 0;
  // Our kernels' working precision; none for fp64 inputs (no fp64 kernel), and none when the floors are off.
  const std::optional<double> unit = o.conditioning_floor ? kernel_working_unit(g.spec.dtype) : std::nullopt;
  ChunkOptions chunk_options;
  chunk_options.backward = is_backward_kernel(g.kernel);
  chunk_options.threads = o.threads;
  // The chunk kernels' stages are judged against the dd oracles; their outputs and gradients, as every kernel's,
  // against the exact recurrence.
  std::optional<ChunkStages> oracle;
  if (chunk_kernel && g.kernel != "chunk-fused")
    oracle = run_chunk_stages(p, g.chunk_size, Precision::parse("dd"), chunk_options);
  // Floors beyond rounding (verify/conditioning.hpp): the perturbation estimate, raised to the fp32-implementation
  // floor of the kernel's algorithm (the recurrence, or the chunk form, in float on the CPU).
  ConditioningFloors output_floors, stage_floors;
  ExactTensorMap in_fp32;  // the kernel's algorithm in plain fp32 on the CPU: its floors and its misrounding
  if (unit) {
    const ConditioningOptions perturbation{.unit = *unit};
    output_floors = conditioning_floors(p, exact.tensors, [&](const DplrProblem& perturbed) {
      ReferenceOptions options;
      options.precision = Precision::parse("double");
      options.threads = o.threads;
      return run_reference(perturbed, options).tensors;
    }, perturbation);
    if (chunk_kernel) {
      ChunkOptions in_float = chunk_options;
      in_float.single_precision = true;
      in_fp32 = run_chunk_stages(p, g.chunk_size, Precision::parse("double"), in_float).tensors;
      const ExactTensorMap& fp32_chunk = in_fp32;
      raise_floors(output_floors, implementation_floors(fp32_chunk, exact.tensors));
      if (oracle) {
        stage_floors = conditioning_floors(p, oracle->tensors, [&](const DplrProblem& perturbed) {
          return run_chunk_stages(perturbed, g.chunk_size, Precision::parse("double"), chunk_options).tensors;
        }, perturbation);
        raise_floors(stage_floors, implementation_floors(fp32_chunk, oracle->tensors));
      }
    } else {
      in_fp32 = recurrent_in_float(p, o.threads);
      raise_floors(output_floors, implementation_floors(in_fp32, exact.tensors));
    }
  }
  CompareOptions options{.working_dtype = g.spec.dtype,
                         .cu_seqlens = g.spec.cu_seqlens.empty() ? std::nullopt : std::optional(g.spec.cu_seqlens),
                         .block_tokens = chunk_kernel ? g.chunk_size : kDefaultBlockTokens,
                         .conditioning = &output_floors,
                         .implementation = unit ? &in_fp32 : nullptr};
  const GpuRunOptions run{.output = g.output, .backward = {}, .planted_defect = o.planted_defect};
  if (is_backward_kernel(g.kernel)) {
    // The planted defect goes to the backward runs too: the backward's own, and the forward's in the recompute.
    if (g.kernel == "recurrent-bwd") {
      judge_backward_case(run_gpu_recurrent_backward(p, run), nullptr, exact.tensors, nullptr, policy, options, c);
      return;
    }
    GpuRunOptions kernels = run;
    if (g.kernel == "chunk-bwd-fma") kernels.backward = GpuBackwardKernels::all(GpuKernelChoice::Fma);
    const TensorMap gradients = run_gpu_chunk_backward(p, g.chunk_size, kernels);
    const TensorMap stages = run_gpu_chunk_stages(p, g.chunk_size, kernels);
    // Stage tensors by the stages' floors; o, ht and the gradients by the recurrence's.
    ConditioningFloors all_floors = stage_floors;
    for (const auto& [name, floor] : output_floors) all_floors[name] = floor;
    options.conditioning = &all_floors;
    judge_backward_case(gradients, &stages, exact.tensors, &oracle->tensors, policy, options, c);
    return;
  }
  if (g.kernel == "recurrent") {
    c.comparison = compare(run_gpu_recurrent(p, run), exact.tensors, policy, options);
  } else if (g.kernel == "chunk-fused") {
    c.comparison = compare(run_gpu_chunk_fused(p, g.chunk_size, run), exact.tensors, policy, options);
  } else {
    const TensorMap kernel_tensors = run_gpu_chunk(p, g.chunk_size, run);
    const TensorMap outputs{{"o", kernel_tensors.at("o")}, {"ht", kernel_tensors.at("ht")}};
    c.comparison = compare(outputs, exact.tensors, policy, options);
    options.conditioning = &stage_floors;
    // ht is judged against the exact recurrence above; the staged forward returns no gated operands (stage A's
    // qg ... eg_last): those the chunk-bwd cases' staged runs judge.
    c.stages = judge_stages(kernel_tensors, oracle->tensors, policy, options, {"ht"}).section;
  }
}

// Whether the list holds the cases of `kernel` (--gpu-kernels; a planted defect leaves every kernel's in).
bool selected(const SweepOptions& o, const std::string& kernel) {
  return o.gpu_kernels.empty() || std::find(o.gpu_kernels.begin(), o.gpu_kernels.end(), kernel) != o.gpu_kernels.end();
}

// The GPU part of the list: the fixed cases, then the replays that name a GPU kernel; only the kernels of
// --gpu-kernels where given.
std::vector<GpuCase> gpu_list(const SweepOptions& o, const std::vector<Replay>& replays) {
  std::vector<GpuCase> cases;
  if (!o.replays_only)
    for (GpuSweepCase& g : selected_gpu_cases(o)) cases.push_back({std::move(g)});
  for (const Replay& r : replays)
    if (r.file.kernel != "cpu" && selected(o, r.file.kernel))
      cases.push_back({{r.file.kernel, r.file.chunk_size, r.file.spec, GpuOutput::Rounded}, &r});
  return cases;
}

// Whether two generated specs draw the same problem (every field generate_case reads).
bool same_problem(const CaseSpec& a, const CaseSpec& b) {
  return a.shape.B == b.shape.B && a.shape.T == b.shape.T && a.shape.H == b.shape.H && a.shape.K == b.shape.K &&
         a.shape.V == b.shape.V && a.cu_seqlens == b.cu_seqlens && a.dtype == b.dtype && a.gk_dtype == b.gk_dtype &&
         a.distribution == b.distribution && a.seed == b.seed && a.with_h0 == b.with_h0 &&
         a.with_backward == b.with_backward && a.gate_normalizer == b.gate_normalizer && a.scale == b.scale &&
         a.reverse == b.reverse;
}

void gpu_part(const SweepOptions& o, const std::vector<GpuCase>& cases, std::int64_t& position,
              const TolerancePolicy& policy, Report& report, SweepOutcome& outcome,
              const std::function<void(const CaseResult&)>& on_case) {
  // The problem and its exact answer, kept while consecutive cases share them (the kernels of one spec).
  std::optional<std::pair<DplrProblem, ReferenceResult>> last;
  const GpuCase* last_case = nullptr;
  for (const GpuCase& g : cases) {
    const std::int64_t at = position++;
    if (!o.shard.holds(at)) continue;
    const std::size_t first = report.cases.size();
    const bool reuse = last && last_case->replay == g.replay && (g.replay || same_problem(last_case->spec, g.spec));
    const std::string kernel =
        (g.chunk_size == 0 ? fmt::format("gpu {}", g.kernel) : fmt::format("gpu {} C{}", g.kernel, g.chunk_size)) +
        (g.output == GpuOutput::Fp32 ? " fp32-output" : "");
    const auto out_of_range = [&](const std::string& why) {
      outcome.skipped.push_back(fmt::format("{}: {}: out of the kernels' range, not run: {}", kernel,
                                            g.replay ? replay_tag(*g.replay) : describe(g.spec), why));
    };
    if (!reuse) {
      DplrProblem problem = g.replay ? g.replay->file.problem : generate_case(g.spec);
      try {
        ReferenceResult exact = exact_of(problem, false, o.threads);
        last.emplace(std::move(problem), std::move(exact));
      } catch (const BeyondDoubleRangeError& e) {
        last.reset(), last_case = nullptr;
        out_of_range(e.what());
        continue;
      }
    }
    last_case = &g;
    const DplrProblem& p = last->first;
    const ReferenceResult& exact = last->second;
    if (const auto why = beyond_kernel_range(exact.tensors)) {
      out_of_range(*why);
      continue;
    }
    CaseResult c = case_of(p, fmt::format("{}: {}", kernel, g.replay ? replay_tag(*g.replay) : describe(g.spec)), g.spec,
                           g.replay);
    c.reference = reference_info(exact);
    c.working_dtype = g.spec.dtype;
    // A kernel that refuses the case (InputError) or fails while running it gives the case an error verdict;
    // the sweep goes on, and the run's verdict is the worst.
    try {
      run_gpu_case(g, p, exact, o, policy, c);
    } catch (const std::exception& e) {
      c.error = e.what();
    }
    report.cases.push_back(std::move(c));
    on_case(report.cases.back());
    finish_position(at, first, p, g.spec, g.kernel, g.chunk_size, g.replay, o, report, outcome);
  }
}

std::vector<Replay> read_replays(const std::vector<std::filesystem::path>& paths) {
  std::vector<Replay> replays;
  for (const auto& path : paths) replays.push_back({path, sha256_file(path), read_case_file(path)});
  return replays;
}

}  // namespace

std::optional<std::string> beyond_kernel_range(const ExactTensorMap& exact) {
  const double largest = std::numeric_limits<float>::max();
  std::optional<std::string> worst;
  double worst_magnitude = largest;
  for (const auto& name : kOutputsAndGradients) {
    const auto it = exact.find(name);
    if (it == exact.end()) continue;
    for (std::int64_t i = 0; i < it->second.numel(); ++i) {
      const double magnitude = std::fabs(it->second.value(i));
      if (!(magnitude > worst_magnitude)) continue;
      worst_magnitude = magnitude;
      worst = fmt::format("the exact {} reaches {:.3g} at [{}], beyond F32's finite range ({:.3g}): no fp32 kernel can "
                          "represent it",
                          name, it->second.value(i), fmt::join(unravel_index(i, it->second.shape), ", "), largest);
    }
  }
  return worst;
}

OracleAgreement chunk_oracle_agreement(const ExactTensorMap& oracle, const ExactTensorMap& exact,
                                       const std::vector<std::string>& names, double cap_bits,
                                       const std::function<ExactTensorMap()>& wider_oracle) {
  struct Worst {
    double bits;
    std::string name;
  };
  const auto worst_of = [&](const ExactTensorMap& candidate) {
    Worst w{cap_bits, {}};
    for (const auto& name : names) {
      if (!candidate.count(name) || !exact.count(name)) continue;  // a replay without do: no gradients
      const double b = agreement_bits(candidate.at(name), exact.at(name), cap_bits);
      if (b < w.bits) w = {b, name};
    }
    return w;
  };
  const auto text = [](const Worst& w) {
    return fmt::format("{:.1f} bits{}", w.bits, w.name.empty() ? "" : " (worst: " + w.name + ")");
  };
  const Worst first = worst_of(oracle);
  if (first.bits >= kMinReferenceBits) return {true, "agrees with the recurrence to " + text(first)};
  const ExactTensorMap wider = wider_oracle();
  const Worst wide = worst_of(wider);
  // The dd oracle against the wider one: its own rounding in the chunk form.
  double own = cap_bits;
  for (const auto& name : names)
    if (oracle.count(name) && wider.count(name)) own = std::min(own, agreement_bits(oracle.at(name), wider.at(name), cap_bits));
  const bool holds = wide.bits >= kMinReferenceBits;
  return {holds, fmt::format("agrees with the recurrence to {}; at qd to {} ({} {:.0f}){}", text(first), text(wide),
                             holds ? ">=" : "<", kMinReferenceBits,
                             holds ? fmt::format(": the shortfall is the chunk form's own dd rounding (dd and qd "
                                                 "chunk forms agree to {:.1f} bits)",
                                                 own)
                                   : std::string(": the chunk form is not the recurrence"))};
}

bool is_backward_kernel(std::string_view kernel) {
  return kernel == "chunk-bwd" || kernel == "chunk-bwd-fma" || kernel == "recurrent-bwd";
}

void require_gpu_sweep_kernels(const std::vector<std::string>& kernels) {
  for (const auto& k : kernels)
    if (std::find(std::begin(kGpuSweepKernels), std::end(kGpuSweepKernels), k) == std::end(kGpuSweepKernels))
      throw InputError(fmt::format("GPU kernel '{}': expected one of {}", k, fmt::join(kGpuSweepKernels, ", ")));
}

std::vector<GpuSweepCase> gpu_sweep_cases(bool quick, std::uint64_t seed) {
  std::vector<GpuSweepCase> cases = forward_cases(quick, seed);
  for (GpuSweepCase& g : backward_cases(quick, seed)) cases.push_back(std::move(g));
  return cases;
}

std::vector<GpuSweepCase> selected_gpu_cases(const SweepOptions& o) {
  std::vector<GpuSweepCase> cases;
  for (GpuSweepCase& g : gpu_sweep_cases(o.quick, o.seed.value_or(7)))
    if (selected(o, g.kernel)) cases.push_back(std::move(g));
  return cases;
}

void run_gpu_kernel_case(const std::string& kernel, int chunk_size, const CaseSpec& spec, const DplrProblem& problem,
                         const ReferenceResult& exact, int threads, const TolerancePolicy& policy, CaseResult& c,
                         const std::string& planted_defect, bool conditioning_floor) {
  SweepOptions options;
  options.threads = threads;
  options.planted_defect = planted_defect;
  options.conditioning_floor = conditioning_floor;
  run_gpu_case(GpuCase{{kernel, chunk_size, spec}}, problem, exact, options, policy, c);
}

SweepOutcome run_sweep(const SweepOptions& o, const TolerancePolicy& gpu_policy, Report& report,
                       const std::function<void(const CaseResult&)>& on_case) {
  SweepOutcome outcome;
  const std::vector<Replay> replays = read_replays(o.replays);
  std::int64_t position = 0;
  const GpuDevice device = gpu_device();
  if (o.gpu_only && !device.available)
    throw InputError("--gpu-only: no GPU kernels to run, so nothing would be checked (" + device.reason + ")");
  if (o.gpu_only) outcome.skipped.push_back("CPU part (reference self-checks, chunk oracles): --gpu-only");
  else cpu_part(o, replays, position, report, outcome, on_case);
  if (o.cpu_only) {
    outcome.skipped.push_back("GPU kernels: --cpu-only");
  } else {
    require_gpu_sweep_kernels(o.gpu_kernels);
    std::vector<std::string> left_out;
    for (const char* k : kGpuSweepKernels)
      if (!selected(o, k)) left_out.emplace_back(k);
    if (!left_out.empty())
      outcome.skipped.push_back(fmt::format("GPU cases of the kernels {}: --gpu-kernels {}", fmt::join(left_out, ", "),
                                            fmt::join(o.gpu_kernels, ",")));
    const std::vector<GpuCase> cases = gpu_list(o, replays);
    if (!device.available && !cases.empty()) {
      // What did not run, by direction: how many cases, of which kernels, at which chunk sizes.
      struct Part {
        std::size_t cases = 0;
        std::vector<std::string> kernels;
        std::set<int> chunk_sizes;
      } forward, backward;
      std::size_t replayed = 0;
      for (const GpuCase& g : cases) {
        if (g.replay) {
          ++replayed;
          continue;
        }
        Part& part = is_backward_kernel(g.kernel) ? backward : forward;
        ++part.cases;
        if (std::find(part.kernels.begin(), part.kernels.end(), g.kernel) == part.kernels.end()) part.kernels.push_back(g.kernel);
        if (g.chunk_size > 0) part.chunk_sizes.insert(g.chunk_size);
      }
      std::vector<std::string> what;
      for (const auto& [name, part] : {std::pair<const char*, const Part*>{"forward", &forward}, {"backward", &backward}})
        if (part->cases)
          what.push_back(fmt::format("{} {} cases of {}{}, bf16/fp16/fp32", part->cases, name, fmt::join(part->kernels, ", "),
                                     part->chunk_sizes.empty() ? ""
                                                               : fmt::format(" (chunk sizes {})", fmt::join(part->chunk_sizes, "/"))));
      if (replayed) what.push_back(fmt::format("{} replayed case files' kernels", replayed));
      outcome.skipped.push_back(fmt::format("GPU kernels ({}): {}", fmt::join(what, "; "), device.reason));
      position += static_cast<std::int64_t>(cases.size());
    } else if (device.available) {
      report.host.gpu = device.name;
      gpu_part(o, cases, position, gpu_policy, report, outcome, on_case);
    }
  }
  nlohmann::json replay_files = nlohmann::json::array();
  for (const Replay& r : replays) replay_files.push_back(r.sha256);
  report.sweep = SweepInfo{"check",
                           {{"quick", o.quick},
                            {"cpu_only", o.cpu_only},
                            {"gpu_only", o.gpu_only},
                            {"planted_defect", o.planted_defect},
                            {"gpu_kernels", o.gpu_kernels},
                            {"seed", o.seed ? nlohmann::json(*o.seed) : nlohmann::json(nullptr)},
                            {"replays_only", o.replays_only},
                            {"replays", replay_files}},
                           position, o.shard.index, o.shard.count};
  return outcome;
}

}  // namespace dplr
