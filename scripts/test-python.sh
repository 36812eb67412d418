#!/usr/bin/env bash
# The Python package's tests: installs BUILD_DIR (default build/, already built) to BUILD_DIR/install, builds
# the package (python/) against those libraries into BUILD_DIR/python-site, and runs python/tests with pytest
# against BUILD_DIR/cli/dplr. Usage: scripts/test-python.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=$(realpath "${1:-build}")
prefix=$build_dir/install
site=$build_dir/python-site
cmake --install "$build_dir" --prefix "$prefix" >/dev/null
rm -rf "$site"
# No build isolation: scikit-build-core and nanobind come from scripts/install-deps.sh, not a fresh download.
python3 -m pip install -q --no-build-isolation --no-deps --target "$site" \
  -Ccmake.define.dplr_verify_ROOT="$prefix" -Cbuild-dir="$build_dir/python-build" ./python
status=0
PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH} DPLR_BIN=$build_dir/cli/dplr \
  python3 -m pytest -q -rs -p no:cacheprovider python/tests || status=$?
# pytest exits 5 when it collected nothing: a broken test layout, not a pass.
if [ "$status" -eq 5 ]; then
  echo "test-python: pytest collected no tests from python/tests" >&2
fi
exit "$status"
