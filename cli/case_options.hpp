// Command-line options shared by the commands that take a case: a tensor file, or a generated case
// (distribution, shape, dtype, seed, varlen, h0).
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <optional>
#include <string>

#include "generators/distributions.hpp"
#include "reference/problem.hpp"
#include "reference/reference.hpp"

namespace dplr::cli {

using Command = std::function<int()>;

struct CaseOptions {
  std::string file;  // empty: generate
  CaseSpec spec;
  std::string shape = "1,256,2,64,64";  // B,T,H,K,V
  std::string dtype;  // empty: bf16, or f32 where the output format has no bf16 (gen -o x.npz)
  std::string gk_dtype = "f32";
  std::string varlen;  // "0,100,256"
  std::vector<const CLI::Option*> generator_only;  // refused with a FILE (refuse_generator_options)
};

// Adds --dist, --shape, --dtype, --gk-dtype, --seed, --varlen, --no-h0, --reverse, --scale; with
// `positional_file`, an optional FILE argument too.
void add_case_options(CLI::App& command, CaseOptions& options, bool positional_file);

// The spec the options describe (parses shape, dtypes, varlen; InputError when malformed).
CaseSpec resolve_spec(const CaseOptions& options);

// The case: read from the file (metadata scale/reverse honoured) or generated. `description` says which.
DplrProblem load_case(const CaseOptions& options, std::string* description = nullptr);
// The case a file already read holds (options.file names it). Metadata 'scale' must be a finite number and
// 'reverse' one of true/false/True/False/1/0; generator options given with a file are refused.
DplrProblem case_from_file(const TensorFile& file, const CaseOptions& options, std::string* description = nullptr);
// InputError when a generator-only option (--shape, --scale, --reverse, ...) was given together with a FILE.
void refuse_generator_options(const CaseOptions& options);

// Writes a tensor file, creating its folder; returns the absolute path written.
std::string write_output(const std::string& path, const TensorFile& file);

// A tensor judged for accuracy must be floating point: InputError naming origin, name and `role`.
void require_float_tensor(const std::string& name, const Tensor& tensor, const std::string& origin,
                          std::string_view role);
// The outputs and gradients a file holds (o, ht, dq ... dh0) must be floating point: InputError naming the
// first that is not. Returns the finest of their dtypes (the one a reference must resolve), if any.
std::optional<DType> require_float_results(const TensorMap& tensors, const std::string& origin);

// A reference judges data only where it is finer than the data: its bits must reach the judged dtype's
// significand bits plus kReferenceMarginBits. At 10 bits the reference's own error is below 2^-10 of the
// data's unit roundoff, so it moves a floor ratio (error in units of the data's rounding) by under 0.1%.
inline constexpr int kReferenceMarginBits = 10;
void require_reference_finer_than(double reference_bits, DType judged, const std::string& origin,
                                  std::string_view how);

// --rigorous, --proven-bits, --max-precision (ref, verify, check): the reference in Arb ball arithmetic,
// its bits proven by the radii. `what` says what runs in balls (in the flag's help). Where the build has no
// Arb, run_rigorous_reference refuses with a message (reference/reference.hpp).
void add_rigorous_options(CLI::App& command, bool& rigorous, RigorousOptions& options, std::string_view what);

// --estimate (ref, verify, bench): how a certified reference's bits are estimated (reference/reference.hpp).
void add_estimate_option(CLI::App& command, std::string& estimate);

inline constexpr std::string_view kDefaultDtype = "bf16";
DType parse_dtype(const std::string& text);
// CLI11 check: a finite number above zero (CLI::PositiveNumber lets "nan" through).
CLI::Validator finite_positive();
// CLI11 check: an integer >= minimum, with a message that says so (CLI::NonNegativeNumber prints DBL_MAX).
CLI::Validator at_least(long long minimum);  // f64 f32 f16 bf16 (any case), or safetensors names
bool stderr_is_terminal();

}  // namespace dplr::cli
