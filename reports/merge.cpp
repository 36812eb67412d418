#include "reports/merge.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "reports/baseline.hpp"
#include "reports/report.hpp"
#include "reports/sha256.hpp"

namespace dplr {
namespace {

using nlohmann::json;

std::string name_of(const ShardReport& s) { return s.path.string(); }

std::string dotted(std::string path) {
  std::replace(path.begin(), path.end(), '/', '.');
  return path;
}

// The value at a '/'-separated path, or an InputError naming the file and the field.
const json& field(const ShardReport& s, const std::string& path) {
  try {
    return s.report.at(json::json_pointer("/" + path));
  } catch (const json::exception&) {
    throw InputError(fmt::format("merge: {}: field '{}' is missing (expected a {} report of `dplr check`)", name_of(s),
                                 dotted(path), kReportSchemaId));
  }
}

// Every shard must agree with the first on `path`.
void require_same(const std::vector<ShardReport>& shards, const std::string& path, const std::string& why) {
  const json& first = field(shards.front(), path);
  for (std::size_t i = 1; i < shards.size(); ++i) {
    const json& value = field(shards[i], path);
    if (value != first)
      throw InputError(fmt::format("merge: {}: field '{}' is {}, but {} has {}; {}", name_of(shards[i]), dotted(path),
                                   value.dump(), name_of(shards.front()), first.dump(), why));
  }
}

Verdict verdict_of(const ShardReport& s, const json& value, const std::string& where) {
  const std::string name = value.is_string() ? value.get<std::string>() : value.dump();
  for (Verdict v : {Verdict::Pass, Verdict::Fail, Verdict::Error})
    if (verdict_name(v) == name) return v;
  throw InputError(fmt::format("merge: {}: field '{}' is {}; expected \"pass\", \"fail\" or \"error\"", name_of(s), where,
                               value.dump()));
}

std::int64_t integer(const ShardReport& s, const std::string& path) {
  const json& value = field(s, path);
  if (!value.is_number_integer())
    throw InputError(fmt::format("merge: {}: field '{}' is {}; expected an integer", name_of(s), dotted(path),
                                 value.dump()));
  return value.get<std::int64_t>();
}

double seconds(const ShardReport& s) {
  const json& value = field(s, "duration_seconds");
  return value.is_number() ? value.get<double>() : 0.0;  // "Infinity"/"NaN" cannot be summed; count as unknown
}

}  // namespace

ShardReport read_shard_report(const std::filesystem::path& path) {
  ShardReport shard{path, read_report_file(path, "merge"), sha256_file(path)};
  return shard;
}

json merge_reports(const std::vector<ShardReport>& shards, const std::vector<std::string>& command_line) {
  if (shards.empty()) throw InputError("merge: no reports given");
  for (const auto& s : shards)
    if (field(s, "sweep").is_null())
      throw InputError(fmt::format("merge: {}: field 'sweep' is null: not a sweep's report (merge takes the reports "
                                   "of `dplr check --shard I/N`)",
                                   name_of(s)));
  const std::string same_build = "shards must be run by the same build";
  require_same(shards, "tool/name", same_build);
  require_same(shards, "tool/version", same_build);
  require_same(shards, "tool/git_revision", same_build);
  require_same(shards, "command", "shards of one sweep run one command");
  const std::string same_policy = "shards must judge by one tolerance policy";
  require_same(shards, "policy/preset", same_policy);
  require_same(shards, "policy/floor_basis", same_policy);
  require_same(shards, "policy/sources", same_policy);
  const std::string same_sweep = "shards must run one sweep (the same options and seed)";
  require_same(shards, "sweep/name", same_sweep);
  for (const auto& [key, value] : field(shards.front(), "sweep/parameters").items()) {
    (void)value;
    require_same(shards, "sweep/parameters/" + key, same_sweep);
  }
  require_same(shards, "sweep/parameters", same_sweep);  // also catches a parameter only later shards have
  require_same(shards, "sweep/cases_total", same_sweep);
  require_same(shards, "sweep/shard/count", "shards must split the sweep the same number of ways");

  // Shards: each of 0..N-1 exactly once.
  const std::int64_t count = integer(shards.front(), "sweep/shard/count");
  const std::int64_t total = integer(shards.front(), "sweep/cases_total");
  std::map<std::int64_t, const ShardReport*> by_index;
  for (const auto& s : shards) {
    const std::int64_t index = integer(s, "sweep/shard/index");
    if (index < 0 || index >= count)
      throw InputError(fmt::format("merge: {}: field 'sweep.shard.index' is {}; expected 0..{}", name_of(s), index,
                                   count - 1));
    if (const auto [it, inserted] = by_index.emplace(index, &s); !inserted)
      throw InputError(fmt::format("merge: {} and {} are both shard {}/{} (field 'sweep.shard.index')",
                                   name_of(*it->second), name_of(s), index, count));
  }
  std::vector<std::int64_t> missing;
  for (std::int64_t i = 0; i < count; ++i)
    if (!by_index.count(i)) missing.push_back(i);
  if (!missing.empty())
    throw InputError(fmt::format("merge: shards [{}] of {} are missing (field 'sweep.shard.index'); the reports given "
                                 "hold only part of the sweep",
                                 fmt::join(missing, ", "), count));

  // Baselines: all shards compared with one stored report, or none.
  const bool with_baseline = !field(shards.front(), "baseline").is_null();
  for (const auto& s : shards)
    if (field(s, "baseline").is_null() == with_baseline)
      throw InputError(fmt::format("merge: {}: field 'baseline' is {} but {}'s is {}; run every shard with the same "
                                   "--baseline or none",
                                   name_of(s), with_baseline ? "null" : "set", name_of(shards.front()),
                                   with_baseline ? "set" : "null"));
  if (with_baseline) require_same(shards, "baseline/path", "shards must compare with one baseline");

  // Cases in sweep order, each position held by one shard only.
  struct Placed {
    std::int64_t position;
    std::size_t order;
    const json* c;
  };
  std::vector<Placed> cases;
  std::map<std::int64_t, const ShardReport*> holder;
  json merged_from = json::array();
  json input_errors = json::array(), internal_errors = json::array();
  std::set<std::string> gpus;
  double duration = 0.0;
  std::string start_time = field(shards.front(), "start_time").get<std::string>();
  Verdict verdict = Verdict::Pass;
  for (const auto& [index, shard] : by_index) {
    const ShardReport& s = *shard;
    const json& shard_cases = field(s, "cases");
    for (const auto& c : shard_cases) {
      const json& at = c.contains("sweep_index") ? c.at("sweep_index") : json(nullptr);
      const std::string id = c.value("id", "<no id>");
      if (!at.is_number_integer())
        throw InputError(fmt::format("merge: {}: case '{}': field 'sweep_index' is {}; expected the case's position in "
                                     "the sweep",
                                     name_of(s), id, at.dump()));
      const std::int64_t position = at.get<std::int64_t>();
      if (position < 0 || position >= total || position % count != index)
        throw InputError(fmt::format("merge: {}: case '{}': field 'sweep_index' is {}, which is not shard {}/{}'s "
                                     "(positions i < {} with i mod {} == {})",
                                     name_of(s), id, position, index, count, total, count, index));
      if (const auto [it, inserted] = holder.emplace(position, &s); !inserted && it->second != &s)
        throw InputError(fmt::format("merge: {} and {} both hold sweep position {} (case '{}', field 'sweep_index')",
                                     name_of(*it->second), name_of(s), position, id));
      cases.push_back({position, cases.size(), &c});
      verdict = worst_verdict(verdict, verdict_of(s, c.value("verdict", json("")), "cases[].verdict"));
    }
    for (const auto* key : {"input_error", "internal_error"})
      if (const json& e = field(s, key); !e.is_null())
        (std::string(key) == "input_error" ? input_errors : internal_errors)
            .push_back(fmt::format("shard {}/{} ({}): {}", index, count, name_of(s), e.get<std::string>()));
    if (const json& gpu = field(s, "host/gpu"); !gpu.is_null()) gpus.insert(gpu.get<std::string>());
    duration += seconds(s);
    start_time = std::min(start_time, field(s, "start_time").get<std::string>());
    merged_from.push_back({{"path", std::filesystem::absolute(s.path).string()},
                           {"sha256", s.sha256},
                           {"shard", {{"index", index}, {"count", count}}},
                           {"host", field(s, "host")},
                           {"start_time", field(s, "start_time")},
                           {"duration_seconds", field(s, "duration_seconds")},
                           {"cases", shard_cases.size()},
                           {"verdict", field(s, "verdict")},
                           {"exit_code", field(s, "exit_code")}});
  }
  std::stable_sort(cases.begin(), cases.end(), [](const Placed& a, const Placed& b) {
    return a.position != b.position ? a.position < b.position : a.order < b.order;
  });

  json out = shards.front().report;
  out["command_line"] = command_line;
  out["start_time"] = start_time;
  out["duration_seconds"] = duration;
  out["cases"] = json::array();
  for (const auto& p : cases) out["cases"].push_back(*p.c);
  out["host"]["gpu"] = gpus.empty() ? json(nullptr) : json(fmt::format("{}", fmt::join(gpus, "; ")));
  const auto joined = [](const json& errors) {
    if (errors.empty()) return json(nullptr);
    std::vector<std::string> lines = errors.get<std::vector<std::string>>();
    return json(fmt::format("{}", fmt::join(lines, "; ")));
  };
  out["input_error"] = joined(input_errors);
  out["internal_error"] = joined(internal_errors);
  if (with_baseline) {
    json b = field(shards.front(), "baseline");
    std::int64_t cases_compared = 0, figures_compared = 0;
    json regressions = json::array();
    std::set<std::string> new_cases, missing_everywhere;
    bool first = true;
    for (const auto& [index, shard] : by_index) {
      const json& sb = field(*shard, "baseline");
      cases_compared += sb.at("cases_compared").get<std::int64_t>();
      figures_compared += sb.at("figures_compared").get<std::int64_t>();
      for (const auto& r : sb.at("regressions")) regressions.push_back(r);
      for (const auto& n : sb.at("new_cases")) new_cases.insert(n.get<std::string>());
      // A stored case is missing from the whole sweep only when every shard misses it.
      std::set<std::string> missing_here;
      for (const auto& m : sb.at("missing_cases")) missing_here.insert(m.get<std::string>());
      if (first) {
        missing_everywhere = missing_here;
        first = false;
      } else {
        std::set<std::string> both;
        std::set_intersection(missing_everywhere.begin(), missing_everywhere.end(), missing_here.begin(),
                              missing_here.end(), std::inserter(both, both.end()));
        missing_everywhere = std::move(both);
      }
    }
    b["cases_compared"] = cases_compared;
    b["figures_compared"] = figures_compared;
    b["regressions"] = regressions;
    b["new_cases"] = std::vector<std::string>(new_cases.begin(), new_cases.end());
    b["missing_cases"] = std::vector<std::string>(missing_everywhere.begin(), missing_everywhere.end());
    if (!regressions.empty()) verdict = worst_verdict(verdict, Verdict::Fail);
    out["baseline"] = b;
  }
  out["sweep"]["shard"] = {{"index", 0}, {"count", 1}};
  out["merged_from"] = merged_from;
  int exit_code = verdict == Verdict::Pass ? 0 : 1;
  if (!out["input_error"].is_null()) verdict = Verdict::Error, exit_code = 2;
  if (!out["internal_error"].is_null()) verdict = Verdict::Error, exit_code = 3;
  out["verdict"] = verdict_name(verdict);
  out["exit_code"] = exit_code;
  return out;
}

void write_report_json(const std::filesystem::path& path, const json& report) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError(fmt::format("report {}: cannot be written", path.string()));
  out << report.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  if (!out) throw InputError(fmt::format("report {}: write failed", path.string()));
}

}  // namespace dplr
