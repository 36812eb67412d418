// libFuzzer target for the case-level checks: a valid container (safetensors, written and read back) holding
// a semantically bad case. The input is a list of edits to a small valid case (B1 T4 H1 K2 V2): drop a tensor,
// change a dimension, set a value (NaN, infinity, huge), add or edit cu_seqlens, change a dtype. Any
// InputError is a correct answer; a case that problem_from_tensors accepts must pass validate_problem and
// hold exactly the values its shapes say, with cu_seqlens from 0 to T, non-decreasing.
#include <limits>
#include <string>

#include "fuzz/fuzz_common.hpp"
#include "reference/problem.hpp"

namespace {

dplr::TensorMap valid_case() {
  dplr::TensorMap t;
  auto fill = [](std::vector<std::int64_t> shape, dplr::DType dtype = dplr::DType::F32) {
    dplr::Tensor x{dtype, shape, {}};
    x.values.assign(static_cast<std::size_t>(x.numel()), 0.5);
    return x;
  };
  for (const char* name : {"q", "k", "a", "b", "gk"}) t[name] = fill({1, 4, 1, 2});
  t["v"] = fill({1, 4, 1, 2});
  t["do"] = fill({1, 4, 1, 2});
  t["h0"] = fill({1, 1, 2, 2});
  t["dht"] = fill({1, 1, 2, 2});
  return t;
}

constexpr const char* kNames[] = {"q", "k", "v", "a", "b", "gk", "h0", "do", "dht", "cu_seqlens"};
constexpr double kValues[] = {0.0, -1.0, 1e300, -1e300, 88.0, 800.0, 1e-320, 3.0, 4.0, 9007199254740993.0,
                              std::numeric_limits<double>::quiet_NaN(), std::numeric_limits<double>::infinity()};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  dplr::TensorMap tensors = valid_case();
  for (std::size_t i = 0; i + 3 <= size; i += 3) {
    const std::string name = kNames[data[i + 1] % std::size(kNames)];
    const std::uint8_t arg = data[i + 2];
    auto it = tensors.find(name);
    switch (data[i] % 6) {
      case 0: tensors.erase(name); break;
      case 1:  // a dimension to 0 .. 7, values resized to match (the container stays valid)
        if (it != tensors.end() && !it->second.shape.empty()) {
          it->second.shape[arg % it->second.shape.size()] = (arg >> 4) % 8;
          it->second.values.assign(static_cast<std::size_t>(it->second.numel()), 0.25);
        }
        break;
      case 2:
        if (it != tensors.end() && !it->second.values.empty())
          it->second.values[(arg >> 4) % it->second.values.size()] = kValues[arg % std::size(kValues)];
        break;
      case 3: tensors["cu_seqlens"] = dplr::Tensor{dplr::DType::I64, {arg % 4}, std::vector<double>(arg % 4, 0.0)}; break;
      case 4:
        if (it != tensors.end() && !it->second.values.empty())
          it->second.values[(arg >> 4) % it->second.values.size()] = (arg & 15) - 2;
        break;
      case 5:
        if (it != tensors.end()) it->second.dtype = arg % 2 ? dplr::DType::I32 : dplr::DType::F64;
        break;
    }
  }
  // Only cases the container can hold are of interest here (integral values in integer dtypes, and so on).
  dplr::TensorFile file;
  try {
    file = dplr::parse_safetensors(dplr::serialize_safetensors({tensors, {}}), "fuzz.safetensors");
  } catch (const dplr::InputError&) {
    return 0;
  }
  dplr::DplrProblem p;
  try {
    p = dplr::problem_from_tensors(file.tensors, std::numeric_limits<double>::quiet_NaN(), false, "fuzz.safetensors");
  } catch (const dplr::InputError&) {
    return 0;
  }
  try {
    dplr::validate_problem(p, "accepted");
  } catch (const dplr::InputError&) {
    dplr::fuzz::bug("problem_from_tensors accepted a case validate_problem refuses");
  }
  for (auto name : dplr::kInputNames)
    if (const dplr::Tensor* t = dplr::find_input(p, name))
      if (static_cast<std::int64_t>(t->values.size()) != t->numel()) dplr::fuzz::bug("values do not fill the shape");
  if (!p.cu_seqlens.empty()) {
    if (p.cu_seqlens.size() < 2 || p.cu_seqlens.front() != 0 || p.cu_seqlens.back() != p.shape.T)
      dplr::fuzz::bug("cu_seqlens accepted without 0 .. T");
    for (std::size_t i = 1; i < p.cu_seqlens.size(); ++i)
      if (p.cu_seqlens[i] < p.cu_seqlens[i - 1]) dplr::fuzz::bug("decreasing cu_seqlens accepted");
  }
  if (p.num_sequences() < 1 && p.shape.B >= 1) dplr::fuzz::bug("a case without a sequence accepted");
  return 0;
}
