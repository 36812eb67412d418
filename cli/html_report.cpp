#include "cli/html_report.hpp"

#include <fmt/format.h>
#include <spawn.h>
#include <sys/wait.h>

#include <filesystem>
#include <vector>

#include "core/error.hpp"

extern char** environ;

namespace dplr::cli {

void add_html_options(CLI::App& command, HtmlOptions& o) {
  command.add_option("--html", o.path, "Also write the report as one self-contained HTML page here");
  command.add_option("--python", o.python, "Python with dplr_verify and matplotlib, for the HTML page")
      ->capture_default_str();
}

void write_html_report(const std::string& report_path, const HtmlOptions& o) {
  if (report_path.empty()) throw InputError("--html needs the JSON report: give --report a path");
  const std::filesystem::path page(o.path);
  if (page.has_parent_path()) std::filesystem::create_directories(page.parent_path());
  std::vector<std::string> args = {o.python, "-m", "dplr_verify.html", report_path, "-o", o.path};
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawnp(&pid, o.python.c_str(), nullptr, nullptr, argv.data(), environ) != 0)
    throw InputError(fmt::format("--html: cannot run '{}' (the Python with dplr_verify: --python)", o.python));
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw InputError(fmt::format("--html: '{} -m dplr_verify.html {} -o {}' failed (exit {}); it needs the Python "
                                 "package (pip install ./python) and matplotlib",
                                 o.python, report_path, o.path, WIFEXITED(status) ? WEXITSTATUS(status) : -1));
}

void add_report_command(CLI::App& app, Command& selected) {
  auto* command = app.add_subcommand("report", "Turn a JSON report into another form, or merge shard reports");
  command->require_subcommand(1);
  struct Options {
    std::string report;
    HtmlOptions html;
  };
  auto options = std::make_shared<Options>();
  auto* html = command->add_subcommand("html", "One self-contained HTML page of a JSON report, with plots");
  html->add_option("report", options->report, "JSON report (any dplr command's --report)")->required()->check(CLI::ExistingFile);
  html->add_option("-o,--out", options->html.path, "The HTML page")->required();
  html->add_option("--python", options->html.python, "Python with dplr_verify and matplotlib")->capture_default_str();
  html->callback([options, &selected] {
    selected = [options] {
      write_html_report(options->report, options->html);
      return 0;
    };
  });
  add_report_merge_command(*command, selected);
}

}  // namespace dplr::cli
