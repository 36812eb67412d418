#!/usr/bin/env python3
"""End-to-end tests of the dplr binary (one scenario per ctest entry; exit 77 means skipped)."""
import argparse
import json
import math
import os
import pathlib
import subprocess
import sys

# Relative RMSE of fla's recordings against a float64 recurrence, measured when they were recorded
# (shared/data/recorded/README.md).
RECORDED = {
    "fla_chunk_default_bf16.safetensors": {"o": 2.9e-3, "ht": 9.6e-4, "dq": 1.8e-3, "dk": 2.1e-3, "dv": 3.2e-3,
                                           "da": 4.0e-3, "db": 4.2e-3, "dgk": 4.7e-3, "dh0": 1.6e-3},
    "fla_chunk_default_fp16.safetensors": {"o": 4.2e-4, "dgk": 7.8e-4},
    "fla_recurrent_default_bf16.safetensors": {"o": 1.7e-3, "ht": 4.5e-8},
}


# Checks that could not run (a missing Python package): the scenario then exits 77, which ctest reports as
# skipped, instead of passing with less checked than it says.
SKIPPED = []


def skip(reason):
    print(f"SKIP: {reason}")
    SKIPPED.append(reason)


def printed_half_unit(value, significant=2):
    """Half a unit in the last place of `value` printed with `significant` digits: 4.5e-8 -> 0.5e-9."""
    return 0.5 * 10.0 ** (math.floor(math.log10(abs(value))) - (significant - 1))


def run(args, cmd, expect_code=None):
    proc = subprocess.run([args.dplr] + cmd, capture_output=True, text=True, cwd=args.workdir)
    if expect_code is not None and proc.returncode != expect_code:
        sys.exit(f"dplr {' '.join(cmd)}: exit {proc.returncode}, expected {expect_code}\n"
                 f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def tensors_of(report, case=0):
    return {t["name"]: t for t in report["cases"][case]["tensors"]}


def validate(args, path):
    try:
        import jsonschema
    except ImportError:
        skip("jsonschema not installed: schema validation not done")
        return
    schema = json.load(open(args.schema))
    report = json.load(open(path))
    jsonschema.Draft202012Validator(schema).validate(report)
    return report


def test_recorded(args):
    recorded = pathlib.Path(args.recorded)
    if not recorded.is_dir():
        print(f"SKIP: {recorded} not found")
        sys.exit(77)
    for name, figures in RECORDED.items():
        report_path = os.path.join(args.workdir, name + ".json")
        run(args, ["verify", str(recorded / name), "--report", report_path], expect_code=0)
        report = validate(args, report_path) or json.load(open(report_path))
        tensors = tensors_of(report)
        for tensor, expected in figures.items():
            got = tensors[tensor]["metrics"]["rel_rmse"]
            # The README gives two significant digits: the value recomputed now must round to the printed
            # one, i.e. lie within half a unit of its last digit (plus 1e-6 relative: the reference here
            # and the recording-time float64 recurrence differ in the last bits).
            allowed = printed_half_unit(expected) + 1e-6 * expected
            assert abs(got - expected) <= allowed, \
                f"{name} {tensor}: rel RMSE {got:.4e}, recorded {expected:.1e} (allowed +-{allowed:.1e})"
            print(f"{name:42} {tensor:4} rel RMSE {got:.3e} (recorded {expected:.1e})")
        bits = report["cases"][0]["reference"]["estimated_bits"]
        assert min(bits.values()) > 60, bits
        # The inputs move into the problem before the comparison (verify_case); the report still lists them
        # as not compared, beside anything else the file holds.
        not_compared = set(report["cases"][0]["not_compared"]["only_in_actual"])
        assert {"q", "k", "v", "a", "b", "gk"} <= not_compared, not_compared


def test_exit_codes(args):
    recorded = pathlib.Path(args.recorded) / "fla_chunk_default_bf16.safetensors"
    # Bad usage and bad input: 2, with a message naming the problem.
    proc = run(args, ["verify", "no-such-file.safetensors"], expect_code=2)
    assert "no-such-file.safetensors" in proc.stderr, proc.stderr
    proc = run(args, ["frobnicate"], expect_code=2)
    # `bench --gpu --gpu-part` takes all, forward or training only (refused before any device is looked at).
    proc = run(args, ["bench", "--gpu", "--gpu-part", "nope"], expect_code=2)
    assert "--gpu-part" in proc.stderr + proc.stdout, proc.stderr
    pathlib.Path(args.workdir, "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}......")
    proc = run(args, ["verify", "bad.safetensors"], expect_code=2)
    assert "bad.safetensors" in proc.stderr, proc.stderr
    run(args, ["gen", "--shape", "1,8,1,4,4", "--dtype", "bf16", "-o", "wrong.safetensors"], expect_code=0)
    proc = run(args, ["ref", "wrong.safetensors", "--precision", "fast"], expect_code=2)
    assert "precision" in proc.stderr, proc.stderr
    if recorded.exists():
        # An accuracy failure: fla's bf16 o is 1.74x the floor, the strict policy allows 1.3x.
        proc = run(args, ["verify", str(recorded), "--policy", "strict", "--report", "strict.json"], expect_code=1)
        assert "FAIL" in proc.stdout, proc.stdout
        # Strict judges fla's fp32 ht, dgk, dh0 at the fp32 floor (our kernels' claim), where they fail too.
        assert "preset strict: F32:ht" in proc.stdout, proc.stdout
        # A tolerance override that admits both passes again.
        run(args, ["verify", str(recorded), "--policy", "strict", "--tol", "bf16:*=3,f32:*=off", "--report",
                   "loose.json"], expect_code=0)


def test_reports(args):
    run(args, ["gen", "--shape", "1,40,2,8,8", "--dtype", "f16", "--seed", "3", "-o", "case.safetensors"], expect_code=0)
    run(args, ["ref", "case.safetensors", "-o", "exact.safetensors"], expect_code=0)
    # A diff of a file against itself: every tensor identical.
    run(args, ["diff", "exact.safetensors", "exact.safetensors", "--report", "diff.json", "--junit", "diff.xml"],
        expect_code=0)
    report = validate(args, os.path.join(args.workdir, "diff.json")) or json.load(open(os.path.join(args.workdir, "diff.json")))
    for t in report["cases"][0]["tensors"]:
        assert t["metrics"]["rel_rmse"] == 0.0, t
    import xml.etree.ElementTree as ET
    ET.parse(os.path.join(args.workdir, "diff.xml"))


def test_gen_ref_roundtrip(args):
    # The exact answer written by `ref`, stored in f16 next to the inputs, verifies with floor ratio ~1.
    run(args, ["gen", "--shape", "2,33,2,5,7", "--dtype", "f16", "--seed", "9", "-o", "case.npz"], expect_code=0)
    run(args, ["ref", "case.npz", "-o", "exact.safetensors"], expect_code=0)
    try:
        import numpy as np
    except ImportError:
        skip("numpy not installed: the f16 round trip not done")
        return
    case = {k: v for k, v in np.load(os.path.join(args.workdir, "case.npz")).items() if not k.startswith("__metadata__")}
    from safetensors.numpy import load_file
    exact = load_file(os.path.join(args.workdir, "exact.safetensors"))
    for name in ("o", "dq", "dk", "dv", "da", "db"):
        case[name] = exact[name].astype(np.float16)
    for name in ("ht", "dgk", "dh0"):
        case[name] = exact[name].astype(np.float32)
    np.savez(os.path.join(args.workdir, "rounded.npz"), **case)
    run(args, ["verify", "rounded.npz", "--report", "rounded.json"], expect_code=0)
    report = json.load(open(os.path.join(args.workdir, "rounded.json")))
    for name, t in tensors_of(report).items():
        ratio = t["metrics"]["floor"]["ratio"]
        assert ratio <= 1.0 + 1e-9, f"{name}: floor ratio {ratio} for the correctly rounded answer"


def test_gradcheck(args):
    run(args, ["gen", "--shape", "1,6,2,3,3", "--dtype", "f64", "--gk-dtype", "f64", "-o", "small.safetensors"],
        expect_code=0)
    proc = run(args, ["gradcheck", "small.safetensors", "--precision", "qd"], expect_code=0)
    assert "dgk" in proc.stdout and "all gradients within tolerance" in proc.stdout, proc.stdout
    run(args, ["gradcheck", "small.safetensors", "--precision", "256", "--per-element"], expect_code=0)
    recorded = pathlib.Path(args.recorded) / "fla_chunk_default_bf16.safetensors"
    if recorded.exists():
        proc = run(args, ["gradcheck", str(recorded), "--recorded", "--precision", "dd", "--directions", "8"],
                   expect_code=0)
        print(proc.stdout)


def test_gradcheck_gpu(args):
    """`gradcheck --gpu`: with a CUDA device it checks our GPU backward (exit 0 on this small case); without one it
    refuses (exit 2) saying it needs a CUDA device, before computing anything. Misused options are refused either way."""
    run(args, ["gen", "--shape", "1,70,2,8,8", "--dtype", "f32", "-o", "gpu_small.safetensors"], expect_code=0)
    proc = run(args, ["gradcheck", "gpu_small.safetensors", "--gpu", "--precision", "dd"])
    if proc.returncode == 2:
        assert "gradcheck --gpu needs a CUDA device" in proc.stderr, proc.stderr
        assert proc.stdout == "", f"printed before refusing:\n{proc.stdout}"
        print(f"no CUDA device here; refused as expected: {proc.stderr.strip()}")
    else:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        for fragment in ("our GPU recurrent backward", "(a) against the exact analytic backward", "dgk",
                         "every gradient within the policy", "(b) finite differences", "all gradients within tolerance"):
            assert fragment in proc.stdout, f"{fragment!r} not in:\n{proc.stdout}"
        print(proc.stdout)
    # The chunk backward: refused as not built yet until it lands, then as --kernel recurrent (no device: exit 2).
    proc = run(args, ["gradcheck", "gpu_small.safetensors", "--gpu", "--kernel", "chunk", "--precision", "dd"])
    assert proc.returncode == 0 or (proc.returncode == 2 and ("chunk backward is not built yet" in proc.stderr or
                                                              "needs a CUDA device" in proc.stderr)), \
        f"--kernel chunk: exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    for option in (["--kernel", "recurrent"], ["--policy", "strict"], ["--tol", "dq=2"]):
        refused(args, ["gradcheck", "gpu_small.safetensors"] + option, "apply to --gpu only")
    refused(args, ["gradcheck", "gpu_small.safetensors", "--gpu", "--recorded"], "--gpu and --recorded")
    refused(args, ["gradcheck", "gpu_small.safetensors", "--gpu", "--chunk-size", "16"], "--chunk-size is for --kernel chunk")


def test_stages(args):
    run(args, ["stages", "--shape", "1,40,2,8,8", "--dtype", "f32", "-C", "16", "-o", "stages.safetensors"],
        expect_code=0)
    # The exact stages compared with themselves rounded to float: every stage passes.
    from safetensors.numpy import load_file, save_file
    import numpy as np
    stages = load_file(os.path.join(args.workdir, "stages.safetensors"))
    save_file({k: v.astype(np.float32) for k, v in stages.items()}, os.path.join(args.workdir, "kernel.safetensors"))
    run(args, ["stages", "--shape", "1,40,2,8,8", "--dtype", "f32", "-C", "16", "-o", "stages2.safetensors",
               "--compare", "kernel.safetensors", "--report", "stages.json"], expect_code=0)
    # Corrupt stage WY: it is named as the first to diverge.
    bad = {k: v.astype(np.float32) for k, v in stages.items()}
    bad["w"] = bad["w"] * np.float32(1.01)
    save_file(bad, os.path.join(args.workdir, "bad.safetensors"))
    proc = run(args, ["stages", "--shape", "1,40,2,8,8", "--dtype", "f32", "-C", "16", "-o", "stages3.safetensors",
                      "--compare", "bad.safetensors", "--report", "bad.json"], expect_code=1)
    assert "first diverging stage: WY" in proc.stdout, proc.stdout
    report = validate(args, os.path.join(args.workdir, "bad.json")) or json.load(open(os.path.join(args.workdir, "bad.json")))
    assert report["cases"][0]["stages"]["first_diverging_stage"] == "WY"
    # A wrong backward stage (the forward ones right) is named too: dh of h_bwd, dA_ab of WY_bwd, dgk of cumsum_bwd.
    for tensor, stage in (("dh", "h_bwd"), ("dA_ab", "WY_bwd"), ("dgk", "cumsum_bwd")):
        bad = {k: v.astype(np.float32) for k, v in stages.items()}
        bad[tensor] = bad[tensor] * np.float32(1.001)
        save_file(bad, os.path.join(args.workdir, f"bad_{tensor}.safetensors"))
        proc = run(args, ["stages", "--shape", "1,40,2,8,8", "--dtype", "f32", "-C", "16", "-o", "stages4.safetensors",
                          "--compare", f"bad_{tensor}.safetensors", "--report", f"bad_{tensor}.json"], expect_code=1)
        assert f"first diverging stage: {stage}" in proc.stdout, proc.stdout
    # --gpu: our staged kernels, forward and backward one stage a kernel. Without a device it refuses before computing.
    proc = run(args, ["stages", "--shape", "1,40,2,8,8", "--dtype", "bf16", "-C", "16", "-o", "stages5.safetensors",
                      "--gpu", "--report", "gpu.json"])
    if proc.returncode == 2:
        assert "stages --gpu needs a CUDA device" in proc.stderr, proc.stderr
        print(f"no CUDA device here; refused as expected: {proc.stderr.strip()}")
    else:
        assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        assert "first diverging stage: none" in proc.stdout, proc.stdout
    refused(args, ["stages", "--shape", "1,40,2,8,8", "--gpu", "--compare", "kernel.safetensors"], "--gpu and --compare")
    refused(args, ["stages", "--shape", "1,40,2,8,8", "--gpu-out", "x.safetensors"], "--gpu-out belongs to --gpu")


def test_check_quick(args):
    proc = run(args, ["check", "--quick", "--report", "check.json"])
    print(proc.stdout[-3000:])
    if proc.returncode != 0:
        sys.exit(f"dplr check --quick: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    assert "skipped:" in proc.stdout
    report = validate(args, os.path.join(args.workdir, "check.json")) or json.load(open(os.path.join(args.workdir, "check.json")))
    # The backward cases: run where there is a device, else named among what was skipped.
    skipped_gpu = [line for line in proc.stdout.splitlines() if line.startswith("skipped: GPU kernels (")]
    if skipped_gpu:
        assert "backward cases of chunk-bwd, chunk-bwd-fma, recurrent-bwd" in skipped_gpu[0], skipped_gpu[0]
    else:
        ids = [c["id"] for c in report["cases"]]
        for kernel in ("gpu chunk-bwd C16", "gpu chunk-bwd-fma C16", "gpu chunk-bwd C64", "gpu recurrent-bwd"):
            assert any(i.startswith(kernel + ":") for i in ids), (kernel, ids)
    refused(args, ["check", "--gpu-kernels", "chunk-backward"], "chunk-backward")
    refused(args, ["check", "--cpu-only", "--gpu-kernels", "chunk-bwd"], "--gpu-kernels and --cpu-only")


def test_check_backward_gpu(args):
    """(label gpu) The backward part of `dplr check` on a device: every chunk-bwd case judges the seven gradients and
    every stage, o_bwd ... cumsum_bwd included, and passes; recurrent-bwd cases judge the gradients. Exit 77 without
    a device."""
    proc = run(args, ["check", "--quick", "--gpu-only", "--gpu-kernels", "chunk-bwd,chunk-bwd-fma,recurrent-bwd",
                      "--no-regressions", "--report", "bwd.json"])
    if proc.returncode == 2 and "no GPU kernels to run" in proc.stderr:
        print(f"SKIP: no CUDA device: {proc.stderr.strip()}")
        sys.exit(77)
    print(proc.stdout[-4000:])
    assert proc.returncode == 0, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    report = validate(args, os.path.join(args.workdir, "bwd.json")) or json.load(open(os.path.join(args.workdir, "bwd.json")))
    gradients = ["dq", "dk", "dv", "da", "db", "dgk", "dh0"]
    kinds = set()
    for c in report["cases"]:
        kind = c["id"].split(":")[0]
        kinds.add(kind.split(" C")[0])
        assert c["verdict"] == "pass", c["id"]
        assert [t["name"] for t in c["tensors"]] == gradients, (c["id"], [t["name"] for t in c["tensors"]])
        if kind.startswith("gpu chunk-bwd"):
            stages = {r["stage"] for r in c["stages"]["results"]}
            for stage in ("A", "WY", "h", "o_bwd", "h_bwd", "WY_bwd", "A_bwd", "cumsum_bwd"):
                assert stage in stages, (c["id"], stage)
            assert c["stages"]["first_diverging_stage"] is None, c["id"]
    assert kinds == {"gpu chunk-bwd", "gpu chunk-bwd-fma", "gpu recurrent-bwd"}, kinds
    assert "GPU cases of the kernels chunk, chunk-fused, recurrent: --gpu-kernels" in proc.stdout, proc.stdout


def test_rigorous(args):
    """--rigorous on verify and check: a ball reference, its bits proven (reference.proven_bits), no estimate."""
    recorded = pathlib.Path(args.recorded) / "fla_recurrent_default_bf16.safetensors"
    proc = run(args, ["verify", str(recorded), "--rigorous", "--proven-bits", "40", "--report", "rigorous.json"])
    if proc.returncode == 2 and "not in this build" in proc.stderr:
        skip("this dplr has no Arb (the rigorous mode)")
        return
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "proven bits (worst tensor)" in proc.stdout, proc.stdout
    validate(args, os.path.join(args.workdir, "rigorous.json"))
    with open(os.path.join(args.workdir, "rigorous.json")) as f:
        reference = json.load(f)["cases"][0]["reference"]
    assert reference["precision"].startswith("ball"), reference
    assert reference["estimated_bits"] == {} and reference["estimated_against"] is None, reference
    assert min(reference["proven_bits"].values()) >= 40, reference
    # The estimate, without --rigorous, under its v2 name and with no proven bits.
    run(args, ["verify", str(recorded), "--report", "estimated.json"], expect_code=0)
    with open(os.path.join(args.workdir, "estimated.json")) as f:
        reference = json.load(f)["cases"][0]["reference"]
    assert reference["proven_bits"] == {} and min(reference["estimated_bits"].values()) > 60, reference
    # check's gate needs 80 proven bits, has no rigorous property sweep, and --gpu-only skips what it applies to.
    refused(args, ["check", "--quick", "--cpu-only", "--rigorous", "--proven-bits", "70"], "--proven-bits 70", "80")
    refused(args, ["check", "--property", "2", "--seed", "1", "--rigorous"], "--rigorous and --property")
    refused(args, ["check", "--quick", "--gpu-only", "--rigorous"], "--rigorous and --gpu-only")


def refused(args, cmd, *expected):
    """`dplr cmd` must exit 2 with an error naming each expected fragment (file, tensor, expectation)."""
    proc = run(args, cmd, expect_code=2)
    for fragment in expected:
        assert fragment in proc.stderr, f"dplr {' '.join(cmd)}: {fragment!r} not in stderr:\n{proc.stderr}"
    return proc


def test_bad_input(args):
    """Issue 11: every bad input a clear refusal (exit 2 naming file, tensor and expectation), or a correct answer."""
    import resource
    import numpy as np
    from safetensors.numpy import load_file, save_file
    import shutil
    work = pathlib.Path(args.workdir)
    shutil.rmtree(work)  # files of an earlier run (a folder case, a symlink) would change what is tested
    work.mkdir()

    # 4. An honest 64 MiB npz member in a small file, under a 100 MiB limit: refused from its header, before
    # it is inflated (the process stays far below the member's size).
    np.savez_compressed(work / "big.npz", q=np.zeros((1, 1 << 22, 1, 4), np.float32))
    assert (work / "big.npz").stat().st_size < 1 << 20
    refused(args, ["verify", "big.npz", "--max-memory", "100M"], "big.npz", "tensor 'q'", "above the memory limit")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert peak_kib < 48 * 1024, f"refusing a 64 MiB member took {peak_kib} KiB"
    # A 2 GiB-claiming safetensors header length is refused from its first 8 bytes.
    (work / "badlen.safetensors").write_bytes((1 << 31).to_bytes(8, "little") + b"{}" * 8)
    refused(args, ["ref", "badlen.safetensors"], "badlen.safetensors", "header length field")
    refused(args, ["ref", "--max-memory", "12", "--shape", "1,8,1,2,2"], "memory limit")
    refused(args, ["ref", "--max-memory", "lots"], "--max-memory 'lots'")

    # 1. Growth past double's range: refused naming the file and tensor, never "certified".
    run(args, ["gen", "--shape", "1,32,2,8,8", "--dtype", "f32", "-o", "g.safetensors"], expect_code=0)
    case = load_file(work / "g.safetensors")
    grown = dict(case, gk=np.full_like(case["gk"], 50.0))
    save_file(grown, work / "g50.safetensors")
    for cmd in (["ref", "g50.safetensors"], ["stages", "g50.safetensors", "-C", "16"]):
        refused(args, cmd, "g50.safetensors", "beyond double's range")
    # An overflow of double-double alone (exp(800) with a zero initial state) moves to MPFR and is certified.
    first = {k: v for k, v in case.items() if k not in ("h0", "do", "dht")}
    first["gk"] = first["gk"].copy()
    first["gk"][0, 0] = 800.0
    save_file(first, work / "g800.safetensors")
    proc = run(args, ["ref", "g800.safetensors", "-o", "r800.safetensors"], expect_code=0)
    assert "overflowed" in proc.stdout and "repeated at mpfr" in proc.stdout, proc.stdout
    assert "nan" not in proc.stdout.split("estimated bits")[1], proc.stdout
    # --rigorous (Arb balls, where built): NAME.radius beside each NAME, bits proven; unbounded growth refused.
    proc = run(args, ["ref", "--shape", "1,16,2,4,4", "--rigorous", "--proven-bits", "70", "-o", "rig.safetensors"])
    if "not in this build" in proc.stdout + proc.stderr:
        assert proc.returncode == 2, proc.stdout + proc.stderr
    else:
        assert proc.returncode == 0 and "proven bits" in proc.stdout, proc.stdout + proc.stderr
        rig = load_file(work / "rig.safetensors")
        for name in ("o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"):
            assert rig[name + ".radius"].shape == rig[name].shape and (rig[name + ".radius"] >= 0).all(), name
        refused(args, ["ref", "g50.safetensors", "--rigorous"], "g50.safetensors", "could not bound")

    # 2. A folder of .npy in verify, diff and stages --compare.
    run(args, ["gen", "--shape", "1,16,1,4,4", "--dtype", "f32", "-o", "folder"], expect_code=0)
    run(args, ["ref", "folder", "-o", "folder_ref.safetensors"], expect_code=0)
    for name, value in load_file(work / "folder_ref.safetensors").items():
        np.save(work / "folder" / f"{name}.npy", value.astype(np.float32))
    run(args, ["verify", "folder", "--report", "folder.json"], expect_code=0)
    report = json.load(open(work / "folder.json"))
    assert len(report["cases"][0]["source"]["files"][0]["sha256"]) == 64, report["cases"][0]["source"]
    run(args, ["diff", "folder", "folder", "--report", "folder-diff.json"], expect_code=0)
    run(args, ["stages", "folder", "-C", "8", "-o", "stages_folder"], expect_code=0)
    run(args, ["stages", "folder", "-C", "8", "-o", "stages2.safetensors", "--compare", "stages_folder",
               "--report", "stages-folder.json"], expect_code=0)

    # 5. Sizes checked before allocating.
    refused(args, ["gen", "--shape", "1000000,1000000,1,1,1", "-o", "huge.safetensors"], "memory limit")
    run(args, ["gen", "--shape", "1,256,2,64,64", "-o", "default.safetensors"], expect_code=0)
    refused(args, ["stages", "default.safetensors", "-C", "300000"], "default.safetensors", "chunk size 300000")
    os.symlink("/dev/zero", work / "zero.safetensors")
    refused(args, ["ref", "zero.safetensors"], "zero.safetensors", "not a regular file")

    # 6. Silent misreads.
    small = load_file(work / "g.safetensors")
    for key, value, fragment in (("reverse", "yes", "metadata 'reverse' = 'yes'"),
                                 ("scale", "0.5abc", "metadata 'scale' = '0.5abc'"),
                                 ("scale", "nan", "metadata 'scale' = 'nan'")):
        save_file(small, work / "meta.safetensors", metadata={key: value})
        refused(args, ["ref", "meta.safetensors"], "meta.safetensors", fragment)
    header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode() + b"\0junk"
    (work / "tail.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + bytes(4))
    refused(args, ["diff", "tail.safetensors", "tail.safetensors"], "tail.safetensors", "NUL byte")
    save_file(dict(small, cu_seqlens=np.zeros((0,), np.int64)), work / "cu0.safetensors")
    refused(args, ["ref", "cu0.safetensors"], "cu0.safetensors", "'cu_seqlens'", "N >= 1")
    exact = load_file(work / "folder_ref.safetensors")
    inputs = {k: np.load(work / "folder" / f"{k}.npy") for k in ("q", "k", "v", "a", "b", "gk", "h0", "do", "dht")}
    save_file(dict(inputs, o=exact["o"].astype(np.int32)), work / "int_o.safetensors")
    refused(args, ["verify", "int_o.safetensors"], "int_o.safetensors", "tensor 'o'", "floating dtype")
    for option in (["--scale", "2"], ["--reverse"], ["--shape", "1,8,1,2,2"]):
        for command in ("ref", "gradcheck", "stages"):
            refused(args, [command, "g.safetensors"] + option, "g.safetensors", option[0], "a FILE was given")

    # 7. Checks that check nothing.
    for cmd, fragment in ((["gradcheck", "g.safetensors", "--directions", "0"], "--directions"),
                          (["gradcheck", "g.safetensors", "--directions", "-2"], "--directions"),
                          (["ref", "g.safetensors", "--threads", "-1"], "--threads"),
                          (["ref", "g.safetensors", "--checkpoint-interval", "-5"], "--checkpoint-interval"),
                          (["ref", "--seed", "-1"], "--seed"),
                          (["ref", "--scale", "nan"], "--scale")):
        refused(args, cmd, fragment)
    refused(args, ["verify", "folder", "--precision", "24"], "folder", "coarser than the F32 data", "34 bits")
    refused(args, ["stages", "folder", "-C", "8", "--precision", "24", "--compare", "stages_folder"], "stages_folder",
            "coarser than the F32 data")

    # 9. Help says what is really used.
    proc = run(args, ["--help"], expect_code=0)
    for fragment in ("cu_seqlens", "dh0", "reverse", "Exit codes", "3 internal error"):
        assert fragment in proc.stdout, proc.stdout
    for command, preset in (("check", "strict"), ("stages", "strict"), ("verify", "default")):
        help_text = run(args, [command, "--help"], expect_code=0).stdout
        policy_line = next(line for line in help_text.splitlines() if "--policy " in line)
        assert f"={preset}" in policy_line, policy_line
    assert "{false}" not in run(args, ["ref", "--help"], expect_code=0).stdout


def scenario_main(scenarios, label, extra_options=()):
    """Runs the scenario named on the command line: `scenarios` holds its test_NAME functions (a module's
    globals), `label` prefixes the closing line, `extra_options` are further required --options."""
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario")
    for option in ("--dplr", "--recorded", "--schema", "--workdir", *extra_options):
        parser.add_argument(option, required=True)
    args = parser.parse_args()
    args.dplr = os.path.abspath(args.dplr)
    os.makedirs(args.workdir, exist_ok=True)
    scenarios["test_" + args.scenario](args)
    if SKIPPED:
        print(f"{label}.{args.scenario}: skipped in part: {'; '.join(SKIPPED)}")
        sys.exit(77)
    print(f"{label}.{args.scenario}: passed")


if __name__ == "__main__":
    scenario_main(globals(), "cli")
