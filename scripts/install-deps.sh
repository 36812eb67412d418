#!/usr/bin/env bash
# Installs what dplr-verify needs to build and test, only where it is missing (idempotent).
# Debian packages for the C++ side; PyPI packages for the interoperability tests (numpy, safetensors, jsonschema).
set -euo pipefail

debian_packages=(
  cmake g++ make ninja-build pkg-config
  libeigen3-dev libboost-dev libmpfr-dev libgmp-dev libqd-dev
  librapidcheck-dev nlohmann-json3-dev libfmt-dev libcli11-dev libgtest-dev zlib1g-dev
  clang libclang-rt-dev
)
python_packages=(numpy safetensors jsonschema)

missing=()
for package in "${debian_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "${DPLR_SKIP_PYTHON:-0}" != "1" ] && command -v python3 >/dev/null; then
  missing_py=()
  for module in "${python_packages[@]}"; do
    python3 -c "import $module" 2>/dev/null || missing_py+=("$module")
  done
  if [ ${#missing_py[@]} -gt 0 ]; then
    echo "install-deps: installing Python packages: ${missing_py[*]}"
    # The interop and schema tests skip (ctest exit 77) without them, so a failed install only warns.
    python3 -m pip install -q "${missing_py[@]}" ||
      python3 -m pip install -q --break-system-packages "${missing_py[@]}" ||
      echo "install-deps: WARNING: could not install ${missing_py[*]}; the tests that need them will skip"
  fi
fi
