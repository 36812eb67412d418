// The `dplr` subcommands; each adds itself to the app and, when chosen, sets the command to run.
#pragma once
#include "cli/case_options.hpp"

namespace dplr::cli {

void add_check_command(CLI::App& app, Command& selected);
void add_verify_command(CLI::App& app, Command& selected);
void add_diff_command(CLI::App& app, Command& selected);
void add_ref_command(CLI::App& app, Command& selected);
void add_gen_command(CLI::App& app, Command& selected);
void add_gradcheck_command(CLI::App& app, Command& selected);
void add_stages_command(CLI::App& app, Command& selected);
void add_bench_command(CLI::App& app, Command& selected);

}  // namespace dplr::cli
