#!/usr/bin/env python3
"""planted_summary.py: one line per `dplr check --plant-defect` report: the defect, how many cases failed (or
errored) of how many, the first such case in sweep order (its 1-based position is the number of cases the fixed
sweep needed to find the defect) and why, and for a property sweep the first failure's shrunk case. Usage: planted_summary.py REPORT.json ..."""
import json
import sys


def first_reason(case):
    if case.get("error"):
        return "error: " + case["error"][:160]
    for t in case.get("tensors", []) + (case.get("stages") or {}).get("results", []):
        if t.get("verdict") != "pass":
            return f"{t['name']}: {t.get('reason', '')[:160]}"
    return "; ".join(case.get("failures", []))[:160]


for path in sys.argv[1:]:
    with open(path) as f:
        report = json.load(f)
    line = report.get("command_line", [])
    defect = line[line.index("--plant-defect") + 1] if "--plant-defect" in line else "?"
    cases = report.get("cases", [])
    bad = [(i, c) for i, c in enumerate(cases, 1) if c.get("verdict") != "pass"]
    if report.get("input_error"):
        print(f"{defect:24s} input error: {report['input_error']}")
    elif not bad:
        print(f"{defect:24s} NOT FOUND: all {len(cases)} cases pass")
    else:
        i, c = bad[0]
        at = f"sweep position {c['sweep_index']}" if c.get("sweep_index") is not None else f"case {i}"
        print(f"{defect:24s} found: {len(bad)}/{len(cases)} cases fail; first at {at}: {c['id']} -- {first_reason(c)}")
        # The property sweep reports each failing case's shrunk form beside it ("shrunk property #i ...").
        shrunk = [s for s in cases if s.get("id", "").startswith("shrunk ") and s.get("sweep_index") == c.get("sweep_index")]
        if shrunk:
            print(f"{'':24s} shrunk to: {shrunk[0]['id'][len('shrunk '):]}")
