// The short human table a run prints to the terminal, one case at a time. Columns: the tensor, its storage
// dtype, the floor it is judged against, rel RMSE, floor ratio, the worst block (local ratio, sequence,
// head, tokens), the worst element (in units of u of the judged dtype, and its index), the misrounded
// fraction (16-bit storage), the verdict.
#include <algorithm>
#include <cmath>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "reports/report.hpp"

namespace dplr {
namespace {

// Non-finite figures as inf / nan; fixed-point figures of 1e5 and more in 3 significant digits, so a
// ratio of 1e42 prints as 1e+42, not as 43 digits.
std::string number(double x, std::string_view spec) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x > 0 ? "inf" : "-inf";
  if (std::fabs(x) >= 1e5 && spec.find('f') != std::string_view::npos) return fmt::format("{:.3g}", x);
  return fmt::format(fmt::runtime(spec), x);
}

std::string verdict_upper(Verdict v) {
  std::string out(verdict_name(v));
  for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

// "F32" (the storage dtype's own floor), "BF16 (working)" (a lower working dtype's), "BF16 nominal" (diff
// against a file no more precise than the judged dtype).
std::string floor_label(const TensorResult& r) {
  const auto& m = r.metrics;
  std::string label(dtype_name(r.judged_as));
  if (r.judged_as != r.dtype) label += " (working)";
  if (m.floor && m.floor->nominal) label += " nominal";
  return label;
}

// "3.10 s0 h1 t32-47": the worst block's local ratio and where it is.
std::string worst_block_label(const TensorMetrics& m) {
  if (!m.locality) return "-";
  const auto& l = *m.locality;
  const auto& b = l.worst_block;
  std::string where = fmt::format("s{} h{}", b.sequence, b.head);
  if (l.layout == TensorLayout::Kind::Tokens) where += fmt::format(" t{}-{}", b.token_begin, b.token_end - 1);
  else if (l.layout == TensorLayout::Kind::ChunkStates) where += fmt::format(" c{}", b.token_begin);
  return fmt::format("{} {}", number(b.local_ratio, "{:.2f}"), where);
}

std::vector<std::string> row_of(const std::string& label, const TensorResult& r) {
  const auto& m = r.metrics;
  const std::string floor_ratio = m.floor ? number(m.floor->ratio, "{:.2f}") : "-";
  std::string worst_elem = m.compared > 0 && !m.max_elem.index.empty()
                               ? fmt::format("{} @ [{}]", number(m.max_elem.error, "{:.3g}"), fmt::join(m.max_elem.index, ", "))
                               : "-";
  std::string nonfinite;
  if (m.nonfinite.actual_nan > 0) nonfinite += fmt::format(" {} NaN", m.nonfinite.actual_nan);
  if (m.nonfinite.actual_inf > 0) nonfinite += fmt::format(" {} Inf", m.nonfinite.actual_inf);
  return {label,
          std::string(dtype_name(r.dtype)),
          floor_label(r),
          number(m.rel_rmse, "{:.2e}"),
          floor_ratio,
          worst_block_label(m),
          worst_elem,
          m.misrounded_fraction ? number(100.0 * *m.misrounded_fraction, "{:.2f}%") : "-",
          verdict_upper(r.verdict) + nonfinite};
}

std::string render(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> widths(rows.front().size(), 0);
  for (const auto& row : rows)
    for (std::size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], row[c].size());
  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      // Names and dtypes left-aligned, numbers right-aligned, the verdict last and unpadded.
      if (c + 1 == row.size()) line += row[c];
      else if (c < 3) line += fmt::format("{:<{}}  ", row[c], widths[c]);
      else line += fmt::format("{:>{}}  ", row[c], widths[c]);
    }
    out += line + '\n';
  }
  return out;
}

const std::vector<std::string> kHeader = {"tensor",      "dtype",       "floor",  "rel RMSE",  "floor ratio",
                                          "worst block", "worst elem (u) @ index", "misround", "verdict"};

}  // namespace

std::string format_table(const CaseResult& result) {
  std::string out = fmt::format("case {}: {} (against {}", result.id, verdict_upper(result.verdict()),
                                result.baseline == "exact" ? "the exact answer" : "file B");
  if (result.working_dtype) out += fmt::format(", working dtype {}", dtype_name(*result.working_dtype));
  if (result.reference) out += fmt::format(", reference {}", result.reference->precision);
  out += ")\n";

  std::vector<std::vector<std::string>> rows = {kHeader};
  for (const auto& t : result.comparison.tensors) rows.push_back(row_of(t.name, t));
  if (rows.size() > 1) out += render(rows);

  std::vector<std::pair<std::string, const TensorResult*>> not_passed;  // (label, result)
  for (const auto& t : result.comparison.tensors)
    if (t.verdict != Verdict::Pass) not_passed.emplace_back(t.name, &t);

  if (result.stages && !result.stages->results.empty()) {
    out += fmt::format("stages (first diverging: {}):\n", result.stages->first_diverging_stage.value_or("none"));
    std::vector<std::vector<std::string>> stage_rows = {kHeader};
    stage_rows.front().front() = "stage/tensor";
    for (const auto& s : result.stages->results) {
      const std::string label = fmt::format("{}/{}", s.stage, s.result.name);
      stage_rows.push_back(row_of(label, s.result));
      if (s.result.verdict != Verdict::Pass) not_passed.emplace_back(label, &s.result);
    }
    out += render(stage_rows);
  }
  for (const auto& [label, t] : not_passed) out += fmt::format("  {} {}: {}\n", label, verdict_name(t->verdict), t->reason);
  for (const auto& note : result.notes) out += fmt::format("  note: {}\n", note);
  if (result.error) out += fmt::format("  error: {}\n", *result.error);
  return out;
}

}  // namespace dplr
