#!/usr/bin/env bash
# Submits a sharded `dplr check` to Slurm: an array of N tasks (check-array.sbatch, one shard each), then
# the merge (merge.sbatch) with --dependency=afterok on the whole array. Prints the two job ids.
#
#   scripts/slurm/submit.sh -n 8 -o /shared/dplr-nightly [--dplr build/cli/dplr] [--gpus-per-task 1]
#                           [--partition P] [--time 02:00:00] [--wait] -- --property 20000 --seed 7
#
# -o must be a folder every node sees. --wait blocks until the merge job has ended and exits with its status
# (the sweep's verdict). Options after -- go to every `dplr check`.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
shards="" out="" dplr="" wait=0
sbatch_args=()
usage() { sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
while [ $# -gt 0 ]; do
  case $1 in
    -n) shards=$2; shift 2 ;;
    -o) out=$2; shift 2 ;;
    --dplr) dplr=$2; shift 2 ;;
    --gpus-per-task) sbatch_args+=("--gpus-per-task=$2"); shift 2 ;;
    --partition) sbatch_args+=("--partition=$2"); shift 2 ;;
    --time) sbatch_args+=("--time=$2"); shift 2 ;;
    --wait) wait=1; shift ;;
    --) shift; break ;;
    *) echo "submit.sh: unknown option '$1'" >&2; usage ;;
  esac
done
[[ $shards =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: -n N: expected the number of shards, at least 1 (got '$shards')" >&2; exit 2; }
[ -n "$out" ] || { echo "submit.sh: -o DIR: the folder of the reports is required" >&2; exit 2; }
dplr=${dplr:-$(command -v dplr || true)}
[ -x "$dplr" ] || { echo "submit.sh: --dplr PATH: no executable dplr (got '$dplr')" >&2; exit 2; }
mkdir -p "$out"
export DPLR=$(cd "$(dirname "$dplr")" && pwd)/$(basename "$dplr")
export DPLR_SHARDS=$shards DPLR_OUT=$(cd "$out" && pwd) DPLR_CHECK_ARGS="$*"
# Stale reports of an earlier run must not be merged as this one's.
rm -f "$DPLR_OUT"/shard-*.json "$DPLR_OUT"/check-report.json "$DPLR_OUT"/check-report.xml
array=$(sbatch --parsable --export=ALL --chdir="$DPLR_OUT" --array=0-$((shards - 1)) "${sbatch_args[@]}" \
  "$here/check-array.sbatch")
array=${array%%;*}
echo "array job: $array ($shards shards)"
merge_args=(--parsable --export=ALL --chdir="$DPLR_OUT" --dependency=afterok:"$array" --kill-on-invalid-dep=yes)
[ "${#sbatch_args[@]}" -gt 0 ] && for a in "${sbatch_args[@]}"; do [[ $a == --gpus-per-task=* ]] || merge_args+=("$a"); done
if [ "$wait" -eq 1 ]; then
  status=0
  sbatch --wait "${merge_args[@]}" "$here/merge.sbatch" || status=$?
  echo "merge job ended: exit $status; report: $DPLR_OUT/check-report.json"
  exit "$status"
fi
merge=$(sbatch "${merge_args[@]}" "$here/merge.sbatch")
echo "merge job: ${merge%%;*} (after array job $array); report: $DPLR_OUT/check-report.json"
