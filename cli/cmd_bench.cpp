// `dplr bench`: speed figures. `--reference` times the exact reference on this machine's CPUs (the
// figures issue 2 asks for); GPU kernel benchmarks live in bench/ (CUDA events, median) and run on the
// device machine.
#include <fmt/format.h>

#include <thread>

#include "cli/commands.hpp"
#include "reference/reference.hpp"

namespace dplr::cli {
namespace {

struct BenchOptions {
  CaseOptions input;
  std::vector<std::string> precisions{"double", "dd"};
  int repeats = 3;
  int threads = 0;
};

int run_bench(const BenchOptions& o) {
  std::string description;
  const DplrProblem problem = load_case(o.input, &description);
  fmt::print("dplr bench --reference: fwd+bwd of {} on {} CPU threads\n", description,
             o.threads > 0 ? o.threads : static_cast<int>(std::thread::hardware_concurrency()));
  fmt::print("{:<10} {:>12} {:>12} {:>22}\n", "precision", "median s", "min s", "certified bits (worst)");
  for (const auto& name : o.precisions) {
    ReferenceOptions options;
    options.precision = Precision::parse(name);
    options.threads = o.threads;
    std::vector<double> seconds;
    ReferenceResult last;
    for (int r = 0; r < std::max(1, o.repeats); ++r) {
      last = run_reference(problem, options);
      seconds.push_back(last.seconds);
    }
    std::sort(seconds.begin(), seconds.end());
    ReferenceResult more_precise = run_reference(problem, {options.precision.certifier(), true, 0, o.threads});
    last.certified_bits = certify(last, more_precise);
    fmt::print("{:<10} {:>12.3f} {:>12.3f} {:>22.1f}\n", options.precision.name(), seconds[seconds.size() / 2],
               seconds.front(), last.min_certified_bits());
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<BenchOptions>();
  options->input.shape = "2,1024,4,64,64";
  options->input.dtype = "f32";
  auto* command = app.add_subcommand("bench", "Speed: the exact reference on the CPU (GPU kernels: bench/)");
  add_case_options(*command, options->input, true);
  command->add_option("--precision", options->precisions, "Precisions to time")->capture_default_str();
  command->add_option("--repeats", options->repeats, "Timed repeats (median reported)")->capture_default_str();
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)");
  command->callback([options, &selected] { selected = [options] { return run_bench(*options); }; });
}

}  // namespace dplr::cli
