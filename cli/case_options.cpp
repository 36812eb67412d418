#include "cli/case_options.hpp"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
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
  command.add_option("--dist", o.spec.distribution, "Input distribution for a generated case")
      ->check(CLI::IsMember(distribution_names()))
      ->capture_default_str();
  command.add_option("--shape", o.shape, "B,T,H,K,V of a generated case")->capture_default_str();
  command.add_option("--dtype", o.dtype, "dtype of q, k, v, a, b, do of a generated case")->capture_default_str();
  command.add_option("--gk-dtype", o.gk_dtype, "dtype of gk, h0, dht of a generated case")->capture_default_str();
  command.add_option("--seed", o.spec.seed, "Seed of a generated case")->capture_default_str();
  command.add_option("--varlen", o.varlen, "cu_seqlens of a generated case, e.g. 0,100,256 (B must be 1)");
  command.add_flag("!--no-h0", o.spec.with_h0, "Generate no initial state");
  command.add_flag("--reverse", o.spec.reverse, "Process tokens last to first (forward only in fla)");
  command.add_option("--scale", o.spec.scale, "Scale (default K^-1/2)");
  command.add_option("--gate-normalizer", o.spec.gate_normalizer, "fla's gate_logit_normalizer")->capture_default_str();
}

CaseSpec resolve_spec(const CaseOptions& o) {
  CaseSpec spec = o.spec;
  const auto shape = parse_int_list(o.shape, "--shape");
  if (shape.size() != 5) throw InputError(fmt::format("--shape '{}' must be B,T,H,K,V (5 integers)", o.shape));
  spec.shape = {shape[0], shape[1], shape[2], shape[3], shape[4]};
  spec.dtype = parse_dtype(o.dtype);
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
  const TensorFile file = read_tensor_file(o.file);
  if (description) *description = o.file;
  return problem_from_file(file, o.file);
}

std::string write_output(const std::string& path, const TensorFile& file) {
  const std::filesystem::path out(path);
  if (out.has_parent_path()) std::filesystem::create_directories(out.parent_path());
  write_tensor_file(out, file);
  return std::filesystem::absolute(out).string();
}

bool stderr_is_terminal() { return isatty(STDERR_FILENO) != 0; }

}  // namespace dplr::cli
