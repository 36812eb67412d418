#!/usr/bin/env python3
"""End-to-end tests of scale-out and replay (issue 13): `dplr check --shard I/N` and `dplr report merge`,
replayable case files and the regression corpus, and the property sweep `dplr check --property N --seed S`
(deterministic, sharded, shrinking planted defects). One scenario per ctest entry; exit 77 means skipped."""
import copy
import json
import pathlib
import subprocess
import sys
import xml.etree.ElementTree as ET

from test_cli import run, refused, validate, scenario_main  # this folder is on sys.path when the script runs


def load(args, name):
    return json.loads(pathlib.Path(args.workdir, name).read_text())


def save(args, name, report):
    pathlib.Path(args.workdir, name).write_text(json.dumps(report, indent=2))


def ids(report):
    return [c["id"] for c in report["cases"]]


def figures(report):
    """Each case's judged figures, without what legitimately differs between runs (times, the host)."""
    out = []
    for c in report["cases"]:
        out.append((c["id"], c["verdict"], c["sweep_index"],
                    [(t["name"], t["metrics"]["rel_rmse"], t["verdict"]) for t in c["tensors"]], c["failures"]))
    return out


def run_shards(args, count, extra, prefix):
    procs = [subprocess.Popen([args.dplr, "check", *extra, "--threads", "1", "--shard", f"{i}/{count}", "--report",
                               f"{prefix}{i}.json"], cwd=args.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for i in range(count)]
    for i, p in enumerate(procs):
        out, err = p.communicate()
        assert p.returncode in (0, 1), f"shard {i}/{count}: exit {p.returncode}\n{out}\n{err}"
    return [f"{prefix}{i}.json" for i in range(count)]


def test_shard_merge(args):
    """4 shards of `check --quick --cpu-only`, merged, are the unsharded run: same cases, order, figures, verdict."""
    run(args, ["check", "--quick", "--cpu-only", "--report", "whole.json"], 0)
    shards = run_shards(args, 4, ["--quick", "--cpu-only"], "shard-")
    whole = load(args, "whole.json")
    parts = [load(args, s) for s in shards]
    positions = [sorted({c["sweep_index"] for c in p["cases"]}) for p in parts]
    total = whole["sweep"]["cases_total"]
    assert sorted(x for p in positions for x in p) == list(range(total)), positions  # each position once
    for i, p in enumerate(positions):
        assert all(x % 4 == i for x in p), (i, p)
    proc = run(args, ["report", "merge", *reversed(shards), "-o", "merged.json", "--junit", "merged.xml"], 0)
    print(proc.stdout)
    merged = validate(args, pathlib.Path(args.workdir, "merged.json")) or load(args, "merged.json")
    assert ids(merged) == ids(whole), (ids(merged), ids(whole))
    assert figures(merged) == figures(whole)
    assert merged["verdict"] == whole["verdict"] == "pass" and merged["exit_code"] == 0
    assert [m["shard"] for m in merged["merged_from"]] == [{"index": i, "count": 4} for i in range(4)]
    assert abs(merged["duration_seconds"] - sum(p["duration_seconds"] for p in parts)) < 1e-9
    assert merged["sweep"]["shard"] == {"index": 0, "count": 1} and merged["sweep"]["cases_total"] == total
    suites = ET.parse(pathlib.Path(args.workdir, "merged.xml")).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ids(whole)
    # A shard that failed makes the merge fail: a planted failing verdict in shard 2.
    bad = load(args, shards[2])
    bad["cases"][0]["verdict"] = "fail"
    save(args, "shard-bad-2.json", bad)
    run(args, ["report", "merge", shards[0], shards[1], "shard-bad-2.json", shards[3], "-o", "m.json"], 1)
    assert load(args, "m.json")["verdict"] == "fail"


def test_shard_usage(args):
    for text, fragment in [("4/4", "must be below N = 4"), ("-1/4", "expected I/N"), ("1/0", "at least 1"),
                           ("a/b", "expected I/N"), ("1/4x", "expected I/N"), ("3", "expected I/N")]:
        refused(args, ["check", "--quick", "--cpu-only", "--shard", text, "--report", "r.json"], "--shard", fragment)
        assert load(args, "r.json")["input_error"], text


def test_merge_refuses(args):
    """Reports that do not belong together are refused (exit 2) with the file and the field named."""
    shards = run_shards(args, 2, ["--quick", "--cpu-only"], "s-")
    run(args, ["report", "merge", *shards, "-o", "ok.json"], 0)

    def planted(name, edit):
        report = load(args, shards[1])
        edit(report)
        save(args, name, report)
        return name

    cases = [
        (planted("policy.json", lambda r: r["policy"].update(preset="default")), "policy.preset"),
        (planted("sources.json", lambda r: r["policy"].update(sources=["preset strict", "command line: o=9"])),
         "policy.sources"),
        (planted("version.json", lambda r: r["tool"].update(version="0.0.0-other")), "tool.version"),
        (planted("revision.json", lambda r: r["tool"].update(git_revision="abc1234")), "tool.git_revision"),
        (planted("seed.json", lambda r: r["sweep"]["parameters"].update(seed=5)), "sweep.parameters.seed"),
        (planted("quick.json", lambda r: r["sweep"]["parameters"].update(quick=False)), "sweep.parameters.quick"),
        (planted("count.json", lambda r: r["sweep"]["shard"].update(count=3)), "sweep.shard.count"),
        (planted("overlap.json", lambda r: r["cases"][0].update(sweep_index=0)), "sweep_index"),
        (planted("nosweep.json", lambda r: r.update(sweep=None)), "field 'sweep' is null"),
    ]
    for name, field in cases:
        proc = refused(args, ["report", "merge", shards[0], name, "-o", "no.json"], name, field)
        print(proc.stderr.strip())
        assert not pathlib.Path(args.workdir, "no.json").exists(), name
    refused(args, ["report", "merge", shards[0], shards[0], "-o", "no.json"], "both shard 0/2")
    refused(args, ["report", "merge", shards[0], "-o", "no.json"], "shards [1] of 2 are missing")
    # A real run with another seed, not an edited one.
    run(args, ["check", "--quick", "--cpu-only", "--seed", "5", "--shard", "1/2", "--report", "seed5.json"])
    refused(args, ["report", "merge", shards[0], "seed5.json", "-o", "no.json"], "seed5.json", "sweep.parameters.seed")


def test_replay(args):
    """Case files: the corpus is replayed by every check, --case replays one, a bad case file is refused, and a
    failing property case is written with a replay command that runs."""
    corpus = sorted(pathlib.Path(args.source_dir, "tests/data/regressions").glob("*.safetensors"))
    assert corpus, "the regression corpus is empty"
    run(args, ["check", "--quick", "--cpu-only", "--report", "check.json"], 0)
    report = load(args, "check.json")
    for f in corpus:
        assert any(c["id"] == f"reference: replay {f.name}" for c in report["cases"]), f.name
    run(args, ["check", "--quick", "--cpu-only", "--no-regressions", "--report", "none.json"], 0)
    assert not any("replay" in i for i in ids(load(args, "none.json")))
    assert len(load(args, "none.json")["cases"]) < len(report["cases"])
    refused(args, ["check", "--regressions", "no-such-folder", "--report", "r.json"], "--regressions no-such-folder")

    one = str(corpus[0])
    proc = run(args, ["check", "--case", one, "--report", "one.json"], 0)
    replayed = load(args, "one.json")
    assert all(f"replay {corpus[0].name}" in i for i in ids(replayed)), ids(replayed)
    assert replayed["cases"][0]["source"]["files"][0]["role"] == "case"
    assert "skipped:" in proc.stdout

    # A case file without the kernel it failed on is not replayable.
    run(args, ["gen", "--dist", "fla", "--shape", "1,8,1,4,4", "-o", "plain.safetensors"], 0)
    refused(args, ["check", "--case", "plain.safetensors", "--report", "r.json"], "plain.safetensors", "'kernel'")

    # A planted defect: the failing case is shrunk, written under the report's folder, and replays.
    proc = run(args, ["check", "--property", "6", "--seed", "1", "--cpu-only", "--plant", "dropped-partial-chunk",
                      "--report", "planted/report.json"], 1)
    replays = [line.split("replay: ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("  replay: ")]
    assert replays, proc.stdout
    written = replays[0].split()[-1]
    assert pathlib.Path(args.workdir, written).parent == pathlib.Path(args.workdir, "planted/failed-cases"), written
    # Replayed without the planted defect the case passes: the CPU part of the sweep, on the written tensors.
    run(args, replays[0].split()[1:] + ["--report", "replayed.json"], 0)
    assert load(args, "replayed.json")["cases"][0]["source"]["files"][0]["path"] == written


def test_property(args):
    """The property sweep: deterministic for a seed, the same cases sharded, planted defects found and shrunk."""
    base = ["check", "--property", "12", "--seed", "3", "--cpu-only"]
    run(args, base + ["--report", "a.json"], 0)
    run(args, base + ["--report", "b.json"], 0)
    a = validate(args, pathlib.Path(args.workdir, "a.json")) or load(args, "a.json")
    assert figures(a) == figures(load(args, "b.json")), "the same seed drew other cases"
    assert a["sweep"]["name"] == "property" and a["sweep"]["cases_total"] == 12
    run(args, ["check", "--property", "12", "--seed", "4", "--cpu-only", "--report", "c.json"], 0)
    assert ids(load(args, "c.json")) != ids(a), "another seed drew the same cases"
    shards = run_shards(args, 3, base[1:], "p-")
    run(args, ["report", "merge", *shards, "-o", "merged.json"], 0)
    assert figures(load(args, "merged.json")) == figures(a)

    # Planted defects: found, and shrunk to the smallest failing case.
    for defect, expected in [("dropped-partial-chunk", "B1 T{} H1 K1 V1"), ("head-mixup", " H2 K1 V1")]:
        proc = run(args, ["check", "--property", "20", "--seed", "1", "--cpu-only", "--plant", defect,
                          "--report", f"{defect}.json"], 1)
        report = load(args, f"{defect}.json")
        shrunk = [c for c in report["cases"] if c["id"].startswith("shrunk ") and c["verdict"] != "pass"]
        assert shrunk, f"{defect}: nothing failed"
        for c in shrunk:
            chunk = int(c["notes"][0].split(" C")[1].split(";")[0])
            assert expected.format(chunk + 1) in c["id"], (defect, c["id"])
        print(f"{defect}: {len(shrunk)} shrunk failures, e.g. {shrunk[0]['id']}")
    refused(args, ["check", "--property", "5", "--cpu-only", "--report", "r.json"], "--property needs --seed")
    refused(args, ["check", "--property", "5", "--seed", "1", "--plant", "bogus", "--report", "r.json"], "--plant 'bogus'")
    refused(args, ["check", "--quick", "--time-budget", "5", "--report", "r.json"], "--time-budget")
    # 5000 positions: far more than 0.2 s holds however fast the reference (50 took 0.17 s after session 7's speedup).
    proc = run(args, ["check", "--property", "5000", "--seed", "1", "--cpu-only", "--time-budget", "0.2", "--report",
                      "budget.json"], 0)
    assert "the time budget (0.2 s) ran out" in proc.stdout, proc.stdout[-2000:]
    assert len({c["sweep_index"] for c in load(args, "budget.json")["cases"]}) < 5000


if __name__ == "__main__":
    scenario_main(globals(), "cli.scale", ["--source-dir"])
