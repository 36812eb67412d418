// `dplr bench`: speed figures. `--gpu` times our CUDA kernels (bench/bench_gpu.cpp: each shape validated against
// the exact reference first, then CUDA events, warm-up, median over rotated input sets); `--reference` times
// the exact reference's fwd+bwd on this machine's CPUs. With neither, the GPU kernels where a device is
// present, else the reference.
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <filesystem>
#include <thread>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "reference/reference.hpp"
#include "verify/gpu_runner.hpp"
#ifdef DPLR_HAVE_GPU_BENCH
#include "bench/gpu_bench.hpp"
#endif

namespace dplr::cli {
namespace {

struct BenchOptions {
  CaseOptions input;
  std::vector<std::string> precisions{"double", "dd", "td"};
  std::vector<std::string> estimates{"repeat", "extrapolated"};  // rows for each precision that has the method
  int repeats = 3;
  int threads = 0;
  bool gpu = false, reference = false;
  std::string gpu_part = "all";  // bench/gpu_bench.hpp: all, forward, training
  double prove_bits = 0;  // > 0: also a rigorous (ball) run, proving this many bits, and the bits it proves of each row
  std::string json = "out/bench.json";
};

int run_gpu_bench(const BenchOptions& o) {
  const GpuDevice device = gpu_device();
  if (!device.available) throw InputError("dplr bench --gpu: " + device.reason);
#ifdef DPLR_HAVE_GPU_BENCH
  fmt::print("dplr bench --gpu: {}\n", device.name);
  const std::filesystem::path json(o.json);
  if (json.has_parent_path()) std::filesystem::create_directories(json.parent_path());
  const int code = run_gpu_benchmarks(o.json.c_str(), o.gpu_part);
  fmt::print("benchmark JSON: {}\n", std::filesystem::absolute(json).string());
  return code;
#else
  throw InputError("dplr bench --gpu: this dplr was built without the GPU benchmarks (no CUDA)");
#endif
}

int run_reference_bench(const BenchOptions& o) {
  std::string description;
  const DplrProblem problem = load_case(o.input, &description);
  fmt::print("dplr bench --reference: fwd+bwd of {} on {} CPU threads\n", description,
             o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency()));
  // The rigorous run first: the rows' proven bits are measured against its balls.
  std::optional<ReferenceResult> enclosure;
  if (o.prove_bits > 0) {
    ReferenceOptions options;
    options.threads = o.threads;
    options.origin = description;
    enclosure = run_rigorous_reference(problem, options, {o.prove_bits, 0, 4096});
    for (const auto& note : enclosure->notes) fmt::print("rigorous run: {}\n", note);
  }
  // CPU s: the process's user + system time over the run (all threads), the figure that a machine shared with other
  // work still measures; "estimate" is the other run that gives the estimated bits (a repeat at the certifier, or
  // the lower run an extrapolated estimate starts from), timed once.
  fmt::print("{:<10} {:>10} {:>10} {:>10} {:>24} {:>14} {:>20}\n", "precision", "median s", "min s", "CPU s",
             "estimated bits", "estimate s/CPU", "proven bits (worst)");
  if (enclosure)
    fmt::print("{:<10} {:>10.3f} {:>10} {:>10.3f} {:>24} {:>14} {:>20.1f}\n", enclosure->precision.name(), enclosure->seconds,
               "-", enclosure->cpu_seconds, "-", "-", enclosure->min_proven_bits());
  for (const auto& name : o.precisions) {
    for (const auto& estimate : o.estimates) {
      ReferenceOptions options;
      options.precision = Precision::parse(name);
      options.threads = o.threads;
      options.estimate = parse_estimate_method(estimate);
      if (options.estimate == EstimateMethod::Extrapolated && !options.precision.extrapolation_base()) continue;
      std::vector<double> seconds, cpu_seconds;
      ReferenceResult last;
      for (int r = 0; r < std::max(1, o.repeats); ++r) {
        last = run_reference(problem, options);
        seconds.push_back(last.seconds);
        cpu_seconds.push_back(last.cpu_seconds);
      }
      std::sort(seconds.begin(), seconds.end());
      std::sort(cpu_seconds.begin(), cpu_seconds.end());
      const bool extrapolated = options.estimate == EstimateMethod::Extrapolated;
      const Precision other_precision = extrapolated ? *options.precision.extrapolation_base() : options.precision.certifier();
      ReferenceResult other = run_reference(problem, {other_precision, true, 0, o.threads});
      last.estimated_bits = extrapolated ? extrapolate_from(last, other) : certify(last, other);
      for (const auto& note : last.notes) fmt::print("note ({} {}): {}\n", name, estimate, note);
      std::string proven = "-";
      if (enclosure) {
        double bits = options.precision.significand_bits();
        for (const auto& [tensor_name, tensor] : last.tensors)
          bits = std::min(bits, proven_agreement_bits(tensor, enclosure->tensors.at(tensor_name), bits));
        proven = fmt::format("{:.1f}", bits);
      }
      fmt::print("{:<10} {:>10.3f} {:>10.3f} {:>10.3f} {:>24} {:>14} {:>20}\n", options.precision.name(),
                 seconds[seconds.size() / 2], seconds.front(), cpu_seconds[cpu_seconds.size() / 2],
                 fmt::format("{:.1f} ({} {})", last.min_estimated_bits(), extrapolated ? "extrap. from" : "vs",
                             other_precision.name()),
                 fmt::format("{:.2f}/{:.2f}", other.seconds, other.cpu_seconds), proven);
    }
  }
  return 0;
}

}  // namespace

int run_bench(const BenchOptions& o) {
  const bool gpu = o.gpu || (!o.reference && gpu_device().available);
  const bool reference = o.reference || !gpu;
  int code = 0;
  if (gpu) code = run_gpu_bench(o);
  if (reference) code = std::max(code, run_reference_bench(o));
  return code;
}

void add_bench_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<BenchOptions>();
  options->input.shape = "2,1024,4,64,64";
  options->input.dtype = "f32";
  auto* command = app.add_subcommand("bench", "Speed: our GPU kernels (CUDA events, median) and the exact reference on the CPU");
  add_case_options(*command, options->input, true);
  command->add_option("--precision", options->precisions, "Precisions to time")->capture_default_str();
  command->add_option("--estimate", options->estimates,
                      "Estimates to show for each precision: repeat (against a higher precision), extrapolated (td "
                      "from its agreement with dd plus 44 bits, dd from double plus 53; less 4 of margin)")
      ->check(CLI::IsMember({"repeat", "extrapolated"}))
      ->capture_default_str();
  command->add_option("--repeats", options->repeats, "Timed repeats (median reported)")->capture_default_str();
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->add_flag("--gpu", options->gpu, "Time our CUDA kernels");
  command->add_option("--gpu-part", options->gpu_part,
                      "With --gpu: all; forward (decode, recurrent, chunk forward); training (forward + backward, "
                      "the backward's stages timed alone)")
      ->check(CLI::IsMember({"all", "forward", "training"}))
      ->capture_default_str();
  command->add_flag("--reference", options->reference, "Time the exact reference (fwd+bwd) on the CPU");
  command->add_option("--prove", options->prove_bits,
                      "With --reference: a rigorous (Arb ball) run proving this many bits, timed, and the bits it "
                      "proves of each precision's answer")
      ->check(CLI::Range(1.0, 4000.0));
  command->add_option("--json", options->json, "GPU benchmark JSON output")->capture_default_str();
  command->callback([options, &selected] { selected = [options] { return run_bench(*options); }; });
}

}  // namespace dplr::cli
