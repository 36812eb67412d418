// `dplr ref [FILE]`: the exact outputs and gradients of a case, with the bits each tensor is accurate to:
// estimated (agreement with a run at higher precision) or, with --rigorous, proven (Arb balls: the file then
// holds NAME.radius beside each NAME, the exact value lying within NAME +- (NAME.radius + half an ulp)).
#include <fmt/format.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/case_options.hpp"
#include "cli/commands.hpp"
#include "io/tensor_io.hpp"
#include "reference/reference.hpp"
#include "verify/compare.hpp"

namespace dplr::cli {
namespace {

struct RefOptions {
  CaseOptions input;
  std::string precision = "dd";
  bool certify = true;
  std::string estimate = "repeat";
  std::string out = "out/ref.safetensors";
  std::int64_t checkpoint_interval = 0;
  int threads = 0;
  bool rigorous = false;
  RigorousOptions rigorous_options;
};

int run_ref(const RefOptions& o) {
  std::string description;
  const DplrProblem problem = load_case(o.input, &description);
  ReferenceOptions options;
  options.precision = Precision::parse(o.precision);
  options.checkpoint_interval = o.checkpoint_interval;
  options.threads = o.threads;
  options.origin = description;
  options.estimate = parse_estimate_method(o.estimate);
  if (o.rigorous)
    fmt::print("dplr ref: {} in ball arithmetic (Arb), working precision growing until {:.1f} bits are proven "
               "(limit {} bits)\n", description, o.rigorous_options.proven_bits, o.rigorous_options.max_precision);
  else
    fmt::print("dplr ref: {} at {} ({} bits){}\n", description, options.precision.name(),
               options.precision.significand_bits(),
               o.certify ? ", " + estimate_description(options) : "");
  const ReferenceResult result = o.rigorous ? run_rigorous_reference(problem, options, o.rigorous_options)
                                 : o.certify ? run_certified_reference(problem, options)
                                             : run_reference(problem, options);
  const std::map<std::string, double>& bits_of = o.rigorous ? result.proven_bits : result.estimated_bits;
  const bool with_bits = o.rigorous || o.certify;

  for (const auto& note : result.notes) fmt::print("note: {}\n", note);
  TensorFile file;
  nlohmann::json bits = nlohmann::json::object();
  fmt::print("{:<6} {:<20} {:>15}\n", "tensor", "shape", o.rigorous ? "proven bits" : "estimated bits");
  std::vector<std::string> names;
  for (const auto& [name, tensor] : result.tensors) names.push_back(name);
  for (const auto& name : contract_order(names)) {
    auto it = result.tensors.find(name);
    file.tensors[name] = it->second.to_tensor(DType::F64);
    if (o.rigorous) file.tensors[name + ".radius"] = Tensor{DType::F64, it->second.shape, it->second.radius};
    const bool has_bits = bits_of.count(name) > 0;
    if (has_bits) bits[name] = bits_of.at(name);
    fmt::print("{:<6} {:<20} {:>15}\n", name, shape_string(it->second.shape),
               has_bits ? fmt::format("{:.1f}", bits_of.at(name)) : "-");
  }
  file.metadata["producer"] = "dplr ref";
  file.metadata["precision"] = result.precision.name();
  file.metadata["source"] = description;
  if (o.rigorous) file.metadata["proven_bits"] = bits.dump();
  else if (o.certify) file.metadata["estimated_bits"] = bits.dump();
  const std::string out = write_output(o.out, file);
  fmt::print("time: {:.3f} s for the run at {}{}\n", result.seconds, result.precision.name(),
             o.rigorous ? " (the last run)"
             : o.certify ? fmt::format(" (the estimate's run at {}: {:.3f} s more)", result.estimated_against->name(),
                                       result.estimate_seconds)
                         : "");
  if (with_bits)
    fmt::print("{}: {:.1f} bits on every tensor (worst)\n",
               o.rigorous ? "proven" : result.estimate_method == EstimateMethod::Extrapolated ? "estimated (extrapolated)" : "estimated",
               o.rigorous ? result.min_proven_bits() : result.min_estimated_bits());
  fmt::print("outputs (correctly rounded to float64{}): {}\n",
             o.rigorous ? "; NAME.radius, rounded up, bounds |exact - NAME| less half an ulp of NAME" : "", out);
  return 0;
}

}  // namespace

void add_ref_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<RefOptions>();
  auto* command = app.add_subcommand("ref", "Exact outputs and gradients of a case, with estimated (or, --rigorous, proven) bits");
  add_case_options(*command, options->input, true);
  command->add_option("--precision", options->precision, "double, dd, td, qd, or MPFR bits (e.g. 256)")->capture_default_str();
  add_rigorous_options(*command, options->rigorous, options->rigorous_options,
                       "the reference (ignores --precision), writing NAME.radius beside each tensor");
  add_estimate_option(*command, options->estimate);
  command->add_flag_callback("--no-certify", [o = options.get()] { o->certify = false; }, "Skip the repeat at higher precision that estimates the bits");
  command->add_option("-o,--out", options->out, "Output tensor file")->capture_default_str();
  command->add_option("--checkpoint-interval", options->checkpoint_interval, "Backward checkpoint interval (0: every state where they fit in memory, else sqrt(T))")
      ->check(at_least(0));
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->callback([options, &selected] { selected = [options] { return run_ref(*options); }; });
}

}  // namespace dplr::cli
