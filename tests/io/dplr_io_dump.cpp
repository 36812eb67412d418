// dplr_io_dump: the C++ side of tests/io/interop.py.
//   dplr_io_dump FILE                     prints FILE as JSON: {"metadata": {...}, "tensors": [{"name",
//                                         "dtype", "shape", "values"}, ...]}; values in C order, each a
//                                         float literal that round-trips (NaN, Infinity, -Infinity as
//                                         Python's json reads them), so comparison can be exact.
//   dplr_io_dump --write SPEC.json OUT [--compress] [--npy-version N] [--fortran] [--big-endian]
//                                         writes OUT from SPEC: {"metadata": {...}, "tensors": {NAME:
//                                         {"dtype", "shape", "values"}}}, values numbers or "nan", "inf", "-inf".
// Exit 2 with the message on stderr for an InputError, as the dplr tool does.
#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "io/tensor_io.hpp"

namespace {

std::string float_literal(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "Infinity" : "-Infinity";
  std::string s = fmt::format("{:.17g}", v);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";  // keeps -0.0 a float in Python
  return s;
}

void dump(const std::filesystem::path& path) {
  const dplr::TensorFile file = dplr::read_tensor_file(path);
  std::string out = "{\"metadata\": " + nlohmann::json(file.metadata).dump() + ", \"tensors\": [";
  bool first = true;
  for (const auto& [name, t] : file.tensors) {
    out += fmt::format("{}\n{{\"name\": {}, \"dtype\": \"{}\", \"shape\": {}, \"values\": [", first ? "" : ",",
                       nlohmann::json(name).dump(), dplr::dtype_name(t.dtype), nlohmann::json(t.shape).dump());
    for (std::size_t i = 0; i < t.values.size(); ++i) {
      if (i) out += ", ";
      out += float_literal(t.values[i]);
    }
    out += "]}";
    first = false;
  }
  out += "]}\n";
  std::fwrite(out.data(), 1, out.size(), stdout);
}

double value_of(const nlohmann::json& v) {
  if (v.is_number()) return v.get<double>();
  const std::string s = v.get<std::string>();
  if (s == "nan") return std::nan("");
  if (s == "inf") return HUGE_VAL;
  if (s == "-inf") return -HUGE_VAL;
  throw dplr::InputError("spec: unknown value " + s);
}

void write(const std::filesystem::path& spec_path, const std::filesystem::path& out, dplr::TensorWriteOptions options) {
  const auto bytes = dplr::read_file_bytes(spec_path);
  const auto spec = nlohmann::json::parse(reinterpret_cast<const char*>(bytes.data()),
                                          reinterpret_cast<const char*>(bytes.data()) + bytes.size());
  dplr::TensorFile file;
  if (spec.contains("metadata")) file.metadata = spec["metadata"].get<std::map<std::string, std::string>>();
  for (const auto& [name, t] : spec["tensors"].items()) {
    dplr::Tensor tensor;
    const auto dtype = dplr::dtype_from_name(t["dtype"].get<std::string>());
    if (!dtype) throw dplr::InputError("spec: unknown dtype for " + name);
    tensor.dtype = *dtype;
    tensor.shape = t["shape"].get<std::vector<std::int64_t>>();
    for (const auto& v : t["values"]) tensor.values.push_back(value_of(v));
    file.tensors[name] = std::move(tensor);
  }
  dplr::write_tensor_file(out, file, options);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() == 1) {
      dump(args[0]);
      return 0;
    }
    if (args.size() >= 3 && args[0] == "--write") {
      dplr::TensorWriteOptions options;
      for (std::size_t i = 3; i < args.size(); ++i) {
        if (args[i] == "--compress") options.compress = true;
        else if (args[i] == "--fortran") options.fortran_order = true;
        else if (args[i] == "--big-endian") options.big_endian = true;
        else if (args[i] == "--npy-version" && i + 1 < args.size()) options.npy_version = std::stoi(args[++i]);
        else throw dplr::InputError("unknown option " + args[i]);
      }
      write(args[1], args[2], options);
      return 0;
    }
    std::cerr << "usage: dplr_io_dump FILE | dplr_io_dump --write SPEC.json OUT [--compress] [--npy-version N] "
                 "[--fortran] [--big-endian]\n";
    return 2;
  } catch (const dplr::InputError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
