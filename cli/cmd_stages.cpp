// `dplr stages [FILE] --chunk-size C`: every chunk-form stage's exact tensors for a case, named as the GPU
// stages name them (reference/chunk_stages.hpp lists names and layouts), so anyone can compare their
// kernel's intermediates. With --compare KERNEL_FILE, the kernel's stage tensors are checked stage by stage
// and the report names the first stage whose error passes its tolerance. With --gpu, the kernel is ours: the
// staged chunk forward and then the backward stages run one kernel at a time on the GPU (verify/gpu_runner.hpp,
// run_gpu_chunk_stages), every stage tensor, forward and backward (o_bwd -> h_bwd -> WY_bwd -> A_bwd -> cumsum_bwd),
// judged against its oracle, the first that diverged named; --gpu-out writes our tensors for a later --compare.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <filesystem>

#include "cli/commands.hpp"
#include "cli/report_options.hpp"
#include "io/tensor_io.hpp"
#include "reference/chunk_stages.hpp"
#include "reports/sha256.hpp"
#include "verify/gpu_runner.hpp"
#include "verify/stage_check.hpp"

namespace dplr::cli {
namespace {

struct StagesOptions {
  CaseOptions input;
  int chunk_size = 64;
  std::string precision = "dd";
  std::string out = "out/stages.safetensors";
  std::string compare_file;
  bool gpu = false;     // compare our GPU kernels' stages
  std::string gpu_out;  // where --gpu writes them (empty: nowhere)
  int threads = 0;
  ReportOptions report;
};

// Computes and writes the exact stages; with `report`, also compares the kernel's stage tensors into it.
void compute_stages(const StagesOptions& o, Report* report, const TolerancePolicy* policy) {
  std::string description;
  const DplrProblem problem = load_case(o.input, &description);
  // The kernel's file is read and hashed before the stages are computed, so a bad one fails at once.
  TensorFile kernel;
  std::vector<FileSource> sources;
  if (o.gpu) {
    const GpuDevice device = gpu_device();
    if (!device.available) throw InputError(fmt::format("stages --gpu needs a CUDA device: {}", device.reason));
    if (o.chunk_size != 16 && o.chunk_size != 32 && o.chunk_size != 64)
      throw InputError(fmt::format("stages --gpu: chunk size {}; our kernels take 16, 32 or 64", o.chunk_size));
    if (!problem.grad_o)
      throw InputError(fmt::format("{}: stages --gpu runs the backward stages too, and the case has no 'do'", description));
    kernel.tensors = run_gpu_chunk_stages(problem, o.chunk_size);
    // Under strict our fp32 stage tensors are judged at their own dtype: the oracles must be finer than that.
    for (const auto& [name, tensor] : kernel.tensors)
      require_reference_finer_than(Precision::parse(o.precision).significand_bits(), tensor.dtype, "our GPU run of " + name,
                                   "computed (uncertified)");
    fmt::print("dplr stages --gpu: our staged chunk forward and backward on {}, one stage a kernel\n", device.name);
    if (!o.gpu_out.empty()) {
      TensorFile ours = kernel;
      ours.metadata["producer"] = "dplr stages --gpu";
      ours.metadata["chunk_size"] = std::to_string(o.chunk_size);
      ours.metadata["source"] = description;
      ours.metadata["device"] = device.name;
      fmt::print("our GPU stage tensors: {}\n", write_output(o.gpu_out, ours));
    }
    if (!o.input.file.empty()) sources.push_back({"case", o.input.file, sha256_file(o.input.file)});
  }
  if (!o.compare_file.empty()) {
    kernel = read_tensor_file(o.compare_file);
    for (const auto& [name, tensor] : kernel.tensors) {
      require_float_tensor(name, tensor, o.compare_file, "a stage tensor");
      // The stage oracles are not self-certified: their precision must be finer than every tensor judged.
      // A tensor is judged at the coarser of its storage dtype and the case's working dtype (q's).
      const DType judged =
          dtype_significand_bits(tensor.dtype) < dtype_significand_bits(problem.q.dtype) ? tensor.dtype : problem.q.dtype;
      require_reference_finer_than(Precision::parse(o.precision).significand_bits(), judged, o.compare_file,
                                   "computed (uncertified)");
    }
    sources.push_back({"stages", o.compare_file, sha256_file(o.compare_file)});
    if (!o.input.file.empty()) sources.push_back({"case", o.input.file, sha256_file(o.input.file)});
  }
  ChunkOptions options;
  options.threads = o.threads;
  options.origin = description;
  const ChunkStages stages = run_chunk_stages(problem, o.chunk_size, Precision::parse(o.precision), options);
  fmt::print("dplr stages: {} chunk {} at {} ({:.2f} s)\n", description, o.chunk_size, stages.arithmetic, stages.seconds);

  for (const auto& note : stages.notes) fmt::print("note: {}\n", note);
  TensorFile file;
  for (const auto& [name, tensor] : stages.tensors) file.tensors[name] = tensor.to_tensor(DType::F64);
  file.metadata["producer"] = "dplr stages";
  file.metadata["chunk_size"] = std::to_string(o.chunk_size);
  file.metadata["precision"] = stages.arithmetic;
  file.metadata["source"] = description;
  const std::string out = write_output(o.out, file);
  for (const auto& stage : chunk_stage_table()) {
    std::string names;
    for (const auto& t : stage.tensors)
      if (stages.tensors.count(t)) names += (names.empty() ? "" : ", ") + t;
    if (!names.empty()) fmt::print("  {:<11} {}\n", stage.stage, names);
  }
  fmt::print("stage tensors (float64): {}\n", out);
  if (!report) return;

  // Stage-by-stage comparison of a kernel's intermediates.
  CaseResult c = describe_case(problem, fmt::format("{} chunk {}", description, o.chunk_size));
  c.notes.insert(c.notes.end(), stages.notes.begin(), stages.notes.end());
  c.source.files = sources;
  CompareOptions compare_options;
  compare_options.working_dtype = problem.q.dtype;
  compare_options.block_tokens = o.chunk_size;
  if (!problem.cu_seqlens.empty()) compare_options.cu_seqlens = problem.cu_seqlens;
  StageJudgement judged = judge_stages(kernel.tensors, stages.tensors, *policy, compare_options);
  StageSection& section = judged.section;
  if (section.results.empty())
    throw InputError(fmt::format("{}: holds no stage tensor named as `dplr stages` names them (gi, A_qk, w, h, ...)",
                                 o.compare_file));
  // Our staged run returns every stage tensor; one it lacks is a failure. A foreign file is judged on what it holds.
  if (o.gpu && !judged.missing.empty())
    c.failures.push_back(fmt::format("our staged GPU run returned no {}", fmt::join(judged.missing, ", ")));
  for (const auto& r : section.results) c.comparison.tensors.push_back(r.result);
  c.stages = section;
  fmt::print("{}", format_table(c));
  fmt::print("first diverging stage: {}\n", section.first_diverging_stage.value_or("none"));
  for (const auto& failure : c.failures) fmt::print("failed: {}\n", failure);
  report->cases.push_back(std::move(c));
}

int run_stages(const StagesOptions& o) {
  if (o.gpu && !o.compare_file.empty())
    throw InputError("stages: --gpu and --compare each name the kernel whose stages are judged; give one");
  if (!o.gpu && !o.gpu_out.empty()) throw InputError("stages: --gpu-out belongs to --gpu");
  if (o.compare_file.empty() && !o.gpu) {
    compute_stages(o, nullptr, nullptr);
    return 0;
  }
  return run_reported("stages", o.report, [&](Report& report, const TolerancePolicy& policy) {
    compute_stages(o, &report, &policy);
  });
}

}  // namespace

void add_stages_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<StagesOptions>();
  auto* command = app.add_subcommand("stages", "Exact chunk-form stage tensors of a case; compare a kernel's");
  add_case_options(*command, options->input, true);
  command->add_option("-C,--chunk-size", options->chunk_size, "Chunk size (16, 32, 64, ...)")
      ->check(at_least(1))
      ->capture_default_str();
  command->add_option("--precision", options->precision, "double, dd, qd, or MPFR bits")->capture_default_str();
  command->add_option("-o,--out", options->out, "Where the exact stage tensors go")->capture_default_str();
  command->add_option("--compare", options->compare_file, "A kernel's stage tensors to check stage by stage");
  command->add_flag("--gpu", options->gpu,
                    "Check our GPU kernels' stages: the staged chunk forward, then each backward stage one kernel at a "
                    "time (o_bwd, h_bwd, WY_bwd, A_bwd, cumsum_bwd); the case needs do; needs a CUDA device");
  command->add_option("--gpu-out", options->gpu_out, "With --gpu: where our stage tensors go (for a later --compare)");
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  add_report_options(*command, options->report, "out/stages-report.json", "strict");
  command->callback([options, &selected] { selected = [options] { return run_stages(*options); }; });
}

}  // namespace dplr::cli
