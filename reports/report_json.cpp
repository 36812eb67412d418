// The JSON form of a report (schema: reports/schema/dplr-report.v2.schema.json; fields: reports/SCHEMA.md).
#include <cmath>
#include <ctime>
#include <fstream>

#include <fmt/format.h>

#include "core/error.hpp"
#include "reports/build_info.hpp"
#include "reports/report.hpp"

namespace dplr {
namespace {

using nlohmann::json;

// JSON has no infinities or NaN; a metric that is one (rel RMSE of an all-zero exact tensor, say) is
// written as the string "Infinity", "-Infinity" or "NaN" rather than null, so no information is lost.
json real(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  return x;
}

template <class T>
json optional_or_null(const std::optional<T>& value) {
  return value ? json(*value) : json(nullptr);
}

json to_json(const ErrorLocation& location) {
  return {{"value", real(location.error)},
          {"index", location.index},
          {"actual", real(location.actual)},
          {"expected", real(location.expected)}};
}

json to_json(const Tolerance& tolerance) {
  auto limit = [](const std::optional<double>& x) { return x ? real(*x) : json(nullptr); };
  const auto& l = tolerance.limits;
  return {{"rule", tolerance.rule},
          {"floor_ratio", limit(l.floor_ratio)},
          {"rel_rmse", limit(l.rel_rmse)},
          {"max_ulp", limit(l.max_ulp)},
          {"max_rel", limit(l.max_rel)},
          {"max_abs", limit(l.max_abs)},
          {"max_elem", limit(l.max_elem)},
          {"local_ratio", limit(l.local_ratio)},
          {"misrounded", limit(l.misrounded)}};
}

json to_json(const BlockMetrics& b) {
  return {{"sequence", b.sequence},     {"head", b.head},         {"token_begin", b.token_begin},
          {"token_end", b.token_end},   {"elements", b.elements}, {"rel_rmse", real(b.rel_rmse)},
          {"local_ratio", real(b.local_ratio)}};
}

json to_json(const LocalityMetrics& l) {
  json groups = json::array();
  for (const auto& g : l.groups)
    groups.push_back({{"sequence", g.sequence}, {"head", g.head}, {"rel_rmse", real(g.rel_rmse)},
                      {"worst_block", to_json(g.worst_block)}});
  json grid = nullptr;
  if (!l.grid.empty()) {
    grid = json::array();
    for (const auto& row : l.grid) {
      json r = json::array();
      for (double x : row) r.push_back(real(x));
      grid.push_back(std::move(r));
    }
  }
  return {{"layout", std::string(layout_kind_name(l.layout))},
          {"block_tokens", l.block_tokens},
          {"floor", real(l.floor)},
          {"worst_block", to_json(l.worst_block)},
          {"groups_total", l.groups_total},
          {"groups", groups},
          {"grid", grid}};
}

json to_json(const StageResult& stage) {
  json out = to_json(stage.result);
  out["stage"] = stage.stage;
  return out;
}

std::string dtype_string(DType dtype) { return std::string(dtype_name(dtype)); }

}  // namespace

json to_json(const TensorMetrics& m) {
  json nonfinite = {{"actual_nan", m.nonfinite.actual_nan},
                    {"actual_inf", m.nonfinite.actual_inf},
                    {"expected_nan", m.nonfinite.expected_nan},
                    {"expected_inf", m.nonfinite.expected_inf},
                    {"inf_mismatch", m.nonfinite.inf_mismatch},
                    {"first_actual_nan_index", optional_or_null(m.nonfinite.first_actual_nan_index)}};
  json floor = nullptr;
  if (m.floor)
    floor = {{"dtype", dtype_string(m.floor->dtype)},
             {"measured_rel_rmse", real(m.floor->measured_rel_rmse)},
             {"used_rel_rmse", real(m.floor->used_rel_rmse)},
             {"substituted", m.floor->substituted},
             {"nominal", m.floor->nominal},
             {"rounding_rel_rmse", real(m.floor->rounding_rel_rmse)},
             {"conditioning_rel_rmse", m.floor->conditioning_rel_rmse ? real(*m.floor->conditioning_rel_rmse) : json(nullptr)},
             {"conditioned", m.floor->conditioned},
             {"ratio", real(m.floor->ratio)}};
  return {{"elements", m.elements},
          {"compared", m.compared},
          {"nonfinite", nonfinite},
          {"max_abs_error", to_json(m.max_abs)},
          {"rel_rmse", real(m.rel_rmse)},
          {"expected_rms", real(m.expected_rms)},
          {"relative_floor", real(m.relative_floor)},
          {"max_rel_error", to_json(m.max_rel)},
          {"ulp", {{"dtype", dtype_string(m.dtype)}, {"max", to_json(m.max_ulp)}, {"p99", real(m.p99_ulp)}}},
          {"max_elem_error", m.elem_unit > 0.0 && !m.max_elem.index.empty() ? to_json(m.max_elem) : json(nullptr)},
          {"elem_unit", real(m.elem_unit)},
          {"misrounded_fraction", m.misrounded_fraction ? real(*m.misrounded_fraction) : json(nullptr)},
          {"floor", floor},
          {"locality", m.locality ? to_json(*m.locality) : json(nullptr)},
          {"histogram",
           {{"exact_equal", m.histogram.exact_equal},
            {"min_log2", kHistogramMinLog2},
            {"max_log2", kHistogramMaxLog2},
            {"counts", m.histogram.counts}}}};
}

json to_json(const TensorResult& r) {
  return {{"name", r.name},
          {"dtype", dtype_string(r.dtype)},
          {"judged_as", dtype_string(r.judged_as)},
          {"shape", r.metrics.shape},
          {"metrics", to_json(r.metrics)},
          {"tolerance", to_json(r.tolerance)},
          {"verdict", verdict_name(r.verdict)},
          {"reason", r.reason}};
}

json to_json(const CaseResult& c) {
  json shape = nullptr;
  if (c.shape)
    shape = {{"B", c.shape->B}, {"T", c.shape->T}, {"H", c.shape->H},
             {"K", c.shape->K}, {"V", c.shape->V}, {"N", c.shape->N}};
  json dtypes = json::object();
  for (const auto& [name, dtype] : c.dtypes) dtypes[name] = dtype_string(dtype);
  json options = nullptr;
  if (c.options)
    options = {{"scale", c.options->scale ? real(*c.options->scale) : json(nullptr)},
               {"reverse", c.options->reverse},
               {"cu_seqlens", c.options->cu_seqlens},
               {"h0", c.options->h0},
               {"dht", c.options->dht},
               {"backward", c.options->backward}};
  json generator = nullptr;
  if (c.source.generator) generator = {{"name", c.source.generator->name}, {"seed", c.source.generator->seed}};
  json files = json::array();
  for (const auto& f : c.source.files) files.push_back({{"role", f.role}, {"path", f.path}, {"sha256", f.sha256}});
  json reference = nullptr;
  if (c.reference) {
    json bits = json::object(), proven = json::object();
    for (const auto& [name, value] : c.reference->estimated_bits) bits[name] = real(value);
    for (const auto& [name, value] : c.reference->proven_bits) proven[name] = real(value);
    reference = {{"precision", c.reference->precision},
                 {"significand_bits", c.reference->significand_bits},
                 {"estimated_against", optional_or_null(c.reference->estimated_against)},
                 {"estimate_method", optional_or_null(c.reference->estimate_method)},
                 {"estimated_bits", bits},
                 {"proven_bits", proven},
                 {"seconds", real(c.reference->seconds)}};
  }
  json tensors = json::array();
  for (const auto& t : c.comparison.tensors) tensors.push_back(to_json(t));
  json stages = nullptr;
  if (c.stages) {
    json results = json::array();
    for (const auto& s : c.stages->results) results.push_back(to_json(s));
    stages = {{"results", results}, {"first_diverging_stage", optional_or_null(c.stages->first_diverging_stage)}};
  }
  return {{"id", c.id},
          {"shape", shape},
          {"dtypes", dtypes},
          {"working_dtype", c.working_dtype ? json(dtype_string(*c.working_dtype)) : json(nullptr)},
          {"options", options},
          {"source", {{"generator", generator}, {"files", files}}},
          {"baseline", c.baseline},
          {"reference", reference},
          {"tensors", tensors},
          {"not_compared", {{"only_in_actual", c.comparison.only_in_actual},
                            {"only_in_expected", c.comparison.only_in_expected}}},
          {"stages", stages},
          {"notes", c.notes},
          {"error", optional_or_null(c.error)},
          {"failures", c.failures},
          {"sweep_index", optional_or_null(c.sweep_index)},
          {"verdict", verdict_name(c.verdict())}};
}

json to_json(const BaselineComparison& b) {
  json regressions = json::array();
  for (const auto& r : b.regressions)
    regressions.push_back({{"case", r.case_id},
                           {"stage", r.stage.empty() ? json(nullptr) : json(r.stage)},
                           {"tensor", r.tensor},
                           {"figure", r.figure},
                           {"baseline", r.baseline},
                           {"current", real(r.current)},
                           {"allowed", r.allowed}});
  return {{"path", b.path},
          {"cases_compared", b.cases_compared},
          {"figures_compared", b.figures_compared},
          {"regressions", regressions},
          {"missing_cases", b.missing_cases},
          {"new_cases", b.new_cases}};
}

json to_json(const HostInfo& h) {
  return {{"hostname", h.hostname}, {"cpu_model", h.cpu_model}, {"cpu_cores", h.cpu_cores}, {"gpu", optional_or_null(h.gpu)}};
}

json to_json(const SweepInfo& s) {
  return {{"name", s.name},
          {"parameters", s.parameters.is_object() ? s.parameters : json::object()},
          {"cases_total", s.cases_total},
          {"shard", {{"index", s.shard_index}, {"count", s.shard_count}}}};
}

json to_json(const MergedShard& m) {
  return {{"path", m.path},
          {"sha256", m.sha256},
          {"shard", {{"index", m.shard_index}, {"count", m.shard_count}}},
          {"host", to_json(m.host)},
          {"start_time", m.start_time},
          {"duration_seconds", real(m.duration_seconds)},
          {"cases", m.cases},
          {"verdict", verdict_name(m.verdict)},
          {"exit_code", m.exit_code}};
}

json to_json(const Report& r) {
  json merged = json::array();
  for (const auto& m : r.merged_from) merged.push_back(to_json(m));
  json cases = json::array();
  for (const auto& c : r.cases) cases.push_back(to_json(c));
  return {{"schema", kReportSchemaId},
          {"schema_version", kReportSchemaVersion},
          {"tool", {{"name", r.tool.name}, {"version", r.tool.version}, {"git_revision", r.tool.git_revision}}},
          {"command", r.command},
          {"command_line", r.command_line},
          {"host", to_json(r.host)},
          {"policy", {{"preset", r.policy_preset},
                      {"floor_basis", std::string(floor_basis_name(r.floor_basis))},
                      {"sources", r.policy_sources}}},
          {"start_time", iso8601_utc(r.start_time)},
          {"duration_seconds", real(r.duration_seconds)},
          {"cases", cases},
          {"input_error", optional_or_null(r.input_error)},
          {"internal_error", optional_or_null(r.internal_error)},
          {"baseline", r.baseline ? to_json(*r.baseline) : json(nullptr)},
          {"sweep", r.sweep ? to_json(*r.sweep) : json(nullptr)},
          {"merged_from", merged},
          {"verdict", verdict_name(r.verdict())},
          {"exit_code", r.exit_code()}};
}

void write_report(const std::filesystem::path& path, const Report& report, bool compact) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError(fmt::format("report {}: cannot be written", path.string()));
  // Paths and host names may hold bytes that are not UTF-8; replace them rather than fail the run.
  out << to_json(report).dump(compact ? -1 : 2, ' ', false, json::error_handler_t::replace) << '\n';
  if (!out) throw InputError(fmt::format("report {}: write failed", path.string()));
}

Verdict CaseResult::verdict() const {
  if (error) return Verdict::Error;
  Verdict v = comparison.verdict;
  if (!failures.empty()) v = worst_verdict(v, Verdict::Fail);
  if (stages)
    for (const auto& s : stages->results) v = worst_verdict(v, s.result.verdict);
  return v;
}

Verdict Report::verdict() const {
  if (input_error || internal_error) return Verdict::Error;
  Verdict v = Verdict::Pass;
  for (const auto& c : cases) v = worst_verdict(v, c.verdict());
  if (baseline && !baseline->regressions.empty()) v = worst_verdict(v, Verdict::Fail);
  return v;
}

int Report::exit_code() const {
  if (internal_error) return 3;
  if (input_error) return 2;
  return verdict() == Verdict::Pass ? 0 : 1;
}

ToolInfo ToolInfo::current() {
  ToolInfo info;
  info.version = std::string(dplr::tool_version());
  info.git_revision = std::string(dplr::git_revision());
  return info;
}

std::string iso8601_utc(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const auto since_epoch = time.time_since_epoch();
  auto whole_seconds = duration_cast<seconds>(since_epoch);
  auto millis = duration_cast<milliseconds>(since_epoch - whole_seconds).count();
  if (millis < 0) {  // times before 1970: floor, not truncate
    millis += 1000;
    whole_seconds -= seconds(1);
  }
  const std::time_t t = static_cast<std::time_t>(whole_seconds.count());
  std::tm utc{};
  gmtime_r(&t, &utc);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z", utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday,
                     utc.tm_hour, utc.tm_min, utc.tm_sec, millis);
}

}  // namespace dplr
