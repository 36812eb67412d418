#!/usr/bin/env bash
# Installs what dplr-verify needs to build and test, only where it is missing (idempotent).
# Debian packages for the C++ side (and Python's headers, pip and venv for the Python package; chromium, the
# headless browser the HTML report is tested in; slurm-wlm and munge, for the single-node Slurm the test
# slurm.check_array starts); PyPI packages
# for the interoperability tests (numpy, safetensors, jsonschema) and the Python package (python/: built with
# scikit-build-core and nanobind, tested with pytest, bf16 arrays through ml_dtypes).
set -euo pipefail

debian_packages=(
  cmake g++ make ninja-build pkg-config
  libeigen3-dev libboost-dev libmpfr-dev libgmp-dev libqd-dev
  librapidcheck-dev nlohmann-json3-dev libfmt-dev libcli11-dev libgtest-dev zlib1g-dev
  clang libclang-rt-dev
  python3-dev python3-pip python3-venv
  chromium
  slurm-wlm munge
)
# Optional: Arb for the rigorous mode (--rigorous); the build works without it, and refuses --rigorous then.
optional_debian_packages=(libflint-arb-dev)
# module:PyPI name
python_packages=(numpy:numpy safetensors:safetensors jsonschema:jsonschema nanobind:nanobind
                 scikit_build_core:scikit-build-core ml_dtypes:ml_dtypes pytest:pytest matplotlib:matplotlib)

sudo_cmd=""
[ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
apt_updated=0
# Installs those of the named Debian packages that are missing; returns apt's status.
install_missing() {
  local label=$1 package
  shift
  local missing=()
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "install-deps: installing $label Debian packages: ${missing[*]}"
  if [ "$apt_updated" -eq 0 ]; then
    $sudo_cmd apt-get update -qq || return 1
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
install_missing required "${debian_packages[@]}"
install_missing optional "${optional_debian_packages[@]}" ||
  echo "install-deps: WARNING: could not install ${optional_debian_packages[*]}; dplr builds without the rigorous mode"

if [ "${DPLR_SKIP_PYTHON:-0}" != "1" ] && command -v python3 >/dev/null; then
  missing_py=()
  for entry in "${python_packages[@]}"; do
    python3 -c "import ${entry%%:*}" 2>/dev/null || missing_py+=("${entry#*:}")
  done
  if [ ${#missing_py[@]} -gt 0 ]; then
    echo "install-deps: installing Python packages: ${missing_py[*]}"
    # The interop and schema tests skip (ctest exit 77) without them, and scripts/test-python.sh says it
    # cannot build the package, so a failed install only warns.
    python3 -m pip install -q "${missing_py[@]}" ||
      python3 -m pip install -q --break-system-packages "${missing_py[@]}" ||
      echo "install-deps: WARNING: could not install ${missing_py[*]}; the tests that need them will skip"
  fi
fi
