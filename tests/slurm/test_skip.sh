#!/usr/bin/env bash
# slurm.skips_unprivileged: test_slurm.sh run as the user nobody must exit 77 and say why (slurmd needs
# root), starting no daemon. Skips itself (77) where this shell cannot switch users.
#   test_skip.sh DPLR SOURCE_DIR SCHEMA
set -uo pipefail
dplr=$1 source_dir=$2 schema=$3
if [ "$(id -u)" -ne 0 ] || ! command -v runuser >/dev/null || ! id nobody >/dev/null 2>&1; then
  echo "SKIP: not root (or no runuser, no user nobody): cannot run the Slurm test as an unprivileged user"
  exit 77
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
chmod 777 "$work"
status=0
runuser -u nobody -- bash "$source_dir/tests/slurm/test_slurm.sh" "$dplr" "$source_dir" "$schema" "$work/w" \
  >"$work/log" 2>&1 || status=$?
cat "$work/log"
[ "$status" -eq 77 ] || { echo "FAIL: as nobody test_slurm.sh exited $status, expected 77 (skip)"; exit 1; }
grep -q "SKIP: not root" "$work/log" || { echo "FAIL: the skip does not say why (expected 'SKIP: not root')"; exit 1; }
echo "slurm.skips_unprivileged: skipped as nobody with its reason, as it must"
