#!/usr/bin/env python3
"""limit_calibration.py: the worst figures of correct kernels per (judged dtype, tensor), the numbers a policy's
limits are set from. For every tensor of every case (and stage) in the reports: floor ratio, worst element (u),
worst block (floors), misrounded fraction; prints the maximum of each with the case that reached it, and how many
tensors were judged against their conditioning floor. Only cases whose id starts with PREFIX (default "gpu":
our kernels, not the CPU part's study cases; property cases "property #i gpu ..." match too). Usage: limit_calibration.py [--prefix PREFIX] REPORT.json ..."""
import json
import sys
from collections import defaultdict


def tensors_of(case):
    for t in case.get("tensors", []):
        yield "", t
    for r in (case.get("stages") or {}).get("results", []):
        yield r.get("stage", ""), r


def figures(t):
    m = t.get("metrics", t)
    floor = m.get("floor") or {}
    elem = (m.get("max_elem_error") or {}).get("value")
    local = ((m.get("locality") or {}).get("worst_block") or {}).get("local_ratio")
    return {"floor ratio": floor.get("ratio"), "worst element u": elem, "worst block": local,
            "misrounded": m.get("misrounded_fraction"), "rel RMSE": m.get("rel_rmse")}, floor.get("conditioned", False)


worst = defaultdict(lambda: defaultdict(lambda: (-1.0, "")))
counts = defaultdict(lambda: [0, 0])
args = sys.argv[1:]
prefix = "gpu"
if args[:1] == ["--prefix"]:
    prefix, args = args[1], args[2:]
for path in args:
    with open(path) as f:
        report = json.load(f)
    for case in report.get("cases", []):
        if not (case.get("id", "").startswith(prefix) or f" {prefix} " in case.get("id", "")):
            continue
        for stage, t in tensors_of(case):
            key = (t.get("judged_as", t.get("dtype", "?")), t["name"])
            values, conditioned = figures(t)
            counts[key][0] += 1
            counts[key][1] += bool(conditioned)
            for label, v in values.items():
                if isinstance(v, (int, float)) and v > worst[key][label][0]:
                    worst[key][label] = (v, case.get("id", "?"))
labels = ["floor ratio", "worst element u", "worst block", "misrounded", "rel RMSE"]
print(f"{'dtype':5s} {'tensor':7s} {'n':>5s} {'cond':>4s} " + " ".join(f"{l:>16s}" for l in labels))
for key in sorted(worst):
    row = " ".join(f"{worst[key][l][0]:16.4g}" if worst[key][l][0] >= 0 else f"{'-':>16s}" for l in labels)
    print(f"{key[0]:5s} {key[1]:7s} {counts[key][0]:5d} {counts[key][1]:4d} {row}")
print("\nwhere the worst floor ratio was reached:")
for key in sorted(worst):
    v, case = worst[key]["floor ratio"]
    if v >= 0:
        print(f"  {key[0]}:{key[1]} {v:.3g}  {case}")
