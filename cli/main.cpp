// dplr: how far a DPLR delta-rule kernel is from the exact answer.
// Exit codes: 0 everything within tolerance, 1 an accuracy failure (or a regression against --baseline),
// 2 bad usage or bad input, 3 an internal error. Report-writing commands write their report on every exit.
#include <fmt/format.h>

#include <CLI/CLI.hpp>

#include "cli/commands.hpp"
#include "cli/html_report.hpp"
#include "cli/report_options.hpp"
#include "core/error.hpp"
#include "core/memory.hpp"
#include "cli/progress.hpp"

#ifndef DPLR_VERSION
#define DPLR_VERSION "unknown"
#endif

int main(int argc, char** argv) {
  using namespace dplr::cli;
  CLI::App app{"dplr: measures how far a DPLR delta-rule kernel is from the exact answer"};
  app.set_version_flag("--version", DPLR_VERSION);
  app.require_subcommand(1);
  // --max-memory may follow the command (dplr verify FILE --max-memory 8G): subcommands pass it up.
  app.fallthrough();
  std::string max_memory;
  app.add_option("--max-memory", max_memory,
                 fmt::format("Memory the command may use, e.g. 8G, 512M, 50% (default {:.0f}% of physical memory, {}); "
                             "larger cases are refused before they are allocated",
                             100 * dplr::kDefaultMemoryFraction, dplr::format_bytes(dplr::memory_limit())));
  Command selected;
  add_check_command(app, selected);
  add_verify_command(app, selected);
  add_diff_command(app, selected);
  add_ref_command(app, selected);
  add_gen_command(app, selected);
  add_gradcheck_command(app, selected);
  add_stages_command(app, selected);
  add_bench_command(app, selected);
  app.footer(
      "Case files: .safetensors, .npy, .npz, or a folder of NAME.npy, holding the contract's tensors:\n"
      "  inputs     q k a b gk [B, T, H, K]; v [B, T, H, V]; h0 [N, H, K, V] (optional);\n"
      "             cu_seqlens int64 [N+1] (optional, B = 1); do [B, T, H, V], dht [N, H, K, V] (optional)\n"
      "  outputs    o [B, T, H, V]; ht [N, H, K, V]\n"
      "  gradients  dq dk dv da db dgk dh0 (as their inputs)\n"
      "Metadata keys: scale (a finite number; default K^-1/2), reverse (true/false/True/False/1/0).\n"
      "Exit codes: 0 within tolerance, 1 an accuracy failure (or a regression against --baseline), 2 bad usage\n"
      "or bad input, 3 internal error. Report-writing commands write their JSON report on every exit.");
  add_report_command(app, selected);
  set_command_line(argc, argv);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  try {
    if (!max_memory.empty()) dplr::set_memory_limit(dplr::parse_memory_size(max_memory));
    const ProgressReporter progress(stderr_is_terminal());
    return selected ? selected() : 2;
  } catch (const dplr::InputError& e) {
    fmt::print(stderr, "dplr: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dplr: internal error: {}\n", e.what());
    return 3;
  }
}
