#!/usr/bin/env bash
# Installs missing dependencies, then configures the build folder (default build/) with Ninja.
# Extra arguments go to cmake.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
build_dir=${DPLR_BUILD_DIR:-build}
first_configure=()
command -v ninja >/dev/null && first_configure=(-G Ninja)
# ccache where it is installed (scripts/sanitize.sh shares it): a rebuild, or the sanitizer build, reuses objects.
if command -v ccache >/dev/null; then
  first_configure+=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
if [ -f "$build_dir/CMakeCache.txt" ]; then
  cmake -S . -B "$build_dir" "$@" >/dev/null
else
  cmake -S . -B "$build_dir" "${first_configure[@]}" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
fi
echo "$build_dir"
