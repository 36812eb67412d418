#!/usr/bin/env bash
# slurm.check_array: scripts/slurm/submit.sh on a single-node Slurm started here. Asserts that the array of
# 4 ran one shard per task (4 reports, shards 0/4..3/4, each written under its own array task), that the
# merge job ran after them and wrote a schema-valid report holding every position of the sweep exactly
# once, with verdict pass and all 4 shards listed, and its JUnit XML. The daemons are stopped on every exit.
#   test_slurm.sh DPLR SOURCE_DIR SCHEMA WORKDIR
set -euo pipefail
dplr=$1 source_dir=$2 schema=$3 work=$4
rm -rf "$work"
mkdir -p "$work"
# shellcheck source=../../scripts/slurm/local-cluster.sh
source "$source_dir/scripts/slurm/local-cluster.sh"
trap 'local_cluster_stop "$work/cluster"' EXIT
status=0
local_cluster_start "$work/cluster" || status=$?
if [ "$status" -ne 0 ]; then
  echo "slurm.check_array: skipped (exit 77): no single-node Slurm here (see the reason above)"
  exit 77
fi
echo "single-node Slurm up: $(sinfo -h -o '%P %a %D %T')"
start=$(date +%s)
bash "$source_dir/scripts/slurm/submit.sh" -n 4 -o "$work/out" --dplr "$dplr" --time 00:05:00 --wait -- \
  --quick --cpu-only || { status=$?; echo "FAIL: submit.sh --wait: exit $status" >&2;
                          tail -20 "$work"/out/*.out "$work/cluster/log/slurmctld.log" >&2 || true; exit 1; }
echo "array of 4 and merge took $(( $(date +%s) - start )) s"
python3 - "$work/out" "$schema" <<'PY'
import json, pathlib, re, sys
out, schema_path = pathlib.Path(sys.argv[1]), sys.argv[2]
def fail(message):
    print("FAIL:", message, file=sys.stderr)
    sys.exit(1)
merged = json.loads((out / "check-report.json").read_text())
shards = [json.loads((out / f"shard-{i}.json").read_text()) for i in range(4)]
for i, s in enumerate(shards):
    if s["sweep"]["shard"] != {"index": i, "count": 4}:
        fail(f"shard-{i}.json is shard {s['sweep']['shard']}")
# Each shard ran in its own array task: its log names the task.
logs = sorted(out.glob("dplr-check-*_*.out"))
tasks = sorted(int(re.search(r"_(\d+)\.out$", p.name).group(1)) for p in logs)
if tasks != [0, 1, 2, 3]:
    fail(f"array task logs {[p.name for p in logs]}: expected tasks 0..3")
merge_logs = list(out.glob("dplr-merge-*.out"))
if len(merge_logs) != 1 or "merged 4 shard reports" not in merge_logs[0].read_text():
    fail(f"the merge job's log: {[p.read_text() for p in merge_logs]}")
positions = [c["sweep_index"] for c in merged["cases"]]
total = merged["sweep"]["cases_total"]
if sorted(set(positions)) != list(range(total)):
    fail(f"merged positions {sorted(set(positions))}, expected 0..{total - 1}")
if positions != sorted(positions):
    fail("merged cases are not in sweep order")
shard_ids = sorted(c["id"] for s in shards for c in s["cases"])
if sorted(c["id"] for c in merged["cases"]) != shard_ids or len(set(shard_ids)) != len(shard_ids):
    fail("the merged cases are not the shards' cases, each once")
if merged["verdict"] != "pass" or merged["exit_code"] != 0:
    fail(f"merged verdict {merged['verdict']} (exit {merged['exit_code']})")
if [m["shard"]["index"] for m in merged["merged_from"]] != [0, 1, 2, 3]:
    fail(f"merged_from {merged['merged_from']}")
try:
    import jsonschema
    jsonschema.validate(merged, json.loads(pathlib.Path(schema_path).read_text()))
    print("merged report validates against the schema")
except ImportError:
    print("jsonschema not installed: schema validation not run here (verify.validate_reports needs it too)")
import xml.etree.ElementTree as ET
suites = ET.parse(out / "check-report.xml").getroot()
if len(suites.findall("testsuite")) != len(merged["cases"]):
    fail("JUnit suites != merged cases")
print(f"merged report: {len(merged['cases'])} cases at {total} positions from 4 Slurm array tasks, verdict pass")
PY
