// `dplr verify FILE`: the outputs and gradients a file holds, checked against the exact answer of the
// inputs it holds, in the contract's names or the file's own (--convention, --layout, --map:
// verify/conventions.hpp). Exit 0: every tensor within tolerance; 1: an accuracy failure; 2: bad input.
#include <chrono>
#include <future>

#include <fmt/format.h>

#include "cli/commands.hpp"
#include "cli/html_report.hpp"
#include "cli/report_options.hpp"
#include "io/tensor_io.hpp"
#include "reports/sha256.hpp"
#include "verify/conventions.hpp"
#include "verify/verify_case.hpp"

namespace dplr::cli {
namespace {

struct VerifyOptions {
  CaseOptions input;
  std::string precision = "dd";
  bool certify = true;
  std::string estimate = "repeat";
  bool rigorous = false;
  RigorousOptions rigorous_options;
  int threads = 0;
  std::int64_t block_tokens = kDefaultBlockTokens;
  std::string convention = "contract";
  std::string decay;
  std::string layout = "batch-first";
  std::vector<std::string> maps;  // "NAME_IN_FILE=CONTRACT_NAME"
  ReportOptions report;
  HtmlOptions html;
};

void verify_file(const VerifyOptions& o, Report& report, const TolerancePolicy& policy) {
  const auto start = std::chrono::steady_clock::now();
  auto seconds_since = [](auto from) { return std::chrono::duration<double>(std::chrono::steady_clock::now() - from).count(); };
  // The report's digest of the file, on a thread of its own: it overlaps the reading (before 0af9dae, the portable
  // rounds took ~10 s of one core for a training-scale recording's 1.5 GB), not the reference (all cores).
  std::future<std::string> digest = std::async(std::launch::async, [&] { return sha256_file(o.input.file); });
  TensorFile file = read_tensor_file(o.input.file);  // read once: the case and what it is judged on
  const double read_seconds = seconds_since(start);
  refuse_generator_options(o.input);
  const std::optional<DType> judged = require_float_results(file.tensors, o.input.file);

  VerifyCaseOptions options;
  options.precision = Precision::parse(o.precision);
  options.certify = o.certify;
  options.estimate = parse_estimate_method(o.estimate);
  if (o.rigorous) options.rigorous = o.rigorous_options;
  options.threads = o.threads;
  options.block_tokens = o.block_tokens;
  options.convention = parse_convention(o.convention);
  if (!o.decay.empty()) options.convention.decay = parse_decay(o.decay);
  options.convention.layout = parse_layout(o.layout);
  for (const auto& map : o.maps) options.convention.map.push_back(parse_map(map));
  if (o.rigorous)
    fmt::print("dplr verify: {} against the exact answer in ball arithmetic (Arb), working precision growing until "
               "{:.1f} bits are proven (limit {} bits)\n", o.input.file, o.rigorous_options.proven_bits,
               o.rigorous_options.max_precision);
  else
    fmt::print("dplr verify: {} against the exact answer at {}{}\n", o.input.file, options.precision.name(),
               o.certify ? fmt::format(" (bits {})", estimate_description({.precision = options.precision, .estimate = options.estimate}))
                         : "");
  ReferenceResult exact;
  const auto verify_start = std::chrono::steady_clock::now();
  CaseResult c = verify_case(std::move(file), policy, options, o.input.file, &exact);
  const double verify_seconds = seconds_since(verify_start);
  if (judged)
    require_reference_finer_than(o.rigorous  ? exact.min_proven_bits()
                                 : o.certify ? exact.min_estimated_bits()
                                             : exact.precision.significand_bits(),
                                 *judged, o.input.file,
                                 o.rigorous ? "proven (--rigorous)" : o.certify ? "estimated" : "unestimated (--no-certify)");
  c.source.files.push_back({"case", o.input.file, digest.get()});
  const double total_seconds = seconds_since(start);
  fmt::print("{}", format_table(c));
  if (o.rigorous)
    fmt::print("reference accurate to {:.1f} proven bits (worst tensor), {:.2f} s (the last run)\n", exact.min_proven_bits(),
               exact.seconds);
  else if (o.certify)
    fmt::print("reference accurate to {:.1f} estimated bits{} (worst tensor), {:.2f} s and {:.2f} s for the estimate's run "
               "at {} ({:.2f} and {:.2f} CPU s)\n",
               exact.min_estimated_bits(), exact.estimate_method == EstimateMethod::Extrapolated ? ", extrapolated" : "",
               exact.seconds, exact.estimate_seconds, exact.estimated_against ? exact.estimated_against->name() : "-",
               exact.cpu_seconds, exact.estimate_cpu_seconds);
  // Where a large recording's time goes besides the reference: reading, conversion and comparison.
  fmt::print("time: {:.2f} s (reading {:.2f} s, the reference and comparison {:.2f} s)\n", total_seconds, read_seconds,
             verify_seconds);
  report.cases.push_back(std::move(c));
}

int run_verify(const VerifyOptions& o) {
  const int code = run_reported("verify", o.report,
                                [&](Report& report, const TolerancePolicy& policy) { verify_file(o, report, policy); });
  if (!o.html.path.empty()) {
    write_html_report(o.report.report_path, o.html);
    fmt::print("html: {}\n", o.html.path);
  }
  return code;
}

}  // namespace

void add_verify_command(CLI::App& app, Command& selected) {
  auto options = std::make_shared<VerifyOptions>();
  auto* command = app.add_subcommand("verify", "Check the outputs and gradients a file holds against the exact answer");
  command->add_option("file", options->input.file, "Recorded case (.safetensors, .npz, .npy folder)")->required();
  command->add_option("--precision", options->precision, "Reference precision: double, dd, td, qd, or MPFR bits")
      ->capture_default_str();
  add_estimate_option(*command, options->estimate);
  command->add_flag_callback("--no-certify", [o = options.get()] { o->certify = false; },
                             "Skip the repeat at higher precision that estimates the reference's bits");
  add_rigorous_options(*command, options->rigorous, options->rigorous_options, "the reference (ignores --precision)");
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)")->check(at_least(0));
  command->add_option("--block-tokens", options->block_tokens,
                      "Tokens per block of the local gate (the kernel's chunk size; blocks start at each sequence)")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  command->add_option("--convention", options->convention,
                      "Tensor names: contract (fla's), or rwkv7 (r, w, k, v, a, b, y and dr, dw, ...)")
      ->check(CLI::IsMember({"contract", "rwkv7"}))
      ->capture_default_str();
  command->add_option("--decay", options->decay,
                      "rwkv7: how w becomes gk: clampw (-exp(-0.5) sigmoid(w)), exp (-exp(w)), log (w); "
                      "default: the file's metadata 'decay'")
      ->check(CLI::IsMember({"clampw", "exp", "log"}));
  command->add_option("--layout", options->layout, "Token tensors as batch-first [B,T,H,D] or head-first [B,H,T,D]")
      ->check(CLI::IsMember({"batch-first", "head-first"}))
      ->capture_default_str();
  command->add_option("--map", options->maps, "Read the file's tensor NAME as the contract's tensor: NAME=CONTRACT_NAME");
  add_report_options(*command, options->report, "out/verify-report.json", "default");
  add_html_options(*command, options->html);
  command->callback([options, &selected] { selected = [options] { return run_verify(*options); }; });
}

}  // namespace dplr::cli
