"""`dplr verify --convention rwkv7 / --layout head-first / --map`, and dv.verify's same options, on files
written the way RWKV-7 and head-first users write them: safetensors of their own names (safetensors.numpy
writes the bytes safetensors.torch does) and numpy's savez."""
import json
import subprocess

import ml_dtypes
import numpy as np
import pytest

import dplr_verify as dv

BF16 = np.dtype(ml_dtypes.bfloat16)
SHAPE = dict(B=1, T=48, H=2, K=8, V=8)
CLAMPW = np.exp(-0.5)


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


DECAYS = {  # gk = g(w), g'(w)
    "clampw": (lambda w: -CLAMPW * sigmoid(w), lambda w: -CLAMPW * sigmoid(w) * (1.0 - sigmoid(w))),
    "exp": (lambda w: -np.exp(w), lambda w: -np.exp(w)),
    "log": (lambda w: w, lambda w: np.ones_like(w)),
}


def verify_cli(dplr_binary, path, *options, expect_code=0, workdir):
    report = workdir / "report.json"
    proc = subprocess.run([dplr_binary, "verify", str(path), "--report", str(report), *options],
                          capture_output=True, text=True, cwd=workdir)
    assert proc.returncode == expect_code, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return (json.loads(report.read_text()) if expect_code != 2 else None), proc


def rwkv7_recording(decay, seed=0):
    """An RWKV-7 kernel's file as its author writes it: r, w, k, v, a, b, dy in, y and dr, dw, dk, dv, da,
    db out (here the exact answers rounded to the kernel's dtypes: bf16 y, fp32 gradients), no state."""
    case = dv.gen("fla", **SHAPE, dtype="bf16", seed=seed, h0=False)
    rng = np.random.default_rng(seed)
    w = rng.normal(-0.5, 1.0, case["gk"].shape).astype(np.float32)
    if decay == "log":
        w = -np.abs(w)
    g, dg = DECAYS[decay]
    gk = g(w.astype(np.float64))
    exact = dv.reference(q=case["q"], k=case["k"], v=case["v"], a=case["a"], b=case["b"], gk=gk, do=case["do"],
                         scale=1.0)
    return {"r": case["q"], "w": w, "k": case["k"], "v": case["v"], "a": case["a"], "b": case["b"],
            "dy": case["do"], "y": exact["o"].astype(BF16), "dr": exact["dq"].astype(np.float32),
            "dw": (exact["dgk"] * dg(w.astype(np.float64))).astype(np.float32),
            **{name: exact[name].astype(np.float32) for name in ("dk", "dv", "da", "db")}}


@pytest.mark.parametrize("decay", ["clampw", "exp", "log"])
def test_rwkv7_names_and_decays(dplr_binary, tmp_path, decay):
    import safetensors.numpy

    tensors = rwkv7_recording(decay)
    path = tmp_path / "rwkv7.safetensors"
    safetensors.numpy.save_file(tensors, str(path))
    report, proc = verify_cli(dplr_binary, path, "--convention", "rwkv7", "--decay", decay, "--policy", "strict",
                              workdir=tmp_path)
    case = report["cases"][0]
    assert [t["name"] for t in case["tensors"]] == ["y", "dr", "dk", "dv", "da", "db", "dw"]
    assert case["options"]["scale"] == 1.0 and case["options"]["h0"] is False
    assert any("no h0" in note for note in case["notes"]) and any("no ht" in note for note in case["notes"])
    assert "note: rwkv7: no h0" in proc.stdout  # the table says so
    assert case["dtypes"]["w"] == "F32" and report["verdict"] == "pass"
    dw = next(t for t in case["tensors"] if t["name"] == "dw")
    # fp32 dw rounded from a float64 chain rule: near the fp32 floor, so the chain rule in the tool is right.
    assert dw["dtype"] == "F32" and dw["metrics"]["rel_rmse"] < 1e-6

    # The same file through the Python package gives the same verdict and figures.
    from_python = dv.verify(path, "strict", convention="rwkv7", decay=decay)
    assert [t["metrics"]["rel_rmse"] for t in from_python["cases"][0]["tensors"]] == \
           [t["metrics"]["rel_rmse"] for t in case["tensors"]]


def test_rwkv7_wrong_decay_fails_dw_and_y(dplr_binary, tmp_path):
    path = tmp_path / "rwkv7.npz"
    np.savez(path, **{name: (x.astype(np.float32) if x.dtype == BF16 else x) for name, x in rwkv7_recording("clampw").items()})
    report, _ = verify_cli(dplr_binary, path, "--convention", "rwkv7", "--decay", "exp", expect_code=1, workdir=tmp_path)
    failed = {t["name"] for t in report["cases"][0]["tensors"] if t["verdict"] == "fail"}
    assert {"y", "dw"} <= failed


def test_rwkv7_needs_a_decay_and_names_the_planted_error(dplr_binary, tmp_path):
    tensors = rwkv7_recording("clampw", seed=3)
    path = tmp_path / "rwkv7.npz"
    np.savez(path, **{name: (x.astype(np.float32) if x.dtype == BF16 else x) for name, x in tensors.items()})
    _, proc = verify_cli(dplr_binary, path, "--convention", "rwkv7", expect_code=2, workdir=tmp_path)
    assert "decay parametrization" in proc.stderr and "rwkv7.npz" in proc.stderr
    dr = tensors["dr"].copy()
    dr[0, 30, 1, 4] += 10 * np.abs(dr).max()
    with pytest.raises(AssertionError, match=r"worst element dr\[0, 30, 1, 4\] \(batch 0, token 30, head 1\)"):
        dv.assert_close_to_exact({**tensors, "dr": dr}, convention="rwkv7", decay="clampw")


def head_first(x):
    return np.ascontiguousarray(np.swapaxes(x, 1, 2))


def test_head_first_layout_and_map(dplr_binary, tmp_path):
    case = dv.gen("fla", **SHAPE, dtype="bf16", seed=4)
    exact = dv.reference(**case)
    token = ("q", "k", "v", "a", "b", "gk", "do")
    tensors = {name: head_first(case[name]) if name in token else case[name] for name in ("q", "k", "v", "a", "b",
                                                                                          "gk", "h0", "do", "dht")}
    tensors["out"] = head_first(exact["o"]).astype(np.float32)  # an fp32 head-first kernel's output, named its way
    tensors["final_state"] = exact["ht"].astype(np.float32)
    for name in ("dq", "dk", "dv", "da", "db", "dgk"):
        tensors[name] = head_first(exact[name]).astype(np.float32)
    path = tmp_path / "head_first.npz"
    np.savez(path, **{n: (x.astype(np.float32) if x.dtype == BF16 else x) for n, x in tensors.items()})
    options = ["--layout", "head-first", "--map", "out=o", "--map", "final_state=ht", "--policy", "strict"]
    report, proc = verify_cli(dplr_binary, path, *options, workdir=tmp_path)
    names = [t["name"] for t in report["cases"][0]["tensors"]]
    assert names == ["out", "final_state", "dq", "dk", "dv", "da", "db", "dgk"] and report["verdict"] == "pass"
    assert "layout head-first" in proc.stdout

    # Read batch-first, the same file is not a case (H = 48 from q): the tool names the file, the tensor and
    # the shape it expected.
    _, proc = verify_cli(dplr_binary, path, "--map", "out=o", expect_code=2, workdir=tmp_path)
    assert "head_first.npz: tensor 'h0' has shape [1, 2, 8, 8], expected [1, 48, 8, 8]" in proc.stderr

    # A head-first kernel's error is reported at its [B, T, H, D] position.
    broken = dict(tensors)
    out = broken["out"].copy()
    out[0, 1, 20, 3] += 10 * np.abs(out).max()  # head 1, token 20
    broken["out"] = out
    with pytest.raises(AssertionError, match=r"out\[0, 20, 1, 3\] \(batch 0, token 20, head 1\)"):
        dv.assert_close_to_exact(broken, layout="head-first", map={"out": "o", "final_state": "ht"})


def test_map_errors_name_the_tensor(dplr_binary, tmp_path):
    case = dv.gen("fla", **SHAPE, dtype="f32", seed=5, backward=False)
    path = tmp_path / "case.safetensors"
    dv.record(path, **case, o=dv.reference(**case)["o"].astype(np.float32))
    _, proc = verify_cli(dplr_binary, path, "--map", "y=o", expect_code=2, workdir=tmp_path)
    assert "'y'" in proc.stderr and "lacks" in proc.stderr
    _, proc = verify_cli(dplr_binary, path, "--map", "q=o", expect_code=2, workdir=tmp_path)
    assert "both map to the contract's 'o'" in proc.stderr
