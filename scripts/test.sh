#!/usr/bin/env bash
# All tests on a fresh machine: install what is missing, build everything, run ctest (GPU tests skip with a
# message where there is no device; package.consumer builds a project against the installed tree), the
# CPU tests again under sanitizers (scripts/sanitize.sh; DPLR_SKIP_SANITIZE=1 leaves them out), the Python
# package's tests (scripts/test-python.sh), then the fuzzers for a bounded time (DPLR_FUZZ_SECONDS, default 20
# each).
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=$(bash scripts/configure.sh | tail -n 1)
cmake --build "$build_dir" -j "$(nproc)"
(cd "$build_dir" && ctest --output-on-failure -j "$(nproc)")
if [ "${DPLR_SKIP_SANITIZE:-0}" != "1" ]; then
  bash scripts/sanitize.sh
fi
bash scripts/test-python.sh "$build_dir"
if [ -x scripts/run-fuzzers.sh ]; then
  bash scripts/run-fuzzers.sh "${DPLR_FUZZ_SECONDS:-20}"
fi
