#include "cli/case_options.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <span>
#include <sstream>

#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "verify/verify_case.hpp"

namespace dplr::cli {

namespace {
std::vector<std::int64_t> parse_int_list(const std::string& text, std::string_view what) {
  std::vector<std::int64_t> values;
  std::stringstream stream(text);
  std::string item;
  while (std::getline(stream, item, ',')) {
    try {
      std::size_t used = 0;
      values.push_back(std::stoll(item, &used));
      if (used != item.size()) throw std::invalid_argument(item);
    } catch (const std::exception&) {
      throw InputError(fmt::format("{} '{}' must be a comma-separated list of integers", what, text));
    }
  }
  return values;
}
}  // namespace

CLI::Validator finite_positive() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        double x = 0.0;
        if (!CLI::detail::lexical_cast(text, x) || !std::isfinite(x) || x <= 0.0)
          return fmt::format("expected a finite number > 0, got '{}'", text);
        return "";
      },
      "POSITIVE");
}

CLI::Validator at_least(long long minimum) {
  return CLI::Validator(
      [minimum](std::string& text) -> std::string {
        long long x = 0;
        if (!CLI::detail::lexical_cast(text, x) || x < minimum)
          return fmt::format("expected an integer >= {}, got '{}'", minimum, text);
        return "";
      },
      fmt::format("INT>={}", minimum));
}

DType parse_dtype(const std::string& text) {
  std::string upper = text;
  std::transform(upper.begin(), upper.end(), upper.begin(), ::toupper);
  if (upper == "FP64" || upper == "FLOAT64") upper = "F64";
  if (upper == "FP32" || upper == "FLOAT32") upper = "F32";
  if (upper == "FP16" || upper == "FLOAT16" || upper == "HALF") upper = "F16";
  if (upper == "BFLOAT16") upper = "BF16";
  auto dtype = dtype_from_name(upper);
  if (!dtype || !dtype_is_float(*dtype))
    throw InputError(fmt::format("dtype '{}' is not one of f64, f32, f16, bf16", text));
  return *dtype;
}

void add_case_options(CLI::App& command, CaseOptions& o, bool positional_file) {
  if (positional_file)
    command.add_option("file", o.file, "Case file (.safetensors, .npz, .npy folder); omit to generate a case");
  o.generator_only = {
      command.add_option("--dist", o.spec.distribution, "Input distribution for a generated case")
          ->check(CLI::IsMember(distribution_names()))
          ->capture_default_str(),
      command.add_option("--shape", o.shape, "B,T,H,K,V of a generated case")->capture_default_str(),
      command.add_option("--dtype", o.dtype, "dtype of q, k, v, a, b, do of a generated case (default: bf16, or "
                         "f32 where the output format cannot hold bf16)"),
      command.add_option("--gk-dtype", o.gk_dtype, "dtype of gk, h0, dht of a generated case")->capture_default_str(),
      command.add_option("--seed", o.spec.seed, "Seed of a generated case (0 to 2^64 - 1)")
          ->check(CLI::Validator(
              [](std::string& text) {
                return text.starts_with('-') ? fmt::format("expected an integer from 0 to 2^64 - 1, got '{}'", text)
                                             : std::string();
              },
              "UINT64"))
          ->capture_default_str(),
      command.add_option("--varlen", o.varlen, "cu_seqlens of a generated case, e.g. 0,100,256 (B must be 1)"),
      command.add_flag_callback("--no-h0", [&o] { o.spec.with_h0 = false; }, "Generate no initial state"),
      command.add_flag("--reverse", o.spec.reverse, "Process tokens last to first (forward only in fla)"),
      command.add_option("--scale", o.spec.scale, "Scale of a generated case (default K^-1/2)")
          ->check(finite_positive()),
      command.add_option("--gate-normalizer", o.spec.gate_normalizer, "fla's gate_logit_normalizer")
          ->check(finite_positive())
          ->capture_default_str(),
  };
}

CaseSpec resolve_spec(const CaseOptions& o) {
  CaseSpec spec = o.spec;
  const auto shape = parse_int_list(o.shape, "--shape");
  if (shape.size() != 5) throw InputError(fmt::format("--shape '{}' must be B,T,H,K,V (5 integers)", o.shape));
  spec.shape = {shape[0], shape[1], shape[2], shape[3], shape[4]};
  spec.dtype = parse_dtype(o.dtype.empty() ? std::string(kDefaultDtype) : o.dtype);
  spec.gk_dtype = parse_dtype(o.gk_dtype);
  if (!o.varlen.empty()) spec.cu_seqlens = parse_int_list(o.varlen, "--varlen");
  return spec;
}

DplrProblem load_case(const CaseOptions& o, std::string* description) {
  if (o.file.empty()) {
    const CaseSpec spec = resolve_spec(o);
    if (description) *description = describe(spec);
    return generate_case(spec);
  }
  refuse_generator_options(o);  // before the file is read: a refusal costs nothing
  return case_from_file(read_tensor_file(o.file), o, description);
}

DplrProblem case_from_file(const TensorFile& file, const CaseOptions& o, std::string* description) {
  refuse_generator_options(o);
  if (description) *description = o.file;
  return problem_from_file(file, o.file);
}

void refuse_generator_options(const CaseOptions& o) {
  // A file's case is what the file holds; an option that would change it is refused, not ignored.
  for (const CLI::Option* option : o.generator_only)
    if (option->count() > 0)
      throw InputError(fmt::format("{}: {} applies to a generated case, but a FILE was given; a file's {} come from "
                                   "its tensors and metadata (scale, reverse)",
                                   o.file, option->get_name(), "shape, dtypes and options"));
}

void require_float_tensor(const std::string& name, const Tensor& tensor, const std::string& origin,
                          std::string_view role) {
  if (!dtype_is_float(tensor.dtype))
    throw InputError(fmt::format("{}: tensor '{}' has dtype {}, expected a floating dtype (F64, F32, F16, BF16): {} "
                                 "judged for accuracy",
                                 origin, name, dtype_name(tensor.dtype), role));
}

std::optional<DType> require_float_results(const TensorMap& tensors, const std::string& origin) {
  std::optional<DType> finest;
  for (const auto& group : {std::span<const std::string_view>(kOutputNames), std::span<const std::string_view>(kGradientNames)})
    for (auto name : group) {
      auto it = tensors.find(std::string(name));
      if (it == tensors.end()) continue;
      const DType dtype = it->second.dtype;
      require_float_tensor(it->first, it->second, origin, "an output or gradient");
      if (!finest || dtype_significand_bits(dtype) > dtype_significand_bits(*finest)) finest = dtype;
    }
  return finest;
}

void require_reference_finer_than(double reference_bits, DType judged, const std::string& origin,
                                  std::string_view how) {
  const int needed = dtype_significand_bits(judged) + kReferenceMarginBits;
  if (reference_bits < needed)
    throw InputError(fmt::format("{}: the reference is {} to {:.1f} bits, coarser than the {} data it would judge; "
                                 "expected at least {} bits ({}'s {} plus a {}-bit margin): use a higher --precision",
                                 origin, how, reference_bits, dtype_name(judged), needed, dtype_name(judged),
                                 dtype_significand_bits(judged), kReferenceMarginBits));
}

std::string write_output(const std::string& path, const TensorFile& file) {
  const std::filesystem::path out(path);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  write_tensor_file(out, file);
  return std::filesystem::absolute(out).string();
}

bool stderr_is_terminal() { return isatty(STDERR_FILENO) != 0; }

void add_estimate_option(CLI::App& command, std::string& estimate) {
  command.add_option("--estimate", estimate,
                     "How the reference's bits are estimated: repeat (agreement with a run at a higher precision: dd "
                     "against td, td against qd) or extrapolated (td or dd: the answer at td, its bits the agreement "
                     "with a run at dd plus the 44 bits td has more; or at dd, from a run at double plus 53; less 4 of "
                     "margin either way; checked against MPFR-400 by the tests)")
      ->check(CLI::IsMember({"repeat", "extrapolated"}))
      ->capture_default_str();
}

void add_rigorous_options(CLI::App& command, bool& rigorous, RigorousOptions& options, std::string_view what) {
  command.add_flag("--rigorous", rigorous,
                   fmt::format("Proven bits: {} in Arb ball arithmetic, the bits proven by the balls' radii "
                               "(not in a build without Arb)", what));
  command.add_option("--proven-bits", options.proven_bits, "--rigorous: bits to prove on every tensor")
      ->check(CLI::Range(1.0, 100000.0))
      ->capture_default_str();
  command.add_option("--max-precision", options.max_precision,
                     "--rigorous: the largest working precision (bits) tried before giving up")
      ->check(CLI::Range(24, 1 << 20))
      ->capture_default_str();
}

}  // namespace dplr::cli
