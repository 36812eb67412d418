#include "reports/baseline.hpp"

#include <cmath>
#include <fstream>
#include <limits>
#include <map>
#include <set>

#include <fmt/format.h>

#include "core/error.hpp"

namespace dplr {
namespace {

using nlohmann::json;

// Reals as the writer stores them: numbers, or "Infinity" / "-Infinity" / "NaN" (SCHEMA.md).
std::optional<double> real_of(const json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) {
    const auto text = value.get<std::string>();
    if (text == "Infinity") return std::numeric_limits<double>::infinity();
    if (text == "-Infinity") return -std::numeric_limits<double>::infinity();
    if (text == "NaN") return std::numeric_limits<double>::quiet_NaN();
  }
  return std::nullopt;
}

struct Figures {
  std::string judged_as;
  std::map<std::string, double> values;  // figure name -> value; only the figures the tensor has
  double floor = 0.0;                    // used_rel_rmse, 0 when no floor
};

// The gated figures of one tensor result as the JSON report holds them.
Figures figures_of(const json& tensor) {
  Figures f;
  f.judged_as = tensor.at("judged_as").get<std::string>();
  const json& m = tensor.at("metrics");
  auto take = [&](const char* figure, const json& value) {
    if (auto x = real_of(value)) f.values[figure] = *x;
  };
  take("rel_rmse", m.at("rel_rmse"));
  if (!m.at("floor").is_null()) {
    take("floor_ratio", m.at("floor").at("ratio"));
    f.floor = real_of(m.at("floor").at("used_rel_rmse")).value_or(0.0);
  }
  if (m.contains("max_elem_error") && !m.at("max_elem_error").is_null())
    take("max_elem", m.at("max_elem_error").at("value"));
  if (m.contains("locality") && !m.at("locality").is_null())
    take("local_ratio", m.at("locality").at("worst_block").at("local_ratio"));
  if (m.contains("misrounded_fraction") && !m.at("misrounded_fraction").is_null())
    take("misrounded", m.at("misrounded_fraction"));
  return f;
}

double slack_of(const std::string& figure, const Figures& baseline) {
  if (figure == "floor_ratio") return 0.05;
  if (figure == "local_ratio") return 0.1;
  if (figure == "max_elem") return 0.5;
  if (figure == "misrounded") return 0.002;
  return 0.05 * baseline.floor;  // rel_rmse
}

// (stage, tensor) -> the tensor's JSON, over a case's own tensors and its stage results.
std::map<std::pair<std::string, std::string>, json> tensors_of(const json& c) {
  std::map<std::pair<std::string, std::string>, json> out;
  for (const auto& t : c.at("tensors")) out[{"", t.at("name").get<std::string>()}] = t;
  if (!c.at("stages").is_null())
    for (const auto& t : c.at("stages").at("results"))
      out[{t.at("stage").get<std::string>(), t.at("name").get<std::string>()}] = t;
  return out;
}

}  // namespace

json read_report_file(const std::filesystem::path& path, std::string_view role) {
  std::ifstream in(path);
  if (!in) throw InputError(fmt::format("{} {}: cannot be opened", role, path.string()));
  json report;
  try {
    in >> report;
  } catch (const json::exception& e) {
    throw InputError(fmt::format("{} {}: not valid JSON: {}", role, path.string(), e.what()));
  }
  // A v1 report serves too: v2 renamed and added reference fields only (certified_* -> estimated_*,
  // proven_bits), which a baseline does not read.
  const std::string schema = report.is_object() ? report.value("schema", "") : "";
  if ((schema != kReportSchemaId && schema != "dplr-report.v1") || !report.contains("cases"))
    throw InputError(fmt::format("{} {}: not a {} report (expected \"schema\": \"{}\" and \"cases\")",
                                 role, path.string(), kReportSchemaId, kReportSchemaId));
  return report;
}

BaselineComparison compare_with_baseline(const Report& current, const json& baseline, const std::string& path) {
  BaselineComparison out;
  out.path = path;
  try {
    const auto command = baseline.at("command").get<std::string>();
    if (command != current.command)
      throw InputError(fmt::format("baseline {}: a report of `dplr {}`, this run is `dplr {}`", path, command,
                                   current.command));
    std::map<std::string, const json*> stored;
    for (const auto& c : baseline.at("cases")) stored[c.at("id").get<std::string>()] = &c;
    std::set<std::string> seen;
    const json now = to_json(current);
    for (const auto& c : now.at("cases")) {
      const auto id = c.at("id").get<std::string>();
      seen.insert(id);
      const auto it = stored.find(id);
      if (it == stored.end()) {
        out.new_cases.push_back(id);
        continue;
      }
      ++out.cases_compared;
      const auto before = tensors_of(*it->second);
      for (const auto& [key, tensor] : tensors_of(c)) {
        const auto old = before.find(key);
        if (old == before.end()) continue;
        const Figures was = figures_of(old->second), is = figures_of(tensor);
        if (was.judged_as != is.judged_as)
          throw InputError(fmt::format("baseline {}: case '{}' tensor '{}{}' was judged as {} there and as {} now "
                                       "(another policy's floor basis?): write a new baseline with --update-baseline",
                                       path, id, key.first.empty() ? "" : key.first + "/", key.second,
                                       was.judged_as, is.judged_as));
        for (const auto& [figure, value] : is.values) {
          const auto prior = was.values.find(figure);
          if (prior == was.values.end()) continue;
          ++out.figures_compared;
          const double allowed = prior->second * (1.0 + kBaselineRelativeMargin) + slack_of(figure, was);
          // NaN now where a number was: a regression too (`!(x <= allowed)`).
          if (!(value <= allowed) && !(std::isinf(prior->second) && std::isinf(value)))
            out.regressions.push_back({id, key.second, key.first, figure, prior->second, value, allowed});
        }
      }
    }
    for (const auto& [id, c] : stored)
      if (!seen.count(id)) out.missing_cases.push_back(id);
  } catch (const json::exception& e) {
    throw InputError(fmt::format("baseline {}: not a report this version reads: {}", path, e.what()));
  }
  return out;
}

std::string format_baseline(const BaselineComparison& b) {
  std::string out;
  if (b.regressions.empty()) {
    out = fmt::format("baseline {}: no regression ({} cases, {} figures compared)\n", b.path, b.cases_compared,
                      b.figures_compared);
  } else {
    out = fmt::format("baseline {}: {} regressions ({} cases, {} figures compared)\n", b.path, b.regressions.size(),
                      b.cases_compared, b.figures_compared);
    for (const auto& r : b.regressions)
      out += fmt::format("  REGRESSED {}{} {}: {:.4g} -> {:.4g} (allowed {:.4g}) in case {}\n",
                         r.stage.empty() ? "" : r.stage + "/", r.tensor, r.figure, r.baseline, r.current, r.allowed,
                         r.case_id);
  }
  if (!b.missing_cases.empty()) out += fmt::format("  {} baseline cases not in this run\n", b.missing_cases.size());
  if (!b.new_cases.empty()) out += fmt::format("  {} cases of this run not in the baseline\n", b.new_cases.size());
  return out;
}

}  // namespace dplr
