// JUnit XML for CI systems (the de facto schema Jenkins, GitLab and GitHub reporters read): testsuites >
// testsuite (one per case) > testcase (one per case x tensor) with a <failure> (accuracy) or <error> (NaN,
// bad input) whose message carries the numbers.
#include <cmath>
#include <fstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/error.hpp"
#include "reports/report.hpp"

namespace dplr {
namespace {

// Escapes text for an XML attribute or element. Characters XML 1.0 forbids (controls other than tab, LF,
// CR) become '?': a reason string quoting a file name must not make the whole file unreadable.
std::string xml_escape(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      case '\t': out += "&#9;"; break;
      case '\n': out += "&#10;"; break;
      case '\r': out += "&#13;"; break;
      default: out += (static_cast<unsigned char>(c) < 0x20) ? '?' : c;
    }
  }
  return out;
}

// A real as the writer stores it: a number, or "Infinity", "-Infinity", "NaN".
double real_of(const nlohmann::json& value) {
  if (value.is_number()) return value.get<double>();
  if (value.is_string()) {
    const auto text = value.get<std::string>();
    if (text == "Infinity") return INFINITY;
    if (text == "-Infinity") return -INFINITY;
  }
  return NAN;
}

std::string metrics_text(const nlohmann::json& r) {
  const auto& m = r.at("metrics");
  std::string text = fmt::format("dtype {} judged as {}; rel RMSE {:.3e}", r.at("dtype").get<std::string>(),
                                 r.at("judged_as").get<std::string>(), real_of(m.at("rel_rmse")));
  if (const auto& floor = m.at("floor"); !floor.is_null())
    text += fmt::format("; floor ratio {:.3f} (floor {:.3e})", real_of(floor.at("ratio")),
                        real_of(floor.at("used_rel_rmse")));
  const auto& max_abs = m.at("max_abs_error");
  text += fmt::format("; max ulp {:.4g}, p99 ulp {:.4g}; max rel err {:.3e}; max abs err {:.3e} at [{}]; "
                      "NaN {}, Inf {} of {} elements; tolerance from {}",
                      real_of(m.at("ulp").at("max").at("value")), real_of(m.at("ulp").at("p99")),
                      real_of(m.at("max_rel_error").at("value")), real_of(max_abs.at("value")),
                      fmt::join(max_abs.at("index").get<std::vector<std::int64_t>>(), ", "),
                      m.at("nonfinite").at("actual_nan").get<std::int64_t>(),
                      m.at("nonfinite").at("actual_inf").get<std::int64_t>(), m.at("elements").get<std::int64_t>(),
                      r.at("tolerance").at("rule").get<std::string>());
  return text;
}

struct Counts {
  int tests = 0, failures = 0, errors = 0;
};

void append_testcase(std::string& out, Counts& counts, const std::string& classname, const std::string& name,
                     const nlohmann::json& r) {
  ++counts.tests;
  out += fmt::format("    <testcase classname=\"{}\" name=\"{}\" time=\"0\"", xml_escape(classname), xml_escape(name));
  const auto verdict = r.at("verdict").get<std::string>();
  if (verdict == "pass") {
    out += fmt::format(">\n      <system-out>{}</system-out>\n    </testcase>\n", xml_escape(metrics_text(r)));
    return;
  }
  const bool error = verdict == "error";
  (error ? counts.errors : counts.failures)++;
  out += fmt::format(">\n      <{0} message=\"{1}\" type=\"{2}\">{3}</{0}>\n    </testcase>\n", error ? "error" : "failure",
                     xml_escape(r.at("reason").get<std::string>()), error ? "nonfinite" : "accuracy",
                     xml_escape(metrics_text(r)));
}

}  // namespace

// From the JSON form, so a report read back (`dplr report merge --junit`) gets the same XML as one just run.
std::string junit_xml(const nlohmann::json& report) {
  std::string suites;
  Counts total;
  const auto start_time = report.at("start_time").get<std::string>();
  for (const auto& c : report.at("cases")) {
    Counts counts;
    std::string body;
    const auto id = c.at("id").get<std::string>();
    const std::string classname = fmt::format("dplr.{}", id);
    for (const auto& t : c.at("tensors")) append_testcase(body, counts, classname, t.at("name").get<std::string>(), t);
    if (const auto& stages = c.at("stages"); !stages.is_null())
      for (const auto& s : stages.at("results"))
        append_testcase(body, counts, classname,
                        fmt::format("stage {}/{}", s.at("stage").get<std::string>(), s.at("name").get<std::string>()), s);
    suites += fmt::format("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" "
                          "time=\"0\" timestamp=\"{}\">\n{}  </testsuite>\n",
                          xml_escape(id), counts.tests, counts.failures, counts.errors, start_time, body);
    total.tests += counts.tests;
    total.failures += counts.failures;
    total.errors += counts.errors;
  }
  if (const auto& input_error = report.at("input_error"); !input_error.is_null()) {
    ++total.tests;
    ++total.errors;
    suites += fmt::format("  <testsuite name=\"input\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0\">\n"
                          "    <testcase classname=\"dplr.input\" name=\"input\" time=\"0\">\n"
                          "      <error message=\"{0}\" type=\"input\">{0}</error>\n    </testcase>\n  </testsuite>\n",
                          xml_escape(input_error.get<std::string>()));
  }
  const double duration = real_of(report.at("duration_seconds"));
  return fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                     "<testsuites name=\"dplr {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3f}\">\n{}"
                     "</testsuites>\n",
                     xml_escape(report.at("command").get<std::string>()), total.tests, total.failures, total.errors,
                     std::isfinite(duration) ? duration : 0.0, suites);
}

std::string junit_xml(const Report& report) { return junit_xml(to_json(report)); }

void write_junit(const std::filesystem::path& path, const nlohmann::json& report) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError(fmt::format("JUnit XML {}: cannot be written", path.string()));
  out << junit_xml(report);
  if (!out) throw InputError(fmt::format("JUnit XML {}: write failed", path.string()));
}

void write_junit(const std::filesystem::path& path, const Report& report) { write_junit(path, to_json(report)); }

}  // namespace dplr
