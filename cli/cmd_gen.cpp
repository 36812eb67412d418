// `dplr gen`: writes a case file from a named distribution, shape, dtype and seed (with do and dht).
#include <fmt/format.h>

#include <filesystem>

#include "cli/commands.hpp"
#include "io/tensor_io.hpp"

namespace dplr::cli {
namespace {

struct GenOptions {
  CaseOptions input;
  bool backward = true;
  std::string out;
};

int run_gen(const GenOptions& o) {
  CaseSpec spec = resolve_spec(o.input);
  spec.with_backward = o.backward;
  const DplrProblem problem = generate_case(spec);
  TensorFile file{problem_to_tensors(problem), {}};
  file.metadata["scale"] = fmt::format("{:.17g}", problem.scale);
  if (problem.reverse) file.metadata["reverse"] = "true";
  file.metadata["generator"] = spec.distribution;
  file.metadata["seed"] = std::to_string(spec.seed);
  file.metadata["producer"] = "dplr gen";
  const std::string out = write_output(o.out, file);
  fmt::print("dplr gen: {} -> {}\n", describe(spec), out);
  return 0;
}

}  // namespace

void add_gen_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<GenOptions>();
  auto* command = app.add_subcommand("gen", "Write a case file from a named distribution");
  add_case_options(*command, options->input, false);
  command->add_flag("!--no-grad", options->backward, "Write no do and dht");
  command->add_option("-o,--out", options->out, "Output file (.safetensors, .npz, or a folder for .npy files)")
      ->required();
  command->callback([options, &selected] { selected = [options] { return run_gen(*options); }; });
}

}  // namespace dplr::cli
