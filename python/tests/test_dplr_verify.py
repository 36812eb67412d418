"""dplr_verify against closed forms, against the `dplr` binary on the same files, and on planted errors."""
import json
import subprocess

import ml_dtypes
import numpy as np
import pytest

import dplr_verify as dv

BF16 = np.dtype(ml_dtypes.bfloat16)
SMALL = dict(B=1, T=32, H=2, K=8, V=8)


def run_dplr(dplr_binary, *args, expect_code=0, cwd=None):
    proc = subprocess.run([dplr_binary, *map(str, args)], capture_output=True, text=True, cwd=cwd)
    assert proc.returncode == expect_code, f"dplr {' '.join(map(str, args))}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def exact_outputs_in(case, exact, dtype):
    """The case with the exact outputs and gradients rounded to `dtype` (what a perfect kernel stores)."""
    names = ["o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"]
    return {**case, **{name: exact[name].astype(dtype) for name in names if name in exact}}


def comparable(report):
    """The report without what differs between two runs of the same check (times, argv, where the case came from)."""
    report = json.loads(json.dumps(report))
    for key in ("start_time", "duration_seconds", "command_line"):
        report.pop(key)
    for case in report["cases"]:
        case["reference"].pop("seconds")
        case.pop("source")
        case.pop("id")
    return report


def test_reference_at_one_token_is_the_closed_form():
    # T = 1: S = diag(exp(gk)) h0 + b (h0^T a)^T + k v^T, o = scale S^T q; dq = scale S do, dh0 from G = scale q do^T + dht.
    rng = np.random.default_rng(3)
    K, V, scale = 4, 3, 0.37
    q, k, a, b = (rng.standard_normal((1, 1, 1, K)) for _ in range(4))
    gk = -rng.random((1, 1, 1, K))
    v, do = rng.standard_normal((1, 1, 1, V)), rng.standard_normal((1, 1, 1, V))
    h0, dht = rng.standard_normal((1, 1, K, V)), rng.standard_normal((1, 1, K, V))
    exact = dv.reference(q=q, k=k, v=v, a=a, b=b, gk=gk, h0=h0, do=do, dht=dht, scale=scale)

    S0 = h0[0, 0]
    x = S0.T @ a[0, 0, 0]
    S = np.exp(gk[0, 0, 0])[:, None] * S0 + np.outer(b[0, 0, 0], x) + np.outer(k[0, 0, 0], v[0, 0, 0])
    G = dht[0, 0] + scale * np.outer(q[0, 0, 0], do[0, 0, 0])
    y = G.T @ b[0, 0, 0]
    np.testing.assert_allclose(exact["o"][0, 0, 0], scale * S.T @ q[0, 0, 0], rtol=1e-13)
    np.testing.assert_allclose(exact["ht"][0, 0], S, rtol=1e-13)
    np.testing.assert_allclose(exact["dq"][0, 0, 0], scale * S @ do[0, 0, 0], rtol=1e-13)
    np.testing.assert_allclose(exact["dh0"][0, 0], np.exp(gk[0, 0, 0])[:, None] * G + np.outer(a[0, 0, 0], y),
                               rtol=1e-13)
    assert exact["o"].dtype == np.float64
    assert set(exact["estimated_bits"]) == {"o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"}
    assert min(exact["estimated_bits"].values()) > 90  # dd certified against td


def test_reference_rigorous_proves_its_bits():
    # rigorous=True: ball arithmetic; the bits are proven by the radii (no estimate), and the radii bound the
    # distance to a far more precise run (MPFR 400 bits, the truth to about 2^-390).
    case = dv.gen("fla", **SMALL, dtype="f32", seed=5)
    balls = dv.reference(**case, rigorous=True, proven_bits=60)
    assert balls["precision"].startswith("ball"), balls["precision"]
    assert balls["estimated_bits"] == {}
    names = {"o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"}
    assert set(balls["proven_bits"]) == names and set(balls["radius"]) == names
    assert min(balls["proven_bits"].values()) >= 60
    truth = dv.reference(**case, precision="400", certify=False)
    for name in names:
        radius = balls["radius"][name]
        # Both sides are rounded to float64: each within half an ulp of its exact value.
        ulp = np.spacing(np.abs(balls[name]))
        assert np.all(np.abs(truth[name] - balls[name]) <= radius + ulp), name
    # The estimate's name: the non-rigorous run has estimated bits and no proven ones.
    estimated = dv.reference(**case)
    assert estimated["proven_bits"] == {} and estimated["radius"] == {}
    assert min(estimated["estimated_bits"].values()) > 80


def test_reference_estimate_extrapolated_agrees_with_repeat():
    # estimate="extrapolated": dd's bits from its agreement with double plus the gap (less the margin); on a
    # well-conditioned case both estimates claim more than 90 bits, the same values, and a bad name is refused.
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=5)
    repeat = dv.reference(**case)
    extrapolated = dv.reference(**case, estimate="extrapolated")
    assert set(extrapolated["estimated_bits"]) == set(repeat["estimated_bits"])
    assert min(extrapolated["estimated_bits"].values()) > 90
    for name in ("o", "dgk"):
        np.testing.assert_array_equal(extrapolated[name], repeat[name], err_msg=name)
    with pytest.raises(ValueError, match="estimate 'guess'"):
        dv.reference(**case, estimate="guess")
    report = dv.verify(exact_outputs_in(case, repeat, BF16), estimate="extrapolated")
    assert report["verdict"] == "pass"
    assert report["cases"][0]["reference"]["estimate_method"] == "extrapolated"


def test_reference_equals_dplr_ref(dplr_binary, tmp_path):
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=5)
    dv.record(tmp_path / "case.safetensors", **case)
    run_dplr(dplr_binary, "ref", tmp_path / "case.safetensors", "-o", tmp_path / "exact.safetensors", cwd=tmp_path)
    from_cli = dv.read(tmp_path / "exact.safetensors")
    exact = dv.reference(**case)
    for name in ("o", "ht", "dq", "dk", "dv", "da", "db", "dgk", "dh0"):
        np.testing.assert_array_equal(exact[name], from_cli[name].astype(np.float64), err_msg=name)


def test_verify_of_a_file_is_the_report_dplr_verify_writes(dplr_binary, recorded_dir, tmp_path, report_schema):
    path = recorded_dir / "fla_chunk_default_bf16.safetensors"
    run_dplr(dplr_binary, "verify", path, "--report", tmp_path / "cli.json", cwd=tmp_path)
    from_cli = json.loads((tmp_path / "cli.json").read_text())
    report = dv.verify(path)
    report_schema.validate(report)
    assert report["verdict"] == from_cli["verdict"] == "pass"
    assert report["cases"][0]["source"] == from_cli["cases"][0]["source"]
    assert comparable(report) == comparable(from_cli)
    assert "dgk" in report.table and "rel RMSE" in report.table


def test_verify_of_a_dict_equals_verify_of_its_file(recorded_dir, report_schema):
    path = recorded_dir / "fla_chunk_default_bf16.safetensors"
    tensors = dv.read(path)
    metadata = tensors.pop("metadata")
    report = dv.verify({**tensors, "scale": float(metadata["scale"])})
    report_schema.validate(report)
    source = report["cases"][0]["source"]["files"]
    assert [(f["role"], f["path"]) for f in source] == [("tensors", "<in memory>")]
    from_file = comparable(dv.verify(path))
    # The file's `producer` metadata is not among the dict's entries.
    from_file["cases"][0]["notes"] = [n for n in from_file["cases"][0]["notes"] if not n.startswith("producer")]
    assert comparable(report) == from_file


@pytest.mark.parametrize("suffix, dtype", [("safetensors", "bf16"), ("npz", "f32")])  # npy has no bf16
def test_record_round_trips_through_dplr_verify(dplr_binary, tmp_path, suffix, dtype):
    case = dv.gen("strong-decay", **SMALL, dtype=dtype, seed=2, scale=0.25, reverse=True, backward=False)
    exact = dv.reference(**case)
    recorded = exact_outputs_in(case, exact, case["q"].dtype)
    path = tmp_path / f"case.{suffix}"
    dv.record(path, **recorded, producer="test_record")
    back = dv.read(path)
    assert back["metadata"]["reverse"] == "true" and float(back["metadata"]["scale"]) == 0.25
    assert back["metadata"]["producer"] == "test_record"
    for name in ("q", "gk", "o", "ht"):
        assert back[name].dtype == recorded[name].dtype, name
        np.testing.assert_array_equal(back[name], recorded[name], err_msg=name)
    run_dplr(dplr_binary, "verify", path, "--policy", "strict", "--report", tmp_path / "report.json", cwd=tmp_path)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["cases"][0]["options"]["reverse"] is True
    assert report["cases"][0]["options"]["scale"] == 0.25
    assert report["cases"][0]["dtypes"]["q"] == dtype.upper()


def test_assert_close_to_exact_passes_exact_outputs_rounded_to_bf16():
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=1)
    recorded = exact_outputs_in(case, dv.reference(**case), BF16)
    report = dv.assert_close_to_exact(recorded, policy="strict")
    assert report.passed and {t["name"] for t in report["cases"][0]["tensors"]} >= {"o", "ht", "dgk", "dh0"}


def test_assert_close_to_exact_names_a_planted_error():
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=1)
    recorded = exact_outputs_in(case, dv.reference(**case), BF16)
    o = recorded["o"].astype(np.float64)
    o[0, 17, 1, 5] += 4.0 * np.abs(o).max()
    recorded["o"] = o.astype(BF16)
    with pytest.raises(AssertionError) as raised:
        dv.assert_close_to_exact(recorded)
    message = str(raised.value)
    assert "verdict fail" in message
    assert "worst element o[0, 17, 1, 5] (batch 0, token 17, head 1)" in message
    assert "dq" not in message.split("\n\n")[0]  # only o failed
    assert dv.verify(recorded)["verdict"] == "fail"


def test_policy_overrides_and_files(tmp_path):
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=4, backward=False)
    recorded = exact_outputs_in(case, dv.reference(**case), BF16)
    o = recorded["o"].astype(np.float64)
    o[0, 3, 0, 0] += 0.05 * np.abs(o).max()  # a floor ratio between 1 and 100
    recorded["o"] = o.astype(BF16)
    ratio = dv.verify(recorded, "report-only")["cases"][0]["tensors"][0]["metrics"]["floor"]["ratio"]
    assert 1.0 < ratio < 100.0
    assert dv.verify(recorded, tol=f"o={ratio * 0.9}")["verdict"] == "fail"
    assert dv.verify(recorded, tol=[f"o={ratio * 1.1}"])["verdict"] == "pass"
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"dplr_policy": 1, "rules": [{"tensor": "o", "floor_ratio": ratio * 0.9}]}))
    report = dv.verify(recorded, policy_file=policy)
    assert report["verdict"] == "fail" and f"file {policy}" in report["policy"]["sources"]


def test_gen_matches_dplr_gen(dplr_binary, tmp_path):
    assert {"fla", "strong-decay", "mixed-decay"} <= set(dv.distributions())
    run_dplr(dplr_binary, "gen", "--dist", "strong-decay", "--shape", "1,32,2,8,8", "--dtype", "bf16",
             "--seed", "9", "-o", tmp_path / "gen.safetensors", cwd=tmp_path)
    from_cli = dv.read(tmp_path / "gen.safetensors")
    case = dv.gen("strong-decay", **SMALL, dtype="bf16", seed=9)
    for name in ("q", "k", "v", "a", "b", "gk", "h0", "do", "dht"):
        assert case[name].dtype == from_cli[name].dtype, name
        np.testing.assert_array_equal(case[name], from_cli[name], err_msg=name)
    assert case["q"].dtype == BF16 and case["gk"].dtype == np.float32
    assert -30.0 <= case["gk"].min() and case["gk"].max() <= -5.0
    assert case["scale"] == pytest.approx(8 ** -0.5)


def test_gen_varlen_and_no_state():
    case = dv.gen("fla", B=1, T=40, H=1, K=4, V=4, cu_seqlens=[0, 15, 40], h0=False, backward=False)
    assert "h0" not in case and "do" not in case
    assert case["cu_seqlens"].tolist() == [0, 15, 40] and case["cu_seqlens"].dtype == np.int64
    assert dv.reference(**case)["ht"].shape == (2, 1, 4, 4)


def test_bad_input_names_the_tensor_and_what_was_expected(tmp_path):
    case = dv.gen("fla", **SMALL, backward=False)
    bad = {**case, "k": case["k"][:, :16]}
    with pytest.raises(dv.InputError, match="'k'"):
        dv.reference(**bad)
    with pytest.raises(TypeError, match="tensor 'q': numpy dtype complex128"):
        dv.verify({**case, "q": case["q"].astype(np.complex128), "o": np.zeros((1, 32, 2, 8))})
    with pytest.raises(dv.InputError, match="holds no output"):
        dv.verify(case)
    with pytest.raises(dv.InputError, match="nowhere.safetensors"):
        dv.verify(tmp_path / "nowhere.safetensors")


def test_torch_tensors_give_the_numpy_answer():
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=6)
    exact = dv.reference(**case)
    as_torch = dv.gen("fla", **SMALL, dtype="bf16", seed=6, device="cpu")
    assert as_torch["q"].dtype == torch.bfloat16
    np.testing.assert_array_equal(dv.reference(**as_torch)["o"], exact["o"])
    recorded = {**as_torch, "o": torch.from_numpy(exact["o"]).to(torch.bfloat16)}
    assert dv.verify(recorded)["verdict"] == "pass"


def test_cuda_tensors_are_read_from_the_device():
    torch = pytest.importorskip("torch", reason="torch is not installed here")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    case = dv.gen("fla", **SMALL, dtype="bf16", seed=6, device="cuda")
    assert case["q"].is_cuda
    np.testing.assert_array_equal(dv.reference(**case)["o"], dv.reference(**dv.gen("fla", **SMALL, dtype="bf16", seed=6))["o"])
