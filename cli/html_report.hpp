// The HTML page of a JSON report (`dplr report html`, `--html` on check and verify). The page and its plots
// are the Python package's (python/src/dplr_verify/html.py, matplotlib): this runs
// `PYTHON -m dplr_verify.html REPORT -o PAGE`, so the JSON report is the one interface between the two.
#pragma once
#include <CLI/CLI.hpp>

#include <string>

#include "cli/case_options.hpp"

namespace dplr::cli {

struct HtmlOptions {
  std::string path;              // the page; empty: none
  std::string python = "python3";  // the interpreter that has dplr_verify (and matplotlib) installed
};

// Adds --html PAGE and --python PYTHON.
void add_html_options(CLI::App& command, HtmlOptions& options);

// Writes the page of the report at `report_path`; InputError when the report path is empty, the
// interpreter cannot run, or the renderer fails (its message says why).
void write_html_report(const std::string& report_path, const HtmlOptions& options);

void add_report_command(CLI::App& app, Command& selected);
// `dplr report merge` (cli/cmd_report.cpp), under the `report` command.
void add_report_merge_command(CLI::App& report_command, Command& selected);

}  // namespace dplr::cli
