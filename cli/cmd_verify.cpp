// `dplr verify FILE`: the outputs and gradients a file holds, checked against the exact answer of the
// inputs it holds. Exit 0: every tensor within tolerance; 1: an accuracy failure; 2: bad input.
#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/report_options.hpp"
#include "io/tensor_io.hpp"
#include "reports/sha256.hpp"

namespace dplr::cli {
namespace {

struct VerifyOptions {
  CaseOptions input;
  std::string precision = "dd";
  bool certify = true;
  int threads = 0;
  std::int64_t block_tokens = kDefaultBlockTokens;
  ReportOptions report;
};

void verify_file(const VerifyOptions& o, Report& report, const TolerancePolicy& policy) {
  const TensorFile file = read_tensor_file(o.input.file);  // read once: the case and what it is judged on
  const DplrProblem problem = case_from_file(file, o.input);
  const std::optional<DType> judged = require_float_results(file.tensors, o.input.file);

  bool has_gradients = false;
  for (auto name : kGradientNames) has_gradients = has_gradients || file.tensors.count(std::string(name));
  bool has_outputs = false;
  for (auto name : kOutputNames) has_outputs = has_outputs || file.tensors.count(std::string(name));
  if (!has_outputs && !has_gradients)
    throw InputError(fmt::format("{}: holds no output (o, ht) or gradient (dq ... dh0) to verify", o.input.file));
  if (has_gradients && !problem.grad_o)
    throw InputError(fmt::format("{}: holds gradients but no 'do' to compute the exact ones from", o.input.file));

  ReferenceOptions options;
  options.precision = Precision::parse(o.precision);
  options.backward = has_gradients;
  options.threads = o.threads;
  options.origin = o.input.file;
  fmt::print("dplr verify: {} against the exact answer at {}{}\n", o.input.file, options.precision.name(),
             o.certify ? fmt::format(" (certified against {})", options.precision.certifier().name()) : "");
  const ReferenceResult exact = o.certify ? run_certified_reference(problem, options) : run_reference(problem, options);
  if (judged)
    require_reference_finer_than(o.certify ? exact.min_certified_bits() : exact.precision.significand_bits(), *judged,
                                 o.input.file, o.certify ? "certified" : "uncertified (--no-certify)");

  CaseResult c = describe_case(problem, o.input.file);
  for (const auto& [name, tensor] : file.tensors) c.dtypes[name] = tensor.dtype;
  c.source.files.push_back({"case", o.input.file, sha256_file(o.input.file)});
  if (auto it = file.metadata.find("producer"); it != file.metadata.end()) c.notes.push_back("producer: " + it->second);
  c.notes.insert(c.notes.end(), exact.notes.begin(), exact.notes.end());
  c.reference = reference_info(exact);
  c.comparison = compare(file.tensors, exact.tensors, policy, {.block_tokens = o.block_tokens});
  c.working_dtype = working_dtype_of(file.tensors);
  fmt::print("{}", format_table(c));
  if (o.certify)
    fmt::print("reference certified to {:.1f} bits (worst tensor), {:.2f} s\n", exact.min_certified_bits(), exact.seconds);
  report.cases.push_back(std::move(c));
}

int run_verify(const VerifyOptions& o) {
  return run_reported("verify", o.report,
                      [&](Report& report, const TolerancePolicy& policy) { verify_file(o, report, policy); });
}

}  // namespace

void add_verify_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<VerifyOptions>();
  auto* command = app.add_subcommand("verify", "Check the outputs and gradients a file holds against the exact answer");
  command->add_option("file", options->input.file, "Recorded case (.safetensors, .npz, .npy folder)")->required();
  command->add_option("--precision", options->precision, "Reference precision: double, dd, qd, or MPFR bits")
      ->capture_default_str();
  command->add_flag_callback("--no-certify", [o = options.get()] { o->certify = false; }, "Skip the reference's self-certification");
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->add_option("--block-tokens", options->block_tokens,
                      "Tokens per block of the local gate (the kernel's chunk size; blocks start at each sequence)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  add_report_options(*command, options->report, "out/verify-report.json", "default");
  command->callback([options, &selected] { selected = [options] { return run_verify(*options); }; });
}

}  // namespace dplr::cli
