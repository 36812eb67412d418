// dplr: how far a DPLR delta-rule kernel is from the exact answer.
// Exit codes: 0 everything within tolerance, 1 an accuracy failure, 2 bad usage or bad input.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "cli/html_report.hpp"
#include "cli/report_options.hpp"
#include "core/error.hpp"
#include "reference/parallel.hpp"

#ifndef DPLR_VERSION
#define DPLR_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using namespace dplr::cli;
  CLI::App app{"dplr: measures how far a DPLR delta-rule kernel is from the exact answer"};
  app.set_version_flag("--version", DPLR_VERSION);
  app.require_subcommand(1);
  Command selected;
  add_check_command(app, selected);
  add_verify_command(app, selected);
  add_diff_command(app, selected);
  add_ref_command(app, selected);
  add_gen_command(app, selected);
  add_gradcheck_command(app, selected);
  add_stages_command(app, selected);
  add_bench_command(app, selected);
  add_report_command(app, selected);
  set_command_line(argc, argv);
  if (stderr_is_terminal()) {
    // Progress of the reference and stage oracles over (sequence, head) pairs, redrawn in place.
    dplr::progress_hook() = [](std::int64_t finished, std::int64_t total) {
      fmt::print(stderr, "\r  {} / {} (sequence, head) pairs{}", finished, total, finished == total ? "\r\033[K" : "");
    };
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    return selected ? selected() : 2;
  } catch (const dplr::InputError& e) {
    fmt::print(stderr, "dplr: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dplr: internal error: {}\n", e.what());
    return 3;
  }
}
