#include "verify/property_sweep.hpp"

#include <chrono>
#include <cstring>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "generators/rapidcheck.hpp"
#include "reference/chunk_stages.hpp"
#include "reference/reference.hpp"
#include "verify/case_file.hpp"
#include "verify/case_info.hpp"
#include "verify/gpu_runner.hpp"

namespace dplr {
namespace {

using Clock = std::chrono::steady_clock;

const std::vector<std::string>& judged_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n(std::begin(kOutputNames), std::end(kOutputNames));
    n.insert(n.end(), std::begin(kGradientNames), std::end(kGradientNames));
    return n;
  }();
  return names;
}

std::string shown(const SweepCase& c) {
  std::ostringstream os;
  showValue(c, os);
  return os.str();
}

bool any_failed(const std::vector<CaseResult>& results) {
  for (const auto& r : results)
    if (r.verdict() != Verdict::Pass) return true;
  return false;
}

ReferenceResult exact_of(const DplrProblem& p, int threads) {
  ReferenceOptions options;
  options.precision = Precision::parse("dd");
  options.threads = threads;
  return run_reference(p, options);
}

CaseResult case_for(const DplrProblem& p, std::string id, const SweepCase& c) {
  CaseResult r = describe_case(p, std::move(id));
  r.source.generator = GeneratorSource{c.spec.distribution, c.spec.seed};
  r.notes.push_back("case: " + shown(c));
  return r;
}

// A case whose inputs could not even be built (a generator bug): an error, with the case in full.
CaseResult broken_case(std::string id, const SweepCase& c, const std::exception& e) {
  CaseResult r;
  r.id = std::move(id);
  r.error = e.what();
  r.notes.push_back("case: " + shown(c));
  return r;
}

// Token ranges [begin, end) of every sequence along T (batch rows: each row is 0..T).
std::vector<std::pair<std::int64_t, std::int64_t>> sequence_ranges(const DplrProblem& p) {
  std::vector<std::pair<std::int64_t, std::int64_t>> ranges;
  if (p.cu_seqlens.empty())
    for (std::int64_t b = 0; b < p.shape.B; ++b) ranges.emplace_back(0, p.shape.T);
  else
    for (std::size_t n = 0; n + 1 < p.cu_seqlens.size(); ++n) ranges.emplace_back(p.cu_seqlens[n], p.cu_seqlens[n + 1]);
  return ranges;
}

// --plant dropped-partial-chunk: o is zero on the last partial chunk of each sequence longer than a chunk.
void drop_partial_chunks(Tensor& o, const DplrProblem& p, int C) {
  const auto ranges = sequence_ranges(p);
  const std::int64_t T = p.shape.T, H = p.shape.H, V = p.shape.V;
  for (std::size_t n = 0; n < ranges.size(); ++n) {
    const auto [begin, end] = ranges[n];
    const std::int64_t length = end - begin, tail = length % C;
    if (length <= C || tail == 0) continue;
    const std::int64_t row = p.cu_seqlens.empty() ? static_cast<std::int64_t>(n) : 0;
    for (std::int64_t t = end - tail; t < end; ++t)
      for (std::int64_t i = 0; i < H * V; ++i) o.values[static_cast<std::size_t>((row * T + t) * H * V + i)] = 0.0;
  }
}

// out[new] = in[old]: new head h is old heads[h]; new sequence j is old sequences[j].
struct Permutation {
  std::vector<std::int64_t> heads, sequences;
};

Permutation reversal(const DplrProblem& p) {
  Permutation perm;
  for (std::int64_t h = p.shape.H - 1; h >= 0; --h) perm.heads.push_back(h);
  for (std::int64_t n = p.num_sequences() - 1; n >= 0; --n) perm.sequences.push_back(n);
  return perm;
}

// A [B, T, H, D] tensor of `p`'s packing, permuted (varlen: the packed sequences reordered along T).
Tensor permute_tokens(const Tensor& in, const DplrProblem& p, const Permutation& perm) {
  Tensor out = in;
  const std::int64_t T = in.shape[1], H = in.shape[2], D = in.shape[3];
  const auto ranges = sequence_ranges(p);
  std::int64_t packed = 0;  // varlen: where new sequence j starts
  for (std::size_t j = 0; j < ranges.size(); ++j) {
    const auto [begin, end] = ranges[static_cast<std::size_t>(perm.sequences[j])];
    const std::int64_t src_row = p.cu_seqlens.empty() ? perm.sequences[j] : 0;
    const std::int64_t dst_row = p.cu_seqlens.empty() ? static_cast<std::int64_t>(j) : 0;
    const std::int64_t dst_begin = p.cu_seqlens.empty() ? begin : packed;
    for (std::int64_t t = begin; t < end; ++t)
      for (std::int64_t h = 0; h < H; ++h)
        for (std::int64_t d = 0; d < D; ++d)
          out.values[static_cast<std::size_t>(((dst_row * T + dst_begin + (t - begin)) * H + h) * D + d)] =
              in.values[static_cast<std::size_t>(((src_row * T + t) * H + perm.heads[h]) * D + d)];
    packed += end - begin;
  }
  return out;
}

// An [N, H, K, V] tensor permuted.
Tensor permute_states(const Tensor& in, const Permutation& perm) {
  Tensor out = in;
  const std::int64_t H = in.shape[1], KV = in.shape[2] * in.shape[3];
  for (std::size_t n = 0; n < perm.sequences.size(); ++n)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t i = 0; i < KV; ++i)
        out.values[static_cast<std::size_t>((static_cast<std::int64_t>(n) * H + h) * KV + i)] =
            in.values[static_cast<std::size_t>((perm.sequences[n] * H + perm.heads[h]) * KV + i)];
  return out;
}

bool is_state(const std::string& name) { return name == "ht" || name == "dh0" || name == "h0" || name == "dht"; }

DplrProblem permute_problem(const DplrProblem& p, const Permutation& perm) {
  DplrProblem out = p;
  for (Tensor* t : {&out.q, &out.k, &out.v, &out.a, &out.b, &out.gk}) *t = permute_tokens(*t, p, perm);
  if (out.grad_o) *out.grad_o = permute_tokens(*p.grad_o, p, perm);
  if (out.h0) *out.h0 = permute_states(*p.h0, perm);
  if (out.grad_ht) *out.grad_ht = permute_states(*p.grad_ht, perm);
  if (!p.cu_seqlens.empty()) {
    const auto ranges = sequence_ranges(p);
    out.cu_seqlens = {0};
    for (const auto n : perm.sequences) {
      const auto [begin, end] = ranges[static_cast<std::size_t>(n)];
      out.cu_seqlens.push_back(out.cu_seqlens.back() + (end - begin));
    }
  }
  return out;
}

// Names of `a` whose values differ bitwise from `b`'s, with counts ("o (3 of 512 elements)").
std::vector<std::string> bitwise_differences(const TensorMap& a, const TensorMap& b, const std::vector<std::string>& names) {
  std::vector<std::string> differing;
  for (const auto& name : names) {
    const auto& x = a.at(name).values;
    const auto& y = b.at(name).values;
    std::int64_t differ = 0;
    for (std::size_t i = 0; i < x.size(); ++i)
      if (std::memcmp(&x[i], &y[i], sizeof(double)) != 0) ++differ;
    if (differ) differing.push_back(fmt::format("{} ({} of {} elements)", name, differ, x.size()));
  }
  return differing;
}

// The permutation property's verdict: the outputs (judged_names) of the permuted problem, `permuted`, must be bitwise
// `mine` permuted by `perm` (states by sequence and head, token tensors along T as `p` packs them). `whose` names
// the side in the failure ("reference", "kernel").
void judge_permutation(const TensorMap& mine, const TensorMap& permuted, const DplrProblem& p, const Permutation& perm,
                       std::string_view whose, CaseResult& r) {
  TensorMap expected;
  std::vector<std::string> outputs;
  for (const auto& name : judged_names())
    if (mine.count(name) && permuted.count(name)) {
      expected[name] = is_state(name) ? permute_states(mine.at(name), perm) : permute_tokens(mine.at(name), p, perm);
      outputs.push_back(name);
    }
  const auto moved = bitwise_differences(permuted, expected, outputs);
  const std::string what = fmt::format("heads reversed ({}), sequences reversed ({})", p.shape.H, p.num_sequences());
  if (moved.empty())
    r.notes.push_back(fmt::format("{}: {} bitwise the permuted outputs", what, fmt::join(outputs, ", ")));
  else
    r.failures.push_back(fmt::format("{}: the {}'s outputs are not the permuted ones: {} differ", what, whose,
                                     fmt::join(moved, ", ")));
}

struct CpuJudge {
  const PropertyOptions& o;
  std::int64_t position;
  std::string* out_of_range;  // set, with no result returned, where the case's exact answer cannot be held

  std::vector<CaseResult> operator()(const SweepCase& c) const {
    const std::string tag = fmt::format("property #{} cpu", position);
    DplrProblem p;
    try {
      p = generate_case(c.spec);
    } catch (const std::exception& e) {
      return {broken_case(fmt::format("{}: {}", tag, describe(c.spec)), c, e)};
    }
    std::vector<CaseResult> out;
    ReferenceResult exact;
    try {
      exact = exact_of(p, o.threads);
    } catch (const BeyondDoubleRangeError& e) {
      *out_of_range = fmt::format("{}: {}", tag, e.what());
      return {};
    }
    if (!p.reverse) out.push_back(chunk_oracle(c, p, exact, tag));
    out.push_back(permutation(c, p, exact, tag));
    return out;
  }

  CaseResult chunk_oracle(const SweepCase& c, const DplrProblem& p, const ReferenceResult& exact,
                          const std::string& tag) const {
    CaseResult r = case_for(p, fmt::format("{} chunk-oracle C{}: {}", tag, c.chunk_size, describe(c.spec)), c);
    r.reference = reference_info(exact);
    try {
      ChunkOptions options;
      options.threads = o.threads;
      const ChunkStages oracle = run_chunk_stages(p, c.chunk_size, Precision::parse("dd"), options);
      TensorMap rounded;
      for (const auto& name : judged_names()) {
        const auto it = oracle.tensors.find(name);
        if (it != oracle.tensors.end() && exact.tensors.count(name)) rounded[name] = it->second.to_tensor(DType::F64);
      }
      if (o.planted == "dropped-partial-chunk") drop_partial_chunks(rounded.at("o"), p, c.chunk_size);
      r.comparison = compare(rounded, exact.tensors, TolerancePolicy::preset("strict"),
                             {.working_dtype = DType::F64,
                              .cu_seqlens = p.cu_seqlens.empty() ? std::nullopt : std::optional(p.cu_seqlens),
                              .block_tokens = c.chunk_size});
      const OracleAgreement agreement = chunk_oracle_agreement(
          oracle.tensors, exact.tensors, judged_names(), exact.precision.significand_bits(),
          [&] { return run_chunk_stages(p, c.chunk_size, Precision::parse("qd"), options).tensors; });
      (agreement.holds ? r.notes : r.failures).push_back(agreement.text);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return r;
  }

  CaseResult permutation(const SweepCase& c, const DplrProblem& p, const ReferenceResult& exact,
                         const std::string& tag) const {
    CaseResult r = case_for(p, fmt::format("{} permutation: {}", tag, describe(c.spec)), c);
    r.reference = reference_info(exact);
    try {
      const Permutation perm = reversal(p);
      const ReferenceResult permuted = exact_of(permute_problem(p, perm), o.threads);
      Permutation expected_perm = perm;
      // --plant head-mixup: the expectation's heads 0 and 1 swapped.
      if (o.planted == "head-mixup" && perm.heads.size() >= 2) std::swap(expected_perm.heads[0], expected_perm.heads[1]);
      TensorMap mine, got;
      for (const auto& name : judged_names())
        if (exact.tensors.count(name) && permuted.tensors.count(name)) {
          mine[name] = exact.tensors.at(name).to_tensor(DType::F64);
          got[name] = permuted.tensors.at(name).to_tensor(DType::F64);
        }
      judge_permutation(mine, got, p, expected_perm, "reference", r);
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return r;
  }
};

// The kernel's raw tensors (outputs, and the staged kernel's stage tensors), with the run's planted defect.
TensorMap kernel_tensors(const SweepCase& c, const DplrProblem& p, const std::string& planted_defect) {
  const GpuRunOptions run{.output = GpuOutput::Rounded, .backward = {}, .planted_defect = planted_defect};
  if (c.kernel == "chunk-bwd") return run_gpu_chunk_backward(p, c.chunk_size, run);
  if (c.kernel == "recurrent-bwd") return run_gpu_recurrent_backward(p, run);
  if (c.kernel == "recurrent") return run_gpu_recurrent(p, run);
  if (c.kernel == "chunk-fused") return run_gpu_chunk_fused(p, c.chunk_size, run);
  return run_gpu_chunk(p, c.chunk_size, run);
}

struct GpuJudge {
  const PropertyOptions& o;
  const TolerancePolicy& policy;
  std::int64_t position;
  std::string* out_of_range;  // as CpuJudge's; also where the exact answer is beyond the kernels' fp32 range

  std::vector<CaseResult> operator()(const SweepCase& c) const {
    const std::string kernel = c.chunk_size == 0 ? "gpu " + c.kernel : fmt::format("gpu {} C{}", c.kernel, c.chunk_size);
    const std::string id = fmt::format("property #{} {}: {}", position, kernel, describe(c.spec));
    DplrProblem p;
    try {
      p = generate_case(c.spec);
    } catch (const std::exception& e) {
      return {broken_case(id, c, e)};
    }
    // A case whose exact answer no fp32 kernel can represent (growth past 3.4e38, or past double's range) says
    // nothing about the kernel: it is reported as out of range and not run (beyond_kernel_range, verify/sweep.hpp).
    ReferenceResult exact;
    try {
      exact = exact_of(p, o.threads);
    } catch (const BeyondDoubleRangeError& e) {
      *out_of_range = fmt::format("{}: {}", id, e.what());
      return {};
    }
    if (const auto why = beyond_kernel_range(exact.tensors)) {
      *out_of_range = fmt::format("{}: {}", id, *why);
      return {};
    }
    CaseResult r = case_for(p, id, c);
    r.reference = reference_info(exact);
    r.working_dtype = c.spec.dtype;
    try {
      run_gpu_kernel_case(c.kernel, c.chunk_size, c.spec, p, exact, o.threads, policy, r, o.gpu_planted_defect,
                          o.conditioning_floor);
      // Bitwise determinism run to run: the same inputs twice, every output and stage tensor equal.
      const TensorMap first = kernel_tensors(c, p, o.gpu_planted_defect),
                      second = kernel_tensors(c, p, o.gpu_planted_defect);
      std::vector<std::string> all_names;
      for (const auto& [name, tensor] : first) all_names.push_back(name);
      const auto differing = bitwise_differences(first, second, all_names);
      if (differing.empty())
        r.notes.push_back(fmt::format("bitwise the same in a second run ({} tensors)", first.size()));
      else
        r.failures.push_back(fmt::format("not deterministic: a second run differs in {}", fmt::join(differing, ", ")));
      // Invariance under permuting heads and sequences: (sequence, head) pairs are independent problems, so the
      // kernel on the problem with its heads and sequences reversed gives, bitwise, its outputs reversed the same
      // way. A head or sequence offset computed wrongly (fla's stride K for H*K) moves data between pairs.
      const Permutation perm = reversal(p);
      if (p.shape.H > 1 || p.num_sequences() > 1) {
        judge_permutation(first, kernel_tensors(c, permute_problem(p, perm), o.gpu_planted_defect), p, perm, "kernel",
                          r);
      }
    } catch (const std::exception& e) {
      r.error = e.what();
    }
    return {r};
  }
};

struct Shrunk {
  SweepCase value;
  std::vector<CaseResult> results;
  int steps = 0, tries = 0;
  bool out_of_time = false;
};

// Greedy descent of RapidCheck's shrink tree: the first shrink that still fails becomes the case, until no
// shrink fails, `max_steps` steps were taken or the deadline passed.
template <class Judge>
Shrunk shrink(const rc::Shrinkable<SweepCase>& failing, std::vector<CaseResult> results, const Judge& judge,
              int max_steps, std::optional<Clock::time_point> deadline) {
  Shrunk out{failing.value(), std::move(results)};
  rc::Shrinkable<SweepCase> current = failing;
  bool progressed = true;
  while (progressed && out.steps < max_steps) {
    progressed = false;
    auto candidates = current.shrinks();
    while (auto next = candidates.next()) {
      if (deadline && Clock::now() > *deadline) {
        out.out_of_time = true;
        return out;
      }
      ++out.tries;
      auto judged = judge(next->value());
      if (any_failed(judged)) {
        current = *next;
        out.value = current.value();
        out.results = std::move(judged);
        ++out.steps;
        progressed = true;
        break;
      }
    }
  }
  return out;
}

}  // namespace

PropertyOutcome run_property_sweep(const PropertyOptions& o, const TolerancePolicy& gpu_policy, Report& report,
                                   const std::function<void(const CaseResult&)>& on_case) {
  if (o.cases < 1) throw InputError(fmt::format("--property {}: expected the number of cases, at least 1", o.cases));
  if (!o.planted.empty() &&
      std::find(std::begin(kPlantedDefects), std::end(kPlantedDefects), o.planted) == std::end(kPlantedDefects))
    throw InputError(fmt::format("--plant '{}': expected dropped-partial-chunk or head-mixup", o.planted));
  if (o.time_budget_seconds && !(*o.time_budget_seconds > 0.0))
    throw InputError(fmt::format("--time-budget {}: expected seconds > 0", *o.time_budget_seconds));
  PropertyOutcome outcome;
  const auto deadline = o.time_budget_seconds
                            ? std::optional(Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                               std::chrono::duration<double>(*o.time_budget_seconds)))
                            : std::nullopt;
  const GpuDevice device = gpu_device();
  const bool gpu = !o.cpu_only && device.available;
  if (o.cpu_only)
    outcome.skipped.push_back("GPU properties: --cpu-only");
  else if (!device.available)
    outcome.skipped.push_back("GPU properties (the kernels against the exact reference): " + device.reason);
  else
    report.host.gpu = device.name;

  std::string out_of_range;  // the judges' account of a case they could not run
  // One position's case of one kind (0: cpu, 1: gpu): drawn, judged, shrunk where it fails, reported.
  const auto run_case = [&](std::int64_t position, std::uint64_t kind, const rc::Gen<SweepCase>& gen,
                            const auto& judge) {
    const rc::Random random(rc::Random::Key{o.seed, static_cast<std::uint64_t>(position), kind, 0x64706c72});
    const rc::Shrinkable<SweepCase> drawn = gen(random, rc::kNominalSize);
    const SweepCase original = drawn.value();
    out_of_range.clear();
    std::vector<CaseResult> results = judge(original);
    if (results.empty()) {
      outcome.skipped.push_back("out of the kernels' range, not run: " + out_of_range);
      return;
    }
    std::vector<CaseResult> shrunk_results;
    if (any_failed(results)) {
      Shrunk shrunk = shrink(drawn, results, judge, o.max_shrink_steps, deadline);
      const std::string how = fmt::format("failed; shrunk in {} steps ({} smaller cases tried{}) to: {}", shrunk.steps,
                                          shrunk.tries, shrunk.out_of_time ? ", stopped by the time budget" : "",
                                          shown(shrunk.value));
      results.front().notes.push_back(how);
      for (auto& r : shrunk.results) {
        r.id = "shrunk " + r.id;
        r.notes.push_back("shrunk from: " + shown(original));
        shrunk_results.push_back(std::move(r));
      }
      if (!o.failed_case_folder.empty()) {
        const CaseResult* failing = nullptr;
        for (const auto& r : shrunk_results)
          if (!failing && r.verdict() != Verdict::Pass) failing = &r;
        const auto path = write_case_file(
            o.failed_case_folder, fmt::format("property-{}-{}-{}", o.seed, position, kind ? shrunk.value.kernel : "cpu"),
            generate_case(shrunk.value.spec), shrunk.value.spec, shrunk.value.kernel, shrunk.value.chunk_size,
            fmt::format("{}: {}", failing->id, how), "dplr check --property");
        outcome.written.push_back({failing->id, path});
      }
    }
    for (auto* list : {&results, &shrunk_results})
      for (auto& r : *list) {
        r.sweep_index = position;
        report.cases.push_back(std::move(r));
        on_case(report.cases.back());
      }
  };

  for (std::int64_t position = 0; position < o.cases; ++position) {
    if (!o.shard.holds(position)) continue;
    if (deadline && Clock::now() > *deadline) {
      ++outcome.positions_not_run;
      continue;
    }
    ++outcome.positions_run;
    run_case(position, 0, gen_cpu_sweep_case(), CpuJudge{o, position, &out_of_range});
    if (gpu) run_case(position, 1, gen_gpu_sweep_case(), GpuJudge{o, gpu_policy, position, &out_of_range});
  }
  if (outcome.positions_not_run)
    outcome.skipped.push_back(fmt::format("{} of this shard's positions: the time budget ({} s) ran out after {}",
                                          outcome.positions_not_run, *o.time_budget_seconds, outcome.positions_run));
  report.sweep = SweepInfo{"property",
                           {{"cases", o.cases},
                            {"seed", o.seed},
                            {"cpu_only", o.cpu_only},
                            {"planted", o.planted.empty() ? nlohmann::json(nullptr) : nlohmann::json(o.planted)},
                            {"gpu_planted_defect", o.gpu_planted_defect}},
                           o.cases, o.shard.index, o.shard.count};
  return outcome;
}

}  // namespace dplr
