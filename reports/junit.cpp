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

std::string metrics_text(const TensorResult& r) {
  const auto& m = r.metrics;
  std::string text = fmt::format("dtype {} judged as {}; rel RMSE {:.3e}", dtype_name(r.dtype), dtype_name(r.judged_as),
                                 m.rel_rmse);
  if (m.floor) text += fmt::format("; floor ratio {:.3f} (floor {:.3e})", m.floor->ratio, m.floor->used_rel_rmse);
  text += fmt::format("; max ulp {:.4g}, p99 ulp {:.4g}; max rel err {:.3e}; max abs err {:.3e} at [{}]; "
                      "NaN {}, Inf {} of {} elements; tolerance from {}",
                      m.max_ulp.error, m.p99_ulp, m.max_rel.error, m.max_abs.error, fmt::join(m.max_abs.index, ", "),
                      m.nonfinite.actual_nan, m.nonfinite.actual_inf, m.elements, r.tolerance.rule);
  return text;
}

struct Counts {
  int tests = 0, failures = 0, errors = 0;
};

void append_testcase(std::string& out, Counts& counts, const std::string& classname, const std::string& name,
                     const TensorResult& r) {
  ++counts.tests;
  out += fmt::format("    <testcase classname=\"{}\" name=\"{}\" time=\"0\"", xml_escape(classname), xml_escape(name));
  if (r.verdict == Verdict::Pass) {
    out += fmt::format(">\n      <system-out>{}</system-out>\n    </testcase>\n", xml_escape(metrics_text(r)));
    return;
  }
  const bool error = r.verdict == Verdict::Error;
  (error ? counts.errors : counts.failures)++;
  out += fmt::format(">\n      <{0} message=\"{1}\" type=\"{2}\">{3}</{0}>\n    </testcase>\n", error ? "error" : "failure",
                     xml_escape(r.reason), error ? "nonfinite" : "accuracy", xml_escape(metrics_text(r)));
}

}  // namespace

std::string junit_xml(const Report& report) {
  std::string suites;
  Counts total;
  for (const auto& c : report.cases) {
    Counts counts;
    std::string body;
    const std::string classname = fmt::format("dplr.{}", c.id);
    for (const auto& t : c.comparison.tensors) append_testcase(body, counts, classname, t.name, t);
    if (c.stages)
      for (const auto& s : c.stages->results)
        append_testcase(body, counts, classname, fmt::format("stage {}/{}", s.stage, s.result.name), s.result);
    suites += fmt::format("  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"0\" "
                          "time=\"0\" timestamp=\"{}\">\n{}  </testsuite>\n",
                          xml_escape(c.id), counts.tests, counts.failures, counts.errors,
                          iso8601_utc(report.start_time), body);
    total.tests += counts.tests;
    total.failures += counts.failures;
    total.errors += counts.errors;
  }
  if (report.input_error) {
    ++total.tests;
    ++total.errors;
    suites += fmt::format("  <testsuite name=\"input\" tests=\"1\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0\">\n"
                          "    <testcase classname=\"dplr.input\" name=\"input\" time=\"0\">\n"
                          "      <error message=\"{0}\" type=\"input\">{0}</error>\n    </testcase>\n  </testsuite>\n",
                          xml_escape(*report.input_error));
  }
  const double duration = std::isfinite(report.duration_seconds) ? report.duration_seconds : 0.0;
  return fmt::format("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                     "<testsuites name=\"dplr {}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" time=\"{:.3f}\">\n{}"
                     "</testsuites>\n",
                     xml_escape(report.command), total.tests, total.failures, total.errors, duration, suites);
}

void write_junit(const std::filesystem::path& path, const Report& report) {
  std::error_code ec;
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path(), ec);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw InputError(fmt::format("JUnit XML {}: cannot be written", path.string()));
  out << junit_xml(report);
  if (!out) throw InputError(fmt::format("JUnit XML {}: write failed", path.string()));
}

}  // namespace dplr
