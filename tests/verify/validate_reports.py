#!/usr/bin/env python3
"""Validates the sample reports written by dplr_write_sample_reports.

usage: validate_reports.py --schema reports/schema/dplr-report.v2.schema.json DIR

1. The schema itself is valid against the JSON Schema 2020-12 metaschema.
2. Every DIR/*.json report validates against it (format checks on), and together the samples cover every
   optional part both present and absent (so the test keeps meaning what it says).
3. The schema is strict: mutated reports (a missing field, an unknown field, a wrong enum, an exit code that
   contradicts the verdict, ...) are rejected.
4. Every DIR/*.junit.xml is well-formed JUnit whose counts add up and match the JSON report.

Exit 0 on success, 1 on any failure, 77 (ctest: skipped) when the jsonschema package is missing
(scripts/install-deps.sh installs it).
"""
import argparse
import copy
import json
import pathlib
import sys
import xml.etree.ElementTree as ET

try:
    import jsonschema
except ImportError:
    print("validate_reports: the Python package jsonschema is missing (scripts/install-deps.sh installs it)")
    sys.exit(77)

EXPECTED_SAMPLES = ["verify_full", "verify_minimal", "diff", "input_error", "no_cases", "internal_error", "check_baseline"]
failures = []


def fail(message):
    failures.append(message)
    print("FAIL:", message)


def walk(node):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def check_coverage(reports):
    """Each optional part must appear both present and absent somewhere among the samples."""
    seen = {}

    def note(key, present):
        seen.setdefault(key, set()).add(present)

    for report in reports.values():
        note("host.gpu", report["host"]["gpu"] is not None)
        note("input_error", report["input_error"] is not None)
        note("internal_error", report["internal_error"] is not None)
        note("baseline", report["baseline"] is not None)
        note("cases", len(report["cases"]) > 0)
        for case in report["cases"]:
            for key in ["shape", "working_dtype", "options", "reference", "stages"]:
                note(key, case[key] is not None)
            note("source.generator", case["source"]["generator"] is not None)
            note("notes", len(case["notes"]) > 0)
            note("case.error", case["error"] is not None)
            note("case.failures", len(case["failures"]) > 0)
            if case["stages"] is not None:
                note("first_diverging_stage", case["stages"]["first_diverging_stage"] is not None)
            if case["reference"] is not None:
                note("estimated_against", case["reference"]["estimated_against"] is not None)
                note("proven_bits", len(case["reference"]["proven_bits"]) > 0)
            for tensor in case["tensors"]:
                metrics = tensor["metrics"]
                note("locality", metrics["locality"] is not None)
                note("misrounded_fraction", metrics["misrounded_fraction"] is not None)
                note("first_actual_nan_index", metrics["nonfinite"]["first_actual_nan_index"] is not None)
                for limit in ["floor_ratio", "rel_rmse"]:
                    note("tolerance." + limit, tensor["tolerance"][limit] is not None)
                note("verdict." + tensor["verdict"], True)
    for key, states in sorted(seen.items()):
        if key.startswith("verdict."):
            continue
        if states != {True, False}:
            fail(f"samples never have {key} {'absent' if True in states else 'present'}")
    for verdict in ["pass", "fail", "error"]:
        if f"verdict.{verdict}" not in seen:
            fail(f"no sample tensor has verdict {verdict}")
    values = [v for r in reports.values() for v in walk(r)]
    if "Infinity" not in values:
        fail('no sample writes a non-finite metric ("Infinity")')


def mutations(report):
    """(description, mutated report) pairs the schema must reject."""
    def mutated(description, change):
        r = copy.deepcopy(report)
        change(r)
        return description, r

    tensor = lambda r: r["cases"][0]["tensors"][0]
    yield mutated("missing tool", lambda r: r.pop("tool"))
    yield mutated("unknown top-level field", lambda r: r.update(extra=1))
    yield mutated("unknown metrics field", lambda r: tensor(r)["metrics"].update(mean_error=0.1))
    yield mutated("verdict outside the enum", lambda r: tensor(r).update(verdict="maybe"))
    yield mutated("exit code contradicting the verdict", lambda r: r.update(verdict="fail", exit_code=0))
    yield mutated("input error with exit code 1", lambda r: r.update(input_error="x", verdict="error", exit_code=1))
    yield mutated("internal error with exit code 2", lambda r: r.update(internal_error="x", verdict="error", exit_code=2))
    yield mutated("unknown floor basis", lambda r: r["policy"].update(floor_basis="mixed"))
    yield mutated("locality of an unknown layout", lambda r: tensor(r)["metrics"]["locality"].update(layout="rows"))
    yield mutated("histogram of 60 bins", lambda r: tensor(r)["metrics"]["histogram"]["counts"].pop())
    yield mutated("upper-case sha256", lambda r: r["cases"][0]["source"]["files"][0].update(
        sha256=r["cases"][0]["source"]["files"][0]["sha256"].upper()))
    yield mutated("unknown dtype", lambda r: tensor(r).update(dtype="F8"))
    yield mutated("negative rel RMSE", lambda r: tensor(r)["metrics"].update(rel_rmse=-1.0))
    yield mutated("infinity as a bare string", lambda r: tensor(r)["metrics"].update(rel_rmse="inf"))
    yield mutated("start time without zone", lambda r: r.update(start_time="2023-11-14T22:13:20"))
    yield mutated("case without source", lambda r: r["cases"][0]["source"].update(generator=None, files=[]))
    yield mutated("diff case with a reference", lambda r: r["cases"][0].update(baseline="file"))
    yield mutated("stage result without stage", lambda r: r["cases"][0]["stages"]["results"][0].pop("stage"))
    yield mutated("tensor result with a stage", lambda r: tensor(r).update(stage="h"))
    # v2 renamed v1's certified_* (the estimate) to estimated_* and added proven_bits: v1's names are refused.
    yield mutated("reference with v1's certified_bits", lambda r: r["cases"][0]["reference"].update(
        certified_bits=r["cases"][0]["reference"].pop("estimated_bits")))
    yield mutated("reference without proven_bits", lambda r: r["cases"][0]["reference"].pop("proven_bits"))
    yield mutated("schema v1", lambda r: r.update(schema="dplr-report.v1", schema_version=1))


def check_junit(path, report):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        fail(f"{path.name}: not well-formed XML: {e}")
        return
    if root.tag != "testsuites":
        fail(f"{path.name}: root is <{root.tag}>, expected <testsuites>")
        return
    totals = {"tests": 0, "failures": 0, "errors": 0}
    for suite in root:
        if suite.tag != "testsuite":
            fail(f"{path.name}: <{suite.tag}> under <testsuites>")
            continue
        counts = {"tests": 0, "failures": 0, "errors": 0}
        for case in suite:
            if case.tag != "testcase" or not case.get("name") or not case.get("classname"):
                fail(f"{path.name}: bad <{case.tag}> {case.attrib}")
                continue
            counts["tests"] += 1
            outcome = [c for c in case if c.tag in ("failure", "error")]
            if len(outcome) > 1:
                fail(f"{path.name}: testcase {case.get('name')} has {len(outcome)} outcomes")
            for c in outcome:
                counts["failures" if c.tag == "failure" else "errors"] += 1
                if not c.get("message"):
                    fail(f"{path.name}: testcase {case.get('name')}: <{c.tag}> without a message")
        for key, value in counts.items():
            if int(suite.get(key, -1)) != value:
                fail(f"{path.name}: suite {suite.get('name')} says {key}={suite.get(key)}, has {value}")
            totals[key] += value
    for key, value in totals.items():
        if int(root.get(key, -1)) != value:
            fail(f"{path.name}: <testsuites> says {key}={root.get(key)}, has {value}")
    expected_tests = sum(len(c["tensors"]) + (len(c["stages"]["results"]) if c["stages"] else 0)
                         for c in report["cases"]) + (1 if report["input_error"] else 0)
    if totals["tests"] != expected_tests:
        fail(f"{path.name}: {totals['tests']} testcases, the JSON report has {expected_tests} tensors")
    not_passed = sum(1 for c in report["cases"] for t in c["tensors"] + (c["stages"]["results"] if c["stages"] else [])
                     if t["verdict"] != "pass") + (1 if report["input_error"] else 0)
    if totals["failures"] + totals["errors"] != not_passed:
        fail(f"{path.name}: {totals['failures'] + totals['errors']} failures+errors, the report has {not_passed}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--schema", required=True, type=pathlib.Path)
    parser.add_argument("dir", type=pathlib.Path)
    args = parser.parse_args()

    schema = json.loads(args.schema.read_text())
    validator_class = jsonschema.Draft202012Validator
    try:
        validator_class.check_schema(schema)
    except jsonschema.SchemaError as e:
        fail(f"{args.schema}: not a valid 2020-12 schema: {e.message}")
        return 1
    validator = validator_class(schema, format_checker=validator_class.FORMAT_CHECKER)

    reports = {}
    for name in EXPECTED_SAMPLES:
        path = args.dir / f"{name}.json"
        if not path.exists():
            fail(f"{path}: missing")
            continue
        report = json.loads(path.read_text())
        reports[name] = report
        errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
        for e in errors:
            fail(f"{path.name}: {'/'.join(map(str, e.path))}: {e.message}")
        if not errors:
            print(f"ok: {path.name} validates")
        check_junit(args.dir / f"{name}.junit.xml", report)

    check_coverage(reports)
    if "verify_full" in reports:
        for description, mutated in mutations(reports["verify_full"]):
            if validator.is_valid(mutated):
                fail(f"the schema accepts a report with {description}")
    print(f"validate_reports: {len(reports)} reports, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
