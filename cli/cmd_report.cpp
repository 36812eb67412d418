// `dplr report merge A.json B.json ... -o ALL.json [--junit ALL.xml]`: the shard reports of one sweep
// combined into one (reports/merge.hpp says how, and what is refused). Exit code: the merged report's
// (0 pass, 1 fail or error in a case), 2 when the reports do not belong together (the message names the
// file and the field).
#include <fmt/format.h>

#include <filesystem>

#include "cli/commands.hpp"
#include "cli/html_report.hpp"
#include "cli/report_options.hpp"
#include "reports/merge.hpp"
#include "reports/report.hpp"

namespace dplr::cli {

void add_report_merge_command(CLI::App& report_command, Command& selected) {
  struct Options {
    std::vector<std::string> reports;
    std::string out, junit;
  };
  auto options = std::make_shared<Options>();
  auto* merge = report_command.add_subcommand(
      "merge", "Combine the reports of the shards of one sweep (`dplr check --shard I/N`) into one report");
  merge->add_option("reports", options->reports, "The shards' JSON reports, all N of them, any order")
      ->required()
      ->check(CLI::ExistingFile);
  merge->add_option("-o,--out", options->out, "The merged JSON report")->required();
  merge->add_option("--junit", options->junit, "Also write the merged report as JUnit XML here");
  merge->callback([options, &selected] {
    selected = [options] {
      std::vector<ShardReport> shards;
      for (const auto& path : options->reports) shards.push_back(read_shard_report(path));
      const nlohmann::json merged = merge_reports(shards, command_line());
      write_report_json(options->out, merged);
      fmt::print("merged {} shard reports ({} cases, {:.1f} s of work): {}\n", shards.size(), merged["cases"].size(),
                 merged["duration_seconds"].get<double>(), std::filesystem::absolute(options->out).string());
      if (!options->junit.empty()) {
        write_junit(options->junit, merged);
        fmt::print("junit: {}\n", std::filesystem::absolute(options->junit).string());
      }
      const int code = merged["exit_code"].get<int>();
      fmt::print("verdict: {} (exit {})\n", merged["verdict"].get<std::string>(), code);
      return code;
    };
  });
}

}  // namespace dplr::cli
