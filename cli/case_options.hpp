// Command-line options shared by the commands that take a case: a tensor file, or a generated case
// (distribution, shape, dtype, seed, varlen, h0).
#pragma once
#include <CLI/CLI.hpp>

#include <functional>
#include <string>

#include "generators/distributions.hpp"
#include "reference/problem.hpp"

namespace dplr::cli {

using Command = std::function<int()>;

struct CaseOptions {
  std::string file;  // empty: generate
  CaseSpec spec;
  std::string shape = "1,256,2,64,64";  // B,T,H,K,V
  std::string dtype = "bf16";
  std::string gk_dtype = "f32";
  std::string varlen;  // "0,100,256"
};

// Adds --dist, --shape, --dtype, --gk-dtype, --seed, --varlen, --no-h0, --reverse, --scale; with
// `positional_file`, an optional FILE argument too.
void add_case_options(CLI::App& command, CaseOptions& options, bool positional_file);

// The spec the options describe (parses shape, dtypes, varlen; InputError when malformed).
CaseSpec resolve_spec(const CaseOptions& options);

// The case: read from the file (metadata scale/reverse honoured) or generated. `description` says which.
DplrProblem load_case(const CaseOptions& options, std::string* description = nullptr);

// Writes a tensor file, creating its folder; returns the absolute path written.
std::string write_output(const std::string& path, const TensorFile& file);

DType parse_dtype(const std::string& text);  // f64 f32 f16 bf16 (any case), or safetensors names
bool stderr_is_terminal();

}  // namespace dplr::cli
