#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build `dplr`, run the default accuracy check.
# Without a GPU, `dplr check` runs what the CPU can and says what it skipped. Arguments go to `dplr check`.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=$(bash scripts/configure.sh | tail -n 1)
cmake --build "$build_dir" --target dplr -j "$(nproc)"
exec "$build_dir/cli/dplr" check "$@"
