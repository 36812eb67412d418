#include "verify/case_file.hpp"

#include <algorithm>
#include <cctype>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"
#include "io/tensor_io.hpp"
#include "verify/verify_case.hpp"

namespace dplr {
namespace {

using nlohmann::json;

json spec_json(const CaseSpec& s) {
  return {{"shape", {{"B", s.shape.B}, {"T", s.shape.T}, {"H", s.shape.H}, {"K", s.shape.K}, {"V", s.shape.V}}},
          {"cu_seqlens", s.cu_seqlens},
          {"dtype", std::string(dtype_name(s.dtype))},
          {"gk_dtype", std::string(dtype_name(s.gk_dtype))},
          {"distribution", s.distribution},
          {"seed", s.seed},
          {"with_h0", s.with_h0},
          {"with_backward", s.with_backward},
          {"gate_normalizer", s.gate_normalizer},
          {"scale", s.scale},
          {"reverse", s.reverse}};
}

std::string safe_stem(const std::string& stem) {
  std::string out;
  for (char c : stem) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.') ? c : '_';
  // Runs of '_' from ": " and spaces read badly; collapse them.
  out.erase(std::unique(out.begin(), out.end(), [](char a, char b) { return a == '_' && b == '_'; }), out.end());
  return out.substr(0, 160);
}

const std::string& required(const TensorFile& file, const std::string& key, const std::string& origin) {
  const auto it = file.metadata.find(key);
  if (it == file.metadata.end())
    throw InputError(fmt::format("{}: metadata '{}' is missing; a case file (verify/case_file.hpp) names the kernel "
                                 "it failed on and its chunk size",
                                 origin, key));
  return it->second;
}

}  // namespace

std::filesystem::path write_case_file(const std::filesystem::path& folder, const std::string& stem,
                                      const DplrProblem& problem, const CaseSpec& spec, const std::string& kernel,
                                      int chunk_size, const std::string& failed, const std::string& producer) {
  TensorFile file{problem_to_tensors(problem), {}};
  file.metadata["scale"] = fmt::format("{:.17g}", problem.scale);
  file.metadata["reverse"] = problem.reverse ? "true" : "false";
  file.metadata["kernel"] = kernel;
  file.metadata["chunk_size"] = std::to_string(chunk_size);
  file.metadata["generator"] = spec.distribution;
  file.metadata["seed"] = std::to_string(spec.seed);
  file.metadata["spec"] = spec_json(spec).dump();
  file.metadata["failed"] = failed;
  file.metadata["producer"] = producer;
  std::error_code ec;
  std::filesystem::create_directories(folder, ec);
  if (ec) throw InputError(fmt::format("case file folder {}: cannot be created: {}", folder.string(), ec.message()));
  const auto path = folder / (safe_stem(stem) + ".safetensors");
  write_tensor_file(path, file);
  return path;
}

CaseFile read_case_file(const std::filesystem::path& path) {
  const std::string origin = path.string();
  const TensorFile file = read_tensor_file(path);
  CaseFile out;
  out.problem = problem_from_file(file, origin);
  out.kernel = required(file, "kernel", origin);
  if (std::find(std::begin(kCaseKernels), std::end(kCaseKernels), out.kernel) == std::end(kCaseKernels))
    throw InputError(fmt::format("{}: metadata 'kernel' is '{}'; expected one of {}", origin, out.kernel,
                                 fmt::join(kCaseKernels, ", ")));
  const std::string& chunk = required(file, "chunk_size", origin);
  try {
    std::size_t used = 0;
    out.chunk_size = std::stoi(chunk, &used);
    if (used != chunk.size()) throw std::invalid_argument("trailing text");
  } catch (const std::logic_error&) {
    throw InputError(fmt::format("{}: metadata 'chunk_size' is '{}'; expected a whole number", origin, chunk));
  }
  const bool chunk_size_ok = out.chunk_size == 16 || out.chunk_size == 32 || out.chunk_size == 64;
  if ((out.kernel == "chunk" || out.kernel == "chunk-fused" || out.kernel == "chunk-bwd") && !chunk_size_ok)
    throw InputError(fmt::format("{}: metadata 'chunk_size' is {} for kernel {}; expected 16, 32 or 64", origin,
                                 out.chunk_size, out.kernel));
  if ((out.kernel == "recurrent" || out.kernel == "recurrent-bwd") && out.chunk_size != 0)
    throw InputError(fmt::format("{}: metadata 'chunk_size' is {} for kernel {}; expected 0 (it has no chunks)", origin,
                                 out.chunk_size, out.kernel));
  if ((out.kernel == "chunk-bwd" || out.kernel == "recurrent-bwd") && !out.problem.grad_o)
    throw InputError(fmt::format("{}: kernel {} is a backward, and the file holds no 'do' (the upstream gradient)", origin,
                                 out.kernel));
  if (out.kernel == "cpu" && out.chunk_size != 0 && !chunk_size_ok)
    throw InputError(fmt::format("{}: metadata 'chunk_size' is {} for kernel cpu; expected 0 (the sweep's chunk "
                                 "oracles) or the oracle's 16, 32 or 64",
                                 origin, out.chunk_size));
  // The parameters the replay judges by come from the tensors; the spec's distribution and seed name it.
  CaseSpec& spec = out.spec;
  spec.shape = out.problem.shape;
  spec.cu_seqlens = out.problem.cu_seqlens;
  spec.dtype = out.problem.q.dtype;
  spec.gk_dtype = out.problem.gk.dtype;
  spec.with_h0 = out.problem.h0.has_value();
  spec.with_backward = out.problem.has_backward();
  spec.reverse = out.problem.reverse;
  spec.scale = out.problem.scale;
  if (const auto it = file.metadata.find("spec"); it != file.metadata.end()) {
    try {
      const json s = json::parse(it->second);
      spec.distribution = s.at("distribution").get<std::string>();
      spec.seed = s.at("seed").get<std::uint64_t>();
      spec.gate_normalizer = s.at("gate_normalizer").get<double>();
    } catch (const json::exception& e) {
      throw InputError(fmt::format("{}: metadata 'spec' is not the JSON a case file holds (distribution, seed, "
                                   "gate_normalizer, ...): {}",
                                   origin, e.what()));
    }
  } else {
    spec.distribution = file.metadata.count("generator") ? file.metadata.at("generator") : "file";
  }
  if (const auto it = file.metadata.find("failed"); it != file.metadata.end()) out.failed = it->second;
  if (const auto it = file.metadata.find("producer"); it != file.metadata.end()) out.producer = it->second;
  return out;
}

std::string replay_command(const std::filesystem::path& path) {
  return fmt::format("dplr check --case {}", path.string());
}

}  // namespace dplr
