#include "reference/problem.hpp"

#include <fmt/format.h>

#include <cmath>
#include <stdexcept>

#include "core/error.hpp"

namespace dplr {

SequenceSpan DplrProblem::sequence(std::int64_t n) const {
  if (cu_seqlens.empty()) return {n, 0, shape.T};
  return {0, cu_seqlens[n], cu_seqlens[n + 1]};
}

DplrProblem sequences_of(const DplrProblem& p, std::int64_t first, std::int64_t count) {
  if (first < 0 || count < 1 || first + count > p.num_sequences())
    throw std::invalid_argument(fmt::format("sequences_of: sequences [{}, {}) outside the problem's {}", first,
                                            first + count, p.num_sequences()));
  DplrProblem s;
  s.shape = p.shape;
  s.scale = p.scale;
  s.reverse = p.reverse;
  // Token rows (b * T + t) of the slice: whole batch rows, or the packed sequences' tokens.
  std::int64_t row_begin = first * p.shape.T, row_end = (first + count) * p.shape.T;
  if (p.cu_seqlens.empty()) {
    s.shape.B = count;
  } else {
    row_begin = p.cu_seqlens[first], row_end = p.cu_seqlens[first + count];
    s.shape.T = row_end - row_begin;
    for (std::int64_t n = first; n <= first + count; ++n) s.cu_seqlens.push_back(p.cu_seqlens[n] - row_begin);
  }
  const std::int64_t H = p.shape.H, state = p.shape.H * p.shape.K * p.shape.V;
  auto rows = [&](const Tensor& t, std::int64_t D) {
    const auto begin = t.values.begin() + row_begin * H * D, end = t.values.begin() + row_end * H * D;
    return Tensor{t.dtype, {s.shape.B, s.shape.T, H, D}, std::vector<double>(begin, end)};
  };
  auto states = [&](const Tensor& t) {
    const auto begin = t.values.begin() + first * state, end = t.values.begin() + (first + count) * state;
    return Tensor{t.dtype, {count, H, p.shape.K, p.shape.V}, std::vector<double>(begin, end)};
  };
  s.q = rows(p.q, p.shape.K), s.k = rows(p.k, p.shape.K), s.a = rows(p.a, p.shape.K), s.b = rows(p.b, p.shape.K);
  s.gk = rows(p.gk, p.shape.K), s.v = rows(p.v, p.shape.V);
  if (p.grad_o) s.grad_o = rows(*p.grad_o, p.shape.V);
  if (p.h0) s.h0 = states(*p.h0);
  if (p.grad_ht) s.grad_ht = states(*p.grad_ht);
  return s;
}

const Tensor* find_input(const DplrProblem& p, std::string_view name) {
  return find_input(const_cast<DplrProblem&>(p), name);
}

Tensor* find_input(DplrProblem& p, std::string_view name) {
  if (name == "q") return &p.q;
  if (name == "k") return &p.k;
  if (name == "v") return &p.v;
  if (name == "a") return &p.a;
  if (name == "b") return &p.b;
  if (name == "gk") return &p.gk;
  if (name == "h0") return p.h0 ? &*p.h0 : nullptr;
  if (name == "do") return p.grad_o ? &*p.grad_o : nullptr;
  if (name == "dht") return p.grad_ht ? &*p.grad_ht : nullptr;
  return nullptr;
}

std::string gradient_name(std::string_view input) {
  std::string name = "d";  // appended rather than "d" + std::string(input), which GCC 12 flags (-Wrestrict, a false positive)
  name += input;
  return name;
}

namespace {

void expect_shape(const Tensor& t, const std::vector<std::int64_t>& expected, std::string_view name,
                  std::string_view origin) {
  if (t.shape != expected)
    throw InputError(fmt::format("{}: tensor '{}' has shape {}, expected {}", origin, name, shape_string(t.shape),
                                 shape_string(expected)));
  if (static_cast<std::int64_t>(t.values.size()) != t.numel())
    throw InputError(fmt::format("{}: tensor '{}' holds {} values for shape {}", origin, name, t.values.size(),
                                 shape_string(t.shape)));
}

void expect_finite(const Tensor& t, std::string_view name, std::string_view origin) {
  std::int64_t bad = 0, first = -1;
  for (std::size_t i = 0; i < t.values.size(); ++i)
    if (!std::isfinite(t.values[i])) {
      if (first < 0) first = static_cast<std::int64_t>(i);
      ++bad;
    }
  if (bad)
    throw InputError(fmt::format("{}: tensor '{}' has {} non-finite value(s), the first {} at flat index {}; the "
                                 "reference needs finite inputs",
                                 origin, name, bad, t.values[first], first));
}

}  // namespace

void validate_problem(const DplrProblem& p, std::string_view origin) {
  const auto& s = p.shape;
  if (s.B < 1 || s.T < 0 || s.H < 1 || s.K < 1 || s.V < 1)
    throw InputError(fmt::format("{}: shape B={} T={} H={} K={} V={} is not valid (B, H, K, V >= 1, T >= 0)", origin,
                                 s.B, s.T, s.H, s.K, s.V));
  if (!p.cu_seqlens.empty()) {
    const auto& cu = p.cu_seqlens;
    if (s.B != 1)
      throw InputError(fmt::format("{}: cu_seqlens needs B == 1 (sequences packed along T), but B = {}", origin, s.B));
    if (cu.size() < 2) throw InputError(fmt::format("{}: cu_seqlens needs at least 2 entries, has {}", origin, cu.size()));
    if (cu.front() != 0) throw InputError(fmt::format("{}: cu_seqlens must start at 0, starts at {}", origin, cu.front()));
    for (std::size_t i = 1; i < cu.size(); ++i)
      if (cu[i] < cu[i - 1])
        throw InputError(fmt::format("{}: cu_seqlens must not decrease, but cu_seqlens[{}] = {} < cu_seqlens[{}] = {}",
                                     origin, i, cu[i], i - 1, cu[i - 1]));
    if (cu.back() != s.T)
      throw InputError(fmt::format("{}: cu_seqlens must end at T = {}, ends at {}", origin, s.T, cu.back()));
  }
  const std::int64_t N = p.num_sequences();
  const std::vector<std::int64_t> key_shape{s.B, s.T, s.H, s.K}, value_shape{s.B, s.T, s.H, s.V},
      state_shape{N, s.H, s.K, s.V};
  for (auto name : {"q", "k", "a", "b", "gk"}) expect_shape(*find_input(p, name), key_shape, name, origin);
  expect_shape(p.v, value_shape, "v", origin);
  if (p.h0) expect_shape(*p.h0, state_shape, "h0", origin);
  if (p.grad_o) expect_shape(*p.grad_o, value_shape, "do", origin);
  if (p.grad_ht) expect_shape(*p.grad_ht, state_shape, "dht", origin);
  if (p.grad_ht && !p.grad_o)
    throw InputError(fmt::format("{}: dht is given without do; the backward needs do", origin));
  for (auto name : kInputNames)
    if (const Tensor* t = find_input(p, name)) expect_finite(*t, name, origin);
  if (!std::isfinite(p.scale)) throw InputError(fmt::format("{}: scale must be finite, is {}", origin, p.scale));
}

DplrProblem problem_from_tensors(const TensorMap& tensors, double scale, bool reverse, std::string_view origin) {
  TensorMap inputs;  // the inputs only: outputs and gradients beside them are not copied
  for (auto name : kInputNames)
    if (auto it = tensors.find(std::string(name)); it != tensors.end()) inputs.emplace(it->first, it->second);
  return problem_from_tensors(std::move(inputs), scale, reverse, origin);
}

DplrProblem problem_from_tensors(TensorMap&& tensors, double scale, bool reverse, std::string_view origin) {
  auto require = [&](std::string_view name) -> Tensor {
    auto it = tensors.find(std::string(name));
    if (it == tensors.end()) throw InputError(fmt::format("{}: required tensor '{}' is missing", origin, name));
    return std::move(it->second);
  };
  auto optional = [&](std::string_view name) -> std::optional<Tensor> {
    auto it = tensors.find(std::string(name));
    if (it == tensors.end()) return std::nullopt;
    return std::move(it->second);
  };
  DplrProblem p;
  p.q = require("q");
  if (p.q.shape.size() != 4)
    throw InputError(fmt::format("{}: tensor 'q' has shape {}, expected 4 dimensions [B, T, H, K]", origin,
                                 shape_string(p.q.shape)));
  p.k = require("k"), p.v = require("v"), p.a = require("a"), p.b = require("b"), p.gk = require("gk");
  if (p.v.shape.size() != 4)
    throw InputError(fmt::format("{}: tensor 'v' has shape {}, expected 4 dimensions [B, T, H, V]", origin,
                                 shape_string(p.v.shape)));
  p.shape = {p.q.shape[0], p.q.shape[1], p.q.shape[2], p.q.shape[3], p.v.shape[3]};
  p.h0 = optional("h0"), p.grad_o = optional("do"), p.grad_ht = optional("dht");
  if (auto cu = optional("cu_seqlens")) {
    if (cu->dtype != DType::I64 && cu->dtype != DType::I32)
      throw InputError(fmt::format("{}: tensor 'cu_seqlens' has dtype {}, expected I64 (or I32)", origin,
                                   dtype_name(cu->dtype)));
    if (cu->shape.size() != 1)
      throw InputError(fmt::format("{}: tensor 'cu_seqlens' has shape {}, expected [N+1]", origin, shape_string(cu->shape)));
    // An empty cu_seqlens would read as "no packing": refused, as the contract needs N + 1 >= 2 entries.
    if (cu->values.size() < 2)
      throw InputError(fmt::format("{}: tensor 'cu_seqlens' has shape {}, expected [N+1] with N >= 1 (0, then the end "
                                   "of each sequence)",
                                   origin, shape_string(cu->shape)));
    for (double x : cu->values) p.cu_seqlens.push_back(static_cast<std::int64_t>(x));
  }
  p.scale = std::isnan(scale) ? 1.0 / std::sqrt(static_cast<double>(p.shape.K)) : scale;
  p.reverse = reverse;
  validate_problem(p, origin);
  return p;
}

TensorMap problem_to_tensors(const DplrProblem& p) {
  TensorMap out;
  for (auto name : kInputNames)
    if (const Tensor* t = find_input(p, name)) out[std::string(name)] = *t;
  if (!p.cu_seqlens.empty()) {
    Tensor cu{DType::I64, {static_cast<std::int64_t>(p.cu_seqlens.size())}, {}};
    for (auto x : p.cu_seqlens) cu.values.push_back(static_cast<double>(x));
    out["cu_seqlens"] = cu;
  }
  return out;
}

}  // namespace dplr
