#include "generators/distributions.hpp"

#include <fmt/format.h>

#include <cmath>
#include <numbers>
#include <algorithm>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "core/memory.hpp"

namespace dplr {

RandomStream::RandomStream(std::uint64_t seed) : engine_(seed) {}

// 53 random bits: a uniform double in [0, 1). (std::uniform_real_distribution is implementation-defined.)
double RandomStream::uniform() { return static_cast<double>(engine_() >> 11) * 0x1p-53; }

double RandomStream::normal() {
  if (has_spare_) {
    has_spare_ = false;
    return spare_normal_;
  }
  double u1;
  do u1 = uniform();
  while (u1 == 0.0);
  const double u2 = uniform(), radius = std::sqrt(-2.0 * std::log(u1)), angle = 2.0 * std::numbers::pi * u2;
  spare_normal_ = radius * std::sin(angle);
  has_spare_ = true;
  return radius * std::cos(angle);
}

const std::vector<std::string>& distribution_names() {
  static const std::vector<std::string> names{"fla",       "strong-decay", "mixed-decay",   "near-zero-decay",
                                              "edge-of-stability", "free-ab", "large-norm-keys"};
  return names;
}

namespace {

Tensor make_tensor(DType dtype, std::vector<std::int64_t> shape) {
  Tensor t{dtype, std::move(shape), {}};
  t.values.resize(static_cast<std::size_t>(t.numel()));
  return t;
}

void round_values(Tensor& t) {
  for (auto& x : t.values) x = round_to_dtype(x, t.dtype);
}

double log_sigmoid(double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); }

}  // namespace

DplrProblem generate_case(const CaseSpec& spec) {
  const auto& names = distribution_names();
  if (std::find(names.begin(), names.end(), spec.distribution) == names.end())
    throw InputError(fmt::format("unknown distribution '{}'; expected one of: {}", spec.distribution,
                                 fmt::join(names, ", ")));
  const auto& s = spec.shape;
  if (s.B < 1 || s.T < 0 || s.H < 1 || s.K < 1 || s.V < 1)
    throw InputError(fmt::format("shape B={} T={} H={} K={} V={} is not valid", s.B, s.T, s.H, s.K, s.V));
  DplrProblem p;
  p.shape = s;
  p.cu_seqlens = spec.cu_seqlens;
  p.reverse = spec.reverse;
  p.scale = spec.scale != 0.0 ? spec.scale : 1.0 / std::sqrt(static_cast<double>(s.K));
  const std::vector<std::int64_t> key{s.B, s.T, s.H, s.K}, value{s.B, s.T, s.H, s.V};
  const std::int64_t N = spec.cu_seqlens.empty() ? s.B : std::int64_t(spec.cu_seqlens.size()) - 1;
  const std::vector<std::int64_t> state{N, s.H, s.K, s.V};
  {
    using U = std::uint64_t;
    const U tokens = saturating_product({U(s.B), U(s.T), U(s.H)});
    const U doubles = saturating_sum({saturating_product({tokens, U(s.K), 5}), saturating_product({tokens, U(s.V), 2}),
                                      saturating_product({U(N), U(s.H), U(s.K), U(s.V), 2})});
    require_memory(saturating_product({doubles, sizeof(double)}),
                   fmt::format("generated case B={} T={} H={} K={} V={}", s.B, s.T, s.H, s.K, s.V),
                   "holding its inputs and upstream gradients as doubles");
  }

  RandomStream random(spec.seed);
  const std::string& d = spec.distribution;
  p.q = make_tensor(spec.dtype, key), p.k = make_tensor(spec.dtype, key), p.v = make_tensor(spec.dtype, value);
  p.a = make_tensor(spec.dtype, key), p.b = make_tensor(spec.dtype, key), p.gk = make_tensor(spec.gk_dtype, key);
  for (auto& x : p.q.values) x = random.normal();
  const double key_scale = d == "large-norm-keys" ? 30.0 : 1.0;
  for (auto& x : p.k.values) x = key_scale * random.normal();
  for (auto& x : p.v.values) x = random.normal();

  // a, b: per token and head, a vector over K.
  const std::int64_t rows = s.B * s.T * s.H;
  for (std::int64_t r = 0; r < rows; ++r) {
    double* a = &p.a.values[r * s.K];
    double* b = &p.b.values[r * s.K];
    if (d == "free-ab") {
      for (std::int64_t i = 0; i < s.K; ++i) a[i] = random.normal() / std::sqrt(double(s.K));
      for (std::int64_t i = 0; i < s.K; ++i) b[i] = random.normal() / std::sqrt(double(s.K));
      continue;
    }
    double norm = 0.0;
    for (std::int64_t i = 0; i < s.K; ++i) a[i] = random.uniform(), norm += a[i] * a[i];
    norm = std::max(std::sqrt(norm), 1e-12);  // F.normalize's eps
    for (std::int64_t i = 0; i < s.K; ++i) a[i] = round_to_dtype(a[i] / norm, spec.dtype);
    const double factor = d == "edge-of-stability" ? -2.0 : -1.0;
    for (std::int64_t i = 0; i < s.K; ++i) b[i] = factor * a[i];  // exact: scaling by -1 or -2
  }

  std::vector<bool> strong_channel(s.K);
  for (std::int64_t i = 0; i < s.K; ++i) strong_channel[i] = random.uniform() < 0.5;
  for (std::size_t idx = 0; idx < p.gk.values.size(); ++idx) {
    double& g = p.gk.values[idx];
    if (d == "strong-decay") g = -5.0 - 25.0 * random.uniform();
    else if (d == "mixed-decay") g = strong_channel[idx % s.K] ? -5.0 - 25.0 * random.uniform() : -1e-3 * random.uniform();
    else if (d == "near-zero-decay") g = -1e-4 * random.uniform();
    else g = log_sigmoid(random.normal()) / spec.gate_normalizer;
  }
  for (Tensor* t : {&p.q, &p.k, &p.v, &p.a, &p.b, &p.gk}) round_values(*t);

  if (spec.with_h0) {
    p.h0 = make_tensor(spec.gk_dtype, state);
    for (auto& x : p.h0->values) x = random.normal();
    round_values(*p.h0);
  }
  if (spec.with_backward) {
    p.grad_o = make_tensor(spec.dtype, value);
    for (auto& x : p.grad_o->values) x = random.normal();
    round_values(*p.grad_o);
    p.grad_ht = make_tensor(spec.gk_dtype, state);
    for (auto& x : p.grad_ht->values) x = random.normal();
    round_values(*p.grad_ht);
  }
  validate_problem(p, fmt::format("generated case '{}'", spec.distribution));
  return p;
}

std::string describe(const CaseSpec& spec) {
  const auto& s = spec.shape;
  std::string text = fmt::format("{} B{} T{} H{} K{} V{} {} seed {}", spec.distribution, s.B, s.T, s.H, s.K, s.V,
                                 dtype_name(spec.dtype), spec.seed);
  if (!spec.cu_seqlens.empty()) text += fmt::format(" cu_seqlens [{}]", fmt::join(spec.cu_seqlens, ","));
  if (spec.with_h0) text += " h0";
  if (spec.reverse) text += " reverse";
  return text;
}

}  // namespace dplr
