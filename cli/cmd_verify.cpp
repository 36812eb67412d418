// `dplr verify FILE`: the outputs and gradients a file holds, checked against the exact answer of the
// inputs it holds, in the contract's names or the file's own (--convention, --layout, --map:
// verify/conventions.hpp). Exit 0: every tensor within tolerance; 1: an accuracy failure; 2: bad input.
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
  int threads = 0;
  std::string convention = "contract";
  std::string decay;
  std::string layout = "batch-first";
  std::vector<std::string> maps;  // "NAME_IN_FILE=CONTRACT_NAME"
  ReportOptions report;
  HtmlOptions html;
};

int run_verify(const VerifyOptions& o) {
  const TolerancePolicy policy = build_policy(o.report);
  Report report = start_report("verify", policy);
  const TensorFile file = read_tensor_file(o.input.file);

  VerifyCaseOptions options;
  options.precision = Precision::parse(o.precision);
  options.certify = o.certify;
  options.threads = o.threads;
  options.convention = parse_convention(o.convention);
  if (!o.decay.empty()) options.convention.decay = parse_decay(o.decay);
  options.convention.layout = parse_layout(o.layout);
  for (const auto& map : o.maps) options.convention.map.push_back(parse_map(map));
  fmt::print("dplr verify: {} against the exact answer at {}{}\n", o.input.file, options.precision.name(),
             o.certify ? fmt::format(" (certified against {})", options.precision.certifier().name()) : "");
  ReferenceResult exact;
  CaseResult c = verify_case(file, policy, options, o.input.file, &exact);
  c.source.files.push_back({"case", o.input.file, sha256_file(o.input.file)});
  fmt::print("{}", format_table(c));
  if (o.certify)
    fmt::print("reference certified to {:.1f} bits (worst tensor), {:.2f} s\n", exact.min_certified_bits(), exact.seconds);
  report.cases.push_back(std::move(c));
  const int code = finish_report(report, o.report);
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
  command->add_option("--precision", options->precision, "Reference precision: double, dd, qd, or MPFR bits")
      ->capture_default_str();
  command->add_flag("!--no-certify", options->certify, "Skip the reference's self-certification");
  command->add_option("--threads", options->threads, "Worker threads (0: all cores)");
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
  add_report_options(*command, options->report, "out/verify-report.json");
  add_html_options(*command, options->html);
  command->callback([options, &selected] { selected = [options] { return run_verify(*options); }; });
}

}  // namespace dplr::cli
