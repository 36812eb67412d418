#include "verify/tolerance.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "core/error.hpp"

namespace dplr {
namespace {

constexpr std::array<std::string_view, 3> kPresetNames = {"strict", "default", "report-only"};
constexpr std::array<std::string_view, 2> kForward = {"o", "ht"};
constexpr std::array<std::string_view, 7> kGradients = {"dq", "dk", "dv", "da", "db", "dgk", "dh0"};
// The chunk backward's stage tensors that are not gradients (reference/chunk_stages.hpp: o_bwd, h_bwd, WY_bwd).
constexpr std::array<std::string_view, 7> kBackwardStages = {"dA_qk", "dA_qb", "dA_ak", "dA_ab", "dh", "dv_new", "dw"};
constexpr std::array<DType, 2> kSixteenBit = {DType::BF16, DType::F16};

// The "default" preset's elementwise (u of the judged dtype) and worst-block (floors) limits, from fla's
// outputs judged at their working dtype (`dplr verify --policy report-only`): the committed recordings (seed 11)
// and, on the H200 in session 6 (bench/fla_record.py on `dplr gen` cases, B1 T256 H2 K=V=64, seeds 1-3 bf16 and
// seed 1 fp16, distributions fla, mixed-decay and near-zero-decay; reports/baselines/h200/fla-calibration.md):
//   o, ht:      worst element 4.7 u (mixed-decay bf16 o), worst block 2.89 floors (near-zero fp16 o)
//                                                                                   -> 6 u, 4.0 (1.3-1.4x)
//   gradients but dgk: worst element 13.6 u (bf16 db), worst block 5.80 (fp16 da)  -> 32 u, 12.0 (2.1x)
//   dgk:        worst element 64.3 u, worst block 9.60 floors (bf16, seed 1). fla's dgk is systematically worst in
//               the last chunk of the sequence (tokens 240..255 in all four fla-distribution cases: 18.0-64.3 u;
//               elsewhere <= 5.2 u), a real inaccuracy of fla's that `strict` reports; default lets it pass
//                                                                                   -> 96 u, 16.0 (1.5-1.7x)
//   other names (stage tensors): no foreign recording; between the two              -> 8 u, 6.0
// These still fail what they are for: a 3% error in one head and one 16-token window of a bf16 dq is ~18 floors
// there (the whole tensor 2.7x); one dgk element of |e| ~ RMS doubled is 128 u (tests/verify, tests/cli).
// fla's chunk kernel fails default at the edge of stability (b = -2a: every tensor 9-150 floors) and its dgk under
// strong decay (2000+ floors), both real defects (its fused recurrent o is 1.00x there).
constexpr double kDefaultElem16 = 6.0, kDefaultLocal16 = 4.0;
constexpr double kDefaultElemGrad16 = 32.0, kDefaultLocalGrad16 = 12.0;
constexpr double kDefaultElemDgk16 = 96.0, kDefaultLocalDgk16 = 16.0;
constexpr double kDefaultElemOther16 = 8.0, kDefaultLocalOther16 = 6.0;
// fp32 judged: rel RMSE 1e-5 is ~400 floors (fp32 floor ~2.5e-8). The float chunk form of reference/
// (`dplr check`'s chunk-float cases, 5 distributions) has its worst element at 0.6-2x its floor ratio
// (in u) and its worst block at 1.1-2.4x its floor ratio, so a kernel at the rel RMSE limit would reach
// ~800 u and ~1000 floors: 2048 u and 1024 floors. One element of dgk off by 1e-3 of its value (|e| >=
// RMS/2) is >= 5600 u and fails.
constexpr double kDefaultElem32 = 2048.0, kDefaultLocal32 = 1024.0;

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.front()))) text.remove_prefix(1);
  while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) text.remove_suffix(1);
  return text;
}

// Sets one limit by unit name; false when the unit is unknown.
bool set_limit(ToleranceLimits& limits, std::string_view unit, double value) {
  const std::string u = lowercase(unit);
  if (u == "floor" || u == "floor_ratio") limits.floor_ratio = value;
  else if (u == "rel_rmse") limits.rel_rmse = value;
  else if (u == "max_ulp" || u == "ulp") limits.max_ulp = value;
  else if (u == "max_rel") limits.max_rel = value;
  else if (u == "max_abs") limits.max_abs = value;
  else if (u == "elem" || u == "max_elem") limits.max_elem = value;
  else if (u == "local" || u == "local_ratio") limits.local_ratio = value;
  else if (u == "misrounded") limits.misrounded = value;
  else return false;
  return true;
}

bool is_unit(std::string_view text) {
  ToleranceLimits scratch;
  return set_limit(scratch, text, 0.0);
}

double parse_limit_value(std::string_view text, std::string_view entry, std::string_view origin) {
  double value = 0.0;
  const auto* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || !std::isfinite(value) || value < 0.0)
    throw InputError(fmt::format("{}: tolerance '{}': expected a number >= 0 or 'off' after '=', got '{}'",
                                 origin, entry, text));
  return value;
}

std::string selector_string(const std::optional<DType>& dtype, const std::string& tensor) {
  if (!dtype) return tensor;
  return fmt::format("{}:{}", dtype_name(*dtype), tensor);
}

// Higher wins: DTYPE:TENSOR 3, TENSOR 2, DTYPE:* 1, * 0.
int specificity(const std::optional<DType>& dtype, const std::string& tensor) {
  return (tensor != "*" ? 2 : 0) + (dtype ? 1 : 0);
}

std::string format_number(double x) { return fmt::format("{:.3g}", x); }

}  // namespace

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::Pass: return "pass";
    case Verdict::Fail: return "fail";
    case Verdict::Error: return "error";
  }
  return "?";
}

Verdict worst_verdict(Verdict a, Verdict b) { return static_cast<int>(a) >= static_cast<int>(b) ? a : b; }

std::string_view floor_basis_name(FloorBasis basis) { return basis == FloorBasis::Storage ? "storage" : "working"; }

namespace {
std::string index_text(const std::vector<std::int64_t>& index) { return fmt::format("[{}]", fmt::join(index, ", ")); }

// "sequence 0, head 1, tokens 32..47" (or "chunk 3", or the whole state).
std::string block_text(const LocalityMetrics& locality) {
  const BlockMetrics& b = locality.worst_block;
  std::string where = fmt::format("sequence {}, head {}", b.sequence, b.head);
  if (locality.layout == TensorLayout::Kind::Tokens)
    where += fmt::format(", tokens {}..{}", b.token_begin, b.token_end - 1);
  else if (locality.layout == TensorLayout::Kind::ChunkStates)
    where += fmt::format(", chunk {}", b.token_begin);
  return where;
}
}  // namespace

std::optional<DType> parse_dtype_selector(std::string_view text) {
  const std::string t = lowercase(trim(text));
  if (t == "f64" || t == "fp64" || t == "float64" || t == "double") return DType::F64;
  if (t == "f32" || t == "fp32" || t == "float32" || t == "float") return DType::F32;
  if (t == "f16" || t == "fp16" || t == "float16" || t == "half") return DType::F16;
  if (t == "bf16" || t == "bfloat16") return DType::BF16;
  if (t == "i64" || t == "int64") return DType::I64;
  if (t == "i32" || t == "int32") return DType::I32;
  return std::nullopt;
}

Judgement judge(const TensorMetrics& m, const Tolerance& tolerance, std::string_view expected_name) {
  const auto& nf = m.nonfinite;
  if (nf.actual_nan > 0)
    return {Verdict::Error, fmt::format("{} NaN of {} elements in the actual tensor, first at [{}]", nf.actual_nan,
                                        m.elements, fmt::join(nf.first_actual_nan_index.value(), ", "))};
  if (nf.expected_nan > 0)
    return {Verdict::Error,
            fmt::format("{} NaN of {} elements on the {} side: nothing to compare them with", nf.expected_nan,
                        m.elements, expected_name)};
  if (nf.inf_mismatch > 0)
    return {Verdict::Fail, fmt::format("{} elements infinite where {} is not (or the other infinity); "
                                       "{} infinite in actual, {} in {}",
                                       nf.inf_mismatch, expected_name, nf.actual_inf, expected_name,
                                       nf.expected_inf, expected_name)};

  const ToleranceLimits& limits = tolerance.limits;
  std::vector<std::string> exceeded, held, not_evaluated;
  auto check = [&](const std::optional<double>& limit, double value, std::string_view label,
                   std::string where = {}) {
    if (!limit) return;
    const bool ok = value <= *limit;
    std::string text = fmt::format("{} {} {} {}", label, format_number(value), ok ? "<=" : ">", format_number(*limit));
    if (!ok && !where.empty()) text += " " + where;
    (ok ? held : exceeded).push_back(text);
  };
  if (limits.floor_ratio) {
    if (m.floor)
      check(limits.floor_ratio, m.floor->ratio, m.floor->conditioned ? "floor ratio (conditioning floor)" : "floor ratio");
    else
      not_evaluated.push_back(fmt::format("floor ratio <= {} (no floor computed)", format_number(*limits.floor_ratio)));
  }
  check(limits.rel_rmse, m.rel_rmse, "rel RMSE");
  check(limits.max_ulp, m.max_ulp.error, "max ulp");
  check(limits.max_rel, m.max_rel.error, "max rel err");
  check(limits.max_abs, m.max_abs.error, "max abs err");
  if (limits.max_elem) {
    // Where the conditioning floor judges (metrics.hpp), the elementwise limit grows by the same factor over the
    // rounding floor: an ill-conditioned tensor's elements are as far from rounding as its RMSE is.
    const double factor = m.floor && m.floor->conditioned && m.floor->rounding_rel_rmse > 0.0
                              ? m.floor->used_rel_rmse / m.floor->rounding_rel_rmse
                              : 1.0;
    const std::string label =
        factor > 1.0 ? fmt::format("worst element (limit x{} conditioning)", format_number(factor)) : "worst element";
    if (m.elem_unit > 0.0 && !m.max_elem.index.empty())
      check(*limits.max_elem * factor, m.max_elem.error, label,
            fmt::format("u at {} (actual {}, {} {}; |err| <= k u (|{}| + RMS) with u = {})", index_text(m.max_elem.index),
                        format_number(m.max_elem.actual), expected_name, format_number(m.max_elem.expected),
                        expected_name, format_number(m.elem_unit)));
    else if (m.elem_unit == 0.0)
      not_evaluated.push_back("worst element (integer dtype)");
  }
  if (limits.local_ratio) {
    if (m.locality && m.locality->worst_block.elements == 0)
      not_evaluated.push_back(fmt::format("worst block (no block of >= {} elements)", kMinLocalBlockElements));
    else if (m.locality)
      check(limits.local_ratio, m.locality->worst_block.local_ratio, "worst block",
            fmt::format("floors at {} (block rel RMSE {})", block_text(*m.locality),
                        format_number(m.locality->worst_block.rel_rmse)));
    else
      not_evaluated.push_back("worst block (layout unknown)");
  }
  if (limits.misrounded) {
    // An internal relative error e misrounds a fraction of about e / u of the elements (u: the 16-bit dtype's unit
    // roundoff). Where the conditioning floor (an internal, fp32-level error no kernel of the algorithm avoids)
    // implies more than the limit, the limit is 2 e / u at e = that floor.
    // The fraction is a binomial estimate over the compared elements: the limit allows three standard deviations
    // of it (a few hundred elements misround by chance what a million would not; the property sweep met 14 of
    // 1152 at the 1% limit, T = 1).
    // The floor is a normwise RMSE, and elements small against the tensor's RMS are misrounded more than e / u says;
    // where the kernel's algorithm computed in plain fp32 on the CPU (MetricsOptions) was stored in this dtype, the
    // limit is also at least twice the fraction it misrounds: a kernel of that algorithm in fp32 arithmetic misrounds
    // about as much (session 9, H200, correct kernels: chunk-bwd o 0.336% where the fp32 chunk form misrounds 0.479%,
    // property case 23-39, bf16; 1.10% where it misrounds 0.848%, 23-83, fp16; both failed the 0.25% / 1% limits).
    const double implied = m.floor && m.floor->conditioning_rel_rmse && m.elem_unit > 0.0
                               ? 2.0 * *m.floor->conditioning_rel_rmse / m.elem_unit
                               : 0.0;
    const double implemented = m.implementation_misrounded_fraction ? 2.0 * *m.implementation_misrounded_fraction : 0.0;
    const double base = std::max({*limits.misrounded, implied, implemented});
    const double allowed = base + 3.0 * std::sqrt(base / static_cast<double>(std::max<std::int64_t>(m.compared, 1)));
    const std::string label = base == *limits.misrounded ? "misrounded fraction (+ 3 sigma)"
                              : base == implied
                                  ? "misrounded fraction (limit from the conditioning floor, + 3 sigma)"
                                  : fmt::format("misrounded fraction (limit 2x the fp32 implementation's {}, + 3 sigma)",
                                                format_number(*m.implementation_misrounded_fraction));
    if (m.misrounded_fraction)
      check(allowed, *m.misrounded_fraction, label);
    else
      not_evaluated.push_back("misrounded fraction (16-bit storage against exact values only)");
  }

  if (!exceeded.empty()) {
    std::string context = fmt::format("rel RMSE {}", format_number(m.rel_rmse));
    if (m.floor)
      context += fmt::format(", floor {} in {}{}", format_number(m.floor->used_rel_rmse), dtype_name(m.floor->dtype),
                             m.floor->nominal       ? " (nominal)"
                             : m.floor->conditioned ? fmt::format(" (conditioning; rounding {})",
                                                                  format_number(m.floor->rounding_rel_rmse))
                                                    : std::string());
    context += fmt::format("; max abs err {} at {} (actual {}, {} {})", format_number(m.max_abs.error),
                           index_text(m.max_abs.index), format_number(m.max_abs.actual), expected_name,
                           format_number(m.max_abs.expected));
    return {Verdict::Fail, fmt::format("{} ({}; {})", fmt::join(exceeded, "; "), context, tolerance.rule)};
  }
  if (held.empty()) {
    std::string why = not_evaluated.empty() ? std::string("no limit set") : fmt::format("{}", fmt::join(not_evaluated, "; "));
    return {Verdict::Pass, fmt::format("not gated: {} ({})", why, tolerance.rule)};
  }
  std::string reason = fmt::format("{}", fmt::join(held, "; "));
  if (!not_evaluated.empty()) reason += fmt::format("; not evaluated: {}", fmt::join(not_evaluated, "; "));
  return {Verdict::Pass, reason};
}

std::span<const std::string_view> TolerancePolicy::preset_names() { return kPresetNames; }

TolerancePolicy TolerancePolicy::preset(std::string_view name) {
  TolerancePolicy policy;
  policy.preset_name_ = std::string(name);
  Layer layer{fmt::format("preset {}", name), fmt::format("preset {}", name), {}};
  auto rule = [&](std::optional<DType> dtype, std::string_view tensor, ToleranceLimits limits) {
    policy.add_rule(layer, {dtype, std::string(tensor), limits});
  };
  auto exact_integers = [&] {
    // Integer tensors (cu_seqlens echoed back, say) must be equal.
    for (DType dtype : {DType::I32, DType::I64}) rule(dtype, "*", {.max_abs = 0.0});
  };

  // Every preset but report-only gates three ways: in aggregate (floor ratio or rel RMSE), elementwise
  // (max_elem, in units of u of the judged dtype) and locally (local_ratio, the worst block of tokens of one
  // head, in floors). Measured margins are in the comments; kLocal* / kElem* below are the numbers.
  if (name == "strict") {
    // Our kernels (gpu/), judged at their storage dtype (FloorBasis::Storage): an fp32 ht or stage tensor
    // of a 16-bit run is held to the fp32 floor. Calibrated on the H200 (session 6, `dplr check` at seeds 7
    // and 11: 152 cases each, every GPU kernel and stage; reports/baselines/h200), limits about 2x the worst
    // measured figure (worst in brackets, over both seeds).
    // 16-bit storage: o at 1.00x the correctly rounded floor on every case, so 1.3x; elementwise 2 u (worst
    // 0.83 u: a correctly rounded element is <= 1 u); the worst block 2.0 floors (worst 1.35, fp16); misrounded
    // elements bf16 <= 0.25% (worst 0.028%), fp16 <= 1% (worst 0.20%). An internal relative error of 1e-6
    // misrounds ~0.01% of bf16 and ~0.1% of fp16 elements, a TF32-grade one (3e-4) 4.4% of bf16 and 35% of fp16
    // ones (simulated: 10^6 normal values, Gaussian relative error, then rounded), which the floor ratio cannot
    // see (1.016x). Gradients: no backward kernel measured yet; 2.0x, elementwise 4 u, worst block 3.0, provisional.
    for (DType dtype : kSixteenBit) {
      const double misrounded = dtype == DType::BF16 ? 0.0025 : 0.01;
      rule(dtype, "*", {.floor_ratio = 1.3, .max_elem = 2.0, .local_ratio = 2.0, .misrounded = misrounded});
      for (auto tensor : kGradients) rule(dtype, tensor, {.floor_ratio = 2.0, .max_elem = 4.0, .local_ratio = 3.0});
    }
    // fp32 storage (o of fp32 runs and of the fp32-output mode, ht, every stage tensor), in fp32 floors (~2.5e-8
    // measured): 32 floors, ~8e-7, inside issue 5's 1e-6 (worst 16.4: w, v_new ~4e-7); tighter where the tensor
    // is more accurate, so a 10x regression of it fails too: ht 16 (7.6), h 8 (2.5), the cumsums gi, ge 4 (1.00).
    // Elementwise 128 u (61 u, A_qk), gi/ge 4 u (0.69 u). The worst block 64 floors (31.7, u), ht 32 (10.9),
    // h 16 (10.5), gi/ge 4 (1.18). fp32 gradients: issue 12's target, rel RMSE 1e-6, provisional per element/block.
    rule(DType::F32, "*", {.floor_ratio = 32.0, .max_elem = 128.0, .local_ratio = 64.0});
    rule(DType::F32, "ht", {.floor_ratio = 16.0, .max_elem = 128.0, .local_ratio = 32.0});
    rule(DType::F32, "h", {.floor_ratio = 8.0, .max_elem = 128.0, .local_ratio = 16.0});
    for (auto tensor : {"gi", "ge"}) rule(DType::F32, tensor, {.floor_ratio = 4.0, .max_elem = 4.0, .local_ratio = 4.0});
    // fp32 gradients: issue 12's target rel RMSE 1e-6, written as 40 fp32 rounding floors (~2.5e-8 measured) so that
    // where the conditioning floor is larger (a long accumulation without decay: recurrent-bwd dgk at 7.9e-6 in the
    // property sweep, T 1100, near-zero decay) the bar is 40 of those floors and the report says why.
    for (auto tensor : kGradients) rule(DType::F32, tensor, {.floor_ratio = 40.0, .max_elem = 512.0, .local_ratio = 128.0});
    // The backward's own stage tensors (fp32; `dplr check`'s chunk-bwd cases, `dplr stages`): issue 12's bar is 1e-5
    // relative RMSE against the exact oracles; measured on the H200 (session 6, tests/gpu/test_gpu_backward, 33 cases
    // x C 16/32/64, the oracles at double): worst dA_ab 8.3e-7 (about 33 fp32 floors, over the forward stages' 32),
    // db 4.3e-7. So 80 fp32 floors (~2e-6, 2.4x the worst; in floors so that the conditioning floor applies).
    // Elementwise and worst block from `dplr check`'s 30 chunk-bwd cases run in the host emulation of the kernels
    // (scripts/gpu-emulate; session 7, before the device runs): worst element
    // 90 u (dA_ab), worst block 114 floors (dw, dA_ak: the 4-token last chunk of strong-decay fp32 C16, 2.8e-6
    // relative there), so 512 u and 256 floors (2.2x).
    for (auto tensor : kBackwardStages)
      rule(DType::F32, tensor, {.floor_ratio = 80.0, .max_elem = 512.0, .local_ratio = 256.0});
    // fp64: the double path agrees with >= 128 bits to ~1e-12 on benign cases (issue 2); 2^13 u = 9e-13.
    rule(DType::F64, "*", {.rel_rmse = 1e-12, .max_elem = 8192.0});
    exact_integers();
    policy.floor_basis_ = FloorBasis::Storage;
  } else if (name == "default") {
    // Foreign kernels (fla and others), judged at the working dtype: loose enough that fla's recordings on
    // the standard distribution pass with about 1.5x margin, tight enough that a real defect (a wrong head
    // stride, a bf16 state, fla's dgk under strong decay at rel RMSE 1.6) fails. fla's floor ratios on its
    // recordings (seed 11, T=256): bf16 o 1.74, ht 0.58, dq 1.08, dk 1.28, dv 1.93, da 2.33, db 2.55,
    // dgk 2.73, dh0 0.97; fp16 o 2.03, ht 1.21, dq 1.38, dk 1.55, dv 2.14, da 3.41, db 3.12, dgk 3.79,
    // dh0 1.93; on the session-6 H200 cases (seeds 1-3, fla / mixed / near-zero decay) o up to 2.50 and ht 2.17
    // (near-zero fp16), gradients up to 4.84 (db, near-zero fp16). Hence forward 3.5x (1.4x margin), gradients
    // 7.0x (1.45x), other names (stage tensors) 4.0x. Elementwise and worst block: see kDefault* below.
    for (DType dtype : kSixteenBit) {
      rule(dtype, "*", {.floor_ratio = 4.0, .max_elem = kDefaultElemOther16, .local_ratio = kDefaultLocalOther16});
      for (auto tensor : kForward)
        rule(dtype, tensor, {.floor_ratio = 3.5, .max_elem = kDefaultElem16, .local_ratio = kDefaultLocal16});
      for (auto tensor : kGradients)
        rule(dtype, tensor, {.floor_ratio = 7.0, .max_elem = kDefaultElemGrad16, .local_ratio = kDefaultLocalGrad16});
      rule(dtype, "dgk", {.floor_ratio = 7.0, .max_elem = kDefaultElemDgk16, .local_ratio = kDefaultLocalDgk16});
    }
    // fp32 inputs: rel RMSE 1e-5, 10x looser than our target and ~400x the fp32 floor; a TF32 kernel (fla
    // fp32 chunk: 7.7e-4) fails it on purpose, as TF32 is not fp32 accuracy (judge one with
    // `f32:*:rel_rmse=3e-3`). Elementwise and worst block: kDefault*32.
    rule(DType::F32, "*", {.rel_rmse = 1e-5, .max_elem = kDefaultElem32, .local_ratio = kDefaultLocal32});
    rule(DType::F64, "*", {.rel_rmse = 1e-10, .max_elem = 1048576.0});
    exact_integers();
  } else if (name == "report-only") {
    policy.add_rule(layer, {std::nullopt, "*", {}});
  } else {
    throw InputError(fmt::format("unknown tolerance preset '{}': expected one of {}", name,
                                 fmt::join(kPresetNames, ", ")));
  }
  policy.layers_.push_back(std::move(layer));
  return policy;
}

void TolerancePolicy::add_rule(Layer& layer, Rule rule) {
  for (Rule& existing : layer.rules) {
    if (existing.dtype != rule.dtype || existing.tensor != rule.tensor) continue;
    if (!rule.limits.any()) {  // "off" clears the selector's limits
      existing.limits = {};
      return;
    }
    auto merge = [](std::optional<double>& into, const std::optional<double>& from) {
      if (from) into = from;
    };
    merge(existing.limits.floor_ratio, rule.limits.floor_ratio);
    merge(existing.limits.rel_rmse, rule.limits.rel_rmse);
    merge(existing.limits.max_ulp, rule.limits.max_ulp);
    merge(existing.limits.max_rel, rule.limits.max_rel);
    merge(existing.limits.max_abs, rule.limits.max_abs);
    merge(existing.limits.max_elem, rule.limits.max_elem);
    merge(existing.limits.local_ratio, rule.limits.local_ratio);
    merge(existing.limits.misrounded, rule.limits.misrounded);
    return;
  }
  layer.rules.push_back(std::move(rule));
}

void TolerancePolicy::add_overrides(std::string_view text, std::string_view origin) {
  Layer layer{std::string(origin), fmt::format("{}: {}", origin, trim(text)), {}, /*overrides=*/true};
  std::size_t start = 0;
  while (start <= text.size()) {
    const std::size_t comma = std::min(text.find(',', start), text.size());
    const std::string_view entry = trim(text.substr(start, comma - start));
    start = comma + 1;
    if (entry.empty()) continue;
    const auto equals = entry.find('=');
    if (equals == std::string_view::npos)
      throw InputError(fmt::format("{}: tolerance '{}': expected SELECTOR[:UNIT]=VALUE, e.g. o=1.5, "
                                   "dgk:rel_rmse=1e-2, bf16:*=2.0",
                                   origin, entry));
    const std::string_view key = trim(entry.substr(0, equals));
    const std::string_view value = trim(entry.substr(equals + 1));

    std::vector<std::string_view> parts;
    for (std::size_t p = 0; p <= key.size();) {
      const std::size_t colon = std::min(key.find(':', p), key.size());
      parts.push_back(trim(key.substr(p, colon - p)));
      p = colon + 1;
    }
    Rule rule{std::nullopt, "*", {}};
    std::string_view unit = "floor_ratio";
    auto bad = [&](std::string_view why) {
      return InputError(fmt::format("{}: tolerance '{}': {}", origin, entry, why));
    };
    auto take_tensor_or_dtype = [&](std::string_view part) {
      if (auto dtype = parse_dtype_selector(part)) rule.dtype = dtype;  // `bf16=2` means bf16:*
      else rule.tensor = std::string(part);
    };
    if (parts.size() == 1) {
      take_tensor_or_dtype(parts[0]);
    } else if (parts.size() == 2 && is_unit(parts[1])) {
      take_tensor_or_dtype(parts[0]);
      unit = parts[1];
    } else if (parts.size() == 2) {
      rule.dtype = parse_dtype_selector(parts[0]);
      if (!rule.dtype) throw bad(fmt::format("'{}' is neither a dtype nor a unit: expected DTYPE:TENSOR or "
                                             "TENSOR:UNIT (units: floor_ratio, rel_rmse, max_ulp, max_rel, max_abs, max_elem, local_ratio, misrounded)",
                                             key));
      rule.tensor = std::string(parts[1]);
    } else if (parts.size() == 3) {
      rule.dtype = parse_dtype_selector(parts[0]);
      if (!rule.dtype) throw bad(fmt::format("'{}' is not a dtype (bf16, f16, f32, f64, i32, i64)", parts[0]));
      rule.tensor = std::string(parts[1]);
      unit = parts[2];
      if (!is_unit(unit)) throw bad(fmt::format("unknown unit '{}': expected floor_ratio, rel_rmse, max_ulp, "
                                                "max_rel, max_abs, max_elem, local_ratio or misrounded", unit));
    } else {
      throw bad("too many ':' in the selector: expected [DTYPE:]TENSOR[:UNIT]");
    }
    if (rule.tensor.empty()) throw bad("empty tensor name");
    if (lowercase(value) != "off") set_limit(rule.limits, unit, parse_limit_value(value, entry, origin));
    add_rule(layer, std::move(rule));
  }
  layers_.push_back(std::move(layer));
}

void TolerancePolicy::add_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("policy file {}: cannot be opened", path.string()));
  nlohmann::json policy;
  try {
    in >> policy;
  } catch (const nlohmann::json::exception& e) {
    throw InputError(fmt::format("policy file {}: not valid JSON: {}", path.string(), e.what()));
  }
  add_json(policy, fmt::format("file {}", path.string()));
}

void TolerancePolicy::add_json(const nlohmann::json& policy, std::string_view origin) {
  auto bad = [&](std::string_view why) { return InputError(fmt::format("policy {}: {}", origin, why)); };
  if (!policy.is_object()) throw bad("expected a JSON object with \"dplr_policy\": 1 and \"rules\"");
  for (const auto& [key, value] : policy.items())
    if (key != "dplr_policy" && key != "rules" && key != "description" && key != "floor_basis")
      throw bad(fmt::format("unknown key \"{}\": expected dplr_policy, rules, description, floor_basis", key));
  if (!policy.contains("dplr_policy") || policy["dplr_policy"] != 1)
    throw bad("expected \"dplr_policy\": 1 (the policy format version)");
  if (!policy.contains("rules") || !policy["rules"].is_array()) throw bad("expected \"rules\": [ ... ]");
  if (policy.contains("floor_basis")) {
    const auto& basis = policy["floor_basis"];
    if (basis == "storage") floor_basis_ = FloorBasis::Storage;
    else if (basis == "working") floor_basis_ = FloorBasis::Working;
    else throw bad(fmt::format("\"floor_basis\" is {}: expected \"storage\" or \"working\"", basis.dump()));
  }

  Layer layer{std::string(origin), std::string(origin), {}};
  std::size_t index = 0;
  for (const auto& item : policy["rules"]) {
    const std::string where = fmt::format("rule {}", index++);
    if (!item.is_object()) throw bad(fmt::format("{}: expected an object", where));
    Rule rule{std::nullopt, "*", {}};
    bool off = false;
    for (const auto& [key, value] : item.items()) {
      if (key == "tensor") {
        if (!value.is_string() || value.get<std::string>().empty())
          throw bad(fmt::format("{}: \"tensor\" must be a non-empty string", where));
        rule.tensor = value.get<std::string>();
      } else if (key == "dtype") {
        if (!value.is_string()) throw bad(fmt::format("{}: \"dtype\" must be a string", where));
        if (value.get<std::string>() != "*") {
          rule.dtype = parse_dtype_selector(value.get<std::string>());
          if (!rule.dtype)
            throw bad(fmt::format("{}: unknown dtype \"{}\" (BF16, F16, F32, F64, I32, I64 or *)", where,
                                  value.get<std::string>()));
        }
      } else if (key == "off") {
        if (!value.is_boolean()) throw bad(fmt::format("{}: \"off\" must be true or false", where));
        off = value.get<bool>();
      } else if (is_unit(key) && key != "floor" && key != "ulp" && key != "elem" && key != "local") {
        if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < 0.0)
          throw bad(fmt::format("{}: \"{}\" must be a number >= 0", where, key));
        set_limit(rule.limits, key, value.get<double>());
      } else {
        throw bad(fmt::format("{}: unknown key \"{}\": expected tensor, dtype, off, floor_ratio, rel_rmse, "
                              "max_ulp, max_rel, max_abs, max_elem, local_ratio, misrounded",
                              where, key));
      }
    }
    if (off && rule.limits.any()) throw bad(fmt::format("{}: \"off\": true together with limits", where));
    if (!off && !rule.limits.any()) throw bad(fmt::format("{}: sets no limit (give one, or \"off\": true)", where));
    add_rule(layer, std::move(rule));
  }
  layers_.push_back(std::move(layer));
}

Tolerance TolerancePolicy::resolve(std::string_view tensor, DType judged_as) const {
  for (auto layer = layers_.rbegin(); layer != layers_.rend(); ++layer) {
    const Rule* best = nullptr;
    for (const Rule& rule : layer->rules) {
      const bool dtype_matches = !rule.dtype || *rule.dtype == judged_as;
      const bool tensor_matches = rule.tensor == "*" || rule.tensor == tensor;
      if (!dtype_matches || !tensor_matches) continue;
      // Later rules of equal specificity win (>=), though add_rule already merged identical selectors.
      if (!best || specificity(rule.dtype, rule.tensor) >= specificity(best->dtype, best->tensor)) best = &rule;
    }
    if (best) return {best->limits, fmt::format("{}: {}", layer->origin, selector_string(best->dtype, best->tensor))};
  }
  return {{}, "no rule matched"};
}

std::vector<std::string> TolerancePolicy::override_tensor_names() const {
  std::vector<std::string> out;
  for (const auto& layer : layers_)
    if (layer.overrides)
      for (const auto& rule : layer.rules)
        if (rule.tensor != "*") out.push_back(rule.tensor);
  return out;
}

std::vector<std::string> TolerancePolicy::sources() const {
  std::vector<std::string> out;
  for (const auto& layer : layers_) out.push_back(layer.description);
  return out;
}

}  // namespace dplr
