// dplr_verify._core: the C++ libraries as Python functions (nanobind). Only conversion lives here; the
// reference, the metrics, the report and the file formats are the libraries' own. dplr_verify/__init__.py
// turns numpy arrays and torch tensors into the (dtype, float64 array) pairs these functions take.
//
// A tensor crosses as (dtype name, C-contiguous float64 array): every supported dtype widens exactly to
// double (core/tensor.hpp), so nothing is rounded on the way in, and the storage dtype travels beside it.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/map.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <fmt/format.h>

#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include "core/error.hpp"
#include "generators/distributions.hpp"
#include "io/tensor_io.hpp"
#include "reference/problem.hpp"
#include "reference/reference.hpp"
#include "reports/report.hpp"
#include "reports/sha256.hpp"
#include "verify/tolerance.hpp"
#include "verify/verify_case.hpp"

namespace nb = nanobind;

namespace {

using InArray = nb::ndarray<const double, nb::c_contig, nb::device::cpu>;
using OutArray = nb::ndarray<nb::numpy, double>;
using NamedArrays = std::map<std::string, std::pair<std::string, InArray>>;
using OutTensors = std::map<std::string, std::pair<std::string, OutArray>>;

OutArray to_numpy(std::vector<double> values, const std::vector<std::int64_t>& shape) {
  auto* owned = new std::vector<double>(std::move(values));
  nb::capsule owner(owned, [](void* p) noexcept { delete static_cast<std::vector<double>*>(p); });
  std::vector<size_t> extents(shape.begin(), shape.end());
  return OutArray(owned->data(), extents.size(), extents.data(), owner);
}

dplr::TensorMap to_tensor_map(const NamedArrays& arrays) {
  dplr::TensorMap tensors;
  for (const auto& [name, typed] : arrays) {
    const auto& [dtype_name, array] = typed;
    const auto dtype = dplr::dtype_from_name(dtype_name);
    if (!dtype) throw dplr::InputError(fmt::format("tensor '{}': unknown dtype '{}'", name, dtype_name));
    dplr::Tensor tensor;
    tensor.dtype = *dtype;
    for (size_t d = 0; d < array.ndim(); ++d) tensor.shape.push_back(static_cast<std::int64_t>(array.shape(d)));
    tensor.values.assign(array.data(), array.data() + array.size());
    tensors.emplace(name, std::move(tensor));
  }
  return tensors;
}

OutTensors to_named_arrays(const dplr::TensorMap& tensors) {
  OutTensors out;
  for (const auto& [name, tensor] : tensors)
    out.emplace(name, std::pair{std::string(dplr::dtype_name(tensor.dtype)), to_numpy(tensor.values, tensor.shape)});
  return out;
}

dplr::TolerancePolicy make_policy(const std::string& preset, const std::vector<std::string>& policy_files,
                                  const std::vector<std::string>& overrides) {
  dplr::TolerancePolicy policy = dplr::TolerancePolicy::preset(preset);
  for (const auto& file : policy_files) policy.add_file(file);
  for (const auto& text : overrides) policy.add_overrides(text, "python");
  return policy;
}

struct VerifyArguments {
  std::string preset;
  std::vector<std::string> policy_files;
  std::vector<std::string> overrides;
  std::string precision;
  bool certify = true;
  std::string estimate = "repeat";
  int threads = 0;
  std::string convention = "contract";
  std::string decay;
  std::string layout = "batch-first";
  std::map<std::string, std::string> map;  // file name -> contract name
  std::vector<std::string> command_line;
};

// The report `dplr verify` writes for one case, and its terminal table.
std::pair<std::string, std::string> verify_tensor_file(const dplr::TensorFile& file, const std::string& origin,
                                                       dplr::FileSource source, const VerifyArguments& a) {
  const dplr::TolerancePolicy policy = make_policy(a.preset, a.policy_files, a.overrides);
  dplr::Report report;
  report.command = "verify";
  report.command_line = a.command_line;
  report.host = dplr::HostInfo::current();
  report.policy_preset = policy.preset_name();
  report.policy_sources = policy.sources();
  report.start_time = std::chrono::system_clock::now();

  dplr::VerifyCaseOptions options;
  options.precision = dplr::Precision::parse(a.precision);
  options.certify = a.certify;
  options.estimate = dplr::parse_estimate_method(a.estimate);
  options.threads = a.threads;
  options.convention = dplr::parse_convention(a.convention);
  if (!a.decay.empty()) options.convention.decay = dplr::parse_decay(a.decay);
  options.convention.layout = dplr::parse_layout(a.layout);
  for (const auto& [from, to] : a.map) options.convention.map.emplace_back(from, to);
  dplr::CaseResult result;
  {
    nb::gil_scoped_release release;
    result = dplr::verify_case(file, policy, options, origin);
  }
  result.source.files.push_back(std::move(source));
  std::string table = dplr::format_table(result);
  report.cases.push_back(std::move(result));
  report.duration_seconds =
      std::chrono::duration<double>(std::chrono::system_clock::now() - report.start_time).count();
  return {dplr::to_json(report).dump(), std::move(table)};
}

std::map<std::string, std::string> metadata_of(std::optional<double> scale, bool reverse) {
  std::map<std::string, std::string> metadata;
  // 17 significant digits: std::stod reads back the same double.
  if (scale) metadata["scale"] = fmt::format("{:.17g}", *scale);
  metadata["reverse"] = reverse ? "true" : "false";
  return metadata;
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "dplr-verify's C++ core (reference, verification, tensor files) for dplr_verify";
  nb::exception<dplr::InputError>(m, "InputError", PyExc_ValueError);

  nb::class_<VerifyArguments>(m, "VerifyArguments")
      .def(nb::init<>())
      .def_rw("preset", &VerifyArguments::preset)
      .def_rw("policy_files", &VerifyArguments::policy_files)
      .def_rw("overrides", &VerifyArguments::overrides)
      .def_rw("precision", &VerifyArguments::precision)
      .def_rw("certify", &VerifyArguments::certify)
      .def_rw("estimate", &VerifyArguments::estimate)
      .def_rw("threads", &VerifyArguments::threads)
      .def_rw("convention", &VerifyArguments::convention)
      .def_rw("decay", &VerifyArguments::decay)
      .def_rw("layout", &VerifyArguments::layout)
      .def_rw("map", &VerifyArguments::map)
      .def_rw("command_line", &VerifyArguments::command_line);

  m.def("version", [] { return dplr::ToolInfo::current().version; });
  m.def("policy_presets", [] {
    std::vector<std::string> names;
    for (auto name : dplr::TolerancePolicy::preset_names()) names.emplace_back(name);
    return names;
  });
  m.def("distribution_names", [] { return dplr::distribution_names(); });

  m.def(
      "reference",
      [](const NamedArrays& arrays, std::optional<double> scale, bool reverse, const std::string& precision,
         bool certify, const std::string& estimate, int threads, bool rigorous, double proven_bits, int max_precision) {
        const dplr::TensorMap tensors = to_tensor_map(arrays);
        dplr::ReferenceResult result;
        {
          nb::gil_scoped_release release;
          const dplr::DplrProblem problem = dplr::problem_from_tensors(
              tensors, scale.value_or(std::numeric_limits<double>::quiet_NaN()), reverse, "dplr_verify.reference");
          dplr::ReferenceOptions options;
          options.precision = dplr::Precision::parse(precision);
          options.threads = threads;
          options.estimate = dplr::parse_estimate_method(estimate);
          if (rigorous)
            result = dplr::run_rigorous_reference(problem, options, {.proven_bits = proven_bits, .max_precision = max_precision});
          else
            result = certify ? dplr::run_certified_reference(problem, options) : dplr::run_reference(problem, options);
        }
        std::map<std::string, OutArray> out, radius;
        for (const auto& [name, exact] : result.tensors) {
          out.emplace(name, to_numpy(exact.rounded(), exact.shape));
          if (rigorous) radius.emplace(name, to_numpy(exact.radius, exact.shape));
        }
        return std::tuple{out, result.estimated_bits, result.proven_bits, radius, result.precision.name(), result.seconds};
      },
      nb::arg("tensors"), nb::arg("scale"), nb::arg("reverse"), nb::arg("precision"), nb::arg("certify"),
      nb::arg("estimate"), nb::arg("threads"), nb::arg("rigorous"), nb::arg("proven_bits"), nb::arg("max_precision"));

  m.def(
      "verify_path",
      [](const std::string& path, const VerifyArguments& a) {
        const dplr::TensorFile file = dplr::read_tensor_file(path);
        return verify_tensor_file(file, path, {"case", path, dplr::sha256_file(path)}, a);
      },
      nb::arg("path"), nb::arg("arguments"));

  m.def(
      "verify_tensors",
      [](const NamedArrays& arrays, std::optional<double> scale, bool reverse, const VerifyArguments& a) {
        dplr::TensorFile file;
        file.tensors = to_tensor_map(arrays);
        file.metadata = metadata_of(scale, reverse);
        // The tensors' identity: the SHA-256 of the safetensors file dplr_verify.record would write.
        const auto bytes = dplr::serialize_safetensors(file, "dplr_verify.verify");
        const std::string digest =
            dplr::sha256_hex(std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
        return verify_tensor_file(file, "<in memory>", {"tensors", "<in memory>", digest}, a);
      },
      nb::arg("tensors"), nb::arg("scale"), nb::arg("reverse"), nb::arg("arguments"));

  m.def(
      "write_tensor_file",
      [](const std::string& path, const NamedArrays& arrays, std::optional<double> scale, bool reverse,
         const std::map<std::string, std::string>& extra_metadata) {
        dplr::TensorFile file;
        file.tensors = to_tensor_map(arrays);
        file.metadata = metadata_of(scale, reverse);
        for (const auto& [key, value] : extra_metadata) file.metadata[key] = value;
        dplr::write_tensor_file(path, file);
      },
      nb::arg("path"), nb::arg("tensors"), nb::arg("scale"), nb::arg("reverse"), nb::arg("metadata"));

  m.def(
      "read_tensor_file",
      [](const std::string& path) {
        const dplr::TensorFile file = dplr::read_tensor_file(path);
        return std::pair{to_named_arrays(file.tensors), file.metadata};
      },
      nb::arg("path"));

  m.def(
      "generate_case",
      [](const std::string& distribution, std::vector<std::int64_t> shape, const std::string& dtype,
         const std::string& gk_dtype, std::uint64_t seed, bool h0, bool backward,
         std::vector<std::int64_t> cu_seqlens, double gate_normalizer, std::optional<double> scale, bool reverse) {
        if (shape.size() != 5) throw dplr::InputError("dplr_verify.gen: shape must be (B, T, H, K, V)");
        dplr::CaseSpec spec;
        spec.shape = {shape[0], shape[1], shape[2], shape[3], shape[4]};
        spec.cu_seqlens = std::move(cu_seqlens);
        auto parse = [](const std::string& name) {
          const auto d = dplr::dtype_from_name(name);
          if (!d || !dplr::dtype_is_float(*d))
            throw dplr::InputError(fmt::format("dplr_verify.gen: dtype '{}' is not one of F64, F32, F16, BF16", name));
          return *d;
        };
        spec.dtype = parse(dtype);
        spec.gk_dtype = parse(gk_dtype);
        spec.distribution = distribution;
        spec.seed = seed;
        spec.with_h0 = h0;
        spec.with_backward = backward;
        spec.gate_normalizer = gate_normalizer;
        spec.scale = scale.value_or(0.0);
        spec.reverse = reverse;
        const dplr::DplrProblem problem = dplr::generate_case(spec);
        return std::tuple{to_named_arrays(dplr::problem_to_tensors(problem)), problem.scale, dplr::describe(spec)};
      },
      nb::arg("distribution"), nb::arg("shape"), nb::arg("dtype"), nb::arg("gk_dtype"), nb::arg("seed"),
      nb::arg("h0"), nb::arg("backward"), nb::arg("cu_seqlens"), nb::arg("gate_normalizer"), nb::arg("scale"),
      nb::arg("reverse"));
}
