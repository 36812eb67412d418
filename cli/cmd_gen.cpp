// `dplr gen`: writes a case file from a named distribution, shape, dtype and seed (with do and dht).
#include <fmt/format.h>

#include <filesystem>

#include "cli/commands.hpp"
#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "verify/case_file.hpp"

namespace dplr::cli {
namespace {

struct GenOptions {
  CaseOptions input;
  bool backward = true;
  std::string out;
  std::string kernel;  // --kernel: write a replayable case file (verify/case_file.hpp) for this kernel
  int chunk_size = 0;
};

// What the output format can hold, checked before anything is generated: npy (and so npz and folders) has
// no bf16, and a single .npy holds one tensor.
CaseOptions input_for_format(const GenOptions& o) {
  CaseOptions input = o.input;
  const TensorFileFormat format = tensor_file_format(o.out);
  if (format == TensorFileFormat::Npy)
    throw InputError(fmt::format("{}: a case is several tensors, but an .npy file holds one; write .safetensors, "
                                 ".npz or a folder",
                                 o.out));
  if (format == TensorFileFormat::Safetensors) return input;
  if (input.dtype.empty()) {
    input.dtype = "f32";
    fmt::print("dplr gen: --dtype f32 (the default, {}, has no numpy dtype, so {} cannot hold it)\n", kDefaultDtype,
               o.out);
  }
  for (const auto& [option, value] : {std::pair{"--dtype", input.dtype}, std::pair{"--gk-dtype", input.gk_dtype}})
    if (parse_dtype(value) == DType::BF16)
      throw InputError(fmt::format("{}: {} bf16 cannot be stored in .npy members (numpy has no bfloat16); expected "
                                   "f64, f32 or f16, or a .safetensors output",
                                   o.out, option));
  return input;
}

int run_gen(const GenOptions& o) {
  CaseSpec spec = resolve_spec(input_for_format(o));
  spec.with_backward = o.backward;
  const DplrProblem problem = generate_case(spec);
  if (!o.kernel.empty()) {
    // A replayable case file: `dplr check --case FILE`, or a regression corpus entry.
    if (tensor_file_format(o.out) != TensorFileFormat::Safetensors)
      throw InputError(fmt::format("{}: --kernel writes a case file, which is .safetensors", o.out));
    const std::filesystem::path out(o.out);
    const auto path = write_case_file(out.has_parent_path() ? out.parent_path() : ".", out.stem().string(), problem,
                                      spec, o.kernel, o.chunk_size, "written by dplr gen --kernel", "dplr gen");
    try {
      read_case_file(path);  // refuses a kernel or chunk size a replay would refuse, before anyone relies on it
    } catch (const InputError&) {
      std::filesystem::remove(path);
      throw;
    }
    fmt::print("dplr gen: {} (kernel {}, C {}) -> {}\n  replay: {}\n", describe(spec), o.kernel, o.chunk_size,
               std::filesystem::absolute(path).string(), replay_command(path));
    return 0;
  }
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
  command->add_flag_callback("--no-grad", [o = options.get()] { o->backward = false; }, "Write no do and dht");
  command->add_option("-o,--out", options->out, "Output file (.safetensors, .npz, or a folder for .npy files)")
      ->required();
  command->add_option("--kernel", options->kernel,
                      "Write a replayable case file for this kernel (chunk, chunk-fused, recurrent, chunk-bwd, recurrent-bwd, "
                      "cpu): "
                      "`dplr check --case FILE` replays it, tests/data/regressions/ holds such files")
      ->check(CLI::IsMember(std::vector<std::string>(std::begin(kCaseKernels), std::end(kCaseKernels))));
  command->add_option("--chunk-size", options->chunk_size, "--kernel's chunk size (16, 32, 64; 0 for recurrent)");
  command->callback([options, &selected] { selected = [options] { return run_gen(*options); }; });
}

}  // namespace dplr::cli
