#include "verify/sweep.hpp"

#include <fmt/format.h>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/reference.hpp"
#include "verify/case_info.hpp"
#include "verify/gpu_runner.hpp"

namespace dplr {
namespace {

CaseResult case_of(const DplrProblem& p, std::string id, const CaseSpec& spec) {
  CaseResult c = describe_case(p, std::move(id));
  c.source.generator = GeneratorSource{spec.distribution, spec.seed};
  return c;
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

void cpu_part(const SweepOptions& o, Report& report, SweepOutcome& outcome,
              const std::function<void(const CaseResult&)>& on_case) {
  const TolerancePolicy strict = TolerancePolicy::preset("strict");
  const TolerancePolicy report_only = TolerancePolicy::preset("report-only");
  for (const std::string distribution : {"fla", "strong-decay", "mixed-decay", "edge-of-stability", "near-zero-decay"}) {
    CaseSpec spec;
    spec.distribution = distribution;
    spec.shape = o.quick ? DplrShape{1, 80, 2, 16, 16} : DplrShape{2, 200, 2, 32, 32};
    if (distribution == "near-zero-decay") spec.shape.T *= 2;
    spec.dtype = DType::F32;
    spec.seed = o.seed.value_or(2024);
    const DplrProblem p = generate_case(spec);
    const std::string tag = describe(spec);

    const ReferenceResult exact = exact_of(p, true, o.threads);
    CaseResult reference = case_of(p, "reference: " + tag, spec);
    reference.reference = reference_info(exact);
    if (exact.min_certified_bits() < kMinCertifiedBits) {
      const std::string failure = fmt::format("the reference is certified to {:.1f} bits, below the {:.0f} required",
                                              exact.min_certified_bits(), kMinCertifiedBits);
      outcome.failures.push_back(reference.id + ": " + failure);
      reference.failures.push_back(failure);
    } else {
      reference.notes.push_back(fmt::format("certified to {:.1f} bits on every tensor (>= {:.0f} required)",
                                            exact.min_certified_bits(), kMinCertifiedBits));
    }
    report.cases.push_back(reference);
    on_case(report.cases.back());

    for (int C : {16, 64}) {
      ChunkOptions chunk_options;
      chunk_options.threads = o.threads;
      const ChunkStages oracle = run_chunk_stages(p, C, Precision::parse("dd"), chunk_options);
      CaseResult c = case_of(p, fmt::format("chunk-oracle C{} (dd): {}", C, tag), spec);
      c.comparison = compare(as_tensors(oracle.tensors, DType::F64, kOutputsAndGradients), exact.tensors, strict,
                             {.working_dtype = DType::F64, .block_tokens = C});
      // Rounded to double the two forms are usually identical; the bits they agree on say how close.
      double bits = exact.precision.significand_bits();
      std::string worst;
      for (const auto& name : kOutputsAndGradients) {
        const double b = agreement_bits(oracle.tensors.at(name), exact.tensors.at(name), bits);
        if (b < bits) bits = b, worst = name;
      }
      const std::string agreement = fmt::format("agrees with the recurrence to {:.1f} bits{}", bits,
                                                worst.empty() ? "" : " (worst: " + worst + ")");
      if (bits < kMinCertifiedBits) {
        outcome.failures.push_back(c.id + ": " + agreement);
        c.failures.push_back(agreement);
      } else {
        c.notes.push_back(agreement);
      }
      report.cases.push_back(std::move(c));
      on_case(report.cases.back());
    }
    ChunkOptions float_options;
    float_options.single_precision = true;
    float_options.threads = o.threads;
    const ChunkStages in_float = run_chunk_stages(p, 64, Precision::parse("double"), float_options);
    CaseResult c = case_of(p, fmt::format("chunk-float C64 (not gated): {}", tag), spec);
    c.comparison = compare(as_tensors(in_float.tensors, DType::F32, kOutputsAndGradients), exact.tensors, report_only,
                           {.working_dtype = DType::F32, .block_tokens = 64});
    report.cases.push_back(std::move(c));
    on_case(report.cases.back());
  }
}

struct GpuCase {
  std::string kernel;  // "chunk" (staged, every stage checked), "chunk-fused" (o, ht), or "recurrent"
  int chunk_size = 0;
  CaseSpec spec;
  GpuOutput output = GpuOutput::Rounded;  // Fp32: o before its final rounding, judged against fp32 bars
};

std::vector<GpuCase> gpu_cases(bool quick, std::uint64_t seed) {
  std::vector<GpuCase> cases;
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

// One GPU case: the kernel's o and ht (and, staged, every stage tensor) against the exact answer.
void run_gpu_case(const GpuCase& g, const DplrProblem& p, const ReferenceResult& exact, const SweepOptions& o,
                  const TolerancePolicy& policy, CaseResult& c) {
  const CompareOptions options{.working_dtype = g.spec.dtype,
                               .cu_seqlens = g.spec.cu_seqlens.empty() ? std::nullopt
                                                                       : std::optional(g.spec.cu_seqlens),
                               .block_tokens = g.chunk_size > 0 ? g.chunk_size : kDefaultBlockTokens};
  const GpuRunOptions run{.output = g.output, .planted_defect = o.planted_defect};
  if (g.kernel == "recurrent") {
    c.comparison = compare(run_gpu_recurrent(p, run), exact.tensors, policy, options);
  } else if (g.kernel == "chunk-fused") {
    c.comparison = compare(run_gpu_chunk_fused(p, g.chunk_size, run), exact.tensors, policy, options);
  } else {
    const TensorMap kernel_tensors = run_gpu_chunk(p, g.chunk_size, run);
    const TensorMap outputs{{"o", kernel_tensors.at("o")}, {"ht", kernel_tensors.at("ht")}};
    c.comparison = compare(outputs, exact.tensors, policy, options);
    ChunkOptions chunk_options;
    chunk_options.backward = false;
    chunk_options.threads = o.threads;
    const ChunkStages oracle = run_chunk_stages(p, g.chunk_size, Precision::parse("dd"), chunk_options);
    StageSection section;
    for (const auto& stage : chunk_stage_table()) {
      ExactTensorMap stage_exact;
      for (const auto& t : stage.tensors)
        if (auto it = oracle.tensors.find(t); it != oracle.tensors.end() && t != "ht") stage_exact[t] = it->second;
      for (auto& r : compare_stage(stage.stage, kernel_tensors, stage_exact, policy, options))
        section.results.push_back(std::move(r));
    }
    section.first_diverging_stage = first_diverging_stage(section.results);
    c.stages = std::move(section);
  }
}

void gpu_part(const SweepOptions& o, const TolerancePolicy& policy, Report& report,
              const std::function<void(const CaseResult&)>& on_case) {
  for (const GpuCase& g : gpu_cases(o.quick, o.seed.value_or(7))) {
    const DplrProblem p = generate_case(g.spec);
    const ReferenceResult exact = exact_of(p, false, o.threads);
    const std::string kernel = (g.kernel == "recurrent" ? "gpu recurrent" : fmt::format("gpu {} C{}", g.kernel, g.chunk_size)) +
                               (g.output == GpuOutput::Fp32 ? " fp32-output" : "");
    CaseResult c = case_of(p, fmt::format("{}: {}", kernel, describe(g.spec)), g.spec);
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
  }
}

}  // namespace

SweepOutcome run_sweep(const SweepOptions& o, const TolerancePolicy& gpu_policy, Report& report,
                       const std::function<void(const CaseResult&)>& on_case) {
  SweepOutcome outcome;
  const GpuDevice device = gpu_device();
  if (o.gpu_only && !device.available)
    throw InputError("--gpu-only: no GPU kernels to run, so nothing would be checked (" + device.reason + ")");
  if (o.gpu_only) outcome.skipped.push_back("CPU part (reference self-checks, chunk oracles): --gpu-only");
  else cpu_part(o, report, outcome, on_case);
  if (o.cpu_only) {
    outcome.skipped.push_back("GPU kernels: --cpu-only");
  } else if (!device.available) {
    outcome.skipped.push_back("GPU kernels (chunk C16/32/64 and fused recurrent, bf16/fp16/fp32): " + device.reason);
  } else {
    report.host.gpu = device.name;
    gpu_part(o, gpu_policy, report, on_case);
  }
  return outcome;
}

}  // namespace dplr
