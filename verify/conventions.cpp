#include "verify/conventions.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <qd/dd_real.h>

#include <algorithm>

#include "core/error.hpp"

namespace dplr {

namespace {

// RWKV-7's names for contract tensors (file name -> contract name). w and dw are handled apart: they pass
// through the decay parametrization.
const std::vector<std::pair<std::string, std::string>>& rwkv7_names() {
  static const std::vector<std::pair<std::string, std::string>> names = {
      {"r", "q"}, {"y", "o"}, {"dy", "do"}, {"dr", "dq"}, {"w", "gk"}, {"dw", "dgk"}};
  return names;
}

// The tensors the contract lays out as [B, T, H, D].
bool is_token_tensor(const std::string& name) {
  static const std::vector<std::string> names = {"q", "k", "v", "a", "b", "gk", "o", "do",
                                                 "dq", "dk", "dv", "da", "db", "dgk"};
  return std::find(names.begin(), names.end(), name) != names.end();
}

// [B, H, T, D] -> [B, T, H, D].
Tensor head_first_to_batch_first(const Tensor& t) {
  const auto B = t.shape[0], H = t.shape[1], T = t.shape[2], D = t.shape[3];
  Tensor out{t.dtype, {B, T, H, D}, std::vector<double>(t.values.size())};
  for (std::int64_t b = 0; b < B; ++b)
    for (std::int64_t h = 0; h < H; ++h)
      for (std::int64_t s = 0; s < T; ++s)
        std::copy_n(t.values.begin() + ((b * H + h) * T + s) * D, D, out.values.begin() + ((b * T + s) * H + h) * D);
  return out;
}

std::string_view decay_name(DecayParametrization d) {
  switch (d) {
    case DecayParametrization::ClampW: return "clampw: gk = -exp(-0.5) sigmoid(w)";
    case DecayParametrization::Exp: return "exp: gk = -exp(w)";
    case DecayParametrization::Log: return "log: gk = w";
  }
  return "";
}

dd_real sigmoid(const dd_real& w) { return dd_real(1.0) / (dd_real(1.0) + exp(-w)); }

dd_real decay_of(DecayParametrization d, double w) {
  const dd_real x(w);
  switch (d) {
    case DecayParametrization::ClampW: return -exp(dd_real(-0.5)) * sigmoid(x);
    case DecayParametrization::Exp: return -exp(x);
    case DecayParametrization::Log: return x;
  }
  return x;
}

// g'(w) of gk = g(w).
dd_real decay_derivative(DecayParametrization d, double w) {
  const dd_real x(w);
  switch (d) {
    case DecayParametrization::ClampW: {
      const dd_real s = sigmoid(x);
      return -exp(dd_real(-0.5)) * s * (dd_real(1.0) - s);
    }
    case DecayParametrization::Exp: return -exp(x);
    case DecayParametrization::Log: return dd_real(1.0);
  }
  return dd_real(1.0);
}

}  // namespace

TensorConvention parse_convention(std::string_view name) {
  if (name != "contract" && name != "rwkv7")
    throw InputError(fmt::format("--convention '{}' is not one of contract, rwkv7", name));
  TensorConvention convention;
  convention.name = std::string(name);
  return convention;
}

DecayParametrization parse_decay(std::string_view name) {
  if (name == "clampw") return DecayParametrization::ClampW;
  if (name == "exp") return DecayParametrization::Exp;
  if (name == "log") return DecayParametrization::Log;
  throw InputError(fmt::format("decay parametrization '{}' is not one of clampw (gk = -exp(-0.5) sigmoid(w)), "
                               "exp (gk = -exp(w)), log (gk = w)", name));
}

TokenLayout parse_layout(std::string_view name) {
  if (name == "batch-first" || name == "BTHD") return TokenLayout::BatchFirst;
  if (name == "head-first" || name == "BHTD") return TokenLayout::HeadFirst;
  throw InputError(fmt::format("--layout '{}' is not one of batch-first ([B, T, H, D]), head-first ([B, H, T, D])", name));
}

std::pair<std::string, std::string> parse_map(std::string_view text) {
  const auto eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0 || eq + 1 == text.size())
    throw InputError(fmt::format("--map '{}' must be NAME_IN_FILE=CONTRACT_NAME (e.g. y=o)", text));
  return {std::string(text.substr(0, eq)), std::string(text.substr(eq + 1))};
}

ContractView to_contract(TensorFile file, const TensorConvention& convention, std::string_view origin) {
  ContractView view;
  view.file.metadata = file.metadata;
  std::map<std::string, std::string> renames;  // file name -> contract name
  for (const auto& [from, to] : convention.map) {
    if (!file.tensors.count(from))
      throw InputError(fmt::format("{}: --map names tensor '{}', which the file lacks", origin, from));
    renames[from] = to;
  }
  const bool rwkv7 = convention.name == "rwkv7";
  if (rwkv7)
    for (const auto& [from, to] : rwkv7_names())
      if (file.tensors.count(from) && !renames.count(from)) renames[from] = to;

  for (auto& [name, tensor] : file.tensors) {
    const auto it = renames.find(name);
    const std::string contract = it == renames.end() ? name : it->second;
    if (view.file.tensors.count(contract)) {
      const auto other = view.file_name_of.count(contract) ? view.file_name_of.at(contract) : contract;
      throw InputError(fmt::format("{}: tensors '{}' and '{}' both map to the contract's '{}'", origin,
                                   other == name ? contract : other, name, contract));
    }
    Tensor mapped = std::move(tensor);
    if (convention.layout == TokenLayout::HeadFirst && is_token_tensor(contract)) {
      if (mapped.shape.size() != 4)
        throw InputError(fmt::format("{}: tensor '{}' has shape {}; head-first layout expects [B, H, T, D]", origin,
                                     name, shape_string(mapped.shape)));
      mapped = head_first_to_batch_first(mapped);
    }
    if (contract != name) view.file_name_of[contract] = name;
    view.file.tensors.emplace(contract, std::move(mapped));
  }
  if (!convention.map.empty()) {
    std::vector<std::string> pairs;
    for (const auto& [from, to] : convention.map) pairs.push_back(from + "=" + to);
    view.notes.push_back(fmt::format("--map {}", fmt::join(pairs, ", ")));
  }
  if (convention.layout == TokenLayout::HeadFirst)
    view.notes.push_back("layout head-first: [B, H, T, D] tensors read as the contract's [B, T, H, D]; indices "
                         "below are [B, T, H, D]");

  if (rwkv7) {
    auto decay = convention.decay;
    if (!decay)
      if (auto it = file.metadata.find("decay"); it != file.metadata.end()) decay = parse_decay(it->second);
    const bool has_w = renames.count("w") && renames.at("w") == "gk";
    if (has_w) {
      if (!decay)
        throw InputError(fmt::format("{}: RWKV-7's w needs its decay parametrization: --decay clampw "
                                     "(gk = -exp(-0.5) sigmoid(w)), exp (gk = -exp(w)) or log (gk = w)", origin));
      Tensor& gk = view.file.tensors.at("gk");
      view.w = gk;
      view.decay = decay;
      for (double& value : gk.values) value = to_double(decay_of(*decay, value));
      gk.dtype = DType::F64;  // g(w) is not a value of w's dtype; the judged dtype stays the inputs' (q, k, v, a, b)
    }
    if (!file.metadata.count("scale")) view.file.metadata.insert_or_assign("scale", std::string("1"));
    std::string note = "convention rwkv7: r -> q, w -> gk, y -> o, dr -> dq, dw -> dgk";
    if (decay) note += fmt::format("; decay {}", decay_name(*decay));
    if (!file.metadata.count("scale")) note += "; scale 1";
    view.notes.push_back(note);
    if (!view.file.tensors.count("h0"))
      view.notes.push_back("rwkv7: no h0 (RWKV-7's kernels start from a zero state)");
    if (!view.file.tensors.count("ht"))
      view.notes.push_back("rwkv7: no ht (RWKV-7's kernels return no final state): the state is not compared");
  }
  return view;
}

void exact_to_file_convention(ExactTensorMap& exact, const ContractView& view) {
  if (!view.decay) return;
  const auto it = exact.find("dgk");
  if (it == exact.end()) return;
  const ExactTensor& dgk = it->second;
  ExactTensor dw(dgk.shape, 2);
  for (std::int64_t i = 0; i < dgk.numel(); ++i) {
    const double* parts = &dgk.parts[static_cast<std::size_t>(i) * dgk.limbs];
    const dd_real exact_dgk = dgk.limbs >= 2 ? dd_real(parts[0], parts[1]) : dd_real(parts[0]);
    const dd_real value = exact_dgk * decay_derivative(*view.decay, view.w.values[static_cast<std::size_t>(i)]);
    dw.parts[2 * i] = value.x[0];
    dw.parts[2 * i + 1] = value.x[1];
  }
  it->second = std::move(dw);
}

void name_as_file(CaseResult& result, const ContractView& view) {
  auto file_name = [&](const std::string& name) {
    const auto it = view.file_name_of.find(name);
    return it == view.file_name_of.end() ? name : it->second;
  };
  for (auto& tensor : result.comparison.tensors) tensor.name = file_name(tensor.name);
  for (auto* names : {&result.comparison.only_in_actual, &result.comparison.only_in_expected}) {
    for (auto& name : *names) name = file_name(name);
    std::sort(names->begin(), names->end());
  }
  std::map<std::string, DType> dtypes;
  for (const auto& [name, dtype] : result.dtypes) dtypes[file_name(name)] = dtype;
  if (view.decay) dtypes[file_name("gk")] = view.w.dtype;  // gk = g(w) was formed in double; w's dtype is the file's
  result.dtypes = std::move(dtypes);
  if (result.reference) {
    for (auto* per_tensor : {&result.reference->estimated_bits, &result.reference->proven_bits}) {
      std::map<std::string, double> bits;
      for (const auto& [name, value] : *per_tensor) bits[file_name(name)] = value;
      *per_tensor = std::move(bits);
    }
  }
  result.notes.insert(result.notes.begin(), view.notes.begin(), view.notes.end());
}

}  // namespace dplr
